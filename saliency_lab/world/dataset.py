"""Build an evaluation set of the scene world on disk: images, COCO instances + captions, the synonym
table, POPE question files and capture manifests (captions and POPE) — the same files a COCO study uses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from saliency_lab.labels.manifests import pope_manifest, write_manifest
from saliency_lab.world.captions import CAPTION_PROMPT
from saliency_lab.world.coco import coco_documents, image_file, write_json
from saliency_lab.world.pope import SPLITS, build_questions
from saliency_lab.world.scenes import WorldConfig, eval_scenes
from saliency_lab.world.tokenizer import synonyms_text


@dataclass
class WorldSet:
    """Paths and sizes of one built scene-world set (images, COCO-style annotations, POPE files,
    manifests)."""

    root: Path
    images: Path
    instances: Path
    captions: Path
    synonyms: Path
    pope_files: dict[str, Path]
    caption_manifest: Path
    pope_manifest: Path
    n_images: int
    n_questions: int


def build_world_set(out: str | Path, n: int = 48, seed: int = 7, partner_absent_share: float = 0.6,
                    pope_images: int | None = None, pope_per_image: int = 1,
                    splits: tuple[str, ...] = SPLITS, world: WorldConfig | None = None) -> WorldSet:
    """Write n held-out scenes (a share with an anchor whose usual partner is absent) under `out`.

    POPE questions cover the first `pope_images` images (default: all), `pope_per_image` yes and as many
    no questions per image and split."""
    world = world or WorldConfig()
    root = Path(out)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    scenes = eval_scenes(world, seed, n, partner_absent_share)
    instances, captions = coco_documents(scenes, world, str(images))
    write_json(instances, str(root / "instances.json"))
    write_json(captions, str(root / "captions.json"))
    (root / "synonyms.txt").write_text(synonyms_text())
    with open(root / "scenes.jsonl", "w") as fh:
        for k, s in enumerate(scenes):
            fh.write(json.dumps({"image_id": k + 1, **s.to_json()}) + "\n")
    cap_lines = [{"sample_id": f"cap-{k + 1:04d}", "prompt": CAPTION_PROMPT,
                  "image": str((images / image_file(k + 1)).resolve()), "image_id": str(k + 1),
                  "meta": {"kind": s.kind, **s.meta}} for k, s in enumerate(scenes)]
    cap_manifest = write_manifest(cap_lines, root / "manifest_captions.jsonl")
    m = n if pope_images is None else min(n, pope_images)
    qs = build_questions(scenes[:m], [image_file(k + 1) for k in range(m)], world, seed, pope_per_image)
    pope_files, pope_lines = {}, []
    for split in splits:
        path = root / f"pope_{split}.jsonl"
        with open(path, "w") as fh:
            for q in qs:
                if q["split"] == split:
                    fh.write(json.dumps({k: q[k] for k in ("question_id", "image", "text", "label")}) + "\n")
        pope_files[split] = path
        pope_lines += pope_manifest(path, images.resolve(), split)
    pope_man = write_manifest(pope_lines, root / "manifest_pope.jsonl")
    return WorldSet(root, images, root / "instances.json", root / "captions.json", root / "synonyms.txt",
                    pope_files, cap_manifest, pope_man, n, len(pope_lines))
