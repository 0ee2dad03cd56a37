"""Binning rules of the hallucination curve, by hand and against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from saliency_lab.analysis.curves import assign_bins, bin_edges, binned_curve


def test_equal_width_bins_clip_and_close_the_last_bin():
    x = np.array([-0.5, 0.0, 0.05, 0.1, 0.95, 1.0, 1.5])
    edges = bin_edges(x, 10, "equal")
    assert edges == pytest.approx(np.linspace(0, 1, 11))
    assert assign_bins(x, edges, "equal").tolist() == [0, 0, 0, 1, 9, 9, 9]


def test_quantile_bins_hold_equal_counts():
    x = np.arange(100) / 100.0
    y = (x < 0.3).astype(int)
    rows, ca = binned_curve(x, y, 4, "quantile")
    assert [r["n"] for r in rows] == [25, 25, 25, 25]
    assert [r["lo"] for r in rows] == pytest.approx(np.quantile(x, [0, 0.25, 0.5, 0.75]))
    assert [r["n_halluc"] for r in rows] == [25, 5, 0, 0]
    assert ca["z"] < 0  # hallucination falls as the score rises
    for r in rows:
        assert (r["ci_low"], r["ci_high"]) == pytest.approx(
            proportion_confint(r["n_halluc"], r["n"], method="wilson"), abs=1e-12)


def test_quantile_bins_merge_duplicate_edges():
    x = np.array([0.2] * 50 + [0.9] * 50)
    rows, _ = binned_curve(x, np.zeros(100, int), 10, "quantile")
    # numpy's deciles of this sample take only the values 0.2, 0.55 (the interpolated median) and 0.9
    assert [(r["lo"], r["hi"], r["n"]) for r in rows] == [(0.2, 0.55, 50), (0.55, 0.9, 50)]


def test_empty_bins_have_no_rate():
    rows, _ = binned_curve(np.array([0.05, 0.06]), np.array([1, 0]), 10, "equal")
    assert rows[0]["n"] == 2 and rows[0]["rate"] == 0.5
    assert rows[5]["n"] == 0 and np.isnan(rows[5]["rate"]) and np.isnan(rows[5]["ci_low"])
