"""Synthetic run folders for the labels tests: real schema, real hive-partitioned Parquet, a run.json.

Each sample is given as its output token pieces; output_text is their concatenation and every piece's char span
is recorded, so a test knows exactly which steps a mention covers. An EOS row with an empty span is appended,
as the capture does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from saliency_lab.store.schema import SCHEMA_VERSION, table_from_columns


@dataclass
class FakeSample:
    sample_id: str
    pieces: list[str]
    image_id: str | None = None
    meta: dict | None = None
    status: str = "ok"
    shard: int = 0

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@dataclass
class FakeRun:
    path: Path
    samples: list[FakeSample] = field(default_factory=list)


def make_label_run(root: Path, samples: list[FakeSample], run_id: str = "r1",
                   schema_version: int = SCHEMA_VERSION) -> FakeRun:
    run = root / run_id
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"run_id": run_id, "schema_version": schema_version}))
    for shard in sorted({s.shard for s in samples}):
        group = [s for s in samples if s.shard == shard]
        srows = {k: [] for k in ("run_id", "sample_id", "image_id", "prompt", "output_text", "status", "meta",
                                 "n_output", "error")}
        trows = {k: [] for k in ("run_id", "sample_id", "step", "position", "token_id", "token_text",
                                 "char_start", "char_end", "logprob", "entropy")}
        for s in group:
            ok = s.status == "ok"
            srows["run_id"].append(run_id)
            srows["sample_id"].append(s.sample_id)
            srows["image_id"].append(s.image_id)
            srows["prompt"].append("Describe the image.")
            srows["output_text"].append(s.text if ok else None)
            srows["status"].append(s.status)
            srows["meta"].append(json.dumps(s.meta) if s.meta is not None else None)
            srows["n_output"].append(len(s.pieces) + 1 if ok else None)
            srows["error"].append(None if ok else "synthetic failure")
            if not ok:
                continue
            pos = 0
            for step, piece in enumerate([*s.pieces, ""]):
                trows["run_id"].append(run_id)
                trows["sample_id"].append(s.sample_id)
                trows["step"].append(step)
                trows["position"].append(10 + step)
                trows["token_id"].append(step)
                trows["token_text"].append(piece)
                trows["char_start"].append(pos)
                trows["char_end"].append(pos + len(piece))
                trows["logprob"].append(-1.0)
                trows["entropy"].append(1.0)
                pos += len(piece)
        for name, rows in (("samples", srows), ("tokens", trows)):
            d = run / name / f"shard={shard}"
            d.mkdir(parents=True)
            pq.write_table(table_from_columns(name, rows), d / "part-00000.parquet")
    return FakeRun(run, samples)


def steps_of(sample: FakeSample, substring: str, occurrence: int = 0) -> list[int]:
    """Steps whose piece overlaps the `occurrence`-th occurrence of `substring` in the sample's text."""
    text = sample.text
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(substring, start + 1)
    end = start + len(substring)
    out, pos = [], 0
    for step, piece in enumerate(sample.pieces):
        if piece and pos < end and pos + len(piece) > start:
            out.append(step)
        pos += len(piece)
    return out
