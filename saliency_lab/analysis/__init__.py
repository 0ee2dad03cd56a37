"""Analysis of saliency datasets (SPEC section 7): binned hallucination curves, significance tests against
attention-only baselines, failure cases and offline SGRS calibration.

Public API (stable names; the HTML report builds on them):

    analyze(runs, labels, config=None) -> AnalysisResult         (.separation: run_id -> [ScoreSeparation])
    calibrate(runs, labels, config=None) -> CalibrationResult    (.recommended None = no setting beats chance)
    separation_table(tokens, scores, config=None, run_id) -> list[ScoreSeparation]
    train_detector(runs, labels, config=None) -> DetectorResult; load_detector(path); score_run(detector, run)
    AnalysisConfig, CalibrationConfig, DetectorConfig, SeparationConfig and the result types

`runs` is a list of run directories (folders holding run.json) or globs; `labels` is a labelset name
(`<run>/labels/<labels>.parquet`). Several runs give results per run (a `run_id` column / key), so a
baseline, a LocoRE and an SGRS run can be compared side by side. See saliency_lab.analysis.results for
the columns of every table.
"""

from saliency_lab.analysis.api import analyze, calibrate
from saliency_lab.analysis.config import ATTENTION_MEASURES, AnalysisConfig, CalibrationConfig
from saliency_lab.analysis.detector import (
    DetectorConfig,
    DetectorResult,
    FeatureSetResult,
    load_detector,
    score_run,
    train_detector,
)
from saliency_lab.analysis.results import AnalysisResult, CalibrationResult
from saliency_lab.analysis.separation import ScoreSeparation, SeparationConfig, separation_table

__all__ = [
    "ATTENTION_MEASURES",
    "AnalysisConfig",
    "AnalysisResult",
    "CalibrationConfig",
    "CalibrationResult",
    "DetectorConfig",
    "DetectorResult",
    "FeatureSetResult",
    "ScoreSeparation",
    "SeparationConfig",
    "analyze",
    "calibrate",
    "load_detector",
    "score_run",
    "separation_table",
    "train_detector",
]
