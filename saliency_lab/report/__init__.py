"""Self-contained HTML reports of saliency runs: `build_report(runs, out_html, ReportConfig(...))`."""

from saliency_lab.report.build import build_report
from saliency_lab.report.config import ReportConfig

__all__ = ["ReportConfig", "build_report"]
