"""Query benchmark (docs/analysis.md, "Benchmark": the binned-curve query over 10 million (token, layer) rows in <= 2 s on
2 cores).

Generates a synthetic run with the real schema and the real writer's Parquet settings
(saliency_lab.store.writer.write_part_atomic: zstd level 3, dictionary ids, byte-stream-split floats,
parts of 16 samples like capture's default) into a temporary folder, then times the named queries through
the catalog with DuckDB limited to 2 threads and prints the median of several runs, plus the dataset's
bytes per (token, layer).

    .venv/bin/python bench/bench_queries.py                  # 10M rows: 3125 samples x 100 steps x 32 layers
    .venv/bin/python bench/bench_queries.py --rows 1000000   # quicker
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from saliency_lab.store.catalog import open_catalog
from saliency_lab.testing.synthetic import SyntheticSpec, make_run


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000, help="(token, layer) rows (default 10M)")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100, help="output tokens per sample")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", help="generate into this folder and keep it (default: a temporary folder)")
    ap.add_argument("--reuse", help="time an existing run folder instead of generating one")
    ap.add_argument("--exact", action="store_true", help="also time layer_profile with auroc_bins=0 (slow)")
    args = ap.parse_args(argv)

    n_samples = max(1, round(args.rows / (args.layers * args.steps)))
    spec = SyntheticSpec(n_samples=n_samples + 1, n_error=1, min_steps=args.steps, max_steps=args.steps,
                         n_layers=args.layers, samples_per_part=16, seed=0)
    tmp = None
    root = Path(args.keep) if args.keep else Path(tmp := tempfile.mkdtemp(prefix="bench_queries_"))
    try:
        t0 = time.perf_counter()
        run = Path(args.reuse) if args.reuse else make_run(root, "bench", spec)
        gen_s = time.perf_counter() - t0
        with open_catalog([run], threads=args.threads) as cat:
            n_rows = cat.sql("SELECT count(*) FROM saliency").fetchall()[0][0]
            n_labels = cat.sql("SELECT count(*) FROM labels").fetchall()[0][0]
            sal_bytes = folder_bytes(run / "saliency")
            all_bytes = folder_bytes(run)
            print(f"dataset: {n_rows:,} (token, layer) rows, {n_rows // args.layers:,} tokens, {args.layers} layers, "
                  f"{n_labels:,} labeled tokens; generated in {gen_s:.1f} s")
            print(f"  saliency table: {sal_bytes / 1e6:.1f} MB = {sal_bytes / n_rows:.2f} bytes per (token, layer)")
            print(f"  whole run (all tables + labels): {all_bytes / n_rows:.2f} bytes per (token, layer)")
            print(f"DuckDB threads={args.threads}, os.cpu_count()={os.cpu_count()}, load average "
                  f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; median of {args.repeat} runs")
            cases = [
                ("binned_curve", {"score": "out_mean"}),
                ("binned_curve", {"score": "prev", "layers": "8,16,24,31"}),
                ("layer_profile", {"score": "out_mean"}),
                ("layer_profile", {"score": "attn_out"}),
                ("label_means", {}),
                ("binned_curve", {"score": "out_mean", "normalization": "matrix"}),
            ]
            if args.exact:
                cases.append(("layer_profile", {"score": "out_mean", "auroc_bins": "0"}))
            for name, params in cases:
                cat.query(name, params)  # warm the file metadata cache once
                times, cpu = [], []
                for _ in range(args.repeat):
                    t, c = time.perf_counter(), time.process_time()
                    df = cat.query(name, params)
                    times.append(time.perf_counter() - t)
                    cpu.append(time.process_time() - c)
                shown = " ".join(f"{k}={v}" for k, v in params.items())
                print(f"  {name:<14} {shown:<36} median {statistics.median(times):.3f} s wall "
                      f"(min {min(times):.3f}, max {max(times):.3f}), {statistics.median(cpu):.3f} s CPU; "
                      f"{df.height} result rows")
            print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
                  "(other processes share these cores: wall times above include their interference)")
    finally:
        if tmp:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
