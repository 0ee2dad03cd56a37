"""What the batch benches share: the plain-generate baseline (transformers' own greedy `generate`) and a probe of
how many rows the model's forwards really carried."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def greedy_config(bundle: Any, max_new_tokens: int) -> Any:
    """A greedy GenerationConfig that stops and suppresses as the toolkit's decoding does (the model's own
    generation defaults, e.g. a repetition penalty, are ignored), so both produce the same tokens."""
    from transformers import GenerationConfig

    eos = bundle.adapter.eos_token_ids(bundle)
    pad = bundle.tokenizer.pad_token_id
    suppress = list(bundle.adapter.suppressed_token_ids(bundle))
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        num_beams=1,
        do_sample=False,
        eos_token_id=eos or None,
        pad_token_id=pad if pad is not None else (eos[0] if eos else None),
        repetition_penalty=1.0,
        suppress_tokens=suppress or None,
    )


def until_eos(ids: list[int], eos: list[int]) -> list[int]:
    """A generated row cut after its first end-of-sequence token (what follows is the batch's padding)."""
    for i, t in enumerate(ids):
        if t in eos:
            return ids[: i + 1]
    return ids


@contextlib.contextmanager
def widest_forward(model: Any) -> Iterator[list[int]]:
    """Yields a one-item list that ends up holding the most rows any forward of `model` carried inside the block.
    capture_batch silently redoes a failing group sample by sample, so this is what shows a batch really ran."""
    widest = [0]

    def seen(_module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            widest[0] = max(widest[0], int(ids.shape[0]))

    handle = model.register_forward_pre_hook(seen, with_kwargs=True)
    try:
        yield widest
    finally:
        handle.remove()
