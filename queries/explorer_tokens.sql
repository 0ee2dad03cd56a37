-- name: explorer_tokens
-- purpose: every generated token with its text span, every score token_scores() defines (the score family) and its label / object (null if unlabeled); the token explorer's input
-- param labels VARCHAR = chair {@labelset}     labelset joined for the label and object columns
-- param layers INTEGER[] = NULL [0..n_layers-1] target layers, comma separated; empty = upper half of each run
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
WITH l AS (
    SELECT run_id, sample_id, step, max(label) AS label, any_value(object) AS object
    FROM labels WHERE labelset = getvariable('labels') GROUP BY ALL
)
SELECT k.run_id, k.sample_id, k.step, k.token_text, k.char_start, k.char_end,
       s.* EXCLUDE (run_id, sample_id, step), l.label, l.object
FROM tokens k
LEFT JOIN token_scores(layers := getvariable('layers'), normalization := getvariable('normalization')) s
  USING (run_id, sample_id, step)
LEFT JOIN l USING (run_id, sample_id, step)
ORDER BY k.run_id, k.sample_id, k.step;
