"""LLaVA (1.5 style): CLIP tower + projector + Llama/Vicuna; `<image>` expands to the patch tokens."""

from __future__ import annotations

from pathlib import Path

import torch

from saliency_lab.models.registry import register
from saliency_lab.models.vision import VisionAdapter


@register("LlavaForConditionalGeneration")
class LlavaAdapter(VisionAdapter):
    def load(self, path: Path, architecture: str, dtype: torch.dtype, device: str):
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
        return model.to(device).eval(), tok, proc
