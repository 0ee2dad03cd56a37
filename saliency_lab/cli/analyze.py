"""`saliency-lab analyze R --labels L --out DIR`, `saliency-lab calibrate R --labels L --out DIR` and
`saliency-lab detect R --labels L --out DIR`."""

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
    """Add the `analyze` and `calibrate` subcommands."""
    a = sub.add_parser("analyze", help="curves, significance tests vs attention, failure cases -> JSON + Parquet")
    a.add_argument("runs", nargs="+", metavar="R", help="run folders or globs")
    a.add_argument("--labels", required=True, help="labelset name (labels/<name>.parquet)")
    a.add_argument("--out", required=True, help="output folder")
    a.add_argument("--scores", "--score", dest="score", default="out_mean",
                   help="score name(s): a name, a comma list or all (docs/analysis.md); default out_mean")
    a.add_argument("--step-bin", type=int, default=1,
                   help="width in steps of a stratum of the step-controlled AUROC (default 1: same step)")
    a.add_argument("--step-band", type=int, default=8, help="width of the step bands of the per-band means")
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
    c.add_argument("--score", "--scores", dest="score", default="out_mean",
                   help="SGRS score: a name, a comma list, all, or auto (every score but step, both directions, "
                        "a bounded grid); default out_mean")
    c.add_argument("--reject", choices=("low", "high", "both"),
                   help="rejection direction (default: both with auto, else the score's own: docs/analysis.md)")
    c.add_argument("--n-bootstrap", type=int, default=1000, help="sample resamples for the chance bound")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--normalization", choices=("row", "none", "matrix"), default="row")
    c.add_argument("--first-subtoken", action="store_true")
    add_threads_arg(c)
    c.set_defaults(func=_calibrate)

    d = sub.add_parser("detect", help="logistic-regression hallucination detector, 4 feature sets, grouped CV "
                                      "-> DIR/detector.json")
    d.add_argument("runs", nargs="+", metavar="R", help="run folders or globs (pooled)")
    d.add_argument("--labels", required=True, help="labelset name")
    d.add_argument("--out", required=True, help="output folder")
    d.add_argument("--features", default="all",
                   help="feature set(s): position, attention, saliency, all, comma list; default: all four "
                        "side by side (the set named all is every feature)")
    d.add_argument("--C", dest="c", type=float, default=1.0, help="inverse L2 strength (default 1)")
    d.add_argument("--folds", type=int, default=5, help="GroupKFold folds (default 5)")
    d.add_argument("--n-bootstrap", type=int, default=1000)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--normalization", choices=("row", "none", "matrix"), default="row")
    d.set_defaults(func=_detect)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3g}"
    return str(v)


def _analyze(args: argparse.Namespace) -> int:
    from saliency_lab.analysis import AnalysisConfig, analyze
    from saliency_lab.analysis.separation import format_table

    cfg = AnalysisConfig(score=args.score, step_bin=args.step_bin, step_band=args.step_band, layers=args.layers, bins=args.bins, binning=args.binning,
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
        print(f"  AUROC = P(hallucinated scores lower), 0.5 = chance; step-controlled pairs tokens within "
              f"{'the same step' if cfg.step_bin == 1 else f'{cfg.step_bin}-step bins'}; logit coef per SD of "
              "the score with step and log step in the model (sample-clustered p)")
        for line in format_table(res.separation.get(run_id, [])):
            print(f"  {line}")
    print(f"wrote {paths['json']} and {len(paths) - 1} Parquet tables to {args.out}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from saliency_lab.analysis import CalibrationConfig, calibrate

    cfg = CalibrationConfig(budget=args.budget, max_resample=args.max_resample, score=args.score,
                            reject=args.reject, n_bootstrap=args.n_bootstrap, seed=args.seed,
                            normalization=args.normalization, layer_sets=args.layer_sets,
                            first_subtoken_only=args.first_subtoken, alphas=args.alphas, windows=args.windows)
    if args.max_resample < 1:
        raise SaliencyLabError(f"--max-resample {args.max_resample}: must be >= 1")
    res = calibrate(args.runs, args.labels, cfg)
    paths = res.write(args.out)
    rec, m = res.recommended, res.recommended_metrics or {}  # metrics are set whenever rec is
    if rec is None:
        print(f"recommended: none. {res.reason}")
    else:
        print(f"recommended: score={rec['score']} reject={rec['reject']} alpha={rec['alpha']} "
              f"window={rec['window']} layers={rec['layers']}")
        print(f"  recall {_fmt(m['recall'])}, false rejection {_fmt(m['false_rejection_rate'])} (difference "
              f"{_fmt(m['diff'])}, simultaneous 95% lower bound {_fmt(m['diff_lower'])}), expected "
              f"resamples/token {_fmt(m['expected_resamples'])}, all below tau {_fmt(m['all_below_rate'])}")
    n_ok = int(res.grid["recommendable"].sum())
    print(f"  {res.grid.height} settings ({n_ok} beat chance), {res.frontier.height} on the frontier; "
          f"wrote {paths['json']}")
    return 0


def _detect(args: argparse.Namespace) -> int:
    from saliency_lab.analysis import DetectorConfig, train_detector
    from saliency_lab.analysis.detector import FEATURE_SETS

    sets = [f.strip() for f in args.features.split(",") if f.strip()]
    # `--features all` alone means the four sets side by side; any other list is taken as given
    cfg = DetectorConfig(feature_sets=list(FEATURE_SETS) if sets == ["all"] else sets, c=args.c,
                         n_splits=args.folds, n_bootstrap=args.n_bootstrap, seed=args.seed,
                         normalization=args.normalization)
    det = train_detector(args.runs, args.labels, cfg)
    path = det.write(args.out)
    print(f"{det.n_tokens} labeled tokens ({det.n_pos} hallucinated), {det.n_groups} groups by {det.group_by}, "
          f"{next(iter(det.feature_sets.values())).n_folds}-fold grouped CV; AUROC = P(probability higher for "
          "hallucinated), 0.5 = chance")
    for name, fs in det.feature_sets.items():
        print(f"  {name:<10} {len(fs.features):>4} features  CV AUROC {_fmt(fs.cv_auroc)} "
              f"[{_fmt(fs.cv_ci[0])}, {_fmt(fs.cv_ci[1])}]")
    print(f"wrote {path}")
    return 0
