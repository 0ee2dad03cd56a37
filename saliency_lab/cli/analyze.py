"""`saliency-lab analyze R --labels L --out DIR` and `saliency-lab calibrate R --labels L --out DIR`."""

from __future__ import annotations

import argparse
import math

from saliency_lab.cli._threads import add_threads_arg
from saliency_lab.errors import SaliencyLabError


def _floats(s: str) -> list[float]:
    try:
        return [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: comma-separated numbers, e.g. 0.4,0.6,0.8") from None


def _ints(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: comma-separated integers, e.g. 2,3") from None


def _layer_sets(s: str) -> list[list[int]]:
    return [_ints(part) for part in s.split(";") if part.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("analyze", help="curves, significance tests vs attention, failure cases -> JSON + Parquet")
    a.add_argument("runs", nargs="+", metavar="R", help="run folders or globs")
    a.add_argument("--labels", required=True, help="labelset name (labels/<name>.parquet)")
    a.add_argument("--out", required=True, help="output folder")
    a.add_argument("--score", choices=("out_mean", "prev"), default="out_mean")
    a.add_argument("--layers", type=_ints, help="target layers, e.g. 2,3 (default: upper half)")
    a.add_argument("--bins", type=int, default=10)
    a.add_argument("--binning", choices=("equal", "quantile"), default="equal")
    a.add_argument("--normalization", choices=("row", "none", "matrix"), default="row")
    a.add_argument("--n-bootstrap", type=int, default=1000)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--fdr", choices=("holm", "bh"), default="holm")
    a.add_argument("--failures", type=int, default=20, help="failure cases of each kind per run")
    a.add_argument("--first-subtoken", action="store_true", help="keep only the first subtoken of a mention")
    add_threads_arg(a)
    a.set_defaults(func=_analyze)

    c = sub.add_parser("calibrate", help="SGRS alpha / W / layers by offline replay -> DIR/calibration.json")
    c.add_argument("runs", nargs="+", metavar="R", help="run folders or globs (pooled)")
    c.add_argument("--labels", required=True, help="labelset name")
    c.add_argument("--out", required=True, help="output folder")
    c.add_argument("--budget", type=float, default=0.1, help="max false-rejection rate (default 0.1)")
    c.add_argument("--alphas", type=_floats, help="e.g. 0.2,0.4,0.6,0.8 (default 0.1..1.5 step 0.1)")
    c.add_argument("--windows", type=_ints, help="e.g. 1,3,5,8 (default 1,2,3,5,8,12)")
    c.add_argument("--layer-sets", type=_layer_sets,
                   help="';'-separated layer lists, e.g. '2,3;0,1,2,3' (default: upper half, all, last)")
    c.add_argument("--max-resample", type=int, default=3, help="R, draws per step (default 3)")
    c.add_argument("--score", choices=("out_mean", "prev"), default="out_mean")
    c.add_argument("--normalization", choices=("row", "none", "matrix"), default="row")
    c.add_argument("--first-subtoken", action="store_true")
    add_threads_arg(c)
    c.set_defaults(func=_calibrate)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3g}"
    return str(v)


def _analyze(args: argparse.Namespace) -> int:
    from saliency_lab.analysis import AnalysisConfig, analyze

    cfg = AnalysisConfig(score=args.score, layers=args.layers, bins=args.bins, binning=args.binning,
                         normalization=args.normalization, n_bootstrap=args.n_bootstrap, seed=args.seed,
                         fdr=args.fdr, n_failures=args.failures, first_subtoken_only=args.first_subtoken)
    res = analyze(args.runs, args.labels, cfg)
    paths = res.write(args.out)
    for run_id, t in res.tests.items():
        s = res.summary[run_id]
        print(f"{run_id}: {s.get('n_analyzed')} labeled tokens ({s.get('n_analyzed_halluc')} hallucinated), "
              f"target layers {s.get('target_layers')}")
        if "error" in t:
            print(f"  {t['error']}")
            continue
        for m in [cfg.score, "attn_out"]:
            st = t[m]
            print(f"  {m:>9}: mean correct {_fmt(st['mean_correct'])} vs hallucinated {_fmt(st['mean_halluc'])}"
                  f"  d={_fmt(st['cohen_d'])}  AUROC={_fmt(st['auroc'])} "
                  f"[{_fmt(st['auroc_ci'][0])}, {_fmt(st['auroc_ci'][1])}]  Welch p={_fmt(st['welch_p'])}")
        cmp_ = t["comparison"]["vs_attn_out"]
        print(f"  saliency - attention separation: {_fmt(cmp_['difference'])} "
              f"[{_fmt(cmp_['ci'][0])}, {_fmt(cmp_['ci'][1])}]")
    print(f"wrote {paths['json']} and {len(paths) - 1} Parquet tables to {args.out}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from saliency_lab.analysis import CalibrationConfig, calibrate

    cfg = CalibrationConfig(budget=args.budget, max_resample=args.max_resample, score=args.score,
                            normalization=args.normalization, layer_sets=args.layer_sets,
                            first_subtoken_only=args.first_subtoken)
    if args.alphas:
        cfg.alphas = args.alphas
    if args.windows:
        cfg.windows = args.windows
    if args.max_resample < 1:
        raise SaliencyLabError(f"--max-resample {args.max_resample}: must be >= 1")
    res = calibrate(args.runs, args.labels, cfg)
    paths = res.write(args.out)
    rec, m = res.recommended, res.recommended_metrics
    note = "" if res.within_budget else f" (no setting meets the budget {args.budget}; lowest false rejection)"
    print(f"recommended: alpha={rec['alpha']} window={rec['window']} layers={rec['layers']}{note}")
    print(f"  recall {_fmt(m['recall'])}, false rejection {_fmt(m['false_rejection_rate'])}, "
          f"expected resamples/token {_fmt(m['expected_resamples'])}, all below tau {_fmt(m['all_below_rate'])}")
    print(f"  {res.grid.height} settings, {res.frontier.height} on the frontier; wrote {paths['json']}")
    return 0
