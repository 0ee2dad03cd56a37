"""Report sections drawn from `saliency_lab.analysis` results: Table 4, Fig. 8a/8b, layer profile,
SGRS calibration, run comparison. Every number shown is read from the analysis result, never recomputed."""

from __future__ import annotations

from typing import Any

import polars as pl

from saliency_lab.report import charts as ch
from saliency_lab.report import tables as tb
from saliency_lab.report.page import Charts, Section

NEEDS_LABELS = ("Needs labels: run `saliency-lab label chair --run R ...` (or pope / human) and rebuild; "
                "this section compares correct with hallucinated tokens.")
MEASURE_TITLES = {
    "out_mean": "saliency out_mean (Eq. 6)",
    "prev": "saliency prev (normalized)",
    "attn_out": "attention on prior outputs (baseline)",
    "lookback_ratio": "lookback ratio (baseline)",
}


def measure_title(m: str) -> str:
    """The display title of a measure (its name when it has none)."""
    return MEASURE_TITLES.get(m, m)


def _measures(df: pl.DataFrame, score: str) -> list[str]:
    found = list(dict.fromkeys(df["measure"].to_list())) if df.height else []
    return sorted(found, key=lambda m: (m != score, m))


def means_section(result: Any, score: str, charts: Charts,
                  missing: str = NEEDS_LABELS) -> Section:
    """Table 4: mean ± sd per label and the tests of each measure; only `needs` without a result."""
    sec = Section("means", "Correct vs hallucinated tokens (Table 4)",
                  intro="Mean ± sd of each token score for correct and hallucinated tokens, with the tests "
                        "against 'no difference'. AUROC is the probability that a hallucinated token scores "
                        "lower than a correct one (0.5 = chance). Attention-only baselines answer the paper's "
                        "claim: does saliency separate the two better than plain attention?")
    if result is None:
        sec.needs = missing
        return sec
    lm = result.label_means.filter(pl.col("layer").is_null())
    t = tb.Table(key="label-means", title="Token score by label (target layers)",
                 columns=["run", "measure", "n correct", "correct (mean ± sd)", "n hallucinated",
                          "hallucinated (mean ± sd)", "difference"])
    for run_id in result.summary:
        for m in _measures(lm.filter(pl.col("run_id") == run_id), score):
            sub = lm.filter((pl.col("run_id") == run_id) & (pl.col("measure") == m))
            c = _one(sub.filter(pl.col("label") == 0))
            h = _one(sub.filter(pl.col("label") == 1))
            diff = (c["mean"] - h["mean"]) if c.get("mean") is not None and h.get("mean") is not None else None
            t.rows.append([tb.text(run_id), tb.text(m), tb.num(c.get("n"), key=f"{run_id}|{m}|0|n"),
                           tb.mean_sd(c.get("mean"), c.get("sd"), key=f"{run_id}|{m}|0|mean_sd"),
                           tb.num(h.get("n"), key=f"{run_id}|{m}|1|n"),
                           tb.mean_sd(h.get("mean"), h.get("sd"), key=f"{run_id}|{m}|1|mean_sd"),
                           tb.num(diff, key=f"{run_id}|{m}|diff")])
    sec.table(t)
    for run_id, per_run in (result.tests or {}).items():
        sec.table(tests_table(run_id, per_run, score))
        att = attention_table(run_id, per_run.get("comparison") or {})
        if att is not None:
            sec.table(att)
    return sec


def _one(df: pl.DataFrame) -> dict[str, Any]:
    return df.row(0, named=True) if df.height else {}


# (column title, path into the analysis' per-measure test dict, kind)
TEST_COLUMNS = [
    ("Welch t", ("welch_t",), "num"), ("df", ("welch_df",), "num1"), ("Welch p", ("welch_p",), "p"),
    ("Mann-Whitney U", ("mannwhitney_u",), "num1"), ("M-W p", ("mannwhitney_p",), "p"),
    ("Cohen's d", ("cohen_d",), "num"), ("AUROC", ("auroc",), "num"), ("AUROC 95% CI", ("auroc_ci",), "ci"),
    ("logistic slope", ("logistic", "coef"), "num"), ("clustered se", ("logistic", "se"), "num"),
    ("logistic p", ("logistic", "p"), "p"),
    ("Cochran-Armitage z", ("trend", "cochran_armitage", "z"), "num"),
    ("trend p", ("trend", "cochran_armitage", "p"), "p"),
]


