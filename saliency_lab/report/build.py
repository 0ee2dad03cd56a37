"""`build_report`: one self-contained HTML file for one or more runs (docs/report.md, `saliency-lab report`).

The page inlines the Vega/Vega-Lite/vega-embed bundle once and embeds each chart's Vega-Lite spec; it loads
nothing from the network (a Content-Security-Policy in the page forbids it). Numbers come from
`saliency_lab.analysis`; what needs labels or stored rows says so in the page when they are missing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from saliency_lab.errors import SaliencyLabError, os_error
from saliency_lab.report import assets, detector_view
from saliency_lab.report.config import ReportConfig, analysis_binning
from saliency_lab.report.data import RunData, find_labelset, load_runs
from saliency_lab.report.explorer import ExplorerData, build_explorer
from saliency_lab.report.outcomes import pairings, read_sgrs_rates, run_outcome
from saliency_lab.report.page import Charts, Section
from saliency_lab.report.runconfig import config_section
from saliency_lab.report.scores import default_layers, labeled_scores, token_scores
from saliency_lab.report.sections_curves import curve_section, position_section, step_controlled_curve
from saliency_lab.report.sections_extra import calibration_section, compare_section
from saliency_lab.report.sections_run import failure_cases, maps_section, runs_section
from saliency_lab.report.sections_stats import (
    NEEDS_LABELS,
    distributions_section,
    layers_section,
    means_section,
)
from saliency_lab.report.separation import family_separation, rows_of, separation_section
from saliency_lab.report.summary import Part, interventions_section, outcome_details, summary_section
from saliency_lab.store.calibration import Calibration
from saliency_lab.version import __version__


def _analyze(paths: list[Path], labelset: str, cfg: ReportConfig) -> Any:
    from saliency_lab.analysis import AnalysisConfig, analyze

    # The primary score only: per-score tests, curves and layer profiles of the whole family would cost
    # minutes; the family gets the separation table (report.separation.family_separation).
    acfg = AnalysisConfig(score=cfg.score, layers=cfg.layers, n_bootstrap=cfg.n_bootstrap,
                          n_failures=max(cfg.n_failures, 1), bins=cfg.bins,
                          binning=analysis_binning(cfg.binning))  # type: ignore[arg-type]
    return analyze([str(p) for p in paths], labelset, acfg)


def _calibration(paths: list[Path], labelset: str | None, cfg: ReportConfig, missing: str
                 ) -> tuple[Calibration | None, str | None]:
    if cfg.calibration is not None:
        return Calibration.read(cfg.calibration), None
    if not labelset:
        return None, missing
    if not cfg.compute_calibration:
        return None, ("No calibration results: pass --calibration DIR (from `saliency-lab calibrate`) or drop "
                      "--no-calibrate to compute it here.")
    from saliency_lab.analysis import CalibrationConfig, calibrate

    # Calibrate on the first run: the baseline whose generations SGRS would filter.
    try:
        res = calibrate([str(paths[0])], labelset, CalibrationConfig(score=cfg.score, n_bootstrap=cfg.n_bootstrap))
    except SaliencyLabError as exc:  # e.g. labels of one kind only: say so in the page, keep the rest
        return None, f"SGRS calibration could not run: {exc}"
    return res.to_calibration(f"computed by the report on {paths[0]} (labels {labelset})"), None


def build_report(runs: Sequence[str | Path] | str | Path, out_html: str | Path,
                 config: ReportConfig | None = None) -> Path:
    """Write one self-contained HTML report for `runs` to `out_html` and return its path."""
    cfg = (config or ReportConfig()).validate()
    t0 = time.perf_counter()
    out = Path(out_html)
    if out.is_dir():
        raise SaliencyLabError(f"-o {out}: is a folder; give the report's file name, e.g. {out / 'report.html'}")
    data = load_runs(runs)
    _check_inputs(data, cfg)
    labelset = find_labelset(data, cfg.labels)
    lset = labelset or ""  # the calls below that take it only run when some run holds labeled tokens
    with_set = [r for r in data if labelset and labelset in r.labelsets]
    # A label set can exist and still be empty (CHAIR found no object mentions): nothing to compare then.
    labeled_runs = [r for r in with_set if r.n_labeled(lset) > 0]
    labeled = [r.path for r in labeled_runs]
    missing = NEEDS_LABELS
    if with_set and not labeled_runs:
        missing = (f"The label set {labelset!r} has no labeled tokens in "
                   f"{', '.join(r.run_id for r in with_set)} (e.g. CHAIR found no object mentions in the "
                   "captions), so there is nothing to compare; label other samples or use human labels.")
    result = _analyze(labeled, lset, cfg) if labeled else None
    if result is not None:
        result.separation = family_separation(labeled, lset, result.config)
    cal, cal_missing = _calibration(labeled, labelset if labeled else None, cfg, missing)

    layers_by_run = {r.run_id: _score_layers(r, cfg, result) for r in data}
    halluc: dict[str, pl.DataFrame | None] = {}
    for r in data:
        lab = r.label_table(labelset) if labelset else None
        halluc[r.run_id] = lab.filter(pl.col("label") == 1) if lab is not None else None
    with_rows = [r for r in data if r.has_rows()]
    scores: dict[str, pl.DataFrame | None] = (
        dict(token_scores(with_rows, labelset, cfg.layers, cfg.score)) if with_rows and not cfg.samples else {})

    dist = labeled_scores([str(p) for p in labeled], lset, cfg.layers, cfg.score) if result else None
    controlled, profile = _position_frames(labeled, lset, cfg) if result else (None, None)
    charts = Charts()
    explorer = (build_explorer(data, labelset, cfg.layers, layers_by_run, cfg.score,
                               int(cfg.image_budget_mb * 1e6), cfg.image_px) if cfg.explorer else None)
    pairs = pairings(data, read_sgrs_rates(data), cfg.n_bootstrap)
    det, det_why = detector_view.train(labeled, lset, cfg.n_bootstrap) if result else (None, missing)
    outcomes = {r.run_id: run_outcome(r, cfg.n_bootstrap) for r in data}
    sections: list[Section] = [
        summary_section(data, labelset, outcomes, pairs, rows_of(result),
                        _calibration_verdict(cal, cal_missing),
                        detector_view.sentences(det) if det is not None else None),
        config_section(data),
        runs_section(data, labelset, result.summary if result else None),
        separation_section(result, missing),
        detector_view.section(det, det_why),
        means_section(result, cfg.score, charts, missing),
        curve_section(result, cfg.score, charts,
                      step_controlled_curve(controlled, cfg.bins, analysis_binning(cfg.binning))
                      if controlled is not None else None, missing),
        position_section(profile, cfg.score, charts, missing),
        distributions_section(result, cfg.score, charts, dist, missing),
        layers_section(result, cfg.score, charts, layers_by_run, missing),
    ]
    if any(o.chair or o.pope for o in outcomes.values()):
        sections[2].table(outcome_details(outcomes, cfg.n_bootstrap))
    inter = interventions_section(pairs)
    if inter is not None:
        sections.insert(3, inter)
    if explorer is not None:
        sections.append(_explorer_section(explorer))
    sections.append(maps_section(data, charts, layers_by_run, halluc, scores, cfg.samples, cfg.n_auto_samples,
                                 cfg.max_map_steps))
    sections.append(_failures_section(data, result, cfg, missing))
    sections.append(calibration_section(cal, cal_missing, charts))
    cmp = compare_section(data, result, labelset, cfg.score, charts)
    if cmp is not None:
        sections.append(cmp)
    if labelset and len(labeled_runs) < len(data):
        sections[2].note(f"Runs without labeled tokens in the label set {labelset}: "
                         + ", ".join(r.run_id for r in data if r not in labeled_runs))

    html = _render(data, labelset, cfg, sections, charts, explorer)
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(out)  # atomic: a reader never sees half a report, and a failed build keeps the old one
    except OSError as exc:
        raise os_error(exc, "cannot write the report (any earlier report there is kept)") from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # an unwritable folder: no temporary file was made there either
    build_report.last_seconds = time.perf_counter() - t0  # type: ignore[attr-defined]
    return out


def _check_inputs(data: list[RunData], cfg: ReportConfig) -> None:
    """--layers within every run's model and --samples naming existing samples, before any work."""
    for r in data:
        n = r.n_layers
        if n is None:
            continue  # checked against the saliency table by the analysis instead
        bad = [x for x in cfg.layers or [] if not 0 <= x < n]
        if bad:
            raise SaliencyLabError(f"--layers {','.join(map(str, cfg.layers or []))}: layer {bad[0]} is outside run "
                                   f"{r.run_id!r}, which has {n} layers (0..{n - 1}); pass layers in that range")
    if cfg.samples:
        known: set[str] = set()
        for r in data:
            known.update(str(s) for s in r.samples.get_column("sample_id").to_list())
        missing = [s for s in cfg.samples if s not in known]
        if missing:
            raise SaliencyLabError(f"--samples: no sample {missing[0]!r} in the runs "
                                   f"({len(known)} samples, e.g. {', '.join(sorted(known)[:3])}); fix the id")


