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


def add_images(run_dir: Path, n_patches: int = 16, size: int = 48, seed: int = 0) -> None:
    """Give every sample a small PNG (coloured blocks) and an image segment of `n_patches` key positions:
    the samples table is rewritten with image_path, seg_image = [5, 5 + n_patches], the prompt after it and
    n_input to match (call before add_rows(..., "all"))."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = run_dir.parent / f"{run_dir.name}-images"
    folder.mkdir(parents=True, exist_ok=True)
    parts = sorted((run_dir / "samples").glob("shard=*/part-*.parquet"))
    for part in parts:
        df = pl.read_parquet(part)
        paths = []
        for sid in df["sample_id"].to_list():
            img = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8).repeat(size // 4, 0).repeat(size // 4, 1)
            path = folder / f"{sid}.png"
            Image.fromarray(img).save(path)
            paths.append(str(path))
        n_in = 5 + n_patches + 5
        df = df.with_columns(pl.Series("image_path", paths),
                             pl.when(pl.col("status") == "ok").then(n_in).otherwise(None).cast(pl.Int32)
                             .alias("n_input"),
                             pl.lit([5, 5 + n_patches]).alias("seg_image"),
                             pl.lit([5 + n_patches, n_in]).alias("seg_prompt"))
        table = table_from_columns("samples", {c: df[c].to_list() for c in df.columns})
        write_part_atomic(table, part)


def add_rows(run_dir: Path, keys: str = "output", seed: int = 0) -> None:
    sal = pl.read_parquet(run_dir / "saliency" / "**" / "*.parquet")
    samples = pl.read_parquet(run_dir / "samples" / "**" / "*.parquet")
    n_input = dict(samples.select("sample_id", "n_input").iter_rows())
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("run_id", "sample_id", "step", "layer", "keys", "values")}
    for sid, step, layer, out_sum in sal.select("sample_id", "step", "layer", "out_sum").iter_rows():
        if step < 1 and keys != "all":  # step 0 has no earlier output; with `all` its row still covers the input
            continue
        w = np.exp(-np.arange(step)[::-1] / 3.0)
        vals = (float(out_sum) * w / w.sum()).tolist() if step else []
        if keys == "all":
            vals = rng.uniform(0.0, 0.02, int(n_input[sid])).tolist() + vals
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
                  images: int = 0, **spec_kw) -> Path:
    """A synthetic run; `images` > 0 adds a PNG per sample with that many image patches."""
    spec = SyntheticSpec(**{"n_samples": 16, "max_steps": 16, **spec_kw})
    run = make_run(root, run_id, spec)
    if images:
        add_images(run, images)
    if rows:
        add_rows(run, rows)
    if not labels:
        for p in (run / "labels").glob("*"):
            p.unlink()
    return run


def as_intervention(run_dir: Path, strategy: str, top_k: int = 0, locore_beta: float = 0.0, seed: int = 0) -> None:
    """Turn a synthetic run into a decoding variant: run.json's decoding block, and for SGRS a decisions
    table (per step 1-3 draws, the last accepted unless it is a fallback) drawn from `seed`."""
    meta = json.loads((run_dir / "run.json").read_text())
    dec = {"max_new_tokens": 32, "strategy": strategy, "seed": 0, "temperature": 1.0, "top_k": top_k,
           "sgrs": {"alpha": 0.6, "window": 5, "k": 5, "max_resample": 3, "layers": None},
           "locore": {"beta": locore_beta, "window": 5, "mode": "post_softmax"}}
    meta["decoding"] = dec
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2))
    if strategy != "sgrs":
        return
    rng = np.random.default_rng(seed)
    toks = pl.read_parquet(run_dir / "tokens" / "**" / "*.parquet").sort("sample_id", "step")
    cols: dict[str, list] = {k: [] for k in ("run_id", "sample_id", "step", "draw", "rank", "token_id", "prob",
                                             "score", "tau", "accepted", "fallback")}
    for sid, step in toks.select("sample_id", "step").iter_rows():
        n = int(rng.choice([1, 1, 1, 2, 3]))
        fallback = n == 3 and rng.random() < 0.5
        for d in range(n):
            last = d == n - 1
            for k, v in (("run_id", run_dir.name), ("sample_id", sid), ("step", int(step)), ("draw", d),
                         ("rank", d), ("token_id", d), ("prob", 0.5), ("score", 0.1), ("tau", 0.05),
                         ("accepted", last and not fallback), ("fallback", last and fallback)):
                cols[k].append(v)
    write_part_atomic(table_from_columns("decisions", cols), run_dir / "decisions" / "shard=0" / part_name(0))
