"""Configuration once: every run's settings side by side, the ones that differ in the open, the rest folded.

A setting that does not apply to a run (SGRS settings of a greedy run, LocoRE settings while LocoRE is off,
sampling settings of argmax decoding) is left out for that run instead of printing a value nobody used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from saliency_lab.config import SaliencyDecayConfig
from saliency_lab.report import tables as tb
from saliency_lab.report.data import RunData
from saliency_lab.report.page import Section

# Settings that only mean something under some condition on the run's decoding block (run.json).
_Rule = Callable[[dict[str, Any]], bool]


def _strategy(dec: dict[str, Any]) -> str:
    return str(dec.get("strategy") or "greedy")


def _locore_on(dec: dict[str, Any]) -> bool:
    return float((dec.get("locore") or {}).get("beta") or 0) > 0


def decay_on(dec: dict[str, Any]) -> bool:
    """Whether run.json's decoding block applies the saliency decay (SaliencyDecayConfig.active: every run
    records the block, mostly at its inactive defaults)."""
    d = dec.get("decay") or {}
    known = {f.name for f in fields(SaliencyDecayConfig)}
    return SaliencyDecayConfig(**{k: v for k, v in d.items() if k in known}).active


APPLIES: dict[str, _Rule] = {
    "decoding.sgrs.": lambda d: _strategy(d) == "sgrs",
    "decoding.locore.": _locore_on,
    "decoding.decay.": decay_on,
    "decoding.top_k": lambda d: _strategy(d) == "sample",
    "decoding.temperature": lambda d: _strategy(d) in ("sample", "sgrs"),
    "decoding.seed": lambda d: _strategy(d) in ("sample", "sgrs"),
}
# Run.json entries that are bookkeeping, not settings (they differ between any two runs).
_SKIP = ("created_at", "created_by", "conventions.", "run_id", "manifest.sha256", "model.weights_sha256")


def applies(key: str, decoding: dict[str, Any]) -> bool:
    """Whether the dotted run.json setting `key` was in effect for a run with this decoding block."""
    for prefix, rule in APPLIES.items():
        if key == prefix or key.startswith(prefix):
            return rule(decoding)
    return True


def run_settings(run: RunData) -> dict[str, Any]:
    """The run's settings as dotted keys (decoding.sgrs.alpha ...), only those that apply to it."""
    meta = run.meta
    flat: list[tuple[str, Any]] = []
    for block in ("model", "decoding", "saliency", "manifest"):
        tb.flatten(block, meta.get(block) or {}, flat)
    flat.append(("shards", meta.get("shards")))
    flat.append(("toolkit_version", meta.get("toolkit_version")))
    dec = meta.get("decoding") or {}
    out: dict[str, Any] = {}
    for key, value in flat:
        if any(key == s or key.startswith(s) for s in _SKIP):
            continue
        if applies(key, dec):
            out[key] = value
    return out


def split_settings(runs: list[RunData]) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """(keys that differ between runs or apply to only some, keys equal everywhere, settings per run)."""
    per_run = [run_settings(r) for r in runs]
    keys = list(dict.fromkeys(k for s in per_run for k in s))
    differ: list[str] = []
    same: list[str] = []
    for k in keys:
        vals = [repr(s.get(k, _ABSENT)) for s in per_run]
        (differ if len(set(vals)) > 1 else same).append(k)
    return differ, same, per_run


_ABSENT = object()


def config_section(runs: list[RunData]) -> Section:
    """The runs' settings side by side: those that differ shown, the equal ones folded below."""
    sec = Section(
        "config",
        "Configuration",
        intro="Each run's settings from run.json, side by side. Shown: the settings that differ between "
        "runs; the rest (equal for every run) are folded below. A dash means the setting does not "
        "apply to that run (e.g. SGRS settings of a greedy run).",
    )
    ids = [r.run_id for r in runs]
    differ, same, per_run = split_settings(runs)
    if len(runs) == 1:
        same, differ = differ + same, []
    if differ:
        sec.table(_table("config-differ", "Settings that differ", ids, differ, per_run))
    else:
        sec.note("Every setting is the same for " + ("this run." if len(runs) == 1 else "all runs."))
    if same:
        sec.blocks.append(
            {
                "kind": "details",
                "summary": f"{len(same)} settings equal for every run",
                "table": _table(
                    "config-same",
                    "Settings equal for every run",
                    ids[:1] if len(runs) == 1 else ["all runs"],
                    same,
                    per_run[:1],
                ),
            }
        )
    return sec


def _table(key: str, title: str, ids: list[str], keys: list[str], per_run: list[dict[str, Any]]) -> tb.Table:
    t = tb.Table(key=key, title=title, columns=["setting", *ids])
    for k in keys:
        row = [tb.Cell(k)]
        for rid, settings in zip(ids, per_run, strict=True):
            v = settings.get(k, _ABSENT)
            ck = f"config|{rid}|{k}"
            if v is _ABSENT:
                row.append(tb.Cell("–", cls="na", key=ck))
            elif isinstance(v, int | float) and not isinstance(v, bool):
                row.append(tb.num(v, key=ck))
            else:
                row.append(tb.text(tb._plain(v), key=ck))
        t.rows.append(row)
    return t
