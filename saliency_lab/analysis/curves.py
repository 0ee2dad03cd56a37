"""Binned hallucination curves (paper Fig. 8b): hallucination rate per score bin with Wilson intervals,
and a trend test over the bins."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from saliency_lab.analysis.stats import cochran_armitage, logit_clustered, wilson

CURVE_SCHEMA = {
    "run_id": pl.String, "measure": pl.String, "bin": pl.Int32, "lo": pl.Float64, "hi": pl.Float64,
    "n": pl.Int64, "n_halluc": pl.Int64, "rate": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
}


def bin_edges(x: np.ndarray, bins: int, binning: str) -> np.ndarray:
    """Edges of `bins` bins: equal width on [0, 1], or quantiles of x (duplicate edges merged)."""
    if binning == "equal":
        return np.linspace(0.0, 1.0, bins + 1)
    if len(x) == 0:
        return np.array([0.0, 1.0])
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
    return edges if len(edges) > 1 else np.array([edges[0], edges[0]])


def assign_bins(x: np.ndarray, edges: np.ndarray, binning: str) -> np.ndarray:
    """Bin index per value. Equal width: floor(x * bins) clipped to [0, bins-1] (values outside [0, 1]
    land in the edge bins; 1.0 is in the last bin), the same rule as queries/binned_curve.sql.
    Quantile: right-open bins except the last, which is closed."""
    nb = len(edges) - 1
    if binning == "equal":
        return np.clip(np.floor(x * nb), 0, nb - 1).astype(np.int64)
    return np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max(nb - 1, 0)).astype(np.int64)


def binned_curve(x: np.ndarray, y: np.ndarray, bins: int, binning: str) -> tuple[list[dict[str, Any]], dict]:
    """Curve rows (bin, lo, hi, n, n_halluc, rate, ci_low, ci_high) and the Cochran-Armitage trend over
    bin indices (z < 0: the hallucination rate falls as the score rises)."""
    edges = bin_edges(x, bins, binning)
    idx = assign_bins(x, edges, binning)
    nb = len(edges) - 1
    n = np.bincount(idx, minlength=nb)[:nb]
    k = np.bincount(idx, weights=y.astype(float), minlength=nb)[:nb]
    rows = []
    for b in range(nb):
        lo, hi = wilson(k[b], n[b])
        rows.append({"bin": b, "lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(n[b]),
                     "n_halluc": int(k[b]), "rate": float(k[b] / n[b]) if n[b] else math.nan,
                     "ci_low": lo, "ci_high": hi})
    return rows, cochran_armitage(n, k)


def trend_tests(x: np.ndarray, y: np.ndarray, groups: np.ndarray, bins: int, binning: str) -> dict[str, Any]:
    """Cochran-Armitage over the bins, and the logistic slope of label on the score itself with standard
    errors clustered by sample (coef < 0: hallucination falls as the score rises)."""
    _, ca = binned_curve(x, y, bins, binning)
    return {"cochran_armitage": ca, "logistic": logit_clustered(y, x, groups)}


def curve_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """The curve rows as a frame of CURVE_SCHEMA (an empty frame of that schema without rows)."""
    return pl.DataFrame(rows, schema=CURVE_SCHEMA) if rows else pl.DataFrame(schema=CURVE_SCHEMA)
