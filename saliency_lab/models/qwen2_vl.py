"""Qwen2-VL and Qwen2.5-VL: `<|vision_start|><|image_pad|>*N<|vision_end|>`, M-RoPE positions.

The model computes M-RoPE positions at the prefill (cache empty) from `mm_token_type_ids` / `image_grid_thw`
and caches `rope_deltas` for the later cached steps (cache length + rope_deltas). A new sample's prefill must
not reuse the previous sample's delta (a text-only prompt would inherit an image prompt's), so `reset_state`
clears it before every prefill.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from saliency_lab.models.registry import register
from saliency_lab.models.vision import VisionAdapter


@register("Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration")
class Qwen2VLAdapter(VisionAdapter):
    def reset_state(self, model: Any) -> None:
        """Forget the previous call's `rope_deltas` (kept on the inner model)."""
        for m in model.modules():
            if getattr(m, "rope_deltas", None) is not None:
                m.rope_deltas = None

    def load(self, path: Path, architecture: str, dtype: torch.dtype, device: str):
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
