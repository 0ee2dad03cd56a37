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
from saliency_lab.analysis.config import AUTO_SCORES
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
    run = make_run(tmp_path, "rc", SyntheticSpec(n_samples=26, n_layers=4, n_candidates=3, seed=7))
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
    assert set(rec) == {"alpha", "window", "layers", "score", "reject"}
    assert (rec["score"], rec["reject"]) == (doc["score"], doc["reject"]) == ("out_mean", "low")
    assert isinstance(rec["alpha"], float) and isinstance(rec["window"], int)
    assert all(isinstance(x, int) for x in rec["layers"])
    best = res.grid.filter((pl.col("false_rejection_rate") <= 0.1) & pl.col("recommendable"))["recall"].max()
    assert doc["recommended_metrics"]["recall"] == pytest.approx(best)
    assert doc["frontier"] and all(r["on_frontier"] for r in doc["frontier"])


def test_calibrate_errors(tmp_path):
    run = make_run(tmp_path, "re", SyntheticSpec(n_samples=4))
    with pytest.raises(SaliencyLabError, match="labelset 'pope'"):
        calibrate([run], "pope")
    with pytest.raises(SaliencyLabError, match="windows"):
        calibrate([run], "chair", CalibrationConfig(windows=[0]))


def test_replay_reject_high_by_hand():
    d = ReplayData.from_frames(TOKENS)
    # W=1, alpha=1.5, reject when score > tau: A2 tau 1.5 (keep .5), A3 tau .75 (keep .2), A4 tau .3 (reject .9,
    # correct); B2 tau .15 (reject .8, correct). A1 and B1 have no history: never rejected when rejecting high.
    m = replay(d, 1.5, 1, reject="high")
    assert (m["recall"], m["false_rejection_rate"]) == (0.0, pytest.approx(2 / 3))
    # with candidates the passing test flips too: A2 (tau .15 at alpha .15, W 1) rejects .5; candidates .55, .7,
    # .9 all exceed tau -> none passes, 2 extra draws (R - 1) and SGRS falls back
    dc = ReplayData.from_frames(TOKENS, CANDS)
    mc = replay(dc, 0.15, 1, max_resample=3, reject="high")
    assert mc["all_below_rate"] == pytest.approx(1.0)  # A2 and A3 (tau .075: .1 .2 .3 all above) fall back


def _bounds_by_loops(h_rej, c_rej, h_tot, c_tot, n_boot, seed):
    """recall - false rejection per setting and the max-t lower bound, by plain loops over resamples."""
    rng = np.random.default_rng(seed)
    n_s, n_g = len(h_rej), len(h_rej[0])
    diff = [sum(h_rej[s]) / sum(h_tot[s]) - sum(c_rej[s]) / sum(c_tot[s]) for s in range(n_s)]
    boot = []
    for _ in range(n_boot):
        pick = rng.integers(0, n_g, n_g)
        boot.append([sum(h_rej[s][g] for g in pick) / sum(h_tot[s][g] for g in pick)
                     - sum(c_rej[s][g] for g in pick) / sum(c_tot[s][g] for g in pick) for s in range(n_s)])
    boot = np.array(boot)
    sd = boot.std(axis=0)
    q = np.percentile(((boot - np.array(diff)) / sd).max(axis=1), 95)
    return np.array(diff), np.array(diff) - q * sd


def test_difference_bounds_match_loops():
    from saliency_lab.analysis.calibration import GroupCounts, difference_bounds

    rng = np.random.default_rng(2)
    n_g = 12
    h_tot = rng.integers(1, 5, n_g)
    c_tot = rng.integers(2, 9, n_g)
    counts = GroupCounts()
    for _ in range(3):
        counts.h_rej.append(rng.binomial(h_tot, 0.5))
        counts.c_rej.append(rng.binomial(c_tot, 0.3))
        counts.h_tot.append(h_tot)
        counts.c_tot.append(c_tot)
        counts.sample_keys.append(np.arange(n_g))
    got = difference_bounds(counts, 300, seed=4)
    diff, lower = _bounds_by_loops(counts.h_rej, counts.c_rej, counts.h_tot, counts.c_tot, 300, 4)
    assert np.allclose(got["diff"], diff) and np.allclose(got["lower"], lower)
    assert (got["ci_low"] <= got["diff"]).all() and (got["diff"] <= got["ci_high"]).all()


def test_calibration_says_no_when_nothing_beats_chance(tmp_path, capsys):
    from saliency_lab.cli import main

    # effect 0: no score carries the label (the synthetic attention keeps a small planted effect, so the
    # scores searched are the saliency ones)
    run = make_run(tmp_path, "null", SyntheticSpec(n_samples=40, n_layers=4, effect=0.0, seed=6))
    out = tmp_path / "cal"
    assert main(["calibrate", str(run), "--labels", "chair", "--out", str(out), "--score",
                 "out_mean,prev,out_share,prompt_share", "--reject", "both", "--alphas", "0.4,0.8,1.2,1.6",
                 "--windows", "1,3,5", "--n-bootstrap", "300"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("recommended: none. no setting beats chance")
    assert len([x for x in printed.splitlines() if x.startswith("recommended")]) == 1
    doc = json.loads((out / "calibration.json").read_text())
    assert doc["recommended"] is None and doc["score"] is None and doc["reject"] is None
    assert doc["reason"].startswith("no setting beats chance")
    grid = pl.read_parquet(out / "calibration_grid.parquet")
    assert grid.height == 4 * 2 * 4 * 3 * 3 and not grid["recommendable"].any()  # every setting kept
    assert set(grid["reject"]) == {"low", "high"} and grid["on_frontier"].any()


def test_auto_finds_the_planted_score_and_direction(tmp_path):
    run = make_run(tmp_path, "eff", SyntheticSpec(n_samples=40, n_layers=4, effect=0.3, n_candidates=3, seed=8))
    res = calibrate([run], "chair", CalibrationConfig(score="auto", n_bootstrap=300))
    assert res.recommended is not None and res.reject == "low" and res.score in ("out_mean", "prev")
    m = res.recommended_metrics
    assert m["recall"] > m["false_rejection_rate"] and m["diff_lower"] > 0 and m["false_rejection_rate"] <= 0.1
    assert set(res.grid["score"]) == set(AUTO_SCORES) and "step" not in set(res.grid["score"])
    # candidates carry only out_mean and prev: the shares replay without them
    used = dict(res.grid.group_by("score").agg(pl.col("candidates_used").all()).iter_rows())
    assert used["out_mean"] and used["prev"] and not used["prompt_share"]
    few = calibrate([run], "chair", CalibrationConfig(score="out_mean", n_bootstrap=100, min_samples=100))
    assert few.recommended is None and few.reason.startswith("too few samples")


def test_capture_applies_the_recommended_score_and_refuses_a_null_or_attention_one(tmp_path):
    from saliency_lab.decoding.calibration_file import load_calibration

    p = tmp_path / "calibration.json"
    p.write_text(json.dumps({"recommended": None, "reason": "no setting beats chance: (details)",
                             "score": None, "reject": None}))
    with pytest.raises(SaliencyLabError, match=r"recommends no SGRS setting \(no setting beats chance"):
        load_calibration(p)
    rec = {"alpha": 0.4, "window": 3, "layers": [1], "score": "source_share", "reject": "high"}
    p.write_text(json.dumps({"recommended": rec}))
    assert load_calibration(p) == rec
    p.write_text(json.dumps({"recommended": {**rec, "score": "attn_out"}}))
    with pytest.raises(SaliencyLabError, match="thresholds attn_out, which SGRS cannot compute while decoding"):
        load_calibration(p)
