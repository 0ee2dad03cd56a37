"""Manifest builders for the standard protocols (`saliency-lab data coco-chair|pope`)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from saliency_lab.errors import SaliencyLabError
from saliency_lab.labels.groundtruth import read_json
from saliency_lab.labels.pope import read_questions

CHAIR_PROMPT = "Please help me describe the image in detail."


def write_manifest(lines: list[dict], out: str | Path) -> Path:
    """Write JSONL atomically (temp file + rename)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for obj in lines:
                fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def _images_dir(images: str | Path) -> Path:
    d = Path(images).expanduser()
    if not d.is_dir():
        raise SaliencyLabError(f"{d}: image folder not found; pass --images DIR holding the COCO images")
    return d.resolve()


def _image_path(d: Path, name: str, base: str | Path | None) -> str:
    """Image path as the manifest reader resolves it: relative to the manifest's folder, else absolute."""
    full = d / name
    return os.path.relpath(full, Path(base).resolve()) if base is not None else str(full)


def coco_chair_manifest(images: str | Path, annotations: str | Path, n: int = 500, seed: int = 0,
                        prompt: str = CHAIR_PROMPT, base: str | Path | None = None) -> list[dict]:
    """`n` random images (seeded) among those with at least one instance annotation.

    `base`: the folder the manifest will live in (image paths are written relative to it); None = absolute.
    """
    d = _images_dir(images)
    data = read_json(annotations, "COCO instances")
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise SaliencyLabError(f"{annotations}: not a COCO instances file (needs 'images' and 'annotations')")
    annotated = {a["image_id"] for a in data["annotations"]}
    pool = sorted((img for img in data["images"] if img["id"] in annotated), key=lambda img: img["id"])
    if n < 1 or n > len(pool):
        raise SaliencyLabError(f"--n {n}: {annotations} has {len(pool)} annotated images; "
                               f"choose 1..{len(pool)}")
    chosen = random.Random(seed).sample(pool, n)
    return [{"sample_id": f"coco-{img['id']}", "prompt": prompt, "image": _image_path(d, img["file_name"], base),
             "image_id": str(img["id"]), "meta": {"file_name": img["file_name"], "seed": seed}}
            for img in chosen]


def pope_manifest(questions: str | Path, images: str | Path, split: str | None = None,
                  base: str | Path | None = None) -> list[dict]:
    """One manifest entry per POPE question (the answer label and split in `meta`), image paths relative to
    `base` when given."""
    d = _images_dir(images)
    out = []
    for q in read_questions(questions, split):
        meta = {"label": q.label, "split": q.split, "question_id": q.question_id}
        if q.object:
            meta["object"] = q.object
        out.append({"sample_id": f"pope-{q.split}-{q.question_id}", "prompt": q.text,
                    "image": _image_path(d, q.image, base), "image_id": q.image_id, "meta": meta})
    return out
