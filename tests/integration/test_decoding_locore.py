"""LocoRE through our attention function on tiny float64 models of every adapter family."""
# ruff: noqa: F811  (pytest fixtures imported from _decoding_fixtures are redefined as parameters)

from __future__ import annotations

import pytest
import torch
from _decoding_fixtures import ARCHS, decoding_image, decoding_models, hf_generate, prepare  # noqa: F401

from saliency_lab.config import DecodingConfig, LocoREConfig
from saliency_lab.decoding import decode
from saliency_lab.decoding.hooks import intervention_hooks
from saliency_lab.decoding.locore import LocoREHook, locore_mask
from saliency_lab.saliency.attention import intervention_context, use_attention


class _PreHookRecorder:
    """Records the probabilities a later hook receives (i.e. the plain softmax when it runs first)."""

    on_logits = False

    def __init__(self) -> None:
        self.seen: dict[int, torch.Tensor] = {}

    def __call__(self, probs, *, layer_idx, query_positions, key_positions):
        self.seen[layer_idx] = probs.detach().clone()
        return probs


def _teacher_forced(bundle, prep, out_ids, hooks):
    """Logits and per-layer recorded (post-hook) probabilities of one forward over input + outputs."""
    full = torch.cat([prep.input_ids, torch.tensor([out_ids])], dim=1)
    kwargs = bundle.adapter.forward_kwargs(prep.model_kwargs, full.shape[1])
    with torch.no_grad(), use_attention(bundle), intervention_context("plain", hooks, record=True) as ctx:
        res = bundle.model(input_ids=full, **kwargs, use_cache=False)
    return res.logits[0], {k: v.clone() for k, v in ctx.records.items()}


@pytest.fixture(params=ARCHS)
def case(request, decoding_models, decoding_image):
    arch = request.param
    bundle = decoding_models(arch)
    prep = prepare(bundle, arch, decoding_image, max_new_tokens=9)
    out = decode(bundle, prep, DecodingConfig(max_new_tokens=9)).output_ids
    return bundle, prep, out


def test_beta_zero_reproduces_baseline_logits_exactly(case):
    bundle, prep, out = case
    base_logits, base_probs = _teacher_forced(bundle, prep, out, [])
    zero = LocoREHook(LocoREConfig(beta=0.0, window=5), prep.n_input)
    logits, probs = _teacher_forced(bundle, prep, out, [zero])
    assert torch.equal(logits, base_logits)
    assert all(torch.equal(probs[i], base_probs[i]) for i in base_probs)
    cfg = DecodingConfig(max_new_tokens=9)
    assert decode(bundle, prep, cfg, hooks=[zero]).output_ids == out


def test_only_the_window_entries_change(case):
    bundle, prep, out = case
    o, w, beta = prep.n_input, 3, 0.4
    _, base_probs = _teacher_forced(bundle, prep, out, [])
    pre = _PreHookRecorder()
    _, post = _teacher_forced(bundle, prep, out, [pre, LocoREHook(LocoREConfig(beta=beta, window=w), o)])
    n = prep.n_input + len(out)
    mask = locore_mask(range(n), range(n), o, w)
    assert int(mask.sum()) > 0 and not mask[: o + 1].any()
    for layer, p in post.items():
        a = pre.seen[layer]
        assert torch.allclose(p[..., mask], a[..., mask] * (1 + beta), rtol=1e-14, atol=0)
        assert torch.equal(p[..., ~mask], a[..., ~mask])
        # rows up to the first output query never see a boosted key, at any depth: identical to baseline
        assert torch.equal(p[..., : o + 1, :], base_probs[layer][..., : o + 1, :])
    # the first layer's input is untouched, so its plain softmax equals the baseline everywhere
    assert torch.equal(pre.seen[0], base_probs[0])


def test_renormalize_equals_logit_offset_in_the_model(case):
    bundle, prep, out = case
    o = prep.n_input
    ren = LocoREHook(LocoREConfig(beta=0.3, window=4, mode="renormalize"), o)
    off = LocoREHook(LocoREConfig(beta=0.3, window=4, mode="logit_offset"), o)
    a, _ = _teacher_forced(bundle, prep, out, [ren])
    b, _ = _teacher_forced(bundle, prep, out, [off])
    base, _ = _teacher_forced(bundle, prep, out, [])
    assert torch.allclose(a, b, atol=1e-10, rtol=0)
    assert not torch.allclose(a, base, atol=1e-6)


def test_generation_with_locore_matches_generate_and_differs_from_baseline(decoding_models):
    bundle = decoding_models("llama")
    prep = prepare(bundle, "llama", None, max_new_tokens=16)
    base = DecodingConfig(max_new_tokens=16)
    strong = DecodingConfig(max_new_tokens=16, locore=LocoREConfig(beta=3.0, window=5))
    hooks = intervention_hooks(strong, prep.n_input)
    ours = decode(bundle, prep, base, hooks=hooks).output_ids
    assert ours == hf_generate(bundle, prep, 16, hooks)  # transformers' generate, same hooks
    assert decode(bundle, prep, strong).output_ids == ours  # the config's LocoRE observer, same tokens
    plain = decode(bundle, prep, base).output_ids
    # LocoRE cannot act before output step 2 (query o+1 is the first with an output key before it)
    assert ours[:2] == plain[:2] and ours != plain
