"""What a report shows and how (every choice here is also printed in the page header)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from saliency_lab.errors import SaliencyLabError


@dataclass
class ReportConfig:
    """Settings of `build_report`."""

    labels: str | None = None  # labelset name; None = 'chair' when present, else the first one found
    samples: list[str] | None = None  # sample ids for saliency maps; None = chosen automatically
    n_auto_samples: int = 1  # automatic maps of each kind (clearest hallucination, clearest correct)
    score: str = "out_mean"  # the primary token score: a name of saliency_lab.store.scores (not "step")
    layers: list[int] | None = None  # target layers; None = upper half of the layers
    n_bootstrap: int = 1000  # AUROC bootstrap resamples in the analysis
    n_failures: int = 6  # failure cases of each kind shown per run
    calibration: str | Path | None = None  # calibration.json or the folder holding it
    compute_calibration: bool = True  # run the SGRS calibration when labels exist and none was given
    max_map_steps: int = 40  # longest token window drawn in one saliency map
    binning: Literal["quantile", "uniform", "equal"] = "quantile"  # curve bins; uniform = equal width on [0, 1]
    bins: int = 10  # curve bins
    explorer: bool = True  # the token explorer section
    image_budget_mb: float = 8.0  # total size of the images embedded in the explorer (data URIs)
    image_px: int = 96  # longest side of an embedded image (thumbnails, re-encoded as PNG)
    title: str | None = None
    templates_dir: str | Path | None = None  # folder with report.html.j2 + report.css (default: reports/)

    def validate(self) -> ReportConfig:
        """Check every setting; return self."""
        from saliency_lab.store.scores import SCORE_NAMES

        names = [n for n in SCORE_NAMES if n != "step"]
        if self.score not in names:
            raise SaliencyLabError(f"score={self.score!r}: choose one of {', '.join(names)}")
        if self.n_failures < 0 or self.n_auto_samples < 0:
            raise SaliencyLabError("n_failures and n_auto_samples must be >= 0")
        if self.binning not in ("quantile", "uniform", "equal"):
            raise SaliencyLabError(f"binning={self.binning!r}: choose quantile or uniform")
        if self.bins < 1:
            raise SaliencyLabError(f"bins={self.bins}: need at least 1 bin")
        if self.image_budget_mb < 0 or self.image_px < 8:
            raise SaliencyLabError("image_budget_mb must be >= 0 and image_px >= 8")
        if self.max_map_steps < 2:
            raise SaliencyLabError(f"max_map_steps={self.max_map_steps}: need at least 2 tokens")
        return self

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON object."""
        out = asdict(self)
        for key in ("calibration", "templates_dir"):
            if out[key] is not None:
                out[key] = str(out[key])
        return out


def analysis_binning(binning: str) -> str:
    """The analysis' name for a report binning ('uniform' is the analysis' 'equal')."""
    return "equal" if binning in ("uniform", "equal") else binning
