-- name: replay_candidates
-- purpose: the recorded top-K candidates of every step with their score over the target layers (same definition as the token score); used by `calibrate`
-- param layers INTEGER[] = NULL [0..n_layers-1] target layers, comma separated; empty = upper half of each run
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
-- param score VARCHAR = out_mean {out_mean|prev}  the SGRS score
SELECT run_id, sample_id, step, rank, token_id, prob,
       pick_score(getvariable('score'), out_mean, prev, NULL, NULL) AS score
FROM candidate_scores(layers := getvariable('layers'), normalization := getvariable('normalization'))
ORDER BY run_id, sample_id, step, rank;
