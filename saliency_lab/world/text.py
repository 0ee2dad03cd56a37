"""A text-grounded hallucination world for text-only LLMs: seeded scene prompts that list 2-5 COCO objects
("In the kitchen there are: a cup, a knife and an apple. Describe the kitchen in a few sentences."). The
ground truth of each sample is the set of listed objects, so CHAIR counts every other COCO object the answer
names as hallucinated. Ground truth is keyed by sample_id (there is no image), which `label chair` accepts.

Everything is a pure function of (seed, index). Several scene types, each with a plausible object pool; the
pools together cover all 80 COCO categories. Each category is listed with a surface noun that the CHAIR
synonym table maps back to it ("a table" -> dining table, "a television" -> tv).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saliency_lab.labels.manifests import write_manifest

#: COCO category -> the noun a prompt uses for it (the category name unless it reads unnaturally).
SURFACE: dict[str, str] = {
    "dining table": "table",
    "tv": "television",
    "sports ball": "ball",
    "cell phone": "phone",
    "hair drier": "hair dryer",
    "remote": "remote control",
    "baseball glove": "baseball glove",
    "potted plant": "potted plant",
    "skis": "pair of skis",
}


@dataclass(frozen=True)
class SceneType:
    """A place the prompt names and the COCO categories plausibly found there."""

    name: str
    opening: str  # "In the kitchen"
    place: str  # "the kitchen" (the thing to describe)
    pool: tuple[str, ...]


SCENE_TYPES: tuple[SceneType, ...] = (
    SceneType(
        "kitchen",
        "In the kitchen",
        "the kitchen",
        (
            "cup",
            "knife",
            "fork",
            "spoon",
            "bowl",
            "bottle",
            "wine glass",
            "apple",
            "banana",
            "orange",
            "microwave",
            "oven",
            "toaster",
            "sink",
            "refrigerator",
            "dining table",
            "chair",
            "broccoli",
            "carrot",
            "cake",
            "sandwich",
            "pizza",
            "donut",
            "hot dog",
            "potted plant",
            "clock",
            "vase",
            "scissors",
            "cat",
            "person",
        ),
    ),
    SceneType(
        "street",
        "On the street",
        "the street",
        (
            "car",
            "bus",
            "truck",
            "bicycle",
            "motorcycle",
            "traffic light",
            "fire hydrant",
            "stop sign",
            "parking meter",
            "bench",
            "person",
            "dog",
            "umbrella",
            "handbag",
            "backpack",
            "suitcase",
            "bird",
            "potted plant",
            "cell phone",
            "tie",
            "skateboard",
            "clock",
        ),
    ),
    SceneType(
        "living room",
        "In the living room",
        "the living room",
        (
            "couch",
            "chair",
            "tv",
            "remote",
            "book",
            "clock",
            "vase",
            "potted plant",
            "cat",
            "dog",
            "laptop",
            "teddy bear",
            "cup",
            "bottle",
            "dining table",
            "person",
            "cell phone",
            "keyboard",
            "mouse",
            "bowl",
            "wine glass",
        ),
    ),
    SceneType(
        "office",
        "In the office",
        "the office",
        (
            "laptop",
            "keyboard",
            "mouse",
            "tv",
            "cell phone",
            "book",
            "chair",
            "dining table",
            "cup",
            "bottle",
            "clock",
            "scissors",
            "backpack",
            "handbag",
            "potted plant",
            "person",
            "tie",
            "remote",
            "suitcase",
            "umbrella",
            "sandwich",
        ),
    ),
    SceneType(
        "park",
        "In the park",
        "the park",
        (
            "bench",
            "dog",
            "bird",
            "person",
            "bicycle",
            "kite",
            "frisbee",
            "sports ball",
            "umbrella",
            "backpack",
            "skateboard",
            "baseball bat",
            "baseball glove",
            "tennis racket",
            "bottle",
            "sandwich",
            "hot dog",
            "horse",
            "potted plant",
            "cell phone",
            "handbag",
        ),
    ),
    SceneType(
        "bedroom",
        "In the bedroom",
        "the bedroom",
        (
            "bed",
            "teddy bear",
            "book",
            "clock",
            "laptop",
            "tv",
            "chair",
            "cell phone",
            "cat",
            "dog",
            "vase",
            "potted plant",
            "remote",
            "suitcase",
            "handbag",
            "hair drier",
            "cup",
            "bottle",
            "person",
        ),
    ),
    SceneType(
        "bathroom",
        "In the bathroom",
        "the bathroom",
        (
            "toilet",
            "sink",
            "toothbrush",
            "hair drier",
            "scissors",
            "bottle",
            "cup",
            "vase",
            "potted plant",
            "cat",
            "clock",
            "person",
            "handbag",
        ),
    ),
    SceneType(
        "farm",
        "On the farm",
        "the farm",
        (
            "cow",
            "sheep",
            "horse",
            "dog",
            "cat",
            "bird",
            "truck",
            "person",
            "bench",
            "apple",
            "carrot",
            "bicycle",
            "bottle",
            "elephant",
            "bear",
        ),
    ),
    SceneType(
        "beach",
        "On the beach",
        "the beach",
        (
            "surfboard",
            "umbrella",
            "boat",
            "person",
            "dog",
            "bird",
            "kite",
            "frisbee",
            "sports ball",
            "bottle",
            "chair",
            "backpack",
            "cell phone",
            "sandwich",
            "cup",
        ),
    ),
    SceneType(
        "station",
        "At the station",
        "the station",
        (
            "train",
            "airplane",
            "bus",
            "suitcase",
            "backpack",
            "handbag",
            "person",
            "bench",
            "clock",
            "cell phone",
            "umbrella",
            "bottle",
            "laptop",
            "book",
            "dog",
            "cup",
            "tie",
        ),
    ),
    SceneType(
        "mountain",
        "On the mountain",
        "the mountain",
        (
            "skis",
            "snowboard",
            "person",
            "backpack",
            "dog",
            "bird",
            "bench",
            "bottle",
            "cell phone",
            "bear",
            "horse",
            "sheep",
            "cow",
        ),
    ),
    SceneType(
        "zoo",
        "At the zoo",
        "the zoo",
        (
            "elephant",
            "giraffe",
            "zebra",
            "bear",
            "bird",
            "person",
            "bench",
            "umbrella",
            "backpack",
            "bottle",
            "hot dog",
            "cell phone",
            "horse",
            "sheep",
        ),
    ),
)


def surface(category: str) -> str:
    """The word a prompt uses for a COCO category (e.g. "dining table" -> "table")."""
    return SURFACE.get(category, category)


def _article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def listing(nouns: list[str]) -> str:
    """ "a cup", "a cup and a knife", "a cup, a knife and an apple"."""
    items = [_article(n) for n in nouns]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


@dataclass(frozen=True)
class TextSample:
    """One text-world prompt: its scene type and the listed COCO categories (its ground truth)."""
    sample_id: str
    scene: str
    objects: tuple[str, ...]  # COCO categories, in the order the prompt lists them
    prompt: str

    def manifest_line(self) -> dict:
        """The manifest record of this sample (sample_id, prompt, meta)."""
        return {
            "sample_id": self.sample_id,
            "prompt": self.prompt,
            "meta": {"world": "text", "scene": self.scene, "objects": list(self.objects)},
        }


def sample(seed: int, index: int, min_objects: int = 2, max_objects: int = 5) -> TextSample:
    """Sample `index` of the stream `seed`: a scene type, then 2-5 distinct objects from its pool."""
    rng = np.random.default_rng([seed, index])
    scene = SCENE_TYPES[int(rng.integers(len(SCENE_TYPES)))]
    k = int(rng.integers(min_objects, max_objects + 1))
    objects = tuple(scene.pool[i] for i in rng.choice(len(scene.pool), size=k, replace=False))
    prompt = (
        f"{scene.opening} there are: {listing([surface(c) for c in objects])}. "
        f"Describe {scene.place} in a few sentences."
    )
    return TextSample(f"txt-{seed}-{index:04d}", scene.name, objects, prompt)


def samples(n: int, seed: int = 0) -> list[TextSample]:
    """The first `n` samples of the stream `seed`."""
    return [sample(seed, i) for i in range(n)]


@dataclass
class TextSet:
    """A written text-world evaluation set: the manifest and the ground truth keyed by sample_id."""
    root: Path
    manifest: Path
    ground_truth: Path  # {"<sample_id>": [categories]}
    n: int


def build_text_set(out: str | Path, n: int = 40, seed: int = 0) -> TextSet:
    """Write `manifest.jsonl` and `ground_truth.json` (keyed by sample_id) for n samples under `out`."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    items = samples(n, seed)
    manifest = write_manifest([s.manifest_line() for s in items], root / "manifest.jsonl")
    gt = root / "ground_truth.json"
    gt.write_text(json.dumps({s.sample_id: list(s.objects) for s in items}, indent=1) + "\n")
    return TextSet(root, manifest, gt, n)
