"""Offline SGRS calibration (docs/analysis.md, "`saliency-lab calibrate`"): replay recorded generations and ask, for each threshold
setting, which tokens SGRS would have rejected.

Replay rule, at output step P of a sample (steps in decoding order), the decoder's rule (decoding/selection.py):
    history = scores of the tokens at steps P-W .. P-1 that have a score; step 0 has none for any score (SGRS
              scores no step-0 candidate, replay_tokens.sql) and, in a run decoded with SGRS, its fallback
              tokens (emitted after every draw failed tau) do not count, as in the decoder
    tau     = alpha * mean(history), or 0 when the history is empty
    reject low (the paper's rule): the token at P "would be rejected" when its score < tau;
    reject high: when its score > tau, and never with an empty history.
    A token without a score is never rejected.
Every recorded token counts as accepted for later histories: the replay keeps the recorded sequence, since
what SGRS would have generated instead is unknown offline.

Per setting:
    recall                 rejected hallucinated / labeled hallucinated tokens
    false_rejection_rate   rejected correct / labeled correct tokens
    expected_resamples     mean over all generated tokens of the extra draws SGRS would make. With recorded
                           candidates: a rejected token is draw 1; the other candidates are drawn in rank
                           order until one scores >= tau, at most max_resample - 1 extra draws. Without
                           candidates: 1 per rejected token (a lower bound).
    all_below_rate         share of scored steps with candidates where every recorded candidate fails tau
                           (SGRS would fall back); null without candidates.

Which setting to recommend (`verdict`). Recall and false rejection are both shares of labeled tokens, so a
rule that rejects at random has recall = false-rejection rate; only recall - false rejection > 0 beats
chance. Its uncertainty comes from a bootstrap that resamples whole samples (the same resamples for every
setting). Because the best of hundreds of settings is picked, the bound is simultaneous (max-t): with
d_s the difference of setting s, sd_s its bootstrap sd and q the 95th percentile over resamples of
max_s (d*_s - d_s) / sd_s, the lower bound is d_s - q * sd_s, so all bounds hold together with ~95%
probability. A setting is recommendable when that bound is above 0; among the recommendable ones within
the false-rejection budget the highest recall wins (ties as in `recommend`). None recommendable, or none
within budget: no recommendation, with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np
import polars as pl

GRID_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "score": pl.String, "reject": pl.String, "candidates_used": pl.Boolean,
    "alpha": pl.Float64, "window": pl.Int64, "layer_set": pl.String, "layers": pl.List(pl.Int64),
    "n_halluc": pl.Int64, "n_correct": pl.Int64, "n_tokens": pl.Int64, "n_scored": pl.Int64,
    "recall": pl.Float64, "false_rejection_rate": pl.Float64, "expected_resamples": pl.Float64,
    "all_below_rate": pl.Float64,
}


@dataclass
class ReplayData:
    """Tokens of all samples, sorted by (run, sample, step), and optionally their recorded candidates."""

    group: np.ndarray  # int id of (run, sample) per token
    score: np.ndarray  # float, NaN = no score
    label: np.ndarray  # 1 hallucinated, 0 correct, -1 unlabeled
    token_id: np.ndarray
    cand_tok: np.ndarray | None = None  # index into the token arrays, per candidate row
    cand_pos: np.ndarray | None = None  # draw order among the other candidates (rank order); -1 = the token
    cand_score: np.ndarray | None = None
    in_history: np.ndarray | None = None  # False for the fallback tokens of an SGRS run; None = every token

    def history_score(self) -> np.ndarray:
        """The scores later taus are built from: NaN where a token does not count (module docstring)."""
        if self.in_history is None:
            return self.score
        return np.where(self.in_history, self.score, np.nan)

    @classmethod
    def from_frames(cls, tokens: pl.DataFrame, candidates: pl.DataFrame | None = None) -> ReplayData:
        """Replay arrays from the replay_tokens query (and replay_candidates, when recorded)."""
        tokens = tokens.sort(["run_id", "sample_id", "step"])
        key = tokens.select(pl.concat_str(["run_id", "sample_id"], separator="\x00")).to_series().to_numpy()
        _, group = np.unique(key, return_inverse=True)
        data = cls(
            group=group,
            score=tokens["score"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
            label=tokens["label"].cast(pl.Int64).fill_null(-1).to_numpy(),
            token_id=tokens["token_id"].to_numpy(),
        )
        if "fallback" in tokens.columns:
            data.in_history = ~tokens["fallback"].fill_null(False).to_numpy().astype(bool)
        if candidates is not None and candidates.height:
            idx = tokens.select("run_id", "sample_id", "step", "token_id").with_row_index("tok")
            c = candidates.join(idx.rename({"token_id": "chosen"}), on=["run_id", "sample_id", "step"])
            c = c.sort(["tok", "rank"]).with_columns(other=pl.col("token_id") != pl.col("chosen"))
            c = c.with_columns(
                pos=pl.when(pl.col("other")).then(pl.col("other").cast(pl.Int64).cum_sum().over("tok") - 1)
                .otherwise(-1)
            )
            data.cand_tok = c["tok"].cast(pl.Int64).to_numpy()
            data.cand_pos = c["pos"].to_numpy()
            data.cand_score = c["score"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        return data


def history_mean(group: np.ndarray, score: np.ndarray, window: int) -> np.ndarray:
    """Mean of the non-missing scores among the previous `window` rows of the same group; NaN if none."""
    n = len(score)
    have = ~np.isnan(score)
    cs = np.concatenate([[0.0], np.cumsum(np.where(have, score, 0.0))])
    cc = np.concatenate([[0], np.cumsum(have)])
    i = np.arange(n)
    starts = np.zeros(n, dtype=np.int64)
    if n:
        first = np.r_[True, group[1:] != group[:-1]]
        starts = np.maximum.accumulate(np.where(first, i, 0))
    lo = np.maximum(i - window, starts)
    total, count = cs[i] - cs[lo], cc[i] - cc[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def rejections(data: ReplayData, alpha: float, window: int, hist: np.ndarray | None = None,
               reject: str = "low") -> tuple[np.ndarray, np.ndarray]:
    """tau per token and the mask of tokens the rule would reject (module docstring)."""
    hist = history_mean(data.group, data.history_score(), window) if hist is None else hist
    scored = ~np.isnan(data.score)
    x = np.where(scored, data.score, 0.0)
    if reject == "high":
        tau = np.where(np.isnan(hist), np.inf, alpha * hist)
        return tau, scored & (x > tau)
    tau = np.where(np.isnan(hist), 0.0, alpha * hist)
    return tau, scored & (x < tau)


def replay(data: ReplayData, alpha: float, window: int, max_resample: int = 3,
           hist: np.ndarray | None = None, reject: str = "low") -> dict[str, float]:
    """Metrics of one (alpha, window) setting on one set of token scores."""
    tau, rejected = rejections(data, alpha, window, hist, reject)
    scored = ~np.isnan(data.score)
    is_h, is_c = data.label == 1, data.label == 0
    n_h, n_c = int(is_h.sum()), int(is_c.sum())
    out = {
        "n_halluc": n_h, "n_correct": n_c, "n_tokens": int(len(tau)), "n_scored": int(scored.sum()),
        "recall": float(rejected[is_h].sum() / n_h) if n_h else math.nan,
        "false_rejection_rate": float(rejected[is_c].sum() / n_c) if n_c else math.nan,
    }
    if data.cand_tok is None:
        out["expected_resamples"] = float(rejected.sum() / len(tau)) if len(tau) else math.nan
        out["all_below_rate"] = math.nan
        return out
    ct, cp, csc = data.cand_tok, data.cand_pos, data.cand_score
    assert cp is not None and csc is not None  # set together with cand_tok
    ctau = tau[ct]
    cx = np.where(np.isnan(csc), 0.0, csc)
    passes = ~np.isnan(csc) & ((cx <= ctau) if reject == "high" else (cx >= ctau))
    n = len(tau)
    big = np.iinfo(np.int64).max
    first = np.full(n, big, dtype=np.int64)
    draws = (cp >= 0) & (cp < max_resample - 1)
    sel = draws & passes
    np.minimum.at(first, ct[sel], cp[sel])
    n_other = np.bincount(ct[cp >= 0], minlength=n)
    extra = np.where(first < big, first + 1, np.minimum(max_resample - 1, n_other))
    resamples = np.where(rejected, extra, 0)
    out["expected_resamples"] = float(resamples.mean()) if n else math.nan
    has_cand = np.bincount(ct, minlength=n) > 0
    n_pass = np.bincount(ct[passes], minlength=n)
    steps = has_cand & scored
    out["all_below_rate"] = float((n_pass[steps] == 0).mean()) if steps.any() else math.nan
    return out


@dataclass
class GroupCounts:
    """Per setting (rows) and sample (columns): rejected and labeled hallucinated / correct tokens; the input
    of the bootstrap in `verdict`."""

    h_rej: list[np.ndarray] = field(default_factory=list)
    c_rej: list[np.ndarray] = field(default_factory=list)
    h_tot: list[np.ndarray] = field(default_factory=list)
    c_tot: list[np.ndarray] = field(default_factory=list)
    sample_keys: list[np.ndarray] = field(default_factory=list)  # the sample key of each column


def grid_rows(data: ReplayData, layer_set: str, layers: list[int], alphas: list[float],
              windows: list[int], max_resample: int, score: str = "out_mean", reject: str = "low",
              counts: GroupCounts | None = None, sample_keys: np.ndarray | None = None) -> list[dict]:
    """One row per (window, alpha) on one score / direction / layer set; per-sample counts go to `counts`."""
    rows = []
    n_g = int(data.group.max()) + 1 if len(data.group) else 0
    is_h, is_c = data.label == 1, data.label == 0
    h_tot = np.bincount(data.group[is_h], minlength=n_g)
    c_tot = np.bincount(data.group[is_c], minlength=n_g)
    for w in windows:
        hist = history_mean(data.group, data.history_score(), int(w))
        for a in alphas:
            m = replay(data, float(a), int(w), max_resample, hist=hist, reject=reject)
            rows.append({"score": score, "reject": reject, "candidates_used": data.cand_tok is not None,
                         "alpha": float(a), "window": int(w), "layer_set": layer_set,
                         "layers": [int(x) for x in layers], **m})
            if counts is not None:
                _, rej = rejections(data, float(a), int(w), hist, reject)
                counts.h_rej.append(np.bincount(data.group[rej & is_h], minlength=n_g))
                counts.c_rej.append(np.bincount(data.group[rej & is_c], minlength=n_g))
                counts.h_tot.append(h_tot)
                counts.c_tot.append(c_tot)
                counts.sample_keys.append(sample_keys if sample_keys is not None else np.arange(n_g))
    return rows


def _aligned(mats: list[np.ndarray], keys: list[np.ndarray], universe: np.ndarray) -> np.ndarray:
    """Stack per-setting count vectors onto one sample axis (settings may come from different token sets)."""
    out = np.zeros((len(mats), len(universe)))
    for i, (m, k) in enumerate(zip(mats, keys, strict=True)):
        out[i, np.searchsorted(universe, k)] = m
    return out


class DifferenceBounds(TypedDict):
    """`difference_bounds` per setting (arrays) and the max-t quantile `q` (NaN without live settings)."""

    diff: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    lower: np.ndarray
    q: float


def difference_bounds(counts: GroupCounts, n_boot: int, seed: int,
                      level: float = 0.95) -> DifferenceBounds:
    """Per setting: recall - false rejection (`diff`), its pointwise percentile interval and the
    simultaneous (max-t) lower bound over all settings (module docstring), from one set of sample resamples."""
    universe = np.unique(np.concatenate(counts.sample_keys)) if counts.sample_keys else np.array([])
    mats = {k: _aligned(getattr(counts, k), counts.sample_keys, universe)
            for k in ("h_rej", "c_rej", "h_tot", "c_tot")}
    n_s = mats["h_rej"].shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = mats["h_rej"].sum(1) / mats["h_tot"].sum(1) - mats["c_rej"].sum(1) / mats["c_tot"].sum(1)
    nan = np.full(n_s, np.nan)
    if n_boot <= 0 or n_s == 0 or len(universe) == 0:
        return {"diff": diff, "ci_low": nan, "ci_high": nan, "lower": nan, "q": math.nan}
    rng = np.random.default_rng(seed)
    w = np.stack([np.bincount(rng.integers(0, len(universe), len(universe)), minlength=len(universe))
                  for _ in range(n_boot)]).astype(np.float64)  # [B, G] multiplicities
    with np.errstate(invalid="ignore", divide="ignore"):
        d_b = (w @ mats["h_rej"].T) / (w @ mats["h_tot"].T) - (w @ mats["c_rej"].T) / (w @ mats["c_tot"].T)
    lo, hi = np.nanpercentile(d_b, [100 * (1 - level) / 2, 100 * (1 + level) / 2], axis=0)
    sd = np.nanstd(d_b, axis=0)
    live = (sd > 0) & np.isfinite(diff)
    q = math.nan
    lower = np.where(np.isfinite(diff), diff, np.nan)
    if live.any():
        t = np.nanmax((d_b[:, live] - diff[live][None, :]) / sd[live][None, :], axis=1)
        q = float(np.nanpercentile(t, 100 * level))
        lower = np.where(live, diff - q * sd, lower)
    return {"diff": diff, "ci_low": lo, "ci_high": hi, "lower": lower, "q": q}


def pareto_mask(recall: np.ndarray, frr: np.ndarray) -> np.ndarray:
    """True for settings no other setting beats: higher-or-equal recall at lower-or-equal false rejection,
    strictly better in one. Settings with undefined metrics are never on the frontier."""
    ok = ~(np.isnan(recall) | np.isnan(frr))
    on = np.zeros(len(recall), dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (recall >= recall[i]) & (frr <= frr[i]) & ((recall > recall[i]) | (frr < frr[i]))
        on[i] = not dominated.any()
    return on


def recommend(grid: pl.DataFrame, budget: float) -> tuple[dict | None, bool]:
    """The setting with the highest recall among those with false_rejection_rate <= budget; ties go to
    lower false rejection, fewer resamples, then alpha nearest the paper's 0.6 and W nearest 5. When no
    setting meets the budget, the one with the lowest false-rejection rate (within_budget = False)."""
    g = grid.filter(pl.col("recall").is_not_nan() & pl.col("false_rejection_rate").is_not_nan())
    if g.height == 0:
        return None, False
    g = g.with_row_index("_order").with_columns(
        _da=(pl.col("alpha") - 0.6).abs(), _dw=(pl.col("window") - 5).abs()
    )
    within = g.filter(pl.col("false_rejection_rate") <= budget + 1e-12)
    if within.height:
        best = within.sort(["recall", "false_rejection_rate", "expected_resamples", "_da", "_dw", "_order"],
                           descending=[True, False, False, False, False, False]).row(0, named=True)
        return best, True
    best = g.sort(["false_rejection_rate", "recall", "_da", "_dw", "_order"],
                  descending=[False, True, False, False, False]).row(0, named=True)
    return best, False


def _describe(r: dict) -> str:
    return (f"{r['score']} reject {r['reject']}, alpha {r['alpha']:g}, W {r['window']}, layers {r['layer_set']}: "
            f"recall {r['recall']:.3f} vs false rejection {r['false_rejection_rate']:.3f}, "
            f"lower bound {r['diff_lower']:+.3f}")


def verdict(grid: pl.DataFrame, budget: float) -> tuple[dict | None, str]:
    """The recommended setting (a grid row) or None, and the reason in one sentence (module docstring).

    `grid` needs the columns `recommendable` and `diff_lower` of `difference_bounds`."""
    g = grid.filter(pl.col("recall").is_not_nan() & pl.col("false_rejection_rate").is_not_nan())
    if g.height == 0:
        return None, "no setting has both hallucinated and correct labeled tokens with a score"
    ok = g.filter(pl.col("recommendable"))
    best_any = g.sort(["diff", "diff_lower"], descending=True, nulls_last=True).row(0, named=True)
    if ok.height == 0:
        return None, (f"no setting beats chance: none of the {g.height} settings rejects hallucinated tokens "
                      f"more often than correct ones with the simultaneous 95% lower bound of recall - false "
                      f"rejection above 0 (largest difference: {_describe(best_any)})")
    row, within = recommend(ok, budget)
    if row is None or not within:
        low = ok.sort("false_rejection_rate").row(0, named=True)
        return None, (f"{ok.height} settings beat chance but none keeps false rejection within the budget "
                      f"{budget:g} (lowest: {_describe(low)}); raise --budget to accept one")
    return row, (f"{ok.height} of {g.height} settings beat chance; the highest recall within the false-rejection "
                 f"budget {budget:g}: {_describe(row)}")
