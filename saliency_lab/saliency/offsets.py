"""Token texts and character spans of generated tokens, by incremental decoding.

`token_spans` guarantees: output_text == "".join(texts) and output_text[start:end] == text for every token.
Works for byte-level BPE and SentencePiece/Metaspace tokenizers because it only uses `decode(prefix)`:
each token's text is what its id adds to the decoded prefix. A multi-byte character split across tokens
decodes to U+FFFD until its last byte arrives, so the character is assigned to the token that completes it
(earlier tokens of the character get ''). Special tokens (EOS, ...) get '' and an empty span.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

REPLACEMENT = "\ufffd"


@dataclass
class TokenSpans:
    output_text: str
    texts: list[str]
    starts: list[int]
    ends: list[int]


def token_spans(ids: Sequence[int], decode: Callable[[list[int]], str], special_ids: Collection[int]) -> TokenSpans:
    """Split the decoded output into per-token pieces (see module docstring)."""
    kept: list[int] = []
    committed = ""
    texts: list[str] = []
    last_text_token = -1
    for i, tid in enumerate(ids):
        if tid in special_ids:
            texts.append("")
            continue
        kept.append(int(tid))
        cur = decode(kept)
        stable = cur.rstrip(REPLACEMENT)  # an incomplete multi-byte character is still pending
        if stable.startswith(committed):
            piece = stable[len(committed):]
            committed = stable
        else:
            # The decoder rewrote earlier text (rare: space clean-up rules); keep what is committed and
            # attach nothing here, the final flush assigns the remainder.
            piece = ""
        texts.append(piece)
        last_text_token = i
    if kept:
        final = decode(kept)
        if final.startswith(committed) and len(final) > len(committed):
            # Bytes that never completed a character (trailing U+FFFD) belong to the last text token.
            texts[last_text_token] += final[len(committed):]
    output_text = "".join(texts)
    starts, ends, pos = [], [], 0
    for t in texts:
        starts.append(pos)
        pos += len(t)
        ends.append(pos)
    return TokenSpans(output_text, texts, starts, ends)


def tokenizer_decode(tokenizer) -> Callable[[list[int]], str]:
    """decode() for `token_spans` with no clean-up rewrites, so prefixes stay stable."""

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    return decode
