"""The batched saliency pass equals `single_pass` per sample, for every registered architecture (tiny models)."""

from __future__ import annotations

import pytest
import torch
from _capture_fixtures import TEXT_ARCHS, VISION_ARCHS, image_path, tiny_bundle

from saliency_lab.config import DecodingConfig, LocoREConfig, ManifestSample
from saliency_lab.decoding import decode
from saliency_lab.decoding.locore import LocoREHook
from saliency_lab.saliency.batch_pass import single_pass_batch
from saliency_lab.saliency.single_pass import single_pass

ARCHS = TEXT_ARCHS + VISION_ARCHS
TINY = 1e-300

# (prompt, image size or None, system, output length) per row: prompts of clearly different lengths, images
# of different sizes (different image-token counts for Qwen2-VL), one text-only row.
ROWS = [
    ("Hi.", (60, 50), "You are brief.", 4),
    ("Describe the whole picture in careful detail, every object and colour you see.", (110, 90), "", 6),
    ("What is in the middle?", None, "You are brief.", 2),
]
# A short text-only row beside an image after a long system prompt: the image lies past the shortest prefill,
# so the whole batch runs in the graded forward (no prefill).
NO_PREFILL_ROWS = [
    ("Hi.", None, "", 3),
    ("What?", (110, 90), "You are a careful and very brief assistant for pictures. " * 2, 5),
    ("Describe it.", (60, 50), "", 4),
]


def _prepare(bundle, arch, rows):
    vision = bundle.adapter.is_vision
    out = []
    for i, (prompt, size, system, k) in enumerate(rows):
        img = image_path(*size) if size and vision else None
        s = ManifestSample(f"{arch}-{i}", prompt, image=img, system=system)
        out.append((bundle.adapter.prepare(bundle, s, max_new_tokens=k), k))
    return out


def _decoded(bundle, arch, rows=ROWS):
    items = _prepare(bundle, arch, rows)
    prepared = [p for p, _ in items]
    return prepared, [decode(bundle, p, DecodingConfig(max_new_tokens=k)).output_ids for p, k in items]


def _random_outputs(bundle, prepared, lengths, seed=0):
    """Fixed random output ids (never an image placeholder): rank 0 differs from them, so the candidate pass
    takes its own rank-0 backward."""
    g = torch.Generator().manual_seed(seed)
    banned = set(bundle.adapter.suppressed_token_ids(bundle))
    vocab = [i for i in range(int(bundle.model.get_output_embeddings().weight.shape[0])) if i not in banned]
    return [[vocab[int(i)] for i in torch.randint(len(vocab), (k,), generator=g)] for k in lengths]


def _close(got, want, rel):
    """|got - want| <= rel * scale, the scale being each row's norm (last dim) of `want`."""
    want = torch.as_tensor(want, dtype=torch.float64)
    got = torch.as_tensor(got, dtype=torch.float64)
    assert got.shape == want.shape
    scale = torch.linalg.vector_norm(want, dim=-1, keepdim=True).clamp_min(TINY)
    return bool(((got - want).abs() <= rel * scale).all())


def _assert_equal_results(batch, singles, rel):
    assert len(batch) == len(singles)
    for i, (b, s) in enumerate(zip(batch, singles, strict=True)):
        assert b.logprobs.dtype == s.logprobs.dtype and b.logprobs.shape == s.logprobs.shape
        assert float((b.logprobs - s.logprobs).abs().max()) <= rel * max(1.0, float(s.logprobs.abs().max()))
        assert b.sums.keys() == s.sums.keys()
        for col, want in s.sums.items():
            assert b.sums[col].dtype == want.dtype and b.sums[col].shape == want.shape
            # Per column over the [T, L] table: the row norms of the transposed table are per-layer scales.
            assert _close(b.sums[col].T, want.T, rel), (i, col)
        assert (b.rows is None) == (s.rows is None)
        for layer, (rb, rs) in enumerate(zip(b.rows or [], s.rows or [], strict=True)):
            assert rb.dtype == rs.dtype and rb.shape == rs.shape
            assert bool((torch.linalg.vector_norm(rs, dim=-1) > 0).all()), (i, layer)  # rows carry signal
            assert _close(rb, rs, rel), (i, layer)
        if s.cand_ids is None:
            assert b.cand_ids is None
            continue
        assert (b.cand_ids == s.cand_ids).all()
        assert abs(b.cand_probs - s.cand_probs).max() <= rel
        for col, want in s.cand_sums.items():
            assert b.cand_sums[col].shape == want.shape
            assert _close(b.cand_sums[col].transpose(0, 2, 1), want.transpose(0, 2, 1), rel), (i, col)


