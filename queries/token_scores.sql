-- name: token_scores
-- purpose: one row per generated token: text, every score of the family (docs/analysis.md; step is the position baseline) and its label (null if unlabeled)
-- param labels VARCHAR = chair                 labelset joined for the label column
-- param layers INTEGER[] = NULL                target layers, comma separated; empty = upper half of each run
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
SELECT k.run_id, k.sample_id, k.step, k.token_text, s.* EXCLUDE (run_id, sample_id, step), l.label, l.object
FROM tokens k
LEFT JOIN token_scores(layers := getvariable('layers'), normalization := getvariable('normalization')) s
  USING (run_id, sample_id, step)
LEFT JOIN (SELECT * FROM labels WHERE labelset = getvariable('labels')) l USING (run_id, sample_id, step)
ORDER BY k.run_id, k.sample_id, k.step;
