"""The token-level hallucination detector in the report: `analysis.detector.train_detector` on the labeled
runs (logistic regression per feature set, cross-validated with whole images / samples held out), shown as
one summary line and a table. The report trains nothing of its own design; it calls the analysis."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from saliency_lab.errors import SaliencyLabError
from saliency_lab.report import tables as tb
from saliency_lab.report.page import Section


def train(labeled: list[Path], labelset: str, n_bootstrap: int) -> tuple[Any | None, str | None]:
    """The detector result, or None and the reason (e.g. one label only), which the page then states."""
    from saliency_lab.analysis.detector import DetectorConfig, train_detector

    try:
        return train_detector(
            [str(p) for p in labeled], labelset, DetectorConfig(n_bootstrap=n_bootstrap)
        ), None
    except SaliencyLabError as exc:
        return None, f"The detector could not be trained: {exc}"


def sentences(det: Any) -> list[list[Any]]:
    """The summary's detector sentence: cross-validated AUROC and interval per feature set, then the best
    one."""
    from saliency_lab.report.summary import Part, _ci_parts

    parts: list[Any] = []
    for i, (name, fs) in enumerate(det.feature_sets.items()):
        if i:
            parts.append(Part("; "))
        parts.append(Part(name, cls="score"))
        parts.append(Part(" "))
        parts += _ci_parts(fs.cv_auroc, fs.cv_ci, "#detector", f"detector|{name}")
    best = det.best() if hasattr(det, "best") else None
    parts.append(
        Part(
            f" ({det.n_tokens} labeled tokens, {det.n_groups} {det.group_by} groups held out in "
            f"{next(iter(det.feature_sets.values())).n_folds} folds; AUROC of P(hallucinated), 0.5 = chance"
            + (f"; best: {best}" if best else "")
            + ")."
        )
    )
    return [parts]


def section(det: Any | None, why: str | None) -> Section:
    """The detector section (cross-validated AUROC per feature set); only `needs` (the reason `why`)
    without a detector."""
    sec = Section(
        "detector",
        "Detector",
        intro="A logistic regression on each feature set (position only, attention only, saliency "
        "scores, all), cross-validated with whole groups (images, else samples) held out. AUROC is "
        "of the predicted P(hallucinated) (higher = hallucinated; 0.5 = chance) on held-out tokens, "
        "with a 95% bootstrap interval over groups. Beating the position-only set is what shows "
        "that the scores add information.",
    )
    if det is None:
        sec.needs = why or "No detector."
        return sec
    t = tb.Table(
        key="detector",
        title=f"Cross-validated AUROC (labels {det.labels})",
        columns=["feature set", "features", "CV AUROC", "95% CI", "folds"],
    )
    for name, fs in det.feature_sets.items():
        ci = fs.cv_ci
        ci_text = (
            f"[{ci[0]:.3f}, {ci[1]:.3f}]" if all(v is not None and math.isfinite(v) for v in ci) else "–"
        )
        t.rows.append(
            [
                tb.text(name),
                tb.text(", ".join(fs.features[:6]) + (" …" if len(fs.features) > 6 else "")),
                tb.num(fs.cv_auroc, key=f"detector|{name}|cv_auroc"),
                tb.Cell(ci_text, cls="num"),
                tb.num(fs.n_folds),
            ]
        )
    t.note = (
        f"{det.n_tokens} labeled tokens ({det.n_pos} hallucinated), {det.n_groups} groups by {det.group_by}."
    )
    sec.table(t)
    return sec
