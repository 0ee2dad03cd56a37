"""`saliency-lab tiny-model` writes a folder that load_model and capture_sample use as is."""

import pytest

from saliency_lab.cli import main
from saliency_lab.config import DecodingConfig, ManifestSample, ModelConfig, SaliencyConfig
from saliency_lab.models.registry import load_model
from saliency_lab.pipeline import capture_sample


@pytest.mark.parametrize("arch,tokenizer", [("mistral", "metaspace"), ("qwen2_5_vl", "bytelevel")])
def test_tiny_model_command(tmp_path, capsys, arch, tokenizer):
    out = tmp_path / arch
    assert main(["tiny-model", "--arch", arch, "--out", str(out), "--tokenizer", tokenizer]) == 0
    assert f"wrote tiny {arch} model" in capsys.readouterr().out
    b = load_model(ModelConfig(str(out)))
    r = capture_sample(b, ManifestSample("c1", "Say something."), DecodingConfig(max_new_tokens=3),
                       SaliencyConfig(verify=True), "cli")
    assert r.tables["tokens"].num_rows == 3
    assert r.stats["verify_max_abs_diff"] < 1e-5  # float32


def test_tiny_model_bad_arch(tmp_path, capsys):
    assert main(["tiny-model", "--arch", "gpt5", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown tiny architecture 'gpt5'" in err and "llama" in err and "qwen3" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "x").exists()
