-- name: binned_curve
-- purpose: hallucination rate per equal-width score bin on [0, 1] (paper Fig. 8b) with Wilson 95% intervals; scores outside [0, 1] fall in the edge bins
-- param labels VARCHAR = chair {@labelset}     labelset
-- param score VARCHAR = out_mean {out_mean|prev|attn_out|lookback_ratio}  the measure binned
-- param layers INTEGER[] = NULL [0..n_layers-1] target layers, comma separated; empty = upper half of each run
-- param bins INTEGER = 10 [1..1000]           number of equal-width bins
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
WITH s AS (
    SELECT run_id, label::DOUBLE AS label,
           pick_score(getvariable('score'), out_mean, prev, attn_out, lookback_ratio) AS score
    FROM labeled_scores(getvariable('labels'), layers := getvariable('layers'),
                        normalization := getvariable('normalization'))
), b AS (
    SELECT run_id, label,
           least(greatest(floor(score * getvariable('bins')), 0), getvariable('bins') - 1)::INTEGER AS bin
    FROM s WHERE score IS NOT NULL AND isfinite(score)
), grid AS (
    SELECT r.run_id, g.bin::INTEGER AS bin
    FROM (SELECT DISTINCT run_id FROM s) r CROSS JOIN range(getvariable('bins')) g(bin)
), agg AS (
    SELECT run_id, bin, count(*) AS n, sum(label) AS n_halluc FROM b GROUP BY run_id, bin
)
SELECT grid.run_id, grid.bin,
       grid.bin / getvariable('bins') AS lo, (grid.bin + 1) / getvariable('bins') AS hi,
       coalesce(agg.n, 0) AS n, coalesce(agg.n_halluc, 0)::BIGINT AS n_halluc,
       agg.n_halluc / agg.n AS rate,
       wilson_lo(agg.n_halluc, agg.n) AS ci_low, wilson_hi(agg.n_halluc, agg.n) AS ci_high
FROM grid LEFT JOIN agg USING (run_id, bin)
ORDER BY grid.run_id, grid.bin;
