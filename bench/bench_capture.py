"""Capture cost, exactness and storage benchmark (docs/capture.md, "Cost").

Model: Llama-shaped, 4 layers, hidden 256, 8 heads, vocab 32000, random weights (~20.6M params), built in
this script with a word-level tokenizer (one token per word, no EOS so exactly --new tokens are generated).
Input: --prompt (600) prompt tokens, --new (100) output tokens, float32, --threads (2) torch threads.

Measured, each method in its own fresh subprocess (so peak RSS is per method):
  generate   plain greedy `model.generate` (sdpa, KV cache) of the same tokens
  capture    `capture_sample`: `decode` (greedy, our cached loop on sdpa) + one stop-gradient forward/backward
             + all reductions + tables
  reference  per-prefix reference (100 forward+backward passes), one repetition
Timing: generate and capture alternate --reps times in one process after a warm-up, so both see the same
machine load; the ratio is of the medians. Peak memory: each method once more in its own fresh process,
max resident set size (resource.getrusage ru_maxrss) minus the RSS after the model was loaded.

Storage: --samples (8) captures with different prompts written with saliency_lab.store.writer.ShardWriter
(the run's own writer); bytes of the samples+tokens+saliency part files / (output tokens x layers).

    .venv/bin/python bench/bench_capture.py            # full run (~1.5 min on 2 cores)
    .venv/bin/python bench/bench_capture.py --quick    # smaller shapes, a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VOCAB, HIDDEN, LAYERS, HEADS, INTER = 32000, 256, 4, 8, 1024


def build_model(out: Path, prompt_len: int, new: int) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<pad>": 1, **{f"w{i}": i for i in range(2, VOCAB)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
                      num_attention_heads=HEADS, num_key_value_heads=HEADS,
                      max_position_embeddings=max(2048, prompt_len + new + 8), pad_token_id=1, bos_token_id=None,
                      eos_token_id=None, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.eos_token_id = None
    model.save_pretrained(out)
    tok.save_pretrained(out)


def prompt(i: int, n: int) -> str:
    import random

    rnd = random.Random(i)
    return " ".join(f"w{rnd.randrange(2, VOCAB)}" for _ in range(n))


def worker(args: argparse.Namespace) -> None:
    """One method, `reps` timed repetitions, in this (fresh) process; prints a JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from saliency_lab.config import DecodingConfig, ManifestSample, ModelConfig, SaliencyConfig
    from saliency_lab.models.registry import load_model
    from saliency_lab.pipeline import capture_sample
    from saliency_lab.saliency.reference import reference_rows
    from saliency_lab.saliency.single_pass import single_pass

    bundle = load_model(ModelConfig(args.model_dir, dtype="float32"))
    dec = DecodingConfig(max_new_tokens=args.new)
    sample = ManifestSample("b0", prompt(0, args.prompt))
    prepared = bundle.adapter.prepare(bundle, sample, max_new_tokens=args.new)
    assert prepared.n_input == args.prompt, prepared.n_input
    from transformers import GenerationConfig

    gc = GenerationConfig(max_new_tokens=args.new, do_sample=False, num_beams=1, eos_token_id=None, pad_token_id=0)

    def generate_ids() -> list[int]:
        with torch.no_grad():
            return bundle.model.generate(prepared.input_ids, generation_config=gc)[0, prepared.n_input:].tolist()

    base_rss = _rss_now()
    times, extra = [], {}
    if args.worker == "timing":
        # generate and capture alternate, so both see the same machine load (shared CPUs are noisy).
        gen_t, cap_t = [], []
        generate_ids()  # warm-up (allocator, kernels), not timed
        for _ in range(args.reps):
            t0 = time.perf_counter()
            out = generate_ids()
            gen_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            res = capture_sample(bundle, sample, dec, SaliencyConfig(), "bench")
            cap_t.append(time.perf_counter() - t0)
            extra.setdefault("generate_in_capture", []).append(res.stats["generate_seconds"])
        extra.update(n_out=len(out), n_out_capture=res.tables["tokens"].num_rows, generate=gen_t, capture=cap_t)
        print(json.dumps(extra))
        return
    for _ in range(args.reps):
        t0 = time.perf_counter()
        if args.worker == "generate":
            out = generate_ids()
        elif args.worker == "capture":
            res = capture_sample(bundle, sample, dec, SaliencyConfig(), "bench")
        elif args.worker == "reference":
            out = generate_ids()
            t0 = time.perf_counter()  # time the reference itself, not the generation it needs
            ref = reference_rows(bundle, prepared, out, "sum_abs")
            fast = single_pass(bundle, prepared, out, keep_rows=True)
            o = prepared.n_input
            extra["max_abs_diff_vs_single_pass_float32"] = max(
                float((torch.stack([r[s, : o + s] for r in fast.rows]) - ref[s]).abs().max()) for s in range(len(ref)))
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"method": args.worker, "times": times, "median": statistics.median(times),
                      "peak_added_mb": (peak - base_rss) / 2**20, **extra}))


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_worker(method: str, args: argparse.Namespace, reps: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--model-dir", args.model_dir, "--prompt", str(args.prompt),
           "--new", str(args.new), "--threads", str(args.threads), "--reps", str(reps)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TRANSFORMERS_VERBOSITY="error")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def storage(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from saliency_lab.config import DecodingConfig, ManifestSample, ModelConfig, SaliencyConfig
    from saliency_lab.models.registry import load_model
    from saliency_lab.pipeline import capture_sample
    from saliency_lab.store.writer import ShardWriter

    bundle = load_model(ModelConfig(args.model_dir, dtype="float32"))
    run_dir = Path(args.model_dir).parent / "run"
    tables = ("samples", "tokens", "saliency")
    writer = ShardWriter(run_dir, 0, tables, samples_per_part=args.samples)
    n_tok = 0
    for i in range(args.samples):
        res = capture_sample(bundle, ManifestSample(f"s{i}", prompt(100 + i, args.prompt // 4)),
                             DecodingConfig(max_new_tokens=args.new), SaliencyConfig(), "bench")
        writer.add({k: res.tables[k] for k in tables})
        n_tok += res.tables["tokens"].num_rows
    writer.flush()
    sizes = {t: sum(p.stat().st_size for p in (run_dir / t).rglob("*.parquet")) for t in tables}
    total = sum(sizes.values())
    return {"bytes": sizes, "tokens": n_tok, "layers": LAYERS, "bytes_per_token_layer": total / (n_tok * LAYERS)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt", type=int, default=600)
    ap.add_argument("--new", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5, help="repetitions of generate/capture (reference: 1)")
    ap.add_argument("--samples", type=int, default=8, help="captures written for the storage figure")
    ap.add_argument("--quick", action="store_true", help="small shapes (200 + 20 tokens), 2 reps")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    if args.quick:
        args.prompt, args.new, args.reps, args.samples = 200, 20, 2, 2
    import torch

    with tempfile.TemporaryDirectory(prefix="bench_capture_") as tmp:
        args.model_dir = str(Path(tmp) / "model")
        build_model(Path(args.model_dir), args.prompt, args.new)
        print(f"model: Llama {LAYERS} layers, hidden {HIDDEN}, {HEADS} heads, vocab {VOCAB}, float32; "
              f"{args.prompt} prompt + {args.new} output tokens; {args.threads} threads; torch {torch.__version__}; "
              f"cpu count {os.cpu_count()}")
        tim = run_worker("timing", args, args.reps)
        gen_mem = run_worker("generate", args, 1)
        cap_mem = run_worker("capture", args, 1)
        ref = run_worker("reference", args, 1)
        med = statistics.median
        g, c = med(tim["generate"]), med(tim["capture"])
        ratios = [ci / gi for gi, ci in zip(tim["generate"], tim["capture"], strict=True)]
        single = med([ci - gi for ci, gi in zip(tim["capture"], tim["generate_in_capture"], strict=True)])
        fmt = lambda xs: ", ".join(f"{x:.3f}" for x in xs)  # noqa: E731
        print(f"generate  median {g:.3f} s  (runs {fmt(tim['generate'])})  n_out {tim['n_out']}")
        print(f"capture   median {c:.3f} s  (runs {fmt(tim['capture'])})  n_out {tim['n_out_capture']}")
        print(f"reference {ref['median']:.3f} s (1 run)  "
              f"max|single-pass - reference| (float32) {ref['max_abs_diff_vs_single_pass_float32']:.2e}")
        print(f"peak memory added (ru_maxrss - RSS after load, fresh process each): generate "
              f"{gen_mem['peak_added_mb']:.0f} MB, capture {cap_mem['peak_added_mb']:.0f} MB, "
              f"reference {ref['peak_added_mb']:.0f} MB")
        print(f"capture / generate            = {c / g:.2f}  (median of medians; per-pair ratios {fmt(ratios)})"
              "   (target <= 1.5)")
        print(f"saliency part of capture      ~ {single:.3f} s (capture minus its own generate, median)")
        print(f"reference / single-pass       = {ref['median'] / max(single, 1e-9):.1f}   (target >= 40)")
        print(f"reference / capture           = {ref['median'] / c:.1f}")
        st = storage(args)
        print(f"storage: {st['tokens']} tokens x {st['layers']} layers, bytes {st['bytes']} -> "
              f"{st['bytes_per_token_layer']:.1f} bytes per (token, layer)   (target <= 40; "
              "samples+tokens+saliency, written by store.writer.ShardWriter)")


if __name__ == "__main__":
    main()
