"""Text-only decoder LMs whose attention follows the standard transformers interface (no logit soft-capping),
with their tiny-model recipes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from saliency_lab.models.base import ModelAdapter
from saliency_lab.models.registry import register, tiny_recipe

if TYPE_CHECKING:
    from saliency_lab.models.tokenizer_build import TokenizerStyle


@register("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM", "Qwen3ForCausalLM")
class CausalLMAdapter(ModelAdapter):
    """The base adapter's defaults fit these families as they are."""


def _tiny_text(style: TokenizerStyle, config_class: str, model_class: str, chatml: bool, **extra: Any):
    import transformers as tf

    from saliency_lab.models.tiny import CHATML_TEMPLATE, LLAVA_TEMPLATE, QWEN_SPECIALS, text_kwargs
    from saliency_lab.models.tokenizer_build import build_tokenizer

    tok = build_tokenizer(style, QWEN_SPECIALS if chatml else [])
    tok.chat_template = CHATML_TEMPLATE if chatml else LLAVA_TEMPLATE.replace("IMAGE", "")
    cfg = getattr(tf, config_class)(**text_kwargs(tok), **extra)
    return getattr(tf, model_class)(cfg), tok, None


@tiny_recipe("llama", "LlamaForCausalLM")
def _tiny_llama(style: TokenizerStyle):
    return _tiny_text(style, "LlamaConfig", "LlamaForCausalLM", chatml=False)


@tiny_recipe("mistral", "MistralForCausalLM")
def _tiny_mistral(style: TokenizerStyle):
    return _tiny_text(style, "MistralConfig", "MistralForCausalLM", chatml=False, sliding_window=None)


@tiny_recipe("qwen2", "Qwen2ForCausalLM")
def _tiny_qwen2(style: TokenizerStyle):
    return _tiny_text(style, "Qwen2Config", "Qwen2ForCausalLM", chatml=True)


@tiny_recipe("qwen3", "Qwen3ForCausalLM")
def _tiny_qwen3(style: TokenizerStyle):
    from saliency_lab.models.tiny import HEADS, HIDDEN

    # Qwen3 sets head_dim explicitly (default 128) and normalizes q/k per head before attention.
    return _tiny_text(style, "Qwen3Config", "Qwen3ForCausalLM", chatml=True, head_dim=HIDDEN // HEADS)
