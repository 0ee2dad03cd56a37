"""Small tokenizers trained locally (no hub) for tiny test/demo models.

Two styles so offset handling is exercised on both: byte-level BPE (GPT-2/Llama-3/Qwen style) and a
SentencePiece-like BPE with a Metaspace (U+2581) pre-tokenizer and byte fallback (Llama-2/LLaVA-1.5 style).
"""

from __future__ import annotations

import json
from typing import Literal

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

TokenizerStyle = Literal["bytelevel", "metaspace"]

# A built-in English snippet (written for this project) plus a few non-ASCII words so multi-byte
# characters occur in training text and in tests.
CORPUS = """
A small red cube sits on the left of a blue sphere. The green cylinder is behind the yellow cone.
There is a cat on the table and a dog under the chair. Two people are walking along the beach at sunset.
A man rides a bicycle down the street, passing a bus and a traffic light. The kitchen has a sink, an oven
and a refrigerator. A woman holds an umbrella in the rain while a child plays with a kite in the park.
The image shows a plate with a sandwich, a cup of coffee and a fork. A train stops at the station.
Describe the image in detail. What objects are in the picture? Is there a person in the image? Answer yes
or no. The photo shows a room with a bed, a lamp and a window. Birds fly over the water near a boat.
Café, naïve, über, déjà vu, 東京, 日本語, emoji 🙂 and the end.
"""

SPECIAL_BASE = ["<unk>", "<s>", "</s>", "<pad>"]


def _train(style: TokenizerStyle, specials: list[str], vocab_size: int) -> Tokenizer:
    if style == "bytelevel":
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    elif style == "metaspace":
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
        tok.normalizer = normalizers.Sequence([])
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
        tok.decoder = decoders.Sequence(
            [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
        )
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=specials, show_progress=False, limit_alphabet=60
        )
    else:  # pragma: no cover - guarded by callers
        raise ValueError(style)
    tok.train_from_iterator([CORPUS] * 2, trainer=trainer)
    if style == "metaspace":
        # Byte-fallback pieces <0x00>..<0xFF> are ordinary vocabulary entries (as in SentencePiece), so any
        # character is encodable and decoding them is not "special".
        data = json.loads(tok.to_str())
        vocab = data["model"]["vocab"]
        for b in range(256):
            vocab.setdefault(f"<0x{b:02X}>", len(vocab))
        tok = Tokenizer.from_str(json.dumps(data))
    return tok


def build_tokenizer(
    style: TokenizerStyle, extra_specials: list[str], *, vocab_size: int = 400, **attrs: object
) -> PreTrainedTokenizerFast:
    """Train a tokenizer and wrap it; `attrs` become tokenizer attributes (e.g. image_token)."""
    specials = SPECIAL_BASE + [s for s in extra_specials if s not in SPECIAL_BASE]
    tok = _train(style, specials, vocab_size)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens=[s for s in extra_specials if s not in SPECIAL_BASE],
        **attrs,
    )
