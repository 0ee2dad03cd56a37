"""Saliency-decay intervention (App. B.1) as a pure transform, and the hook list built from configs."""

from __future__ import annotations

import pytest
import torch

from saliency_lab.config import DecodingConfig, LocoREConfig, SaliencyDecayConfig
from saliency_lab.decoding.decay import SaliencyDecayHook, decay_mask
from saliency_lab.decoding.hooks import intervention_hooks
from saliency_lab.decoding.locore import LocoREHook
from saliency_lab.errors import SaliencyLabError
from saliency_lab.saliency.attention import split_hooks


def test_decay_mask_hits_chosen_keys_from_their_own_position_on():
    m = decay_mask(range(8, 13), range(13), decayed={9, 11})
    hits = {q: [j for j in range(13) if m[i, j]] for i, q in enumerate(range(8, 13))}
    assert hits == {8: [], 9: [9], 10: [9], 11: [9, 11], 12: [9, 11]}


def test_decay_hook_scales_only_chosen_entries_and_steps_map_to_positions():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(1, 2, 3, 12, generator=g, dtype=torch.float64), -1)
    hook = SaliencyDecayHook(SaliencyDecayConfig(rate=0.4, steps=[1]), output_start=8)
    assert hook.positions == {9}
    out = hook(p, layer_idx=0, query_positions=range(9, 12), key_positions=range(12))
    changed = (out != p)
    assert changed[..., 9].all() and changed.sum() == 2 * 3
    assert torch.allclose(out[..., 9], 0.4 * p[..., 9], rtol=1e-15, atol=0)
    # queries before the decayed token are untouched (returned as is)
    assert hook(p, layer_idx=0, query_positions=range(5, 8), key_positions=range(12)) is p
    hook.add_step(3)
    assert hook.positions == {9, 11}


def test_decay_renormalize_keeps_rows_stochastic():
    p = torch.softmax(torch.randn(1, 1, 2, 6, dtype=torch.float64), -1)
    hook = SaliencyDecayHook(SaliencyDecayConfig(rate=0.2, steps=[0], mode="renormalize"), output_start=3)
    out = hook(p, layer_idx=0, query_positions=[4, 5], key_positions=range(6))
    assert torch.allclose(out.sum(-1), torch.ones(1, 1, 2, dtype=torch.float64), atol=1e-15)
    assert (out[..., 3] < p[..., 3]).all()


def test_bad_decay_config_is_refused():
    with pytest.raises(SaliencyLabError, match="--decay-rate"):
        SaliencyDecayHook(SaliencyDecayConfig(rate=-1.0, steps=[1]), 0)
    with pytest.raises(SaliencyLabError, match="--decay-steps"):
        SaliencyDecayHook(SaliencyDecayConfig(rate=0.5, steps=[-2]), 0)
    # the decay is a block of DecodingConfig, validated with the rest of it
    for bad, flag in ((SaliencyDecayConfig(rate=float("nan"), steps=[1]), "--decay-rate"),
                      (SaliencyDecayConfig(rate=0.5, threshold=float("inf")), "--decay-threshold"),
                      (SaliencyDecayConfig(rate=0.5, steps=[1], mode="x"), "--decay-mode"),  # type: ignore[arg-type]
                      (SaliencyDecayConfig(rate=0.5, threshold=0.4, layers=[2]), "--decay-layers")):
        with pytest.raises(SaliencyLabError, match=flag):
            DecodingConfig(decay=bad).validate(n_layers=2)
    with pytest.raises(SaliencyLabError, match="not sgrs"):
        DecodingConfig(strategy="sgrs", decay=SaliencyDecayConfig(rate=0.5, steps=[1])).validate()
    # an inactive decay (rate 1) is not checked against the strategy
    DecodingConfig(strategy="sgrs", decay=SaliencyDecayConfig(rate=1.0, steps=[1])).validate()


def test_intervention_hooks_from_configs():
    assert intervention_hooks(DecodingConfig(), 10) == []
    hooks = intervention_hooks(DecodingConfig(locore=LocoREConfig(beta=0.2, window=4)), 10)
    assert len(hooks) == 1 and isinstance(hooks[0], LocoREHook) and hooks[0].output_start == 10
    both = intervention_hooks(
        DecodingConfig(locore=LocoREConfig(beta=0.2, mode="logit_offset"),
                       decay=SaliencyDecayConfig(rate=0.5, steps=[2])), 3,
    )
    probs, logits = split_hooks(both)
    assert [type(h) for h in probs] == [SaliencyDecayHook] and [type(h) for h in logits] == [LocoREHook]
    # a decay at rate 1 or with nothing selected is no intervention
    assert intervention_hooks(DecodingConfig(decay=SaliencyDecayConfig(rate=1.0, steps=[2])), 3) == []
    assert intervention_hooks(DecodingConfig(decay=SaliencyDecayConfig(rate=0.5)), 3) == []


def test_sgrs_config_from_calibration_file(tmp_path):
    from saliency_lab.config import SGRSConfig
    from saliency_lab.decoding.calibration_file import sgrs_config_from_calibration
    from saliency_lab.errors import SaliencyLabError

    p = tmp_path / "calibration.json"
    p.write_text('{"recommended": {"alpha": 0.45, "window": 4, "layers": [2, 3]}, "grid": []}')
    cfg = sgrs_config_from_calibration(p, SGRSConfig(k=7))
    assert (cfg.alpha, cfg.window, cfg.layers, cfg.k, cfg.max_resample) == (0.45, 4, [2, 3], 7, 3)
    p.write_text('{"grid": []}')
    with pytest.raises(SaliencyLabError, match="recommended"):
        sgrs_config_from_calibration(p)
