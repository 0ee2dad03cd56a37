"""Offline SGRS replay on hand-built sequences whose rejections are worked out by hand, and `calibrate`
on a synthetic run against a plain-Python replay."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from _analysis_fixtures import labels as read_labels
from _analysis_fixtures import read, token_scores

from saliency_lab.analysis import CalibrationConfig, calibrate
from saliency_lab.analysis.calibration import ReplayData, history_mean, pareto_mask, recommend, replay
from saliency_lab.errors import SaliencyLabError
from saliency_lab.testing.synthetic import SyntheticSpec, make_run

# Sample A: scores None, 1.0, 0.5, 0.2, 0.9; sample B: None, 0.1, 0.8.
TOKENS = pl.DataFrame({
    "run_id": ["r"] * 8,
    "sample_id": ["A"] * 5 + ["B"] * 3,
    "step": [0, 1, 2, 3, 4, 0, 1, 2],
    "token_id": [1, 2, 10, 21, 5, 1, 7, 8],
    "score": [None, 1.0, 0.5, 0.2, 0.9, None, 0.1, 0.8],
    "label": [None, 0, 1, 1, 0, None, 1, 0],
})
CANDS = pl.DataFrame({
    "run_id": ["r"] * 7,
    "sample_id": ["A"] * 7,
    "step": [2, 2, 2, 2, 3, 3, 3],
    "rank": [0, 1, 2, 3, 0, 1, 2],
    "token_id": [10, 11, 12, 13, 20, 21, 22],  # step 3: the generated token 21 is rank 1
    "score": [0.5, 0.55, 0.7, 0.9, 0.1, 0.2, 0.3],
})


def test_history_mean_stays_inside_each_sample():
    d = ReplayData.from_frames(TOKENS)
    h = history_mean(d.group, d.score, 2)
    # A: -, -, mean(1.0), mean(1.0, .5), mean(.5, .2); B: -, -, mean(.1)
    expect = [np.nan, np.nan, 1.0, 0.75, 0.35, np.nan, np.nan, 0.1]
    assert np.allclose(h, expect, equal_nan=True)


def test_replay_rejections_by_hand():
    d = ReplayData.from_frames(TOKENS)
    # W=2, alpha=0.6: tau A = 0, 0, .6, .45, .21 -> rejects A2 (.5 < .6) and A3 (.2 < .45); B: tau 0, 0, .06
    m = replay(d, 0.6, 2)
    assert m["recall"] == pytest.approx(2 / 3)  # hallucinated A2, A3, B1; B1 has no history -> kept
    assert m["false_rejection_rate"] == 0.0
    assert m["expected_resamples"] == pytest.approx(2 / 8)  # no candidates: one draw per rejection
    assert math.isnan(m["all_below_rate"])
    # alpha=0.3: tau A2 = .3 (keeps .5), A3 = .225 (rejects .2), A4 = .105
    assert replay(d, 0.3, 2)["recall"] == pytest.approx(1 / 3)
    # W=1, alpha=1.0: A2 tau 1.0 rej, A3 tau .5 rej, A4 tau .2 keep .9; B2 tau .1 keep .8
    m = replay(d, 1.0, 1)
    assert (m["recall"], m["false_rejection_rate"]) == (pytest.approx(2 / 3), 0.0)
    # alpha=2, W=1: A4 tau .4 keeps .9; B2 tau .2 keeps .8; A2, A3 rejected; correct A1 has tau 0
    assert replay(d, 2.0, 1)["false_rejection_rate"] == 0.0
    # alpha=5, W=1: A4 tau 1.0 rejects .9 (correct), B2 tau .5 keeps .8 -> FRR 1/3
    assert replay(d, 5.0, 1)["false_rejection_rate"] == pytest.approx(1 / 3)


def test_replay_with_candidates_by_hand():
    d = ReplayData.from_frames(TOKENS, CANDS)
    m = replay(d, 0.6, 2, max_resample=3)
    # A2 (tau .6) rejected: others in rank order .55 (fail), .7 (pass) -> 2 extra draws.
    # A3 (tau .45) rejected: others 20 (.1), 22 (.3) both fail -> 2 extra draws (cap R-1 = 2), then fallback.
    assert m["expected_resamples"] == pytest.approx((2 + 2) / 8)
    # steps with candidates: A2 (.7, .9 >= .6: not all below), A3 (all of .1 .2 .3 < .45)
    assert m["all_below_rate"] == pytest.approx(1 / 2)
    m2 = replay(d, 0.6, 2, max_resample=2)
    assert m2["expected_resamples"] == pytest.approx((1 + 1) / 8)


def test_pareto_and_recommendation():
    grid = pl.DataFrame({
        "alpha": [0.2, 0.4, 0.6, 0.8, 1.0], "window": [5] * 5,
        "recall": [0.1, 0.4, 0.4, 0.7, 0.9], "false_rejection_rate": [0.0, 0.05, 0.08, 0.1, 0.3],
        "expected_resamples": [0.0, 0.1, 0.1, 0.2, 0.5],
    })
    on = pareto_mask(grid["recall"].to_numpy(), grid["false_rejection_rate"].to_numpy())
    assert on.tolist() == [True, True, False, True, True]  # 0.6 is dominated by 0.4 (same recall, lower FRR)
    best, within = recommend(grid, 0.1)
    assert within and best["alpha"] == 0.8
    best, within = recommend(grid, 0.04)
    assert within and best["alpha"] == 0.2
    best, within = recommend(grid.filter(pl.col("alpha") > 0.3), 0.01)
    assert not within and best["alpha"] == 0.4  # lowest false rejection when nothing meets the budget


def _python_replay(run, n_layers, layers, alpha, window):
    sc = token_scores(run, n_layers, layers)
    lab = read_labels(run)
    t = read(run, "tokens")
    rej = {}
    for sid in sorted(set(t["sample_id"])):
        steps = sorted(int(s) for s in t["step"][t["sample_id"] == sid])
        for p in steps:
            hist = [sc[(sid, q)]["out_mean"] for q in range(p - window, p)
                    if (sid, q) in sc and sc[(sid, q)]["out_mean"] is not None]
            tau = alpha * sum(hist) / len(hist) if hist else 0.0
            s = sc[(sid, p)]["out_mean"]
            rej[(sid, p)] = s is not None and s < tau
    h = [k for k, v in lab.items() if v == 1]
    c = [k for k, v in lab.items() if v == 0]
    return sum(rej[k] for k in h) / len(h), sum(rej[k] for k in c) / len(c)


def test_calibrate_matches_plain_python_replay(tmp_path):
    run = make_run(tmp_path, "rc", SyntheticSpec(n_samples=16, n_layers=4, n_candidates=3, seed=7))
    cfg = CalibrationConfig(alphas=[0.4, 0.6, 0.9], windows=[1, 5])
    res = calibrate([run], "chair", cfg)
    assert res.has_candidates
    assert set(res.grid["layer_set"].unique()) == {"upper_half", "all", "last"}
    assert res.grid.height == 3 * 2 * 3
    for alpha, window, layers in [(0.6, 5, [2, 3]), (0.9, 1, [0, 1, 2, 3]), (0.4, 5, [3])]:
        row = res.grid.filter((pl.col("alpha") == alpha) & (pl.col("window") == window)
                              & (pl.col("layers").cast(pl.List(pl.String)).list.join(",") == ",".join(map(str, layers)))
                              ).row(0, named=True)
        recall, frr = _python_replay(run, 4, layers, alpha, window)
        assert row["recall"] == pytest.approx(recall)
        assert row["false_rejection_rate"] == pytest.approx(frr)
    paths = res.write(tmp_path / "out")
    doc = json.loads(paths["json"].read_text())
    rec = doc["recommended"]
    assert set(rec) == {"alpha", "window", "layers"}
    assert isinstance(rec["alpha"], float) and isinstance(rec["window"], int)
    assert all(isinstance(x, int) for x in rec["layers"])
    best = res.grid.filter(pl.col("false_rejection_rate") <= 0.1)["recall"].max()
    assert doc["recommended_metrics"]["recall"] == pytest.approx(best)
    assert doc["frontier"] and all(r["on_frontier"] for r in doc["frontier"])


def test_calibrate_errors(tmp_path):
    run = make_run(tmp_path, "re", SyntheticSpec(n_samples=4))
    with pytest.raises(SaliencyLabError, match="labelset 'pope'"):
        calibrate([run], "pope")
    with pytest.raises(SaliencyLabError, match="windows"):
        calibrate([run], "chair", CalibrationConfig(windows=[0]))
