"""GGUF checkpoints (`--model file.gguf`, a folder holding one GGUF, or a packaged short name such as
`smollm2`), loaded through transformers' GGUF path and dequantized to `--dtype`.

transformers marks a model loaded from GGUF as quantized, which makes `save_pretrained` refuse it and sets it
apart from a model loaded from a folder. Its weights are already dequantized, so the loaded state dict is
moved into a plain `<Arch>ForCausalLM` built from the same config: from then on it is an ordinary model (our
attention function, `save_pretrained`, the architecture's adapter). What the weights were dequantized from
is recorded in run.json (`model.gguf`).
"""

from __future__ import annotations

import hashlib
import importlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saliency_lab.errors import SaliencyLabError
from saliency_lab.models.packaged import packaged_model

INSTALL = 'pip install -e ".[real]"'
#: Tensor types stored at full or half precision; any other GGUF tensor type is a quantized format.
UNQUANTIZED = frozenset({"F64", "F32", "F16", "BF16"})


@dataclass
class GGUFSource:
    """One GGUF file and what its metadata says."""

    file: Path
    gguf_architecture: str  # general.architecture, e.g. "llama"
    architecture: str  # the transformers class the weights go into, e.g. "LlamaForCausalLM"
    file_type: str | None  # general.file_type as llama.cpp names it, e.g. "MOSTLY_Q4_1"
    tensor_types: dict[str, int]  # GGUF tensor type -> number of tensors
    sha256: str

    @property
    def quantized_types(self) -> list[str]:
        """The quantized tensor types the file holds (empty for an F32/F16 file)."""
        return sorted(t for t in self.tensor_types if t not in UNQUANTIZED)

    def info(self, dtype: torch.dtype) -> dict[str, Any]:
        """The run.json entry (`model.gguf`)."""
        return {
            "file": self.file.name,
            "sha256": self.sha256,
            "architecture": self.gguf_architecture,
            "file_type": self.file_type,
            "tensor_types": dict(sorted(self.tensor_types.items())),
            "dequantized": bool(self.quantized_types),
            "dequantized_from": self.quantized_types,
            "loaded_as": str(dtype).replace("torch.", ""),
        }

    def load(self, path: Path, architecture: str, dtype: torch.dtype, device: str):
        """Same signature as `ModelAdapter.load`: (model, tokenizer, processor)."""
        return load_gguf(self, dtype, device)


def gguf_file(model: str) -> Path | None:
    """The GGUF file `--model` names, or None when it names something else (a model folder, an HF id).

    Accepted: a packaged short name (`smollm2`), a path ending in `.gguf`, a folder without config.json that
    holds exactly one `.gguf` file."""
    packaged = packaged_model(model)
    if packaged is not None:
        return packaged.locate()
    p = Path(model).expanduser()
    if p.suffix.lower() == ".gguf":
        if not p.is_file():
            raise SaliencyLabError(f"--model {model!r}: no such GGUF file; check the path")
        return p.resolve()
    if p.is_dir() and not (p / "config.json").is_file():
        found = sorted(p.glob("*.gguf"))
        if len(found) > 1:
            raise SaliencyLabError(
                f"--model {model!r}: the folder holds {len(found)} GGUF files "
                f"({', '.join(f.name for f in found[:4])}); pass one file as --model"
            )
        if found:
            return found[0].resolve()
    return None


def require_packages(what: str) -> None:
    """transformers' GGUF path needs `gguf` (reading) and `accelerate` (loading)."""
    missing = []
    for name in ("gguf", "accelerate"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise SaliencyLabError(
            f"{what}: loading a GGUF file needs the {' and '.join(missing)} package"
            f"{'s' if len(missing) > 1 else ''}; install them with `{INSTALL}`"
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def read_source(file: Path) -> GGUFSource:
    """Read the metadata (no tensor data) and check transformers can load the architecture."""
    require_packages(str(file))
    import gguf
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        reader = gguf.GGUFReader(str(file))
    except (ValueError, OSError) as exc:
        raise SaliencyLabError(
            f"{file}: not a readable GGUF file ({str(exc).splitlines()[0][:160]})"
        ) from None

    def field(key: str) -> Any:
        f = reader.fields.get(key)
        return None if f is None else f.contents()

    arch = str(field("general.architecture") or "")
    model_type = arch.replace("-", "_")
    hf_arch = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    if arch not in GGUF_SUPPORTED_ARCHITECTURES or hf_arch is None:
        supported = sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
        raise SaliencyLabError(
            f"{file}: GGUF architecture {arch!r} is not supported by transformers' GGUF loader "
            f"for causal LMs (supported: {', '.join(supported)}); convert the model to a "
            "transformers folder and pass that folder"
        )
    ftype = field("general.file_type")
    try:
        ftype_name = None if ftype is None else gguf.LlamaFileType(int(ftype)).name
    except ValueError:
        ftype_name = str(ftype)
    types = Counter(t.tensor_type.name for t in reader.tensors)
    return GGUFSource(file, arch, hf_arch, ftype_name, dict(types), _sha256(file))


def load_gguf(source: GGUFSource, dtype: torch.dtype, device: str):
    """(model, tokenizer, None): dequantized weights in a plain `<Arch>ForCausalLM` of dtype `dtype`."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.initialization import no_init_weights
    from transformers.utils import logging as hf_logging

    folder, name = str(source.file.parent), source.file.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    level = hf_logging.get_verbosity()
    # transformers warns that a non-float32 dtype slows its packed GGUF kernels; they are never used here
    hf_logging.set_verbosity_error()
    try:
        loaded = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=dtype, local_files_only=True
        )
    finally:
        hf_logging.set_verbosity(level)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the flag that makes save_pretrained refuse the model
    config.architectures = [source.architecture]
    # every parameter is overwritten below: randomly initializing 100M+ weights first is wasted time
    with no_init_weights():
        plain = getattr(transformers, source.architecture)(config).to(dtype)
    # strict: every dequantized tensor must find its parameter, or the model would run on random weights
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.tie_weights()
    plain.generation_config = loaded.generation_config
    del loaded
    plain.set_attn_implementation("sdpa")
    return plain.to(device).eval(), tok, None
