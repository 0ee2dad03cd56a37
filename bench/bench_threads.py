"""Capture wall time of the same small job at --threads 1, 2 and the default, measured in one run.

Model: Llama-shaped, random weights (4 layers, hidden 256, 8 heads, vocab 8000, word-level tokenizer, no EOS),
built here; job: --samples (4) samples of 300 prompt tokens, --new (48) new tokens each, float32 on CPU.
Each setting runs `saliency-lab capture` in a fresh process (OMP_NUM_THREADS unset, so the default is the
toolkit's own rule, see saliency_lab/threads.py); the settings alternate for --reps (3) rounds so they see the
same machine load, and the time is the capture's own (model load included, interpreter start excluded), the
median over rounds. Also printed: the machine's cores and load average, which decide what "fast" means.

    python bench/bench_threads.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _wordlevel import save_word_llama

VOCAB = 8000


def build(root: Path, samples: int, prompt_len: int) -> tuple[Path, Path]:
    import random

    save_word_llama(root / "model", vocab=VOCAB, hidden=256, inter=1024, layers=4, heads=8, max_positions=2048)
    rnd = random.Random(0)
    with open(root / "m.jsonl", "w") as fh:
        for i in range(samples):
            words = " ".join(f"w{rnd.randrange(2, VOCAB)}" for _ in range(prompt_len))
            fh.write(json.dumps({"sample_id": f"t{i}", "prompt": words}) + "\n")
    return root / "model", root / "m.jsonl"


def run_once(model: Path, manifest: Path, out: Path, threads: int | None, new: int, tag: str) -> float:
    cmd = [
        sys.executable,
        "-m",
        "saliency_lab",
        "capture",
        "--model",
        str(model),
        "--data",
        str(manifest),
        "--out",
        str(out),
        "--run-id",
        tag,
        "--max-new-tokens",
        str(new),
        "--quiet",
    ]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    m = re.search(r"samples in ([0-9.]+) s", proc.stdout)
    assert m, proc.stdout
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--prompt", type=int, default=300)
    ap.add_argument("--new", type=int, default=48)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    from saliency_lab.threads import available_cores, default_threads

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    default = default_threads(env)
    settings: dict[str, int | None] = {"1": 1, "2": 2, f"default ({default})": None}
    times: dict[str, list[float]] = {k: [] for k in settings}
    with tempfile.TemporaryDirectory() as tmp:
        model, manifest = build(Path(tmp), args.samples, args.prompt)
        for r in range(args.reps):
            for name, n in settings.items():
                tag = f"r{r}-{re.sub('[^0-9a-z]', '', name)}"
                times[name].append(run_once(model, manifest, Path(tmp) / "runs", n, args.new, tag))
    load = os.getloadavg()
    print(
        f"{available_cores()} cores available, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; "
        f"job: {args.samples} samples x ({args.prompt} prompt + {args.new} new) tokens, 4-layer Llama, float32"
    )
    base = statistics.median(times["1"])
    print("| --threads | median s | runs | x --threads 1 |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.2f} | {', '.join(f'{t:.2f}' for t in ts)} | {med / base:.2f} |")


if __name__ == "__main__":
    main()
