"""Qwen2-VL and Qwen2.5-VL: `<|vision_start|><|image_pad|>*N<|vision_end|>`, M-RoPE positions.

The model computes M-RoPE positions at the prefill (cache empty) from `mm_token_type_ids` / `image_grid_thw`
and caches `rope_deltas` for the later cached steps (cache length + rope_deltas). A new sample's prefill must
not reuse the previous sample's delta (a text-only prompt would inherit an image prompt's), so `reset_state`
clears it before every prefill.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from saliency_lab.models.registry import register, tiny_recipe
from saliency_lab.models.vision import VisionAdapter

if TYPE_CHECKING:
    from saliency_lab.models.tokenizer_build import TokenizerStyle


@register("Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration")
class Qwen2VLAdapter(VisionAdapter):
    """Qwen2-VL / Qwen2.5-VL: `<|image_pad|>` placeholders, M-RoPE state reset before every prefill."""

    def reset_state(self, model: Any) -> None:
        """Forget the previous call's `rope_deltas` (kept on the inner model)."""
        for m in model.modules():
            if getattr(m, "rope_deltas", None) is not None:
                m.rope_deltas = None

    def batch_positions(self, model: Any, ids: torch.Tensor, mask: torch.Tensor,
                        kwargs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """M-RoPE positions [3, B, N] of a left-padded prefill (the model's own `get_rope_index`, which skips
        masked positions) and each row's next position (its largest position + 1, as the model's cached
        decoding continues)."""
        grid, mm = kwargs.get("image_grid_thw"), kwargs.get("mm_token_type_ids")
        if grid is None or mm is None:
            pos, nxt = super().batch_positions(model, ids, mask, kwargs)
            return pos[None].expand(3, -1, -1), nxt
        pos, deltas = model.model.get_rope_index(ids, image_grid_thw=grid, attention_mask=mask,
                                                 mm_token_type_ids=mm)
        return pos, mask.long().sum(-1) + deltas.reshape(-1).to(mask.device)

    def step_positions(self, next_positions: torch.Tensor, n: int = 1) -> torch.Tensor:
        """M-RoPE position ids [3, B, n]: text continues on all three axes."""
        return super().step_positions(next_positions, n)[None].expand(3, -1, -1)

    def load(self, path: Path, architecture: str, dtype: torch.dtype, device: str) -> tuple[Any, Any, Any]:
        """Model, tokenizer and the PIL-based processor from a local folder."""
        import transformers
        from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

        from saliency_lab.models.processors import ImageOnlyQwen2VLProcessor

        model = getattr(transformers, architecture).from_pretrained(
            path, dtype=dtype, local_files_only=True, attn_implementation="sdpa"
        )
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        ip = Qwen2VLImageProcessorPil.from_pretrained(path, local_files_only=True)
        proc = ImageOnlyQwen2VLProcessor(image_processor=ip, tokenizer=tok,
                                         chat_template=tok.chat_template or _processor_template(path))
        return model.to(device).eval(), tok, proc


def _processor_template(path: Path) -> str | None:
    p = Path(path) / "chat_template.jinja"
    return p.read_text() if p.is_file() else None


def _tiny_qwen_vl(arch: str, style: TokenizerStyle):
    import transformers as tf

    from saliency_lab.models.processors import ImageOnlyQwen2VLProcessor
    from saliency_lab.models.tiny import CHATML_TEMPLATE, HEADS, HIDDEN, QWEN_SPECIALS, text_kwargs, token_id
    from saliency_lab.models.tokenizer_build import build_tokenizer

    tok = build_tokenizer(style, QWEN_SPECIALS, image_token="<|image_pad|>", video_token="<|video_pad|>")
    template = CHATML_TEMPLATE.replace("IMAGE", "<|vision_start|><|image_pad|><|vision_end|>")
    ids = {t: token_id(tok, t) for t in QWEN_SPECIALS}
    text = text_kwargs(tok)
    head_dim = HIDDEN // HEADS
    # M-RoPE: temporal/height/width sections must sum to head_dim / 2.
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0,
                               "mrope_section": [2, 3, head_dim // 2 - 5]}
    common: dict[str, Any] = dict(
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False)
    model: tf.PreTrainedModel  # either family's model (the two config classes are unrelated)
    vision: dict[str, Any]
    if arch == "qwen2_vl":
        vision = dict(depth=2, embed_dim=32, hidden_size=HIDDEN, num_heads=2, mlp_ratio=2, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
        cfg = tf.Qwen2VLConfig(text_config=text, vision_config=vision, **common)
        model = tf.Qwen2VLForConditionalGeneration(cfg)
    else:
        vision = dict(depth=2, hidden_size=32, out_hidden_size=HIDDEN, num_heads=2, intermediate_size=64,
                      patch_size=14, spatial_merge_size=2, temporal_patch_size=2, in_channels=3,
                      window_size=56, fullatt_block_indexes=[1])
        cfg25 = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common)
        model = tf.Qwen2_5_VLForConditionalGeneration(cfg25)
    ip = tf.Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14, merge_size=2,
                                      temporal_patch_size=2)
    tok.chat_template = template
    return model, tok, ImageOnlyQwen2VLProcessor(image_processor=ip, tokenizer=tok, chat_template=template)


@tiny_recipe("qwen2_vl", "Qwen2VLForConditionalGeneration", vision=True)
def _tiny_qwen2_vl(style: TokenizerStyle):
    return _tiny_qwen_vl("qwen2_vl", style)


@tiny_recipe("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", vision=True)
def _tiny_qwen2_5_vl(style: TokenizerStyle):
    return _tiny_qwen_vl("qwen2_5_vl", style)
