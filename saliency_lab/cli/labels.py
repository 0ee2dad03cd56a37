"""`saliency-lab label chair|pope|human`, `saliency-lab chair` (score caption files) and `saliency-lab pope`
(score an answer file)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from saliency_lab.cli._threads import add_threads_arg
from saliency_lab.errors import SaliencyLabError


def _gt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ground-truth", help="JSON mapping image_id -> [categories]")
    p.add_argument("--instances", help="COCO instances JSON (categories of each image's annotations)")
    p.add_argument("--coco-captions", help="COCO captions JSON (objects named in reference captions)")
    p.add_argument("--synonyms", help="synonym table `category, syn1, ...` (default: the shipped table)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `label` and its kinds (CHAIR, POPE, human labels)."""
    lab = sub.add_parser("label", help="attach CHAIR / POPE / human labels to a run's tokens")
    lsub = lab.add_subparsers(dest="label_kind", metavar="KIND", required=True)

    c = lsub.add_parser("chair", help="CHAIR object labels from ground truth keyed by the samples' image_id")
    c.add_argument("--run", required=True, help="run folder (holding run.json)")
    _gt_args(c)
    c.add_argument("--name", default="chair", help="labelset name (default: chair)")
    add_threads_arg(c)
    c.set_defaults(func=_label_chair)

    p = lsub.add_parser("pope", help="POPE answer labels from the samples' meta.label / meta.split")
    p.add_argument("--run", required=True)
    p.add_argument("--parser", choices=("reference", "strict"), default="reference")
    p.add_argument("--name", default="pope")
    add_threads_arg(p)
    p.set_defaults(func=_label_pope)

    h = lsub.add_parser("human", help="human span/step labels from a JSONL file")
    h.add_argument("--run", required=True)
    h.add_argument("--file", required=True, help="JSONL {sample_id, spans:[{start,end,label}]} or {.., steps, label}")
    h.add_argument("--name", default="human")
    add_threads_arg(h)
    h.set_defaults(func=_label_human)

    ch = sub.add_parser("chair", help="CHAIR metrics for a caption file")
    ch.add_argument("--captions", required=True, help="JSONL, one {image_id, caption} per line")
    _gt_args(ch)
    ch.add_argument("--out", required=True, help="result JSON (metrics + per-caption mentions)")
    ch.set_defaults(func=_chair_file)

    po = sub.add_parser("pope", help="POPE metrics for an answer file")
    po.add_argument("--questions", required=True, help="POPE question file (JSON lines)")
    po.add_argument("--answers", required=True, help="JSONL {question_id, text}")
    po.add_argument("--split", help="split name (default: from the questions file name)")
    po.add_argument("--parser", choices=("reference", "strict"), default="reference")
    po.add_argument("--out", help="result JSON (default: print only)")
    po.set_defaults(func=_pope_file)


def _report(res) -> int:
    print(f"wrote {res.n_rows} label rows to {res.parquet}")
    print(json.dumps(res.info["metrics"], indent=2))
    return 0


def _label_chair(args) -> int:
    from saliency_lab.labels.label_run import label_chair

    return _report(label_chair(args.run, ground_truth=args.ground_truth, instances=args.instances,
                               coco_captions=args.coco_captions, synonyms=args.synonyms, name=args.name))


def _label_pope(args) -> int:
    from saliency_lab.labels.label_run import label_pope

    return _report(label_pope(args.run, parser=args.parser, name=args.name))


def _label_human(args) -> int:
    from saliency_lab.labels.label_run import label_human

    return _report(label_human(args.run, file=args.file, name=args.name))


def _write_json(obj: dict, out: str) -> None:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _chair_file(args) -> int:
    from saliency_lab.labels.chair import (
        CHAIR_CONFIG,
        ChairExtractor,
        chair_metrics,
        norm_image_id,
        score_caption,
    )
    from saliency_lab.labels.groundtruth import read_caption_file, resolve_ground_truth
    from saliency_lab.labels.synonyms import load_synonyms

    table = load_synonyms(args.synonyms)
    captions = read_caption_file(args.captions)
    gt = resolve_ground_truth(table, args.ground_truth, args.instances, args.coco_captions,
                              {norm_image_id(iid) for _, iid, _ in captions})
    ex = ChairExtractor(table)
    results = [score_caption(ex, key, iid, cap, gt.objects, gt.source) for key, iid, cap in captions]
    metrics = chair_metrics(results)
    out = {"metrics": metrics,
           "config": {"captions": args.captions, "synonyms": table.source, "synonyms_sha256": table.sha256,
                      "ground_truth": gt.files, **CHAIR_CONFIG},
           "captions": [r.as_dict() for r in results]}
    _write_json(out, args.out)
    print(json.dumps(metrics, indent=2))
    return 0


def _pope_file(args) -> int:
    from saliency_lab.labels.pope import read_answers, read_questions, score_answers

    qs = read_questions(args.questions, args.split)
    if not qs:
        raise SaliencyLabError(f"{args.questions}: no questions found")
    metrics = score_answers(qs, read_answers(args.answers), args.parser, args.answers)
    if args.out:
        _write_json({"metrics": metrics, "config": {"parser": args.parser, "questions": args.questions,
                                                    "answers": args.answers}}, args.out)
    print(json.dumps(metrics, indent=2))
    return 0