def _singles(bundle, prepared, outputs, hooks=None, **kw):
    hooks = hooks or [None] * len(prepared)
    return [
        single_pass(bundle, p, o, hooks=h, **kw) for p, o, h in zip(prepared, outputs, hooks, strict=True)
    ]


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_equals_single_pass_float64(arch):
    bundle = tiny_bundle(arch)
    prepared, outputs = _decoded(bundle, arch)
    assert len({p.n_input for p in prepared}) == 3 and len({len(o) for o in outputs}) == 3
    if bundle.adapter.is_vision:
        images = [p.segments["image"][1] - p.segments["image"][0] for p in prepared]
        assert images[0] > 0 and images[1] > 0 and images[2] == 0
        if arch.startswith("qwen"):
            assert images[0] != images[1]  # dynamic resolution: the two images differ in token count
    kw = {"keep_rows": True, "candidates": 3}
    for heads in ("sum_abs", "abs_sum"):
        batch = single_pass_batch(bundle, prepared, outputs, heads=heads, **kw)
        _assert_equal_results(batch, _singles(bundle, prepared, outputs, heads=heads, **kw), 1e-10)


@pytest.mark.parametrize("arch", VISION_ARCHS)
def test_batch_without_prefill_float64(arch):
    bundle = tiny_bundle(arch)
    prepared, _ = _decoded(bundle, arch, NO_PREFILL_ROWS)
    outputs = _random_outputs(bundle, prepared, [3, 5, 4])
    # The shortest prefill stops before the second row's image, so nothing is prefilled.
    assert prepared[0].n_input - 1 <= prepared[1].segments["image"][0]
    calls = _count_forwards(
        bundle, lambda: single_pass_batch(bundle, prepared, outputs, keep_rows=True, candidates=2)
    )
    assert calls == [(3, max(p.n_input + len(o) - 1 for p, o in zip(prepared, outputs, strict=True)))]
    batch = single_pass_batch(bundle, prepared, outputs, keep_rows=True, candidates=2)
    _assert_equal_results(batch, _singles(bundle, prepared, outputs, keep_rows=True, candidates=2), 1e-10)


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_equals_single_pass_float32(arch):
    bundle = tiny_bundle(arch, "float32")
    prepared, outputs = _decoded(bundle, arch)
    batch = single_pass_batch(bundle, prepared, outputs, keep_rows=True, candidates=3)
    _assert_equal_results(batch, _singles(bundle, prepared, outputs, keep_rows=True, candidates=3), 1e-5)


class _DampFirstKey:
    """A caller hook that acts on prompt rows too (so the prefill runs through our attention with it): halves
    every query's attention to key 0."""

    def __call__(self, probs, *, layer_idx, query_positions, key_positions):
        factor = torch.ones(probs.shape[-1], dtype=probs.dtype)
        factor[0] = 0.5
        return probs * factor


@pytest.mark.parametrize("arch", ["llama", "qwen2_vl"])
def test_batch_with_per_row_hooks(arch):
    bundle = tiny_bundle(arch)
    prepared, _ = _decoded(bundle, arch)
    outputs = _random_outputs(bundle, prepared, [5, 7, 3], seed=1)
    o = [p.n_input for p in prepared]
    hooks = [
        [LocoREHook(LocoREConfig(beta=0.4, window=3), output_start=o[0])],
        [LocoREHook(LocoREConfig(beta=0.3, window=2, mode="logit_offset"), output_start=o[1])],
        None,
    ]
    kw = {"keep_rows": True, "candidates": 2}
    batch = single_pass_batch(bundle, prepared, outputs, hooks=hooks, **kw)
    singles = _singles(bundle, prepared, outputs, hooks, **kw)
    _assert_equal_results(batch, singles, 1e-10)
    # The hooks matter: without them the first two rows differ.
    plain = single_pass_batch(bundle, prepared, outputs, **kw)
    for i in (0, 1):
        assert not _close(plain[i].rows[-1], batch[i].rows[-1], 1e-6)
    # A hook acting on prompt rows routes the batched prefill through our attention, per row.
    hooks = [[_DampFirstKey()], [], [LocoREHook(LocoREConfig(beta=0.4, window=3), output_start=o[2])]]
    batch = single_pass_batch(bundle, prepared, outputs, hooks=hooks, **kw)
    _assert_equal_results(batch, _singles(bundle, prepared, outputs, hooks, **kw), 1e-10)


@pytest.mark.parametrize("arch", ["llama", "qwen2_vl"])
def test_batch_precision_float32_on_bfloat16(arch):
    bundle = tiny_bundle(arch, "bfloat16")
    prepared, outputs = _decoded(bundle, arch)
    kw = {"keep_rows": True, "candidates": 2, "precision": "float32"}
    batch = single_pass_batch(bundle, prepared, outputs, **kw)
    singles = _singles(bundle, prepared, outputs, **kw)
    assert batch[0].logprobs.dtype == torch.float32 and batch[0].rows[0].dtype == torch.float32
    _assert_equal_results(batch, singles, 1e-5)


