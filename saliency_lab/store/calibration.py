"""calibration.json: the SGRS calibration written by `saliency-lab calibrate`, read back by
`capture --calibration`, the report and the Python API. This class is the only reader and writer of the
file, so every consumer validates it the same way (docs/analysis.md, "`saliency-lab calibrate`").

    cal = Calibration.read("cal")          # the folder holding calibration.json, or the file
    cal.sgrs_settings()                    # {"alpha": 0.6, "window": 5, "layers": [2, 3], "score": "source_share",
                                           #  "reject": "low"}: what capture applies

Fields (top level of the JSON object; unknown fields are refused so a typo or a newer file is not silently
ignored):

recommended          {"alpha", "window", "layers", "score", "reject"} (each optional), or null when no
                     setting beats chance within the budget
reason               why `recommended` is null (or a note on it), else null
recommended_metrics  recall, false_rejection_rate, ... of the recommended setting
within_budget        whether the recommendation meets the false-rejection budget
budget               the false-rejection budget on correct tokens
selection            the selection rule, the number of bootstrap resamples and the max-t quantile
has_candidates       whether the runs recorded candidates (expected_resamples is exact then)
score                the token score SGRS thresholds (out_mean | prev | ...), null = not recorded
reject               which side of the threshold SGRS rejects: "low" (the paper's rule) or "high"; null
                     without a recommendation
labels, runs, config what was calibrated on and with which settings
frontier, grid       the settings on the recall / false-rejection frontier, and every setting tried
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import polars as pl

from saliency_lab.errors import SaliencyLabError
from saliency_lab.jsonl import jsonable
from saliency_lab.store.scores import SALIENCY_SCORES

CALIBRATION_JSON = "calibration.json"
_FIX = "pass the calibration.json written by `saliency-lab calibrate` (or the folder holding it)"
_SGRS_KEYS = ("alpha", "window", "layers", "score", "reject")
Reject = Literal["low", "high"]


def _frame(rows: Any, where: str, name: str) -> pl.DataFrame:
    if rows is None:
        return pl.DataFrame()
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise SaliencyLabError(f"{where}: {name} must be a list of objects; {_FIX}")
    try:
        return pl.DataFrame(rows, infer_schema_length=None)
    except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
        raise SaliencyLabError(f"{where}: {name} is not a table ({exc}); {_FIX}") from None


def _check_sgrs(rec: Any, where: str) -> dict[str, Any] | None:
    """The validated `recommended` block (None stays None)."""
    if rec is None:
        return None
    if not isinstance(rec, dict):
        raise SaliencyLabError(f'{where}: "recommended" must be an object or null; {_FIX}')
    unknown = sorted(set(rec) - set(_SGRS_KEYS))
    if unknown:
        raise SaliencyLabError(
            f"{where}: unknown field(s) recommended.{', recommended.'.join(unknown)}; "
            f"known: {', '.join(_SGRS_KEYS)}"
        )
    out: dict[str, Any] = {}
    alpha, window, layers = rec.get("alpha"), rec.get("window"), rec.get("layers")
    if alpha is not None:
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
            raise SaliencyLabError(f"{where}: recommended.alpha must be a number")
        out["alpha"] = float(alpha)
    if window is not None:
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise SaliencyLabError(f"{where}: recommended.window must be an integer >= 1")
        out["window"] = window
    if layers is not None:
        if not isinstance(layers, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in layers
        ):
            raise SaliencyLabError(f"{where}: recommended.layers must be a list of layer numbers")
        out["layers"] = list(layers)
    if rec.get("score") is not None:
        if not isinstance(rec["score"], str):
            raise SaliencyLabError(f"{where}: recommended.score must be a score name")
        out["score"] = rec["score"]
    if rec.get("reject") is not None:
        if rec["reject"] not in ("low", "high"):
            raise SaliencyLabError(f'{where}: recommended.reject={rec["reject"]!r}; use "low" or "high"')
        out["reject"] = rec["reject"]
    return out


@dataclass
class Calibration:
    """One SGRS calibration result (see the module docstring for the fields)."""

    recommended: dict[str, Any] | None
    reason: str | None = None
    recommended_metrics: dict[str, Any] = field(default_factory=dict)
    within_budget: bool | None = None
    budget: float | None = None
    selection: dict[str, Any] = field(default_factory=dict)
    has_candidates: bool | None = None
    score: str | None = None
    reject: Reject | None = "low"
    labels: str | None = None
    runs: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    frontier: pl.DataFrame = field(default_factory=pl.DataFrame)
    grid: pl.DataFrame = field(default_factory=pl.DataFrame)
    # Where this result came from (a file path, or how it was computed); not written to the file.
    source: str = field(default="", compare=False)

    def sgrs_settings(self) -> dict[str, Any]:
        """The recommended SGRS settings capture applies: a subset of {"alpha", "window", "layers", "score",
        "reject"} (score and reject default to out_mean / low, the paper's rule, when the file has none)."""
        where = self.source or "calibration"
        if self.recommended is None:
            why = f" ({self.reason})" if self.reason else ""
            raise SaliencyLabError(f"{where}: the calibration recommends no SGRS setting{why}; set --sgrs-alpha / "
                                   "--sgrs-window / --sgrs-layers / --sgrs-score yourself")
        rec = dict(self.recommended)
        rec.setdefault("score", self.score or "out_mean")
        rec.setdefault("reject", self.reject or "low")
        if rec["score"] not in SALIENCY_SCORES:
            # e.g. an attention baseline: calibrate can rank it, but a candidate's saliency row cannot give it.
            raise SaliencyLabError(
                f"{where}: the recommendation thresholds {rec['score']}, which SGRS cannot compute while decoding; "
                f"calibrate with --score one of {', '.join(SALIENCY_SCORES)}, or pass --sgrs-score"
            )
        return rec

    def to_json(self) -> dict[str, Any]:
        """The calibration.json document (plain JSON: NaN and infinities become null)."""
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "source"}
        return jsonable(doc)

    def write(self, path: str | Path) -> Path:
        """Write calibration.json to `path` (a file path, or a folder to hold calibration.json) atomically."""
        p = Path(path)
        if p.is_dir():
            p = p / CALIBRATION_JSON
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        tmp.replace(p)  # a reader never sees half a file; a failed write keeps the old one
        return p

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Calibration:
        """Validate a parsed calibration.json document; `where` names it in errors."""
        if not isinstance(doc, dict):
            raise SaliencyLabError(f"{where}: not a JSON object; {_FIX}")
        known = {f.name for f in fields(cls)} - {"source"}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise SaliencyLabError(
                f"{where}: unknown field(s) {', '.join(unknown)}; written by a newer "
                "saliency-lab? upgrade it, or remove the field(s)"
            )
        if "recommended" not in doc:
            raise SaliencyLabError(f'{where}: no "recommended" object; {_FIX}')
        reject = doc.get("reject", "low")
        if reject not in ("low", "high", None):
            raise SaliencyLabError(f'{where}: reject={reject!r}; use "low" or "high"')
        for name, kind in (("recommended_metrics", dict), ("config", dict), ("selection", dict), ("runs", list)):
            if doc.get(name) is not None and not isinstance(doc[name], kind):
                raise SaliencyLabError(
                    f"{where}: {name} must be a JSON {'object' if kind is dict else 'list'}"
                )
        for name in ("reason", "score", "labels"):
            if doc.get(name) is not None and not isinstance(doc[name], str):
                raise SaliencyLabError(f"{where}: {name} must be a string or null")
        return cls(
            recommended=_check_sgrs(doc["recommended"], where),
            reason=doc.get("reason"),
            recommended_metrics=dict(doc.get("recommended_metrics") or {}),
            within_budget=doc.get("within_budget"),
            budget=doc.get("budget"),
            selection=dict(doc.get("selection") or {}),
            has_candidates=doc.get("has_candidates"),
            score=doc.get("score"),
            reject=reject,
            labels=doc.get("labels"),
            runs=[str(r) for r in doc.get("runs") or []],
            config=dict(doc.get("config") or {}),
            frontier=_frame(doc.get("frontier"), where, "frontier"),
            grid=_frame(doc.get("grid"), where, "grid"),
            source=where,
        )

    @classmethod
    def read(cls, path: str | Path) -> Calibration:
        """Read and validate calibration.json (`path` is the file or the folder holding it)."""
        p = Path(path)
        if p.is_dir():
            p = p / CALIBRATION_JSON
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SaliencyLabError(
                f"{path}: no calibration.json found; run `saliency-lab calibrate R "
                "--labels chair --out DIR` and pass DIR or DIR/calibration.json"
            ) from None
        except OSError as exc:
            raise SaliencyLabError(f"{p}: unreadable ({exc.strerror}); {_FIX}") from None
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise SaliencyLabError(f"{p}: not valid JSON ({exc}); {_FIX}") from None
        return cls.from_json(doc, str(p))
