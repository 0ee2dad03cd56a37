"""Report sections read from the run folders themselves: run summary, saliency maps, failure gallery."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import polars as pl

from saliency_lab.report import charts as ch
from saliency_lab.report import tables as tb
from saliency_lab.report.data import RunData
from saliency_lab.report.maps import SaliencyMap, build_map, pick_samples
from saliency_lab.report.page import Charts, Section

MAX_ERRORS_SHOWN = 20
# Entries of the analysis summary worth a row (the rest repeats run.json or the label metrics).
_ANALYSIS_KEYS = ("n_labeled", "n_halluc", "halluc_rate", "n_analyzed", "n_analyzed_halluc", "target_layers",
                  "n_saliency_rows")
# Bulky label-metric entries (per-caption lists) that would drown the summary table.
_SKIP_METRIC_TYPES = (list, tuple)


def run_counts(run: RunData) -> dict[str, Any]:
    """Sample and token counts of one run, for the summary table."""
    s = run.samples
    ok = s.filter(pl.col("status") == "ok")
    n_out = ok["n_output"].drop_nulls()
    secs = ok["seconds"].drop_nulls() if "seconds" in ok.columns else pl.Series([], dtype=pl.Float32)
    return {
        "samples": s.height,
        "samples ok": ok.height,
        "samples with errors": s.height - ok.height,
        "output tokens": run.tokens.height,
        "mean output tokens per sample": cast(float, n_out.mean()) if n_out.len() else None,
        "mean seconds per sample": cast(float, secs.mean()) if secs.len() else None,
        "saliency rows stored": run.rows_mode() or "no (capture with --rows output for maps)",
    }


def runs_section(runs: list[RunData], labelset: str | None, analysis_summary: dict[str, Any] | None) -> Section:
    """The runs section: samples per run, failed samples, and the label metrics the labeler wrote."""
    sec = Section("runs", "Runs: counts and label metrics",
                  intro="How many samples each run holds, samples that failed, and the label metrics as the "
                        "labeler wrote them (labels/<set>.json).")
    for run in runs:
        if len(runs) > 1:
            sec.heading(f"Run {run.run_id}")
        sec.table(tb.key_value_table(f"counts:{run.run_id}", "Counts", run_counts(run)))
        errs = run.samples.filter(pl.col("status") != "ok")
        if errs.height:
            t = tb.Table(key=f"errors:{run.run_id}", title=f"Samples with errors ({errs.height})",
                         columns=["sample_id", "error"])
            for sid, err in errs.select("sample_id", "error").head(MAX_ERRORS_SHOWN).iter_rows():
                t.rows.append([tb.text(sid), tb.text(err)])
            if errs.height > MAX_ERRORS_SHOWN:
                t.note = f"first {MAX_ERRORS_SHOWN} of {errs.height} shown"
            sec.table(t)
        if labelset and labelset in run.labelsets:
            doc = run.label_metrics(labelset)
            metrics = doc.get("metrics", doc) if isinstance(doc, dict) else {}
            items = [(k, v) for k, v in tb.flatten("", metrics, []) if not isinstance(v, _SKIP_METRIC_TYPES)]
            if items:
                sec.table(tb.key_value_table(f"label-metrics:{run.run_id}",
                                             f"Label metrics ({labelset}, from labels/{labelset}.json)", items))
        stats = (analysis_summary or {}).get(run.run_id)
        if stats:
            items = [(k, v) for k, v in stats.items() if k in _ANALYSIS_KEYS]
            sec.table(tb.key_value_table(f"analysis-summary:{run.run_id}", "Labeled tokens (analysis)", items))
    if not labelset:
        sec.needs = ("No label set found: CHAIR/POPE metrics and every statistic below need labels. "
                     "Run `saliency-lab label chair --run R ...` (or pope / human) and rebuild the report.")
    return sec


def maps_section(runs: list[RunData], charts: Charts, layers_by_run: dict[str, list[int]],
                 halluc_by_run: dict[str, pl.DataFrame | None], scores_by_run: Mapping[str, pl.DataFrame | None],
                 chosen: list[str] | None, n_auto: int, max_steps: int) -> Section:
    """The saliency-map section: chosen or automatically picked samples of each run with stored rows."""
    sec = Section("maps", "Saliency maps",
                  intro="Like the paper's Fig. 2/3: each row is a generated token, each column a prior output "
                        "token; colour is the row-normalized saliency S_raw/‖row‖₂ averaged over the score "
                        "layers. Hallucinated tokens are labelled in red bold. A collapsed row (dark) means the "
                        "token took little from the text it had already produced.")
    missing = [r.run_id for r in runs if not r.has_rows()]
    if len(missing) == len(runs):
        sec.needs = ("No saliency rows in " + ", ".join(missing) + ": maps need rows captured with "
                     "`saliency-lab capture ... --rows output` (or --rows all).")
        return sec
    if missing:
        sec.note("Runs without stored rows (capture with --rows output for maps): " + ", ".join(missing))
    for run in runs:
        if not run.has_rows():
            continue
        hal = halluc_by_run.get(run.run_id)
        ok_ids = run.samples.filter(pl.col("status") == "ok")["sample_id"].to_list()
        if chosen:
            unknown = [s for s in chosen if s not in ok_ids]
            if unknown:
                sec.note(f"{run.run_id}: no ok sample named {', '.join(unknown)}")
            picks: list[tuple[str, str, int | None]] = [(s, "chosen with --samples", None) for s in chosen
                                                        if s in ok_ids]
        else:
            picks = pick_samples(scores_by_run.get(run.run_id), ok_ids, n_each=n_auto)
        for sid, reason, focus in picks:
            hsteps = set()
            if hal is not None:
                hsteps = {int(s) for s in hal.filter(pl.col("sample_id") == sid)["step"].to_list()}
            result = build_map(run, sid, layers_by_run.get(run.run_id, []), reason, hsteps, focus, max_steps)
            if isinstance(result, str):
                sec.note(f"{run.run_id}: {result}")
                continue
            sec.blocks.append(charts.block(f"map {run.run_id} {sid}", _map_chart(run, result),
                                           caption=_map_caption(run, result)))
    return sec


def _map_chart(run: RunData, m: SaliencyMap) -> Any:
    title = f"{run.run_id} · {m.sample_id}"
    return ch.saliency_map_chart(m.cells, m.order, m.halluc, title, "saliency (row-normalized)")


def _map_caption(run: RunData, m: SaliencyMap) -> str:
    span = "" if (m.first_step == 0 and m.last_step == m.n_output - 1) else \
        f" Steps {m.first_step}–{m.last_step} of {m.n_output}."
    hal = f" Hallucinated: {', '.join(h.split(' ', 1)[-1].strip() for h in m.halluc)}." if m.halluc else ""
    return f"{m.reason}. Layers {m.layers}.{span}{hal}"


def failure_cases(run: RunData, failures: pl.DataFrame, kind: str, n: int, context: int = 60) -> list[dict]:
    """Gallery cards: caption text with the offending token highlighted (spans from the tokens table)."""
    if failures is None or failures.height == 0:
        return []
    rows = failures.filter((pl.col("run_id") == run.run_id) & (pl.col("kind") == kind)).sort("rank").head(n)
    texts = dict(run.samples.select("sample_id", "output_text").iter_rows())
    spans = {(s, int(st)): (a, b) for s, st, a, b in
             run.tokens.select("sample_id", "step", "char_start", "char_end").iter_rows()}
    cls = "hal" if kind.startswith("high") else "cor"
    cases = []
    for r in rows.iter_rows(named=True):
        text = texts.get(r["sample_id"]) or ""
        a, b = spans.get((r["sample_id"], int(r["step"])), (None, None))
        if a is None or b is None or not (0 <= a <= b <= len(text)):
            before, token, after = _split_marked(r.get("context") or "", r.get("token_text") or "")
        else:
            lo, hi = max(0, a - context), min(len(text), b + context)
            before = ("…" if lo > 0 else "") + text[lo:a]
            token = text[a:b] or "⟨eos⟩"
            after = text[b:hi] + ("…" if hi < len(text) else "")
        obj = f" · object {r['object']}" if r.get("object") else ""
        cases.append({
            "sample_id": r["sample_id"], "step": int(r["step"]), "cls": cls,
            "before": before, "token": token, "after": after,
            "head": f"#{r['rank']} · {r['sample_id']} step {r['step']}{obj} · score {tb.fmt_num(r['score'], 4)}",
        })
    return cases


def _split_marked(context: str, token: str) -> tuple[str, str, str]:
    """Fallback when spans are missing: the analysis marks the token as [[token]] in its context."""
    start = context.find("[[")
    end = context.find("]]", start + 2) if start >= 0 else -1
    if start < 0 or end < 0:
        return context, token, ""
    return context[:start], context[start + 2:end], context[end + 2:]
