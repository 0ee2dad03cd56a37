"""The per-sample capture pipeline: prepare -> decode -> saliency pass -> tables (docs/capture.md).

Layer order: models -> saliency -> decoding -> capture -> run -> cli; this package uses the three below it and is
driven by `saliency_lab.run.capture`.
"""

from saliency_lab.pipeline.sample import SampleResult, capture_sample
from saliency_lab.pipeline.tables import build_tables

__all__ = ["SampleResult", "build_tables", "capture_sample"]
