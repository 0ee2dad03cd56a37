"""`decode_batch` equals `decode` row by row for every registered architecture: greedy, seeded sampling (the
per-sample generator makes it batch-invariant), SGRS (decisions and scores), LocoRE and the decay's online rule,
with prompts of different lengths, images of different sizes and a text-only row in one batch."""

import math

import pytest
import torch
from _capture_fixtures import TEXT_ARCHS, VISION_ARCHS, image_path, tiny_bundle

from saliency_lab.config import DecodingConfig, LocoREConfig, ManifestSample, SaliencyDecayConfig, SGRSConfig
from saliency_lab.decoding import decode
from saliency_lab.decoding.batch import decode_batch

ARCHS = TEXT_ARCHS + VISION_ARCHS
N_NEW = 7
CONFIGS = {
    "greedy": DecodingConfig(max_new_tokens=N_NEW),
    "sample": DecodingConfig(strategy="sample", max_new_tokens=N_NEW, top_k=20, seed=3),
    "sgrs": DecodingConfig(strategy="sgrs", max_new_tokens=N_NEW, sgrs=SGRSConfig(alpha=1.0, k=5), seed=3),
    "locore": DecodingConfig(
        strategy="sample", max_new_tokens=N_NEW, top_k=20, seed=5, locore=LocoREConfig(beta=0.5, window=3)
    ),
    "decay": DecodingConfig(max_new_tokens=N_NEW, decay=SaliencyDecayConfig(rate=0.2, threshold=0.1)),
}
PROMPTS = [
    "Describe the image.",
    "What is shown here in this picture? Tell me in detail, please, every object.",
    "Hi",
]


def _items(arch, n_new=N_NEW):
    b = tiny_bundle(arch)
    images = [image_path(), image_path(110, 90), None] if b.adapter.is_vision else [None] * 3
    samples = [
        ManifestSample(f"{arch}-{i}", p, image=im)
        for i, (p, im) in enumerate(zip(PROMPTS, images, strict=True))
    ]
    items = [b.adapter.prepare(b, s, max_new_tokens=n_new) for s in samples]
    assert len({p.n_input for p in items}) == 3  # different lengths, so rows are really padded
    return b, items


def _same_float(a, b):
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-10, abs_tol=1e-12)


def _assert_equal(single, batched):
    assert single.output_ids == batched.output_ids
    for col, vals in single.token_columns.items():
        other = batched.token_columns[col]
        assert len(vals) == len(other)
        assert all(
            _same_float(x, y) if isinstance(x, float) else x == y for x, y in zip(vals, other, strict=True)
        ), col
    for col, vals in single.decisions.items():
        other = batched.decisions[col]
        assert all(
            _same_float(x, y) if isinstance(x, float) else x == y for x, y in zip(vals, other, strict=True)
        ), col
    assert single.stats.get("decayed_steps") == batched.stats.get("decayed_steps")
    assert len(single.hooks) == len(batched.hooks)


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_equals_single_for_every_strategy(arch):
    b, items = _items(arch)
    for name, cfg in CONFIGS.items():
        batched = decode_batch(b, items, cfg)
        for item, got in zip(items, batched, strict=True):
            _assert_equal(decode(b, item, cfg), got)
        if name == "sgrs":
            # The saliency read while decoding is real: scores are defined after step 0.
            assert all(s is not None for r in batched for s in r.token_columns["sgrs_score"][1:])


@pytest.mark.parametrize("arch", ["llama", "qwen2_vl"])
def test_finished_rows_leave_the_batch(arch, monkeypatch):
    """A row that emits EOS leaves the batch (its cache rows dropped); the rows after it are unchanged."""
    b, items = _items(arch)
    cfg = CONFIGS["greedy"]
    free = [decode(b, p, cfg).output_ids for p in items]
    eos = free[1][2]  # the middle row's third token becomes EOS: that row stops at step 2
    monkeypatch.setattr(type(b.adapter), "eos_token_ids", lambda self, bundle: [eos])
    single = [decode(b, p, cfg).output_ids for p in items]
    assert len(single[1]) == free[1].index(eos) + 1 < N_NEW
    batched = [r.output_ids for r in decode_batch(b, items, cfg)]
    assert batched == single


def test_sgrs_hints_change_cost_not_numbers(monkeypatch):
    """With the policy's hint the first draw of every row is scored in one backward per step; without it every
    SGRS candidate gets its own backward. The decisions are the same."""
    b, items = _items("llava")
    cfg = CONFIGS["sgrs"]
    calls = {"n": 0}
    real = torch.autograd.grad

    def counting(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(torch.autograd, "grad", counting)
    hinted = decode_batch(b, items, cfg)
    n_hinted, calls["n"] = calls["n"], 0
    from saliency_lab.decoding.sgrs import SGRSPolicy

    monkeypatch.setattr(SGRSPolicy, "likely_requests", lambda self, ctx: [])
    plain = decode_batch(b, items, cfg)
    for x, y in zip(hinted, plain, strict=True):
        _assert_equal(x, y)
    scored = sum(r.stats["backward_passes"] for r in plain)
    assert calls["n"] == scored  # unhinted: one backward per scored candidate of each row
    assert n_hinted < scored
