"""Hallucination curves that carry information: quantile bins by default (equal counts, edges shown), empty
bins never printed, the pooled curve beside a step-controlled one, and rate / score against the step.

The pooled curve is the analysis' own (`AnalysisResult.curve`). The step-controlled curve bins the token's
z-score against every token generated at the same step (named query `step_controlled`) with the analysis'
binning function, so a curve driven by position alone turns flat here. The step chart reads the named query
`step_profile`.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from saliency_lab.analysis.curves import binned_curve, curve_frame
from saliency_lab.report import charts as ch
from saliency_lab.report import tables as tb
from saliency_lab.report.page import Charts, Section
from saliency_lab.report.sections_stats import NEEDS_LABELS, _measures, measure_title

BINNING_TEXT = {
    "quantile": "quantile bins (equal token counts; the edges are the score's quantiles)",
    "equal": "equal-width bins on [0, 1] (scores outside fall in the edge bins)",
}


def step_controlled_curve(frame: pl.DataFrame, bins: int, binning: str) -> pl.DataFrame:
    """Curve rows of the step z-score per run (binned like the pooled curve), empty bins dropped."""
    rows: list[dict[str, Any]] = []
    use = frame.filter(pl.col("step_z").is_not_null() & pl.col("step_z").is_finite())
    for (run_id,), sub in use.group_by(["run_id"], maintain_order=True):
        x = sub["step_z"].cast(pl.Float64).to_numpy()
        y = sub["label"].cast(pl.Int64).to_numpy()
        # Equal-width bins on [0, 1] mean nothing for a z-score: the controlled curve always uses quantiles.
        got, _ = binned_curve(x, y, bins, "quantile" if binning == "equal" else binning)
        rows += [{"run_id": run_id, "measure": "step_z", **r} for r in got]
    return curve_frame(rows).filter(pl.col("n") > 0)


def curve_section(
    result: Any, score: str, charts: Charts, controlled: pl.DataFrame | None, missing: str = NEEDS_LABELS
) -> Section:
    """Fig. 8b: hallucination rate per score bin, pooled and step-controlled; only `needs` without a
    result."""
    binning = result.config.binning if result is not None else "quantile"
    sec = Section(
        "curve",
        "Hallucination rate by score bin (Fig. 8b)",
        intro=f"Tokens in {BINNING_TEXT.get(binning, binning)}; each point is the share of hallucinated "
        "tokens in a bin with its Wilson 95% interval (quantile bins are drawn at their quantile, "
        "equal-width bins at their centre with a bar spanning the bin). "
        "Left: pooled over all steps (the paper's figure). Right: step-controlled, the same tokens "
        "binned by their score's z-score against every token generated at the same step, so a "
        "slope that comes from position alone flattens there. Empty bins are not drawn.",
    )
    if result is None:
        sec.needs = missing
        return sec
    curve = result.curve.filter(pl.col("n") > 0)
    q = binning == "quantile"

    def x_title(name: str) -> str:
        return f"quantile of {name} (bin centre; edges in the table)" if q else f"{name} (bin)"

    pooled = ch.curve_chart(
        curve.filter(pl.col("measure") == score),
        f"Pooled: {measure_title(score)}",
        x_title(score),
        quantile=q,
    )
    items = [charts.add(f"curve {score}", pooled)]
    if controlled is not None and controlled.height:
        ctl = ch.curve_chart(
            controlled, f"Step-controlled: {score}", x_title(f"{score} z within its step"), quantile=True
        )
        items.append(charts.add(f"curve {score} step-controlled", ctl))
    sec.blocks.append(charts.row(items))
    others = [m for m in _measures(curve, score) if m != score]
    if others:
        sub = [
            charts.add(
                f"curve {m}",
                ch.curve_chart(
                    curve.filter(pl.col("measure") == m), measure_title(m), x_title(m), quantile=q
                ),
            )
            for m in others
        ]
        sec.blocks.append(charts.row(sub))
    sec.table(
        _bins_table(
            "curve", f"Bins of the token score ({score}), pooled", curve.filter(pl.col("measure") == score)
        )
    )
    if controlled is not None and controlled.height:
        sec.table(_bins_table("curve-controlled", f"Bins of the step z-score of {score}", controlled))
    return sec


def _bins_table(key: str, title: str, curve: pl.DataFrame) -> tb.Table:
    t = tb.Table(
        key=key,
        title=title,
        columns=["run", "bin", "from", "to", "tokens", "hallucinated", "rate", "Wilson 95%"],
    )
    pre = "" if key == "curve" else f"{key}|"
    for r in curve.sort("run_id", "bin").iter_rows(named=True):
        k = f"{pre}{r['run_id']}|{r['bin']}"
        t.rows.append(
            [
                tb.text(r["run_id"]),
                tb.num(int(r["bin"]), key=f"{k}|bin"),
                tb.num(r["lo"], 4, key=f"{k}|lo"),
                tb.num(r["hi"], 4, key=f"{k}|hi"),
                tb.num(int(r["n"]), key=f"{k}|n"),
                tb.num(int(r["n_halluc"]), key=f"{k}|n_halluc"),
                tb.num(r["rate"], key=f"{k}|rate"),
                tb.Cell(
                    f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
                    cls="num",
                    key=f"{k}|ci",
                    value=f"{r['ci_low']!r}|{r['ci_high']!r}",
                ),
            ]
        )
    return t


def position_section(
    profile: pl.DataFrame | None, score: str, charts: Charts, missing: str = NEEDS_LABELS
) -> Section:
    """Hallucination rate and score against the generation step; only `needs` without a profile."""
    sec = Section(
        "position",
        "Position: hallucination rate and score by step",
        intro="Both against the token's generation step. When the hallucination rate and the score "
        "both drift with the step, a pooled score-vs-label comparison partly measures position; "
        "the step-controlled curve and the position-controlled failure cases correct for it.",
    )
    if profile is None or profile.height == 0:
        sec.needs = missing
        return sec
    rate = profile.filter(pl.col("n_labeled") > 0)
    items = []
    if rate.height:
        items.append(charts.add("position rate", ch.step_rate_chart(rate, "Hallucination rate by step")))
    items.append(charts.add("position score", ch.step_score_chart(profile, f"Mean {score} by step", score)))
    sec.blocks.append(charts.row(items))
    t = tb.Table(
        key="position",
        title=f"By step ({score})",
        columns=[
            "run",
            "step",
            "tokens",
            f"mean {score}",
            "labeled",
            "hallucinated",
            "rate",
            "Wilson 95%",
            "mean correct",
            "mean hallucinated",
        ],
    )
    for r in profile.sort("run_id", "step").iter_rows(named=True):
        k = f"position|{r['run_id']}|{r['step']}"
        ci = (
            tb.Cell(f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]", cls="num")
            if r["ci_low"] is not None
            else tb.Cell("–", cls="num")
        )
        t.rows.append(
            [
                tb.text(r["run_id"]),
                tb.num(int(r["step"])),
                tb.num(int(r["n_tokens"]), key=f"{k}|n"),
                tb.num(r["mean_score"], 4, key=f"{k}|mean"),
                tb.num(int(r["n_labeled"])),
                tb.num(int(r["n_halluc"])),
                tb.num(r["rate"], key=f"{k}|rate"),
                ci,
                tb.num(r["mean_correct"], 4),
                tb.num(r["mean_halluc"], 4),
            ]
        )
    sec.table(t)
    return sec
