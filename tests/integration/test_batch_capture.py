"""Batched capture through `run.capture`: every table equals the batch-1 run's (float64 to 1e-9, float32 to
1e-5), a sample that fails alone gets its error row without failing its batch-mates, a batch that raises is redone
sample by sample, and an interrupted batched run resumes to the same dataset."""

import json

import numpy as np
import pyarrow.dataset as ds
import pytest
from _capture_fixtures import corrupt_image_path, image_path, tiny_dir

from saliency_lab.cli import main
from saliency_lab.config import BatchConfig, CaptureConfig, DecodingConfig, ModelConfig, SaliencyConfig
from saliency_lab.pipeline import batch as pipeline_batch
from saliency_lab.run import capture

PROMPTS = [
    "Describe it.",
    "What is shown here in this picture? Tell me in detail, please.",
    "Hi",
    "Name three colours you can see in the image now.",
    "Count the objects.",
    "Is there a dog?",
]
KEYS = {
    "samples": ["sample_id"],
    "tokens": ["sample_id", "step"],
    "saliency": ["sample_id", "step", "layer"],
    "candidates": ["sample_id", "step", "rank"],
    "decisions": ["sample_id", "step", "draw"],
}


def _manifest(tmp_path, vision):
    images = [image_path(), image_path(110, 90), None, corrupt_image_path(), image_path(80, 60), image_path()]
    lines = []
    for i, prompt in enumerate(PROMPTS):
        row = {"sample_id": f"s{i}", "prompt": prompt}
        if vision and images[i]:
            row["image"] = images[i]
        lines.append(json.dumps(row))
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cfg(tmp_path, arch, size, name, dtype="float64", strategy="greedy", **kw):
    return CaptureConfig(
        ModelConfig(str(tiny_dir(arch)), dtype=dtype),
        str(_manifest(tmp_path, arch != "llama")),
        str(tmp_path / "runs"),
        run_id=name,
        decoding=DecodingConfig(max_new_tokens=6, strategy=strategy, seed=1, top_k=10),
        saliency=SaliencyConfig(candidates=2),
        batch=BatchConfig(size=size),
        quiet=True,
        **kw,
    )


def _table(run_dir, name):
    t = ds.dataset(str(run_dir / name), format="parquet").to_table().to_pandas()
    return t.sort_values(KEYS[name]).reset_index(drop=True)


def assert_same_runs(a, b, rtol):
    names = [n for n in KEYS if (a / n).exists()]
    assert names == [n for n in KEYS if (b / n).exists()]
    for name in names:
        x, y = _table(a, name), _table(b, name)
        assert len(x) == len(y), name
        for col in x.columns:
            if col in ("run_id", "seconds"):
                continue
            if x[col].dtype.kind == "f":
                np.testing.assert_allclose(
                    x[col].to_numpy(), y[col].to_numpy(), rtol=rtol, atol=1e-12, err_msg=f"{name}.{col}"
                )
            elif any(isinstance(v, np.ndarray) and v.dtype.kind == "f" for v in x[col]):
                for u, v in zip(x[col], y[col], strict=True):  # list columns of floats (top-k probabilities)
                    np.testing.assert_allclose(v, u, rtol=rtol, atol=1e-12, err_msg=f"{name}.{col}")
            else:
                assert list(x[col].map(repr)) == list(y[col].map(repr)), f"{name}.{col}"


@pytest.mark.parametrize("arch,strategy", [("llama", "sample"), ("llava", "greedy"), ("qwen2_vl", "sgrs")])
def test_batched_run_equals_batch_one(tmp_path, arch, strategy):
    one = capture(_cfg(tmp_path, arch, 1, "one", strategy=strategy))
    four = capture(_cfg(tmp_path, arch, 4, "four", strategy=strategy))
    vision = arch != "llama"
    assert (one.ok, one.error) == (four.ok, four.error) == ((5, 1) if vision else (6, 0))
    assert_same_runs(one.run_dir, four.run_dir, rtol=1e-9)
    info = json.loads((four.run_dir / "run.json").read_text())
    assert info["batch"]["size"] == 4
    if vision:  # the corrupt image's error row names its file; its batch-mates were captured
        err = _table(four.run_dir, "samples").set_index("sample_id").loc["s3"]
        assert err["status"] == "error" and "corrupt.png" in err["error"]


