"""InternVL (HF-native InternVLForConditionalGeneration): `<IMG_CONTEXT>` expands to `<img>` + N context
tokens + `</img>`. The `<img>`/`</img>` markers count as system/prompt by their side (SPEC section 2)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from saliency_lab.models.registry import register
from saliency_lab.models.vision import VisionAdapter


@register("InternVLForConditionalGeneration")
class InternVLAdapter(VisionAdapter):
    def load(self, path: Path, architecture: str, dtype: torch.dtype, device: str):
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
        return model.to(device).eval(), tok, proc
