"""Outcome numbers of each run for the summary and the interventions section: CHAIR / POPE with bootstrap
intervals over samples, each intervention run against its paired control, SGRS rejection / fallback rates.

Pairing rule (the control an intervention is measured against): an SGRS run's control is a top-K sampling
run with the same K (SGRS with alpha = 0 reproduces it token for token); a LocoRE or saliency-decay run's
control is a run with the same strategy and neither intervention. Only samples both runs hold are compared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from saliency_lab.analysis import label_ci as lc
from saliency_lab.report.data import RunData
from saliency_lab.report.runconfig import decay_on


@dataclass
class RunOutcome:
    """A run's CHAIR and POPE estimates with their intervals."""

    run_id: str
    chair: dict[str, lc.Estimate] = field(default_factory=dict)  # chair_s, chair_i
    pope: dict[str, lc.Estimate] = field(default_factory=dict)  # split -> accuracy


@dataclass
class Pairing:
    """An intervention run, its control run (None when none fits, `why` says) and their paired differences."""

    run_id: str
    control: str | None
    kind: str  # sgrs | locore | decay
    why: str
    diffs: dict[str, lc.Estimate] = field(default_factory=dict)  # chair_i, chair_s (run - control)
    rates: dict[str, float] = field(default_factory=dict)  # SGRS: rejection_rate, fallback_rate, ...


def intervention(run: RunData) -> str | None:
    """The run's intervention from run.json ('sgrs', 'locore', 'decay'), None for plain decoding."""
    dec = run.meta.get("decoding") or {}
    if dec.get("strategy") == "sgrs":
        return "sgrs"
    if float((dec.get("locore") or {}).get("beta") or 0) > 0:
        return "locore"
    if decay_on(dec):
        return "decay"
    return None


def find_control(run: RunData, runs: list[RunData]) -> tuple[RunData | None, str]:
    """The control run of an intervention run (see the module docstring), and the rule that chose it."""
    dec = run.meta.get("decoding") or {}
    kind = intervention(run)
    model = (run.meta.get("model") or {}).get("path")
    pool = [
        r
        for r in runs
        if r is not run and intervention(r) is None and (r.meta.get("model") or {}).get("path") == model
    ]
    if kind == "sgrs":
        k = (dec.get("sgrs") or {}).get("k")
        for r in pool:
            rd = r.meta.get("decoding") or {}
            if rd.get("strategy") == "sample" and rd.get("top_k") == k:
                return r, f"top-K sampling with K = {k}"
        return None, f"no top-K sampling run with K = {k} among the runs"
    for r in pool:
        if (r.meta.get("decoding") or {}).get("strategy") == dec.get("strategy"):
            return r, f"{dec.get('strategy')} decoding without the intervention"
    return None, f"no {dec.get('strategy')} run without the intervention among the runs"


def _ok_ids(run: RunData) -> list[str]:
    return sorted(run.samples.filter(pl.col("status") == "ok")["sample_id"].to_list())


def run_outcome(run: RunData, n_boot: int) -> RunOutcome:
    """CHAIR_s / CHAIR_i and POPE accuracy per split, each with a bootstrap interval over the run's samples."""
    out = RunOutcome(run.run_id)
    ids = _ok_ids(run)
    chair = run.label_table("chair") if "chair" in run.labelsets else None
    if chair is not None:
        m, h = lc.chair_counts(chair, ids)
        out.chair = {
            "chair_s": lc.bootstrap(m, h, lc.chair_s, n_boot),
            "chair_i": lc.bootstrap(m, h, lc.chair_i, n_boot),
        }
    lab = run.label_table("pope") if "pope" in run.labelsets else None
    if lab is not None:
        for split, sids in _pope_splits(run, ids).items():
            a, w = lc.pope_wrong(lab, sids)
            out.pope[split] = lc.bootstrap(a, w, lc.accuracy, n_boot)
    return out


def _pope_splits(run: RunData, ids: list[str]) -> dict[str, list[str]]:
    meta = dict(run.samples.select("sample_id", "meta").iter_rows()) if "meta" in run.samples.columns else {}
    out: dict[str, list[str]] = {}
    for sid in ids:
        try:
            split = json.loads(meta.get(sid) or "{}").get("split") or "all"
        except (ValueError, AttributeError):
            split = "all"
        out.setdefault(str(split), []).append(sid)
    return dict(sorted(out.items()))


def pairings(runs: list[RunData], sgrs_rates: dict[str, dict[str, Any]], n_boot: int) -> list[Pairing]:
    """Every intervention run with its control, the paired CHAIR change and its SGRS rates."""
    out = []
    by_id = {r.run_id: r for r in runs}
    for run in runs:
        kind = intervention(run)
        if kind is None:
            continue
        ctl, why = find_control(run, runs)
        p = Pairing(run.run_id, ctl.run_id if ctl else None, kind, why, rates=sgrs_rates.get(run.run_id, {}))
        lab1 = run.label_table("chair") if "chair" in run.labelsets else None
        lab0 = ctl.label_table("chair") if ctl is not None and "chair" in ctl.labelsets else None
        if ctl is not None and lab1 is not None and lab0 is not None:
            shared = sorted(set(_ok_ids(run)) & set(_ok_ids(by_id[ctl.run_id])))
            m1, h1 = lc.chair_counts(lab1, shared)
            m0, h0 = lc.chair_counts(lab0, shared)
            p.diffs = {
                name: lc.paired_difference(m1, h1, m0, h0, fn, n_boot)
                for name, fn in (("chair_i", lc.chair_i), ("chair_s", lc.chair_s))
            }
        out.append(p)
    return out


def read_sgrs_rates(runs: list[RunData]) -> dict[str, dict[str, Any]]:
    """Named query `sgrs_rates` over the runs that hold a decisions table."""
    with_dec = [r for r in runs if any((r.path / "decisions").glob("shard=*/part-*.parquet"))]
    if not with_dec:
        return {}
    from saliency_lab.store.catalog import open_catalog

    with open_catalog([str(r.path) for r in with_dec]) as cat:
        df = cat.query("sgrs_rates", {})
    return {row.pop("run_id"): row for row in df.to_dicts()}


def finite(x: Any) -> bool:
    """True for a finite number (not None, NaN or infinite)."""
    return x is not None and bool(np.isfinite(float(x)))
