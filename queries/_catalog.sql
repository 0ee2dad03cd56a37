-- _catalog.sql: macros over the catalog views (runs, samples, tokens, saliency, candidates, rows, decisions,
-- labels, label_metrics). Loaded by saliency_lab.store.catalog after the views exist; every named query in
-- this folder builds on these. Definitions follow SPEC sections 2 and 4:
--   normalized prev         prev / norm
--   Eq. 6 out_mean          out_sum / (norm * step), step >= 1 (null at step 0: no prior output keys)
--   token score S(x_P)      mean over target layers of the per-layer value
--   norm                    row: row_l2 | none: 1 | matrix: sqrt(sum of row_l2^2 over the sample's output
--                           rows) per (run, sample, layer)
--   target layers           a list, or NULL / [] = the upper half of the run's layers (layer >= n_layers // 2)
--   segment share           segment sum / row total, the row total being the sum of the four recorded segments
--                           (system + image + prompt + prior outputs, keys j <= q); NULL when the total is 0
-- Division by a zero norm gives NULL (such a row carries no saliency), never inf.
--
-- The score family (docs/analysis.md, "Token scores"): every name below is a column of token_scores() and
-- labeled_scores() (a mean over the target layers of the per-layer value saliency_norm() carries) and a
-- name pick_score() accepts. saliency_lab/store/scores.py lists the same names with their direction
-- conventions; a test checks that the two agree.
--   out_mean        Eq. 6                                 out_sum / (norm * step)
--   prev            normalized saliency toward x_{P-1}    prev / norm
--   out_share       share of the row on prior outputs     out_sum / total
--   prev_share      share on the previous token           prev / total
--   prompt_share    share on the prompt                   prompt_sum / total
--   image_share     share on the image                    img_sum / total
--   system_share    share on the system prompt            sys_sum / total
--   source_share    share on the grounding source         (prompt_sum + img_sum) / total
--   attn_out        attention mass on prior outputs       attn_out_sum (no gradient)
--   lookback_ratio  Lookback-Lens context share           1 - attn_out_sum (no gradient)
--   step            the token's output position           step (the position-only baseline)

CREATE OR REPLACE MACRO norm_prev(prev, norm) AS prev / nullif(norm, 0);

CREATE OR REPLACE MACRO out_mean(out_sum, norm, step) AS
    CASE WHEN step >= 1 THEN out_sum / (nullif(norm, 0) * step) END;

-- A segment's share of the row: part / (system + image + prompt + prior outputs). Template positions outside
-- the recorded segments are not stored, so they are not part of the total.
CREATE OR REPLACE MACRO seg_share(part, sys_sum, img_sum, prompt_sum, out_sum) AS
    part::DOUBLE / nullif(sys_sum::DOUBLE + img_sum + prompt_sum + out_sum, 0);

CREATE OR REPLACE MACRO is_target_layer(layer, n_layers, layers) AS
    CASE WHEN layers IS NULL OR len(layers) = 0 THEN layer >= n_layers // 2
         ELSE list_contains(layers, layer) END;

-- Wilson score interval for k successes in n trials (z = 1.96 for 95%).
CREATE OR REPLACE MACRO wilson_lo(k, n, z := 1.959963984540054) AS
    CASE WHEN n > 0 THEN greatest(0.0, ((k / n + z * z / (2 * n))
                         - z * sqrt((k / n) * (1 - k / n) / n + z * z / (4 * n * n))) / (1 + z * z / n)) END;
CREATE OR REPLACE MACRO wilson_hi(k, n, z := 1.959963984540054) AS
    CASE WHEN n > 0 THEN least(1.0, ((k / n + z * z / (2 * n))
                         + z * sqrt((k / n) * (1 - k / n) / n + z * z / (4 * n * n))) / (1 + z * z / n)) END;

-- The saliency table with its normalizer and the per-layer derived values. The three branches are
-- filtered by a constant, so only the chosen one is computed (the matrix window costs nothing otherwise).
CREATE OR REPLACE MACRO saliency_norm(normalization := 'row') AS TABLE
    SELECT run_id, sample_id, step, layer, sys_sum, img_sum, prompt_sum, out_sum, prev, row_l2, attn_out_sum,
           norm,
           norm_prev(prev, norm) AS prev_n,
           out_mean(out_sum, norm, step) AS out_mean,
           seg_share(out_sum, sys_sum, img_sum, prompt_sum, out_sum) AS out_share,
           seg_share(prev, sys_sum, img_sum, prompt_sum, out_sum) AS prev_share,
           seg_share(prompt_sum, sys_sum, img_sum, prompt_sum, out_sum) AS prompt_share,
           seg_share(img_sum, sys_sum, img_sum, prompt_sum, out_sum) AS image_share,
           seg_share(sys_sum, sys_sum, img_sum, prompt_sum, out_sum) AS system_share,
           seg_share(prompt_sum::DOUBLE + img_sum, sys_sum, img_sum, prompt_sum, out_sum) AS source_share,
           attn_out_sum::DOUBLE AS attn_out,
           1 - attn_out_sum::DOUBLE AS lookback_ratio
    FROM (
        SELECT *, row_l2::DOUBLE AS norm FROM saliency WHERE normalization = 'row'
        UNION ALL
        SELECT *, 1.0::DOUBLE AS norm FROM saliency WHERE normalization = 'none'
        UNION ALL
        SELECT *, sqrt(sum(row_l2::DOUBLE * row_l2) OVER (PARTITION BY run_id, sample_id, layer)) AS norm
        FROM saliency WHERE normalization = 'matrix'
    );

