"""Analysis of saliency datasets (docs/analysis.md): binned hallucination curves, significance tests against
attention-only baselines, failure cases and offline SGRS calibration.

Public API (stable names; the HTML report builds on them):

    analyze(runs, labels, config=None) -> AnalysisResult
    calibrate(runs, labels, config=None) -> CalibrationResult
    AnalysisConfig, CalibrationConfig, AnalysisResult, CalibrationResult

`runs` is a list of run directories (folders holding run.json) or globs; `labels` is a labelset name
(`<run>/labels/<labels>.parquet`). Several runs give results per run (a `run_id` column / key), so a
baseline, a LocoRE and an SGRS run can be compared side by side. See saliency_lab.analysis.results for
the columns of every table.
"""

from saliency_lab.analysis.api import analyze, calibrate
from saliency_lab.analysis.config import ATTENTION_MEASURES, AnalysisConfig, CalibrationConfig
from saliency_lab.analysis.results import AnalysisResult, CalibrationResult

__all__ = [
    "ATTENTION_MEASURES",
    "AnalysisConfig",
    "AnalysisResult",
    "CalibrationConfig",
    "CalibrationResult",
    "analyze",
    "calibrate",
]
