-- name: failure_cases
-- purpose: hallucinated tokens with the highest score and correct tokens with the lowest score, ranked, with the surrounding output text (token marked [[like this]])
-- param labels VARCHAR = chair {@labelset}     labelset
-- param score SCORES = out_mean                 the measure(s) ranked: a score name (docs/analysis.md), a comma list or all; one block of rows per score (column measure)
-- param layers INTEGER[] = NULL [0..n_layers-1] target layers, comma separated; empty = upper half of each run
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
-- param top INTEGER = 20 [1..100000]          cases of each kind per run
-- param context INTEGER = 40 [0..10000]       characters of text either side
WITH s AS (
    SELECT t.run_id, u.measure, t.sample_id, t.step, t.label, t.object, pick_score(u.measure, t) AS score
    FROM labeled_scores(getvariable('labels'), layers := getvariable('layers'),
                        normalization := getvariable('normalization')) t
    CROSS JOIN (SELECT unnest(getvariable('score')) AS measure) u
), ranked AS (
    SELECT *,
           CASE label WHEN 1 THEN 'high_score_hallucination' ELSE 'low_score_correct' END AS kind,
           row_number() OVER (PARTITION BY run_id, measure, label
                              ORDER BY CASE label WHEN 1 THEN -score ELSE score END, sample_id, step) AS rank
    FROM s WHERE score IS NOT NULL
)
SELECT r.run_id, r.measure, r.kind, r.rank, r.sample_id, r.step, k.token_text, r.object, r.label, r.score,
       substr(p.output_text, greatest(k.char_start - getvariable('context'), 0) + 1,
              k.char_start - greatest(k.char_start - getvariable('context'), 0))
         || '[[' || k.token_text || ']]'
         || substr(p.output_text, k.char_end + 1, getvariable('context')) AS context
FROM ranked r
JOIN tokens k USING (run_id, sample_id, step)
JOIN samples p USING (run_id, sample_id)
WHERE r.rank <= getvariable('top')
ORDER BY r.run_id, list_position(getvariable('score'), r.measure), r.kind, r.rank;
