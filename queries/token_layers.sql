-- name: token_layers
-- purpose: every generated token at every layer with the per-layer value of every score of the family and the sample's image_id; the features of `detect` (no labels needed, so a trained detector can score any run)
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
SELECT s.run_id, s.sample_id, p.image_id, s.step, s.layer,
       s.out_mean, s.prev_n AS prev, s.out_share, s.prev_share, s.prompt_share, s.image_share,
       s.system_share, s.source_share, s.attn_out, s.lookback_ratio
FROM saliency_norm(normalization := getvariable('normalization')) s
JOIN samples p USING (run_id, sample_id)
ORDER BY s.run_id, s.sample_id, s.step, s.layer;
