"""SGRS selection logic (Algorithm 1) without a model: candidates, draws, threshold, fallback, records."""

from __future__ import annotations

import math

import pytest
import torch

from saliency_lab.decoding.result import DecisionLog
from saliency_lab.decoding.selection import (
    Candidates,
    draw_index,
    sgrs_select,
    sgrs_threshold,
    top_k_candidates,
)


def _gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_top_k_candidates_are_the_most_probable_with_temperature():
    logits = torch.tensor([0.1, 2.0, -1.0, 1.5, 0.7])
    c = top_k_candidates(logits, 3, temperature=2.0)
    assert c.ids == [1, 3, 4]
    expected = torch.softmax(logits.double() / 2.0, -1)[[1, 3, 4]]
    assert torch.allclose(c.probs, expected, atol=0, rtol=1e-15)


def test_top_k_candidates_drop_zero_probability_tokens():
    logits = torch.tensor([0.0, -math.inf, 1.0])
    c = top_k_candidates(logits, 5)
    assert c.ids == [2, 0]


@pytest.mark.parametrize("bad", [(0, 1.0), (3, 0.0)])
def test_top_k_candidates_reject_bad_parameters(bad):
    with pytest.raises(ValueError):
        top_k_candidates(torch.zeros(4), bad[0], temperature=bad[1])


def test_threshold_is_alpha_times_mean_of_accepted_scores_in_window():
    hist = [(9.0, True), (1.0, True), (100.0, False), (None, True), (3.0, True), (5.0, True)]
    # window 4 -> last four steps: (100, fallback) and (None) are excluded -> mean(3, 5) = 4
    assert sgrs_threshold(hist, 0.5, 4) == pytest.approx(0.5 * 4.0)
    # window 6 -> 9, 1, 3, 5 -> mean 4.5
    assert sgrs_threshold(hist, 0.6, 6) == pytest.approx(0.6 * 4.5)
    assert sgrs_threshold([], 0.6, 5) == 0.0
    assert sgrs_threshold([(None, True)], 0.6, 5) == 0.0
    assert sgrs_threshold([(2.0, False)], 0.6, 5) == 0.0
    assert sgrs_threshold(hist, 0.6, 0) == 0.0


def test_first_draw_accepted_equals_top_k_sampling_with_same_seed():
    logits = torch.randn(50, generator=_gen(1))
    cands = top_k_candidates(logits, 5)
    for seed in range(20):
        dec = sgrs_select(cands, lambda t: 0.0, tau=0.0, max_draws=3, generator=_gen(seed))
        sampled = cands.ids[draw_index(cands.probs, _gen(seed))]
        assert dec.token_id == sampled
        assert dec.accepted and not dec.fallback and dec.n_rejected == 0 and len(dec.draws) == 1


def test_unreachable_threshold_falls_back_to_best_evaluated_candidate():
    cands = Candidates(ids=[10, 11, 12, 13, 14], probs=torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05], dtype=torch.float64))
    scores = {10: 0.2, 11: 0.9, 12: 0.5, 13: 0.7, 14: 0.1}
    calls = []

    def score(t):
        calls.append(t)
        return scores[t]

    for seed in range(10):
        calls.clear()
        dec = sgrs_select(cands, score, tau=5.0, max_draws=3, generator=_gen(seed))
        assert len(dec.draws) == 3 and dec.n_rejected == 3
        assert len({d.token_id for d in dec.draws}) == 3  # without replacement
        assert calls == [d.token_id for d in dec.draws]  # only drawn candidates are scored
        assert dec.fallback and not dec.accepted
        assert dec.token_id == max(calls, key=scores.get)
        assert dec.score == scores[dec.token_id]


def test_accepts_first_draw_meeting_threshold_and_counts_rejections():
    cands = Candidates(ids=[1, 2, 3], probs=torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))
    scores = {1: 0.1, 2: 0.8, 3: 0.6}
    seen_orders = set()
    for seed in range(40):
        dec = sgrs_select(cands, scores.get, tau=0.5, max_draws=3, generator=_gen(seed))
        order = [d.token_id for d in dec.draws]
        seen_orders.add(tuple(order))
        first_ok = next(i for i, t in enumerate(order) if scores[t] >= 0.5)
        assert len(order) == first_ok + 1
        assert dec.token_id == order[-1] and dec.accepted and dec.n_rejected == first_ok
        assert [d.rank for d in dec.draws] == [t - 1 for t in order]
    assert len(seen_orders) > 1


def test_undefined_score_is_accepted():
    cands = Candidates(ids=[7, 8], probs=torch.tensor([0.6, 0.4], dtype=torch.float64))
    dec = sgrs_select(cands, lambda t: None, tau=3.0, max_draws=3, generator=_gen(0))
    assert dec.accepted and dec.score is None and len(dec.draws) == 1


def test_draws_without_replacement_follow_renormalized_probabilities():
    probs = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    cands = Candidates(ids=[0, 1, 2], probs=probs)
    n = 3000
    first = torch.zeros(3)
    second_given_0 = torch.zeros(3)
    g = _gen(123)
    for _ in range(n):
        dec = sgrs_select(cands, lambda t: -1.0, tau=0.0, max_draws=2, generator=g)
        first[dec.draws[0].token_id] += 1
        if dec.draws[0].token_id == 0:
            second_given_0[dec.draws[1].token_id] += 1
    assert torch.allclose(first / n, probs.float(), atol=0.03)
    cond = second_given_0 / second_given_0.sum()
    assert torch.allclose(cond, torch.tensor([0.0, 0.6, 0.4]), atol=0.04)


