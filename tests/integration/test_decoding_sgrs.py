"""SGRS in the cached gradient loop on tiny float64 models of every adapter family."""
# ruff: noqa: F811  (pytest fixtures imported from _decoding_fixtures are redefined as parameters)

from __future__ import annotations

import pytest
import torch
from _decoding_fixtures import (  # noqa: F401
    ALL_ARCHS,
    ARCHS,
    check_decisions,
    decoding_image,
    decoding_models,
    hf_generate,
    prepare,
    sgrs_score_reference,
)
from _run_fixtures import tiny_llama  # noqa: F401

from saliency_lab.config import DecodingConfig, SGRSConfig
from saliency_lab.decoding import decode
from saliency_lab.errors import SaliencyLabError


def eos_set(bundle) -> set[int]:
    return set(bundle.adapter.eos_token_ids(bundle))


def _sgrs(max_new: int = 5, **kw) -> DecodingConfig:
    return DecodingConfig(max_new_tokens=max_new, strategy="sgrs", seed=3, sgrs=SGRSConfig(**kw))


@pytest.mark.parametrize("arch", ARCHS)
def test_scores_of_chosen_and_rejected_candidates_equal_the_reference(arch, decoding_models, decoding_image):
    bundle = decoding_models(arch)
    prep = prepare(bundle, arch, decoding_image)
    # alpha > 1 makes most steps reject: rejected candidates get checked too.
    cfg = _sgrs(5, alpha=1.3, k=5, max_resample=3)
    res = decode(bundle, prep, cfg)
    check_decisions(res, cfg.sgrs, eos_set(bundle))
    layers = [bundle.n_layers // 2 + i for i in range(bundle.n_layers - bundle.n_layers // 2)]
    assert res.stats["target_layers"] == layers
    dc = res.decisions
    checked = rejected = 0
    for i, step in enumerate(dc["step"]):
        if step == 0:
            continue
        ref = sgrs_score_reference(bundle, prep, res.output_ids[:step], dc["token_id"][i], layers)
        assert ref > 0
        assert abs(dc["score"][i] - ref) <= 1e-10 * ref
        checked += 1
        rejected += not (dc["accepted"][i] or dc["fallback"][i])
    assert checked >= 4 and rejected >= 1
    # one backward per scored candidate, none at step 0
    assert res.stats["backward_passes"] == checked


@pytest.mark.parametrize("arch", ARCHS)
def test_alpha_zero_reproduces_top_k_sampling(arch, decoding_models, decoding_image):
    bundle = decoding_models(arch)
    prep = prepare(bundle, arch, decoding_image)
    sgrs = decode(bundle, prep, _sgrs(10, alpha=0.0, k=5))
    samp = decode(bundle, prep, DecodingConfig(max_new_tokens=10, strategy="sample", top_k=5, seed=3))
    assert sgrs.output_ids == samp.output_ids
    assert all(sgrs.token_columns["accepted"]) and sum(sgrs.token_columns["n_rejected"]) == 0
    assert len(sgrs.decisions["step"]) == len(sgrs.output_ids)  # one draw per step
    # and sampling is not greedy here (the equality is not trivial)
    greedy = decode(bundle, prep, DecodingConfig(max_new_tokens=10))
    assert greedy.output_ids != samp.output_ids


def test_unreachable_threshold_falls_back_to_top_scoring_candidate(decoding_models):
    bundle = decoding_models("llama")
    prep = prepare(bundle, "llama", None)
    cfg = _sgrs(8, alpha=1e6, k=4, max_resample=3, window=3)
    res = decode(bundle, prep, cfg)
    check_decisions(res, cfg.sgrs)
    fb = res.token_columns["fallback"]
    # step 0: no score; step 1: tau 0 (no scored history); step 2 on: tau huge -> fallback until the window
    # holds only fallbacks (they are not history), then one acceptance at tau 0 restarts the cycle.
    assert fb[:2] == [False, False] and fb[2:5] == [True, True, True] and fb[5] is False
    assert res.token_columns["sgrs_tau"][5] == 0.0
    assert all(res.token_columns["n_rejected"][s] == 3 for s in range(2, 5))


def test_seeded_and_reproducible(decoding_models):
    bundle = decoding_models("llama")
    prep = prepare(bundle, "llama", None)
    a = decode(bundle, prep, _sgrs(8, alpha=0.9))
    b = decode(bundle, prep, _sgrs(8, alpha=0.9))
    assert a.output_ids == b.output_ids and a.decisions == b.decisions and a.token_columns == b.token_columns
    other = DecodingConfig(max_new_tokens=8, strategy="sgrs", seed=4, sgrs=SGRSConfig(alpha=0.9))
    assert decode(bundle, prep, other).output_ids != a.output_ids


def test_target_layers_option_and_bad_layers(decoding_models):
    bundle = decoding_models("llama")
    prep = prepare(bundle, "llama", None)
    res = decode(bundle, prep, _sgrs(3, alpha=0.0, layers=[0, 1]))
    assert res.stats["target_layers"] == [0, 1]
    ref = sgrs_score_reference(bundle, prep, res.output_ids[:2], res.output_ids[2], [0, 1])
    assert res.token_columns["sgrs_score"][2] == pytest.approx(ref, rel=1e-10)
    with pytest.raises(SaliencyLabError, match="sgrs-layers"):
        decode(bundle, prep, _sgrs(3, layers=[5]))
    with pytest.raises(SaliencyLabError, match="sgrs-k"):
        decode(bundle, prep, _sgrs(3, k=0))


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_cached_loop_greedy_equals_generate(arch, decoding_models, decoding_image):
    """Positions (M-RoPE rope_deltas for Qwen2-VL), image inputs and cache handling match `generate`."""
    bundle = decoding_models(arch)
    prep = prepare(bundle, arch, decoding_image, max_new_tokens=10)
    cfg = DecodingConfig(max_new_tokens=10)
    hf = hf_generate(bundle, prep, 10)
    assert decode(bundle, prep, cfg).output_ids == hf
    assert decode(bundle, prep, cfg, attention="sdpa").output_ids == hf
    assert decode(bundle, prep, cfg, attention="ours").output_ids == hf
    if arch == "qwen2_vl":
        # a text-only prompt after an image prompt must not inherit the image's rope_deltas
        text = prepare(bundle, arch, None, max_new_tokens=10)
        assert decode(bundle, text, cfg).output_ids == hf_generate(bundle, text, 10)
        assert torch.equal(prep.input_ids, prepare(bundle, arch, decoding_image).input_ids)


class _Identity:
    """A hook that does not declare `acts_on_prompt`: the prefill must then run through our attention too."""

    on_logits = False

    def __init__(self) -> None:
        self.prompt_rows_seen = False

    def __call__(self, probs, *, layer_idx, query_positions, key_positions):
        self.prompt_rows_seen |= probs.shape[-2] > 1
        return probs


def test_generic_autograd_head_and_eager_prefill_give_the_same_decisions(decoding_models, monkeypatch):
    """The closed-form head gradient and the sdpa prefill are speed paths: switching both off changes nothing."""
    bundle = decoding_models("qwen2_vl")
    prep = prepare(bundle, "qwen2_vl", None)
    cfg = _sgrs(6, alpha=1.2)
    fast = decode(bundle, prep, cfg)
    monkeypatch.setattr(bundle.adapter, "logits_head", lambda model: None)
    hook = _Identity()
    slow = decode(bundle, prep, cfg, hooks=[hook])
    assert hook.prompt_rows_seen
    assert slow.output_ids == fast.output_ids
    for a, b in zip(slow.decisions["score"], fast.decisions["score"], strict=True):
        assert (a is None and b is None) or abs(a - b) <= 1e-12 * abs(b)


def test_capture_sample_run_is_the_paired_control_of_sgrs(tmp_path, tiny_llama):  # noqa: F811
    """`--strategy sample --top-k K` and `--strategy sgrs --sgrs-alpha 0 --sgrs-k K` with one seed emit the same
    tokens through the whole capture (one decoding path), and another seed does not."""
    import pyarrow.parquet as pq
    from _run_fixtures import write_text_manifest

    from saliency_lab.cli import main

    m = write_text_manifest(tmp_path / "m.jsonl", 3)
    base = ["capture", "--model", str(tiny_llama), "--data", str(m), "--max-new-tokens", "8", "--quiet"]

    def tokens(name: str, *extra: str) -> dict[str, list[int]]:
        assert main(base + ["--out", str(tmp_path), "--run-id", name, *extra]) == 0
        rows = (
            pq.read_table(tmp_path / name / "tokens")
            .sort_by([("sample_id", "ascending"), ("step", "ascending")])
            .to_pylist()
        )
        out: dict[str, list[int]] = {}
        for r in rows:
            out.setdefault(r["sample_id"], []).append(r["token_id"])
        return out

    sample = tokens("sample", "--strategy", "sample", "--top-k", "5", "--seed", "11")
    sgrs = tokens("sgrs", "--strategy", "sgrs", "--sgrs-alpha", "0", "--sgrs-k", "5", "--seed", "11")
    other = tokens("other", "--strategy", "sample", "--top-k", "5", "--seed", "12")
    greedy = tokens("greedy")
    assert len(sample) == 3 and sample == sgrs
    assert sample != other and sample != greedy
