"""Separation of hallucinated from correct tokens by every score, with position controlled.

Scores that average over prior outputs (Eq. 6 divides by the step) move with the token's position, and
hallucinated mentions tend to come later in a caption. A pooled AUROC mixes the two. For each score this
module reports, on the same tokens:

    pooled AUROC       P(hallucinated scores lower than correct), ties half, over all pairs
    controlled AUROC   the same, with pairs formed only within a step stratum (stratum = step // step_bin;
                       step_bin 1 = exactly the same step), strata weighted by the pairs they hold:
                       sum_s [#(x1 < x0) + #ties / 2]_s / sum_s n1_s * n0_s   (stats.stratified_auroc)
    step AUROC         the pooled AUROC of the step itself: what position alone gives
    logistic           label ~ 1 + z(score) + step + log(step), standard errors clustered by sample; the
                       coefficient is per standard deviation of the score, with the step held fixed
    spearman_step      Spearman correlation of the score with the step

AUROC intervals are 95% percentile bootstraps that resample whole samples (captions). A warning names the
score when |pooled - controlled| > 0.05 or |spearman_step| > 0.5: its pooled numbers are position-driven.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy import stats as sps

from saliency_lab.analysis.stats import (
    auroc_low,
    auroc_low_weighted,
    cluster_ci_of,
    logit_clustered_multi,
    stratified_auroc,
    stratified_auroc_weighted,
)

#: |pooled - controlled AUROC| above which a score's pooled separation is flagged as position-driven.
GAP_WARN = 0.05
#: |Spearman(score, step)| above which a score is flagged as tracking position.
RHO_WARN = 0.5


@dataclass
class SeparationConfig:
    """Options of the separation table; every field changes numbers and is written with the results."""

    step_bin: int = 1  # width of a step stratum for the controlled AUROC (1 = pairs at the same step)
    step_band: int = 8  # width of the step bands of the Table-4 means per band
    n_bootstrap: int = 1000  # sample (caption) resamples for the AUROC intervals; 0 = no intervals
    seed: int = 0


@dataclass
class ScoreSeparation:
    """One row of the separation table: one score on one run (or on the pooled runs)."""

    run_id: str
    score: str
    n_pos: int  # hallucinated tokens with a score
    n_neg: int  # correct tokens with a score
    pooled_auroc: float
    pooled_ci: tuple[float, float]
    controlled_auroc: float
    controlled_ci: tuple[float, float]
    step_auroc: float  # on the same tokens
    step_ci: tuple[float, float]
    logit_coef: float | None  # per SD of the score, step and log step held fixed
    logit_p: float | None
    spearman_step: float
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain dict (tuples as lists)."""
        d = asdict(self)
        for k in ("pooled_ci", "controlled_ci", "step_ci"):
            d[k] = list(d[k])
        return d


def _warnings(score: str, pooled: float, controlled: float, rho: float) -> list[str]:
    if score == "step":
        return []  # the position baseline itself
    out = []
    if not (math.isnan(pooled) or math.isnan(controlled)) and abs(pooled - controlled) > GAP_WARN:
        out.append(
            f"{score}: pooled AUROC {pooled:.3f} vs step-controlled {controlled:.3f}; "
            "the pooled value is position-driven, read the controlled one"
        )
    if not math.isnan(rho) and abs(rho) > RHO_WARN:
        out.append(f"{score}: Spearman with step {rho:+.2f}; the score tracks the token's position")
    return out


def _one(
    run_id: str,
    score: str,
    x: np.ndarray,
    y: np.ndarray,
    step: np.ndarray,
    groups: np.ndarray,
    cfg: SeparationConfig,
) -> ScoreSeparation:
    ok = np.isfinite(x)
    x, y, step, groups = x[ok], y[ok], step[ok], groups[ok]
    strata = step // max(1, cfg.step_bin)
    st = step.astype(float)
    pooled = auroc_low(x[y == 1], x[y == 0])
    controlled = stratified_auroc(x, y, strata)
    step_a = auroc_low(st[y == 1], st[y == 0])

    def strat(xx: np.ndarray, yy: np.ndarray, w: np.ndarray) -> np.ndarray:
        return stratified_auroc_weighted(xx, yy, strata, w)

    def ci(stat, v: np.ndarray) -> tuple[float, float]:
        return cluster_ci_of(stat, v, y, groups, cfg.n_bootstrap, cfg.seed)

    rho = (
        float(sps.spearmanr(x, st).statistic) if len(x) > 2 and np.ptp(x) > 0 and np.ptp(st) > 0 else math.nan
    )
    coef = p = None
    if score != "step" and len(x) > 3 and np.ptp(x) > 0:
        z = (x - x.mean()) / x.std()
        fit = logit_clustered_multi(
            y, {"score": z, "step": st, "log_step": np.log(np.maximum(st, 1.0))}, groups
        )
        if "score" in fit:
            coef, p = fit["score"]["coef"], fit["score"]["p"]
    return ScoreSeparation(
        run_id=run_id,
        score=score,
        n_pos=int((y == 1).sum()),
        n_neg=int((y == 0).sum()),
        pooled_auroc=pooled,
        pooled_ci=ci(auroc_low_weighted, x),
        controlled_auroc=controlled,
        controlled_ci=ci(strat, x),
        step_auroc=step_a,
        step_ci=ci(auroc_low_weighted, st),
        logit_coef=coef,
        logit_p=p,
        spearman_step=rho,
        warnings=_warnings(score, pooled, controlled, rho),
    )


