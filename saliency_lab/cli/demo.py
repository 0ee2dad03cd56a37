"""`saliency-lab demo`: the whole pipeline on the bundled scene world (thin wrapper over saliency_lab.demo)."""

from __future__ import annotations

import argparse
from typing import Any

from saliency_lab.cli._threads import add_threads_arg


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo", help="run the whole pipeline on the bundled scene world and model (CPU, minutes)",
        description="Build a held-out set of the synthetic scene world, capture captions and POPE answers with "
                    "the shipped small LLaVA, label them (CHAIR, POPE), analyze saliency, calibrate SGRS, "
                    "re-run with SGRS and LocoRE and write one HTML report.")
    p.add_argument("--out", default="saliency-lab-demo", help="output folder (default: ./saliency-lab-demo)")
    p.add_argument("--quick", action="store_true", help="a small run (8 images) for a smoke test")
    p.add_argument("--n-images", type=int, default=60, help="evaluation images (default 60)")
    p.add_argument("--model", help="model folder (default: the shipped datasets/shapes/model)")
    p.add_argument("--retrain", action="store_true", help="train the scene-world model from scratch first")
    p.add_argument("--retrain-steps", type=int, default=None, help="steps for --retrain (default: as shipped)")
    p.add_argument("--no-interventions", action="store_true", help="skip the sampling / SGRS / LocoRE captures")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--seed", type=int, default=7, help="seed of the evaluation scenes")
    add_threads_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from saliency_lab.demo import DemoConfig, format_findings, run_demo

    cfg = DemoConfig(out=args.out, model=args.model, quick=args.quick, n_images=args.n_images, seed=args.seed,
                     interventions=not args.no_interventions, report=not args.no_report, retrain=args.retrain,
                     retrain_steps=args.retrain_steps)
    summary = run_demo(cfg)
    print()
    print(f"demo finished in {summary['seconds']:.0f} s; everything is under {args.out}/")
    for name, path in summary["files"].items():
        print(f"  {name:<12} {path}")
    for line in format_findings(summary):
        print(line)
    return 0
