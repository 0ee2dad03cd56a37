"""Write a scene set in standard COCO JSON (instances with categories + bboxes, and captions), plus the
images, so that CHAIR and POPE run on the world exactly as on COCO."""

from __future__ import annotations

import json
import os

from saliency_lab.world.captions import caption
from saliency_lab.world.render import render
from saliency_lab.world.scenes import CATEGORIES, Scene, WorldConfig

CATEGORY_IDS = {c: i + 1 for i, c in enumerate(CATEGORIES)}


def image_file(image_id: int) -> str:
    """The file name of scene `image_id`."""
    return f"scene_{image_id:06d}.png"


def coco_documents(scenes: list[Scene], world: WorldConfig, image_dir: str | None = None,
                   first_id: int = 1) -> tuple[dict, dict]:
    """(instances, captions) COCO documents; renders each scene, saving PNGs under image_dir when given."""
    images, anns, caps = [], [], []
    categories = [{"id": CATEGORY_IDS[c], "name": c, "supercategory": "shape"} for c in CATEGORIES]
    ann_id = 1
    for k, scene in enumerate(scenes):
        image_id = first_id + k
        img, boxes = render(scene, world)
        if image_dir is not None:
            img.save(os.path.join(image_dir, image_file(image_id)))
        images.append({"id": image_id, "file_name": image_file(image_id), "width": world.image_size,
                       "height": world.image_size})
        for obj, box in zip(scene.objects, boxes, strict=True):
            anns.append({
                "id": ann_id, "image_id": image_id, "category_id": CATEGORY_IDS[obj.category],
                "bbox": [round(v, 2) for v in box], "area": round(box[2] * box[3], 2), "iscrowd": 0,
                "segmentation": [], "attributes": {"colour": obj.colour, "degradation": obj.degradation},
            })
            ann_id += 1
        caps.append({"id": image_id, "image_id": image_id, "caption": caption(scene)})
    info = {"description": "saliency-lab synthetic scene world", "version": "1"}
    instances = {"info": info, "images": images, "annotations": anns, "categories": categories}
    captions = {"info": info, "images": images, "annotations": caps}
    return instances, captions


def write_json(doc: dict, path: str) -> None:
    """Write `doc` to `path` atomically (temporary file, then rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh)
    os.replace(tmp, path)
