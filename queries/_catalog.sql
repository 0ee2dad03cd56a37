-- _catalog.sql: macros over the catalog views (runs, samples, tokens, saliency, candidates, rows, decisions,
-- labels, label_metrics). Loaded by saliency_lab.store.catalog after the views exist; every named query in
-- this folder builds on these. Definitions follow docs/capture.md ("How saliency is computed", "Layout on disk"):
--   normalized prev         prev / norm
--   Eq. 6 out_mean          out_sum / (norm * step), step >= 1 (null at step 0: no prior output keys)
--   token score S(x_P)      mean over target layers of the per-layer value
--   norm                    row: row_l2 | none: 1 | matrix: sqrt(sum of row_l2^2 over the sample's output
--                           rows) per (run, sample, layer)
--   target layers           a list, or NULL / [] = the upper half of the run's layers (layer >= n_layers // 2)
-- Division by a zero norm gives NULL (such a row carries no saliency), never inf.

CREATE OR REPLACE MACRO norm_prev(prev, norm) AS prev / nullif(norm, 0);

CREATE OR REPLACE MACRO out_mean(out_sum, norm, step) AS
    CASE WHEN step >= 1 THEN out_sum / (nullif(norm, 0) * step) END;

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
    SELECT run_id, sample_id, step, layer, out_sum, prev, row_l2, attn_out_sum, norm,
           norm_prev(prev, norm) AS prev_n,
           out_mean(out_sum, norm, step) AS out_mean
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

-- One row per generated token: S(x_P) for out_mean and prev, and the attention-only baselines.
-- attn_out is the plain attention mass on prior outputs; lookback_ratio is the Lookback-Lens context share
-- (image + system + prompt mass over all mass), = 1 - attn_out because post-softmax rows sum to 1.
CREATE OR REPLACE MACRO token_scores(layers := NULL, normalization := 'row') AS TABLE
    SELECT run_id, sample_id, step,
           avg(out_mean) AS out_mean,
           avg(prev_n) AS prev,
           avg(attn_out_sum) AS attn_out,
           1 - avg(attn_out_sum) AS lookback_ratio,
           count(*)::INTEGER AS n_layers
    FROM target_layers(layers := layers, normalization := normalization)
    GROUP BY run_id, sample_id, step;

-- Token scores joined with one labelset (only labeled tokens).
CREATE OR REPLACE MACRO labeled_scores(labelset_name, layers := NULL, normalization := 'row') AS TABLE
    SELECT t.*, l.label, l.object, l.mention_id, l.subtoken
    FROM token_scores(layers := layers, normalization := normalization) t
    JOIN labels l ON l.run_id = t.run_id AND l.sample_id = t.sample_id AND l.step = t.step
    WHERE l.labelset = labelset_name;

-- Pick a measure by name from a row of token_scores / labeled_scores.
CREATE OR REPLACE MACRO pick_score(name, out_mean, prev, attn_out, lookback_ratio) AS
    CASE name WHEN 'out_mean' THEN out_mean WHEN 'prev' THEN prev
              WHEN 'attn_out' THEN attn_out WHEN 'lookback_ratio' THEN lookback_ratio END;

-- Recorded top-K candidates scored like generated tokens. Under `matrix` a candidate row is divided by its
-- sample's per-layer norm from the saliency table (the candidate rows are not part of that matrix).
CREATE OR REPLACE MACRO candidate_scores(layers := NULL, normalization := 'row') AS TABLE
    SELECT c.run_id, c.sample_id, c.step, c.rank,
           any_value(c.token_id) AS token_id, any_value(c.prob) AS prob,
           avg(out_mean(c.out_sum, c.norm, c.step)) AS out_mean,
           avg(norm_prev(c.prev, c.norm)) AS prev,
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
