"""Statistics on token scores: pure functions of numpy arrays, each checked in tests against scipy,
statsmodels or a hand-worked example.

Conventions. `x1` holds the scores of hallucinated tokens, `x0` those of correct tokens. Cohen's d is
(mean1 - mean0) / pooled sd, so it is negative when hallucinated tokens score lower. AUROC is the probability
that a hallucinated token scores *lower* than a correct one (ties count half): the score read as a
hallucination detector where low means hallucinated.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy import stats as sps

Z95 = 1.959963984540054


def wilson(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n; (nan, nan) when n == 0."""
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    den = 1 + z * z / n
    return (max(0.0, (centre - half) / den), min(1.0, (centre + half) / den))


def cohen_d(x1: np.ndarray, x0: np.ndarray) -> float:
    """Cohen's d of x1 against x0 with the pooled sd; NaN with fewer than 2 values in a group or no spread."""
    n1, n0 = len(x1), len(x0)
    if n1 < 2 or n0 < 2:
        return math.nan
    sp2 = ((n1 - 1) * np.var(x1, ddof=1) + (n0 - 1) * np.var(x0, ddof=1)) / (n1 + n0 - 2)
    return float((np.mean(x1) - np.mean(x0)) / math.sqrt(sp2)) if sp2 > 0 else math.nan


def auroc_low(x1: np.ndarray, x0: np.ndarray) -> float:
    """P(x1 < x0) + 0.5 P(x1 == x0) via rank sums with average ranks for ties."""
    n1, n0 = len(x1), len(x0)
    if n1 == 0 or n0 == 0:
        return math.nan
    ranks = sps.rankdata(np.concatenate([x0, x1]))
    r0 = ranks[:n0].sum()
    return float((r0 - n0 * (n0 + 1) / 2.0) / (n0 * n1))


def welch(x1: np.ndarray, x0: np.ndarray) -> tuple[float, float, float]:
    """Welch's t (x1 minus x0), its two-sided p-value and the Welch-Satterthwaite df."""
    if len(x1) < 2 or len(x0) < 2:
        return (math.nan, math.nan, math.nan)
    v1, v0 = np.var(x1, ddof=1) / len(x1), np.var(x0, ddof=1) / len(x0)
    se = math.sqrt(v1 + v0)
    if se == 0:
        return (math.nan, math.nan, math.nan)
    t = (np.mean(x1) - np.mean(x0)) / se
    df = (v1 + v0) ** 2 / (v1**2 / (len(x1) - 1) + v0**2 / (len(x0) - 1))
    return (float(t), float(2 * sps.t.sf(abs(t), df)), float(df))


def mann_whitney(x1: np.ndarray, x0: np.ndarray) -> tuple[float, float]:
    """Mann-Whitney U of x1 (two-sided, asymptotic with tie correction) and its p-value."""
    if len(x1) == 0 or len(x0) == 0:
        return (math.nan, math.nan)
    res = sps.mannwhitneyu(x1, x0, alternative="two-sided", method="asymptotic")
    return (float(res.statistic), float(res.pvalue))


def cluster_bootstrap(
    groups: np.ndarray, n_boot: int, seed: int
) -> list[np.ndarray]:
    """Index arrays of `n_boot` bootstrap resamples that draw whole clusters (samples) with replacement."""
    rng = np.random.default_rng(seed)
    uniq, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(uniq))]
    out = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(uniq), len(uniq))
        out.append(np.concatenate([members[g] for g in pick]) if len(pick) else np.array([], dtype=int))
    return out


