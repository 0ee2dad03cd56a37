"""Read what labeling needs from a run: its 'ok' samples and their output tokens' character spans."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds

from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.schema import check_schema_version


@dataclass
class TokenSpan:
    step: int
    start: int
    end: int
    text: str


@dataclass
class RunSample:
    sample_id: str
    image_id: str | None
    output_text: str
    meta: dict
    tokens: list[TokenSpan] = field(default_factory=list)


@dataclass
class RunData:
    path: Path
    run_id: str
    samples: dict[str, RunSample]  # sample_id -> sample, status 'ok' only
    n_error_samples: int


def _dataset(run: Path, table: str) -> ds.Dataset:
    folder = run / table
    if not folder.is_dir():
        raise SaliencyLabError(f"{run}: run has no {table}/ folder; is the capture finished?")
    return ds.dataset(str(folder), format="parquet", partitioning="hive")


def read_run(run_dir: str | Path) -> RunData:
    run = Path(run_dir)
    meta_path = run / "run.json"
    if not meta_path.is_file():
        raise SaliencyLabError(f"{run}: no run.json here; pass the run folder (the one holding run.json)")
    try:
        info = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SaliencyLabError(f"{meta_path}: not valid JSON ({exc.msg}); the run metadata is damaged") from None
    check_schema_version(info.get("schema_version"), str(run))
    cols = ["run_id", "sample_id", "image_id", "output_text", "status", "meta"]
    st = _dataset(run, "samples").to_table(columns=cols)
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
        samples[sid] = RunSample(sid, row["image_id"], row["output_text"] or "",
                                 meta if isinstance(meta, dict) else {})
    tt = _dataset(run, "tokens").to_table(columns=["sample_id", "step", "char_start", "char_end", "token_text"])
    by_sample: dict[str, list[TokenSpan]] = defaultdict(list)
    for sid, step, a, b, text in zip(*(tt[c].to_pylist() for c in tt.column_names), strict=True):
        if sid in samples:
            by_sample[sid].append(TokenSpan(step, a, b, text))
    for sid, toks in by_sample.items():
        toks.sort(key=lambda t: t.step)
        samples[sid].tokens = toks
    return RunData(run, run_id or str(info.get("run_id") or run.name), samples, n_err)
