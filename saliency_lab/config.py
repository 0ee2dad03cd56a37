"""Configuration dataclasses shared by the capture engine, decoding interventions and the CLI.

Every field that changes numbers is written to run.json (`asdict`) so a run records how it was made.

`validate()` is the one place that checks the settings: `saliency_lab.run.capture` calls
`CaptureConfig.validate()` first thing (before the manifest is read, the model loaded or anything written) and
`SGRSConfig.validate(n_layers)` right after the model is loaded, before run.json is written. Each error is one
line naming the command-line flag and the fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.scores import SALIENCY_SCORES

HeadsMode = Literal["sum_abs", "abs_sum"]
RowsMode = Literal["output", "all"]
Strategy = Literal["greedy", "sample", "sgrs"]
LocoREMode = Literal["post_softmax", "renormalize", "logit_offset"]
DecayMode = Literal["post_softmax", "renormalize"]

STRATEGIES = ("greedy", "sample", "sgrs")
HEADS_MODES = ("sum_abs", "abs_sum")
ROWS_MODES = ("output", "all")
LOCORE_MODES = ("post_softmax", "renormalize", "logit_offset")
DECAY_MODES = ("post_softmax", "renormalize")
SGRS_REJECT = ("low", "high")
SaliencyPrecision = Literal["auto", "model", "float32"]
SALIENCY_PRECISIONS = ("auto", "model", "float32")
DTYPES = ("float32", "float64", "bfloat16", "float16")
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(flag: str, value: object, low: int, fix: str = "") -> None:
    if not _is_int(value) or value < low:  # type: ignore[operator]
        raise SaliencyLabError(f"{flag} {value!r}: must be an integer >= {low}{'; ' + fix if fix else ''}")


def _choice(flag: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise SaliencyLabError(f"{flag} {value!r}: choose one of {', '.join(choices)}")


def validate_layers(layers: Sequence[int] | None, n_layers: int | None, flag: str = "--sgrs-layers") -> None:
    """Target layers: a non-empty list of layer numbers, inside 0..n_layers-1 once the model is known."""
    if layers is None:
        return
    shown = ",".join(map(str, layers)) if isinstance(layers, (list, tuple)) else repr(layers)
    if (not isinstance(layers, (list, tuple)) or not layers
            or not all(_is_int(x) and x >= 0 for x in layers)):
        raise SaliencyLabError(f"{flag} {shown}: expected non-negative layer numbers, e.g. {flag} 8,9,10")
    if n_layers is not None and max(layers) >= n_layers:
        raise SaliencyLabError(f"{flag} {shown}: the model has layers 0..{n_layers - 1}; "
                               "pick target layers in that range")


#: The dtypes a model loads in (`--dtype`).
DType = Literal["float32", "float64", "bfloat16", "float16"]

@dataclass(frozen=True)
class ManifestSample:
    """One manifest line (docs/capture.md, "The manifest")."""

    sample_id: str
    prompt: str
    image: str | None = None  # path to an image file
    image_id: str | None = None
    system: str | None = None
    meta: dict[str, Any] | None = None


@dataclass
class SaliencyConfig:
    """What capture records besides the per-layer sums: head reduction, candidates, full rows,
    verification."""

    heads: HeadsMode = "sum_abs"
    candidates: int = 0  # top-K alternatives whose saliency is captured (0 = none)
    rows: RowsMode | None = None  # store full S_raw rows as float16 lists
    verify: bool = False  # also run the per-prefix reference and compare
    # Precision and memory of the single pass (docs/capture.md, "Scale"):
    precision: SaliencyPrecision = "auto"  # "auto": float32 for bf16/fp16 models, else the model's dtype
    max_pass_tokens: int | None = None  # at most this many output rows per backward pass (exact chunking)

    def effective_precision(self, model_dtype: str) -> SaliencyPrecision:
        """What "auto" means for a model of `model_dtype`: float32 for bfloat16/float16, else "model"."""
        if self.precision != "auto":
            return self.precision
        return "float32" if model_dtype in ("bfloat16", "float16") else "model"

    def validate(self) -> SaliencyConfig:
        """Itself, checked; SaliencyLabError naming the option otherwise."""
        _choice("--heads", self.heads, HEADS_MODES)
        _choice("--saliency-precision", self.precision, SALIENCY_PRECISIONS)
        if self.max_pass_tokens is not None:
            _int_at_least("--max-pass-tokens", self.max_pass_tokens, 1, "or leave it out for one pass")
        _int_at_least("--candidates", self.candidates, 0, "0 records no alternatives")
        if self.rows is not None:
            _choice("--rows", self.rows, ROWS_MODES)
        return self


@dataclass
class SGRSConfig:
    """SGRS (saliency-guided rejection sampling) settings: tau = alpha * mean score of the last W tokens."""

    alpha: float = 0.6
    window: int = 5  # W: accepted tokens whose mean score sets tau
    k: int = 5  # top-K candidates
    max_resample: int = 3  # R: draws without replacement before fallback
    layers: list[int] | None = None  # target layers; None = upper half of the language model
    # The score thresholded (a saliency score of docs/analysis.md, "Token scores") and the side rejected:
    # "low" rejects score < tau (the paper's rule), "high" rejects score > tau.
    score: str = "out_mean"
    reject: Literal["low", "high"] = "low"

    def validate(self, n_layers: int | None = None) -> SGRSConfig:
        """Ranges of every setting; with `n_layers` (known once the model is loaded) also the layers."""
        if self.score not in SALIENCY_SCORES:
            raise SaliencyLabError(f"--sgrs-score {self.score!r}: SGRS thresholds a saliency score of a candidate's "
                                   f"row; choose one of {', '.join(SALIENCY_SCORES)}")
        _choice("--sgrs-reject", self.reject, SGRS_REJECT)
        if not _is_number(self.alpha) or self.alpha < 0:
            raise SaliencyLabError(f"--sgrs-alpha {self.alpha!r}: must be a finite number >= 0 "
                                   "(0 accepts every first draw; default 0.6)")
        _int_at_least("--sgrs-window", self.window, 1, "it counts the accepted tokens whose mean sets tau")
        _int_at_least("--sgrs-k", self.k, 1)
        _int_at_least("--sgrs-max-resample", self.max_resample, 1)
        if self.max_resample > self.k:
            raise SaliencyLabError(f"--sgrs-max-resample {self.max_resample}: at most --sgrs-k ({self.k}) "
                                   "draws without replacement are possible; lower it or raise --sgrs-k")
        validate_layers(self.layers, n_layers)
        return self


@dataclass
class LocoREConfig:
    """LocoRE settings: strength beta (0 = off), window w_s of recent outputs it reinforces, and where it
    acts."""

    beta: float = 0.0  # 0 disables LocoRE
    window: int = 5  # w_s (the paper gives no value; 5 is our default)
    mode: LocoREMode = "post_softmax"

    def validate(self) -> LocoREConfig:
        """Itself, checked; SaliencyLabError naming the option otherwise."""
        # beta < 0 would damp recent outputs instead of reinforcing them; the hook refuses it too.
        if not _is_number(self.beta) or self.beta < 0:
            raise SaliencyLabError(f"--locore-beta {self.beta!r}: must be a finite number >= 0 "
                                   "(0 turns LocoRE off; e.g. 0.15)")
        _int_at_least("--locore-window", self.window, 1)
        _choice("--locore-mode", self.mode, LOCORE_MODES)
        return self


@dataclass
class SaliencyDecayConfig:
    """The saliency-decay intervention (paper App. B.1; docs/interventions.md): attention toward chosen output
    tokens is multiplied by `rate` from the forward in which each is fed on. Inactive unless rate != 1 and some
    tokens are chosen (fixed `steps` or the online `threshold` rule)."""

    rate: float = 1.0  # r: factor on attention toward a decayed token (1 = no change)
    steps: list[int] = field(default_factory=list)  # output steps to decay
    threshold: float | None = None  # online rule: decay tokens whose normalized prev saliency > threshold
    layers: list[int] | None = None  # layers the rule averages over; None = upper half
    mode: DecayMode = "post_softmax"

    def validate(self, n_layers: int | None = None) -> SaliencyDecayConfig:
        """Ranges of every setting, each error naming its --decay-* flag; the layers once the model is known."""
        if not _is_number(self.rate) or self.rate < 0:
            raise SaliencyLabError(f"--decay-rate {self.rate!r}: must be a finite number >= 0 "
                                   "(1 = no change, 0.2 = decay 80%)")
        if not isinstance(self.steps, (list, tuple)) or not all(_is_int(s) and s >= 0 for s in self.steps):
            raise SaliencyLabError(f"--decay-steps {self.steps!r}: expected output steps >= 0, e.g. 3,4,5")
        if self.threshold is not None and not _is_number(self.threshold):
            raise SaliencyLabError(f"--decay-threshold {self.threshold!r}: must be a finite number, e.g. 0.45")
        _choice("--decay-mode", self.mode, DECAY_MODES)
        validate_layers(self.layers, n_layers, "--decay-layers")
        return self

    @property
    def active(self) -> bool:
        """True when the intervention changes anything."""
        return self.rate != 1.0 and (bool(self.steps) or self.threshold is not None)


@dataclass
class DecodingConfig:
    """How tokens are chosen (greedy or sampling) and which interventions (SGRS, LocoRE, decay) act."""

    max_new_tokens: int = 64
    strategy: Strategy = "greedy"
    seed: int = 0
    temperature: float = 1.0
    top_k: int = 0  # for strategy="sample"; 0 = full softmax
    sgrs: SGRSConfig = field(default_factory=SGRSConfig)
    locore: LocoREConfig = field(default_factory=LocoREConfig)
    decay: SaliencyDecayConfig = field(default_factory=SaliencyDecayConfig)

    def validate(self, n_layers: int | None = None) -> DecodingConfig:
        """Every decoding setting (all blocks, whatever the strategy, so a run never records an impossible
        value); the SGRS layers are checked against `n_layers` only for strategy "sgrs", the decay layers only
        when the decay is active."""
        _choice("--strategy", self.strategy, STRATEGIES)
        _int_at_least("--max-new-tokens", self.max_new_tokens, 1)
        if not _is_int(self.seed):
            raise SaliencyLabError(f"--seed {self.seed!r}: must be an integer")
        if not _is_number(self.temperature) or self.temperature <= 0:
            raise SaliencyLabError(f"--temperature {self.temperature!r}: must be a finite number > 0; "
                                   "for argmax decoding use --strategy greedy")
        _int_at_least("--top-k", self.top_k, 0, "0 samples from the full softmax")
        self.sgrs.validate(n_layers if self.strategy == "sgrs" else None)
        self.locore.validate()
        self.decay.validate(n_layers if self.decay.active else None)
        if self.decay.active and self.strategy == "sgrs":
            raise SaliencyLabError("--decay-rate: saliency decay runs with --strategy greedy or sample, not sgrs")
        return self


@dataclass
class ModelConfig:
    """The model to load: local folder (or cached HF id), dtype, device, revision."""

    model: str  # local directory or HF id
    dtype: DType = "float32"
    device: str = "cpu"
    revision: str | None = None

    def validate(self) -> ModelConfig:
        """Itself, checked; SaliencyLabError naming the option otherwise."""
        if not isinstance(self.model, str) or not self.model.strip():
            raise SaliencyLabError("--model is empty; pass a local model folder")
        _choice("--dtype", self.dtype, DTYPES)
        return self


#: `--batch-size auto`: at most this many samples per batch, fewer when `--max-batch-tokens` says so.
AUTO_MAX_BATCH = 32
#: Default `--max-batch-tokens` (padded input + new tokens summed over the rows of a batch) per device type.
DEFAULT_MAX_BATCH_TOKENS = {"cpu": 2048, "cuda": 32768}


@dataclass
class BatchConfig:
    """How many samples share one forward (docs/capture.md, "Batches"); numbers never depend on it."""

    size: int | Literal["auto"] = "auto"  # rows per batch; "auto": up to AUTO_MAX_BATCH within max_tokens
    max_tokens: int | None = None  # cap on rows x (longest input + max_new_tokens); None: per-device default

    def validate(self) -> BatchConfig:
        """Itself, checked (one line naming the flag otherwise)."""
        if self.size != "auto":
            _int_at_least("--batch-size", self.size, 1, "or auto")
        if self.max_tokens is not None:
            _int_at_least("--max-batch-tokens", self.max_tokens, 1, "or leave it out for the device default")
        return self

    def limits(self, device: str) -> tuple[int, int]:
        """(most rows, most padded tokens) of one batch on `device` ("cpu", "cuda", "cuda:1", ...)."""
        kind = "cuda" if str(device).startswith("cuda") else "cpu"
        tokens = self.max_tokens if self.max_tokens is not None else DEFAULT_MAX_BATCH_TOKENS[kind]
        rows = AUTO_MAX_BATCH if self.size == "auto" else int(self.size)
        return rows, tokens


@dataclass
class CaptureConfig:
    """Everything `saliency-lab capture` takes."""

    model: ModelConfig
    data: str  # manifest path (JSONL)
    out: str  # root folder; the run lives in <out>/<run_id>
    run_id: str | None = None  # default: derived from model name + time
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    saliency: SaliencyConfig = field(default_factory=SaliencyConfig)
    shard: tuple[int, int] | Literal["auto"] = (0, 1)  # (k, N): this process fills shard k of N
    resume: bool = False
    samples_per_part: int = 16
    quiet: bool = False
    # Scale (docs/capture.md, "Scale"): CPU threads (None: saliency_lab.threads' default). "auto" shards
    # come from the launcher (saliency_lab.launch) and are resolved by `saliency_lab.run.capture`.
    threads: int | None = None
    batch: BatchConfig = field(default_factory=BatchConfig)

    def validate(self) -> CaptureConfig:
        """All settings that need no model; raises SaliencyLabError before anything is read or written."""
        if self.threads is not None:
            _int_at_least("--threads", self.threads, 1, "or leave it out for the default")
        self.batch.validate()
        if self.shard == "auto":
            raise SaliencyLabError("--shard auto: resolve it first (saliency_lab.run.capture does, from torchrun "
                                   "or SLURM variables)")
        k, n = self.shard
        if not (_is_int(n) and _is_int(k) and n >= 1 and 0 <= k < n):
            raise SaliencyLabError(f"--shard {k}/{n}: need 0 <= k < N, e.g. --shard 0/4 ... --shard 3/4")
        _int_at_least("--samples-per-part", self.samples_per_part, 1)
        if self.run_id is not None and not _RUN_ID_RE.match(self.run_id):
            raise SaliencyLabError(
                f"--run-id {self.run_id!r}: use letters, digits, '.', '_' or '-' (no slashes), at most 128 characters"
            )
        self.model.validate()
        self.decoding.validate()
        self.saliency.validate()
        return self

    def to_json(self) -> dict[str, Any]:
        """Every setting as plain nested dicts (what run.json records)."""
        return asdict(self)