def separation_table(
    tokens: pl.DataFrame, scores: Sequence[str], config: SeparationConfig | None = None, run_id: str = "all"
) -> list[ScoreSeparation]:
    """One ScoreSeparation per score for the labeled tokens in `tokens` (columns sample_id, step, label and
    one column per score, as the `labeled_tokens` query returns). Tokens without a finite value of a score
    are left out of that score's row only."""
    cfg = config or SeparationConfig()
    y = tokens["label"].cast(pl.Int64).to_numpy()
    step = tokens["step"].cast(pl.Int64).to_numpy()
    key = (
        tokens.select(
            pl.concat_str([pl.col("run_id").cast(pl.String), pl.col("sample_id")], separator="\x00")
            if "run_id" in tokens.columns
            else pl.col("sample_id")
        )
        .to_series()
        .to_numpy()
    )
    _, groups = np.unique(key, return_inverse=True)
    out = []
    for s in scores:
        x = (tokens["step"] if s == "step" else tokens[s]).cast(pl.Float64).fill_null(np.nan).to_numpy()
        out.append(_one(run_id, s, x, y, step, groups, cfg))
    return out


BAND_SCHEMA = {
    "run_id": pl.String,
    "measure": pl.String,
    "step_lo": pl.Int64,
    "step_hi": pl.Int64,
    "label": pl.Int8,
    "n": pl.Int64,
    "mean": pl.Float64,
    "sd": pl.Float64,
}


def step_band_means(
    tokens: pl.DataFrame, scores: Sequence[str], band: int, run_id: str = "all"
) -> pl.DataFrame:
    """Table-4 means per step band: mean and sd of each score per label within [k*band, (k+1)*band)."""
    rows = []
    b = tokens.with_columns(_band=pl.col("step") // max(1, band))
    for s in scores:
        col = pl.col("step").cast(pl.Float64) if s == "step" else pl.col(s).cast(pl.Float64)
        g = (
            b.with_columns(_x=col)
            .filter(pl.col("_x").is_not_null() & pl.col("_x").is_not_nan())
            .group_by("_band", "label")
            .agg(n=pl.len(), mean=pl.col("_x").mean(), sd=pl.col("_x").std())
            .sort("_band", "label")
        )
        for r in g.iter_rows(named=True):
            rows.append(
                {
                    "run_id": run_id,
                    "measure": s,
                    "step_lo": int(r["_band"]) * band,
                    "step_hi": (int(r["_band"]) + 1) * band,
                    "label": int(r["label"]),
                    "n": int(r["n"]),
                    "mean": r["mean"],
                    "sd": r["sd"],
                }
            )
    return pl.DataFrame(rows, schema=BAND_SCHEMA) if rows else pl.DataFrame(schema=BAND_SCHEMA)


def separation_frame(rows: Sequence[ScoreSeparation]) -> pl.DataFrame:
    """The separation rows as a flat table (CI bounds as _low / _high columns, warnings joined by '; ')."""
    recs = []
    for r in rows:
        d = r.to_json()
        for k in ("pooled", "controlled", "step"):
            lo, hi = d.pop(f"{k}_ci")
            d[f"{k}_ci_low"], d[f"{k}_ci_high"] = lo, hi
        d["warnings"] = "; ".join(d["warnings"])
        recs.append(d)
    return pl.DataFrame(recs, schema=SEPARATION_SCHEMA) if recs else pl.DataFrame(schema=SEPARATION_SCHEMA)


SEPARATION_SCHEMA = {
    "run_id": pl.String,
    "score": pl.String,
    "n_pos": pl.Int64,
    "n_neg": pl.Int64,
    "pooled_auroc": pl.Float64,
    "controlled_auroc": pl.Float64,
    "step_auroc": pl.Float64,
    "logit_coef": pl.Float64,
    "logit_p": pl.Float64,
    "spearman_step": pl.Float64,
    "warnings": pl.String,
    "pooled_ci_low": pl.Float64,
    "pooled_ci_high": pl.Float64,
    "controlled_ci_low": pl.Float64,
    "controlled_ci_high": pl.Float64,
    "step_ci_low": pl.Float64,
    "step_ci_high": pl.Float64,
}


def format_table(rows: Sequence[ScoreSeparation]) -> list[str]:
    """The separation table as text lines: one line per score, then its warnings."""

    def f(v: float | None) -> str:
        return "  n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

    def ci(c: tuple[float, float]) -> str:
        return f"[{f(c[0])}, {f(c[1])}]"

    lines = [
        f"{'score':<15} {'n_h':>5} {'n_c':>6}  {'pooled AUROC [95% CI]':<22} "
        f"{'step-controlled [95% CI]':<24} {'logit coef (p) | step':<22} {'rho(step)':>9}"
    ]
    for r in rows:
        lg = "n/a" if r.logit_coef is None else f"{r.logit_coef:+.3f} ({r.logit_p:.2g})"
        lines.append(
            f"{r.score:<15} {r.n_pos:>5} {r.n_neg:>6}  {f(r.pooled_auroc)} {ci(r.pooled_ci):<16} "
            f"{f(r.controlled_auroc)} {ci(r.controlled_ci):<18} {lg:<22} {f(r.spearman_step):>9}"
        )
    if rows:
        r0 = rows[0]
        lines.append(f"step only (position baseline): AUROC {f(r0.step_auroc)} {ci(r0.step_ci)}")
    for r in rows:
        lines += [f"warning: {w}" for w in r.warnings]
    return lines
