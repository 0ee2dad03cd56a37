"""`saliency-lab report R [R2 ...] -o report.html`: one self-contained HTML report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from saliency_lab.cli._threads import add_threads_arg
from saliency_lab.errors import SaliencyLabError


def _layers(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers {text!r}: give comma-separated layer indices, e.g. 2,3") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `report` subcommand."""
    p = subparsers.add_parser(
        "report", help="write one self-contained HTML report for one or more runs",
        description="Write one HTML file (opens offline) with the run summary, Table-4 means, the binned "
                    "hallucination curve, the per-layer profile, saliency maps, failure cases and SGRS "
                    "calibration. Several runs are compared side by side.")
    p.add_argument("runs", nargs="+", help="run folders (each holding run.json) or globs")
    p.add_argument("-o", "--out", required=True, help="output HTML file")
    p.add_argument("--labels", default=None, help="label set name (default: chair when present, else the first found)")
    p.add_argument("--samples", default=None, help="comma-separated sample ids to draw saliency maps for "
                                                    "(default: picked automatically)")
    p.add_argument("--score", default="out_mean",
                   help="primary token score, a name of the score family (docs/analysis.md; default out_mean); "
                        "the summary and the separation table cover every score")
    p.add_argument("--binning", choices=("quantile", "uniform"), default="quantile",
                   help="curve bins: quantile (equal token counts, default) or uniform (equal width on [0, 1])")
    p.add_argument("--bins", type=int, default=10, help="curve bins (default 10)")
    p.add_argument("--no-explorer", action="store_true", help="leave the token explorer out")
    p.add_argument("--image-budget-mb", type=float, default=8.0,
                   help="total size of images and image-patch maps embedded in the explorer (default 8 MB)")
    p.add_argument("--layers", type=_layers, default=None, help="target layers, e.g. 2,3 (default: upper half)")
    p.add_argument("--calibration", default=None, help="calibration.json or the folder holding it")
    p.add_argument("--no-calibrate", action="store_true", help="do not compute the SGRS calibration when none is given")
    p.add_argument("--failures", type=int, default=6, help="failure cases of each kind per run (default 6)")
    p.add_argument("--bootstrap", type=int, default=1000, help="AUROC bootstrap resamples (default 1000)")
    p.add_argument("--max-map-tokens", type=int, default=40, help="longest token window in one map (default 40)")
    p.add_argument("--title", default=None, help="page title")
    p.add_argument("--check", action="store_true",
                   help="then open the report in headless Chromium (network blocked) and check every chart renders")
    p.add_argument("--screenshot", default=None, help="with --check: also save a PNG screenshot here")
    add_threads_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the HTML report, print its size and time, and with `--check` render it in Chromium."""
    from saliency_lab.report import ReportConfig, build_report

    samples = [s.strip() for s in args.samples.split(",") if s.strip()] if args.samples else None
    cfg = ReportConfig(labels=args.labels, samples=samples, score=args.score, layers=args.layers,
                       calibration=args.calibration, compute_calibration=not args.no_calibrate,
                       n_failures=args.failures, n_bootstrap=args.bootstrap, max_map_steps=args.max_map_tokens,
                       title=args.title, binning=args.binning, bins=args.bins, explorer=not args.no_explorer,
                       image_budget_mb=args.image_budget_mb)
    t0 = time.perf_counter()
    out = build_report(args.runs, args.out, cfg)
    size = Path(out).stat().st_size
    print(f"wrote {out} ({size / 1e6:.2f} MB) in {time.perf_counter() - t0:.1f} s")
    if args.check:
        from saliency_lab.report.browser import check_report

        res = check_report(out, screenshot=args.screenshot)
        print(f"browser check: {res.charts_ok}/{res.charts_total} charts rendered, {len(res.errors)} errors")
        for err in res.errors[:10]:
            print(f"  {err}")
        if not res.ok:
            raise SaliencyLabError(f"{out}: the report did not render cleanly in headless Chromium (see above)")
    return 0
