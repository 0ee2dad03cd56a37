"""Join character-span labels onto output tokens, and write a labelset atomically.

Every token whose [char_start, char_end) overlaps a labeled span gets that span's label; `subtoken` counts the
tokens of one span in step order (0 = first). Tokens with an empty span (EOS and other special tokens) never
overlap anything. A token overlapping two spans (a BPE piece across two mentions) gets one row: the
hallucinated span wins, then the earlier span, so (sample_id, step) stays unique in a labelset.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from saliency_lab.errors import SaliencyLabError, os_error
from saliency_lab.labels.runread import TokenSpan
from saliency_lab.store.integrity import file_sha256
from saliency_lab.store.schema import table_from_columns

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class SpanLabel:
    """A labelled character span [start, end) of a sample's output text."""

    start: int
    end: int
    label: int  # 1 hallucinated, 0 correct
    object: str | None
    mention_id: int


@dataclass(frozen=True)
class StepLabel:
    """The label of one output step (token); `subtoken` is its index inside the labelled word."""

    step: int
    label: int
    object: str | None
    mention_id: int
    subtoken: int


def join_spans(tokens: Sequence[TokenSpan], spans: Iterable[SpanLabel]) -> list[StepLabel]:
    """Token-level labels for one sample (sorted by step)."""
    best: dict[int, SpanLabel] = {}
    for sp in spans:
        for t in tokens:
            if t.end > t.start and t.start < sp.end and t.end > sp.start:
                cur = best.get(t.step)
                if cur is None or (sp.label > cur.label):
                    best[t.step] = sp
    counters: dict[int, int] = {}
    out = []
    for step in sorted(best):
        sp = best[step]
        k = counters.get(sp.mention_id, 0)
        counters[sp.mention_id] = k + 1
        out.append(StepLabel(step, sp.label, sp.object, sp.mention_id, k))
    return out


class LabelRows:
    """Accumulates rows of the LABELS schema."""

    def __init__(self, run_id: str, source: str):
        self.run_id = run_id
        self.source = source
        self.cols: dict[str, list] = {k: [] for k in
                                      ("sample_id", "step", "label", "object", "mention_id", "subtoken")}

    def add(self, sample_id: str, labels: Iterable[StepLabel]) -> int:
        """Append the step labels of one sample; how many were added."""
        n = 0
        for lab in labels:
            self.cols["sample_id"].append(sample_id)
            self.cols["step"].append(lab.step)
            self.cols["label"].append(lab.label)
            self.cols["object"].append(lab.object)
            self.cols["mention_id"].append(lab.mention_id)
            self.cols["subtoken"].append(lab.subtoken)
            n += 1
        return n

    def __len__(self) -> int:
        return len(self.cols["step"])

    def table(self):
        """The rows collected so far as an Arrow table of the labels schema."""
        n = len(self)
        return table_from_columns("labels", {"run_id": [self.run_id] * n, **self.cols,
                                             "source": [self.source] * n})


def check_labelset_name(name: str) -> str:
    """`name` when usable as a file name; SaliencyLabError otherwise."""
    if not _NAME.match(name or ""):
        raise SaliencyLabError(
            f"labelset name {name!r} is not usable as a file name; use letters, digits, '_', '-', '.'"
        )
    return name


def write_labelset(run_dir: str | Path, name: str, rows: LabelRows, info: dict) -> tuple[Path, Path]:
    """Write <run>/labels/<name>.parquet and <name>.json as one unit.

    Both are written to temporary files first. The JSON records the sha256 of the Parquet bytes
    (`labels_sha256`) and is renamed into place first: a process killed between the two renames leaves a
    pair whose hash does not match, which every reader refuses (store.catalog) instead of pairing new labels
    with old metrics. A failed write (read-only run, disk full) leaves the previous pair untouched.
    """
    check_labelset_name(name)
    folder = Path(run_dir) / "labels"
    pq_path, js_path = folder / f"{name}.parquet", folder / f"{name}.json"
    tmp_pq = folder / f".{name}.parquet.tmp-{os.getpid()}"
    tmp_js = folder / f".{name}.json.tmp-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(rows.table(), tmp_pq)
        info = {**info, "labels_sha256": file_sha256(tmp_pq.read_bytes())}
        tmp_js.write_text(json.dumps(info, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
        os.replace(tmp_js, js_path)
        os.replace(tmp_pq, pq_path)
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(folder)
        raise os_error(exc, f"cannot write label set {name!r} (the labels already there are kept)") from None
    finally:
        for t in (tmp_pq, tmp_js):
            try:
                t.unlink(missing_ok=True)
            except OSError:
                pass  # a read-only folder: nothing was written there either
    return pq_path, js_path
