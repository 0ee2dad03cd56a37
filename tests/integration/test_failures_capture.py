"""Item 1 of docs/failures.md: an image that opens (or is announced) but fails preprocessing becomes that
sample's error row on real tiny VLMs; the capture goes on, exits with the documented code when nothing
succeeded, and --resume continues past the bad sample."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _capture_fixtures import image_path, tiny_dir
from PIL import Image

from saliency_lab.cli import main
from saliency_lab.config import CaptureConfig, ModelConfig
from saliency_lab.errors import EXIT_NO_SAMPLE
from saliency_lab.run import capture


def bomb_png(path: Path, w: int = 20000, h: int = 20000) -> Path:
    """A valid PNG header claiming w x h pixels (one tiny IDAT): PIL refuses it as a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )
    return path


def _manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _samples(run_dir: Path) -> dict[str, dict]:
    return {r["sample_id"]: r for r in pq.read_table(run_dir / "samples").to_pylist()}


def _cfg(tmp_path, arch, manifest, **kw) -> CaptureConfig:
    from saliency_lab.config import DecodingConfig

    return CaptureConfig(
        model=ModelConfig(str(tiny_dir(arch))),
        data=str(manifest),
        out=str(tmp_path / "runs"),
        run_id="r",
        quiet=True,
        samples_per_part=1,
        decoding=DecodingConfig(max_new_tokens=3),
        **kw,
    )


def test_decompression_bomb_is_an_error_row_and_resume_continues(tmp_path):
    bomb = bomb_png(tmp_path / "bomb.png")
    m = _manifest(
        tmp_path / "m.jsonl",
        [
            {"sample_id": "a", "prompt": "What is this?", "image": image_path()},
            {"sample_id": "bomb", "prompt": "What is this?", "image": str(bomb)},
            {"sample_id": "c", "prompt": "What is this?", "image": image_path()},
        ],
    )
    from saliency_lab.pipeline import capture_sample

    seen: list[str] = []

    def stop_after_bomb(bundle, sample, *rest):  # a Ctrl-C right after the bad sample
        if seen and seen[-1] == "bomb":
            raise KeyboardInterrupt
        seen.append(sample.sample_id)
        return capture_sample(bundle, sample, *rest)

    with pytest.raises(KeyboardInterrupt):  # samples run in manifest order: a, bomb, then the stop
        capture(_cfg(tmp_path, "llava", m), capture_fn=stop_after_bomb)
    rows = _samples(tmp_path / "runs" / "r")
    assert set(rows) == {"a", "bomb"}
    assert rows["bomb"]["status"] == "error"
    assert "DecompressionBombError" in rows["bomb"]["error"] and "\n" not in rows["bomb"]["error"]

    res = capture(_cfg(tmp_path, "llava", m, resume=True))  # resume goes past the bad sample
    rows = _samples(tmp_path / "runs" / "r")
    assert set(rows) == {"a", "bomb", "c"}
    assert rows["a"]["status"] == rows["c"]["status"] == "ok"
    assert (res.skipped, res.ok, res.error) == (2, 1, 0)  # the bomb's error row is kept, not retried


def test_extreme_aspect_ratio_on_qwen2_vl_is_an_error_row(tmp_path, capsys):
    thin = tmp_path / "thin.png"
    Image.new("RGB", (4000, 1), (10, 20, 30)).save(thin)
    m = _manifest(
        tmp_path / "m.jsonl",
        [
            {"sample_id": "thin", "prompt": "What is this?", "image": str(thin)},
            {"sample_id": "ok", "prompt": "What is this?", "image": image_path()},
        ],
    )
    rc = main(
        [
            "capture",
            "--model",
            str(tiny_dir("qwen2_vl")),
            "--data",
            str(m),
            "--out",
            str(tmp_path / "runs"),
            "--run-id",
            "q",
            "--max-new-tokens",
            "3",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0
    rows = _samples(tmp_path / "runs" / "q")
    assert rows["ok"]["status"] == "ok" and rows["thin"]["status"] == "error"
    assert "aspect ratio" in rows["thin"]["error"]
    assert "1 sample(s) failed: ValueError 1" in err  # the error classes with counts


def test_no_sample_succeeded_exits_with_the_documented_code(tmp_path, capsys):
    m = _manifest(
        tmp_path / "m.jsonl",
        [
            {"sample_id": "b1", "prompt": "Hi", "image": str(bomb_png(tmp_path / "b1.png"))},
            {"sample_id": "b2", "prompt": "Hi", "image": str(tmp_path / "missing.png")},
        ],
    )
    rc = main(
        [
            "capture",
            "--model",
            str(tiny_dir("llava")),
            "--data",
            str(m),
            "--out",
            str(tmp_path / "runs"),
            "--run-id",
            "x",
            "--max-new-tokens",
            "3",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert rc == EXIT_NO_SAMPLE == 3
    assert "2 sample(s) failed:" in err and "DecompressionBombError 1" in err and "SampleError 1" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_safetensors_is_one_line(tmp_path, capsys, damage):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_dir("llama"), model)
    weights = next(model.glob("*.safetensors"))
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x10\x00" + data[2:200])
    m = _manifest(tmp_path / "m.jsonl", [{"sample_id": "s", "prompt": "Hi"}])
    rc = main(
        ["capture", "--model", str(model), "--data", str(m), "--out", str(tmp_path / "runs"), "--quiet"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and f"--model {model}" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.parquet"))


def test_pickle_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    """A .bin whose pickle holds more than tensors is refused by torch's weights_only loader (no code from
    a checkpoint ever runs); the refusal is one line naming the model folder."""
    import argparse
    import shutil

    import torch
    from safetensors.torch import load_file

    model = tmp_path / "model"
    shutil.copytree(tiny_dir("llama"), model)
    weights = next(model.glob("*.safetensors"))
    torch.save({**load_file(weights), "extra": argparse.Namespace(x=1)}, model / "pytorch_model.bin")
    weights.unlink()
    for idx in model.glob("*.index.json"):
        idx.unlink()
    m = _manifest(tmp_path / "m.jsonl", [{"sample_id": "s", "prompt": "Hi"}])
    rc = main(
        ["capture", "--model", str(model), "--data", str(m), "--out", str(tmp_path / "runs"), "--quiet"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and str(model) in err and "Traceback" not in err
