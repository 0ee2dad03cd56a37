"""`saliency-lab capture`: command-line flags -> CaptureConfig -> `saliency_lab.run.capture`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from saliency_lab.cli._threads import add_threads_arg
from saliency_lab.config import (
    BatchConfig,
    CaptureConfig,
    DecodingConfig,
    LocoREConfig,
    ModelConfig,
    SaliencyConfig,
    SaliencyDecayConfig,
    SGRSConfig,
)
from saliency_lab.errors import EXIT_NO_SAMPLE, SaliencyLabError
from saliency_lab.store.calibration import Calibration


def _batch_size(text: str) -> int | str:
    """`--batch-size`: an integer, or the text as given (BatchConfig.validate refuses it in one line)."""
    try:
        return int(text)
    except ValueError:
        return text


def _shard(text: str) -> tuple[int, int] | str:
    if text == "auto":
        return text  # resolved from torchrun / SLURM variables by saliency_lab.run.capture
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected k/N, e.g. 0/4, or auto") from None
    if n < 1 or not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= k < N, e.g. 0/4 ... 3/4")
    return k, n


def _layers(text: str) -> list[int]:
    try:
        layers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated layer numbers, e.g. 8,9,10") from None
    return layers  # ranges are checked by DecodingConfig.validate, the one place for them


def _steps(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated output steps, e.g. 3,4,5") from None


def register(subparsers: Any) -> None:
    """Add the `capture` subcommand and its flags."""
    p = subparsers.add_parser(
        "capture",
        help="generate over a manifest and record per-token, per-layer saliency into a Parquet dataset",
        description="Generate over a JSONL manifest and record per-token, per-layer saliency into "
        "<out>/<run_id> (see docs/capture.md).",
    )
    io = p.add_argument_group("input and output")
    io.add_argument("--model", required=True, help="local model folder (or HF id already in the local cache)")
    io.add_argument("--data", required=True, help="manifest: JSONL with sample_id, prompt, image, ...")
    io.add_argument("--out", default="runs", help="root folder; the run goes to OUT/RUN_ID (default: runs)")
    io.add_argument("--run-id", help="run folder name (default: <model>-<manifest>-<config hash>)")
    io.add_argument("--shard", type=_shard, default=(0, 1), metavar="k/N|auto",
                    help="fill shard k of N (samples split by a stable hash of sample_id); auto: from torchrun "
                         "(RANK, WORLD_SIZE) or SLURM (array task or task id)")
    io.add_argument("--resume", action="store_true", help="continue a run: skip committed samples")
    io.add_argument("--samples-per-part", type=int, default=16, metavar="N",
                    help="samples per Parquet part file (commit granularity; default 16)")
    io.add_argument("--quiet", action="store_true", help="no progress bar")

    m = p.add_argument_group("model")
    m.add_argument("--dtype", choices=["float32", "float64", "bfloat16", "float16"], default="float32")
    m.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    m.add_argument("--revision", help="model revision recorded in run.json")
    add_threads_arg(m)
    m.add_argument("--batch-size", type=_batch_size, default="auto", metavar="N|auto",
                   help="samples decoded and passed together (same numbers as one at a time; default auto: up to "
                        "32 within --max-batch-tokens)")
    m.add_argument("--max-batch-tokens", type=int, default=None, metavar="T",
                   help="cap on rows x (longest input + max new tokens) per batch (default: 2048 on CPU, 32768 "
                        "on CUDA)")

    d = p.add_argument_group("decoding")
    d.add_argument("--max-new-tokens", type=int, default=64)
    d.add_argument("--strategy", choices=["greedy", "sample", "sgrs"], default="greedy")
    d.add_argument("--temperature", type=float, default=1.0)
    d.add_argument("--top-k", type=int, default=0, help="for --strategy sample; 0 = full softmax")
    d.add_argument("--seed", type=int, default=0, help="base seed; each sample uses seed + hash(sample_id)")
    d.add_argument("--locore-beta", type=float, default=None, help="LocoRE boost beta (0 = off, default)")
    d.add_argument("--locore-window", type=int, default=None, help="LocoRE window w_s (default 5)")
    d.add_argument("--locore-mode", choices=["post_softmax", "renormalize", "logit_offset"], default=None)
    d.add_argument("--calibration", type=Path, metavar="FILE",
                   help="calibration.json from `saliency-lab calibrate`: sets SGRS alpha, window, layers, score and "
                        "direction (explicit --sgrs-* flags override it)")
    d.add_argument("--sgrs-alpha", type=float, default=None, help="SGRS threshold factor (default 0.6)")
    d.add_argument("--sgrs-window", type=int, default=None, help="SGRS history window W (default 5)")
    d.add_argument("--sgrs-k", type=int, default=None, help="SGRS top-K candidates (default 5)")
    d.add_argument("--sgrs-max-resample", type=int, default=None, help="SGRS draws R (default 3)")
    d.add_argument("--sgrs-layers", type=_layers, default=None, metavar="L1,L2,..",
                   help="SGRS target layers (default: upper half)")
    d.add_argument("--sgrs-score", default=None, metavar="S",
                   help="the saliency score SGRS thresholds: out_mean (Eq. 6, default), prev, out_share, prev_share, "
                        "prompt_share, image_share, system_share or source_share (docs/analysis.md)")
    d.add_argument("--sgrs-reject", default=None, metavar="low|high",
                   help="reject candidates scoring below tau (low, the paper's rule, default) or above it (high)")

    dc = p.add_argument_group("saliency decay (paper App. B.1; greedy or sample decoding)")
    dc.add_argument("--decay-rate", type=float, default=None, metavar="R",
                    help="multiply attention toward decayed output tokens by R (turns the intervention on)")
    dc.add_argument("--decay-steps", type=_steps, default=None, metavar="S1,S2,..",
                    help="decay the tokens of these output steps")
    dc.add_argument("--decay-threshold", type=float, default=None, metavar="T",
                    help="decay every token whose normalized prev saliency exceeds T (the paper's rule)")
    dc.add_argument("--decay-layers", type=_layers, default=None, metavar="L1,L2,..",
                    help="layers the threshold rule averages over (default: upper half)")
    dc.add_argument("--decay-mode", choices=["post_softmax", "renormalize"], default=None)

    s = p.add_argument_group("saliency")
    s.add_argument("--heads", choices=["sum_abs", "abs_sum"], default="sum_abs",
                   help="combine heads as sum|A*G| (paper Eq. 4-5, default) or |sum A*G|")
    s.add_argument("--candidates", type=int, default=0, metavar="K",
                   help="also record saliency of the top-K alternative tokens (default 0)")
    s.add_argument("--rows", choices=["output", "all"], default=None,
                   help="also store full S_raw rows (float16) over output keys or all keys")
    s.add_argument("--verify", action="store_true", help="check single-pass rows against the per-prefix reference")
    s.add_argument("--saliency-precision", choices=["auto", "model", "float32"], default="auto",
                   help="dtype of the saliency pass: float32 runs it in float32 on the same (bf16) weights; "
                        "auto (default) = float32 for bfloat16/float16 models, else the model's dtype")
    s.add_argument("--max-pass-tokens", type=int, default=None, metavar="N",
                   help="at most N output rows per backward pass (exact; bounds memory on long outputs)")
    p.set_defaults(func=run_capture)


def config_from_args(args: argparse.Namespace) -> CaptureConfig:
    """The CaptureConfig the flags ask for: defaults, then a --calibration file, then explicit flags."""
    sgrs = SGRSConfig()
    if args.calibration is not None:
        for key, value in Calibration.read(args.calibration).sgrs_settings().items():
            setattr(sgrs, key, value)
    # Explicit flags override the calibration file.
    for flag, key in (("sgrs_alpha", "alpha"), ("sgrs_window", "window"), ("sgrs_k", "k"),
                      ("sgrs_max_resample", "max_resample"), ("sgrs_layers", "layers"), ("sgrs_score", "score"),
                      ("sgrs_reject", "reject")):
        value = getattr(args, flag)
        if value is not None:
            setattr(sgrs, key, value)
    locore = LocoREConfig()
    for flag, key in (("locore_beta", "beta"), ("locore_window", "window"), ("locore_mode", "mode")):
        value = getattr(args, flag)
        if value is not None:
            setattr(locore, key, value)
    return CaptureConfig(
        model=ModelConfig(model=args.model, dtype=args.dtype, device=args.device, revision=args.revision),
        data=args.data,
        out=args.out,
        run_id=args.run_id,
        decoding=DecodingConfig(
            max_new_tokens=args.max_new_tokens,
            strategy=args.strategy,
            seed=args.seed,
            temperature=args.temperature,
            top_k=args.top_k,
            sgrs=sgrs,
            locore=locore,
            decay=decay_from_args(args),
        ),
        saliency=SaliencyConfig(heads=args.heads, candidates=args.candidates, rows=args.rows, verify=args.verify,
                                precision=args.saliency_precision, max_pass_tokens=args.max_pass_tokens),
        shard=args.shard,
        resume=args.resume,
        samples_per_part=args.samples_per_part,
        quiet=args.quiet,
        threads=args.threads,
        batch=BatchConfig(size=args.batch_size, max_tokens=args.max_batch_tokens),
    )


def decay_from_args(args: argparse.Namespace) -> SaliencyDecayConfig:
    """The decay block the --decay-* flags ask for (inactive without --decay-rate); ranges are checked by
    DecodingConfig.validate, the one place for them."""
    flags = ("decay_steps", "decay_threshold", "decay_layers", "decay_mode")
    if args.decay_rate is None:
        given = [f"--{f.replace('_', '-')}" for f in flags if getattr(args, f, None) is not None]
        if given:
            raise SaliencyLabError(f"{given[0]} needs --decay-rate R to turn the saliency decay on")
        return SaliencyDecayConfig()
    if args.decay_steps is None and args.decay_threshold is None:
        raise SaliencyLabError("--decay-rate: say which tokens to decay with --decay-steps S1,S2 or "
                               "--decay-threshold T")
    return SaliencyDecayConfig(rate=args.decay_rate, steps=list(args.decay_steps or []),
                               threshold=args.decay_threshold, layers=args.decay_layers,
                               mode=args.decay_mode or "post_softmax")


def run_capture(args: argparse.Namespace) -> int:
    """Run `saliency-lab capture`; print where the run was written and its summary."""
    from saliency_lab.run import capture

    cfg = config_from_args(args)
    result = capture(cfg)
    print(f"run written to {result.run_dir}")
    print(result.summary())
    if result.error:
        summary = getattr(result, "error_summary", lambda: f"{result.error} sample(s) failed")()
        print(f"saliency-lab: warning: {summary}; one-line reasons are in the samples table "
              "(status = 'error', column error)", file=sys.stderr)
        if result.ok == 0:
            print(f"saliency-lab: error: no sample of {result.run_dir} succeeded (exit {EXIT_NO_SAMPLE}); fix the "
                  "cause above and capture again into a new --run-id (or delete the run folder first)",
                  file=sys.stderr)
            return EXIT_NO_SAMPLE
    return 0
