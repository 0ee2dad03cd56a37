"""Scale options of the single pass: --max-pass-tokens (exact chunking) and --saliency-precision float32."""

import numpy as np
import pytest
import torch
from _capture_fixtures import image_path, tiny_bundle

from saliency_lab.config import DecodingConfig, ManifestSample
from saliency_lab.decoding import decode
from saliency_lab.decoding.hooks import intervention_hooks
from saliency_lab.saliency.single_pass import compute_dtype, language_model_in, single_pass


def _setup(arch: str, n_new: int, dtype: str = "float64"):
    b = tiny_bundle(arch, dtype)
    img = image_path() if b.adapter.is_vision else None
    s = ManifestSample(f"{arch}-scale", "Describe the image in detail.", image=img, system="You are brief.")
    p = b.adapter.prepare(b, s, max_new_tokens=n_new)
    out = decode(b, p, DecodingConfig(max_new_tokens=n_new)).output_ids
    return b, p, out


# The stored sums are float32 (the rows are float64): compare them at float32 rounding.
F32 = 2.0**-23


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = float(np.abs(b).max())
    return float(np.abs(a - b).max()) / scale if scale > 0 else float(np.abs(a).max())


@pytest.mark.parametrize("arch", ["llama", "qwen2_vl"])
def test_chunked_pass_equals_one_pass(arch):
    b, p, out = _setup(arch, 9)
    assert len(out) == 9
    one = single_pass(b, p, out, keep_rows=True, candidates=3)
    for chunk in (1, 4, 8, 9, 50):
        got = single_pass(b, p, out, keep_rows=True, candidates=3, max_pass_tokens=chunk)
        for k in one.sums:
            assert got.sums[k].shape == one.sums[k].shape
            assert _rel(got.sums[k], one.sums[k]) <= F32, (arch, chunk, k)
        for k in one.cand_sums:
            assert _rel(got.cand_sums[k], one.cand_sums[k]) <= F32, (arch, chunk, k)
        assert np.array_equal(got.cand_ids, one.cand_ids)
        assert float((got.logprobs - one.logprobs).abs().max()) <= 1e-12
        # The float64 rows themselves: identical to 1e-12 of the largest entry.
        for a, c in zip(got.rows, one.rows, strict=True):
            assert a.dtype == torch.float64 and a.shape == c.shape
            assert float((a - c).abs().max()) <= 1e-12 * float(c.abs().max()), (arch, chunk)


def test_chunked_pass_with_locore_hooks():
    from saliency_lab.config import LocoREConfig

    b, p, out = _setup("llama", 7)
    # LocoRE hooks see absolute positions: the blocks must give them the same ones as the single pass.
    hooks = intervention_hooks(DecodingConfig(locore=LocoREConfig(beta=0.3, window=2)), p.n_input)
    assert hooks
    one = single_pass(b, p, out, hooks=hooks, keep_rows=True)
    plain = single_pass(b, p, out)
    assert _rel(one.sums["out_sum"], plain.sums["out_sum"]) > 1e-6  # the hook changes the numbers
    got = single_pass(b, p, out, hooks=hooks, keep_rows=True, max_pass_tokens=3)
    for a, c in zip(got.rows, one.rows, strict=True):
        assert float((a - c).abs().max()) <= 1e-12 * float(c.abs().max())
    for k in one.sums:
        assert _rel(got.sums[k], one.sums[k]) <= F32, k


def test_float32_precision_on_bf16_model_is_closer_to_float64():
    b16 = tiny_bundle("llama", "bfloat16")
    p16 = b16.adapter.prepare(
        b16, ManifestSample("llama-bf16", "Describe a busy street in detail."), max_new_tokens=12
    )
    out = decode(b16, p16, DecodingConfig(max_new_tokens=12)).output_ids
    before = {k: v.clone() for k, v in b16.model.state_dict().items()}
    # The truth for this model: float64 arithmetic on the same (bf16) weights.
    with compute_dtype(b16.model, torch.float64, torch.bfloat16):
        ref = single_pass(b16, p16, out, precision="model")
    low = single_pass(b16, p16, out, precision="model")
    high = single_pass(b16, p16, out, precision="float32")
    # The weights come back bit for bit, in their own dtypes (float32 buffers stay float32).
    after = b16.model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    for k in ("out_sum", "prompt_sum", "row_l2"):
        e_low, e_high = _rel(low.sums[k], ref.sums[k]), _rel(high.sums[k], ref.sums[k])
        assert e_low > 1e-3 and e_high < 1e-5, (k, e_low, e_high)
    # The weights stayed bf16 during the pass (upcast layer by layer): same numbers as a float32 copy.
    with compute_dtype(b16.model, torch.float32, torch.bfloat16):
        copy32 = single_pass(b16, p16, out, precision="model")
    for k in copy32.sums:
        assert _rel(high.sums[k], copy32.sums[k]) <= 1e-5, k
    assert not any("forward" in m.__dict__ for m in b16.model.modules())  # nothing left patched


@pytest.mark.parametrize("arch", ["llava", "qwen2_vl"])
def test_float32_precision_on_bf16_vision_models(arch):
    b16 = tiny_bundle(arch, "bfloat16")
    s = ManifestSample(f"{arch}-bf16", "Describe the image in detail.", image=image_path())
    p16 = b16.adapter.prepare(b16, s, max_new_tokens=8)
    out = decode(b16, p16, DecodingConfig(max_new_tokens=8)).output_ids
    # The vision tower stays bf16 (its features are the model's); the language model computes in float32.
    # Truth: the same, with the language model in float64.
    with language_model_in(b16.model, torch.float64, torch.bfloat16):
        ref = single_pass(b16, p16, out, precision="model")
    low = single_pass(b16, p16, out, precision="model")
    high = single_pass(b16, p16, out, precision="auto")  # auto = float32 for a bf16 model
    for k in ("out_sum", "img_sum", "row_l2"):
        e_low, e_high = _rel(low.sums[k], ref.sums[k]), _rel(high.sums[k], ref.sums[k])
        assert e_low > 1e-3 and e_high < 1e-5, (arch, k, e_low, e_high)


def test_compute_dtype_is_a_no_op_for_the_same_dtype():
    b = tiny_bundle("llama", "float64")
    w = b.model.get_input_embeddings().weight
    with compute_dtype(b.model, torch.float64, torch.float64):
        assert b.model.get_input_embeddings().weight is w
