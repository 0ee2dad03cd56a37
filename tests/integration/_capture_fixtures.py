"""Tiny models for the capture tests, built once per test session from configs (no hub), and small images."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from PIL import Image

from saliency_lab.config import ModelConfig
from saliency_lab.models.registry import load_model, tiny_recipes
from saliency_lab.models.tiny import build_tiny

_ROOT = Path(tempfile.mkdtemp(prefix="capture_tests_"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)

# Driven by the model registry: every registered architecture has a tiny recipe beside its adapter.
VISION_ARCHS = tuple(n for n, r in tiny_recipes().items() if r.vision)
TEXT_ARCHS = tuple(n for n, r in tiny_recipes().items() if not r.vision)


@functools.cache
def tiny_dir(arch: str, tokenizer: str = "bytelevel") -> Path:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return build_tiny(arch, _ROOT / f"{arch}-{tokenizer}", tokenizer=tokenizer)


@functools.cache
def tiny_bundle(arch: str, dtype: str = "float64", tokenizer: str = "bytelevel"):
    return load_model(ModelConfig(str(tiny_dir(arch, tokenizer)), dtype=dtype))


@functools.cache
def image_path(w: int = 60, h: int = 50) -> str:
    p = _ROOT / f"img_{w}x{h}.png"
    img = Image.new("RGB", (w, h), (200, 30, 30))
    for x in range(w // 2):  # some structure so the vision tower sees more than a flat colour
        img.putpixel((x, x % h), (20, 220, 40))
    img.save(p)
    return str(p)


def corrupt_image_path() -> str:
    p = _ROOT / "corrupt.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    return str(p)
