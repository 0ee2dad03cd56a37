-- name: failure_cases
-- purpose: position-controlled failure cases: hallucinated tokens scoring far above, and correct tokens far below, the other tokens generated at the same step (z-score within run and step), ranked, with the surrounding output text (token marked [[like this]])
-- param labels VARCHAR = chair {@labelset}     labelset
-- param score SCORES = out_mean                 the measure(s) ranked: a score name (docs/analysis.md), a comma list or all; one block of rows per score (column measure)
-- param layers INTEGER[] = NULL [0..n_layers-1] target layers, comma separated; empty = upper half of each run
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
-- param top INTEGER = 20 [1..100000]          cases of each kind per run
-- param context INTEGER = 40 [0..10000]       characters of text either side
-- param min_step_tokens INTEGER = 5 [1..100000] a step needs this many scored tokens for its z-score; tokens of rarer steps rank last
-- Raw scores drift with the step (out_mean of late tokens averages over more keys), so ranking raw scores
-- picks late tokens; the z-score against every scored token of the same run and step removes that drift.
WITH measures AS (
    SELECT unnest(getvariable('score')) AS measure
), all_scores AS (
    SELECT t.run_id, u.measure, t.step, pick_score(u.measure, t) AS score
    FROM token_scores(layers := getvariable('layers'), normalization := getvariable('normalization')) t
    CROSS JOIN measures u
), step_stats AS (
    SELECT run_id, measure, step, avg(score) AS step_mean, stddev_samp(score) AS step_sd, count(*) AS step_n
    FROM all_scores WHERE score IS NOT NULL AND isfinite(score)
    GROUP BY run_id, measure, step
), s AS (
    SELECT t.run_id, u.measure, t.sample_id, t.step, t.label, t.object, pick_score(u.measure, t) AS score
    FROM labeled_scores(getvariable('labels'), layers := getvariable('layers'),
                        normalization := getvariable('normalization')) t
    CROSS JOIN measures u
), z AS (
    SELECT s.*, st.step_mean, st.step_n,
           CASE WHEN st.step_n >= getvariable('min_step_tokens')
                THEN (s.score - st.step_mean) / nullif(st.step_sd, 0) END AS step_z
    FROM s LEFT JOIN step_stats st USING (run_id, measure, step)
    WHERE s.score IS NOT NULL AND isfinite(s.score)
), ranked AS (
    SELECT *,
           CASE label WHEN 1 THEN 'high_score_hallucination' ELSE 'low_score_correct' END AS kind,
           row_number() OVER (PARTITION BY run_id, measure, label
                              ORDER BY CASE label WHEN 1 THEN -step_z ELSE step_z END NULLS LAST,
                                       CASE label WHEN 1 THEN -score ELSE score END, sample_id, step) AS rank
    FROM z
)
SELECT r.run_id, r.measure, r.kind, r.rank, r.sample_id, r.step, k.token_text, r.object, r.label, r.score,
       r.step_mean, r.step_z, r.step_n,
       substr(p.output_text, greatest(k.char_start - getvariable('context'), 0) + 1,
              k.char_start - greatest(k.char_start - getvariable('context'), 0))
         || '[[' || k.token_text || ']]'
         || substr(p.output_text, k.char_end + 1, getvariable('context')) AS context
FROM ranked r
JOIN tokens k USING (run_id, sample_id, step)
JOIN samples p USING (run_id, sample_id)
WHERE r.rank <= getvariable('top')
ORDER BY r.run_id, list_position(getvariable('score'), r.measure), r.kind, r.rank;