def test_float32_batched_run_within_tolerance(tmp_path):
    one = capture(_cfg(tmp_path, "qwen2_5_vl", 1, "one", dtype="float32"))
    six = capture(_cfg(tmp_path, "qwen2_5_vl", 6, "six", dtype="float32"))
    assert_same_runs(one.run_dir, six.run_dir, rtol=1e-5)


def test_a_failing_batch_is_redone_sample_by_sample(tmp_path, monkeypatch, capsys):
    def broken(*a, **k):
        raise RuntimeError("CUDA out of memory (simulated)")

    one = capture(_cfg(tmp_path, "llava", 1, "one"))
    monkeypatch.setattr(pipeline_batch, "decode_batch", broken)
    redone = capture(_cfg(tmp_path, "llava", 4, "redone"))
    assert (redone.ok, redone.error) == (5, 1)
    assert_same_runs(one.run_dir, redone.run_dir, rtol=1e-9)
    # Never silent: one stderr line names the failure and the fix, and the summary counts the batches.
    err = [ln for ln in capsys.readouterr().err.splitlines() if "batch of" in ln]
    assert len(err) == 1 and "RuntimeError: CUDA out of memory" in err[0] and "--batch-size" in err[0]
    assert redone.batches_redone >= 1 and "redone one sample at a time" in redone.summary()


def test_interrupted_batched_run_resumes_to_the_same_dataset(tmp_path, monkeypatch):
    one = capture(_cfg(tmp_path, "llava", 1, "one"))
    real = pipeline_batch.capture_batch
    calls = {"n": 0}

    def interrupt_second(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(pipeline_batch, "capture_batch", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        capture(_cfg(tmp_path, "llava", 3, "cut", samples_per_part=2))
    done = _table(tmp_path / "runs" / "cut", "samples")
    assert sorted(done["sample_id"]) == ["s0", "s1", "s2"]  # the first batch was committed
    monkeypatch.setattr(pipeline_batch, "capture_batch", real)
    resumed = capture(_cfg(tmp_path, "llava", 3, "cut", resume=True, samples_per_part=2))
    assert (resumed.skipped, resumed.ok, resumed.error) == (3, 2, 1)
    assert_same_runs(one.run_dir, resumed.run_dir, rtol=1e-9)


def test_cli_batch_size(tmp_path, capsys):
    manifest = _manifest(tmp_path, vision=False)
    rc = main(
        [
            "capture",
            "--model",
            str(tiny_dir("qwen2")),
            "--data",
            str(manifest),
            "--out",
            str(tmp_path / "r"),
            "--run-id",
            "cli",
            "--max-new-tokens",
            "4",
            "--batch-size",
            "3",
            "--max-batch-tokens",
            "200",
            "--quiet",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    info = json.loads((tmp_path / "r" / "cli" / "run.json").read_text())
    assert info["batch"] == {"size": 3, "max_rows": 3, "max_tokens": 200}
    assert len(_table(tmp_path / "r" / "cli", "samples")) == 6


@pytest.mark.parametrize("dtype,reused", [("float32", True), ("bfloat16", False)])
def test_the_pass_reuses_the_decoding_prefill_in_the_model_dtype(tmp_path, monkeypatch, dtype, reused):
    """A float32 model's batched pass starts from the decoding's prefill; a bf16 model's float32 pass (the
    default precision) forwards its inputs in float32 itself."""
    from saliency_lab.saliency import batch_pass

    calls = {"prefix": 0}
    real = batch_pass._prefix_pass

    def spy(*a, **k):
        calls["prefix"] += 1
        return real(*a, **k)

    monkeypatch.setattr(batch_pass, "_prefix_pass", spy)
    res = capture(_cfg(tmp_path, "llava", 3, "p", dtype=dtype))
    assert res.ok == 5
    assert (calls["prefix"] > 0) is reused
