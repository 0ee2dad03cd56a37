"""saliency_lab.analysis.stats against scipy / statsmodels / numpy and hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import Table
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from saliency_lab.analysis import stats as st


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(40), 6)
    y = (rng.random(len(g)) < 0.3).astype(int)
    x = rng.normal(0.6, 0.2, len(g)) - 0.15 * y + 0.05 * rng.normal(size=40)[g]
    return x, y, g


@pytest.mark.parametrize("k,n", [(0, 5), (3, 10), (10, 10), (17, 123)])
def test_wilson_matches_statsmodels(k, n):
    assert st.wilson(k, n) == pytest.approx(proportion_confint(k, n, method="wilson"), abs=1e-12)
    assert all(math.isnan(v) for v in st.wilson(0, 0))


def test_two_group_statistics_match_scipy(data):
    x, y, _ = data
    x1, x0 = x[y == 1], x[y == 0]
    t, p, df = st.welch(x1, x0)
    ref = sps.ttest_ind(x1, x0, equal_var=False)
    assert (t, p) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-10)
    u, up = st.mann_whitney(x1, x0)
    ref = sps.mannwhitneyu(x1, x0, alternative="two-sided")
    assert (u, up) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-10)
    # AUROC(low = hallucinated) by brute force over all pairs
    pairs = (x1[:, None] < x0[None, :]).mean() + 0.5 * (x1[:, None] == x0[None, :]).mean()
    assert st.auroc_low(x1, x0) == pytest.approx(pairs)
    assert st.auroc_low(x1, x0) == pytest.approx(1 - u / (len(x1) * len(x0)))


def test_cohen_d_and_auroc_hand_worked():
    # means 2 and 5, both sample variances 1 -> pooled sd 1 -> d = -3
    assert st.cohen_d(np.array([1.0, 2, 3]), np.array([4.0, 5, 6])) == pytest.approx(-3.0)
    # hallucinated {2, 0} vs correct {1, 2, 2}: 3 wins + 2 ties / 2 = 4 of 6 pairs
    assert st.auroc_low(np.array([2.0, 0.0]), np.array([1.0, 2.0, 2.0])) == pytest.approx(4 / 6)


def test_cochran_armitage_hand_worked_and_vs_linear_by_linear():
    n = np.array([10, 10, 10])
    k = np.array([1, 3, 6])
    # hand: p = 1/3; T = sum w (k - n p) = 0*(1-10/3) + 1*(3-10/3) + 2*(6-10/3) = 5
    # var = p(1-p) [sum w^2 n - (sum w n)^2 / N] = (2/9) [50 - 900/30] = 40/9 -> z = 5 / sqrt(40/9)
    res = st.cochran_armitage(n, k)
    assert res["z"] == pytest.approx(5 / math.sqrt(40 / 9))
    assert res["p"] == pytest.approx(2 * sps.norm.sf(5 / math.sqrt(40 / 9)))
    # statsmodels' linear-by-linear statistic equals CA z * sqrt((N - 1) / N)
    table = np.column_stack([n - k, k])
    lbl = Table(table).test_ordinal_association(row_scores=np.arange(3), col_scores=np.array([0, 1]))
    assert abs(lbl.zscore) == pytest.approx(abs(res["z"]) * math.sqrt(29 / 30))


@pytest.mark.parametrize("method,sm", [("holm", "holm"), ("bh", "fdr_bh")])
def test_p_value_adjustment_matches_statsmodels(method, sm):
    p = np.array([0.01, 0.04, 0.03, 0.2, 0.0001, 0.5, 0.049])
    assert st.adjust_pvalues(p, method) == pytest.approx(multipletests(p, method=sm)[1])
    with_nan = st.adjust_pvalues(np.array([0.01, np.nan, 0.02]), method)
    assert math.isnan(with_nan[1])
    assert with_nan[[0, 2]] == pytest.approx(multipletests([0.01, 0.02], method=sm)[1])


def test_clustered_logit_matches_numpy_newton_and_sandwich(data):
    x, y, g = data
    res = st.logit_clustered(y, x, g)
    X = np.column_stack([np.ones_like(x), x])
    b = np.zeros(2)
    for _ in range(50):
        p = 1 / (1 + np.exp(-X @ b))
        b = b + np.linalg.solve(X.T @ (X * (p * (1 - p))[:, None]), X.T @ (y - p))
    p = 1 / (1 + np.exp(-X @ b))
    bread = np.linalg.inv(X.T @ (X * (p * (1 - p))[:, None]))
    scores = X * (y - p)[:, None]
    meat = sum(np.outer(s, s) for s in (scores[g == c].sum(0) for c in np.unique(g)))
    n_g, n, k = len(np.unique(g)), len(y), 2
    cov = bread @ meat @ bread * (n_g / (n_g - 1)) * ((n - 1) / (n - k))
    assert res["coef"] == pytest.approx(b[1], rel=1e-6)
    assert res["intercept"] == pytest.approx(b[0], rel=1e-6)
    assert res["se"] == pytest.approx(math.sqrt(cov[1, 1]), rel=1e-6)
    assert res["p"] == pytest.approx(2 * sps.norm.sf(abs(b[1] / math.sqrt(cov[1, 1]))), rel=1e-5)
    assert res["n_clusters"] == 40
    assert "error" in st.logit_clustered(np.zeros(5, int), np.arange(5.0), np.arange(5))


def test_cluster_bootstrap_resamples_whole_samples_and_ci(data):
    x, y, g = data
    res = st.cluster_bootstrap(g, 50, seed=1)
    for idx in res[:5]:
        picked = g[idx]
        for c in np.unique(picked):  # every cluster appears with all its members, a whole number of times
            assert (picked == c).sum() % (g == c).sum() == 0
        assert len(idx) == len(g)  # equal cluster sizes here
    vals = []
    for idx in res:
        xb, yb = x[idx], y[idx]
        u = sps.mannwhitneyu(xb[yb == 0], xb[yb == 1]).statistic
        vals.append(u / ((yb == 0).sum() * (yb == 1).sum()))
    assert st.auroc_ci(x, y, res) == pytest.approx(tuple(np.percentile(vals, [2.5, 97.5])))
    lo, hi = st.auroc_ci(x, y, res)
    assert lo < st.auroc_low(x[y == 1], x[y == 0]) < hi


def test_weighted_auroc_equals_index_resamples_with_ties_and_unequal_clusters():
    rng = np.random.default_rng(11)
    sizes = rng.integers(1, 7, 25)  # unequal caption lengths
    g = np.repeat([f"s{i:02d}" for i in range(25)], sizes)
    x = np.round(rng.normal(size=len(g)), 1)  # rounding makes many ties
    y = (rng.random(len(g)) < 0.3).astype(int)
    res = st.cluster_bootstrap(g, 60, seed=4)
    counts, inv = st.cluster_counts(g, 60, seed=4)
    w = counts[:, inv]
    got = st.auroc_low_weighted(x, y, w)
    for b, idx in enumerate(res):
        assert np.array_equal(np.bincount(idx, minlength=len(g)), w[b])  # the very same resample
        xb, yb = x[idx], y[idx]
        n0, n1 = (yb == 0).sum(), (yb == 1).sum()
        expect = sps.mannwhitneyu(xb[yb == 0], xb[yb == 1]).statistic / (n0 * n1) if n0 and n1 else math.nan
        assert got[b] == pytest.approx(expect, abs=1e-12, nan_ok=True)
    # chunked percentile interval == auroc_ci over the index resamples
    ci = st.auroc_cluster_ci(x, y, g, 60, seed=4, chunk_elems=len(g) * 7)
    assert ci == pytest.approx(st.auroc_ci(x, y, res), abs=1e-12)
    # a resample with a single label is skipped (NaN), never a crash
    one = st.auroc_low_weighted(x, y, (y == 1).astype(int)[None, :])
    assert math.isnan(one[0])
    assert all(math.isnan(v) for v in st.auroc_cluster_ci(x, y, g, 0, seed=4))