def _dig(d: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def tests_table(run_id: str, per_run: dict[str, Any], score: str) -> tb.Table:
    """Table 4's tests: one row per measure (saliency first, then the attention baselines)."""
    measures = [m for m in per_run if m != "comparison" and isinstance(per_run[m], dict)]
    t = tb.Table(key=f"tests:{run_id}", title=f"Significance tests — {run_id}",
                 columns=["measure", *(c[0] for c in TEST_COLUMNS)])
    for m in sorted(measures, key=lambda x: (x != score, x)):
        row = [tb.text(m)]
        for _, path, kind in TEST_COLUMNS:
            v = _dig(per_run[m], path)
            key = f"{run_id}|{m}|{'.'.join(path)}"
            if kind == "ci":
                row.append(_ci_cell(v, key))
            elif kind == "p":
                row.append(tb.pval(v, key=key))
            else:
                row.append(tb.num(v, 1 if kind == "num1" else 3, key=key))
        t.rows.append(row)
    if "error" in per_run:
        t.note = f"analysis: {per_run['error']}"
    else:
        t.note = ("Cohen's d and the Welch t are hallucinated minus correct (negative: hallucinated tokens score "
                  "lower). AUROC CI: bootstrap over samples. Logistic regression of the label on the score with "
                  "standard errors clustered by sample; Cochran-Armitage trend over the score bins.")
    return t


def _ci_cell(v: Any, key: str) -> tb.Cell:
    if isinstance(v, list | tuple) and len(v) == 2 and all(tb._finite(x) for x in v):
        return tb.Cell(f"[{float(v[0]):.3f}, {float(v[1]):.3f}]", cls="num", key=key,
                       value=f"{float(v[0])!r}|{float(v[1])!r}")
    return tb.Cell("–", cls="num", key=key)


def attention_table(run_id: str, comparison: dict[str, Any]) -> tb.Table | None:
    """The paper's central claim per run: does saliency separate the labels better than attention?"""
    if not comparison:
        return None
    sal = comparison.get("saliency_measure")
    sep = comparison.get("separation") or {}
    t = tb.Table(key=f"attention:{run_id}", title=f"Saliency vs attention-only baselines — {run_id}",
                 columns=["baseline", "separation (saliency)", "separation (baseline)", "difference",
                          "95% CI", "saliency separates better"])
    for key, val in comparison.items():
        if not key.startswith("vs_") or not isinstance(val, dict):
            continue
        base = key[3:]
        k = f"{run_id}|{key}"
        better = val.get("saliency_better")
        t.rows.append([tb.text(base), tb.num(sep.get(sal), key=f"{k}|sep_saliency"),
                       tb.num(sep.get(base), key=f"{k}|sep_baseline"), tb.num(val.get("difference"), key=f"{k}|difference"),
                       _ci_cell(val.get("ci"), f"{k}|ci"),
                       tb.Cell("–" if better is None else ("yes" if better else "no"),
                               cls=None if better is None else ("good" if better else "bad"))])
    t.note = ("Separation = max(AUROC, 1 − AUROC) on the same tokens; the CI of the difference comes from paired "
              "bootstrap resamples of samples. 'yes' when the whole interval is above 0.")
    return t if t.rows else None


def distributions_section(result: Any, score: str, charts: Charts, token_scores: pl.DataFrame | None,
                          missing: str = NEEDS_LABELS) -> Section:
    """Fig. 8a: the score's distribution by label and each measure's means; only `needs` without a result."""
    sec = Section("distributions", "Score by label (Fig. 8a)",
                  intro="Distribution of the token score for correct and hallucinated tokens (the tokens the "
                        "analysis tests), and mean ± sd of every measure per run (the numbers of the Table 4 "
                        "section).")
    if result is None:
        sec.needs = missing
        return sec
    items = []
    if token_scores is not None and token_scores.height:
        items.append(charts.add("distribution", ch.histogram_chart(
            ch.histogram_rows(token_scores), f"Distribution of {score} by label", score)))
    lm = result.label_means.filter(pl.col("layer").is_null())
    items += [charts.add(f"means {m}", ch.means_chart(lm.filter(pl.col("measure") == m), measure_title(m)))
              for m in _measures(lm, score)]
    sec.blocks.append(charts.row(items))
    return sec


def layers_section(result: Any, score: str, charts: Charts, used_layers: dict[str, list[int]],
                   missing: str = NEEDS_LABELS) -> Section:
    """AUROC and Cohen's d per layer, target layers shaded; only `needs` without a result."""
    sec = Section("layers", "Per-layer profile",
                  intro="AUROC and Cohen's d (negative: hallucinated tokens score lower) at each layer, for saliency and "
                        "the attention baselines. Shaded layers are the ones the token score averages.")
    if result is None:
        sec.needs = missing
        return sec
    prof = result.layer_profile
    lo_col, hi_col = _interval_cols(prof, "auroc")
    for run_id in result.summary:
        p = prof.filter(pl.col("run_id") == run_id)
        if p.height == 0:
            continue
        if len(result.summary) > 1:
            sec.heading(f"Run {run_id}")
        used = used_layers.get(run_id, [])
        p = _with_d_interval(p)
        items = [
            charts.add(f"layers auroc {run_id}", ch.layer_metric_chart(
                p, "auroc", "AUROC (hallucinated scores lower)", f"AUROC by layer — {run_id}", used,
                lo_col, hi_col, ref=0.5)),
            charts.add(f"layers d {run_id}", ch.layer_metric_chart(
                p, "cohen_d", "Cohen's d (hallucinated − correct)", f"Effect size by layer — {run_id}", used,
                "d_low", "d_high", ref=0.0)),
        ]
        sec.blocks.append(charts.row(items))
        t = tb.Table(key=f"layer-profile:{run_id}", title=f"Layer profile — {run_id}",
                     columns=["measure", "layer", "n correct", "n hallucinated", "mean correct", "mean hallucinated",
                              "Cohen's d", "AUROC", "Welch t", "p", "p adjusted", "significant"])
        for r in p.sort("measure", "layer").iter_rows(named=True):
            k = f"{run_id}|{r['measure']}|{r['layer']}"
            auroc = tb.interval(r["auroc"], r.get(lo_col) if lo_col else None, r.get(hi_col) if hi_col else None,
                                key=f"{k}|auroc")
            t.rows.append([tb.text(r["measure"]), tb.num(int(r["layer"])), tb.num(r["n_correct"]),
                           tb.num(r["n_halluc"]), tb.num(r["mean_correct"], key=f"{k}|mean_correct"),
                           tb.num(r["mean_halluc"], key=f"{k}|mean_halluc"), tb.num(r["cohen_d"], key=f"{k}|cohen_d"),
                           auroc, tb.num(r["welch_t"], key=f"{k}|welch_t"), tb.pval(r["welch_p"], key=f"{k}|welch_p"),
                           tb.pval(r["p_adjusted"], key=f"{k}|p_adjusted"), tb.text(_yes(r["significant"]))])
        sec.table(t)
    note = "Cohen's d intervals: d ± 1.96·se with se = sqrt((n₁+n₂)/(n₁n₂) + d²/(2(n₁+n₂)))."
    if not lo_col:
        note += " AUROC per layer is shown without an interval (the analysis reports none per layer)."
    else:
        note += (" AUROC intervals: 95% percentile bootstrap resampling whole samples (n_bootstrap and seed of "
                 "the analysis config).")
    sec.note(note)
    return sec


def _yes(v: Any) -> str:
    return "–" if v is None else ("yes" if v else "no")


def _interval_cols(df: pl.DataFrame, stat: str) -> tuple[str | None, str | None]:
    for lo, hi in (("_ci_low", "_ci_high"), ("_low", "_high"), ("_lo", "_hi")):
        if f"{stat}{lo}" in df.columns and f"{stat}{hi}" in df.columns:
            return f"{stat}{lo}", f"{stat}{hi}"
    return None, None


def _with_d_interval(p: pl.DataFrame) -> pl.DataFrame:
    """Large-sample interval of Cohen's d from the analysis' own d and group sizes (Hedges & Olkin)."""
    n1 = pl.col("n_correct").cast(pl.Float64)
    n2 = pl.col("n_halluc").cast(pl.Float64)
    d = pl.col("cohen_d")
    se = (((n1 + n2) / (n1 * n2)) + d * d / (2 * (n1 + n2))).sqrt()
    return p.with_columns((d - 1.96 * se).alias("d_low"), (d + 1.96 * se).alias("d_high"))
