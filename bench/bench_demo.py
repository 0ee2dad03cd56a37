"""The demo's cost and the shipped model's size: what issue 5 asks the closing note to quote.

Runs `saliency-lab demo` (the full default run, or --quick) in a child process on a fresh output folder and
reports its wall time and peak RSS, the shipped checkpoint's parameter count and bytes on disk, the recorded
training time and held-out metrics (datasets/shapes/metrics.json, written by the training script), and the
demo's own findings (demo_summary.json).

    .venv/bin/python bench/bench_demo.py            # the default demo (60 images)
    .venv/bin/python bench/bench_demo.py --quick    # the 8-image smoke run
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "datasets" / "shapes" / "model"


def model_size() -> dict:
    from safetensors import safe_open

    with safe_open(str(MODEL / "model.safetensors"), "pt") as fh:
        n = sum(_prod(fh.get_slice(key).get_shape()) for key in fh.keys())
    return {"n_params": n, "model_bytes": sum(p.stat().st_size for p in MODEL.iterdir() if p.is_file())}


def _prod(shape) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        cli = "import sys; from saliency_lab.cli import main; sys.exit(main(sys.argv[1:]))"
        cmd = [sys.executable, "-c", cli, "demo", "--out", str(out)] + (["--quick"] if args.quick else [])
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports KiB
        summary = json.loads((out / "demo_summary.json").read_text())
    metrics = json.loads((ROOT / "datasets" / "shapes" / "metrics.json").read_text())
    size = model_size()
    print(f"demo{' --quick' if args.quick else ''}: {wall:.1f} s wall, peak RSS {peak_mb:.0f} MB (child process)")
    print(f"model: {size['n_params']:,} parameters, {size['model_bytes'] / 2**20:.1f} MiB on disk")
    print(f"training (recorded in metrics.json): {metrics['train_seconds']:.0f} s, recipe {metrics['recipe']}")
    c, p = metrics["chair"], metrics["pope"]
    print(f"held-out ({metrics['n_scenes']} scenes): CHAIR_s {c['chair_s']:.3f}  CHAIR_i {c['chair_i']:.3f}  "
          f"recall {c['recall']:.3f}; POPE acc " + "  ".join(f"{s} {m['accuracy']:.3f}" for s, m in p.items()))
    for name, run in summary.get("runs", {}).items():
        if run.get("chair"):
            print(f"  demo {name:>7}: CHAIR_s {run['chair']['chair_s']:.3f}  CHAIR_i {run['chair']['chair_i']:.3f}")
    sal = summary.get("saliency") or {}
    if sal.get("auroc") is not None:
        print(f"  saliency: hallucinated {sal['mean_halluc']:.3f} (n={sal['n_halluc']}) vs correct "
              f"{sal['mean_correct']:.3f} (n={sal['n_correct']}), AUROC (low flags hallucination) {sal['auroc']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
