"""Configuration dataclasses shared by the capture engine, decoding interventions and the CLI.

Every field that changes numbers is written to run.json (`asdict`) so a run records how it was made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

HeadsMode = Literal["sum_abs", "abs_sum"]
RowsMode = Literal["output", "all"]
Strategy = Literal["greedy", "sample", "sgrs"]


@dataclass(frozen=True)
class ManifestSample:
    """One manifest line (SPEC section 5)."""

    sample_id: str
    prompt: str
    image: str | None = None  # path to an image file
    image_id: str | None = None
    system: str | None = None
    meta: dict[str, Any] | None = None


@dataclass
class SaliencyConfig:
    heads: HeadsMode = "sum_abs"
    candidates: int = 0  # top-K alternatives whose saliency is captured (0 = none)
    rows: RowsMode | None = None  # store full S_raw rows as float16 lists
    verify: bool = False  # also run the per-prefix reference and compare


@dataclass
class SGRSConfig:
    alpha: float = 0.6
    window: int = 5  # W: accepted tokens whose mean score sets tau
    k: int = 5  # top-K candidates
    max_resample: int = 3  # R: draws without replacement before fallback
    layers: list[int] | None = None  # target layers; None = upper half of the language model


@dataclass
class LocoREConfig:
    beta: float = 0.0  # 0 disables LocoRE
    window: int = 5  # w_s (the paper gives no value; 5 is our default)
    mode: Literal["post_softmax", "renormalize", "logit_offset"] = "post_softmax"


@dataclass
class DecodingConfig:
    max_new_tokens: int = 64
    strategy: Strategy = "greedy"
    seed: int = 0
    temperature: float = 1.0
    top_k: int = 0  # for strategy="sample"; 0 = full softmax
    sgrs: SGRSConfig = field(default_factory=SGRSConfig)
    locore: LocoREConfig = field(default_factory=LocoREConfig)


@dataclass
class ModelConfig:
    model: str  # local directory or HF id
    dtype: Literal["float32", "float64", "bfloat16", "float16"] = "float32"
    device: str = "cpu"
    revision: str | None = None


@dataclass
class CaptureConfig:
    """Everything `saliency-lab capture` takes."""

    model: ModelConfig
    data: str  # manifest path (JSONL)
    out: str  # root folder; the run lives in <out>/<run_id>
    run_id: str | None = None  # default: derived from model name + time
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    saliency: SaliencyConfig = field(default_factory=SaliencyConfig)
    shard: tuple[int, int] = (0, 1)  # (k, N): this process fills shard k of N
    resume: bool = False
    samples_per_part: int = 16
    quiet: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
