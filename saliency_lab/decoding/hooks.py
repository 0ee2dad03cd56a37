"""The interventions a DecodingConfig asks for, as decoding observers and attention hooks.

`observers_for` turns the config into the observers `decode` runs (LocoRE, the saliency decay); their hooks stay
active in every forward of the loop and, through `DecodeResult.hooks`, in capture's teacher-forced saliency pass,
so the recorded saliency reflects the modified attention the generation used. Each hook has an `on_logits`
attribute: False hooks act on post-softmax probabilities, True hooks on masked pre-softmax scores;
`saliency_lab.saliency.attention.intervention_context(mode, hooks)` sends each to its place.
`acts_on_prompt = False` tells the prefill that the prompt rows may run on sdpa.
"""

from __future__ import annotations

from typing import Any

from saliency_lab.config import DecodingConfig
from saliency_lab.decoding.decay import DecayObserver, SaliencyDecayHook
from saliency_lab.decoding.locore import LocoREHook
from saliency_lab.decoding.protocols import DecodeObserver, HookObserver


def observers_for(decoding: DecodingConfig, output_start: int, n_layers: int) -> list[DecodeObserver]:
    """LocoRE when beta != 0, the decay when active (its online rule defaults to the upper half of n_layers)."""
    observers: list[DecodeObserver] = []
    if decoding.locore.beta != 0:
        observers.append(HookObserver([LocoREHook(decoding.locore, output_start)]))
    if decoding.decay.active:
        observers.append(DecayObserver(decoding.decay, output_start, n_layers))
    return observers


def intervention_hooks(decoding: DecodingConfig, output_start: int) -> list[Any]:
    """The attention hooks of the configured interventions before decoding starts (fixed decay steps included,
    none chosen by the online rule yet); empty when none is configured."""
    hooks: list[Any] = []
    if decoding.locore.beta != 0:
        hooks.append(LocoREHook(decoding.locore, output_start))
    if decoding.decay.active:
        hooks.append(SaliencyDecayHook(decoding.decay, output_start))
    return hooks
