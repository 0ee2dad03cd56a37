"""Runs for the report tests: H4's synthetic runs (real schema and writer) plus a `rows` table, which the
synthetic generator does not write. Each row sums to the token's out_sum so maps agree with the summaries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from saliency_lab.store.schema import table_from_columns
from saliency_lab.store.writer import part_name, write_part_atomic
from saliency_lab.testing.synthetic import SyntheticSpec, make_run


def add_rows(run_dir: Path, keys: str = "output") -> None:
    sal = pl.read_parquet(run_dir / "saliency" / "**" / "*.parquet")
    samples = pl.read_parquet(run_dir / "samples" / "**" / "*.parquet")
    n_input = dict(samples.select("sample_id", "n_input").iter_rows())
    cols: dict[str, list] = {k: [] for k in ("run_id", "sample_id", "step", "layer", "keys", "values")}
    for sid, step, layer, out_sum in sal.select("sample_id", "step", "layer", "out_sum").iter_rows():
        if step < 1:
            continue
        w = np.exp(-np.arange(step)[::-1] / 3.0)
        vals = (float(out_sum) * w / w.sum()).tolist()
        if keys == "all":
            vals = [0.01] * int(n_input[sid]) + vals
        cols["run_id"].append(run_dir.name)
        cols["sample_id"].append(sid)
        cols["step"].append(int(step))
        cols["layer"].append(int(layer))
        cols["keys"].append(keys)
        cols["values"].append(vals)
    table = table_from_columns("rows", cols)
    write_part_atomic(table, run_dir / "rows" / "shard=0" / part_name(0))
    meta = json.loads((run_dir / "run.json").read_text())
    meta["saliency"]["rows"] = keys
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2))


def synthetic_run(root: Path, run_id: str = "synth", rows: str | None = "output", labels: bool = True,
                  **spec_kw) -> Path:
    spec = SyntheticSpec(**{"n_samples": 16, "max_steps": 16, **spec_kw})
    run = make_run(root, run_id, spec)
    if rows:
        add_rows(run, rows)
    if not labels:
        for p in (run / "labels").glob("*"):
            p.unlink()
    return run
