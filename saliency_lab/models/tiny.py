"""Tiny random models built from configs (no hub), saved as ordinary model directories.

`build_tiny("llava", out)` writes a folder that `load_model` (and `saliency-lab capture --model out`) loads
like any real checkpoint: weights, config, tokenizer with a chat template, processor for VLMs. The models are
untrained (random weights) and exist for tests, docs and benchmarks. Each family's recipe sits beside its adapter
(`registry.tiny_recipe`); this module holds the shared parts (sizes, chat templates) and the saving. Shapes: hidden 64, 2 layers, 4 query heads,
2 KV heads (GQA), so the exactness tests cover grouped-query attention.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from saliency_lab.errors import SaliencyLabError
from saliency_lab.models.registry import tiny_recipes
from saliency_lab.models.tokenizer_build import TokenizerStyle

_CONTENT = (
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}IMAGE{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
)

# Llama-2 / LLaVA-1.5 flavoured template ("USER: <image>\n... ASSISTANT:").
LLAVA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}" + _CONTENT + "{{ ' ' }}"
    "{% elif m['role'] == 'user' %}USER: " + _CONTENT + "{{ ' ' }}"
    "{% else %}ASSISTANT: " + _CONTENT + "{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n" + _CONTENT + "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

QWEN_SPECIALS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                 "<|video_pad|>"]
INTERNVL_SPECIALS = ["<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]

HIDDEN, LAYERS, HEADS, KV_HEADS, INTER = 64, 2, 4, 2, 128


def tiny_names() -> list[str]:
    """Names `build_tiny` / `saliency-lab tiny-model --arch` accept: one recipe per registered architecture."""
    return list(tiny_recipes())


def token_id(tok: Any, token: str) -> int:
    """The id of one token (transformers types the lookup as `int | list[int]`, a list only for a list)."""
    i = tok.convert_tokens_to_ids(token)
    if not isinstance(i, int):
        raise TypeError(f"token {token!r} has no single id: {i!r}")
    return i


def text_kwargs(tok: Any, max_pos: int = 1024) -> dict:
    """Config kwargs of a tiny text model (sizes above, GQA, special ids of `tok`)."""
    return dict(
        vocab_size=len(tok), hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=max_pos,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )


def build_tiny(arch: str, out_dir: str | Path, *, seed: int = 0, dtype: torch.dtype = torch.float32,
               tokenizer: TokenizerStyle = "bytelevel") -> Path:
    """Build the tiny random model of recipe `arch` (see `tiny_names()`) and save it (model + tokenizer/processor)
    into `out_dir`."""
    recipes = tiny_recipes()
    if arch not in recipes:
        raise SaliencyLabError(f"unknown tiny architecture {arch!r}; choose one of: {', '.join(recipes)}")
    if tokenizer not in ("bytelevel", "metaspace"):
        raise SaliencyLabError(f"unknown tokenizer style {tokenizer!r}; choose bytelevel or metaspace")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model, tok, proc = recipes[arch].build(tokenizer)
    model = model.to(dtype).eval()
    eos = [tok.eos_token_id]
    if "<|im_end|>" in tok.get_vocab():
        eos.insert(0, tok.convert_tokens_to_ids("<|im_end|>"))
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    if proc is not None:
        proc.save_pretrained(out)
    return out
