"""Caption- and question-level metrics with bootstrap intervals over samples: CHAIR_s / CHAIR_i from a
labelset's mentions, POPE accuracy per split, and the paired difference of a metric between two runs over
the samples they share (an intervention against its control on the same images).

Samples are the resampling unit (a caption's mentions are not independent); intervals are 95% percentile
bootstrap intervals with a fixed seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclass
class Estimate:
    """A metric's value, its 95% bootstrap interval and the number of samples behind it."""

    value: float
    ci: tuple[float, float]
    n: int  # samples


def chair_counts(labels: pl.DataFrame, sample_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per sample (in `sample_ids` order): object mentions, hallucinated mentions (CHAIR labelset rows;
    a mention is hallucinated when any of its tokens is). Samples without mentions count zero."""
    m = (
        labels.group_by("sample_id", "mention_id")
        .agg(pl.col("label").max())
        .group_by("sample_id")
        .agg(pl.len().alias("m"), pl.col("label").cast(pl.Int64).sum().alias("h"))
    )
    got = {s: (int(a), int(b)) for s, a, b in m.iter_rows()}
    mentions = np.array([got.get(s, (0, 0))[0] for s in sample_ids], dtype=np.float64)
    halluc = np.array([got.get(s, (0, 0))[1] for s in sample_ids], dtype=np.float64)
    return mentions, halluc


def chair_i(m: np.ndarray, h: np.ndarray) -> float:
    """CHAIR_i: hallucinated mentions over all mentions (per-sample counts m, h); NaN without mentions."""
    return float(h.sum() / m.sum()) if m.sum() > 0 else math.nan


def chair_s(m: np.ndarray, h: np.ndarray) -> float:
    """CHAIR_s: share of samples with a hallucinated mention; NaN without samples."""
    return float(np.mean(h > 0)) if len(h) else math.nan


def pope_wrong(labels: pl.DataFrame, sample_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per question: answered (1, 0 when no labeled answer token) and wrong (POPE label 1)."""
    w = labels.group_by("sample_id").agg(pl.col("label").max())
    got = {s: int(v) for s, v in w.iter_rows()}
    answered = np.array([1.0 if s in got else 0.0 for s in sample_ids])
    wrong = np.array([float(got.get(s, 1)) for s in sample_ids])
    return answered, wrong


def accuracy(answered: np.ndarray, wrong: np.ndarray) -> float:
    """POPE accuracy: share of questions not answered wrong (unanswered count as wrong); NaN without
    questions."""
    return float(1 - wrong.mean()) if len(wrong) else math.nan


def bootstrap(a: np.ndarray, b: np.ndarray, metric: Metric, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """`metric(a, b)` over all samples and its 95% percentile interval over resampled samples."""
    n = len(a)
    value = metric(a, b)
    if n == 0 or n_boot == 0:
        return Estimate(value, (math.nan, math.nan), n)
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    draws = np.array([metric(a[i], b[i]) for i in idx])
    draws = draws[np.isfinite(draws)]
    ci = tuple(float(v) for v in np.percentile(draws, [2.5, 97.5])) if len(draws) else (math.nan, math.nan)
    return Estimate(value, ci, n)  # type: ignore[arg-type]


def paired_difference(
    a1: np.ndarray,
    b1: np.ndarray,
    a0: np.ndarray,
    b0: np.ndarray,
    metric: Metric,
    n_boot: int = 1000,
    seed: int = 0,
) -> Estimate:
    """metric(run 1) - metric(run 0) over the same samples (row i of both is sample i), with the same
    resampled samples for both runs."""
    n = len(a1)
    value = metric(a1, b1) - metric(a0, b0)
    if n == 0 or n_boot == 0:
        return Estimate(value, (math.nan, math.nan), n)
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    draws = np.array([metric(a1[i], b1[i]) - metric(a0[i], b0[i]) for i in idx])
    draws = draws[np.isfinite(draws)]
    ci = tuple(float(v) for v in np.percentile(draws, [2.5, 97.5])) if len(draws) else (math.nan, math.nan)
    return Estimate(value, ci, n)  # type: ignore[arg-type]
