-- name: object_means
-- purpose: mean token score per object category and label (0 correct, 1 hallucinated), first subtoken of each mention, per run: which objects are hallucinated and whether their saliency differs
-- param labels VARCHAR = chair {@labelset}     labelset
-- param layers INTEGER[] = NULL [0..n_layers-1] target layers, comma separated; empty = upper half of each run
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
SELECT run_id, object, label, count(*) AS n,
       avg(out_mean) AS out_mean_mean, avg(prev) AS prev_mean, avg(attn_out) AS attn_out_mean
FROM labeled_scores(getvariable('labels'), layers := getvariable('layers'),
                    normalization := getvariable('normalization'))
WHERE NOT subtoken AND label IS NOT NULL
GROUP BY run_id, object, label
ORDER BY run_id, object, label;
