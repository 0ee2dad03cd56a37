-- name: token_layers
-- purpose: every generated token at every layer: row-normalized out_mean (Eq. 6), normalized prev and plain attention on prior outputs (the explorer's per-layer values)
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
SELECT run_id, sample_id, step, layer, out_mean, prev_n AS prev, attn_out_sum AS attn_out
FROM saliency_norm(normalization := getvariable('normalization'))
ORDER BY run_id, sample_id, step, layer;
