"""The scene world: a seeded generator of small synthetic scenes with deliberate co-occurrence priors.

Each scene holds 1-4 objects of distinct categories. Some categories are *anchors* that nearly always come
with a *partner* (p >= 0.95), the way a COCO "fork" nearly always comes with a "dining table"; a model
trained on the world learns the prior and names the partner when it is absent. Partners are often drawn
ambiguous (tiny, faint, blurred or cut by the border) so that visual evidence for them is weak in training,
which is what makes the prior matter (see STACK-NOTES, "Training a small LLaVA on synthetic scenes").

Everything is a pure function of (seed, index): `sample_scene(world, rng)` with `scene_rng(seed, index)`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

# Canonical caption order. An anchor is listed immediately before its partner so that, in a caption, the
# partner is always the word right after the anchor's phrase: the prior acts exactly where it is strongest.
CATEGORIES: tuple[str, ...] = (
    "star", "moon",
    "heart", "arrow",
    "square", "cross",
    "circle", "ring",
    "triangle", "diamond", "hexagon", "bar",
)
PAIRS: dict[str, str] = {"star": "moon", "heart": "arrow", "square": "cross", "circle": "ring"}
PARTNER_OF_ANCHOR = PAIRS
ANCHOR_OF_PARTNER = {v: k for k, v in PAIRS.items()}

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "purple": (170, 60, 220),
    "orange": (250, 140, 20),
    "white": (235, 235, 235),
}

DEGRADATIONS = ("tiny", "faint", "blur", "cut")


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the world. Changing any of them changes every scene; they are recorded with the model."""

    image_size: int = 64
    min_objects: int = 1
    max_objects: int = 4
    pair_prob: float = 0.97  # P(partner | anchor) in training scenes
    degrade_prob_partner: float = 0.5  # partners are often barely visible ...
    degrade_prob_other: float = 0.2  # ... other objects sometimes
    size_range: tuple[int, int] = (13, 20)  # object diameter in px (at image_size)
    tiny_range: tuple[int, int] = (6, 8)
    faint_alpha: tuple[float, float] = (0.22, 0.38)
    blur_radius: tuple[float, float] = (1.6, 2.6)
    noise_std: float = 14.0  # background noise, so faint objects are hard to tell from texture
    background: tuple[int, int, int] = (45, 45, 50)


@dataclass
class SceneObject:
    category: str
    colour: str
    cx: float  # centre, pixels
    cy: float
    size: float  # diameter, pixels
    rotation: float  # degrees
    degradation: str | None = None  # one of DEGRADATIONS or None
    alpha: float = 1.0
    blur: float = 0.0


@dataclass
class Scene:
    objects: list[SceneObject]
    noise_seed: int
    kind: str = "train"  # "train" | "normal" | "partner_absent"
    meta: dict = field(default_factory=dict)

    def categories(self) -> list[str]:
        return [o.category for o in self.objects]

    def to_json(self) -> dict:
        return asdict(self)


