"""Peak memory of the single pass against output length, with and without `--max-pass-tokens`.

Model: Llama-shaped, random weights, built here (--layers 2, hidden 256, 8 heads, vocab 4000, word-level
tokenizer); input: 576 "image" tokens plus a short prompt (600 tokens, as in LLaVA-1.5), then T output
tokens, T = 128 ... 2,048 (teacher-forced random ids: the pass does not care how they were generated).
Each (T, bound) runs `single_pass` in its own fresh process, float32, 1 thread; peak = ru_maxrss minus the RSS
after the model and inputs were ready. The bounded pass is also checked against the unbounded one.

    python bench/bench_long.py              # T = 128, 256, 512, 1024, 2048 (a few minutes on CPU)
    python bench/bench_long.py --quick      # T = 64, 128
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from _wordlevel import save_word_llama

VOCAB, HIDDEN, HEADS, INTER, PROMPT = 4000, 256, 8, 512, 600


def build_model(out: Path, layers: int) -> None:
    """The bench's random Llama (bench/_wordlevel.py) with `layers` layers."""
    save_word_llama(out, vocab=VOCAB, hidden=HIDDEN, inter=INTER, layers=layers, heads=HEADS, max_positions=4096)


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(model_dir: str, n_out: int, bound: int | None) -> None:
    import random

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from saliency_lab.config import ManifestSample, ModelConfig
    from saliency_lab.models.registry import load_model
    from saliency_lab.saliency.single_pass import single_pass

    b = load_model(ModelConfig(model_dir, dtype="float32"))
    rnd = random.Random(0)
    text = " ".join(f"w{rnd.randrange(2, VOCAB)}" for _ in range(PROMPT))
    p = b.adapter.prepare(b, ManifestSample("long", text), max_new_tokens=n_out)
    out = [rnd.randrange(2, VOCAB) for _ in range(n_out)]
    base = _rss_now()
    res = single_pass(b, p, out, max_pass_tokens=bound)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "n_input": p.n_input,
                "peak_added_mb": (peak - base) / 2**20,
                "out_sum": np.asarray(res.sums["out_sum"], np.float64).tolist(),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--bound", type=int, default=256, help="--max-pass-tokens of the bounded pass")
    ap.add_argument("--worker", nargs=3, metavar=("MODEL", "N_OUT", "BOUND"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        model, n, bound = args.worker
        worker(model, int(n), None if bound == "none" else int(bound))
        return
    lengths = [64, 128] if args.quick else [128, 256, 512, 1024, 2048]
    bound = min(args.bound, 64) if args.quick else args.bound
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        build_model(model, args.layers)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        print(
            f"Llama {args.layers} layers, hidden {HIDDEN}, {HEADS} heads; {PROMPT} input tokens; float32, CPU"
        )
        print(
            f"| output tokens | peak MB, one pass | peak MB, --max-pass-tokens {bound} | ratio | max rel diff |"
        )
        print("|---|---|---|---|---|")
        for n in lengths:
            got = {}
            for b in ("none", str(bound)):
                cmd = [sys.executable, __file__, "--worker", str(model), str(n), b]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
                got[b] = json.loads(proc.stdout.strip().splitlines()[-1])
            a, c = np.asarray(got["none"]["out_sum"]), np.asarray(got[str(bound)]["out_sum"])
            diff = float(np.abs(a - c).max() / max(np.abs(a).max(), 1e-30))
            m1, m2 = got["none"]["peak_added_mb"], got[str(bound)]["peak_added_mb"]
            print(f"| {n} | {m1:.0f} | {m2:.0f} | {m2 / m1:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
