"""The `saliency-lab` command line. Each command group lives in its own module under `saliency_lab.cli` and
exposes `register(subparsers)`; every command is a thin call into a library function."""

from __future__ import annotations

import argparse
import importlib
import sys

from saliency_lab import __version__
from saliency_lab.errors import SaliencyLabError
from saliency_lab.threads import configure_threads

# Module names under saliency_lab.cli, each with register(subparsers). Missing modules are skipped so a
# partial install still offers the commands it has.
COMMAND_MODULES = ("capture", "data", "labels", "query", "analyze", "report", "demo", "tiny")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saliency-lab",
        description="Token-level hallucination analysis of VLMs and LLMs (LVLMs-Saliency).",
    )
    parser.add_argument("--version", action="version", version=f"saliency-lab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"saliency_lab.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"saliency_lab.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if getattr(args, "configure_threads", False):
            configure_threads(args.threads)
        result = args.func(args)
    except SaliencyLabError as exc:
        print(f"saliency-lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("saliency-lab: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
