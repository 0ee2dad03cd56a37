-- name: layer_profile
-- purpose: per run and layer, how well the per-layer value separates hallucinated from correct tokens: means, Cohen's d (hallucinated minus correct, pooled sd), Welch t, and AUROC = P(hallucinated scores lower) + P(tie) / 2 from a value histogram (see auroc_bins)
-- param labels VARCHAR = chair                 labelset
-- param score SCORES = out_mean                 the per-layer value(s): a score name, a comma list or all (one block of rows per score, column measure)
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
-- param auroc_bins INTEGER = 4096              0 = exact AUROC (rank sums over distinct values; slow on millions of rows); N = N equal-width bins over each layer's range, pairs in one bin count as ties, and auroc_max_error bounds the difference from the exact value
WITH v AS (
    SELECT s.run_id, u.measure, s.layer, l.label, pick_score(u.measure, s) AS x
    FROM (SELECT * REPLACE (prev_n AS prev)
          FROM saliency_norm(normalization := getvariable('normalization'))) s
    JOIN labels l ON l.run_id = s.run_id AND l.sample_id = s.sample_id AND l.step = s.step
    CROSS JOIN (SELECT unnest(getvariable('score')) AS measure) u
    WHERE l.labelset = getvariable('labels')
), valid AS (
    SELECT * FROM v WHERE x IS NOT NULL AND isfinite(x)
), gl AS (
    -- moments per label (grouping by the label is cheaper than filtered aggregates)
    SELECT run_id, measure, layer, label, count(*) AS n, avg(x) AS m, var_samp(x) AS var, min(x) AS lo, max(x) AS hi
    FROM valid GROUP BY run_id, measure, layer, label
), g AS (
    SELECT run_id, measure, layer,
           coalesce(sum(n) FILTER (label = 0), 0)::BIGINT AS n0, coalesce(sum(n) FILTER (label = 1), 0)::BIGINT AS n1,
           any_value(m) FILTER (label = 0) AS m0, any_value(m) FILTER (label = 1) AS m1,
           any_value(var) FILTER (label = 0) AS v0, any_value(var) FILTER (label = 1) AS v1,
           min(lo) AS lo, max(hi) AS hi
    FROM gl GROUP BY run_id, measure, layer
), hl AS (
    -- one row per histogram bin (auroc_bins > 0) or per distinct value (0) and label
    SELECT run_id, measure, layer, k, label, count(*) AS n
    FROM (
        SELECT valid.run_id, valid.measure, valid.layer, valid.label,
               CASE WHEN getvariable('auroc_bins') <= 0 THEN valid.x
                    WHEN g.hi > g.lo THEN least(floor((valid.x - g.lo) / (g.hi - g.lo) * getvariable('auroc_bins')),
                                                getvariable('auroc_bins') - 1)
                    ELSE 0 END AS k
        FROM valid JOIN g USING (run_id, measure, layer)
    )
    GROUP BY run_id, measure, layer, k, label
), h AS (
    SELECT run_id, measure, layer, k, coalesce(sum(n) FILTER (label = 0), 0)::BIGINT AS c0,
           coalesce(sum(n) FILTER (label = 1), 0)::BIGINT AS c1
    FROM hl GROUP BY run_id, measure, layer, k
), c AS (
    -- correct tokens at or below each bin (running sum in value order)
    SELECT *, sum(c0) OVER (PARTITION BY run_id, measure, layer ORDER BY k ROWS UNBOUNDED PRECEDING) AS cum0 FROM h
), pairs AS (
    -- lt: (correct, hallucinated) pairs with the correct token in a lower bin; ties: pairs sharing a bin
    SELECT run_id, measure, layer, sum(c1 * (cum0 - c0)) AS lt, sum(c1 * c0) AS ties FROM c GROUP BY run_id, measure, layer
)
SELECT run_id, measure, layer, n0 AS n_correct, n1 AS n_halluc, m0 AS mean_correct, m1 AS mean_halluc,
       (m1 - m0) / nullif(sqrt(((n1 - 1) * v1 + (n0 - 1) * v0) / nullif(n1 + n0 - 2, 0)), 0) AS cohen_d,
       (m1 - m0) / nullif(sqrt(v1 / n1 + v0 / n0), 0) AS welch_t,
       (n0 * n1 - lt - ties / 2.0) / nullif(n0 * n1, 0) AS auroc,
       CASE WHEN getvariable('auroc_bins') <= 0 THEN 0.0 ELSE ties / 2.0 / nullif(n0 * n1, 0) END AS auroc_max_error
FROM g JOIN pairs USING (run_id, measure, layer)
ORDER BY run_id, measure, layer;
