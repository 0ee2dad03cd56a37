"""Human labels: JSONL, one object per line, either

    {"sample_id": "s1", "spans": [{"start": 4, "end": 9, "label": 1}, ...]}   char offsets into output_text
    {"sample_id": "s1", "steps": [3, 4], "label": 1}                         output token steps

`label` is 1 (hallucinated) or 0 (correct); a span may carry an optional `object`. Any other field is refused
by name (a misspelt "lable" must not silently drop a label). Everything is validated
against the run before anything is written: unknown sample, span outside the text or empty, overlapping spans
(also across lines), step out of range or labeled twice -> one-line error naming file:line and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from saliency_lab.errors import SaliencyLabError
from saliency_lab.jsonl import iter_jsonl
from saliency_lab.labels.join import SpanLabel, StepLabel
from saliency_lab.labels.runread import RunTokens


@dataclass
class HumanLabels:
    """Human labels per sample, as character spans or as output steps."""

    spans: dict[str, list[SpanLabel]] = field(default_factory=dict)
    steps: dict[str, list[StepLabel]] = field(default_factory=dict)
    n_records: int = 0


_SHAPE = 'expected {"sample_id", "spans": [...]} or {"sample_id", "steps": [...], "label"}'
_RECORD_FIELDS = {"sample_id", "spans", "steps", "label", "object"}
_SPAN_FIELDS = {"start", "end", "label", "object"}


def _no_unknown(obj: dict, allowed: set[str], what: str, where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise SaliencyLabError(f"{where}: unknown field {unknown[0]!r} in a {what}; allowed: "
                               f"{', '.join(sorted(allowed))} (fix the spelling or drop it)")


def _label(v: object, where: str) -> int:
    if isinstance(v, bool) or v not in (0, 1):
        raise SaliencyLabError(f"{where}: label must be 0 or 1, got {v!r}")
    return int(v)


def _int(v: object, what: str, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise SaliencyLabError(f"{where}: {what} must be an integer, got {v!r}")
    return v


def read_human_labels(path: str | Path, run: RunTokens) -> HumanLabels:
    """Validate a human labels JSONL file against the run's samples and tokens."""
    p = Path(path)
    out = HumanLabels()
    span_where: dict[str, list[tuple[int, int, str]]] = {}
    step_where: dict[str, dict[int, str]] = {}
    mention_ids: dict[str, int] = {}
    for lineno, obj in iter_jsonl(p, "labels", _SHAPE, flag="--file"):
        where = f"{p}:{lineno}"
        _no_unknown(obj, _RECORD_FIELDS, "label record", where)
        if "sample_id" not in obj or ("spans" in obj) == ("steps" in obj):
            raise SaliencyLabError(f"{where}: {_SHAPE}")
        sid = str(obj["sample_id"])
        sample = run.samples.get(sid)
        if sample is None:
            raise SaliencyLabError(f"{where}: sample_id {sid!r} is not an 'ok' sample of run {run.path}; "
                                   "fix the id or drop the line")
        out.n_records += 1
        if "spans" in obj:
            if not isinstance(obj["spans"], list):
                raise SaliencyLabError(f"{where}: 'spans' must be a list of {{start, end, label}}")
            n = len(sample.output_text)
            for sp in obj["spans"]:
                if not isinstance(sp, dict):
                    raise SaliencyLabError(f"{where}: each span must be an object {{start, end, label}}")
                _no_unknown(sp, _SPAN_FIELDS, "span", where)
                a = _int(sp.get("start"), "start", where)
                b = _int(sp.get("end"), "end", where)
                if not 0 <= a < b <= n:
                    raise SaliencyLabError(
                        f"{where}: span [{a}, {b}) is outside the output text of {sid!r} (length {n}) or "
                        "empty; offsets are [start, end) characters into output_text"
                    )
                for a2, b2, w2 in span_where.get(sid, []):
                    if a < b2 and a2 < b:
                        raise SaliencyLabError(f"{where}: span [{a}, {b}) of {sid!r} overlaps span "
                                               f"[{a2}, {b2}) from {w2}; make the spans disjoint")
                span_where.setdefault(sid, []).append((a, b, where))
                mid = mention_ids.get(sid, 0)
                mention_ids[sid] = mid + 1
                obj_name = sp.get("object")
                out.spans.setdefault(sid, []).append(
                    SpanLabel(a, b, _label(sp.get("label"), where), None if obj_name is None else str(obj_name), mid)
                )
        else:
            lab = _label(obj.get("label"), where)
            steps = obj["steps"]
            if not isinstance(steps, list) or not steps:
                raise SaliencyLabError(f"{where}: 'steps' must be a non-empty list of output step numbers")
            n_steps = len(sample.tokens)
            mid = mention_ids.get(sid, 0)
            mention_ids[sid] = mid + 1
            seen = step_where.setdefault(sid, {})
            for k, s in enumerate(sorted(_int(s, "step", where) for s in steps)):
                if not 0 <= s < n_steps:
                    raise SaliencyLabError(f"{where}: step {s} is out of range for {sid!r} "
                                           f"({n_steps} output tokens, steps 0..{n_steps - 1})")
                if s in seen:
                    raise SaliencyLabError(f"{where}: step {s} of {sid!r} is already labeled at {seen[s]}; "
                                           "label each step once")
                seen[s] = where
                out.steps.setdefault(sid, []).append(StepLabel(s, lab, None, mid, k))
    return out
