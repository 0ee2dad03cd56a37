"""Batched capture on the demo model: what issue 14's "Done when" asks for (docs/capture.md, "Batches").

Model: the shipped scene-world LLaVA (datasets/shapes/model, float32, as `saliency-lab demo` loads it).
Data: --n (48) held-out scenes written the way the demo writes them (saliency_lab.world.dataset.build_world_set,
seed 7, 60% with an anchor whose usual partner is absent), one caption prompt per image.
Settings: the demo's greedy capture (max_new_tokens 32, --candidates 5, --rows output), --threads (1).

Measured in ONE process, so every method sees the same machine load, alternating within each of --reps (3)
repetitions after a warm-up; figures are medians:
  capture   `saliency_lab.run.capture` of the whole manifest with --batch-size 1 and --batch-size --batch (16):
            decoding, the saliency pass, every table and the Parquet parts (a fresh run id each time, --quiet);
  generate  transformers' greedy `model.generate` (sdpa, KV cache) of the same prompts at the same batch size:
            the processor's batched inputs (left padding, attention mask), image loading included as capture
            includes it.
Printed: a table of batch size, capture s, generate s, capture / generate and tokens/s; capture(16) / capture(1)
against the issue's target (<= 0.4) and capture / generate at each size against its target (<= 1.5); one capture
(one repetition) at each --curve size (4, 32) so the curve shows; and whether the greedy tokens agree (capture at
batch 1 vs batch 16, generate vs capture).

    python bench/bench_batch.py            # the issue's run (48 captions, 3 reps; about 1.5 min on 2 cores)
    python bench/bench_batch.py --quick    # 8 captions, 1 rep (the smoke test)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _generate import greedy_config, until_eos

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "datasets" / "shapes" / "model"
MAX_NEW = 32  # SceneWorld.answer_length: the demo's caption length
TARGET_SPEEDUP, TARGET_OVERHEAD = 0.4, 1.5


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="captions (default 48; 8 with --quick)")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions (default 3; 1 with --quick)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (saliency_lab.threads)")
    ap.add_argument("--batch", type=int, default=16, help="the batch size compared with batch 1")
    ap.add_argument("--curve", default="4,32", help="more batch sizes, one capture each ('' for none)")
    ap.add_argument("--quick", action="store_true", help="8 captions, 1 repetition")
    ap.add_argument("--model", default=str(MODEL))
    args = ap.parse_args()
    args.n = args.n or (8 if args.quick else 48)
    args.reps = args.reps or (1 if args.quick else 3)
    return args


class Bench:
    """The loaded model, the manifest and a counter of fresh run ids, under one temporary folder."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        from saliency_lab.config import ModelConfig
        from saliency_lab.manifest import load_manifest
        from saliency_lab.models.registry import load_model
        from saliency_lab.threads import configure_threads
        from saliency_lab.world.dataset import build_world_set

        configure_threads(args.threads)
        self.args, self.tmp, self.runs = args, tmp, 0
        ws = build_world_set(tmp / "data", n=args.n, seed=7, partner_absent_share=0.6, pope_images=0)
        self.manifest = Path(ws.caption_manifest)
        self.samples = load_manifest(self.manifest).samples
        self.model_cfg = ModelConfig(args.model, dtype="float32")
        self.bundle = load_model(self.model_cfg)
        self.bundle.processor.tokenizer.padding_side = "left"
        self.gen_cfg = greedy_config(self.bundle, MAX_NEW)
        self.eos = self.bundle.adapter.eos_token_ids(self.bundle)

    def capture(self, batch: int, samples: int | None = None) -> tuple[float, dict[str, list[int]]]:
        """Wall time of `saliency_lab.run.capture` at `batch` (a fresh run) and each sample's output ids."""
        from saliency_lab.config import BatchConfig, CaptureConfig, DecodingConfig, SaliencyConfig
        from saliency_lab.run import capture

        self.runs += 1
        data = self.manifest
        if samples is not None:  # warm-up: a shorter manifest
            data = self.tmp / "warm.jsonl"
            data.write_text("".join(self.manifest.read_text().splitlines(keepends=True)[:samples]))
        cfg = CaptureConfig(
            model=self.model_cfg,
            data=str(data),
            out=str(self.tmp / "runs"),
            run_id=f"b{batch}-{self.runs}",
            decoding=DecodingConfig(max_new_tokens=MAX_NEW),
            saliency=SaliencyConfig(candidates=5, rows="output"),
            quiet=True,
            threads=self.args.threads,
            batch=BatchConfig(size=batch),
        )
        t0 = time.perf_counter()
        res = capture(cfg, load_fn=lambda _: self.bundle)
        seconds = time.perf_counter() - t0
        if res.error:
            raise SystemExit(f"bench_batch: {res.error} samples failed at batch {batch}: {res.error_classes}")
        return seconds, output_ids(res.run_dir)

    def generate(self, batch: int) -> tuple[float, dict[str, list[int]]]:
        """Wall time of plain greedy `generate` over every sample, `batch` at a time, and each one's output ids."""
        import torch

        from saliency_lab.models.base import add_special_tokens
        from saliency_lab.models.vision import load_image

        b, proc = self.bundle, self.bundle.processor
        out: dict[str, list[int]] = {}
        t0 = time.perf_counter()
        for start in range(0, len(self.samples), batch):
            chunk = self.samples[start : start + batch]
            texts = [b.adapter.render(b, s, True)[0] for s in chunk]
            inputs = proc(
                images=[load_image(s) for s in chunk],
                text=texts,
                padding=True,
                return_tensors="pt",
                add_special_tokens=add_special_tokens(b.tokenizer, texts[0]),
            )
            with torch.no_grad():
                ids = b.model.generate(**inputs, generation_config=self.gen_cfg)
            n_in = inputs["input_ids"].shape[1]
            for s, row in zip(chunk, ids, strict=True):
                out[s.sample_id] = until_eos(row[n_in:].tolist(), self.eos)
        return time.perf_counter() - t0, out


