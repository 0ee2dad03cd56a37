-- name: step_profile
-- purpose: per run and generation step: mean score of every scored token, and among labeled tokens the hallucination rate with its Wilson 95% interval and the mean score by label (position as a confounder)
-- param labels VARCHAR = chair {@labelset}     labelset
-- param score VARCHAR = out_mean                 the measure: one score name of the family (docs/analysis.md)
-- param layers INTEGER[] = NULL [0..n_layers-1] target layers, comma separated; empty = upper half of each run
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
WITH t AS (
    SELECT t.run_id, t.sample_id, t.step, pick_score(getvariable('score'), t) AS score
    FROM token_scores(layers := getvariable('layers'), normalization := getvariable('normalization')) t
), l AS (
    SELECT run_id, sample_id, step, max(label)::DOUBLE AS label
    FROM labels WHERE labelset = getvariable('labels') GROUP BY ALL
), j AS (
    SELECT t.*, l.label FROM t LEFT JOIN l USING (run_id, sample_id, step)
    WHERE t.score IS NOT NULL AND isfinite(t.score)
)
SELECT run_id, step, count(*) AS n_tokens, avg(score) AS mean_score,
       count(label) AS n_labeled, coalesce(sum(label), 0)::BIGINT AS n_halluc,
       sum(label) / nullif(count(label), 0) AS rate,
       wilson_lo(sum(label), count(label)) AS ci_low, wilson_hi(sum(label), count(label)) AS ci_high,
       avg(score) FILTER (WHERE label = 0) AS mean_correct, avg(score) FILTER (WHERE label = 1) AS mean_halluc
FROM j GROUP BY run_id, step ORDER BY run_id, step;
