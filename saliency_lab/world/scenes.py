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

# Category order (ids in the COCO files, synonym table order). Captions follow the grid instead.
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

# Objects sit in the cells of a GRID x GRID layout (one per cell, jittered) and captions list them in
# reading order. A partner is laid out in the next occupied cell after its anchor, so in a caption it is
# always the phrase right after the anchor's: the prior acts exactly where it is strongest. Reading order
# also lets the model describe a scene one cell at a time (STACK-NOTES: a free layout with a category-
# ordered caption stalled on a long plateau where shapes were not learned).
GRID = 2


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the world. Changing any of them changes every scene; they are recorded with the model."""

    image_size: int = 64
    min_objects: int = 1
    max_objects: int = 4
    pair_prob: float = 0.97  # P(partner | anchor) in training scenes
    stray_partner_prob: float = 0.1  # a partner without its anchor, so partners are seen on their own too
    degrade_prob_partner: float = 0.4  # partners are often barely visible ...
    degrade_prob_other: float = 0.15  # ... other objects sometimes
    size_range: tuple[int, int] = (15, 22)  # object diameter in px (at image_size); a cell is 32 px
    jitter: float = 4.0  # px of random offset of an object's centre from its cell's centre
    tiny_range: tuple[int, int] = (6, 8)
    faint_alpha: tuple[float, float] = (0.22, 0.38)
    blur_radius: tuple[float, float] = (1.6, 2.6)
    noise_std: float = 12.0  # background noise, so faint objects are hard to tell from texture
    background: tuple[int, int, int] = (45, 45, 50)


@dataclass
class SceneObject:
    """One drawn object: category, colour, placement, and how it is degraded."""

    category: str
    colour: str
    cx: float  # centre, pixels
    cy: float
    size: float  # diameter, pixels
    rotation: float  # degrees
    degradation: str | None = None  # one of DEGRADATIONS or None
    alpha: float = 1.0
    blur: float = 0.0
    cell: int = 0  # grid cell in reading order (0 = top left); captions follow it


@dataclass
class Scene:
    """One scene image's objects, noise seed and kind."""

    objects: list[SceneObject]
    noise_seed: int
    kind: str = "train"  # "train" | "normal" | "partner_absent"
    meta: dict = field(default_factory=dict)

    def categories(self) -> list[str]:
        """The objects' categories, in object order."""
        return [o.category for o in self.objects]

    def to_json(self) -> dict:
        """The scene as plain nested dicts."""
        return asdict(self)


def scene_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """Independent stream per (seed, index): scene i never depends on how many scenes came before."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), int(index)]))


def _sample_units(world: WorldConfig, rng: np.random.Generator, n: int) -> list[list[str]]:
    """n distinct categories grouped in caption units: [anchor, partner] pairs stay together."""
    chosen: list[str] = []
    units: list[list[str]] = []
    while len(chosen) < n:
        cat = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        if cat in chosen or cat in ANCHOR_OF_PARTNER:
            continue  # partners only enter through their anchor (or as a rare stray, below)
        partner = PARTNER_OF_ANCHOR.get(cat)
        if partner is not None:
            if n - len(chosen) < 2:
                continue  # no room for the pair: pick something else, so an anchor alone stays rare
            unit = [cat, partner] if rng.random() < world.pair_prob else [cat]
        else:
            unit = [cat]
        chosen += unit
        units.append(unit)
    # a partner now and then appears without its anchor, so that partners are categories in their own right
    if n >= 2 and rng.random() < world.stray_partner_prob:
        free = [p for p in ANCHOR_OF_PARTNER if p not in chosen and ANCHOR_OF_PARTNER[p] not in chosen]
        singles = [k for k, u in enumerate(units) if len(u) == 1 and u[0] not in PAIRS]
        if free and singles:
            units[singles[int(rng.integers(len(singles)))]] = [free[int(rng.integers(len(free)))]]
    return units


def _cells(rng: np.random.Generator, units: list[list[str]]) -> list[tuple[str, int]]:
    """(category, cell) in caption order: units shuffled, then laid out over a random sorted choice of
    cells, so an anchor's partner always sits in the next occupied cell in reading order."""
    order = rng.permutation(len(units))
    cats = [c for k in order for c in units[int(k)]]
    cells = sorted(int(c) for c in rng.choice(GRID * GRID, size=len(cats), replace=False))
    return list(zip(cats, cells, strict=True))


