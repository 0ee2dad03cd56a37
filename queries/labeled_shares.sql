-- name: labeled_shares
-- purpose: first subtoken of every labeled mention with its raw-saliency shares over the target layers (prompt keys and prior-output keys over the whole row) and its step, for position-controlled comparisons
-- param labels VARCHAR = chair                 labelset
-- param layers INTEGER[] = NULL                target layers, comma separated; empty = upper half of each run
SELECT s.run_id, s.sample_id, s.step, any_value(l.label) AS label, any_value(l.object) AS object,
       avg(s.prompt_sum / nullif(s.sys_sum + s.img_sum + s.prompt_sum + s.out_sum, 0)) AS prompt_share,
       avg(s.out_sum / nullif(s.sys_sum + s.img_sum + s.prompt_sum + s.out_sum, 0)) AS out_share
FROM saliency s
JOIN runs r ON r.run_id = s.run_id
JOIN labels l ON l.run_id = s.run_id AND l.sample_id = s.sample_id AND l.step = s.step
WHERE l.labelset = getvariable('labels') AND NOT l.subtoken
  AND is_target_layer(s.layer, r.n_layers, getvariable('layers'))
GROUP BY s.run_id, s.sample_id, s.step
ORDER BY s.run_id, s.sample_id, s.step;
