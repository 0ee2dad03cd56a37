"""LocoRE as a pure transform of attention probabilities / scores (Eq. 8-10)."""

from __future__ import annotations

import math

import pytest
import torch

from saliency_lab.config import LocoREConfig
from saliency_lab.decoding.locore import LocoREHook, apply_gain, locore_mask


def test_mask_selects_the_window_before_the_query_among_outputs():
    o, w = 10, 3
    keys = range(0, 16)
    m = locore_mask(torch.tensor([9, 10, 11, 12, 15]), keys, o, w)
    boosted = {q: [j for j in keys if m[i, j]] for i, q in enumerate([9, 10, 11, 12, 15])}
    assert boosted == {9: [], 10: [], 11: [10], 12: [10, 11], 15: [12, 13, 14]}


def test_mask_with_offset_key_positions():
    # keys need not start at 0 (e.g. a hook that sees a slice); the mask follows positions, not indices
    m = locore_mask([20], range(15, 21), output_start=12, window=2)
    assert m.tolist() == [[False, False, False, True, True, False]]


def _probs(q_len: int, k_len: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(2, 3, q_len, k_len, generator=g, dtype=torch.float64), -1)


def test_beta_zero_is_identity_and_beta_scales_only_masked_entries():
    p = _probs(4, 12)
    hook0 = LocoREHook(LocoREConfig(beta=0.0, window=3), output_start=5)
    out0 = hook0(p, layer_idx=0, query_positions=range(8, 12), key_positions=range(12))
    assert torch.equal(out0, p)
    hook = LocoREHook(LocoREConfig(beta=0.15, window=3), output_start=5)
    out = hook(p, layer_idx=1, query_positions=range(8, 12), key_positions=range(12))
    mask = locore_mask(range(8, 12), range(12), 5, 3)
    assert torch.equal(out[..., ~mask], p[..., ~mask])
    assert torch.allclose(out[..., mask], p[..., mask] * 1.15, rtol=1e-15, atol=0)
    assert mask.sum() == 3 + 3 + 3 + 3  # q=8: 5,6,7; q=9: 6,7,8; ...


def test_prompt_only_queries_are_left_untouched():
    p = _probs(6, 6)
    hook = LocoREHook(LocoREConfig(beta=0.5, window=5), output_start=6)
    assert hook(p, layer_idx=0, query_positions=range(6), key_positions=range(6)) is p


def test_renormalize_equals_logit_offset():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(1, 2, 3, 9, generator=g, dtype=torch.float64)
    qpos, kpos = range(6, 9), range(9)
    ren = LocoREHook(LocoREConfig(beta=0.4, window=2, mode="renormalize"), output_start=4)
    off = LocoREHook(LocoREConfig(beta=0.4, window=2, mode="logit_offset"), output_start=4)
    assert off.on_logits and not ren.on_logits
    a = ren(torch.softmax(scores, -1), layer_idx=0, query_positions=qpos, key_positions=kpos)
    b = torch.softmax(off(scores, layer_idx=0, query_positions=qpos, key_positions=kpos), -1)
    assert torch.allclose(a, b, atol=1e-14, rtol=0)
    assert torch.allclose(a.sum(-1), torch.ones(1, 2, 3, dtype=torch.float64), atol=1e-14)


def test_apply_gain_is_differentiable_out_of_place():
    p = _probs(1, 5).requires_grad_(True)
    mask = torch.tensor([[False, True, True, False, False]])
    out = apply_gain(p, mask, 2.0, renormalize=False)
    out.sum().backward()
    assert torch.equal(p.grad[..., 0, :], torch.tensor([1.0, 2.0, 2.0, 1.0, 1.0], dtype=torch.float64).expand(2, 3, 5))


@pytest.mark.parametrize("cfg", [LocoREConfig(beta=-0.1), LocoREConfig(beta=0.1, window=0)])
def test_bad_parameters_are_refused(cfg):
    with pytest.raises(ValueError):
        LocoREHook(cfg, output_start=0)


def test_logit_offset_value():
    off = LocoREHook(LocoREConfig(beta=0.15, window=1, mode="logit_offset"), output_start=0)
    s = torch.zeros(1, 1, 1, 3, dtype=torch.float64)
    out = off(s, layer_idx=0, query_positions=[2], key_positions=range(3))
    assert out[0, 0, 0].tolist() == [0.0, math.log1p(0.15), 0.0]


@pytest.mark.parametrize("mode", ["post_softmax", "renormalize", "logit_offset"])
def test_single_query_fast_path_equals_the_mask_path(mode):
    o, w = 6, 3
    hook = LocoREHook(LocoREConfig(beta=0.25, window=w, mode=mode), output_start=o)
    ref = LocoREHook(LocoREConfig(beta=0.25, window=w, mode=mode), output_start=o)
    for k in range(1, 14):  # cached decoding: one query at k - 1, keys arange(k)
        x = torch.softmax(torch.randn(1, 2, 1, k, dtype=torch.float64), -1)
        kpos = torch.arange(k)
        fast = hook(x, layer_idx=0, query_positions=kpos[k - 1:], key_positions=kpos)
        slow = ref(x, layer_idx=0, query_positions=[k - 1], key_positions=range(k))  # not tensors: mask path
        assert torch.allclose(fast, slow, rtol=1e-15, atol=0)
        if k - 1 <= o:
            assert fast is x
