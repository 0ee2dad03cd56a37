"""The training-time cell head: targets follow the scene's grid cells, pooling follows the patch grid."""

from __future__ import annotations

import torch

from saliency_lab.world.cellhead import EMPTY, CellHead, cell_targets
from saliency_lab.world.scenes import (
    CATEGORIES,
    GRID,
    Scene,
    SceneObject,
    WorldConfig,
    sample_scene,
    scene_rng,
)


def test_cell_targets_by_hand():
    scene = Scene([SceneObject("moon", "red", 48.0, 16.0, 16.0, 0.0, cell=1),
                   SceneObject("bar", "blue", 16.0, 48.0, 16.0, 0.0, cell=2)], noise_seed=0)
    t = cell_targets([scene])
    assert t.tolist() == [[EMPTY, CATEGORIES.index("moon"), CATEGORIES.index("bar"), EMPTY]]


def test_cell_targets_of_generated_scenes_count_objects():
    scenes = [sample_scene(WorldConfig(), scene_rng(0, i)) for i in range(50)]
    t = cell_targets(scenes)
    assert ((t != EMPTY).sum(dim=1).tolist()) == [len(s.objects) for s in scenes]


def test_head_pools_each_cell_from_its_own_patches():
    side, width = 8, 6
    per = side // GRID
    patches = torch.zeros(1, side, side, width)
    for cell in range(GRID * GRID):
        r, c = divmod(cell, GRID)
        patches[0, r * per:(r + 1) * per, c * per:(c + 1) * per, cell] = 1.0  # cell k lights channel k
    head = CellHead(width)
    pooled = []
    head.norm.register_forward_hook(lambda m, a, o: pooled.append(a[0]))
    head(patches.reshape(1, side * side, width))
    expected = torch.zeros(GRID * GRID, width)
    expected[torch.arange(GRID * GRID), torch.arange(GRID * GRID)] = 1.0
    assert torch.equal(pooled[0][0], expected)
