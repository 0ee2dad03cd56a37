-- name: replay_tokens
-- purpose: every generated token in decoding order with its score over the target layers and its label (null = unlabeled); the input of the offline SGRS replay in `calibrate`
-- param labels VARCHAR = chair {@labelset}     labelset
-- param layers INTEGER[] = NULL [0..n_layers-1] target layers, comma separated; empty = upper half of each run
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
-- param score VARCHAR = out_mean {out_mean|prev}  the SGRS score
SELECT k.run_id, k.sample_id, k.step, k.token_id,
       pick_score(getvariable('score'), s.out_mean, s.prev, NULL, NULL) AS score,
       l.label, l.subtoken
FROM tokens k
LEFT JOIN token_scores(layers := getvariable('layers'), normalization := getvariable('normalization')) s
  USING (run_id, sample_id, step)
LEFT JOIN (SELECT * FROM labels WHERE labelset = getvariable('labels')) l USING (run_id, sample_id, step)
ORDER BY k.run_id, k.sample_id, k.step;