-- Per-layer rows restricted to the target layers.
CREATE OR REPLACE MACRO target_layers(layers := NULL, normalization := 'row') AS TABLE
    SELECT s.*
    FROM saliency_norm(normalization := normalization) s JOIN runs r USING (run_id)
    WHERE is_target_layer(s.layer, r.n_layers, layers);

-- One row per generated token: every score of the family, each the mean of its per-layer value over the
-- target layers (`step` is the key and the position-only baseline). attn_out is the plain attention mass on
-- prior outputs; lookback_ratio is the Lookback-Lens context share (image + system + prompt mass over all
-- mass), = 1 - attn_out because post-softmax rows sum to 1. The shares are normalization-free.
CREATE OR REPLACE MACRO token_scores(layers := NULL, normalization := 'row') AS TABLE
    SELECT run_id, sample_id, step,
           avg(out_mean) AS out_mean,
           avg(prev_n) AS prev,
           avg(out_share) AS out_share,
           avg(prev_share) AS prev_share,
           avg(prompt_share) AS prompt_share,
           avg(image_share) AS image_share,
           avg(system_share) AS system_share,
           avg(source_share) AS source_share,
           avg(attn_out) AS attn_out,
           1 - avg(attn_out) AS lookback_ratio,
           count(*)::INTEGER AS n_layers
    FROM target_layers(layers := layers, normalization := normalization)
    GROUP BY run_id, sample_id, step;

-- Token scores joined with one labelset (only labeled tokens).
CREATE OR REPLACE MACRO labeled_scores(labelset_name, layers := NULL, normalization := 'row') AS TABLE
    SELECT t.*, l.label, l.object, l.mention_id, l.subtoken
    FROM token_scores(layers := layers, normalization := normalization) t
    JOIN labels l ON l.run_id = t.run_id AND l.sample_id = t.sample_id AND l.step = t.step
    WHERE l.labelset = labelset_name;

-- Pick a score by name from a row `t` of token_scores / labeled_scores / saliency_norm (pass the table alias:
-- DuckDB hands the row over as a struct). In saliency_norm rows `prev` is raw; use the `prev_n` column there.
-- An unknown name gives NULL; callers validate names against saliency_lab/store/scores.py first.
CREATE OR REPLACE MACRO pick_score(name, t) AS
    CASE name WHEN 'out_mean' THEN t.out_mean::DOUBLE WHEN 'prev' THEN t.prev::DOUBLE
              WHEN 'out_share' THEN t.out_share::DOUBLE WHEN 'prev_share' THEN t.prev_share::DOUBLE
              WHEN 'prompt_share' THEN t.prompt_share::DOUBLE WHEN 'image_share' THEN t.image_share::DOUBLE
              WHEN 'system_share' THEN t.system_share::DOUBLE WHEN 'source_share' THEN t.source_share::DOUBLE
              WHEN 'attn_out' THEN t.attn_out::DOUBLE WHEN 'lookback_ratio' THEN t.lookback_ratio::DOUBLE
              WHEN 'step' THEN t.step::DOUBLE END;

-- Recorded top-K candidates scored like generated tokens. Under `matrix` a candidate row is divided by its
-- sample's per-layer norm from the saliency table (the candidate rows are not part of that matrix).
-- Candidate rows record out_sum, prompt_sum, prev and row_l2 only, so the segment shares and the attention
-- baselines are NULL here (the columns exist so pick_score works on these rows too).
CREATE OR REPLACE MACRO candidate_scores(layers := NULL, normalization := 'row') AS TABLE
    SELECT c.run_id, c.sample_id, c.step, c.rank,
           any_value(c.token_id) AS token_id, any_value(c.prob) AS prob,
           avg(out_mean(c.out_sum, c.norm, c.step)) AS out_mean,
           avg(norm_prev(c.prev, c.norm)) AS prev,
           NULL::DOUBLE AS out_share, NULL::DOUBLE AS prev_share, NULL::DOUBLE AS prompt_share,
           NULL::DOUBLE AS image_share, NULL::DOUBLE AS system_share, NULL::DOUBLE AS source_share,
           NULL::DOUBLE AS attn_out, NULL::DOUBLE AS lookback_ratio,
           count(*)::INTEGER AS n_layers
    FROM (
        SELECT c.*, CASE normalization WHEN 'row' THEN c.row_l2::DOUBLE WHEN 'none' THEN 1.0
                                       ELSE m.norm END AS norm
        FROM candidates c
        LEFT JOIN (SELECT DISTINCT run_id, sample_id, layer, norm
                   FROM saliency_norm(normalization := 'matrix') WHERE normalization = 'matrix') m
          ON m.run_id = c.run_id AND m.sample_id = c.sample_id AND m.layer = c.layer
    ) c
    JOIN runs r USING (run_id)
    WHERE is_target_layer(c.layer, r.n_layers, layers)
    GROUP BY c.run_id, c.sample_id, c.step, c.rank;
