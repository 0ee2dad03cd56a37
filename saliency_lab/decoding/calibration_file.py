"""SGRS settings from a `calibration.json` written by `saliency-lab calibrate` (Python API side of
`capture --calibration FILE`; the file is validated by the same reader the CLI uses)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from saliency_lab.config import SGRSConfig


def load_calibration(path: str | Path) -> dict[str, Any]:
    """The validated "recommended" block: a subset of {"alpha", "window", "layers"}."""
    from saliency_lab.cli.capture import read_calibration

    return read_calibration(Path(path))


def sgrs_config_from_calibration(path: str | Path, base: SGRSConfig | None = None) -> SGRSConfig:
    """`base` (default SGRSConfig()) with alpha / window / layers replaced by the file's recommendation."""
    return replace(base or SGRSConfig(), **load_calibration(path))