def test_decision_log_columns_agree_with_decisions():
    cands = Candidates(ids=[1, 2, 3], probs=torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))
    log = DecisionLog()
    log.add(0, sgrs_select(cands, lambda t: None, 0.0, 3, _gen(0)))
    log.add(1, sgrs_select(cands, {1: 0.1, 2: 0.2, 3: 0.3}.get, 1.0, 3, _gen(1)))
    log.add(2, sgrs_select(cands, {1: 0.9, 2: 0.1, 3: 0.1}.get, 0.5, 3, _gen(2)))
    tc, dc = log.token_columns, log.decisions
    assert tc["fallback"] == [False, True, False]
    assert tc["n_rejected"][1] == 3 and tc["sgrs_score"][1] == 0.3 and tc["sgrs_tau"][1] == 1.0
    assert tc["sgrs_score"][0] is None
    for step in range(3):
        rows = [i for i, s in enumerate(dc["step"]) if s == step]
        assert [dc["draw"][i] for i in rows] == list(range(len(rows)))
        n_chosen = sum(dc["accepted"][i] or dc["fallback"][i] for i in rows)
        assert n_chosen == 1
        assert sum(not dc["accepted"][i] for i in rows) == tc["n_rejected"][step]
        assert any(dc["accepted"][i] for i in rows) == tc["accepted"][step]
    assert log.history[1] == (0.3, False)


def test_row_stats_score_leaves_out_zero_rows_and_is_undefined_when_all_are_zero():
    from saliency_lab.decoding.loop import RowStats

    d = torch.float64
    # step 2: out_mean per layer = out_sum / (row_l2 * 2) -> 0.25 and (zero row) undefined
    part = RowStats(layers=[2, 3], out_sum=torch.tensor([1.0, 0.0], dtype=d), prev=torch.zeros(2, dtype=d),
                    row_l2=torch.tensor([2.0, 0.0], dtype=d), step=2)
    assert part.score() == pytest.approx(0.25)  # the mean over the defined layer only, as SQL avg() does
    # p == 1: the loss gradient is exactly zero, every row is zero -> undefined, so SGRS accepts it as drawn
    certain = RowStats(layers=[2, 3], out_sum=torch.zeros(2, dtype=d), prev=torch.zeros(2, dtype=d),
                       row_l2=torch.zeros(2, dtype=d), step=5)
    assert certain.score() is None
    full = RowStats(layers=[0, 1], out_sum=torch.tensor([1.0, 3.0], dtype=d), prev=torch.zeros(2, dtype=d),
                    row_l2=torch.tensor([1.0, 2.0], dtype=d), step=1)
    assert full.score() == pytest.approx((1.0 + 1.5) / 2)


def test_row_scores_are_the_saliency_family_with_the_sql_formulas():
    from saliency_lab.decoding.loop import ROW_SCORES, RowStats
    from saliency_lab.store.scores import SALIENCY_SCORES

    assert tuple(ROW_SCORES) == SALIENCY_SCORES

    def t(v: list[float]) -> torch.Tensor:
        return torch.tensor(v, dtype=torch.float64)

    # layer 0: sys 1, img 2, prompt 3, out 4 (prev 1), l2 5; layer 1: an all-zero row (undefined)
    r = RowStats([2, 3], out_sum=t([4.0, 0.0]), prev=t([1.0, 0.0]), row_l2=t([5.0, 0.0]), step=2,
                 sys_sum=t([1.0, 0.0]), img_sum=t([2.0, 0.0]), prompt_sum=t([3.0, 0.0]))
    expected = {"out_mean": 4 / 10, "prev": 1 / 5, "out_share": 0.4, "prev_share": 0.1, "prompt_share": 0.3,
                "image_share": 0.2, "system_share": 0.1, "source_share": 0.5}
    assert {n: r.score(n) for n in SALIENCY_SCORES} == pytest.approx(expected, rel=1e-15)
    # two defined layers: the mean over layers; step 0 and an all-zero row: undefined
    r2 = RowStats([2, 3], out_sum=t([4.0, 1.0]), prev=t([1.0, 1.0]), row_l2=t([5.0, 1.0]), step=2,
                  sys_sum=t([1.0, 0.0]), img_sum=t([2.0, 0.0]), prompt_sum=t([3.0, 1.0]))
    assert r2.score("source_share") == pytest.approx((0.5 + 0.5) / 2) and r2.score("out_share") == 0.45
    zero = RowStats([1], t([0.0]), t([0.0]), t([0.0]), 3, t([0.0]), t([0.0]), t([0.0]))
    assert all(zero.score(n) is None for n in SALIENCY_SCORES)
    assert RowStats([1], t([1.0]), t([1.0]), t([1.0]), 0, t([0.0]), t([0.0]), t([1.0])).score("prompt_share") is None


def test_reject_high_threshold_and_fallback():
    from saliency_lab.decoding.selection import passes

    assert sgrs_threshold([], 0.6, 5, "high") == math.inf and sgrs_threshold([], 0.6, 5) == 0.0
    assert sgrs_threshold([(2.0, True), (4.0, False), (None, True)], 0.5, 5, "high") == 1.0
    assert passes(0.3, 0.3, "high") and not passes(0.31, 0.3, "high") and passes(None, 0.0, "high")
    scores = {10: 0.9, 11: 0.7, 12: 0.8}
    cands = Candidates([10, 11, 12], torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))
    dec = sgrs_select(cands, scores.get, 0.5, 3, torch.Generator().manual_seed(0), reject="high")
    assert dec.fallback and dec.token_id == 11  # every draw above tau: the lowest score is emitted
    dec = sgrs_select(cands, scores.get, 0.75, 3, torch.Generator().manual_seed(0), reject="high")
    assert dec.accepted and scores[dec.token_id] <= 0.75
