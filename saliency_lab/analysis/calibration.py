"""Offline SGRS calibration (docs/analysis.md, "`saliency-lab calibrate`"): replay recorded generations and ask, for each threshold
setting, which tokens SGRS would have rejected.

Replay rule, at output step P of a sample (steps in decoding order):
    history = scores of the tokens at steps P-W .. P-1 that have a score (step 0 has no Eq. 6 score)
    tau     = alpha * mean(history), or 0 when the history is empty
    the token at P "would be rejected" when its score < tau (a token without a score is never rejected).
Every recorded token counts as accepted for later histories: the replay keeps the recorded sequence, since
what SGRS would have generated instead is unknown offline.

Per setting:
    recall                 rejected hallucinated / labeled hallucinated tokens
    false_rejection_rate   rejected correct / labeled correct tokens
    expected_resamples     mean over all generated tokens of the extra draws SGRS would make. With recorded
                           candidates: a rejected token is draw 1; the other candidates are drawn in rank
                           order until one scores >= tau, at most max_resample - 1 extra draws. Without
                           candidates: 1 per rejected token (a lower bound).
    all_below_rate         share of scored steps with candidates where every recorded candidate scores < tau
                           (SGRS would fall back); null without candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

GRID_SCHEMA: dict[str, Any] = {
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


def replay(data: ReplayData, alpha: float, window: int, max_resample: int = 3,
           hist: np.ndarray | None = None) -> dict[str, float]:
    """Metrics of one (alpha, window) setting on one set of token scores."""
    hist = history_mean(data.group, data.score, window) if hist is None else hist
    tau = np.where(np.isnan(hist), 0.0, alpha * hist)
    scored = ~np.isnan(data.score)
    rejected = scored & (np.where(scored, data.score, 0.0) < tau)
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
    passes = ~np.isnan(csc) & (np.where(np.isnan(csc), 0.0, csc) >= ctau)
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


def grid_rows(data: ReplayData, layer_set: str, layers: list[int], alphas: list[float],
              windows: list[int], max_resample: int) -> list[dict]:
    """One metrics row per (alpha, window) for one layer set, the grid `calibrate` writes."""
    rows = []
    for w in windows:
        hist = history_mean(data.group, data.score, int(w))
        for a in alphas:
            m = replay(data, float(a), int(w), max_resample, hist=hist)
            rows.append({"alpha": float(a), "window": int(w), "layer_set": layer_set,
                         "layers": [int(x) for x in layers], **m})
    return rows


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
