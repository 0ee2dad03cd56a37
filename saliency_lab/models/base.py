"""Types shared by the model adapters: the loaded ModelBundle, the PreparedInput of one sample, and the
ModelAdapter base class each family file subclasses.

An adapter knows, for one HF architecture family: which classes load the model and processor, which
sub-config is the language model (only it runs through our attention function), how to turn a manifest
sample into model inputs with the chat template, and where the system / image / prompt segments are in
the resulting token ids (derived from the ids, never from hard-coded lengths).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from saliency_lab.config import ManifestSample
from saliency_lab.errors import SampleError

SEGMENTS = ("system", "image", "prompt")


@dataclass
class PreparedInput:
    """Model input of one sample. `segments` maps system/image/prompt to [start, end) positions."""

    input_ids: torch.Tensor  # LongTensor [1, n_in]
    model_kwargs: dict[str, Any]
    segments: dict[str, tuple[int, int]]
    sample_id: str = ""

    @property
    def n_input(self) -> int:
        return int(self.input_ids.shape[1])


@dataclass
class ModelBundle:
    model: Any
    tokenizer: Any
    processor: Any
    adapter: ModelAdapter
    architecture: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    dtype: torch.dtype
    device: torch.device
    max_context: int
    source: str  # the --model argument as given
    path: Path  # resolved local directory
    revision: str | None = None
    source_info: dict[str, Any] = field(default_factory=dict)  # extra run.json entries (e.g. "gguf")
    _weights_sha256: str | None = field(default=None, repr=False)

    def weights_sha256(self) -> str:
        """sha256 over the weight files (sorted by name); computed once."""
        if self._weights_sha256 is None:
            h = hashlib.sha256()
            files = sorted(p for p in self.path.iterdir() if p.suffix in (".safetensors", ".bin", ".pt"))
            for p in files:
                h.update(p.name.encode())
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 22), b""):
                        h.update(chunk)
            self._weights_sha256 = h.hexdigest()
        return self._weights_sha256

    def info(self) -> dict[str, Any]:
        """Model metadata for run.json."""
        return {
            "id": self.source,
            "path": str(self.path),
            "architecture": self.architecture,
            "revision": self.revision,
            "weights_sha256": self.weights_sha256(),
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "max_context": self.max_context,
            **self.source_info,
        }


def add_special_tokens(tokenizer, text: str) -> bool:
    """Let the tokenizer add its special tokens (BOS) unless the rendered text already starts with BOS, as
    templates like Llama's and LLaVA's do; templates without BOS rely on the tokenizer adding it."""
    bos = getattr(tokenizer, "bos_token", None)
    return not (bos and text.startswith(bos))


def _text(content: str) -> dict[str, str]:
    return {"type": "text", "text": content}


class ModelAdapter:
    """Base adapter: a text-only causal LM. Vision families override `load`, `build_text`, `encode`."""

    architectures: ClassVar[tuple[str, ...]] = ()
    is_vision: ClassVar[bool] = False

    # ---- loading -------------------------------------------------------------------------------
    def model_class(self, architecture: str):
        import transformers

        return getattr(transformers, architecture)

    def load(self, path: Path, architecture: str, dtype: torch.dtype, device: str):
        from transformers import AutoTokenizer

        model = self.model_class(architecture).from_pretrained(
            path, dtype=dtype, local_files_only=True, attn_implementation="sdpa"
        )
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return model.to(device).eval(), tok, None

    def text_config(self, model):
        cfg = model.config
        return getattr(cfg, "text_config", None) or cfg

    def set_attention(self, model, name: str) -> None:
        """Route the language model through attention `name`; a vision tower stays on sdpa."""
        model.set_attn_implementation(name)

    # ---- inputs --------------------------------------------------------------------------------
    def messages(self, sample: ManifestSample, with_image: bool) -> list[dict]:
        msgs: list[dict] = []
        if sample.system:
            msgs.append({"role": "system", "content": [_text(sample.system)]})
        content = ([{"type": "image"}] if with_image else []) + [_text(sample.prompt)]
        msgs.append({"role": "user", "content": content})
        return msgs

    def image_token_ids(self, bundle: ModelBundle) -> set[int]:
        return set()

    def suppressed_token_ids(self, bundle: ModelBundle) -> list[int]:
        """Ids decoding must never emit (image/video placeholders: the model would try to splice features)."""
        return sorted(self.image_token_ids(bundle))

    def chat_text(self, bundle: ModelBundle, sample: ManifestSample) -> str:
        tok = bundle.tokenizer
        if not getattr(tok, "chat_template", None):
            # No template: the prompt is the whole input (base LMs).
            return (sample.system + "\n" if sample.system else "") + sample.prompt
        msgs = self.messages(sample, with_image=False)
        # Text-only templates often expect string content.
        msgs = [{"role": m["role"], "content": m["content"][0]["text"]} for m in msgs]
        return tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)

    def encode(self, bundle: ModelBundle, sample: ManifestSample) -> tuple[torch.Tensor, dict[str, Any]]:
        if sample.image:
            raise SampleError(
                f"sample {sample.sample_id!r}: image {sample.image!r} given but model {bundle.source!r} "
                f"({bundle.architecture}) is text-only; drop the image or use a vision-language model"
            )
        text = self.chat_text(bundle, sample)
        ids = bundle.tokenizer(text, add_special_tokens=add_special_tokens(bundle.tokenizer, text),
                               return_tensors="pt")["input_ids"]
        return ids, {}

    def prepare(self, bundle: ModelBundle, sample: ManifestSample, *, max_new_tokens: int = 0) -> PreparedInput:
        ids, kwargs = self.encode(bundle, sample)
        n_in = int(ids.shape[1])
        if n_in + max_new_tokens > bundle.max_context:
            raise SampleError(
                f"sample {sample.sample_id!r}: input of {n_in} tokens + max_new_tokens {max_new_tokens} exceeds "
                f"the context of {bundle.max_context} of model {bundle.source!r}; shorten the prompt or lower "
                "--max-new-tokens"
            )
        segments = self.segments(bundle, sample, ids[0].tolist())
        dev = bundle.device
        kwargs = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in kwargs.items()}
        if "pixel_values" in kwargs and kwargs["pixel_values"].is_floating_point():
            kwargs["pixel_values"] = kwargs["pixel_values"].to(bundle.dtype)
        return PreparedInput(ids.to(dev), kwargs, segments, sample.sample_id)

    def segments(self, bundle: ModelBundle, sample: ManifestSample, ids: list[int]) -> dict[str, tuple[int, int]]:
        """system = before the user's content; image = the run of image tokens; prompt = the rest."""
        n = len(ids)
        img = self.image_token_ids(bundle)
        pos = [i for i, t in enumerate(ids) if t in img]
        if pos:
            s, e = pos[0], pos[-1] + 1
            if e - s != len(pos):
                raise SampleError(f"sample {sample.sample_id!r}: image tokens are not contiguous; one image only")
            return {"system": (0, s), "image": (s, e), "prompt": (e, n)}
        start = self.user_content_start(bundle, sample, ids)
        return {"system": (0, start), "image": (start, start), "prompt": (start, n)}

    def user_content_start(self, bundle: ModelBundle, sample: ManifestSample, ids: list[int]) -> int:
        """First position of the user's text: the longest common prefix of the input rendered with the real
        prompt and with a different one (so template tokens before the user text count as system)."""
        from dataclasses import replace

        other = replace(sample, prompt="\u0001" + sample.prompt[::-1] + "\u0002", image=None)
        try:
            ids2 = self.encode(bundle, other)[0][0].tolist()
        except SampleError:
            return 0
        k = 0
        while k < min(len(ids), len(ids2)) and ids[k] == ids2[k]:
            k += 1
        return k
