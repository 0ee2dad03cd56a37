"""The world's word-level tokenizer: a closed vocabulary (every word the captions, prompts and POPE questions
use, plus the synonym table's words), built with `tokenizers` and wrapped in PreTrainedTokenizerFast."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from saliency_lab.world.scenes import CATEGORIES, COLOURS

PAD, BOS, EOS, UNK, IMAGE = "<pad>", "<s>", "</s>", "<unk>", "<image>"
SPECIALS = [PAD, BOS, EOS, UNK, IMAGE]

# Words of the template, the prompts, captions and answers.
BASE_WORDS = [
    "user", "assistant", ":", ".", ",", "?",
    "describe", "the", "image", "is", "there", "a", "an", "in", "and", "yes", "no", "of", "picture", "what",
]

# Synonyms and plurals, in the CHAIR synonym-table format: category first. Kept here so the tokenizer knows
# every word the table can match (the model only ever writes the category names).
SYNONYMS: dict[str, list[str]] = {
    "star": ["stars"],
    "moon": ["moons", "crescent", "crescents"],
    "heart": ["hearts"],
    "arrow": ["arrows"],
    "square": ["squares", "box", "boxes"],
    "cross": ["crosses", "plus"],
    "circle": ["circles", "disc", "dot"],
    "ring": ["rings", "donut"],
    "triangle": ["triangles"],
    "diamond": ["diamonds", "rhombus"],
    "hexagon": ["hexagons"],
    "bar": ["bars", "stripe", "stripes"],
}

# "USER: <image>\nprompt ASSISTANT: answer</s>" in the world's words. Content may be a string or a list of
# {"type": "image"} / {"type": "text", "text": ...} parts, as in the transformers chat-template convention.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}user :"
    "{% if message['content'] is string %} {{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %} <image>{% elif part['type'] == 'text' %} {{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% elif message['role'] == 'assistant' %} assistant :"
    "{% if message['content'] is string %} {{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %} {{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %} </s>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %} assistant :{% endif %}"
)


def vocabulary() -> list[str]:
    """The word-level vocabulary: specials, base words, colours, categories, synonyms, each once in that
    order."""
    words = list(SPECIALS) + BASE_WORDS + list(COLOURS) + list(CATEGORIES)
    for syns in SYNONYMS.values():
        words += [w for w in syns if w not in words]
    seen: list[str] = []
    for w in words:
        if w not in seen:
            seen.append(w)
    return seen


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The scene world's word-level tokenizer (lower-cased, BOS prepended), wrapped for transformers."""
    vocab = {w: i for i, w in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    # \w+ runs and single punctuation marks: "image." -> "image", "."
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    # Joins words with spaces and removes the space before punctuation on decode.
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    tok.add_special_tokens(SPECIALS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE},
        chat_template=CHAT_TEMPLATE,
        model_max_length=256,
        padding_side="left",
    )
    return fast


def synonyms_text() -> str:
    """The synonym table in the CHAIR file format: `category, syn1, syn2, ...` per line."""
    return "".join(", ".join([c] + SYNONYMS[c]) + "\n" for c in CATEGORIES)
