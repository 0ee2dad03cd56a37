"""Result containers of `analyze` and `calibrate`: tidy Polars tables plus JSON-serialisable dicts.

Table columns (stable; the HTML report builds on them):

label_means    run_id, measure, layer (null = the target-layer token score), label (0 correct, 1 hallucinated),
               n, mean, sd
curve          run_id, measure, bin (0-based), lo, hi, n, n_halluc, rate, ci_low, ci_high (Wilson 95%)
layer_profile  run_id, measure, layer, n_correct, n_halluc, mean_correct, mean_halluc, cohen_d, auroc,
               auroc_ci_low, auroc_ci_high (95% percentile bootstrap over samples; NaN with n_bootstrap 0),
               welch_t, welch_p, p_adjusted, significant
failures       run_id, kind ('high_score_hallucination' | 'low_score_correct'), rank, sample_id, step,
               token_text, object, label, score, step_mean / step_z / step_n (the score's mean over every
               token of that run and step, the token's z-score against them, how many; ranking uses step_z),
               context (text with the token marked as [[token]]),
               layers (list), layer_scores (list, the per-layer score in the same order)
grid           alpha, window, layer_set, layers (list), n_halluc, n_correct, n_scored, recall,
               false_rejection_rate, expected_resamples, all_below_rate (null without candidates), on_frontier

`measure` is the saliency score name (AnalysisConfig.score: 'out_mean' or 'prev') or an attention-only
baseline ('attn_out', 'lookback_ratio'). AUROC everywhere is the probability that a hallucinated token scores
*lower* than a correct one (ties count half): 1.0 = a low score flags every hallucination, 0.5 = chance.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from saliency_lab.analysis.config import AnalysisConfig, CalibrationConfig


def jsonable(obj: Any) -> Any:
    """Plain-JSON copy of nested results: NaN/inf become null, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, pl.DataFrame):
        return jsonable(obj.to_dicts())
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            obj = obj.item()
        except (TypeError, ValueError):
            pass
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(jsonable(payload), indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


@dataclass
class AnalysisResult:
    """What `analyze` returns. `summary` and `tests` are keyed by run_id."""

    labels: str
    config: AnalysisConfig
    summary: dict[str, dict[str, Any]]
    label_means: pl.DataFrame
    curve: pl.DataFrame
    tests: dict[str, dict[str, Any]]
    layer_profile: pl.DataFrame
    failures: pl.DataFrame
    runs: list[str] = field(default_factory=list)  # run directories, in input order

    TABLES = ("label_means", "curve", "layer_profile", "failures")

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "labels": self.labels,
            "config": self.config.to_json(),
            "runs": [str(r) for r in self.runs],
            "summary": self.summary,
            "tests": self.tests,
        }
        for name in self.TABLES:
            payload[name] = getattr(self, name)
        return jsonable(payload)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write analysis.json (everything) and one Parquet file per table; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "analysis.json"}
        _write_json(paths["json"], self.to_json())
        for name in self.TABLES:
            paths[name] = out / f"{name}.parquet"
            getattr(self, name).write_parquet(paths[name])
        return paths


@dataclass
class CalibrationResult:
    """What `calibrate` returns. `recommended` holds exactly alpha, window, layers (what capture reads)."""

    labels: str
    config: CalibrationConfig
    grid: pl.DataFrame
    frontier: pl.DataFrame
    recommended: dict[str, Any]
    recommended_metrics: dict[str, Any]
    within_budget: bool
    has_candidates: bool
    runs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return jsonable(
            {
                "recommended": self.recommended,
                "recommended_metrics": self.recommended_metrics,
                "within_budget": self.within_budget,
                "budget": self.config.budget,
                "has_candidates": self.has_candidates,
                "labels": self.labels,
                "runs": [str(r) for r in self.runs],
                "config": self.config.to_json(),
                "frontier": self.frontier,
                "grid": self.grid,
            }
        )

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write calibration.json (recommended + frontier + grid) and grid.parquet."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "calibration.json", "grid": out / "calibration_grid.parquet"}
        _write_json(paths["json"], self.to_json())
        self.grid.write_parquet(paths["grid"])
        return paths
