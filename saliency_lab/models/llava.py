"""LLaVA (1.5 style): CLIP tower + projector + Llama/Vicuna; `<image>` expands to the patch tokens."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from saliency_lab.models.registry import register, tiny_recipe
from saliency_lab.models.vision import VisionAdapter

if TYPE_CHECKING:
    from saliency_lab.models.tokenizer_build import TokenizerStyle


@register("LlavaForConditionalGeneration")
class LlavaAdapter(VisionAdapter):
    """LLaVA: `<image>` placeholders, CLIP PIL image processor."""

    def load(self, path: Path, architecture: str, dtype: torch.dtype, device: str) -> tuple[Any, Any, Any]:
        """Model, tokenizer and the PIL-based processor from a local folder."""
        from transformers import (
            AutoTokenizer,
            CLIPImageProcessorPil,
            LlavaForConditionalGeneration,
            LlavaProcessor,
        )

        model = LlavaForConditionalGeneration.from_pretrained(
            path, dtype=dtype, local_files_only=True, attn_implementation="sdpa"
        )
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        # The PIL image processor avoids a torchvision dependency.
        ip = CLIPImageProcessorPil.from_pretrained(path, local_files_only=True)
        proc = LlavaProcessor.from_pretrained(path, image_processor=ip, tokenizer=tok, local_files_only=True)
        # transformers wraps `to` with functools.wraps(Module.to), whose stub type wants `self` passed explicitly
        return model.to(device).eval(), tok, proc  # type: ignore[arg-type]


@tiny_recipe("llava", "LlavaForConditionalGeneration", vision=True)
def _tiny_llava(style: TokenizerStyle):
    import transformers as tf

    from saliency_lab.models.tiny import LLAVA_TEMPLATE, text_kwargs, token_id
    from saliency_lab.models.tokenizer_build import build_tokenizer

    tok = build_tokenizer(style, ["<image>"], image_token="<image>")
    template = LLAVA_TEMPLATE.replace("IMAGE", "<image>\n")
    image_id = token_id(tok, "<image>")
    vision = tf.CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=56,
        patch_size=14,
        projection_dim=32,
    )
    cfg = tf.LlavaConfig(
        vision_config=vision,
        text_config=tf.LlamaConfig(**text_kwargs(tok)),
        image_token_index=image_id,  # `image_token_id` is its attribute alias
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=16,
        tie_word_embeddings=False,
    )
    ip = tf.CLIPImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    proc = tf.LlavaProcessor(
        image_processor=ip,
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=template,
        image_token="<image>",
    )
    tok.chat_template = template
    return tf.LlavaForConditionalGeneration(cfg), tok, proc
