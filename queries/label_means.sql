-- name: label_means
-- purpose: Table-4 style mean and sd of the token score for correct (0) vs hallucinated (1) tokens, per run, for saliency and the attention baselines
-- param labels VARCHAR = chair {@labelset}     labelset
-- param layers INTEGER[] = NULL [0..n_layers-1] target layers, comma separated; empty = upper half of each run
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
SELECT run_id, label, count(*) AS n,
       avg(out_mean) AS out_mean_mean, stddev_samp(out_mean) AS out_mean_sd,
       avg(prev) AS prev_mean, stddev_samp(prev) AS prev_sd,
       avg(attn_out) AS attn_out_mean, stddev_samp(attn_out) AS attn_out_sd,
       avg(lookback_ratio) AS lookback_ratio_mean, stddev_samp(lookback_ratio) AS lookback_ratio_sd
FROM labeled_scores(getvariable('labels'), layers := getvariable('layers'),
                    normalization := getvariable('normalization'))
GROUP BY run_id, label
ORDER BY run_id, label;
