"""The first section: the answer before the evidence.

Per run CHAIR / POPE with bootstrap intervals; whether saliency separates hallucinated tokens, one sentence
per score (read from the analysis, with a warning when position alone separates too); the SGRS calibration
verdict; each intervention against its paired control with the SGRS rejection / fallback rates. Every number
links to the section that derives it. Nothing here computes a statistic of its own: the numbers come from
`saliency_lab.analysis` (separation, calibration, label intervals) and the named queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from saliency_lab.analysis import label_ci as lc
from saliency_lab.report import tables as tb
from saliency_lab.report.data import RunData
from saliency_lab.report.outcomes import Pairing, RunOutcome, intervention
from saliency_lab.report.page import Section
from saliency_lab.report.separation import VERDICT_CLASS, verdict


@dataclass
class Part:
    """A piece of a summary sentence; a number carries its exact value and the section that derives it."""

    text: str
    href: str | None = None
    value: str | None = None
    key: str | None = None
    cls: str | None = None


def _num(x: Any, href: str, key: str, digits: int = 2) -> Part:
    if x is None or not math.isfinite(float(x)):
        return Part("–")
    return Part(f"{float(x):.{digits}f}", href=href, value=repr(float(x)), key=key)


def _ci_parts(
    est: float | None, ci: tuple[float, float] | list[float] | None, href: str, key: str, digits: int = 2
) -> list[Part]:
    parts = [_num(est, href, key, digits)]
    if ci is not None and len(ci) == 2 and all(v is not None and math.isfinite(float(v)) for v in ci):
        parts += [
            Part(" ["),
            _num(ci[0], href, key + "|lo", digits),
            Part(", "),
            _num(ci[1], href, key + "|hi", digits),
            Part("]"),
        ]
    return parts


def _est_cell(e: lc.Estimate | None, href: str, key: str, digits: int = 3) -> tb.Cell:
    if e is None or not math.isfinite(e.value):
        return tb.Cell("–", cls="num")
    text = f"{e.value:.{digits}f}"
    if all(math.isfinite(v) for v in e.ci):
        text += f" [{e.ci[0]:.{digits}f}, {e.ci[1]:.{digits}f}]"
    return tb.Cell(text, value=repr(e.value), cls="num", key=key, href=href)


def headline(per_run: dict[str, list[Any]]) -> list[Part]:
    """The one-line answer: which saliency scores separate after position control, per run."""
    from saliency_lab.store.scores import SCORES

    found = []
    for run_id, rows in per_run.items():
        good = [
            r.score
            for r in rows
            if SCORES.get(r.score) is not None
            and SCORES[r.score].kind == "saliency"
            and verdict(r.controlled_ci) != "does not separate"
        ]
        found.append((run_id, good))
    yes = [(rid, g) for rid, g in found if g]
    if not yes:
        return [
            Part("Does saliency flag hallucinated tokens? "),
            Part("No", cls="bad"),
            Part(
                " — no saliency score separates hallucinated from correct tokens once position is controlled, "
                "in any run."
            ),
        ]
    text = "; ".join(f"{rid}: {', '.join(g)}" for rid, g in yes)
    return [
        Part("Does saliency flag hallucinated tokens? "),
        Part("Partly" if len(yes) < len(found) else "Yes", cls="good"),
        Part(
            f" — saliency scores that separate after position control (either direction; see the table "
            f"below for which): {text}."
        ),
    ]


def outcome_table(
    runs: list[RunData], outcomes: dict[str, RunOutcome], pairs: dict[str, Pairing]
) -> tb.Table:
    """Per run: decoding, CHAIR_s / CHAIR_i, POPE accuracy per split, the difference to its control, SGRS
    rates."""
    pope_splits = sorted({s for o in outcomes.values() for s in o.pope})
    cols = ["run", "decoding", "CHAIR_s [95% CI]", "CHAIR_i [95% CI]"]
    cols += [f"POPE {s} accuracy" for s in pope_splits]
    cols += ["vs control: Δ CHAIR_i [95% CI]", "SGRS rejected / fell back"]
    t = tb.Table(
        key="summary-outcomes",
        title="Hallucination per run (bootstrap 95% intervals over samples)",
        columns=cols,
    )
    for run in runs:
        o = outcomes[run.run_id]
        dec = run.meta.get("decoding") or {}
        name = str(dec.get("strategy") or "?") + (
            f" + {intervention(run)}" if intervention(run) not in (None, "sgrs") else ""
        )
        row = [
            tb.text(run.run_id),
            tb.text(name),
            _est_cell(o.chair.get("chair_s"), "#runs", f"summary|{run.run_id}|chair_s"),
            _est_cell(o.chair.get("chair_i"), "#runs", f"summary|{run.run_id}|chair_i"),
        ]
        row += [_est_cell(o.pope.get(s), "#runs", f"summary|{run.run_id}|pope_{s}") for s in pope_splits]
        p = pairs.get(run.run_id)
        row.append(_diff_cell(p, f"summary|{run.run_id}|delta_chair_i"))
        row.append(_rates_cell(p, f"summary|{run.run_id}|sgrs"))
        t.rows.append(row)
    t.note = (
        "CHAIR: lower is better; Δ: intervention minus its paired control on the samples both hold "
        "(negative = fewer hallucinated objects); green when the whole interval is below 0. Click a number "
        "for the section that derives it."
    )
    return t


def _diff_cell(p: Pairing | None, key: str) -> tb.Cell:
    if p is None:
        return tb.Cell("–", cls="num")
    if p.control is None:
        return tb.Cell(f"no control ({p.why})")
    e = p.diffs.get("chair_i")
    if e is None:
        return tb.Cell(f"vs {p.control}: no CHAIR labels", href="#interventions")
    cell = _est_cell(e, "#interventions", key)
    cell.text = f"{e.value:+.3f} [{e.ci[0]:+.3f}, {e.ci[1]:+.3f}] vs {p.control}"
    cell.cls = "num " + ("good" if e.ci[1] < 0 else "bad" if e.ci[0] > 0 else "")
    return cell


def _rates_cell(p: Pairing | None, key: str) -> tb.Cell:
    if p is None or not p.rates:
        return tb.Cell("–", cls="num")
    r, f = p.rates.get("rejection_rate"), p.rates.get("fallback_rate")
    if r is None or f is None:
        return tb.Cell("–", cls="num")
    return tb.Cell(
        f"{float(r):.1%} / {float(f):.1%} of steps",
        value=f"{float(r)!r}|{float(f)!r}",
        cls="num",
        key=key,
        href="#interventions",
    )


def intervention_sentences(pairs: list[Pairing]) -> list[list[Part]]:
    """One sentence per intervention run: its CHAIR_i change against the control, or why there is none."""
    out = []
    for p in pairs:
        e = p.diffs.get("chair_i")
        if p.control is None or e is None:
            out.append(
                [
                    Part(
                        f"{p.run_id} ({p.kind}): no paired control with CHAIR labels ({p.why}).",
                        href="#interventions",
                    )
                ]
            )
            continue
        if e.ci[1] < 0:
            said, cls = "Yes: fewer hallucinated objects", "good"
        elif e.ci[0] > 0:
            said, cls = "No, it hurt: more hallucinated objects", "bad"
        else:
            said, cls = "No clear difference", "bad"
        name = p.run_id if p.run_id == p.kind else f"{p.run_id} ({p.kind})"
        parts = [Part(f"Did {name} help, against {p.control}? "), Part(said, cls=cls), Part(", Δ CHAIR_i ")]
        parts += _ci_parts(e.value, e.ci, "#interventions", f"int|{p.run_id}|chair_i", 3)
        if p.rates:
            parts += [
                Part("; rejected the first draw at "),
                Part(
                    f"{float(p.rates['rejection_rate']):.1%}",
                    href="#interventions",
                    value=repr(float(p.rates["rejection_rate"])),
                    key=f"int|{p.run_id}|rejection",
                ),
                Part(" of steps, fell back at "),
                Part(
                    f"{float(p.rates['fallback_rate']):.1%}",
                    href="#interventions",
                    value=repr(float(p.rates["fallback_rate"])),
                    key=f"int|{p.run_id}|fallback",
                ),
            ]
        out.append(parts + [Part(".")])
    return out


def separation_matrix(separation: dict[str, list[Any]]) -> tb.Table:
    """Scores (rows) by runs (columns): position-controlled AUROC with its interval, coloured by verdict;
    ⚠ where the analysis warns that the score's pooled numbers are position-driven; last row: step alone."""
    ids = list(separation)
    scores = list(dict.fromkeys(r.score for rows in separation.values() for r in rows))
    t = tb.Table(
        key="summary-separation",
        title="Controlled AUROC (pairs at the same step) by score and run",
        columns=["score", *ids],
    )
    by = {(rid, r.score): r for rid, rows in separation.items() for r in rows}
    for name in scores:
        row = [tb.Cell(name, cls="score")]
        for rid in ids:
            r = by.get((rid, name))
            if r is None or r.controlled_auroc is None or not math.isfinite(r.controlled_auroc):
                row.append(tb.Cell("–", cls="num"))
                continue
            v = verdict(r.controlled_ci)
            text = f"{r.controlled_auroc:.2f}"
            if all(math.isfinite(x) for x in r.controlled_ci):
                text += f" [{r.controlled_ci[0]:.2f}, {r.controlled_ci[1]:.2f}]"
            row.append(
                tb.Cell(
                    text + (" ⚠" if r.warnings else ""),
                    value=repr(float(r.controlled_auroc)),
                    cls=f"num {VERDICT_CLASS[v]}",
                    key=f"sep|{rid}|{name}|controlled",
                    href="#separation",
                )
            )
        t.rows.append(row)
    step_row = [tb.Cell("step (position alone)", cls="score")]
    for rid in ids:
        rows = separation[rid]
        if not rows:
            step_row.append(tb.Cell("–", cls="num"))
            continue
        r = rows[0]
        text = f"{r.step_auroc:.2f}" + (
            f" [{r.step_ci[0]:.2f}, {r.step_ci[1]:.2f}]" if all(math.isfinite(x) for x in r.step_ci) else ""
        )
        step_row.append(
            tb.Cell(
                text, value=repr(float(r.step_auroc)), cls="num", key=f"sep|{rid}|step", href="#separation"
            )
        )
    t.rows.append(step_row)
    t.note = (
        "AUROC = P(hallucinated token scores lower); 0.5 = chance. Green: separates (interval above 0.5); "
        "amber: separates in reverse (hallucinated tokens score higher); red: does not separate. ⚠: the "
        "analysis warns that this score's pooled AUROC is position-driven (pooled and controlled differ by "
        "more than 0.05, or the score tracks the step). Bootstrap 95% intervals over samples."
    )
    return t


