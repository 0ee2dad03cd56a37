"""Configuration of `analyze` and `calibrate`. Every field changes numbers, so both are written into the
result JSON (`config` key) next to the results they produced."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.scores import SCORE_NAMES, SCORES, parse_scores

Normalization = Literal["row", "none", "matrix"]

#: Attention-only measures compared against saliency in every analysis (SPEC section 7).
#: attn_out: head-mean post-softmax attention mass from the query row to prior output keys, averaged over
#: the target layers. lookback_ratio: Lookback-Lens-style context share = mass on system+image+prompt over
#: all mass; since post-softmax rows sum to 1 over keys, context mass = 1 - attn_out (docs/analysis.md).
ATTENTION_MEASURES = ("attn_out", "lookback_ratio")


#: `calibrate --score auto` searches these: every score but the step, which cannot tell candidates of one
#: step apart (SGRS resamples within a step).
AUTO_SCORES = tuple(n for n in SCORE_NAMES if n != "step")
DEFAULT_ALPHAS = [round(0.1 * i, 2) for i in range(1, 16)]
DEFAULT_WINDOWS = [1, 2, 3, 5, 8, 12]
#: The bounded grid of `--score auto` (both directions, every score, 3 layer sets: 2 x 10 x 3 x 40 = 2400
#: settings, a few seconds): alpha spans both sides of 1 because `reject high` needs tau above the mean.
AUTO_ALPHAS = [round(0.2 * i, 2) for i in range(1, 11)]
AUTO_WINDOWS = [1, 3, 5, 8]


@dataclass
class AnalysisConfig:
    # token score(s): a name of saliency_lab.store.scores, a comma list or "all"; the first is the primary
    # score (curve, failures, the saliency-vs-attention comparison), all get the separation table
    score: str = "out_mean"
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
    step_bin: int = 1  # width of a step stratum of the controlled AUROC (1 = pairs at the same step)
    step_band: int = 8  # width of the step bands of the Table-4 means per band

    @property
    def scores(self) -> list[str]:
        """The requested score names, 'all' expanded."""
        return parse_scores(self.score)

    def validate(self) -> AnalysisConfig:
        parse_scores(self.score)
        if self.step_bin < 1 or self.step_band < 1:
            raise SaliencyLabError(f"step_bin={self.step_bin}, step_band={self.step_band}: widths >= 1 step")
        _check_choice("binning", self.binning, ("equal", "quantile"))
        _check_choice("normalization", self.normalization, ("row", "none", "matrix"))
        _check_choice("fdr", self.fdr, ("holm", "bh"))
        if self.bins < 1:
            raise SaliencyLabError(f"bins={self.bins}: need at least 1 bin")
        if self.n_bootstrap < 0:
            raise SaliencyLabError(f"n_bootstrap={self.n_bootstrap}: must be >= 0")
        return self

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CalibrationConfig:
    # None = DEFAULT_ALPHAS / DEFAULT_WINDOWS, or the bounded AUTO_* grid with score "auto" (set by validate)
    alphas: list[float] | None = None
    windows: list[int] | None = None
    # Target-layer sets to try; None = [upper half, all layers, last layer] of the (first) run.
    layer_sets: list[list[int]] | None = None
    budget: float = 0.1  # largest false-rejection rate on correct tokens allowed for the recommendation
    max_resample: int = 3  # R: draws per step before SGRS falls back (for expected resamples)
    # a score name, a comma list, "all" or "auto" (= AUTO_SCORES, both directions)
    score: str = "out_mean"
    # "low" | "high" | "both"; None = "both" for auto, else each score's own direction (store.scores)
    reject: str | None = None
    normalization: Normalization = "row"
    first_subtoken_only: bool = False
    n_bootstrap: int = 1000  # sample resamples for the bound on recall - false rejection
    seed: int = 0
    # fewer samples holding labeled tokens than this: no recommendation (a bootstrap over a handful of
    # samples understates the uncertainty, and the best of thousands of settings then looks significant)
    min_samples: int = 20

    @property
    def scores(self) -> list[str]:
        """The score names searched."""
        return list(AUTO_SCORES) if self.score == "auto" else parse_scores(self.score)

    def directions(self, score: str) -> list[str]:
        """The rejection directions searched for `score`."""
        if self.reject == "both" or (self.reject is None and self.score == "auto"):
            return ["low", "high"]
        return [self.reject or SCORES[score].reject]

    def validate(self) -> CalibrationConfig:
        auto = self.score == "auto"
        if self.alphas is None:
            self.alphas = list(AUTO_ALPHAS if auto else DEFAULT_ALPHAS)
        if self.windows is None:
            self.windows = list(AUTO_WINDOWS if auto else DEFAULT_WINDOWS)
        _ = self.scores
        if self.reject is not None:
            _check_choice("reject", self.reject, ("low", "high", "both"))
        if self.n_bootstrap < 1:
            raise SaliencyLabError(f"n_bootstrap={self.n_bootstrap}: must be >= 1 (a setting is recommended "
                                   "only when a bootstrap bound says it beats chance)")
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
        return asdict(self)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SaliencyLabError(f"{name}={value!r}: choose one of {', '.join(choices)}")
