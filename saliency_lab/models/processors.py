"""Processor subclasses that work without torchvision.

The stock Qwen2-VL / Qwen2.5-VL / InternVL processors require a video processor, which needs torchvision (not
usable on CPU-only installs here). These subclasses leave `video_processor` out of their attributes, so they
construct, save and reload through their own class with a PIL image processor.
"""

from __future__ import annotations

from transformers import InternVLProcessor, Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2-VL / Qwen2.5-VL processor for images only (same expansion: grid_thw.prod() // merge_size**2)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


class ImageOnlyInternVLProcessor(InternVLProcessor):
    """InternVL processor for images only: `<IMG_CONTEXT>` expands to `<img>` + N context tokens + `</img>`."""

    def __init__(self, image_processor=None, tokenizer=None, image_seq_length: int = 256, chat_template=None,
                 **kwargs):
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
        self.image_seq_length = image_seq_length
        self.start_image_token = tokenizer.start_image_token
        self.end_image_token = tokenizer.end_image_token
        self.start_image_token_id = tokenizer.convert_tokens_to_ids(self.start_image_token)
        self.end_image_token_id = tokenizer.convert_tokens_to_ids(self.end_image_token)
        self.image_token = tokenizer.context_image_token
        self.video_token = getattr(tokenizer, "video_token", None) or "<video>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        import re

        self.multimodal_pattern = re.compile(
            f"(?P<image>{re.escape(self.image_token)})|(?P<video>{re.escape(self.video_token)})"
        )
