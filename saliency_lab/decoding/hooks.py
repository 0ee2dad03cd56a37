"""Attention hooks for decoding-time interventions (LocoRE, saliency decay).

`intervention_hooks` turns a DecodingConfig into the list of hooks the attention function applies. The capture
engine asks for them once per sample, knowing where the output starts, and keeps them active both while generating
and in its teacher-forced saliency pass, so the recorded saliency reflects the modified attention the generation
used. Each hook has an `on_logits` attribute: False hooks act on post-softmax probabilities, True hooks on masked
pre-softmax scores; `saliency_lab.saliency.attention.intervention_context(mode, hooks)` sends each to its place.
`acts_on_prompt = False` tells the decoding loop that the prefill (prompt rows only) may run on sdpa.
"""

from __future__ import annotations

from typing import Any

from saliency_lab.config import DecodingConfig
from saliency_lab.decoding.decay import SaliencyDecayConfig, SaliencyDecayHook
from saliency_lab.decoding.locore import LocoREHook


def intervention_hooks(
    decoding: DecodingConfig, output_start: int, decay: SaliencyDecayConfig | None = None
) -> list:
    """Hooks for the attention function; empty when no intervention is configured (beta 0, no decay)."""
    hooks: list[Any] = []
    if decoding.locore.beta != 0:
        hooks.append(LocoREHook(decoding.locore, output_start))
    if decay is not None and decay.active:
        hooks.append(SaliencyDecayHook(decay, output_start))
    return hooks