def _score_layers(run: RunData, cfg: ReportConfig, result: Any) -> list[int]:
    """The layers the token score averages: the analysis' own record when it has one."""
    if result is not None:
        rec = (result.summary.get(run.run_id) or {}).get("target_layers")
        if rec:
            return [int(x) for x in rec]
    return list(cfg.layers) if cfg.layers else default_layers(run)


def _failures_section(data: list[RunData], result: Any, cfg: ReportConfig, missing: str) -> Section:
    sec = Section("failures", "Failure cases",
                  intro="Where the score misleads: hallucinated tokens with a high score (saliency did not "
                        "drop) and correct tokens with a low one, ranked by the analysis (paper App. B.2).")
    if result is None:
        sec.needs = missing
        return sec
    for run in data:
        if run.run_id not in result.summary:
            continue
        for kind, title in (("high_score_hallucination", "High-score hallucinations"),
                            ("low_score_correct", "Low-score correct tokens")):
            cases = failure_cases(run, result.failures, kind, cfg.n_failures, result.config.context_chars)
            label = f"{title} — {run.run_id}" if len(data) > 1 else title
            sec.cases(f"{kind}:{run.run_id}", label, cases)
    return sec


def _position_frames(labeled: list[Path], labelset: str, cfg: ReportConfig
                     ) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """Named queries `step_controlled` (labeled tokens with their z-score within the step) and
    `step_profile` (rate and score by step) over the labeled runs."""
    from saliency_lab.store.catalog import open_catalog

    params = {"labels": labelset, "score": cfg.score, "normalization": "row",
              "layers": ",".join(str(int(x)) for x in cfg.layers) if cfg.layers else "NULL"}
    with open_catalog([str(p) for p in labeled]) as cat:
        return cat.query("step_controlled", params), cat.query("step_profile", params)


