"""The report in a real browser: headless Chromium, network blocked, loaded from a file URL. Every chart
must render (an <svg> in its container) with no console error, uncaught exception or blocked load."""

from __future__ import annotations

import pytest
from _report_fixtures import ARTIFACTS, require_chromium, synthetic_run

from saliency_lab.report import ReportConfig, build_report
from saliency_lab.report.browser import check_report

pytestmark = pytest.mark.browser


def test_every_chart_renders_offline(tmp_path):
    exe = require_chromium()
    base = synthetic_run(tmp_path / "runs", "baseline", n_samples=20)
    sgrs = synthetic_run(tmp_path / "runs", "sgrs", n_samples=16, effect=0.1, seed=5)
    out = build_report([base, sgrs], ARTIFACTS / "report-synthetic.html", ReportConfig(n_bootstrap=50))
    res = check_report(out, screenshot=ARTIFACTS / "report-synthetic.png", chromium=exe)
    assert res.charts_total >= 10
    assert res.errors == []
    assert res.charts_done == f"{res.charts_total}/{res.charts_total}", "some chart never finished embedding"
    assert all(res.rendered.values()), [c for c, ok in res.rendered.items() if not ok]
    assert res.screenshot is not None and res.screenshot.stat().st_size > 10_000


def test_browser_check_catches_a_broken_chart(tmp_path):
    """The check must be able to fail: a spec Vega cannot parse shows up as an error and a missing SVG."""
    exe = require_chromium()
    run = synthetic_run(tmp_path / "runs", "r", n_samples=8, labels=False)
    out = build_report([run], tmp_path / "ok.html", ReportConfig(n_bootstrap=20))
    html = out.read_text(encoding="utf-8")
    broken = html.replace('"mark":{"type":"rect"}', '"mark":{"type":"no-such-mark"}', 1)
    assert broken != html
    bad = tmp_path / "bad.html"
    bad.write_text(broken, encoding="utf-8")
    res = check_report(bad, chromium=exe)
    assert not res.ok and res.errors and not all(res.rendered.values())
