"""SGRS settings from a `calibration.json` written by `saliency-lab calibrate` (Python API side of
`capture --calibration FILE`; the file is read and validated by `saliency_lab.store.calibration.Calibration`,
the same reader the CLI uses)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from saliency_lab.config import SGRSConfig
from saliency_lab.store.calibration import Calibration


def load_calibration(path: str | Path) -> dict[str, Any]:
    """The validated "recommended" block: a subset of {"alpha", "window", "layers", "score", "reject"}."""
    return Calibration.read(path).sgrs_settings()


def sgrs_config_from_calibration(path: str | Path, base: SGRSConfig | None = None) -> SGRSConfig:
    """`base` (default SGRSConfig()) with alpha / window / layers / score / reject replaced by the file's
    recommendation."""
    return replace(base or SGRSConfig(), **load_calibration(path))
