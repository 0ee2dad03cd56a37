"""Summary building blocks without a browser: CHAIR / POPE counts and bootstrap intervals, the paired
difference, the control-run rule, and which settings the configuration table shows."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from saliency_lab.analysis import label_ci as lc
from saliency_lab.report.data import RunData
from saliency_lab.report.outcomes import find_control, intervention
from saliency_lab.report.runconfig import applies, split_settings
from saliency_lab.store.runs import Run

LABELS = pl.DataFrame(
    {
        "sample_id": ["a", "a", "a", "b", "b", "c"],
        "mention_id": [0, 0, 1, 0, 1, 0],  # a: mention 0 has two tokens, one hallucinated
        "label": [0, 1, 0, 0, 0, 1],
    }
)


def test_chair_counts_and_metrics_by_hand():
    m, h = lc.chair_counts(LABELS, ["a", "b", "c", "d"])  # d: a caption without mentions
    assert m.tolist() == [2, 2, 1, 0] and h.tolist() == [1, 0, 1, 0]
    assert lc.chair_i(m, h) == pytest.approx(2 / 5)
    assert lc.chair_s(m, h) == pytest.approx(2 / 4)


def test_bootstrap_interval_brackets_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(1)
    m = rng.integers(1, 5, 200).astype(float)
    h = np.minimum(m, rng.integers(0, 3, 200)).astype(float)
    e1 = lc.bootstrap(m, h, lc.chair_i, 300, seed=3)
    e2 = lc.bootstrap(m, h, lc.chair_i, 300, seed=3)
    assert e1 == e2 and e1.n == 200
    assert e1.ci[0] < e1.value < e1.ci[1] and e1.ci[1] - e1.ci[0] < 0.2
    assert math.isnan(lc.bootstrap(m, h, lc.chair_i, 0).ci[0])


def test_paired_difference_sign_and_zero():
    m = np.array([2.0, 2, 1, 3, 2, 2])
    h1 = np.array([1.0, 1, 1, 2, 1, 1])
    h0 = np.array([0.0, 0, 1, 1, 0, 0])
    d = lc.paired_difference(m, h1, m, h0, lc.chair_i, 200)
    assert d.value == pytest.approx(lc.chair_i(m, h1) - lc.chair_i(m, h0)) and d.value > 0
    same = lc.paired_difference(m, h1, m, h1, lc.chair_i, 200)
    assert same.value == 0 and same.ci == (0.0, 0.0)  # the same resamples for both runs


def test_pope_accuracy():
    lab = pl.DataFrame({"sample_id": ["q1", "q2", "q2", "q3"], "label": [0, 1, 0, 0]})
    answered, wrong = lc.pope_wrong(lab, ["q1", "q2", "q3", "q4"])  # q4: no labeled answer counts wrong
    assert answered.tolist() == [1, 1, 1, 0] and wrong.tolist() == [0, 1, 0, 1]
    assert lc.accuracy(answered, wrong) == 0.5


def _run(run_id: str, strategy: str, top_k: int = 0, k: int = 5, beta: float = 0.0) -> RunData:
    meta = {
        "run_id": run_id,
        "model": {"path": "/m", "n_layers": 4},
        "decoding": {
            "strategy": strategy,
            "top_k": top_k,
            "seed": 0,
            "temperature": 1.0,
            "sgrs": {"alpha": 0.6, "k": k},
            "locore": {"beta": beta, "window": 5},
        },
        "saliency": {"heads": "sum_abs"},
    }
    return RunData(run=Run(location=run_id, info=meta), samples=pl.DataFrame(), tokens=pl.DataFrame())


def test_control_rule():
    greedy, sample, sample3 = _run("g", "greedy"), _run("s", "sample", top_k=5), _run("s3", "sample", top_k=3)
    sgrs, locore = _run("x", "sgrs", k=5), _run("l", "greedy", beta=0.2)
    runs = [greedy, sample3, sample, sgrs, locore]
    assert [intervention(r) for r in runs] == [None, None, None, "sgrs", "locore"]
    assert find_control(sgrs, runs)[0] is sample  # top-K sampling with the same K, not greedy
    assert find_control(locore, runs)[0] is greedy
    ctl, why = find_control(_run("x7", "sgrs", k=7), runs)
    assert ctl is None and "K = 7" in why


def test_configuration_shows_what_differs_and_applies():
    greedy, sgrs = _run("g", "greedy"), _run("x", "sgrs", k=5)
    assert not applies("decoding.sgrs.alpha", greedy.meta["decoding"])
    assert applies("decoding.sgrs.alpha", sgrs.meta["decoding"])
    assert not applies("decoding.locore.window", greedy.meta["decoding"])
    differ, same, per_run = split_settings([greedy, sgrs])
    assert "decoding.strategy" in differ and "decoding.sgrs.alpha" in differ
    assert "decoding.sgrs.alpha" not in per_run[0] and per_run[1]["decoding.sgrs.alpha"] == 0.6
    assert "model.n_layers" in same and "saliency.heads" in same
    assert not any(k.startswith("decoding.locore") for k in differ + same)  # LocoRE off in both runs


def test_decay_block_at_its_defaults_is_no_intervention():
    # every run.json records the decay block; only an active one (rate != 1 with steps or a threshold) counts
    plain = _run("g", "greedy")
    plain.meta["decoding"]["decay"] = {"rate": 1.0, "steps": [], "threshold": None, "layers": None,
                                       "mode": "post_softmax"}
    sample = _run("s", "sample", top_k=5)
    sample.meta["decoding"]["decay"] = dict(plain.meta["decoding"]["decay"])
    decayed = _run("d", "greedy")
    decayed.meta["decoding"]["decay"] = {**plain.meta["decoding"]["decay"], "rate": 0.5, "steps": [2]}
    runs = [plain, sample, decayed, _run("x", "sgrs", k=5)]
    assert [intervention(r) for r in runs] == [None, None, "decay", "sgrs"]
    assert find_control(runs[3], runs)[0] is sample
    assert find_control(decayed, runs)[0] is plain


def test_a_zero_width_interval_is_no_separation():
    from saliency_lab.report.separation import verdict

    assert verdict((0.6, 0.8)) == "separates" and verdict((0.1, 0.4)) == "separates in reverse"
    # degenerate bootstraps from one or two within-step pairs (a handful of hallucinated tokens)
    assert verdict((1.0, 1.0)) == verdict((0.0, 0.0)) == verdict((0.5, 0.5)) == "does not separate"
