"""`saliency-lab data coco-chair|pope`: manifests for the standard protocols."""

from __future__ import annotations

import argparse
from pathlib import Path

from saliency_lab.labels.manifests import CHAIR_PROMPT


def register(sub: argparse._SubParsersAction) -> None:
    """Add `data` and its manifest builders (`coco-chair`, `pope`)."""
    d = sub.add_parser("data", help="build manifests for the standard protocols")
    dsub = d.add_subparsers(dest="data_kind", metavar="KIND", required=True)

    c = dsub.add_parser("coco-chair", help="random annotated COCO images with the CHAIR captioning prompt")
    c.add_argument("--images", required=True, help="folder of COCO images (e.g. val2014/)")
    c.add_argument("--annotations", required=True, help="COCO instances JSON")
    c.add_argument("--n", type=int, default=500)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--prompt", default=CHAIR_PROMPT)
    c.add_argument("--out", required=True, help="manifest JSONL to write")
    c.set_defaults(func=_coco_chair)

    p = dsub.add_parser("pope", help="one manifest line per POPE question")
    p.add_argument("--questions", required=True, help="POPE question file (JSON lines)")
    p.add_argument("--images", required=True, help="folder of the images the questions name")
    p.add_argument("--split", help="split name (default: from the file name, e.g. coco_pope_random -> random)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_pope)


def _coco_chair(args) -> int:
    from saliency_lab.labels.manifests import coco_chair_manifest, write_manifest

    lines = coco_chair_manifest(args.images, args.annotations, args.n, args.seed, args.prompt,
                                base=Path(args.out).parent)
    print(f"wrote {len(lines)} samples to {write_manifest(lines, args.out)}")
    return 0


def _pope(args) -> int:
    from saliency_lab.labels.manifests import pope_manifest, write_manifest

    lines = pope_manifest(args.questions, args.images, args.split, base=Path(args.out).parent)
    print(f"wrote {len(lines)} samples to {write_manifest(lines, args.out)}")
    return 0
