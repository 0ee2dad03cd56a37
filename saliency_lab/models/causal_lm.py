"""Text-only decoder LMs whose attention follows the standard transformers interface (no logit soft-capping)."""

from __future__ import annotations

from saliency_lab.models.base import ModelAdapter
from saliency_lab.models.registry import register


@register("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM", "Qwen3ForCausalLM")
class CausalLMAdapter(ModelAdapter):
    pass
