"""`saliency-lab tiny-model`: build a tiny random model directory (for trying the toolkit, tests, benchmarks)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the `tiny-model` subcommand."""
    p = subparsers.add_parser(
        "tiny-model",
        help="build a tiny random model folder usable with `saliency-lab capture --model DIR`",
        description="Build a tiny, randomly initialised model (hidden 64, 2 layers) with a locally trained "
        "tokenizer and chat template, saved as a normal model folder. No downloads.",
    )
    # The families come from the model registry (one recipe per adapter); checked when building, so the parser
    # stays free of torch imports.
    p.add_argument("--arch", default="llama",
                   help="model family: llama, qwen2, qwen3, mistral, llava, qwen2_vl, qwen2_5_vl, internvl, or any "
                   "other registered recipe (default: llama)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="weight-init seed (default 0)")
    p.add_argument("--tokenizer", choices=("bytelevel", "metaspace"), default="bytelevel",
                   help="tokenizer style: byte-level BPE or SentencePiece-like Metaspace (default bytelevel)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from saliency_lab.models.tiny import build_tiny

    hf_logging.disable_progress_bar()
    out = build_tiny(args.arch, args.out, seed=args.seed, tokenizer=args.tokenizer)
    print(f"wrote tiny {args.arch} model to {out}")
    return 0
