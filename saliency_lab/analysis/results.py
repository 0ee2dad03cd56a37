"""Result containers of `analyze` and `calibrate`: tidy Polars tables plus JSON-serialisable dicts.

Table columns (stable; the HTML report builds on them):

label_means    run_id, measure, layer (null = the target-layer token score), label (0 correct, 1 hallucinated),
               n, mean, sd
curve          run_id, measure, bin (0-based), lo, hi, n, n_halluc, rate, ci_low, ci_high (Wilson 95%)
layer_profile  run_id, measure, layer, n_correct, n_halluc, mean_correct, mean_halluc, cohen_d, auroc,
               auroc_ci_low, auroc_ci_high (95% percentile bootstrap over samples; NaN with n_bootstrap 0),
               welch_t, welch_p, p_adjusted, significant, auroc_controlled (pairs within a step stratum)
failures       run_id, kind ('high_score_hallucination' | 'low_score_correct'), rank, sample_id, step,
               token_text, object, label, score, step_mean / step_z / step_n (the score's mean over every
               token of that run and step, the token's z-score against them, how many; ranking uses step_z),
               context (text with the token marked as [[token]]),
               layers (list), layer_scores (list, the per-layer score in the same order)
grid           score, reject ('low' | 'high'), candidates_used, alpha, window, layer_set, layers (list),
               n_halluc, n_correct, n_tokens, n_scored, recall, false_rejection_rate, expected_resamples,
               all_below_rate (null without candidates), diff (recall - false rejection), diff_ci_low,
               diff_ci_high (95% percentile bootstrap over samples), diff_lower (simultaneous 95% lower bound
               over all settings), recommendable (diff_lower > 0), on_frontier
separation     run_id, score, n_pos, n_neg, pooled_auroc, controlled_auroc, step_auroc, logit_coef, logit_p,
               spearman_step, warnings, and *_ci_low / *_ci_high for the three AUROCs (analysis.separation)
step_bands     run_id, measure, step_lo, step_hi (band [lo, hi)), label, n, mean, sd: Table-4 means per band

`measure` is a score name of the family (saliency_lab.store.scores; AnalysisConfig.score) or an
attention-only baseline ('attn_out', 'lookback_ratio'). AUROC everywhere is the probability that a hallucinated token scores
*lower* than a correct one (ties count half): 1.0 = a low score flags every hallucination, 0.5 = chance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from saliency_lab.analysis.config import AnalysisConfig, CalibrationConfig
from saliency_lab.analysis.separation import ScoreSeparation, separation_frame
from saliency_lab.jsonl import jsonable
from saliency_lab.store.calibration import CALIBRATION_JSON, Calibration, Reject

__all__ = ["AnalysisResult", "CalibrationResult", "jsonable"]


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
    # run_id -> one ScoreSeparation per requested score (pooled vs step-controlled AUROC, logistic with step)
    separation: dict[str, list[ScoreSeparation]] = field(default_factory=dict)
    step_bands: pl.DataFrame = field(default_factory=pl.DataFrame)  # Table-4 means per step band
    runs: list[str] = field(default_factory=list)  # run directories, in input order

    TABLES = ("label_means", "curve", "layer_profile", "failures", "step_bands", "separation")

    @property
    def separation_table(self) -> pl.DataFrame:
        """Every run's separation rows as one flat table."""
        return separation_frame([r for rows in self.separation.values() for r in rows])

    def _table(self, name: str) -> pl.DataFrame:
        return self.separation_table if name == "separation" else getattr(self, name)

    def to_json(self) -> dict[str, Any]:
        """The summary, tests and configuration as a JSON object."""
        payload: dict[str, Any] = {
            "labels": self.labels,
            "config": self.config.to_json(),
            "runs": [str(r) for r in self.runs],
            "summary": self.summary,
            "tests": self.tests,
        }
        for name in self.TABLES:
            payload[name] = self._table(name)
        payload["warnings"] = [w for rows in self.separation.values() for r in rows for w in r.warnings]
        return jsonable(payload)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write analysis.json (everything) and one Parquet file per table; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "analysis.json"}
        _write_json(paths["json"], self.to_json())
        for name in self.TABLES:
            paths[name] = out / f"{name}.parquet"
            self._table(name).write_parquet(paths[name])
        return paths


@dataclass
class CalibrationResult:
    """What `calibrate` returns. `recommended` holds alpha, window, layers (what capture reads) plus the score
    and rejection direction, or None when no setting beats chance within the budget (`reason` says why)."""

    labels: str
    config: CalibrationConfig
    grid: pl.DataFrame
    frontier: pl.DataFrame
    recommended: dict[str, Any] | None
    recommended_metrics: dict[str, Any] | None
    reason: str
    has_candidates: bool
    simultaneous_q: float = float("nan")  # the max-t quantile behind diff_lower
    runs: list[str] = field(default_factory=list)

    @property
    def within_budget(self) -> bool:
        """True when a setting is recommended (it always keeps the budget)."""
        return self.recommended is not None

    @property
    def score(self) -> str | None:
        """The recommended score name, None without a recommendation."""
        return self.recommended["score"] if self.recommended else None

    @property
    def reject(self) -> Reject | None:
        """The recommended rejection direction ('low' | 'high'), None without a recommendation."""
        return self.recommended["reject"] if self.recommended else None

    def to_calibration(self, source: str = "") -> Calibration:
        """This result as the calibration.json document class (what `write` writes)."""
        return Calibration(
            recommended=dict(self.recommended) if self.recommended is not None else None,
            reason=self.reason,
            recommended_metrics=dict(self.recommended_metrics or {}),
            within_budget=self.within_budget,
            budget=self.config.budget,
            selection={
                "rule": "recommendable = simultaneous 95% bootstrap lower bound of recall - false rejection > 0 "
                "(max-t over all settings, samples resampled); then the highest recall within the budget",
                "n_bootstrap": self.config.n_bootstrap,
                "simultaneous_q": self.simultaneous_q,
            },
            has_candidates=self.has_candidates,
            score=self.score,
            reject=self.reject,
            labels=self.labels,
            runs=[str(r) for r in self.runs],
            config=self.config.to_json(),
            frontier=self.frontier,
            grid=self.grid,
            source=source,
        )

    def to_json(self) -> dict[str, Any]:
        """The calibration.json document."""
        return self.to_calibration().to_json()

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write calibration.json (recommended + reason + frontier + grid) and calibration_grid.parquet."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": self.to_calibration().write(out / CALIBRATION_JSON), "grid": out / "calibration_grid.parquet"}
        self.grid.write_parquet(paths["grid"])
        return paths