def summary_section(
    runs: list[RunData],
    labelset: str | None,
    outcomes: dict[str, RunOutcome],
    pairs: list[Pairing],
    separation: dict[str, list[Any]],
    calibration: list[Part] | None,
    detector: list[list[Part]] | None,
) -> Section:
    """The summary section: the headline answers, outcomes, interventions, calibration and detector, linked
    to their sections."""
    sec = Section(
        "summary", "Summary", intro="The answers first; every number links to the section that derives it."
    )
    answers = [headline(separation)] if separation else []
    answers += intervention_sentences(pairs)
    if answers:
        sec.blocks.append({"kind": "sentences", "title": "Answers", "items": answers})
    sec.table(outcome_table(runs, outcomes, {p.run_id: p for p in pairs}))
    if not separation:
        sec.needs = (
            "No labeled tokens, so no separation statistics: run `saliency-lab label chair --run R ...` "
            "(or pope / human) and rebuild."
        )
    more = []
    if detector:
        more.append([Part("Detector, cross-validated AUROC per feature set: ")] + detector[0])
    if calibration:
        more.append([Part("SGRS calibration: ")] + calibration)
    if more:
        sec.blocks.append({"kind": "sentences", "title": "Detector and calibration", "items": more})
    if separation:
        sec.table(separation_matrix(separation))
    return sec


