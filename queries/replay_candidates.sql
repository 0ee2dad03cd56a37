-- name: replay_candidates
-- purpose: the recorded top-K candidates of every step with their score over the target layers (same definition as the token score); used by `calibrate`
-- param layers INTEGER[] = NULL                target layers, comma separated; empty = upper half of each run
-- param normalization VARCHAR = row {row|none|matrix}  how S_raw is normalized
-- param score SCORES = out_mean                 the SGRS score(s); scores candidate rows cannot carry (shares, attention) are null
SELECT c.run_id, u.measure, c.sample_id, c.step, c.rank, c.token_id, c.prob, pick_score(u.measure, c) AS score
FROM candidate_scores(layers := getvariable('layers'), normalization := getvariable('normalization')) c
CROSS JOIN (SELECT unnest(getvariable('score')) AS measure) u
ORDER BY list_position(getvariable('score'), u.measure), c.run_id, c.sample_id, c.step, c.rank;
