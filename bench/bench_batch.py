"""Batched capture on the demo model: what issue 14's "Done when" asks for (docs/capture.md, "Batches").

Model: the shipped scene-world LLaVA (datasets/shapes/model, float32, as `saliency-lab demo` loads it).
Data: --n (48) held-out scenes written the way the demo writes them (saliency_lab.world.dataset.build_world_set,
seed 7, 60% with an anchor whose usual partner is absent), one caption prompt per image.
Settings: the demo's decoding (greedy, max_new_tokens 32), the capture's saliency defaults, --threads (1).

Measured in ONE process, so every method sees the same machine load, alternating within each of --reps (3)
repetitions after a warm-up; figures are medians:
  capture   `saliency_lab.run.capture` of the whole manifest with --batch-size 1 and --batch-size --batch (16):
            decoding, the saliency pass, every table and the Parquet parts (a fresh run id each time, --quiet);
  generate  transformers' greedy `model.generate` (sdpa, KV cache) of the same prompts at the same batch size:
            the processor's batched inputs (left padding, attention mask), image loading included as capture
            includes it;
  extras    the capture again with what the demo's greedy run adds: --candidates 5 --rows output.
Printed: a table of batch size, capture s, generate s, capture / generate, tokens/s and the most rows one model
forward carried (capture redoes a failing batch sample by sample, so this shows the batch really ran);
capture(16) / capture(1) against the issue's target (<= 0.4) and capture / generate at each size against its
target (<= 1.5); the extras' ratio; one capture (one repetition) at each --curve size (4, 32) so the curve
shows; where one capture's time goes (cProfile, by stage); whether the greedy tokens agree (capture at batch 1
vs batch 16, generate vs capture).

    python bench/bench_batch.py            # the issue's run (48 captions, 3 reps; about 1.5 min on 2 cores)
    python bench/bench_batch.py --quick    # 8 captions, 1 rep (the smoke test)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _batching import greedy_config, until_eos, widest_forward

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


@dataclass
class Captured:
    """One timed capture: wall seconds, each sample's output ids, the most rows one model forward carried."""

    seconds: float
    ids: dict[str, list[int]]
    widest: int


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

    def capture(self, batch: int, samples: int | None = None, extras: bool = False) -> Captured:
        """`saliency_lab.run.capture` at `batch` (a fresh run) with the capture defaults, or with `extras` what the
        demo's greedy run adds (--candidates 5 --rows output)."""
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
            saliency=SaliencyConfig(candidates=5, rows="output") if extras else SaliencyConfig(),
            quiet=True,
            threads=self.args.threads,
            batch=BatchConfig(size=batch),
        )
        with widest_forward(self.bundle.model) as widest:
            t0 = time.perf_counter()
            res = capture(cfg, load_fn=lambda _: self.bundle)
            seconds = time.perf_counter() - t0
        if res.error:
            raise SystemExit(f"bench_batch: {res.error} samples failed at batch {batch}: {res.error_classes}")
        return Captured(seconds, output_ids(res.run_dir), widest[0])

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


@dataclass
class Timings:
    """Every timed run of `measure`, by batch size."""

    cap: dict[int, list[float]] = field(default_factory=dict)
    gen: dict[int, list[float]] = field(default_factory=dict)
    extras: dict[int, list[float]] = field(default_factory=dict)  # capture with --candidates 5 --rows output
    ids: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    widest: dict[int, int] = field(default_factory=dict)
    curve: dict[int, float] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)

    def median(self, which: str, batch: int) -> float:
        """Median seconds of `which` ('cap', 'gen' or 'extras') at `batch`."""
        return statistics.median(getattr(self, which)[batch])


def measure(bench: Bench, sizes: tuple[int, ...], reps: int, curve: list[int]) -> Timings:
    """The repetitions (capture, generate and the capture with the demo's extras, alternating), the curve and one
    profiled capture (with the extras, so every stage shows) at the largest of `sizes`."""
    t = Timings()
    bench.capture(1, samples=2)  # warm-up: kernels, allocator, lazy imports
    bench.generate(sizes[-1])
    for rep in range(reps):
        # Alternate the order too, so neither batch size always runs first.
        for b in sizes if rep % 2 == 0 else sizes[::-1]:
            run = bench.capture(b)
            t.cap.setdefault(b, []).append(run.seconds)
            t.ids[f"capture {b}"], t.widest[b] = run.ids, run.widest
            seconds, t.ids[f"generate {b}"] = bench.generate(b)
            t.gen.setdefault(b, []).append(seconds)
            t.extras.setdefault(b, []).append(bench.capture(b, extras=True).seconds)
    for b in curve:
        run = bench.capture(b)
        t.curve[b], t.widest[b] = run.seconds, run.widest
    t.stages = profile_stages(bench, sizes[-1])
    return t