def _calibration_verdict(cal: Calibration | None, why: str | None) -> list[Part]:
    if cal is None:
        return [Part(why or "No calibration.", href="#calibration")]
    rec = cal.recommended or {}
    met = cal.recommended_metrics or {}
    if not rec:
        return [Part("No SGRS setting recommended", href="#calibration", cls="bad"),
                Part(f": {cal.reason}." if cal.reason else ".")]
    what = f"{rec['score']} reject {rec.get('reject', 'low')}, " if rec.get("score") else ""
    parts = [Part("Recommended: "),
             Part(f"{what}alpha {rec.get('alpha')}, W {rec.get('window')}, layers {rec.get('layers')}",
                  href="#calibration", key="summary|calibration")]
    if met.get("recall") is not None:
        parts += [Part(" (recall "), Part(f"{float(met['recall']):.3f}", href="#calibration",
                                          value=repr(float(met["recall"])), key="summary|calibration|recall"),
                  Part(", false rejections "),
                  Part(f"{float(met['false_rejection_rate']):.3f}", href="#calibration",
                       value=repr(float(met["false_rejection_rate"])), key="summary|calibration|frr"),
                  Part(")")]
    return parts


def _explorer_section(explorer: ExplorerData) -> Section:
    sec = Section("explorer", "Token explorer",
                  intro="Every sample's output, each token coloured by the chosen score (darker = higher); "
                        "labeled hallucinations are underlined in red, labeled correct objects in green. Click a "
                        "token for its scores, its per-layer values, its saliency row over the earlier output "
                        "tokens and, for image samples, the image with the token's saliency over the image "
                        "patches (needs rows captured with --rows all).")
    for line in explorer.dropped:
        sec.note(line)
    sec.blocks.append({"kind": "explorer"})
    return sec


def _render(data: list[RunData], labelset: str | None, cfg: ReportConfig, sections: list[Section],
            charts: Charts, explorer: ExplorerData | None) -> str:
    import vl_convert as vlc

    folder = Path(cfg.templates_dir) if cfg.templates_dir else None
    title = cfg.title or ("saliency-lab report — " + ", ".join(r.run_id for r in data))
    layers = f"layers {cfg.layers}" if cfg.layers else "upper half of the layers"
    return assets.render_page(dict(
        title=title,
        version=__version__,
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        runs=data,
        labelset=labelset,
        score_desc=f"{cfg.score}, row-normalized, mean over {layers}",
        sections=sections,
        css=assets.stylesheet(folder),
        vega_js=assets.vega_bundle(),
        charts_json=charts.to_script_json(),
        explorer_json=explorer.to_script_json() if explorer is not None else "null",
        explorer_js=assets.script("explorer.js", folder),
        vega_versions=f"{vlc.get_vega_version()} / vega-embed {vlc.get_vega_embed_version()}",
    ), folder)
