"""Adapter registry and `load_model`.

Adapters register themselves by HF architecture name (the `architectures` entry of config.json), and the
tiny random model of each architecture (for tests, docs and benchmarks) sits beside its adapter:

    @register("LlavaForConditionalGeneration")
    class LlavaAdapter(ModelAdapter): ...

    @tiny_recipe("llava", "LlavaForConditionalGeneration")
    def _tiny_llava(style): ...  # -> (model, tokenizer, processor or None)

Every module of `saliency_lab.models` (but `_private` ones) is imported on first use, so adding a model family
means adding one file with a registered adapter and its recipe.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from saliency_lab.config import ModelConfig
from saliency_lab.errors import SaliencyLabError
from saliency_lab.models.base import ModelAdapter, ModelBundle
from saliency_lab.models.gguf import gguf_file, read_source

if TYPE_CHECKING:
    from saliency_lab.models.tokenizer_build import TokenizerStyle

_ADAPTERS: dict[str, type[ModelAdapter]] = {}
_RECIPES: dict[str, TinyRecipe] = {}
_loaded = False

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
          "float16": torch.float16}


def register(*architectures: str):
    """Class decorator: register an adapter for one or more HF architecture names."""

    def deco(cls: type[ModelAdapter]) -> type[ModelAdapter]:
        cls.architectures = tuple(architectures)
        for a in architectures:
            _ADAPTERS[a] = cls
        return cls

    return deco


@dataclass(frozen=True)
class TinyRecipe:
    """How to build the tiny random model of one architecture: `build(tokenizer_style) -> (model, tok, proc)`."""

    name: str  # `saliency-lab tiny-model --arch NAME`
    architecture: str  # the HF architecture it builds (registered by the adapter beside it)
    build: Callable[[TokenizerStyle], tuple[Any, Any, Any]]
    vision: bool = False


def tiny_recipe(name: str, architecture: str, *, vision: bool = False):
    """Function decorator: register the tiny-model recipe `name` building `architecture`."""

    def deco(
        fn: Callable[[TokenizerStyle], tuple[Any, Any, Any]],
    ) -> Callable[[TokenizerStyle], tuple[Any, Any, Any]]:
        _RECIPES[name] = TinyRecipe(name, architecture, fn, vision)
        return fn

    return deco


def _discover() -> None:
    global _loaded
    if _loaded:
        return
    import saliency_lab.models as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"saliency_lab.models.{info.name}")
    _loaded = True


def tiny_recipes() -> dict[str, TinyRecipe]:
    """Every registered tiny-model recipe by name (one per registered architecture)."""
    _discover()
    return dict(sorted(_RECIPES.items()))


def supported_architectures() -> list[str]:
    """Every HF architecture name an adapter is registered for."""
    _discover()
    return sorted(_ADAPTERS)


def adapter_for(architecture: str) -> ModelAdapter:
    """A new adapter of `architecture`; SaliencyLabError naming the supported ones otherwise."""
    _discover()
    try:
        return _ADAPTERS[architecture]()
    except KeyError:
        raise SaliencyLabError(
            f"unsupported model architecture {architecture!r}; supported: {', '.join(supported_architectures())} "
            "(add an adapter file under saliency_lab/models/)"
        ) from None


def resolve_model_path(model: str, revision: str | None = None) -> tuple[Path, str | None]:
    """A local directory as is; an HF id only from the local cache (never downloads)."""
    p = Path(model).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise SaliencyLabError(f"model directory {model!r} has no config.json; pass a saved model folder")
        return p.resolve(), revision
    if p.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise SaliencyLabError(f"model path {model!r} is not a directory; pass a saved model folder")
    try:
        from huggingface_hub import snapshot_download

        old = os.environ.get("HF_HUB_OFFLINE")
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            snap = Path(snapshot_download(model, revision=revision, local_files_only=True))
        finally:
            if old is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = old
    except Exception:
        raise SaliencyLabError(
            f"model {model!r} is not a local directory nor in the local Hugging Face cache, and the hub is not "
            "reachable from saliency-lab (it never downloads); download it elsewhere and pass --model /path/to/dir"
        ) from None
    return snap, revision or snap.name


def _config_architecture(model: str, path: Path) -> str:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SaliencyLabError(f"model {model!r}: cannot read config.json ({exc}); is it a model folder?") from None
    archs = config.get("architectures") or []
    if not archs:
        raise SaliencyLabError(f"model {model!r}: config.json names no architecture; re-save the model")
    return archs[0]


def load_model(cfg: ModelConfig) -> ModelBundle:
    """Load a model directory, a cached HF id or a GGUF file (see models/gguf.py) with the adapter of its
    architecture."""
    gguf_path = gguf_file(cfg.model)  # a GGUF file, a folder holding one, or a packaged short name
    gguf = read_source(gguf_path) if gguf_path else None
    path, revision = (gguf_path, None) if gguf_path else resolve_model_path(cfg.model, cfg.revision)
    arch = gguf.architecture if gguf else _config_architecture(cfg.model, path)
    adapter = adapter_for(arch)
    if cfg.dtype not in DTYPES:
        raise SaliencyLabError(f"unknown dtype {cfg.dtype!r}; choose one of {', '.join(DTYPES)}")
    dtype = DTYPES[cfg.dtype]
    try:
        device = torch.device(cfg.device)
    except RuntimeError:
        raise SaliencyLabError(f"unknown device {cfg.device!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SaliencyLabError(f"device {cfg.device!r} requested but CUDA is not available; use --device cpu")
    try:
        model, tok, proc = (gguf or adapter).load(path, arch, dtype, str(device))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SaliencyLabError(
            f"model {cfg.model!r} ({arch}): cannot load it ({first}); check that the folder holds the weights, "
            "tokenizer and (for vision-language models) processor files written by save_pretrained"
        ) from None
    for p in model.parameters():
        p.requires_grad_(False)
    tc = adapter.text_config(model)
    n_heads = tc.num_attention_heads
    return ModelBundle(
        model=model, tokenizer=tok, processor=proc, adapter=adapter, architecture=arch,
        n_layers=tc.num_hidden_layers, n_heads=n_heads,
        n_kv_heads=getattr(tc, "num_key_value_heads", None) or n_heads,
        dtype=dtype, device=device, max_context=int(getattr(tc, "max_position_embeddings", 0) or 1 << 30),
        source=cfg.model, path=path, revision=revision,
        source_info={"gguf": gguf.info(dtype)} if gguf else {}, _weights_sha256=gguf.sha256 if gguf else None,
    )