def _place(world: WorldConfig, rng: np.random.Generator, placed: list[tuple[str, int]],
           degrade: dict[str, bool]) -> list[SceneObject]:
    cell_px = world.image_size / GRID
    objs: list[SceneObject] = []
    for cat, cell in placed:
        colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        deg = None
        if degrade.get(cat):
            deg = DEGRADATIONS[int(rng.integers(len(DEGRADATIONS)))]
        lo, hi = world.tiny_range if deg == "tiny" else world.size_range
        size = float(rng.uniform(lo, hi))
        alpha = float(rng.uniform(*world.faint_alpha)) if deg == "faint" else 1.0
        blur = float(rng.uniform(*world.blur_radius)) if deg == "blur" else 0.0
        row, col = divmod(cell, GRID)
        cx = (col + 0.5) * cell_px + float(rng.uniform(-world.jitter, world.jitter))
        cy = (row + 0.5) * cell_px + float(rng.uniform(-world.jitter, world.jitter))
        if deg == "cut":
            # pushed onto one of the cell's outer image borders: a third to a half is outside the frame
            off = float(rng.uniform(0.0, size * 0.2))
            if rng.random() < 0.5:
                cx = off if col == 0 else world.image_size - off
            else:
                cy = off if row == 0 else world.image_size - off
        rot = float(rng.uniform(-20, 20))
        objs.append(SceneObject(cat, colour, cx, cy, size, rot, deg, alpha, blur, cell))
    return objs


def sample_scene(world: WorldConfig, rng: np.random.Generator) -> Scene:
    """A training-distribution scene."""
    n = int(rng.integers(world.min_objects, world.max_objects + 1))
    placed = _cells(rng, _sample_units(world, rng, n))
    degrade = {
        c: rng.random() < (world.degrade_prob_partner if c in ANCHOR_OF_PARTNER else world.degrade_prob_other)
        for c, _ in placed
    }
    objs = _place(world, rng, placed, degrade)
    return Scene(objs, noise_seed=int(rng.integers(2**31)), kind="train")


def sample_partner_absent_scene(world: WorldConfig, rng: np.random.Generator) -> Scene:
    """An anchor drawn clearly, its partner absent, plus 0-2 other non-pair objects: the prior's trap."""
    anchor = list(PAIRS)[int(rng.integers(len(PAIRS)))]
    partner = PAIRS[anchor]
    others = [c for c in CATEGORIES if c not in (anchor, partner) and c not in PAIRS]
    k = int(rng.integers(0, 3))
    extra = list(rng.choice(others, size=k, replace=False)) if k else []
    placed = _cells(rng, [[anchor]] + [[str(c)] for c in extra])
    degrade = {c: (c != anchor and rng.random() < world.degrade_prob_other) for c, _ in placed}
    objs = _place(world, rng, placed, degrade)
    return Scene(objs, noise_seed=int(rng.integers(2**31)), kind="partner_absent",
                 meta={"anchor": anchor, "absent_partner": partner})


def eval_scenes(world: WorldConfig, seed: int, n: int, partner_absent_share: float = 0.6) -> list[Scene]:
    """Held-out evaluation scenes (a separate stream from training): round(n * share) with the partner
    absent, spread evenly through the list so that any prefix (e.g. the images POPE questions cover)
    keeps about the same mix."""
    n_absent = int(round(n * partner_absent_share))
    scenes = []
    for i in range(n):
        rng = scene_rng(seed, i, stream=1)
        if (i + 1) * n_absent // n > i * n_absent // n:
            scenes.append(sample_partner_absent_scene(world, rng))
        else:
            sc = sample_scene(world, rng)
            sc.kind = "normal"
            scenes.append(sc)
    return scenes


def ordered(scene: Scene) -> list[SceneObject]:
    """Objects in caption order: reading order of their grid cells."""
    return sorted(scene.objects, key=lambda o: o.cell)
