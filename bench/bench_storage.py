"""Storage cost of a capture: bytes on disk per (output token, layer) of the summary tables.

Target (docs/capture.md, "Cost"): samples + tokens + saliency Parquet bytes / (output tokens x layers) <= 40.

A real capture on tiny random Llama models (hidden 64, vocab of the tiny tokenizer) with as many layers as
real LVLMs have (LLaVA-1.5-7B: 32, Qwen2-VL-7B: 28): per-token costs (the tokens table, the samples row) are
shared by all layers of a token, so the layer count decides the figure; fewer layers are shown too.

    .venv/bin/python bench/bench_storage.py                      # 20 samples x 100 tokens, 4/8/16/32 layers
    .venv/bin/python bench/bench_storage.py --layers 32 --samples 40
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def build_model(base: Path, n_layers: int, out: Path) -> Path:
    """The tiny Llama from build_tiny with `n_layers` layers (fresh random weights, same tokenizer)."""
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    cfg = AutoConfig.from_pretrained(base)
    cfg.num_hidden_layers = n_layers
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config = model.generation_config.from_pretrained(base)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for f in base.iterdir():
        if f.name.startswith(("tokenizer", "chat_template", "special_tokens")):
            shutil.copy(f, out / f.name)
    return out


def write_manifest(path: Path, n: int) -> Path:
    """Distinct prompts (identical prompts would give identical rows and flatter the compression)."""
    things = ["kitchen", "table", "dog", "beach", "bus", "rain", "man", "horse", "cat", "sofa", "clock", "tree"]
    with open(path, "w") as fh:
        for i in range(n):
            a, b, c = things[i % 12], things[(i * 5 + 3) % 12], things[(i * 7 + 1) % 12]
            fh.write(json.dumps({"sample_id": f"coco-{i:06d}", "image_id": str(100000 + i),
                                 "prompt": f"Image {i}: describe in detail the {a}, the {b} and the {c}.",
                                 "meta": {"split": "val", "i": i}}) + "\n")
    return path


def measure(run_dir: Path) -> dict:
    import duckdb

    sizes = {t: sum(p.stat().st_size for p in (run_dir / t).rglob("*.parquet")) for t in ("samples", "tokens",
                                                                                          "saliency")}
    n_tok, n_layers = duckdb.sql(
        f"SELECT sum(n_output), count(*) FROM read_parquet('{run_dir}/samples/*/*.parquet') WHERE status='ok'"
    ).fetchall()[0][0], json.loads((run_dir / "run.json").read_text())["model"]["n_layers"]
    n_sal = duckdb.sql(f"SELECT count(*) FROM read_parquet('{run_dir}/saliency/*/*.parquet')").fetchall()[0][0]
    assert n_sal == n_tok * n_layers
    cells = n_tok * n_layers
    return {"layers": n_layers, "tokens": int(n_tok), "cells": int(cells),
            **{f"{t}_B": s for t, s in sizes.items()},
            "bytes_per_token_layer": sum(sizes.values()) / cells,
            "saliency_only": sizes["saliency"] / cells}


def worst_case_saliency_bytes(run_dir: Path, out: Path) -> int:
    """Bytes of the saliency table if every float were full-entropy (log-normal over ~6 decades, no zeros):
    an upper bound for real models, whose sums (e.g. img_sum of a text-only model) compress better."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from saliency_lab.store.writer import write_part_atomic

    rng = np.random.default_rng(0)
    total = 0
    for i, part in enumerate(sorted((run_dir / "saliency").rglob("part-*.parquet"))):
        t = pq.read_table(part)
        for name in ("sys_sum", "img_sum", "prompt_sum", "out_sum", "prev", "row_l2", "attn_out_sum"):
            col = t.column(name)
            vals = np.exp(rng.normal(-3.0, 2.0, len(col))).astype(np.float32)
            arr = pa.array(vals, type=pa.float32(), mask=col.is_null().to_numpy(zero_copy_only=False))
            t = t.set_column(t.schema.get_field_index(name), t.schema.field(name), arr)
        dest = out / f"part-{i:05d}.parquet"
        write_part_atomic(t, dest)
        total += dest.stat().st_size
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="4,8,16,32", help="comma-separated layer counts")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=100, help="max new tokens per sample")
    ap.add_argument("--samples-per-part", type=int, default=16)
    ap.add_argument("--keep", help="keep the runs under this folder")
    args = ap.parse_args()

    from saliency_lab.config import CaptureConfig, ModelConfig
    from saliency_lab.models.tiny import build_tiny
    from saliency_lab.run import capture

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-storage-"))
    base = build_tiny("llama", work / "base")
    manifest = write_manifest(work / "manifest.jsonl", args.samples)
    print(f"{args.samples} samples, max {args.tokens} new tokens, {args.samples_per_part} samples per part")
    print(f"{'layers':>6} {'tokens':>6} {'samples B':>10} {'tokens B':>9} {'saliency B':>11} "
          f"{'B/(token,layer)':>16} {'saliency only':>14} {'worst case':>11} {'capture s':>9}")
    results = []
    for n_layers in [int(x) for x in args.layers.split(",")]:
        model = build_model(base, n_layers, work / f"llama-{n_layers}L")
        cfg = CaptureConfig(model=ModelConfig(str(model)), data=str(manifest), out=str(work / "runs"),
                            run_id=f"L{n_layers}", samples_per_part=args.samples_per_part, quiet=True)
        cfg.decoding.max_new_tokens = args.tokens
        t0 = time.perf_counter()
        res = capture(cfg)
        r = measure(res.run_dir)
        r["seconds"] = time.perf_counter() - t0
        worst = worst_case_saliency_bytes(res.run_dir, work / f"worst-L{n_layers}")
        r["worst_case"] = (r["samples_B"] + r["tokens_B"] + worst) / r["cells"]
        results.append(r)
        print(f"{r['layers']:>6} {r['tokens']:>6} {r['samples_B']:>10} {r['tokens_B']:>9} {r['saliency_B']:>11} "
              f"{r['bytes_per_token_layer']:>16.2f} {r['saliency_only']:>14.2f} {r['worst_case']:>11.2f} "
              f"{r['seconds']:>9.1f}")
    print("B/(token,layer) = samples+tokens+saliency bytes / (output tokens x layers); worst case: same with "
          "full-entropy saliency floats")
    print("target: <= 40 bytes per (token, layer) of samples+tokens+saliency")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
