"""Altair charts of a report. Each function takes tidy rows (list of dicts or a Polars frame) and returns an
Altair chart; `spec()` turns it into a validated Vega-Lite dict with the data inlined."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import altair as alt
import polars as pl

LABEL_NAMES = {0: "correct", 1: "hallucinated"}
LABEL_COLORS = alt.Scale(domain=["correct", "hallucinated"], range=["#1e7b4a", "#c0392b"])


def _records(data: pl.DataFrame | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = data.to_dicts() if isinstance(data, pl.DataFrame) else [dict(r) for r in data]
    for row in rows:
        for k, v in list(row.items()):
            if isinstance(v, float) and not math.isfinite(v):
                row[k] = None  # JSON has no NaN; Vega treats null as missing
            elif isinstance(v, list | tuple):
                del row[k]  # list cells are not plotted and bloat the page
    return rows


def _data(data: pl.DataFrame | Sequence[dict[str, Any]]) -> alt.Data:
    return alt.Data(values=_records(data))


def spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The Vega-Lite spec; `to_dict` validates it against Altair's Vega-Lite schema and raises if invalid."""
    return chart.to_dict(validate=True)


def curve_chart(curve: pl.DataFrame, title: str, x_title: str, width: int = 380,
                quantile: bool = False) -> alt.LayerChart:
    """Fig. 8b: hallucination rate per score bin with Wilson 95% intervals, one colour per run. Equal-width
    bins sit at their centre on the score axis, a horizontal bar spanning the bin; quantile bins (equal token
    counts, edges differ per run) sit at their quantile, so a skewed score does not crowd them into one corner
    (edges in the tooltip and the table). Empty bins are not drawn."""
    nb = pl.col("bin").max().over("run_id") + 1
    data = curve.filter(pl.col("n") > 0).with_columns(
        ((pl.col("lo") + pl.col("hi")) / 2).alias("mid"), ((pl.col("bin") + 0.5) / nb).alias("quantile"))
    x = (alt.X("quantile:Q", title=x_title, scale=alt.Scale(domain=[0, 1])) if quantile
         else alt.X("mid:Q", title=x_title, scale=alt.Scale(zero=False, nice=False)))
    base = alt.Chart(_data(data)).encode(
        x=x,
        color=alt.Color("run_id:N", title="run"),
        tooltip=[
            alt.Tooltip("run_id:N", title="run"),
            alt.Tooltip("lo:Q", format=".4g", title="bin from"),
            alt.Tooltip("hi:Q", format=".4g", title="bin to"),
            alt.Tooltip("n:Q", title="tokens"),
            alt.Tooltip("n_halluc:Q", title="hallucinated"),
            alt.Tooltip("rate:Q", format=".3f"),
            alt.Tooltip("ci_low:Q", format=".3f", title="Wilson low"),
            alt.Tooltip("ci_high:Q", format=".3f", title="Wilson high"),
        ],
    )
    y = alt.Y("rate:Q", title="P(hallucinated)", scale=alt.Scale(domain=[0, 1]))
    parts: list[Any] = [base.mark_errorbar(ticks=True).encode(y=alt.Y("ci_low:Q", title="P(hallucinated)"),
                                                              y2=alt.Y2("ci_high:Q"))]
    if not quantile:
        parts.append(base.mark_rule(strokeWidth=2, opacity=0.5).encode(x=alt.X("lo:Q", title=x_title), x2="hi:Q",
                                                                       y=y))
    parts.append(base.mark_line(point=True).encode(y=y))
    return alt.layer(*parts).properties(title=title, width=width, height=260)


def step_rate_chart(profile: pl.DataFrame, title: str, width: int = 380) -> alt.LayerChart:
    """Hallucination rate among labeled tokens at each generation step, Wilson 95% intervals."""
    base = alt.Chart(_data(profile)).encode(
        x=alt.X("step:Q", title="generation step", axis=alt.Axis(tickMinStep=1)),
        color=alt.Color("run_id:N", title="run"),
        tooltip=["run_id:N", "step:Q", "n_labeled:Q", "n_halluc:Q", alt.Tooltip("rate:Q", format=".3f")],
    )
    y = alt.Y("rate:Q", title="P(hallucinated)", scale=alt.Scale(domain=[0, 1]))
    return alt.layer(
        base.mark_errorbar(ticks=True).encode(y=alt.Y("ci_low:Q", title="P(hallucinated)"), y2="ci_high:Q"),
        base.mark_line(point=True).encode(y=y),
    ).properties(title=title, width=width, height=240)