def interventions_section(pairs: list[Pairing]) -> Section | None:
    """How each intervention's change is derived: the control, the shared samples, both metrics."""
    if not pairs:
        return None
    sec = Section(
        "interventions",
        "Interventions against their paired controls",
        intro="Each intervention run is compared with its control on the samples both runs hold: an SGRS "
        "run with top-K sampling of the same K (SGRS with alpha = 0 reproduces it token for "
        "token), a LocoRE or saliency-decay run with the same strategy without the intervention. "
        "Intervals: 95% paired bootstrap over the shared samples. SGRS rates come from the "
        "decisions table (query sgrs_rates).",
    )
    t = tb.Table(
        key="interventions",
        title="Change against the control (intervention − control)",
        columns=[
            "run",
            "intervention",
            "control",
            "why this control",
            "samples",
            "Δ CHAIR_i [95% CI]",
            "Δ CHAIR_s [95% CI]",
            "first draw rejected",
            "fell back",
            "draws rejected",
            "mean draws per step",
        ],
    )
    for p in pairs:
        k = f"interventions|{p.run_id}"
        ei, es = p.diffs.get("chair_i"), p.diffs.get("chair_s")
        t.rows.append(
            [
                tb.text(p.run_id),
                tb.text(p.kind),
                tb.text(p.control),
                tb.text(p.why),
                tb.num(ei.n if ei else None),
                _est_cell(ei, "", f"{k}|chair_i"),
                _est_cell(es, "", f"{k}|chair_s"),
                tb.num(p.rates.get("rejection_rate"), key=f"{k}|rejection_rate"),
                tb.num(p.rates.get("fallback_rate"), key=f"{k}|fallback_rate"),
                tb.num(p.rates.get("draw_rejection_rate"), key=f"{k}|draw_rejection_rate"),
                tb.num(p.rates.get("mean_draws"), key=f"{k}|mean_draws"),
            ]
        )
    for row in t.rows:
        for c in row:
            c.href = None
    sec.table(t)
    return sec


