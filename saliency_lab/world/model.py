"""The world's small LLaVA: a CLIP vision tower + a Llama language model, built from configs, and its
LlavaProcessor (CLIPImageProcessorPil + the word-level tokenizer + chat template)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from PIL import Image
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from saliency_lab.errors import SaliencyLabError
from saliency_lab.world.tokenizer import CHAT_TEMPLATE, IMAGE


@dataclass(frozen=True)
class ModelSpec:
    """Sizes of the world LLaVA."""

    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 128
    vision_layers: int = 3
    vision_heads: int = 4
    text_width: int = 192
    text_layers: int = 3
    text_heads: int = 6
    text_kv_heads: int = 6
    text_intermediate: int = 512
    max_positions: int = 256

    def to_json(self) -> dict:
        """The sizes as a JSON object."""
        return asdict(self)


def local_checkpoint(path: str, flag: str) -> str:
    """`path` when it is a local checkpoint folder (one holding config.json), else a one-line error: the
    scene-world tools load local files only and never contact a model hub."""
    if not (Path(path) / "config.json").is_file():
        raise SaliencyLabError(f"{flag} {path}: not a local checkpoint folder (no config.json there); pass the "
                               "folder a world training run wrote, e.g. datasets/shapes/model")
    return str(path)


def load_world_model(path: str, flag: str) -> LlavaForConditionalGeneration:
    """The world LLaVA saved at the local folder `path` (`flag` names the option in errors)."""
    return LlavaForConditionalGeneration.from_pretrained(local_checkpoint(path, flag), local_files_only=True)


def build_processor(tokenizer: PreTrainedTokenizerFast, spec: ModelSpec) -> LlavaProcessor:
    """The LlavaProcessor of the world model (images at the model's size, the world tokenizer)."""
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": spec.image_size},
        crop_size={"height": spec.image_size, "width": spec.image_size},
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=spec.patch_size,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE,
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
    )


def build_model(tokenizer: PreTrainedTokenizerFast, spec: ModelSpec, seed: int) -> LlavaForConditionalGeneration:
    """A freshly initialized world LLaVA (seeded)."""
    vision = CLIPVisionConfig(
        hidden_size=spec.vision_width,
        intermediate_size=spec.vision_width * 4,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        projection_dim=spec.vision_width,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.text_width,
        intermediate_size=spec.text_intermediate,
        num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.text_heads,
        num_key_value_heads=spec.text_kv_heads,
        max_position_embeddings=spec.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=cast(int, tokenizer.convert_tokens_to_ids(IMAGE)),  # one token in, one id out
        vision_feature_layer=-1,  # a 3-layer tower: use its last layer, not the penultimate
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def pixel_values(images: list[Image.Image], processor: LlavaProcessor) -> torch.Tensor:
    """Fast path for training: the images are already at the model's size, so the processor's resize and
    crop are identities and only rescale + normalize remain (a unit test checks equality with the processor)."""
    ip = processor.image_processor
    arr: np.ndarray = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images]) / 255.0
    arr = (arr - np.asarray(ip.image_mean, dtype=np.float32)) / np.asarray(ip.image_std, dtype=np.float32)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
