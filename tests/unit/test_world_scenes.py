"""The scene world's generator: determinism, caption/annotation consistency, the designed priors."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from saliency_lab.world.captions import caption
from saliency_lab.world.render import object_mask, render
from saliency_lab.world.scenes import (
    ANCHOR_OF_PARTNER,
    CATEGORIES,
    GRID,
    PAIRS,
    SceneObject,
    WorldConfig,
    eval_scenes,
    sample_scene,
    scene_rng,
)

WORLD = WorldConfig()
CAPTION_RE = re.compile(r"^(an? \w+ \w+)( , an? \w+ \w+)*( and an? \w+ \w+)? \.$")


def _caption_objects(text: str) -> list[tuple[str, str]]:
    """(colour, category) pairs parsed from a caption by a regex, independently of captions.py."""
    return re.findall(r"\ban? (\w+) (\w+)", text)


def test_same_seed_same_scene_and_pixels():
    a = sample_scene(WORLD, scene_rng(3, 17))
    b = sample_scene(WORLD, scene_rng(3, 17))
    assert a.to_json() == b.to_json()
    ia, ba = render(a, WORLD)
    ib, bb = render(b, WORLD)
    assert np.array_equal(np.asarray(ia), np.asarray(ib)) and ba == bb
    assert sample_scene(WORLD, scene_rng(4, 17)).to_json() != a.to_json()


def test_scene_does_not_depend_on_earlier_scenes():
    direct = sample_scene(WORLD, scene_rng(0, 9)).to_json()
    for i in range(9):
        sample_scene(WORLD, scene_rng(0, i))
    assert sample_scene(WORLD, scene_rng(0, 9)).to_json() == direct


def test_captions_match_scene_objects_both_ways():
    for i in range(300):
        scene = sample_scene(WORLD, scene_rng(1, i))
        text = caption(scene)
        assert CAPTION_RE.match(text), text
        said = _caption_objects(text)
        assert sorted(said) == sorted((o.colour, o.category) for o in scene.objects)
        assert len({c for _, c in said}) == len(said)  # one object per category
        assert WORLD.min_objects <= len(said) <= WORLD.max_objects


def test_partner_follows_anchor_in_caption_order():
    for i in range(300):
        cats = [c for _, c in _caption_objects(caption(sample_scene(WORLD, scene_rng(2, i))))]
        for a, p in PAIRS.items():
            if a in cats and p in cats:
                assert cats.index(p) == cats.index(a) + 1


def test_one_object_per_cell_and_caption_in_reading_order():
    cell_px = WORLD.image_size / GRID

    def cell_of(o) -> int:  # recomputed from the pixels, not taken from the generator
        row, col = (min(GRID - 1, int(v // cell_px)) for v in (o.cy, o.cx))
        return row * GRID + col

    for i in range(300):
        scene = sample_scene(WORLD, scene_rng(8, i))
        cells = [cell_of(o) for o in scene.objects]
        assert len(set(cells)) == len(cells)
        assert cells == [o.cell for o in scene.objects]
        said = [c for _, c in _caption_objects(caption(scene))]
        assert said == [o.category for o in sorted(scene.objects, key=cell_of)]


def test_partners_sometimes_alone_and_anchors_usually_first():
    alone, anchor_first, pairs = 0, 0, 0
    for i in range(2000):
        scene = sample_scene(WORLD, scene_rng(9, i))
        cats = scene.categories()
        for p, a in ANCHOR_OF_PARTNER.items():
            if p in cats and a not in cats:
                alone += 1
            if p in cats and a in cats:
                pairs += 1
                anchor_first += cats.index(a) < cats.index(p)
    assert pairs > 300 and anchor_first == pairs
    assert 20 < alone < pairs / 3


def test_pair_probability_as_designed():
    anchor_n, both_n, other = Counter(), Counter(), Counter()
    n = 4000
    for i in range(n):
        cats = set(sample_scene(WORLD, scene_rng(5, i)).categories())
        for a, p in PAIRS.items():
            if a in cats:
                anchor_n[a] += 1
                both_n[a] += p in cats
        for c in cats:
            other[c] += 1
    for a in PAIRS:
        assert anchor_n[a] > 150
        assert both_n[a] / anchor_n[a] >= 0.95, (a, both_n[a], anchor_n[a])
    # a non-pair category co-occurs with the anchor far less often than its partner does
    assert other["triangle"] / n < 0.5


def test_eval_scenes_have_anchor_without_partner():
    scenes = eval_scenes(WORLD, seed=11, n=50, partner_absent_share=0.6)
    kinds = Counter(s.kind for s in scenes)
    assert kinds == {"partner_absent": 30, "normal": 20}
    for s in scenes:
        if s.kind == "partner_absent":
            cats = s.categories()
            assert s.meta["anchor"] in cats and s.meta["absent_partner"] not in cats
            assert PAIRS[s.meta["anchor"]] == s.meta["absent_partner"]
    # spread evenly: a prefix (the images POPE covers) keeps the mix
    assert [s.kind for s in scenes[:10]].count("partner_absent") == 6
    train = {sample_scene(WORLD, scene_rng(11, i)).to_json()["noise_seed"] for i in range(50)}
    assert not train & {s.noise_seed for s in scenes}


def test_some_objects_are_degraded():
    deg = Counter()
    for i in range(500):
        for o in sample_scene(WORLD, scene_rng(6, i)).objects:
            deg[o.degradation] += 1
    total = sum(deg.values())
    assert 0.15 < 1 - deg[None] / total < 0.6
    assert all(deg[d] > 0 for d in ("tiny", "faint", "blur", "cut"))


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_category_draws_distinct_pixels(category):
    obj = SceneObject(category, "red", 32.0, 32.0, 20.0, 0.0)
    m = object_mask(obj, 64)
    assert m.sum() > 20
    others = [object_mask(SceneObject(c, "red", 32.0, 32.0, 20.0, 0.0), 64) for c in CATEGORIES if c != category]
    assert all(np.abs(m - o).sum() > 10 for o in others)


def test_bboxes_inside_image_and_cover_the_object():
    for i in range(40):
        scene = sample_scene(WORLD, scene_rng(7, i))
        _, boxes = render(scene, WORLD)
        assert len(boxes) == len(scene.objects)
        for o, (x, y, w, h) in zip(scene.objects, boxes, strict=True):
            assert 0 <= x and 0 <= y and w > 0 and h > 0
            assert x + w <= WORLD.image_size and y + h <= WORLD.image_size
            if o.degradation != "cut":
                assert x - 1 <= o.cx <= x + w + 1 and y - 1 <= o.cy <= y + h + 1