# (label, file, function, caller or None): cumulative times read from one cProfile of a capture.
STAGES = [
    ("total", "saliency_lab/run.py", "capture", None),
    ("prepare (image + processor)", "saliency_lab/models/base.py", "prepare", None),
    ("decoding", "saliency_lab/decoding/batch.py", "decode_batch", None),
    ("  its prefill", "saliency_lab/decoding/batch.py", "prefill", None),
    ("saliency pass", "saliency_lab/saliency/batch_pass.py", "single_pass_batch", None),
    (
        "  its no-grad prefill of the input",
        "saliency_lab/saliency/prefill.py",
        "prefill_forward",
        "_batch_pass",
    ),
    ("  its --candidates backward passes", "saliency_lab/saliency/single_pass.py", "_candidates", None),
    ("tables", "saliency_lab/pipeline/tables.py", "build_tables", None),
    ("Parquet parts (add + flush)", "saliency_lab/store/writer.py", "add", "capture"),
    ("Parquet parts (add + flush)", "saliency_lab/store/writer.py", "flush", "capture"),
]


def profile_stages(bench: Bench, batch: int) -> dict[str, float]:
    """Seconds per stage (STAGES) of one capture with the demo's extras at `batch` under cProfile (which slows
    Python-heavy parts)."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    bench.capture(batch, extras=True)
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    out: dict[str, float] = {}
    for label, path, func, caller in STAGES:
        for (file, _, name), (_, _, _, cum, callers) in stats.items():
            if name != func or not file.replace("\\", "/").endswith(path):
                continue
            if caller is not None:
                cum = sum(v[3] for (_, _, c), v in callers.items() if c == caller)
            out[label] = out.get(label, 0.0) + cum
    return out


def report(args: argparse.Namespace, t: Timings) -> None:
    """Print the table, the targets, the curve, where the time goes and the token agreement."""
    big, sizes = args.batch, (1, args.batch)
    n_cap = sum(len(v) for v in t.ids["capture 1"].values())
    n_gen = {b: sum(len(v) for v in t.ids[f"generate {b}"].values()) for b in sizes}
    print(
        f"bench_batch: {args.n} captions on {_shown(args.model)} (the demo's LLaVA, float32), max_new_tokens "
        f"{MAX_NEW} (the demo's), capture defaults (--heads sum_abs, no --candidates, no --rows), {args.threads} thread(s), "
        f"median of {args.reps} rep(s)"
    )
    print(f"output tokens: capture {n_cap}, generate {n_gen[1]} (batch 1) / {n_gen[big]} (batch {big})")
    print(
        "| batch | capture s | generate s | capture / generate | capture tokens/s | generate tokens/s | rows/forward |"
    )
    print("|---|---|---|---|---|---|---|")
    for b in sizes:
        c, g = t.median("cap", b), t.median("gen", b)
        print(
            f"| {b} | {c:.3f} | {g:.3f} | {c / g:.2f} | {n_cap / c:.0f} | {n_gen[b] / g:.0f} | {t.widest[b]} |"
        )
    speedup = t.median("cap", big) / t.median("cap", 1)
    print(
        f"capture batch {big} / batch 1: {speedup:.2f}x (target <= {TARGET_SPEEDUP}): {_verdict(speedup, TARGET_SPEEDUP)}"
    )
    for b in sizes:
        ratio = t.median("cap", b) / t.median("gen", b)
        print(
            f"capture / generate at batch {b}: {ratio:.2f}x (target <= {TARGET_OVERHEAD}): {_verdict(ratio, TARGET_OVERHEAD)}"
        )
    for b in sizes:
        p = t.median("extras", b)
        print(
            f"  with the demo greedy run's --candidates 5 --rows output at batch {b}: {p:.3f} s, "
            f"{p / t.median('gen', b):.2f}x generate"
        )
    for b, c in t.curve.items():
        print(
            f"capture at batch {b}: {c:.3f} s ({c / t.median('cap', 1):.2f}x batch 1, {n_cap / c:.0f} tokens/s, "
            f"{t.widest[b]} rows/forward; one run)"
        )
    st = t.stages
    parts = ", ".join(f"{k.strip()} {v:.2f} s ({v / st['total']:.0%})" for k, v in st.items() if k != "total")
    print(
        f"where the time goes (one capture with --candidates 5 --rows output at batch {big} under cProfile, {st['total']:.2f} s): {parts}"
    )
    print(
        f"greedy tokens identical: capture batch {big} vs batch 1 {same(t.ids['capture 1'], t.ids[f'capture {big}'])}, "
        f"generate vs capture at batch 1 {same(t.ids['capture 1'], t.ids['generate 1'])}, at batch {big} "
        f"{same(t.ids[f'capture {big}'], t.ids[f'generate {big}'])}"
    )


def _verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "MISS"


def main() -> int:
    """Measure and print (see the module docstring)."""
    args = parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    curve = [int(x) for x in args.curve.split(",") if x.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        timings = measure(Bench(args, Path(tmp)), (1, args.batch), args.reps, curve)
    report(args, timings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
