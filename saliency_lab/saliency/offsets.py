"""Token texts and character spans of generated tokens, by incremental decoding.

`token_spans` guarantees: output_text == "".join(texts) and output_text[start:end] == text for every token.
Works for byte-level BPE and SentencePiece/Metaspace tokenizers because it only uses `decode(prefix)`:
each token's text is what its id adds to the decoded prefix, measured against the decoded whole. A multi-byte
character split across tokens decodes to U+FFFD until its last byte arrives, so the character is assigned to the
token that completes it (earlier tokens of the character get ''). Special tokens (EOS, ...) get '' and an empty span.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass


@dataclass
class TokenSpans:
    """Each output token's text and [start, end) character span in the decoded output text."""

    output_text: str
    texts: list[str]
    starts: list[int]
    ends: list[int]


def _common_prefix_len(a: str, b: str, hint: int) -> int:
    """len of the longest common prefix of a and b; `hint` is a guess that is usually a lower bound."""
    k = min(hint, len(a), len(b))
    if a[:k] != b[:k]:
        k = 0
    while k < len(a) and k < len(b) and a[k] == b[k]:
        k += 1
    return k


def token_spans(ids: Sequence[int], decode: Callable[[list[int]], str], special_ids: Collection[int]) -> TokenSpans:
    """Split the decoded output into per-token pieces (see module docstring).

    output_text is decode(all non-special ids). Token k ends where decode(ids[:k+1]) stops agreeing with
    output_text (running maximum, so spans never go backwards). A token whose bytes are not yet a full
    character, or whose text a later token rewrites (e.g. byte-fallback groups decoded together), gets ''
    and the text goes to the token that settles it.
    """
    kept = [int(t) for t in ids if t not in special_ids]
    final = decode(kept) if kept else ""
    ends: list[int] = []
    prefix: list[int] = []
    end = 0
    last_text = -1
    for i, tid in enumerate(ids):
        if tid not in special_ids:
            prefix.append(int(tid))
            cur = decode(prefix)
            end = max(end, _common_prefix_len(final, cur, end))
            last_text = i
        ends.append(end)
    if last_text >= 0:
        for i in range(last_text, len(ids)):  # everything left belongs to the last text token
            ends[i] = len(final)
    starts = [0] + ends[:-1] if ends else []
    texts = [final[s:e] for s, e in zip(starts, ends, strict=True)]
    for i, tid in enumerate(ids):
        if tid in special_ids:  # special tokens keep an empty span at the current position
            starts[i] = ends[i]
    return TokenSpans(final, texts, starts, ends)


def tokenizer_decode(tokenizer) -> Callable[[list[int]], str]:
    """decode() for `token_spans` with no clean-up rewrites, so prefixes stay stable."""

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    return decode
