-- name: labeled_layers
-- purpose: every labeled token at every layer: per-layer out_mean (Eq. 6), normalized prev, attention mass on prior outputs and the Lookback-style context share
-- param labels VARCHAR = chair {@labelset}     labelset
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
SELECT s.run_id, s.sample_id, s.step, s.layer, l.label, l.subtoken,
       s.out_mean, s.prev_n AS prev, s.attn_out_sum::DOUBLE AS attn_out,
       1 - s.attn_out_sum::DOUBLE AS lookback_ratio
FROM saliency_norm(normalization := getvariable('normalization')) s
JOIN labels l ON l.run_id = s.run_id AND l.sample_id = s.sample_id AND l.step = s.step
WHERE l.labelset = getvariable('labels')
ORDER BY s.run_id, s.sample_id, s.step, s.layer;
