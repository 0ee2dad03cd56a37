-- name: sgrs_rates
-- purpose: per SGRS run, from the decisions table: steps decided, the share of steps whose first draw was rejected, the share that fell back after R rejected draws, the share of all draws rejected, and mean draws per step
SELECT run_id, count(*) AS n_steps,
       avg(CASE WHEN first_rejected THEN 1.0 ELSE 0.0 END) AS rejection_rate,
       avg(CASE WHEN fell_back THEN 1.0 ELSE 0.0 END) AS fallback_rate,
       sum(n_rejected) / sum(n_draws) AS draw_rejection_rate,
       avg(n_draws) AS mean_draws
FROM (
    SELECT run_id, sample_id, step, count(*) AS n_draws,
           sum(CASE WHEN accepted THEN 0 ELSE 1 END) AS n_rejected,
           bool_or(draw = 0 AND NOT accepted) AS first_rejected,
           bool_or(fallback) AS fell_back
    FROM decisions GROUP BY run_id, sample_id, step
)
GROUP BY run_id ORDER BY run_id;
