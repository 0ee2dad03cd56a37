"""The plain step policies: greedy (argmax) and top-k / temperature sampling (docs/interventions.md).

Sampling draws with `selection.draw_index` from the per-sample generator, exactly like SGRS's first draw, which is
what makes `--strategy sample` the paired control of an SGRS run with the same seed and K.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from saliency_lab.config import DecodingConfig
from saliency_lab.decoding.protocols import StepContext, register_policy
from saliency_lab.decoding.result import DecodeResult
from saliency_lab.decoding.selection import draw_index, top_k_candidates

if TYPE_CHECKING:
    from saliency_lab.models.base import ModelBundle


class GreedyPolicy:
    """The most probable token (ties to the lowest id, like `generate`)."""

    def grad_layers(self) -> list[int]:
        """None: greedy reads no saliency."""
        return []

    def likely_requests(self, ctx: StepContext) -> list[int]:
        """None: greedy reads no saliency."""
        return []

    def choose(self, ctx: StepContext) -> int:
        """argmax of the step's logits (never-emit ids excluded)."""
        return int(torch.argmax(ctx.selection_logits()))

    def finish(self, result: DecodeResult) -> None:
        """Nothing to add."""


class SamplePolicy:
    """One draw from the top-k of softmax(logits / temperature); k = 0 means the full vocabulary."""

    def __init__(self, top_k: int, temperature: float) -> None:
        self.top_k = int(top_k)
        self.temperature = float(temperature)

    def grad_layers(self) -> list[int]:
        """None: sampling reads no saliency."""
        return []

    def likely_requests(self, ctx: StepContext) -> list[int]:
        """None: sampling reads no saliency."""
        return []

    def choose(self, ctx: StepContext) -> int:
        """A seeded draw among the step's top-k candidates."""
        sel = ctx.selection_logits()
        cands = top_k_candidates(sel, self.top_k if self.top_k > 0 else sel.numel(), self.temperature)
        return cands.ids[draw_index(cands.probs, ctx.generator)]

    def finish(self, result: DecodeResult) -> None:
        """Nothing to add."""


@register_policy("greedy")
def greedy_policy(bundle: ModelBundle, cfg: DecodingConfig) -> GreedyPolicy:
    """Policy of `--strategy greedy`."""
    return GreedyPolicy()


@register_policy("sample")
def sample_policy(bundle: ModelBundle, cfg: DecodingConfig) -> SamplePolicy:
    """Policy of `--strategy sample` (`--top-k`, `--temperature`)."""
    return SamplePolicy(cfg.top_k, cfg.temperature)