def _count_forwards(bundle, fn):
    """Input shapes of the language model's top-level forward calls while `fn` runs."""
    calls = []
    handle = bundle.model.register_forward_pre_hook(
        lambda m, args, kwargs: calls.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        fn()
    finally:
        handle.remove()
    return calls


@pytest.mark.parametrize("arch", ["llama", "qwen2_vl"])
def test_one_prefill_and_one_graded_forward_for_the_batch(arch):
    bundle = tiny_bundle(arch)
    prepared, outputs = _decoded(bundle, arch)
    calls = _count_forwards(bundle, lambda: single_pass_batch(bundle, prepared, outputs, candidates=3))
    p0 = min(p.n_input for p in prepared) - 1
    width = max(p.n_input + len(o) - 1 for p, o in zip(prepared, outputs, strict=True))
    assert calls == [(3, p0), (3, width - p0)]


def test_mismatched_arguments_are_refused():
    bundle = tiny_bundle("llama")
    prepared, outputs = _decoded(bundle, "llama")
    with pytest.raises(ValueError, match="one output"):
        single_pass_batch(bundle, prepared, outputs[:2])
    with pytest.raises(ValueError, match="one output"):
        single_pass_batch(bundle, prepared, outputs, hooks=[None])
    with pytest.raises(ValueError, match="no output ids"):
        single_pass_batch(bundle, prepared, [outputs[0], [], outputs[2]])


def _with_prefix(bundle, prepared, outputs, hooks=None, **kw):
    """The pass started from `decode_batch`'s kept prefill, asserting the prefix path really ran."""
    from saliency_lab.decoding.batch import decode_batch
    from saliency_lab.saliency import batch_pass

    cfg = DecodingConfig(max_new_tokens=max(len(o) for o in outputs))
    prefix = decode_batch(bundle, prepared, cfg, hooks=hooks, keep_prefix=True)[0].prefix
    assert prefix is not None and prefix.width == max(p.n_input for p in prepared)
    ran = {"n": 0}
    real = batch_pass._prefix_pass

    def spy(*a, **k):
        ran["n"] += 1
        return real(*a, **k)

    batch_pass._prefix_pass = spy
    try:
        out = single_pass_batch(bundle, prepared, outputs, hooks=hooks, prefix=prefix, **kw)
    finally:
        batch_pass._prefix_pass = real
    assert ran["n"] == 1
    return out


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype,rel", [("float64", 1e-10), ("float32", 1e-5)])
def test_pass_from_the_decoding_prefill_equals_single_pass(arch, dtype, rel):
    """Left-padded, from the decoding's prefill (pad keys masked, positions continued per row, M-RoPE for
    Qwen2-VL): each row equals its batch-1 pass."""
    bundle = tiny_bundle(arch, dtype)
    prepared, outputs = _decoded(bundle, arch)
    kw = {"keep_rows": True, "candidates": 3}
    batch = _with_prefix(bundle, prepared, outputs, **kw)
    _assert_equal_results(batch, _singles(bundle, prepared, outputs, **kw), rel)


@pytest.mark.parametrize("arch", ["llama", "qwen2_vl"])
def test_pass_from_the_prefill_with_per_row_hooks(arch):
    bundle = tiny_bundle(arch)
    prepared, outputs = _decoded(bundle, arch)
    hooks = [[LocoREHook(LocoREConfig(beta=0.5 + b, window=2), p.n_input)] for b, p in enumerate(prepared)]
    batch = _with_prefix(bundle, prepared, outputs, hooks=hooks, keep_rows=True)
    _assert_equal_results(batch, _singles(bundle, prepared, outputs, hooks=hooks, keep_rows=True), 1e-10)


def test_prefix_of_other_samples_or_dtype_is_ignored():
    """A prefix made for other samples, or in another dtype than the pass computes in, is not used."""
    from saliency_lab.decoding.batch import decode_batch
    from saliency_lab.saliency import batch_pass

    bundle = tiny_bundle("llama")
    prepared, outputs = _decoded(bundle, "llama")
    prefix = decode_batch(bundle, prepared, DecodingConfig(max_new_tokens=2), keep_prefix=True)[0].prefix
    others = [
        bundle.adapter.prepare(bundle, ManifestSample(p.sample_id, "Other text."), max_new_tokens=6)
        for p in prepared
    ]
    assert not batch_pass._prefix_usable(bundle, prefix, others, [[]] * 3, bundle.dtype)
    assert not batch_pass._prefix_usable(bundle, prefix, prepared, [[]] * 3, torch.float32)
    assert batch_pass._prefix_usable(bundle, prefix, prepared, [[]] * 3, bundle.dtype)
