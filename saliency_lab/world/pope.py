"""POPE-style questions for world scenes: JSON lines {question_id, image, text, label}, with the three
negative-sampling splits of Li et al. 2023 — random, popular (most frequent categories) and adversarial
(categories that co-occur most with the ones present). Frequencies and co-occurrence come from the
world's *training* distribution, which is where the model's priors come from."""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from itertools import permutations

from saliency_lab.world.captions import question
from saliency_lab.world.scenes import CATEGORIES, Scene, WorldConfig, sample_scene, scene_rng

SPLITS = ("random", "popular", "adversarial")


@lru_cache(maxsize=8)
def training_statistics(world: WorldConfig, n: int = 3000, seed: int = 12345) -> tuple[Counter, Counter]:
    """Category frequency and ordered co-occurrence counts over n training-distribution scenes."""
    freq: Counter = Counter()
    co: Counter = Counter()
    for i in range(n):
        cats = sample_scene(world, scene_rng(seed, i, stream=3)).categories()
        freq.update(cats)
        co.update(permutations(cats, 2))
    return freq, co


def build_questions(scenes: list[Scene], image_names: list[str], world: WorldConfig, seed: int,
                    per_image: int = 3) -> list[dict]:
    """Up to `per_image` yes and as many no questions per image and split."""
    freq, co = training_statistics(world)
    popular = sorted(CATEGORIES, key=lambda c: (-freq[c], CATEGORIES.index(c)))
    rows = []
    qid = 1
    for split_no, split in enumerate(SPLITS):
        for k, (scene, name) in enumerate(zip(scenes, image_names, strict=True)):
            rng = scene_rng(seed, k, stream=10 + split_no)
            present = scene.categories()
            absent = [c for c in CATEGORIES if c not in present]
            m = min(per_image, len(present), len(absent))
            pos = [present[i] for i in sorted(rng.choice(len(present), size=m, replace=False))]
            if split == "random":
                neg = [absent[i] for i in sorted(rng.choice(len(absent), size=m, replace=False))]
            elif split == "popular":
                neg = [c for c in popular if c in absent][:m]
            else:
                score = {c: sum(co[(p, c)] for p in present) for c in absent}
                # ties broken at random so that zero-co-occurrence fillers are not always the same
                jitter = rng.random(len(absent))
                neg = [c for _, _, c in sorted((-score[c], jitter[i], c) for i, c in enumerate(absent))][:m]
            for cat, label in [(c, "yes") for c in pos] + [(c, "no") for c in neg]:
                rows.append({"question_id": qid, "image": name, "text": question(cat), "label": label,
                             "split": split, "category": cat})
                qid += 1
    return rows