def step_score_chart(profile: pl.DataFrame, title: str, score: str, width: int = 380) -> alt.Chart:
    """Mean token score at each generation step (every scored token), per run."""
    return alt.Chart(_data(profile)).mark_line(point=True).encode(
        x=alt.X("step:Q", title="generation step", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("mean_score:Q", title=f"mean {score}"),
        color=alt.Color("run_id:N", title="run"),
        tooltip=["run_id:N", "step:Q", "n_tokens:Q", alt.Tooltip("mean_score:Q", format=".4f")],
    ).properties(title=title, width=width, height=240)


def means_chart(means: pl.DataFrame, title: str, width: int = 300) -> alt.Chart:
    """Fig. 8a: mean ± sd of the token score for correct vs hallucinated tokens, per run."""
    data = means.with_columns(
        pl.col("label").replace_strict(LABEL_NAMES, default="?").alias("label_name"),
        (pl.col("mean") - pl.col("sd").fill_null(0)).alias("low"),
        (pl.col("mean") + pl.col("sd").fill_null(0)).alias("high"),
    )
    base = alt.Chart(_data(data)).encode(
        x=alt.X("run_id:N", title=None),
        xOffset=alt.XOffset("label_name:N"),
        color=alt.Color("label_name:N", title="token", scale=LABEL_COLORS),
        tooltip=["run_id:N", "label_name:N", "n:Q", alt.Tooltip("mean:Q", format=".4f"),
                 alt.Tooltip("sd:Q", format=".4f")],
    )
    bars = base.mark_bar().encode(y=alt.Y("mean:Q", title="mean score (± sd)"))
    err = base.mark_errorbar(ticks=True).encode(y=alt.Y("low:Q", title="mean score (± sd)"), y2=alt.Y2("high:Q"),
                                                color=alt.value("#333"))
    return alt.layer(bars, err).properties(title=title, width=width, height=260)


def layer_metric_chart(profile: pl.DataFrame, y: str, y_title: str, title: str, used_layers: Sequence[int],
                       low: str | None = None, high: str | None = None, ref: float | None = None,
                       width: int = 380, color: str = "measure") -> alt.LayerChart:
    """A per-layer statistic with optional interval, one colour per measure; target layers shaded."""
    data = profile.filter(pl.col(y).is_not_null())
    layers = sorted({int(v) for v in data["layer"].to_list()}) if data.height else [0]
    parts: list[alt.Chart] = []
    used = [{"layer": int(u), "from": int(u) - 0.5, "to": int(u) + 0.5} for u in used_layers if int(u) in layers]
    if used:
        parts.append(
            alt.Chart(_data(used)).mark_rect(color="#f1e3b5", opacity=0.6)
            .encode(x="from:Q", x2="to:Q", tooltip=[alt.Tooltip("layer:Q", title="score layer")])
        )
    if ref is not None:
        parts.append(alt.Chart(_data([{"ref": ref}])).mark_rule(strokeDash=[4, 4], color="#888").encode(y="ref:Q"))
    base = alt.Chart(_data(data)).encode(
        x=alt.X("layer:Q", title="layer (shaded: layers the score uses)",
                scale=alt.Scale(domain=[min(layers) - 0.5, max(layers) + 0.5]), axis=alt.Axis(tickMinStep=1)),
        color=alt.Color(f"{color}:N", title="run" if color == "run_id" else color),
    )
    tips = [f"{color}:N", "layer:Q", alt.Tooltip(f"{y}:Q", format=".3f")]
    if low and high:
        tips += [alt.Tooltip(f"{low}:Q", format=".3f"), alt.Tooltip(f"{high}:Q", format=".3f")]
        parts.append(base.mark_errorbar(ticks=True).encode(y=alt.Y(f"{low}:Q", title=y_title), y2=f"{high}:Q"))
    parts.append(base.mark_line(point=True).encode(y=alt.Y(f"{y}:Q", title=y_title), tooltip=tips))
    return alt.layer(*parts).properties(title=title, width=width, height=240)


def saliency_map_chart(cells: Sequence[dict[str, Any]], order: Sequence[str], halluc: Sequence[str],
                       title: str, value_title: str) -> alt.Chart:
    """Fig. 2/3: output tokens (rows) x prior output tokens (columns); hallucinated rows labelled in red."""
    size = max(12, min(22, int(560 / max(1, len(order)))))
    halluc_list = list(halluc)
    # Vega expression: is this axis label one of the hallucinated tokens?
    cond = f"indexof({_js_list(halluc_list)}, datum.value) >= 0"
    axis_common: dict[str, Any] = {"labelFontSize": 10, "labelLimit": 140}
    chart = alt.Chart(_data(cells)).mark_rect().encode(
        x=alt.X("key:N", sort=list(order), title="prior output token",
                axis=alt.Axis(labelAngle=-60, labelColor={"condition": {"test": cond, "value": "#c0392b"},
                                                          "value": "#333"}, **axis_common)),
        y=alt.Y("query:N", sort=list(order), title="generated token",
                axis=alt.Axis(labelColor={"condition": {"test": cond, "value": "#c0392b"}, "value": "#333"},
                              labelFontWeight={"condition": {"test": cond, "value": "bold"}, "value": "normal"},
                              **axis_common)),
        color=alt.Color("value:Q", title=value_title, scale=alt.Scale(scheme="viridis")),
        tooltip=[alt.Tooltip("query:N", title="generated"), alt.Tooltip("key:N", title="prior token"),
                 alt.Tooltip("value:Q", format=".4f", title=value_title)],
    )
    return chart.properties(title=title, width=size * len(order), height=size * len(order))


def _js_list(items: Sequence[str]) -> str:
    import json

    return json.dumps(list(items))


def frontier_chart(grid: pl.DataFrame, recommended: dict[str, Any] | None, budget: float | None,
                   title: str) -> alt.LayerChart:
    """SGRS calibration: hallucination recall against false rejections of correct tokens."""
    tips = [alt.Tooltip("alpha:Q", format=".2f"), "window:Q", "layer_set:N",
            alt.Tooltip("recall:Q", format=".3f"), alt.Tooltip("false_rejection_rate:Q", format=".3f"),
            alt.Tooltip("expected_resamples:Q", format=".3f")]
    cols = [c for c in ("alpha", "window", "layer_set", "recall", "false_rejection_rate", "expected_resamples",
                        "on_frontier") if c in grid.columns]
    data = grid.select(cols)
    x = alt.X("false_rejection_rate:Q", title="false rejection rate (correct tokens)", scale=alt.Scale(domain=[0, 1]))
    y = alt.Y("recall:Q", title="hallucination recall", scale=alt.Scale(domain=[0, 1]))
    parts: list[Any] = [
        alt.Chart(_data(data)).mark_circle(size=28, opacity=0.45)
        .encode(x=x, y=y, color=alt.Color("layer_set:N", title="layers"), tooltip=tips),
        alt.Chart(_data(data.filter(pl.col("on_frontier")))).mark_line(color="#222", point=True)
        .encode(x=x, y=y, order="false_rejection_rate:Q", tooltip=tips),
    ]
    if budget is not None:
        parts.append(alt.Chart(_data([{"budget": budget}])).mark_rule(strokeDash=[5, 4], color="#c0392b")
                     .encode(x="budget:Q"))
    if recommended and recommended.get("recall") is not None:
        parts.append(alt.Chart(_data([recommended])).mark_point(shape="diamond", size=220, filled=True,
                                                                 color="#c0392b")
                     .encode(x="false_rejection_rate:Q", y="recall:Q"))
    return alt.layer(*parts).properties(title=title, width=420, height=300)


def histogram_rows(scores: pl.DataFrame, bins: int = 20) -> list[dict[str, Any]]:
    """Share of each label's tokens per score bin (bins span the observed range), per run."""
    import numpy as np

    x = scores["score"].to_numpy()
    if len(x) == 0:
        return []
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi <= lo:
        hi = lo + 1e-9
    edges = np.linspace(lo, hi, bins + 1)
    rows = []
    for (run_id, label), sub in scores.group_by(["run_id", "label"], maintain_order=True):
        v = sub["score"].to_numpy()
        counts, _ = np.histogram(v, bins=edges)
        for b in range(bins):
            rows.append({"run_id": run_id, "label_name": LABEL_NAMES.get(int(label), "?"), "lo": float(edges[b]),
                         "hi": float(edges[b + 1]), "count": int(counts[b]), "share": float(counts[b] / len(v))})
    return rows


def histogram_chart(rows: list[dict[str, Any]], title: str, x_title: str, width: int = 380) -> alt.Chart:
    """Score distribution by label (overlaid, as shares so unequal group sizes compare)."""
    chart = alt.Chart(_data(rows)).mark_bar(opacity=0.55, binSpacing=0).encode(
        x=alt.X("lo:Q", title=x_title, bin="binned"),
        x2="hi:Q",
        y=alt.Y("share:Q", title="share of tokens with that label", stack=None),
        color=alt.Color("label_name:N", title="token", scale=LABEL_COLORS),
        tooltip=["run_id:N", "label_name:N", alt.Tooltip("lo:Q", format=".3f"), alt.Tooltip("hi:Q", format=".3f"),
                 "count:Q", alt.Tooltip("share:Q", format=".3f")],
    )
    if len({r["run_id"] for r in rows}) > 1:
        return chart.properties(width=width, height=160).facet(row=alt.Row("run_id:N", title=None)).properties(
            title=title)
    return chart.properties(title=title, width=width, height=240)
