-- name: binned_curve
-- purpose: hallucination rate per equal-width score bin on [0, 1] (paper Fig. 8b) with Wilson 95% intervals; scores outside [0, 1] fall in the edge bins
-- param labels VARCHAR = chair                 labelset
-- param score SCORES = out_mean                 the measure(s): a score name (docs/analysis.md), a comma list or all; one block of rows per score (column measure)
-- param layers INTEGER[] = NULL                target layers, comma separated; empty = upper half of each run
-- param bins INTEGER = 10                      number of equal-width bins
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
WITH s AS (
    SELECT t.run_id, u.measure, t.label::DOUBLE AS label, pick_score(u.measure, t) AS score
    FROM labeled_scores(getvariable('labels'), layers := getvariable('layers'),
                        normalization := getvariable('normalization')) t
    CROSS JOIN (SELECT unnest(getvariable('score')) AS measure) u
), b AS (
    SELECT run_id, measure, label,
           least(greatest(floor(score * getvariable('bins')), 0), getvariable('bins') - 1)::INTEGER AS bin
    FROM s WHERE score IS NOT NULL AND isfinite(score)
), grid AS (
    SELECT r.run_id, r.measure, g.bin::INTEGER AS bin
    FROM (SELECT DISTINCT run_id, measure FROM s) r CROSS JOIN range(getvariable('bins')) g(bin)
), agg AS (
    SELECT run_id, measure, bin, count(*) AS n, sum(label) AS n_halluc FROM b GROUP BY run_id, measure, bin
)
SELECT grid.run_id, grid.measure, grid.bin,
       grid.bin / getvariable('bins') AS lo, (grid.bin + 1) / getvariable('bins') AS hi,
       coalesce(agg.n, 0) AS n, coalesce(agg.n_halluc, 0)::BIGINT AS n_halluc,
       agg.n_halluc / agg.n AS rate,
       wilson_lo(agg.n_halluc, agg.n) AS ci_low, wilson_hi(agg.n_halluc, agg.n) AS ci_high
FROM grid LEFT JOIN agg USING (run_id, measure, bin)
ORDER BY grid.run_id, list_position(getvariable('score'), grid.measure), grid.bin;
