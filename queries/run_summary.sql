-- name: run_summary
-- purpose: one row per run: model, samples (ok / error), tokens, saliency rows, labeled and hallucinated tokens for a labelset, and its metrics (JSON text)
-- param labels VARCHAR = chair {@labelset}     labelset counted
SELECT r.run_id, r.model_id, r.architecture, r.n_layers, r.strategy,
       coalesce(sm.n_samples, 0) AS n_samples, coalesce(sm.n_ok, 0) AS n_ok, coalesce(sm.n_error, 0) AS n_error,
       coalesce(tk.n_tokens, 0) AS n_tokens, sm.mean_output_tokens,
       coalesce(sl.n_saliency_rows, 0) AS n_saliency_rows,
       coalesce(lb.n_labeled, 0) AS n_labeled, coalesce(lb.n_halluc, 0) AS n_halluc,
       lb.n_halluc / nullif(lb.n_labeled, 0) AS halluc_rate,
       lm.metrics
FROM runs r
LEFT JOIN (SELECT run_id, count(*) AS n_samples, count(*) FILTER (status = 'ok') AS n_ok,
                  count(*) FILTER (status = 'error') AS n_error,
                  avg(n_output) FILTER (status = 'ok') AS mean_output_tokens
           FROM samples GROUP BY run_id) sm USING (run_id)
LEFT JOIN (SELECT run_id, count(*) AS n_tokens FROM tokens GROUP BY run_id) tk USING (run_id)
LEFT JOIN (SELECT run_id, count(*) AS n_saliency_rows FROM saliency GROUP BY run_id) sl USING (run_id)
LEFT JOIN (SELECT run_id, count(*) AS n_labeled, sum(label)::BIGINT AS n_halluc
           FROM labels WHERE labelset = getvariable('labels') GROUP BY run_id) lb USING (run_id)
LEFT JOIN (SELECT run_id, json_group_object(metric, coalesce(to_json(value), value_text::JSON))::VARCHAR AS metrics
           FROM label_metrics WHERE labelset = getvariable('labels') GROUP BY run_id) lm USING (run_id)
ORDER BY r.run_id;
