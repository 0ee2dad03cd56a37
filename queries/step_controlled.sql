-- name: step_controlled
-- purpose: every labeled token with its score and that score's z-score against all tokens the run generated at the same step (the position-controlled score of the report's step-controlled curve)
-- param labels VARCHAR = chair {@labelset}     labelset
-- param score VARCHAR = out_mean                 the measure: one score name of the family (docs/analysis.md)
-- param layers INTEGER[] = NULL [0..n_layers-1] target layers, comma separated; empty = upper half of each run
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
-- param min_step_tokens INTEGER = 5 [1..100000] a step needs this many scored tokens for a z-score (else null)
WITH all_scores AS (
    SELECT t.run_id, t.step, pick_score(getvariable('score'), t) AS score
    FROM token_scores(layers := getvariable('layers'), normalization := getvariable('normalization')) t
), step_stats AS (
    SELECT run_id, step, avg(score) AS step_mean, stddev_samp(score) AS step_sd, count(*) AS step_n
    FROM all_scores WHERE score IS NOT NULL AND isfinite(score)
    GROUP BY run_id, step
), s AS (
    SELECT t.run_id, t.sample_id, t.step, t.label, t.object, pick_score(getvariable('score'), t) AS score
    FROM labeled_scores(getvariable('labels'), layers := getvariable('layers'),
                        normalization := getvariable('normalization')) t
)
SELECT s.run_id, s.sample_id, s.step, s.label, s.object, s.score, st.step_mean, st.step_sd, st.step_n,
       CASE WHEN st.step_n >= getvariable('min_step_tokens')
            THEN (s.score - st.step_mean) / nullif(st.step_sd, 0) END AS step_z
FROM s LEFT JOIN step_stats st USING (run_id, step)
WHERE s.score IS NOT NULL AND isfinite(s.score)
ORDER BY s.run_id, s.sample_id, s.step;
