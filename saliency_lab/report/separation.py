"""Per run and score: does the score separate hallucinated from correct tokens, pooled and controlled for
position, and does position alone separate them? Read from the analysis; this module only reshapes.

Direction: AUROC is the analysis' P(hallucinated token scores lower) (0.5 = chance). A score "separates"
when the whole 95% interval is above 0.5, "separates in reverse" when it is below (hallucinated tokens
score higher), and otherwise "does not separate".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl


@dataclass
class SepRow:
    score: str
    pooled: float | None
    pooled_ci: tuple[float, float] | None
    controlled: float | None = None
    controlled_ci: tuple[float, float] | None = None

    def verdict(self, controlled: bool) -> str:
        ci = self.controlled_ci if controlled else self.pooled_ci
        if ci is None or not all(v is not None and math.isfinite(v) for v in ci):
            return "does not separate"
        if ci[0] > 0.5:
            return "separates"
        if ci[1] < 0.5:
            return "separates in reverse"
        return "does not separate"


@dataclass
class Separation:
    run_id: str
    rows: list[SepRow]
    n_halluc: int
    n_correct: int
    step_only: float | None = None
    step_only_ci: tuple[float, float] | None = None
    warnings: list[str] = field(default_factory=list)
    controlled_section: str = "#separation"

    def href(self, controlled: bool) -> str:
        return self.controlled_section if controlled else "#means"


def _ci(v: Any) -> tuple[float, float] | None:
    if isinstance(v, list | tuple) and len(v) == 2 and all(x is not None for x in v):
        return float(v[0]), float(v[1])
    return None


def from_analysis(result: Any, controlled: pl.DataFrame | None, n_boot: int, seed: int = 0) -> list[Separation]:
    """Pooled separation of every measure the analysis tested, per run, and position alone: the AUROC of
    the step itself on the same labeled tokens (analysis.stats, clustered by sample)."""
    from saliency_lab.analysis.stats import auroc_cluster_ci, auroc_low

    out = []
    for run_id, tests in (result.tests or {}).items():
        if not isinstance(tests, dict) or "error" in tests:
            continue
        summ = result.summary.get(run_id) or {}
        n_h = int(summ.get("n_analyzed_halluc") or 0)
        rows = [SepRow(m, _f(t.get("auroc")), _ci(t.get("auroc_ci")))
                for m, t in tests.items() if m != "comparison" and isinstance(t, dict)]
        sep = Separation(run_id, rows, n_h, int(summ.get("n_analyzed") or 0) - n_h)
        if controlled is not None:
            sub = controlled.filter(pl.col("run_id") == run_id)
            if sub.height:
                x = sub["step"].cast(pl.Float64).to_numpy()
                y = sub["label"].cast(pl.Int64).to_numpy()
                sep.step_only = auroc_low(x[y == 1], x[y == 0])
                sep.step_only_ci = auroc_cluster_ci(x, y, sub["sample_id"].to_numpy(), n_boot, seed)
        sep.warnings = position_warnings(sep)
        out.append(sep)
    return out


def position_warnings(sep: Separation) -> list[str]:
    """Say when position alone separates the labels: a pooled separation may then be partly position."""
    ci = sep.step_only_ci
    if sep.step_only is None or ci is None or not all(np.isfinite(ci)):
        return []
    if ci[0] > 0.5 or ci[1] < 0.5:
        later = "earlier" if ci[0] > 0.5 else "later"
        return [f"Position confounds: hallucinated tokens come {later} in the output than correct ones (step "
                f"alone AUROC {sep.step_only:.2f}), and scores drift with the step, so pooled AUROCs partly "
                "measure position; read the step-controlled values."]
    return []


def _f(v: Any) -> float | None:
    try:
        return float(v) if v is not None and math.isfinite(float(v)) else None
    except (TypeError, ValueError):
        return None