def auroc_ci(
    x: np.ndarray, y: np.ndarray, resamples: list[np.ndarray], level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of auroc_low(x[y==1], x[y==0]) over the given resamples."""
    vals = []
    for idx in resamples:
        xb, yb = x[idx], y[idx]
        a = auroc_low(xb[yb == 1], xb[yb == 0])
        if not math.isnan(a):
            vals.append(a)
    if not vals:
        return (math.nan, math.nan)
    lo, hi = np.percentile(vals, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return (float(lo), float(hi))


def cluster_counts(groups: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The resamples of `cluster_bootstrap(groups, n_boot, seed)` as multiplicities: counts [n_boot, n_clusters]
    (how often each cluster was drawn) and each element's cluster index. Same RNG stream, same draws."""
    rng = np.random.default_rng(seed)
    uniq, inv = np.unique(groups, return_inverse=True)
    counts = np.zeros((n_boot, len(uniq)), dtype=np.int64)
    for b in range(n_boot):
        pick = rng.integers(0, len(uniq), len(uniq))
        counts[b] = np.bincount(pick, minlength=len(uniq))
    return counts, inv


def auroc_low_weighted(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """auroc_low of each weighted resample: weights [B, n] are element multiplicities, so row b equals
    auroc_low on the data with element i repeated weights[b, i] times (NaN where a label is absent).

    One sort for all resamples: within each group of tied values, P(x1 < x0) counts correct weight strictly
    above, ties count half."""
    num, den = pair_counts_weighted(x, y, weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def pair_counts_weighted(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per weighted resample (weights [B, n], element multiplicities): the number of (hallucinated, correct)
    pairs with the hallucinated token lower, ties counting half, and the number of pairs. Their ratio is
    auroc_low; sums over strata give the stratified AUROC."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]]) if len(xs) else np.array([], dtype=int)
    w = weights[:, order].astype(np.float64)
    g0 = np.add.reduceat(w * (ys == 0), starts, axis=1) if len(xs) else w[:, :0]
    g1 = np.add.reduceat(w * (ys == 1), starts, axis=1) if len(xs) else w[:, :0]
    tot0, tot1 = g0.sum(axis=1), g1.sum(axis=1)
    above0 = tot0[:, None] - np.cumsum(g0, axis=1)
    num = (g1 * above0).sum(axis=1) + 0.5 * (g1 * g0).sum(axis=1)
    return num, tot0 * tot1


def stratified_auroc_weighted(x: np.ndarray, y: np.ndarray, strata: np.ndarray,
                              weights: np.ndarray) -> np.ndarray:
    """Position-controlled AUROC of each weighted resample (weights [B, n]): hallucinated and correct tokens
    are paired only within a stratum, and every within-stratum pair counts once:

        A = sum_s [#(x1 < x0) + #(x1 == x0) / 2]_s / sum_s (n1_s * n0_s)

    i.e. the per-stratum AUROCs averaged with weights n1_s * n0_s (the pairs they hold). Strata holding only
    one label add no pairs. NaN where no stratum holds both labels."""
    num = np.zeros(weights.shape[0])
    den = np.zeros(weights.shape[0])
    for s in np.unique(strata):
        sel = strata == s
        if len(np.unique(y[sel])) < 2:
            continue
        n_s, d_s = pair_counts_weighted(x[sel], y[sel], weights[:, sel])
        num += n_s
        den += d_s
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def stratified_auroc(x: np.ndarray, y: np.ndarray, strata: np.ndarray) -> float:
    """The position-controlled AUROC of `stratified_auroc_weighted` on the data as given."""
    return float(stratified_auroc_weighted(x, y, strata, np.ones((1, len(x))))[0]) if len(x) else math.nan


def cluster_ci_of(stat, x: np.ndarray, y: np.ndarray, groups: np.ndarray, n_boot: int, seed: int,
                  level: float = 0.95, chunk_elems: int = 4_000_000) -> tuple[float, float]:
    """Percentile interval over `n_boot` cluster (sample) resamples of `stat(x, y, weights [B, n])`, a
    function of element multiplicities such as auroc_low_weighted (same draws as cluster_bootstrap)."""
    if n_boot <= 0 or len(x) == 0:
        return (math.nan, math.nan)
    counts, inv = cluster_counts(groups, n_boot, seed)
    step = max(1, chunk_elems // max(1, len(x)))
    vals = np.concatenate([stat(x, y, counts[b:b + step][:, inv]) for b in range(0, n_boot, step)])
    vals = vals[~np.isnan(vals)]
    if not len(vals):
        return (math.nan, math.nan)
    lo, hi = np.percentile(vals, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return (float(lo), float(hi))


def auroc_cluster_ci(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, n_boot: int, seed: int, level: float = 0.95,
    chunk_elems: int = 4_000_000,
) -> tuple[float, float]:
    """Percentile interval of auroc_low over `n_boot` cluster (sample) resamples: the same numbers as
    `auroc_ci(x, y, cluster_bootstrap(groups, n_boot, seed))`, computed from multiplicities in chunks (fast
    enough to run for every layer and measure)."""
    if n_boot <= 0 or len(x) == 0:
        return (math.nan, math.nan)
    counts, inv = cluster_counts(groups, n_boot, seed)
    step = max(1, chunk_elems // max(1, len(x)))
    vals = np.concatenate([auroc_low_weighted(x, y, counts[b:b + step][:, inv]) for b in range(0, n_boot, step)])
    vals = vals[~np.isnan(vals)]
    if not len(vals):
        return (math.nan, math.nan)
    lo, hi = np.percentile(vals, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return (float(lo), float(hi))


def logit_clustered(y: np.ndarray, x: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """Logistic regression label ~ 1 + score with standard errors clustered by `groups` (statsmodels)."""
    import statsmodels.api as sm

    out: dict[str, Any] = {"coef": None, "se": None, "z": None, "p": None, "intercept": None,
                           "n": int(len(y)), "n_clusters": int(len(np.unique(groups)))}
    if len(np.unique(y)) < 2 or len(y) < 3 or np.ptp(x) == 0:
        out["error"] = "needs both labels and a non-constant score"
        return out
    _, gid = np.unique(groups, return_inverse=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = sm.Logit(y.astype(float), sm.add_constant(x.astype(float), has_constant="add")).fit(
                disp=0, cov_type="cluster", cov_kwds={"groups": gid}
            )
    except Exception as exc:  # perfect separation, singular matrix: report, don't crash the analysis
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    out.update(coef=float(fit.params[1]), se=float(fit.bse[1]), z=float(fit.tvalues[1]),
               p=float(fit.pvalues[1]), intercept=float(fit.params[0]))
    return out


def logit_clustered_multi(y: np.ndarray, columns: dict[str, np.ndarray], groups: np.ndarray) -> dict[str, Any]:
    """Logistic regression label ~ 1 + columns (in order) with standard errors clustered by `groups`
    (statsmodels `cov_type="cluster"`). Returns {name: {coef, se, z, p}} plus n, n_clusters, or an error."""
    import statsmodels.api as sm

    out: dict[str, Any] = {"n": int(len(y)), "n_clusters": int(len(np.unique(groups)))}
    names = list(columns)
    x = np.column_stack([np.asarray(columns[n], float) for n in names]) if names else np.empty((len(y), 0))
    if len(np.unique(y)) < 2 or len(y) < len(names) + 2 or any(np.ptp(x[:, i]) == 0 for i in range(x.shape[1])):
        out["error"] = "needs both labels and non-constant predictors"
        return out
    _, gid = np.unique(groups, return_inverse=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = sm.Logit(y.astype(float), sm.add_constant(x, has_constant="add")).fit(
                disp=0, cov_type="cluster", cov_kwds={"groups": gid}
            )
    except Exception as exc:  # perfect separation, singular matrix: report, don't crash the analysis
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    for i, n in enumerate(names, start=1):
        out[n] = {"coef": float(fit.params[i]), "se": float(fit.bse[i]), "z": float(fit.tvalues[i]),
                  "p": float(fit.pvalues[i])}
    return out


def cochran_armitage(n: np.ndarray, k: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
    """Cochran-Armitage trend test: k[i] events out of n[i] in ordered groups with scores `weights`
    (default 0, 1, 2, ...). z > 0 means the event rate rises with the weight. Two-sided p."""
    n, k = np.asarray(n, float), np.asarray(k, float)
    w = np.arange(len(n), dtype=float) if weights is None else np.asarray(weights, float)
    keep = n > 0
    n, k, w = n[keep], k[keep], w[keep]
    big_n, big_k = n.sum(), k.sum()
    if big_n == 0 or big_k in (0, big_n) or len(n) < 2:
        return {"z": math.nan, "p": math.nan}
    p = big_k / big_n
    t = np.sum(w * (k - n * p))
    var = p * (1 - p) * (np.sum(w * w * n) - np.sum(w * n) ** 2 / big_n)
    if var <= 0:
        return {"z": math.nan, "p": math.nan}
    z = t / math.sqrt(var)
    return {"z": float(z), "p": float(2 * sps.norm.sf(abs(z)))}


def adjust_pvalues(p: np.ndarray, method: str) -> np.ndarray:
    """Holm (family-wise) or Benjamini-Hochberg (FDR) adjusted p-values; NaNs stay NaN and don't count."""
    p = np.asarray(p, float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = len(q)
    if m == 0:
        return out
    order = np.argsort(q, kind="mergesort")
    sq = q[order]
    if method == "holm":
        adj = np.maximum.accumulate((m - np.arange(m)) * sq)
    elif method == "bh":
        adj = np.minimum.accumulate(m / np.arange(m, 0, -1) * sq[::-1])[::-1]
    else:
        raise ValueError(f"unknown correction {method!r}")
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


def compare_groups(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Every two-group statistic for score x and label y (1 = hallucinated)."""
    x1, x0 = x[y == 1], x[y == 0]
    t, tp, df = welch(x1, x0)
    u, up = mann_whitney(x1, x0)
    return {
        "n_correct": int(len(x0)), "n_halluc": int(len(x1)),
        "mean_correct": float(np.mean(x0)) if len(x0) else math.nan,
        "sd_correct": float(np.std(x0, ddof=1)) if len(x0) > 1 else math.nan,
        "mean_halluc": float(np.mean(x1)) if len(x1) else math.nan,
        "sd_halluc": float(np.std(x1, ddof=1)) if len(x1) > 1 else math.nan,
        "welch_t": t, "welch_df": df, "welch_p": tp,
        "mannwhitney_u": u, "mannwhitney_p": up,
        "cohen_d": cohen_d(x1, x0), "auroc": auroc_low(x1, x0),
    }
