-- name: layer_profile
-- purpose: per run and layer, how well the per-layer value separates hallucinated from correct tokens: means, Cohen's d (hallucinated minus correct, pooled sd), Welch t, and AUROC = P(hallucinated scores lower) from rank sums with tied ranks averaged
-- param labels VARCHAR = chair                 labelset
-- param score VARCHAR = out_mean {out_mean|prev|attn_out|lookback_ratio}  the per-layer value
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
WITH v AS (
    SELECT s.run_id, s.layer, l.label,
           pick_score(getvariable('score'), s.out_mean, s.prev_n, s.attn_out_sum::DOUBLE,
                      1 - s.attn_out_sum::DOUBLE) AS x
    FROM saliency_norm(normalization := getvariable('normalization')) s
    JOIN labels l ON l.run_id = s.run_id AND l.sample_id = s.sample_id AND l.step = s.step
    WHERE l.labelset = getvariable('labels')
), r AS (
    SELECT run_id, layer, label, x,
           rank() OVER (PARTITION BY run_id, layer ORDER BY x)
             + (count(*) OVER (PARTITION BY run_id, layer, x) - 1) / 2.0 AS rnk
    FROM v WHERE x IS NOT NULL AND isfinite(x)
), g AS (
    SELECT run_id, layer,
           count(*) FILTER (label = 0) AS n0, count(*) FILTER (label = 1) AS n1,
           avg(x) FILTER (label = 0) AS m0, avg(x) FILTER (label = 1) AS m1,
           var_samp(x) FILTER (label = 0) AS v0, var_samp(x) FILTER (label = 1) AS v1,
           sum(rnk) FILTER (label = 0) AS r0
    FROM r GROUP BY run_id, layer
)
SELECT run_id, layer, n0 AS n_correct, n1 AS n_halluc, m0 AS mean_correct, m1 AS mean_halluc,
       (m1 - m0) / nullif(sqrt(((n1 - 1) * v1 + (n0 - 1) * v0) / nullif(n1 + n0 - 2, 0)), 0) AS cohen_d,
       (m1 - m0) / nullif(sqrt(v1 / n1 + v0 / n0), 0) AS welch_t,
       (r0 - n0 * (n0 + 1) / 2.0) / nullif(n0 * n1, 0) AS auroc
FROM g
ORDER BY run_id, layer;
