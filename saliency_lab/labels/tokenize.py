"""Offline word tokenization with character spans, for CHAIR.

Sentence split with an untrained Punkt tokenizer (no NLTK data download), then NLTK's Treebank-style word
tokenizer inside each sentence. Splitting into sentences first matters: the word tokenizer only splits a
period off the end of its input, so "table. A dog" would otherwise keep "table." glued.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Word:
    """A word of a caption and its character span."""

    text: str  # lower-cased surface form, == lowered_caption[start:end]
    start: int
    end: int


def lower_keep_length(text: str) -> str:
    """Lower-case `text` without changing its length, so character offsets stay valid.

    A few characters lower-case to two code points (e.g. 'İ'); those are kept as they are.
    """
    out = text.lower()
    if len(out) == len(text):
        return out
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


@lru_cache(maxsize=1)
def _tokenizers():
    from nltk.tokenize import NLTKWordTokenizer, PunktSentenceTokenizer

    return PunktSentenceTokenizer(), NLTKWordTokenizer()


def word_spans(text: str) -> list[Word]:
    """Lower-case `text` and split it into words with [start, end) character spans into `text`."""
    lowered = lower_keep_length(text)
    sent_tok, word_tok = _tokenizers()
    words: list[Word] = []
    for s0, s1 in sent_tok.span_tokenize(lowered):
        sentence = lowered[s0:s1]
        try:
            spans = list(word_tok.span_tokenize(sentence))
        except ValueError:
            # NLTK's span alignment can fail on rare quote patterns; whitespace-and-punctuation split instead
            spans = _fallback_spans(sentence)
        for a, b in spans:
            words.append(Word(sentence[a:b], s0 + a, s0 + b))
    return words


def _fallback_spans(sentence: str) -> list[tuple[int, int]]:
    import re

    return [(m.start(), m.end()) for m in re.finditer(r"\w+(?:[-']\w+)*|[^\w\s]", sentence)]
