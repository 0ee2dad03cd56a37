-- name: labeled_tokens
-- purpose: every labeled token with every score of the family (saliency scores, attention baselines; step is the position baseline) over the target layers; the input of `analyze`
-- param labels VARCHAR = chair                 labelset
-- param layers INTEGER[] = NULL                target layers, comma separated; empty = upper half of each run
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
SELECT *
FROM labeled_scores(getvariable('labels'), layers := getvariable('layers'),
                    normalization := getvariable('normalization'))
ORDER BY run_id, sample_id, step;
