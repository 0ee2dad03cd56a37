"""Position control: the stratified AUROC against brute-force pair counting, the clustered logistic
regression against a hand-built sandwich estimator and an unpenalized scikit-learn fit, and `analyze` on
synthetic runs where a score depends only on the step (confounded) or separates within steps."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.special import expit

from saliency_lab.analysis import AnalysisConfig, analyze
from saliency_lab.analysis.separation import GAP_WARN, format_table
from saliency_lab.analysis.stats import (
    cluster_counts,
    logit_clustered_multi,
    stratified_auroc,
    stratified_auroc_weighted,
)
from saliency_lab.cli import main
from saliency_lab.store.synthetic import SyntheticSpec, make_run
from saliency_lab.store.writer import write_part_atomic


def _brute_stratified(x, y, strata):
    num = den = 0.0
    for s in np.unique(strata):
        x1 = x[(strata == s) & (y == 1)]
        x0 = x[(strata == s) & (y == 0)]
        num += (x1[:, None] < x0[None, :]).sum() + 0.5 * (x1[:, None] == x0[None, :]).sum()
        den += len(x1) * len(x0)
    return num / den


def test_stratified_auroc_counts_pairs_within_strata_only():
    # stratum 0: hallucinated {1}, correct {2, 3} -> 2 of 2 pairs lower; stratum 1: hallucinated {5, 9},
    # correct {5} -> one tie (1/2) and one higher (0): 0.5 of 2 pairs; stratum 2 holds one label: no pairs.
    x = np.array([1.0, 2, 3, 5, 9, 5, 7])
    y = np.array([1, 0, 0, 1, 1, 0, 1])
    strata = np.array([0, 0, 0, 1, 1, 1, 2])
    assert stratified_auroc(x, y, strata) == pytest.approx((2 + 0.5) / 4)
    # pooled over all pairs would differ: hallucinated 7 and 9 sit above every correct token
    rng = np.random.default_rng(3)
    x, y, strata = rng.normal(size=300).round(1), rng.integers(0, 2, 300), rng.integers(0, 7, 300)
    assert stratified_auroc(x, y, strata) == pytest.approx(_brute_stratified(x, y, strata), rel=1e-12)


def test_weighted_stratified_auroc_equals_repeating_elements():
    rng = np.random.default_rng(5)
    x, y, strata = rng.normal(size=80).round(1), rng.integers(0, 2, 80), rng.integers(0, 4, 80)
    groups = rng.integers(0, 15, 80)
    counts, inv = cluster_counts(groups, 6, seed=1)
    got = stratified_auroc_weighted(x, y, strata, counts[:, inv])
    for b in range(6):
        rep = np.repeat(np.arange(80), counts[b, inv])
        assert got[b] == pytest.approx(_brute_stratified(x[rep], y[rep], strata[rep]), rel=1e-12)


def test_logit_clustered_multi_matches_sandwich_by_hand():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(11)
    n, g = 400, 40
    groups = rng.integers(0, g, n)
    a, b = rng.normal(size=n), rng.normal(size=n) + rng.normal(size=g)[groups]
    y = (rng.random(n) < expit(0.3 + 0.8 * a - 0.5 * b)).astype(int)
    fit = logit_clustered_multi(y, {"a": a, "b": b}, groups)
    sk = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(np.column_stack([a, b]), y)
    assert [fit["a"]["coef"], fit["b"]["coef"]] == pytest.approx(sk.coef_[0].tolist(), rel=1e-5)
    # cluster-robust sandwich H^-1 (sum_g s_g s_g') H^-1 with the small-sample factor G/(G-1) (N-1)/(N-K)
    X = np.column_stack([np.ones(n), a, b])
    beta = np.r_[sk.intercept_, sk.coef_[0]]
    p = expit(X @ beta)
    hess = X.T @ (X * (p * (1 - p))[:, None])
    scores = X * (y - p)[:, None]
    meat = sum(np.outer(s, s) for s in (scores[groups == k].sum(0) for k in np.unique(groups)))
    k = X.shape[1]
    cov = np.linalg.inv(hess) @ meat @ np.linalg.inv(hess) * g / (g - 1) * (n - 1) / (n - k)
    assert [fit["a"]["se"], fit["b"]["se"]] == pytest.approx(np.sqrt(np.diag(cov))[1:].tolist(), rel=1e-4)
    assert fit["n_clusters"] == g
    assert "error" in logit_clustered_multi(y, {"a": np.ones(n)}, groups)


def _confound(run, seed=0):
    """Rewrite a synthetic run so that out_mean depends only on the step (1 / (1 + step) plus label-free
    noise) and later tokens are more often hallucinated: a pure position effect."""
    rng = np.random.default_rng(seed)
    for f in sorted((run / "saliency").glob("shard=*/part-*.parquet")):
        t = pq.read_table(f)
        step = t.column("step").to_numpy().astype(float)
        l2 = t.column("row_l2").to_numpy().astype(float)
        level = 1.0 / (1.0 + step) * np.exp(rng.normal(0, 0.05, len(step)))
        out = np.where(step >= 1, level * l2 * step, 0.0).astype(np.float32)
        t = t.set_column(t.schema.get_field_index("out_sum"), t.schema.field("out_sum"), pa.array(out))
        write_part_atomic(t, f)
    path = run / "labels" / "chair.parquet"
    t = pq.read_table(path)
    step = t.column("step").to_numpy().astype(float)
    lab = (rng.random(len(step)) < np.clip(step / 26, 0.05, 0.95)).astype(np.int8)
    t = t.set_column(t.schema.get_field_index("label"), t.schema.field("label"), pa.array(lab))
    write_part_atomic(t, path)


def test_score_driven_by_step_only_is_flagged(tmp_path, capsys):
    run = make_run(tmp_path, "pos", SyntheticSpec(n_samples=60, min_steps=6, max_steps=26, effect=0.0, seed=2))
    _confound(run)
    assert main(["analyze", str(run), "--labels", "chair", "--scores", "out_mean,step", "--out",
                 str(tmp_path / "an"), "--n-bootstrap", "200"]) == 0
    printed = capsys.readouterr().out
    res = analyze([run], "chair", AnalysisConfig(score="out_mean,step", n_bootstrap=200))
    om, st = res.separation["pos"]
    assert om.score == "out_mean" and st.score == "step"
    assert om.pooled_auroc > 0.7  # later tokens: lower Eq. 6 and more hallucinations
    assert abs(om.controlled_auroc - 0.5) < 0.06 and om.controlled_ci[0] < 0.5 < om.controlled_ci[1]
    assert om.spearman_step < -0.9 and st.pooled_auroc < 0.3  # hallucinated tokens come later
    assert abs(om.pooled_auroc - om.controlled_auroc) > GAP_WARN and len(om.warnings) == 2
    for w in om.warnings:
        assert w.startswith("out_mean:") and f"warning: {w}" in printed
    assert om.logit_p > 0.01  # with step and log step in the model, out_mean adds nothing
    assert "pooled AUROC [95% CI]" in printed and "step-controlled" in printed
    # the layer profile carries the same control per layer
    lp = res.layer_profile.filter(res.layer_profile["measure"] == "out_mean")
    assert (lp["auroc"] > 0.65).all() and ((lp["auroc_controlled"] - 0.5).abs() < 0.1).all()


def test_score_separating_within_steps_agrees_pooled_and_controlled(tmp_path):
    run = make_run(tmp_path, "eff", SyntheticSpec(n_samples=60, effect=0.3, seed=4))
    res = analyze([run], "chair", AnalysisConfig(score="all", n_bootstrap=200))
    rows = {r.score: r for r in res.separation["eff"]}
    assert set(rows) == {"out_mean", "prev", "out_share", "prev_share", "prompt_share", "image_share",
                         "system_share", "source_share", "attn_out", "lookback_ratio", "step"}
    om = rows["out_mean"]
    assert om.pooled_auroc > 0.8 and om.controlled_auroc > 0.8 and om.controlled_ci[0] > 0.6
    assert abs(om.pooled_auroc - om.controlled_auroc) < GAP_WARN and not om.warnings
    assert om.logit_coef < 0 and om.logit_p < 1e-4  # low saliency -> hallucination, step held fixed
    assert rows["step"].controlled_auroc == pytest.approx(0.5)  # within a step the step is a tie
    assert rows["lookback_ratio"].pooled_auroc == pytest.approx(1 - rows["attn_out"].pooled_auroc)
    lines = format_table(res.separation["eff"])
    assert len([x for x in lines if x.split()[0] in rows and x.split()[1].isdigit()]) == len(rows)
    bands = res.step_bands.filter(res.step_bands["measure"] == "out_mean")
    assert (bands["step_hi"] - bands["step_lo"] == 8).all() and bands["n"].sum() == om.n_pos + om.n_neg
    paths = res.write(tmp_path / "out")
    assert paths["separation"].is_file() and paths["step_bands"].is_file()


def test_bad_score_name_is_one_line_error(tmp_path, capsys):
    run = make_run(tmp_path, "b", SyntheticSpec(n_samples=4))
    assert main(["analyze", str(run), "--labels", "chair", "--scores", "out_mean,bogus", "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bogus" in err[0] and "all" in err[0]
