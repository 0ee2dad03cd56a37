"""InternVL (HF-native InternVLForConditionalGeneration): `<IMG_CONTEXT>` expands to `<img>` + N context
tokens + `</img>`. The `<img>`/`</img>` markers count as system/prompt by their side (docs/capture.md, "Models
and adapters")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from saliency_lab.models.registry import register, tiny_recipe
from saliency_lab.models.vision import VisionAdapter

if TYPE_CHECKING:
    from saliency_lab.models.tokenizer_build import TokenizerStyle


@register("InternVLForConditionalGeneration")
class InternVLAdapter(VisionAdapter):
    """InternVL: `<IMG_CONTEXT>` placeholders, GotOcr2 PIL image processor."""

    def load(self, path: Path, architecture: str, dtype: torch.dtype, device: str) -> tuple[Any, Any, Any]:
        """Model, tokenizer and the PIL-based processor from a local folder."""
        from transformers import AutoTokenizer, GotOcr2ImageProcessorPil, InternVLForConditionalGeneration

        from saliency_lab.models.processors import ImageOnlyInternVLProcessor

        model = InternVLForConditionalGeneration.from_pretrained(
            path, dtype=dtype, local_files_only=True, attn_implementation="sdpa"
        )
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        ip = GotOcr2ImageProcessorPil.from_pretrained(path, local_files_only=True)
        seq = int(getattr(model.config, "image_seq_length", 256))
        pc = Path(path) / "processor_config.json"
        if pc.is_file():
            seq = int(json.loads(pc.read_text()).get("image_seq_length", seq))
        proc = ImageOnlyInternVLProcessor(image_processor=ip, tokenizer=tok, image_seq_length=seq,
                                          chat_template=tok.chat_template)
        # transformers wraps `to` with functools.wraps(Module.to), whose stub type wants `self` passed explicitly
        return model.to(device).eval(), tok, proc  # type: ignore[arg-type]


@tiny_recipe("internvl", "InternVLForConditionalGeneration", vision=True)
def _tiny_internvl(style: TokenizerStyle):
    import transformers as tf

    from saliency_lab.models.processors import ImageOnlyInternVLProcessor
    from saliency_lab.models.tiny import CHATML_TEMPLATE, INTERNVL_SPECIALS, text_kwargs, token_id
    from saliency_lab.models.tokenizer_build import build_tokenizer

    tok = build_tokenizer(style, INTERNVL_SPECIALS, start_image_token="<img>", end_image_token="</img>",
                          context_image_token="<IMG_CONTEXT>", video_token="<video>")
    template = CHATML_TEMPLATE.replace("IMAGE", "<IMG_CONTEXT>\n")
    vision = tf.InternVLVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                     image_size=[56, 56], patch_size=[14, 14])
    # 56/14 = 4x4 patches, pixel-shuffle downsample 0.5 -> 4 image tokens.
    cfg = tf.InternVLConfig(vision_config=vision, text_config=tf.Qwen2Config(**text_kwargs(tok)),
                            image_token_id=token_id(tok, "<IMG_CONTEXT>"), image_seq_length=4,
                            downsample_ratio=0.5, tie_word_embeddings=False)
    ip = tf.GotOcr2ImageProcessorPil(size={"height": 56, "width": 56}, crop_to_patches=False, max_patches=1)
    tok.chat_template = template
    proc = ImageOnlyInternVLProcessor(image_processor=ip, tokenizer=tok, image_seq_length=4, chat_template=template)
    return tf.InternVLForConditionalGeneration(cfg), tok, proc
