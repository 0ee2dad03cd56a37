"""Types shared by the model adapters: the loaded ModelBundle, the PreparedInput of one sample, and the
ModelAdapter base class each family file subclasses.

An adapter knows, for one HF architecture family: which classes load the model and processor, which
sub-config is the language model (only it runs through our attention function), how to turn a manifest
sample into model inputs with the chat template, and where the system / image / prompt segments are in
the resulting token ids (derived from the ids, never from hard-coded lengths).
"""

from __future__ import annotations

import hashlib
import inspect
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
        """Number of input positions (the first output position o)."""
        return int(self.input_ids.shape[1])


@dataclass
class ModelBundle:
    """A loaded model with its tokenizer/processor, adapter and the facts run.json records."""

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


def add_special_tokens(tokenizer: Any, text: str) -> bool:
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
    def model_class(self, architecture: str) -> Any:
        """The transformers class that loads `architecture`."""
        import transformers

        return getattr(transformers, architecture)

    def load(self, path: Path, architecture: str, dtype: torch.dtype, device: str) -> tuple[Any, Any, Any]:
        """(model in eval mode on `device`, tokenizer, processor or None) from a local folder (never downloads)."""
        from transformers import AutoTokenizer

        model = self.model_class(architecture).from_pretrained(
            path, dtype=dtype, local_files_only=True, attn_implementation="sdpa"
        )
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return model.to(device).eval(), tok, None

    def text_config(self, model: Any) -> Any:
        """The language model's config (the `text_config` of a VLM)."""
        cfg = model.config
        return getattr(cfg, "text_config", None) or cfg

    def set_attention(self, model: Any, name: str) -> None:
        """Route the language model through attention `name`; a vision tower stays on sdpa."""
        model.set_attn_implementation(name)

    # ---- forward quirks (every decode step and saliency pass goes through these) ----------------
    def reset_state(self, model: Any) -> None:
        """Clear state a model keeps between calls, before a new sample's first forward (none by default)."""

    def cache_kwarg(self, model: Any) -> str:
        """Name of the KV-cache argument of `model.forward` (transformers renamed past_key_values to cache)."""
        return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def output_cache(self, output: Any) -> Any:
        """The KV cache a forward returned (under either name)."""
        cache = getattr(output, "cache", None)
        return cache if cache is not None else output.past_key_values

    def forward_kwargs(self, model_kwargs: dict[str, Any], n: int) -> dict[str, Any]:
        """Model kwargs for a cache-free forward over the first n positions of input + output ids (text-only
        models take none beyond the ids)."""
        return dict(model_kwargs)

    def logits_head(self, model: Any) -> tuple[Any, torch.nn.Linear] | None:
        """(base model, lm_head) when logits are exactly lm_head(base(...).last_hidden_state): a bias-free
        linear head, no logit soft-capping or scaling. Then the decoding loop computes the loss gradient at the
        head in closed form; None sends it through autograd (always correct, slower)."""
        head = model.get_output_embeddings()
        base = getattr(model, getattr(model, "base_model_prefix", ""), None)
        if base is None or not isinstance(head, torch.nn.Linear) or head.bias is not None:
            return None
        configs = [model.config, getattr(model.config, "text_config", None)]
        for cfg in (c for c in configs if c is not None):
            for name in ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale"):
                if getattr(cfg, name, None) not in (None, 1, 1.0):
                    return None
        return base, head

    def prefill_length(self, bundle: ModelBundle, ids: list[int], output_start: int) -> int:
        """How many leading positions of `ids` the saliency pass may prefill without gradients: o - 1, or 0
        when an image placeholder sits at or after o - 1 (the image features must enter the graded forward)."""
        img = self.image_token_ids(bundle)
        if any(i in img for i in ids[output_start - 1:]):
            return 0
        return output_start - 1

    def eos_token_ids(self, bundle: ModelBundle) -> list[int]:
        """End-of-sequence ids: the generation config's, plus the tokenizer's when it differs."""
        ids = bundle.model.generation_config.eos_token_id
        ids = [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
        if bundle.tokenizer.eos_token_id is not None and bundle.tokenizer.eos_token_id not in ids:
            ids.append(bundle.tokenizer.eos_token_id)
        return ids

    # ---- batches (saliency_lab.saliency.batch pads several samples into one forward) ------------
    #: Model kwargs with one entry per token position ([1, n]); a batch pads them like the ids (with zeros).
    token_kwargs: ClassVar[tuple[str, ...]] = ()

    def collate_kwargs(self, kwargs_list: list[dict[str, Any]], width: int, pads: list[int],
                       left: bool) -> dict[str, Any]:
        """The model kwargs of a padded batch: per-token kwargs (`token_kwargs`) padded to `width` with zeros on
        the padded side (rows without one get zeros); every other tensor (pixels, grids) concatenated along dim 0
        in row order, from the rows that have it (a text-only row in a VLM batch adds no pixels)."""
        out: dict[str, Any] = {}
        keys = sorted({k for kw in kwargs_list for k in kw})
        for key in keys:
            if key in self.token_kwargs:
                ref = next(kw[key] for kw in kwargs_list if key in kw)
                rows = []
                for kw, pad in zip(kwargs_list, pads, strict=True):
                    row = kw.get(key)
                    n = width - pad
                    row = (torch.zeros(1, n, dtype=ref.dtype, device=ref.device) if row is None
                           else row[:, :n])
                    zeros = torch.zeros(1, pad, dtype=ref.dtype, device=ref.device)
                    rows.append(torch.cat([zeros, row] if left else [row, zeros], dim=1))
                out[key] = torch.cat(rows, dim=0)
            else:
                vals = [kw[key] for kw in kwargs_list if key in kw]
                out[key] = torch.cat(vals, dim=0) if torch.is_tensor(vals[0]) else vals[0]
        return out

    def batch_positions(self, model: Any, ids: torch.Tensor, mask: torch.Tensor,
                        kwargs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(position ids of a left-padded prefill, each row's next position [B]). Every real token gets the
        position it has in its own unpadded sequence (0, 1, ...), which is what makes a padded row equal its
        batch-1 row; pad positions get 0 (they are masked)."""
        pos = (mask.long().cumsum(-1) - 1).clamp_min(0)
        return pos, mask.long().sum(-1)

    def step_positions(self, next_positions: torch.Tensor, n: int = 1) -> torch.Tensor:
        """Position ids [B, n] of n text tokens per row, starting at each row's next position."""
        return next_positions[:, None] + torch.arange(n, device=next_positions.device)

    # ---- inputs --------------------------------------------------------------------------------
    def messages(self, sample: ManifestSample, with_image: bool) -> list[dict]:
        """The chat messages of a sample (system, then the user turn with the image placeholder first)."""
        msgs: list[dict] = []
        if sample.system:
            msgs.append({"role": "system", "content": [_text(sample.system)]})
        content = ([{"type": "image"}] if with_image else []) + [_text(sample.prompt)]
        msgs.append({"role": "user", "content": content})
        return msgs

    def image_token_ids(self, bundle: ModelBundle) -> set[int]:
        """Ids of the image placeholder tokens (none for text-only models)."""
        return set()

    def suppressed_token_ids(self, bundle: ModelBundle) -> list[int]:
        """Ids decoding must never emit (image/video placeholders: the model would try to splice features)."""
        return sorted(self.image_token_ids(bundle))

    def chat_text(self, bundle: ModelBundle, sample: ManifestSample) -> str:
        """The rendered prompt text of a text-only sample (the chat template, or the bare prompt without one)."""
        tok = bundle.tokenizer
        if not getattr(tok, "chat_template", None):
            # No template: the prompt is the whole input (base LMs).
            return (sample.system + "\n" if sample.system else "") + sample.prompt
        msgs = self.messages(sample, with_image=False)
        # Text-only templates often expect string content.
        msgs = [{"role": m["role"], "content": m["content"][0]["text"]} for m in msgs]
        return tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)

    def encode(self, bundle: ModelBundle, sample: ManifestSample) -> tuple[torch.Tensor, dict[str, Any]]:
        """(input ids [1, n], model kwargs) of a sample; SampleError for an image given to a text-only model."""
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
        """The sample's model input on the bundle's device with its segments; SampleError when it cannot fit the
        context with `max_new_tokens` more."""
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
