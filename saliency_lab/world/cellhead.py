"""Training-time auxiliary head: per-cell shape classification from the vision tower's patch features.

Captioning alone teaches a from-scratch CLIP tower colours and counts quickly but shapes only after a long
plateau (STACK-NOTES); a linear probe per grid cell, trained jointly, gives the tower a direct shape signal.
The head is used only while training: the shipped checkpoint is the plain LLaVA without it.
"""

from __future__ import annotations

import torch
from torch import nn

from saliency_lab.world.scenes import CATEGORIES, GRID, Scene

EMPTY = len(CATEGORIES)  # class of a cell without an object


def cell_targets(scenes: list[Scene]) -> torch.Tensor:
    """[B, GRID*GRID] class per cell: the category index of its object, or EMPTY."""
    out = torch.full((len(scenes), GRID * GRID), EMPTY, dtype=torch.long)
    for i, scene in enumerate(scenes):
        for o in scene.objects:
            out[i, o.cell] = CATEGORIES.index(o.category)
    return out


class CellHead(nn.Module):
    """Mean-pools the patch features of each cell, then one linear layer to the categories + EMPTY."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, len(CATEGORIES) + 1)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch features [B, n, D] pooled to one feature per grid cell: [B, GRID*GRID, D]."""
        b, n, d = patches.shape
        side = int(round(n ** 0.5))
        per = side // GRID
        x = patches.reshape(b, GRID, per, GRID, per, d).mean(dim=(2, 4))  # [B, GRID, GRID, D]
        return self.proj(self.norm(x.reshape(b, GRID * GRID, d)))


class VisionTap:
    """Keeps the vision tower's last hidden state (CLS dropped) of the current forward pass."""

    def __init__(self, vision_tower: nn.Module):
        self.patches: torch.Tensor | None = None
        self._handle = vision_tower.register_forward_hook(self._keep)

    def _keep(self, module, args, output) -> None:
        self.patches = output.last_hidden_state[:, 1:]

    def remove(self) -> None:
        """Detach the hook from the vision tower."""
        self._handle.remove()