def outcome_details(outcomes: dict[str, RunOutcome], n_boot: int) -> tb.Table:
    """Where the summary's CHAIR / POPE numbers come from: estimate, interval and samples per run."""
    t = tb.Table(
        key="outcome-details",
        title="CHAIR and POPE with bootstrap intervals (the summary's numbers)",
        columns=["run", "metric", "estimate", "95% CI", "samples"],
    )
    for rid, o in outcomes.items():
        items = [(k, e) for k, e in o.chair.items()] + [(f"POPE {k} accuracy", e) for k, e in o.pope.items()]
        for name, e in items:
            ci = f"[{e.ci[0]:.3f}, {e.ci[1]:.3f}]" if all(math.isfinite(v) for v in e.ci) else "–"
            t.rows.append(
                [
                    tb.text(rid),
                    tb.text(name),
                    tb.num(e.value, key=f"runs|{rid}|{name}"),
                    tb.Cell(ci, cls="num"),
                    tb.num(e.n),
                ]
            )
    t.note = (
        f"CHAIR_i = hallucinated mentions / mentions (a mention is hallucinated when any of its tokens is), "
        f"CHAIR_s = share of captions with a hallucinated mention, POPE accuracy = share of right answers; "
        f"95% percentile bootstrap over samples ({n_boot} resamples, seed 0; saliency_lab.analysis.label_ci)."
    )
    return t
