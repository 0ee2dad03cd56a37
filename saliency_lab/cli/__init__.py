"""The `saliency-lab` command line. Each command group lives in its own module under `saliency_lab.cli` and
exposes `register(subparsers)`; every command is a thin call into a library function."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import Any

from saliency_lab.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    SaliencyLabError,
    SaliencyLabWarning,
    os_error_line,
)
from saliency_lab.threads import configure_threads
from saliency_lab.version import __version__

# Errors of the storage/query libraries reach the user as one line: they come from a damaged or vanished
# file (a truncated Parquet part, a run deleted mid-report), not from a bug in the command line given.
_LIBRARY_ERRORS = ("duckdb", "_duckdb", "pyarrow", "polars", "safetensors_rust", "safetensors")

# Module names under saliency_lab.cli, each with register(subparsers). Missing modules are skipped so a
# partial install still offers the commands it has.
COMMAND_MODULES = ("capture", "data", "labels", "query", "analyze", "report", "demo", "tiny")


def build_parser() -> argparse.ArgumentParser:
    """The `saliency-lab` parser with one subcommand per CLI module (a module that is not there is
    skipped)."""
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


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _show_warning(
    message: Any,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Library warnings of our own as one line each; others keep Python's format."""
    if issubclass(category, SaliencyLabWarning):
        print(f"saliency-lab: warning: {_one_line(str(message))}", file=sys.stderr)
    else:
        _default_show(message, category, filename, lineno, file, line)


_default_show = warnings.showwarning


def _library_error(exc: Exception) -> str | None:
    mods = {c.__module__.split(".")[0] for c in type(exc).__mro__}
    if not mods & set(_LIBRARY_ERRORS):
        return None
    first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    return f"{type(exc).__name__}: {_one_line(first)}; check that the files named are complete and readable"


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure ends as one line on stderr and a documented exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    old_show = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        if getattr(args, "configure_threads", False):
            configure_threads(args.threads)
        result = args.func(args)
    except SaliencyLabError as exc:
        print(f"saliency-lab: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"saliency-lab: error: {os_error_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("saliency-lab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        line = _library_error(exc)
        if line is None:
            raise
        print(f"saliency-lab: error: {line}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        warnings.showwarning = old_show
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