def output_ids(run_dir: Path) -> dict[str, list[int]]:
    """Each sample's output token ids, in step order, from the run's tokens table."""
    import pyarrow.dataset as ds

    table = ds.dataset(run_dir / "tokens", format="parquet").to_table(
        columns=["sample_id", "step", "token_id"]
    )
    rows = sorted(zip(*(table.column(c).to_pylist() for c in ("sample_id", "step", "token_id")), strict=True))
    out: dict[str, list[int]] = {}
    for sid, _, tok in rows:
        out.setdefault(sid, []).append(tok)
    return out


def same(a: dict[str, list[int]], b: dict[str, list[int]]) -> str:
    """'k/n' samples whose output ids agree."""
    return f"{sum(a.get(k) == v for k, v in b.items())}/{len(b)}"


def _shown(model: str) -> str:
    path = Path(model).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main() -> int:
    args = parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    sizes = (1, args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args, Path(tmp))
        bench.capture(1, samples=2)  # warm-up: kernels, allocator, lazy imports
        bench.generate(args.batch)
        cap: dict[int, list[float]] = {b: [] for b in sizes}
        gen: dict[int, list[float]] = {b: [] for b in sizes}
        toks: dict[str, dict[str, list[int]]] = {}
        for rep in range(args.reps):
            # Alternate the order too, so neither method always runs right after the other.
            for b in sizes if rep % 2 == 0 else sizes[::-1]:
                seconds, toks[f"capture {b}"] = bench.capture(b)
                cap[b].append(seconds)
                seconds, toks[f"generate {b}"] = bench.generate(b)
                gen[b].append(seconds)
        curve = {b: bench.capture(b)[0] for b in (int(x) for x in args.curve.split(",") if x.strip())}

    n_cap = sum(len(v) for v in toks["capture 1"].values())
    n_gen = {b: sum(len(v) for v in toks[f"generate {b}"].values()) for b in sizes}
    med = {b: (statistics.median(cap[b]), statistics.median(gen[b])) for b in sizes}
    print(
        f"bench_batch: {args.n} captions on {_shown(args.model)} (the demo's LLaVA, float32), max_new_tokens "
        f"{MAX_NEW}, --candidates 5 --rows output, {args.threads} thread(s), median of {args.reps} rep(s)"
    )
    print(
        f"output tokens: capture {n_cap}, generate {n_gen[1]} (batch 1) / {n_gen[args.batch]} (batch {args.batch})"
    )
    print("| batch | capture s | generate s | capture / generate | capture tokens/s | generate tokens/s |")
    print("|---|---|---|---|---|---|")
    for b in sizes:
        c, g = med[b]
        print(f"| {b} | {c:.3f} | {g:.3f} | {c / g:.2f} | {n_cap / c:.0f} | {n_gen[b] / g:.0f} |")
    speedup = med[args.batch][0] / med[1][0]
    print(
        f"capture batch {args.batch} / batch 1: {speedup:.2f}x (target <= {TARGET_SPEEDUP}): "
        f"{'PASS' if speedup <= TARGET_SPEEDUP else 'MISS'}"
    )
    for b in sizes:
        ratio = med[b][0] / med[b][1]
        print(
            f"capture / generate at batch {b}: {ratio:.2f}x (target <= {TARGET_OVERHEAD}): "
            f"{'PASS' if ratio <= TARGET_OVERHEAD else 'MISS'}"
        )
    for b, c in curve.items():
        print(
            f"capture at batch {b}: {c:.2f} s ({c / med[1][0]:.2f}x batch 1, {n_cap / c:.0f} tokens/s; one run)"
        )
    print(
        f"greedy tokens identical: capture batch {args.batch} vs batch 1 "
        f"{same(toks['capture 1'], toks[f'capture {args.batch}'])}, generate vs capture at batch 1 "
        f"{same(toks['capture 1'], toks['generate 1'])}, at batch {args.batch} "
        f"{same(toks[f'capture {args.batch}'], toks[f'generate {args.batch}'])}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
