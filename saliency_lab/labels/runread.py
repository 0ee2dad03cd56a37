"""Read what labeling needs from a run: its 'ok' samples and their output tokens' character spans.
The run itself (run.json, its part files) is opened by the store's one reader, `saliency_lab.store.runs`."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.runs import Run, open_run
from saliency_lab.store.schema import SCHEMAS


@dataclass
class TokenSpan:
    """One output token: its step and character span in the sample's output_text."""

    step: int
    start: int
    end: int
    text: str


@dataclass
class RunSample:
    """One 'ok' sample of a run with its output tokens in step order."""

    sample_id: str
    image_id: str | None
    output_text: str
    meta: dict[str, Any]
    tokens: list[TokenSpan] = field(default_factory=list)


@dataclass
class RunTokens:
    """What labeling reads from one run."""

    path: Path
    run_id: str
    samples: dict[str, RunSample]  # sample_id -> sample, status 'ok' only
    n_error_samples: int


def _table(run: Run, table: str, columns: list[str]) -> pa.Table:
    files = run.files(table)
    if not files:
        if table == "samples":
            raise SaliencyLabError(f"{run.location}: run has no samples yet; is the capture finished?")
        return SCHEMAS[table].empty_table().select(columns)  # every sample failed: no tokens to label
    return ds.dataset(files, format="parquet", filesystem=run.fs).to_table(columns=columns)


def read_run(run_dir: str | Path) -> RunTokens:
    """The 'ok' samples of the run at `run_dir` and their output tokens' character spans."""
    run_obj = open_run(run_dir)
    run = run_obj.path
    cols = ["run_id", "sample_id", "image_id", "output_text", "status", "meta"]
    st = _table(run_obj, "samples", cols)
    ok_mask = pc.equal(st["status"], "ok")
    n_err = len(st) - int(pc.sum(ok_mask).as_py() or 0)
    st = st.filter(ok_mask)
    samples: dict[str, RunSample] = {}
    run_id = ""  # the samples' own run_id, so label rows join on it; run.json's as a fallback
    for row in st.to_pylist():
        sid = row["sample_id"]
        run_id = run_id or row["run_id"] or ""
        try:
            meta = json.loads(row["meta"]) if row["meta"] else {}
        except json.JSONDecodeError:
            raise SaliencyLabError(f"{run}: sample {sid!r} has unreadable meta JSON; recapture it") from None
        samples[sid] = RunSample(
            sid, row["image_id"], row["output_text"] or "", meta if isinstance(meta, dict) else {}
        )
    tt = _table(run_obj, "tokens", ["sample_id", "step", "char_start", "char_end", "token_text"])
    by_sample: dict[str, list[TokenSpan]] = defaultdict(list)
    for sid, step, a, b, text in zip(*(tt[c].to_pylist() for c in tt.column_names), strict=True):
        if sid in samples:
            by_sample[sid].append(TokenSpan(step, a, b, text))
    for sid, toks in by_sample.items():
        toks.sort(key=lambda t: t.step)
        samples[sid].tokens = toks
    return RunTokens(run, run_id or run_obj.run_id, samples, n_err)
