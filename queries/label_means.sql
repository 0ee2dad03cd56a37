-- name: label_means
-- purpose: Table-4 style mean and sd of the token score for correct (0) vs hallucinated (1) tokens, per run and score, optionally per step band (the position control: compare labels within a band)
-- param labels VARCHAR = chair                 labelset
-- param layers INTEGER[] = NULL                target layers, comma separated; empty = upper half of each run
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
-- param score SCORES = all                      the score(s): a name, a comma list or all (column measure)
-- param step_band INTEGER = 0                  0 = all steps pooled (step_lo/step_hi null); N = bands of N steps: [0, N), [N, 2N), ...
WITH s AS (
    SELECT t.run_id, u.measure, t.label, pick_score(u.measure, t) AS x,
           CASE WHEN getvariable('step_band') > 0 THEN t.step // getvariable('step_band') END AS band
    FROM labeled_scores(getvariable('labels'), layers := getvariable('layers'),
                        normalization := getvariable('normalization')) t
    CROSS JOIN (SELECT unnest(getvariable('score')) AS measure) u
)
SELECT run_id, measure, band * getvariable('step_band') AS step_lo, (band + 1) * getvariable('step_band') AS step_hi,
       label, count(x) AS n, avg(x) AS mean, stddev_samp(x) AS sd
FROM s
GROUP BY run_id, measure, band, label
ORDER BY run_id, list_position(getvariable('score'), measure), band, label;
