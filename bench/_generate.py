"""The plain-generate baseline the capture benches compare against: transformers' own greedy `generate`."""

from __future__ import annotations

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
