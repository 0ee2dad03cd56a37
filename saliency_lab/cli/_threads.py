"""`--threads N` for every command that computes; `saliency_lab.cli.main` applies it before the command runs."""

from __future__ import annotations

import argparse


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    """Add `--threads N` to a command parser (applied by `main` through `saliency_lab.threads`)."""
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for torch, DuckDB and Polars (default: half the available cores, "
        "or OMP_NUM_THREADS / SLURM_CPUS_PER_TASK when set; see docs/capture.md)",
    )
    p.set_defaults(configure_threads=True)
