"""The one prefill: a sample's leading input positions forwarded once without autograd into a KV cache.

Both the decoding loop (`saliency_lab.decoding.loop.CachedDecoder`, which prefills the whole input and reads the
logits predicting output step 0) and the teacher-forced saliency pass (`single_pass`, which prefills the o - 1
positions whose rows receive no gradient) start here, so state resets, image kwargs and the attention routing
of the prompt rows are decided in one place.

Attention routing: the prompt rows run on the model's stock sdpa unless some hook may act on them (a hook
without `acts_on_prompt = False`); then they run through our attention function with the hooks. The LocoRE,
decay and gradient hooks never touch queries before the first output position, so the usual prefill is sdpa.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from saliency_lab.saliency.attention import intervention_context, use_attention

if TYPE_CHECKING:
    from saliency_lab.models.base import ModelBundle, PreparedInput


@dataclass
class Prefilled:
    """What a prefill leaves: the KV cache, its length and the logits at the last prefilled position."""

    cache: Any
    length: int
    logits: torch.Tensor  # [V], predicts the token after the prefix


def hooks_act_on_prompt(hooks: Sequence[Any]) -> bool:
    """True when some hook does not declare `acts_on_prompt = False` (it may change prompt rows)."""
    return any(getattr(h, "acts_on_prompt", True) is not False for h in hooks)


def prefill(bundle: ModelBundle, prepared: PreparedInput, n: int, hooks: Sequence[Any] = ()) -> Prefilled:
    """Forward the first `n` input positions (n >= 1) without gradients; see the module docstring."""
    kwargs = bundle.adapter.forward_kwargs(prepared.model_kwargs, n)
    out = prefill_forward(bundle, prepared.input_ids[:, :n], kwargs, hooks)
    return Prefilled(bundle.adapter.output_cache(out), n, out.logits[0, -1])


def prefill_forward(
    bundle: ModelBundle, ids: torch.Tensor, kwargs: dict[str, Any], hooks: Sequence[Any] = ()
) -> Any:
    """The model output (KV cache, last position's logits) of ids [B, n] forwarded without gradients after the
    adapter's state reset; the rows of a batch share the hooks' routing (e.g. `batch.row_hooks`)."""
    model = bundle.model
    bundle.adapter.reset_state(model)
    routed: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if hooks_act_on_prompt(hooks):
        routed = _routed(bundle, list(hooks))
    with torch.no_grad(), routed:
        return model(input_ids=ids, **kwargs, use_cache=True, logits_to_keep=1)


@contextlib.contextmanager
def _routed(bundle: ModelBundle, hooks: list[Any]):
    with use_attention(bundle), intervention_context("plain", hooks):
        yield
