"""Configuration of `analyze` and `calibrate`. Every field changes numbers, so both are written into the
result JSON (`config` key) next to the results they produced."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from saliency_lab.errors import SaliencyLabError

Score = Literal["out_mean", "prev"]
Normalization = Literal["row", "none", "matrix"]

#: Attention-only measures compared against saliency in every analysis (docs/analysis.md, "`saliency-lab analyze`").
#: attn_out: head-mean post-softmax attention mass from the query row to prior output keys, averaged over
#: the target layers. lookback_ratio: Lookback-Lens-style context share = mass on system+image+prompt over
#: all mass; since post-softmax rows sum to 1 over keys, context mass = 1 - attn_out (docs/analysis.md).
ATTENTION_MEASURES = ("attn_out", "lookback_ratio")


@dataclass
class AnalysisConfig:
    """Settings of `analyze` (each one is recorded in the result files)."""

    score: Score = "out_mean"  # token score: Eq. 6 mean over prior outputs, or normalized prev
    layers: list[int] | None = None  # target layers; None = upper half (layer >= n_layers // 2), per run
    bins: int = 10
    binning: Literal["equal", "quantile"] = "equal"  # equal: width 1/bins on [0,1], values clipped into it
    normalization: Normalization = "row"
    n_bootstrap: int = 1000  # bootstrap resamples for AUROC CIs (resampling samples, not tokens)
    seed: int = 0
    fdr: Literal["holm", "bh"] = "holm"  # multiple-comparison correction across layers
    n_failures: int = 20  # failure cases of each kind per run
    context_chars: int = 40  # text shown either side of a failure case
    first_subtoken_only: bool = False  # keep only subtoken 0 of each labeled mention

    def validate(self) -> AnalysisConfig:
        """Check every setting; return self."""
        _check_choice("score", self.score, ("out_mean", "prev"))
        _check_choice("binning", self.binning, ("equal", "quantile"))
        _check_choice("normalization", self.normalization, ("row", "none", "matrix"))
        _check_choice("fdr", self.fdr, ("holm", "bh"))
        if self.bins < 1:
            raise SaliencyLabError(f"bins={self.bins}: need at least 1 bin")
        if self.n_bootstrap < 0:
            raise SaliencyLabError(f"n_bootstrap={self.n_bootstrap}: must be >= 0")
        return self

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON object."""
        return asdict(self)


@dataclass
class CalibrationConfig:
    """Settings of `calibrate`: the grid searched and the false-rejection budget."""

    alphas: list[float] = field(default_factory=lambda: [round(0.1 * i, 2) for i in range(1, 16)])
    windows: list[int] = field(default_factory=lambda: [1, 2, 3, 5, 8, 12])
    # Target-layer sets to try; None = [upper half, all layers, last layer] of the (first) run.
    layer_sets: list[list[int]] | None = None
    budget: float = 0.1  # largest false-rejection rate on correct tokens allowed for the recommendation
    max_resample: int = 3  # R: draws per step before SGRS falls back (for expected resamples)
    score: Score = "out_mean"
    normalization: Normalization = "row"
    first_subtoken_only: bool = False

    def validate(self) -> CalibrationConfig:
        """Check every setting; return self."""
        _check_choice("score", self.score, ("out_mean", "prev"))
        _check_choice("normalization", self.normalization, ("row", "none", "matrix"))
        if not self.alphas or any(a < 0 for a in self.alphas):
            raise SaliencyLabError(f"alphas={self.alphas}: give one or more non-negative values")
        if not self.windows or any(int(w) < 1 for w in self.windows):
            raise SaliencyLabError(f"windows={self.windows}: give one or more integers >= 1")
        if not 0 <= self.budget <= 1:
            raise SaliencyLabError(f"budget={self.budget}: a false-rejection rate in [0, 1]")
        if self.max_resample < 1:
            raise SaliencyLabError(f"max_resample={self.max_resample}: must be >= 1")
        return self

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON object (the `config` field of calibration.json)."""
        return asdict(self)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SaliencyLabError(f"{name}={value!r}: choose one of {', '.join(choices)}")