def scene_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """Independent stream per (seed, index): scene i never depends on how many scenes came before."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), int(index)]))


def _sample_categories(world: WorldConfig, rng: np.random.Generator, n: int) -> list[str]:
    chosen: list[str] = []
    while len(chosen) < n:
        cat = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        if cat in chosen:
            continue
        partner = PARTNER_OF_ANCHOR.get(cat)
        if partner is not None and partner not in chosen:
            if n - len(chosen) < 2:
                continue  # no room for the pair: pick something else, so an anchor alone stays rare
            chosen += [cat, partner] if rng.random() < world.pair_prob else [cat]
        else:
            chosen.append(cat)
    return chosen


def _place(world: WorldConfig, rng: np.random.Generator, cats: list[str], degrade: dict[str, bool]):
    s = world.image_size
    objs: list[SceneObject] = []
    for cat in cats:
        colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        deg = None
        if degrade.get(cat):
            deg = DEGRADATIONS[int(rng.integers(len(DEGRADATIONS)))]
        lo, hi = world.tiny_range if deg == "tiny" else world.size_range
        size = float(rng.uniform(lo, hi))
        alpha = float(rng.uniform(*world.faint_alpha)) if deg == "faint" else 1.0
        blur = float(rng.uniform(*world.blur_radius)) if deg == "blur" else 0.0
        for _attempt in range(60):
            if deg == "cut":
                # centre on or just inside the border: roughly a third to a half is outside the frame
                side = int(rng.integers(4))
                along = float(rng.uniform(size / 2, s - size / 2))
                off = float(rng.uniform(0.0, size * 0.2))
                cx, cy = [(off, along), (s - off, along), (along, off), (along, s - off)][side]
            else:
                cx = float(rng.uniform(size / 2 + 1, s - size / 2 - 1))
                cy = float(rng.uniform(size / 2 + 1, s - size / 2 - 1))
            if all((cx - o.cx) ** 2 + (cy - o.cy) ** 2 > ((size + o.size) / 2 + 1) ** 2 for o in objs):
                break
        else:
            # crowded: fall back to the least-overlapping spot among a few random ones
            best = None
            for _ in range(20):
                cx = float(rng.uniform(size / 2, s - size / 2))
                cy = float(rng.uniform(size / 2, s - size / 2))
                d = min(((cx - o.cx) ** 2 + (cy - o.cy) ** 2) ** 0.5 for o in objs)
                if best is None or d > best[0]:
                    best = (d, cx, cy)
            cx, cy = best[1], best[2]
        rot = float(rng.uniform(-20, 20))
        objs.append(SceneObject(cat, colour, cx, cy, size, rot, deg, alpha, blur))
    return objs


def sample_scene(world: WorldConfig, rng: np.random.Generator) -> Scene:
    """A training-distribution scene."""
    n = int(rng.integers(world.min_objects, world.max_objects + 1))
    cats = _sample_categories(world, rng, n)
    degrade = {
        c: rng.random() < (world.degrade_prob_partner if c in ANCHOR_OF_PARTNER else world.degrade_prob_other)
        for c in cats
    }
    objs = _place(world, rng, cats, degrade)
    return Scene(objs, noise_seed=int(rng.integers(2**31)), kind="train")


def sample_partner_absent_scene(world: WorldConfig, rng: np.random.Generator) -> Scene:
    """An anchor drawn clearly, its partner absent, plus 0-2 other non-pair objects: the prior's trap."""
    anchor = list(PAIRS)[int(rng.integers(len(PAIRS)))]
    partner = PAIRS[anchor]
    others = [c for c in CATEGORIES if c not in (anchor, partner) and c not in PAIRS]
    k = int(rng.integers(0, 3))
    extra = list(rng.choice(others, size=k, replace=False)) if k else []
    cats = [anchor] + [str(c) for c in extra]
    cats.sort(key=CATEGORIES.index)
    degrade = {c: (c != anchor and rng.random() < world.degrade_prob_other) for c in cats}
    objs = _place(world, rng, cats, degrade)
    return Scene(objs, noise_seed=int(rng.integers(2**31)), kind="partner_absent",
                 meta={"anchor": anchor, "absent_partner": partner})


def eval_scenes(world: WorldConfig, seed: int, n: int, partner_absent_share: float = 0.6) -> list[Scene]:
    """Held-out evaluation scenes (a separate stream from training): a share with the partner absent."""
    n_absent = int(round(n * partner_absent_share))
    scenes = []
    for i in range(n):
        rng = scene_rng(seed, i, stream=1)
        if i < n_absent:
            scenes.append(sample_partner_absent_scene(world, rng))
        else:
            sc = sample_scene(world, rng)
            sc.kind = "normal"
            scenes.append(sc)
    return scenes


def ordered(scene: Scene) -> list[SceneObject]:
    """Objects in canonical caption order."""
    return sorted(scene.objects, key=lambda o: CATEGORIES.index(o.category))
