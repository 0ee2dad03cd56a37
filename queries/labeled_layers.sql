-- name: labeled_layers
-- purpose: every labeled token at every layer: the per-layer value of every score of the family (out_mean, normalized prev, the segment shares, attention mass on prior outputs, the Lookback-style context share); the input of the layer profile and the detector
-- param labels VARCHAR = chair                 labelset
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
SELECT s.run_id, s.sample_id, s.step, s.layer, l.label, l.subtoken,
       s.out_mean, s.prev_n AS prev, s.out_share, s.prev_share, s.prompt_share, s.image_share,
       s.system_share, s.source_share, s.attn_out, s.lookback_ratio
FROM saliency_norm(normalization := getvariable('normalization')) s
JOIN labels l ON l.run_id = s.run_id AND l.sample_id = s.sample_id AND l.step = s.step
WHERE l.labelset = getvariable('labels')
ORDER BY s.run_id, s.sample_id, s.step, s.layer;
