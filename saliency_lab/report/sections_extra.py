"""SGRS calibration and multi-run comparison sections."""

from __future__ import annotations

from typing import Any

import polars as pl

from saliency_lab.report import charts as ch
from saliency_lab.report import tables as tb
from saliency_lab.report.data import RunData
from saliency_lab.report.page import Charts, Section
from saliency_lab.report.sections_run import run_counts
from saliency_lab.store.calibration import Calibration


def calibration_section(cal: Calibration | None, why_missing: str | None, charts: Charts) -> Section:
    """The SGRS calibration section: frontier chart, recommended setting, frontier table."""
    sec = Section("calibration", "SGRS calibration",
                  intro="Offline replay of SGRS: at each step tau = alpha × mean score of the last W accepted "
                        "tokens; a token would be rejected when its score < tau. Each point is one (alpha, W, "
                        "layers) setting; the line is the frontier (best recall for its false-rejection rate). "
                        "The diamond is the recommendation: the highest recall within the false-rejection budget.")
    if cal is None:
        sec.needs = why_missing or "No calibration results."
        return sec
    if cal.reason:
        sec.note(("Verdict: " if cal.recommended else "No recommendation: ") + cal.reason)
    rec = {**cal.recommended, **cal.recommended_metrics} if cal.recommended else {}
    point = {k: rec.get(k) for k in ("recall", "false_rejection_rate")}
    if "layers" in rec and isinstance(rec["layers"], list):
        point["layers"] = ",".join(str(x) for x in rec["layers"])
    chart = ch.frontier_chart(cal.grid.with_columns(pl.col("layer_set").cast(pl.Utf8)), point if rec else None,
                              cal.budget, "Recall vs false rejections")
    sec.blocks.append(charts.block("calibration frontier", chart, caption=f"Source: {cal.source}."))
    if rec:
        items = [(k, v) for k, v in tb.flatten("", rec, []) if not isinstance(v, dict)]
        items += [("false-rejection budget", cal.budget), ("candidates recorded", cal.has_candidates)]
        sec.table(tb.key_value_table("calibration-recommended", "Recommended SGRS setting", items,
                                     note="Use with `saliency-lab capture --strategy sgrs --calibration FILE` "
                                          "(or --sgrs-alpha A --sgrs-window W --sgrs-layers L)."))
    front = cal.frontier
    if front.height:
        cols: list[str] = [c for c in ("alpha", "window", "layer_set", "recall", "false_rejection_rate", "expected_resamples",
                            "all_below_rate") if c in front.columns]
        t = tb.Table(key="calibration-frontier", title="Frontier settings", columns=cols)
        sort_col = "false_rejection_rate" if "false_rejection_rate" in cols else cols[0]
        for r in front.sort(sort_col).iter_rows(named=True):
            t.rows.append([tb.num(r[c]) if isinstance(r[c], int | float) or r[c] is None else tb.text(r[c])
                           for c in cols])
        sec.table(t)
    return sec


def compare_section(runs: list[RunData], result: Any, labelset: str | None, score: str, charts: Charts
                    ) -> Section | None:
    """The side-by-side section for two or more runs (None for a single run)."""
    if len(runs) < 2:
        return None
    sec = Section("compare", "Runs side by side",
                  intro="The same measures for every run (e.g. baseline vs LocoRE vs SGRS). Curves from all runs "
                        "are overlaid in the sections above.")
    ids = [r.run_id for r in runs]
    rows: list[tuple[str, list[Any]]] = []
    rows.append(("model", [(r.meta.get("model") or {}).get("id") or (r.meta.get("model") or {}).get("path")
                           for r in runs]))
    rows.append(("strategy", [(r.meta.get("decoding") or {}).get("strategy") for r in runs]))
    rows.append(("LocoRE beta", [((r.meta.get("decoding") or {}).get("locore") or {}).get("beta") for r in runs]))
    counts = [run_counts(r) for r in runs]
    for key in ("samples ok", "samples with errors", "output tokens", "mean output tokens per sample"):
        rows.append((key, [c[key] for c in counts]))
    if labelset:
        metric_docs = []
        for r in runs:
            doc = r.label_metrics(labelset)
            metric_docs.append(dict(tb.flatten("", doc.get("metrics", doc), [])) if doc else {})
        keys = [k for k in dict.fromkeys(k for d in metric_docs for k in d)
                if all(isinstance(d.get(k), int | float | type(None)) for d in metric_docs)]
        for k in keys:
            rows.append((f"{labelset}: {k}", [d.get(k) for d in metric_docs]))
    if result is not None:
        lm = result.label_means.filter(pl.col("layer").is_null() & (pl.col("measure") == score))
        for label, name in ((0, "correct"), (1, "hallucinated")):
            vals = []
            for rid in ids:
                sub = lm.filter((pl.col("run_id") == rid) & (pl.col("label") == label))
                vals.append(sub["mean"][0] if sub.height else None)
            rows.append((f"mean {score}, {name}", vals))
        tests = result.tests or {}
        rows.append((f"AUROC {score}", [((tests.get(rid) or {}).get(score) or {}).get("auroc") for rid in ids]))
        rows.append((f"Cohen's d {score}", [((tests.get(rid) or {}).get(score) or {}).get("cohen_d") for rid in ids]))
    sec.table(tb.comparison_table("compare", "Metrics per run", ids, rows))
    if result is not None and result.layer_profile.height:
        prof = result.layer_profile.filter(pl.col("measure") == score)
        used = sorted({int(x) for rid in ids for x in ((result.summary.get(rid) or {}).get("target_layers") or [])})
        sec.blocks.append(charts.block("compare layers", ch.layer_metric_chart(
            prof, "auroc", "AUROC (hallucinated scores lower)", f"AUROC of {score} by layer, all runs", used,
            ref=0.5, color="run_id")))
    return sec
