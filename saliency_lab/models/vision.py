"""Shared code of the vision-language adapters: image loading, chat-template rendering, attention routing."""

from __future__ import annotations

from typing import Any

import torch

from saliency_lab.config import ManifestSample
from saliency_lab.errors import SampleError
from saliency_lab.models.base import ModelAdapter, ModelBundle, add_special_tokens


def load_image(sample: ManifestSample) -> Any:
    """The sample's image as RGB PIL image; SampleError naming the file when missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    if not sample.image:
        raise SampleError(f"sample {sample.sample_id!r} has no image file; add `image` to its manifest entry")
    try:
        with Image.open(sample.image) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise SampleError(
            f"sample {sample.sample_id!r}: image file {sample.image!r} not found; fix the path in the manifest"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SampleError(
            f"sample {sample.sample_id!r}: image file {sample.image!r} is not a readable image ({type(exc).__name__}); "
            "replace or remove it"
        ) from None


class VisionAdapter(ModelAdapter):
    """Base of the vision-language adapters: image placeholders, processor inputs, a vision tower on sdpa."""

    is_vision = True
    token_kwargs = ("mm_token_type_ids",)

    def set_attention(self, model: Any, name: str) -> None:
        """Route the language model through `name`; the vision tower stays on sdpa."""
        model.set_attn_implementation({"text_config": name, "vision_config": "sdpa"})

    def image_token_ids(self, bundle: ModelBundle) -> set[int]:
        """The config's image placeholder id."""
        return {int(bundle.model.config.image_token_id)}

    def suppressed_token_ids(self, bundle: ModelBundle) -> list[int]:
        """Image and video placeholder ids: decoding never emits them."""
        cfg = bundle.model.config
        ids = set(self.image_token_ids(bundle))
        for name in ("video_token_id", "image_token_index", "video_token_index"):
            if getattr(cfg, name, None) is not None:
                ids.add(int(getattr(cfg, name)))
        return sorted(ids)

    def render(self, bundle: ModelBundle, sample: ManifestSample, with_image: bool) -> tuple[str, bool]:
        """(text, whether a chat template rendered it)."""
        msgs = self.messages(sample, with_image)
        proc = bundle.processor
        if getattr(proc, "chat_template", None):
            return proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False), True
        tok = bundle.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False), True
        image = (proc.image_token + "\n") if with_image else ""
        return (sample.system + "\n" if sample.system else "") + image + sample.prompt, False

    def encode(self, bundle: ModelBundle, sample: ManifestSample) -> tuple[torch.Tensor, dict[str, Any]]:
        """Input ids and processor outputs (pixels, grids, token types) of the rendered sample."""
        with_image = bool(sample.image)
        text, _ = self.render(bundle, sample, with_image)
        kw = {"return_tensors": "pt", "add_special_tokens": add_special_tokens(bundle.tokenizer, text)}
        if with_image:
            image = load_image(sample)
            out = bundle.processor(images=[image], text=[text], **kw)
        else:
            out = bundle.processor(text=[text], **kw)
        ids = out.pop("input_ids")
        out.pop("attention_mask", None)
        return ids, dict(out)

    def forward_kwargs(self, model_kwargs: dict[str, Any], n: int) -> dict[str, Any]:
        """Pixels and grids as prepared; `mm_token_type_ids` cut or zero-padded to the n positions."""
        return self.extend_kwargs(model_kwargs, n)

    def extend_kwargs(self, kwargs: dict[str, Any], n_total: int) -> dict[str, Any]:
        """Model kwargs for a cache-free forward over the first n_total positions of input + output ids."""
        kw = dict(kwargs)
        mm = kw.get("mm_token_type_ids")
        if mm is not None and mm.shape[1] > n_total:
            kw["mm_token_type_ids"] = mm[:, :n_total]
        elif mm is not None and mm.shape[1] < n_total:
            pad = torch.zeros(mm.shape[0], n_total - mm.shape[1], dtype=mm.dtype, device=mm.device)
            kw["mm_token_type_ids"] = torch.cat([mm, pad], dim=1)
        return kw
