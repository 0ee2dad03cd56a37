-- name: replay_tokens
-- purpose: every generated token in decoding order with its score over the target layers (null at step 0, which SGRS never scores), whether SGRS emitted it as a fallback (null unless the run decoded with SGRS) and its label (null = unlabeled), per score; the input of the offline SGRS replay in `calibrate`
-- param labels VARCHAR = chair {@labelset}     labelset
-- param layers INTEGER[] = NULL [0..n_layers-1] target layers, comma separated; empty = upper half of each run
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
-- param score SCORES = out_mean                 the SGRS score(s): a name, a comma list or all; one block of rows per score (column measure)
SELECT k.run_id, u.measure, k.sample_id, k.step, k.token_id,
       CASE WHEN s.run_id IS NOT NULL AND k.step >= 1 THEN pick_score(u.measure, s) END AS score,
       k.fallback, l.label, l.subtoken
FROM tokens k
LEFT JOIN token_scores(layers := getvariable('layers'), normalization := getvariable('normalization')) s
  USING (run_id, sample_id, step)
LEFT JOIN (SELECT * FROM labels WHERE labelset = getvariable('labels')) l USING (run_id, sample_id, step)
CROSS JOIN (SELECT unnest(getvariable('score')) AS measure) u
ORDER BY list_position(getvariable('score'), u.measure), k.run_id, k.sample_id, k.step;
