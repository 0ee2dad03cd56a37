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


@pytest.fixture(scope="module")
def explorer_page(tmp_path_factory):
    """A two-run report (one with `--rows all` and images) opened in headless Chromium over DevTools."""
    from _report_fixtures import _mod

    from saliency_lab.report.cdp import Page

    exe = require_chromium()
    root = tmp_path_factory.mktemp("browser")
    base = synthetic_run(root / "runs", "base", rows="all", images=16, n_samples=12)
    sgrs = synthetic_run(root / "runs", "sgrs", n_samples=10, seed=5)
    _mod.as_intervention(sgrs, "sgrs", seed=1)
    out = build_report([base, sgrs], root / "r.html", ReportConfig(n_bootstrap=30))
    page = Page(chromium=exe, height=1000)
    try:
        page.open(out)
        page.wait_for("document.getElementById('explorer-root').getAttribute('data-explorer-ready')")
        yield page, base
    finally:
        page.close()


def test_page_in_a_real_browser(explorer_page):
    page, _ = explorer_page
    assert page.eval("document.querySelector('main section').id") == "summary"
    total = page.eval("document.querySelectorAll('[data-chart]').length")
    assert total >= 10
    assert page.eval("document.body.getAttribute('data-charts-done')") == f"{total}/{total}"
    assert page.eval("Array.from(document.querySelectorAll('[data-chart]')).every("
                     "e => e.getAttribute('data-rendered') === '1' && e.querySelector('svg'))")
    assert page.eval("document.getElementById('report-errors').textContent") == ""
    assert page.console_errors() == []
    assert page.requests() and page.network_requests() == []  # the page itself loaded, nothing else


def _detail(page) -> dict:
    return page.eval("""(function () {
      var d = document.getElementById('explorer-detail');
      var out = {run: d.getAttribute('data-run'), sample: d.getAttribute('data-sample'),
                 step: +d.getAttribute('data-step'), scores: {}, layers: [], row: 0, canvas: null};
      d.querySelectorAll('td[data-score]').forEach(function (td) {
        out.scores[td.getAttribute('data-score')] = td.hasAttribute('data-value') ? +td.getAttribute('data-value') : null; });
      d.querySelectorAll('td[data-layer][data-col]').forEach(function (td) {
        out.layers.push([+td.getAttribute('data-layer'), td.getAttribute('data-col'),
                         td.hasAttribute('data-value') ? +td.getAttribute('data-value') : null]); });
      out.row = d.querySelectorAll('span.rowtok').length;
      var c = d.querySelector('canvas');
      out.canvas = c ? [c.getAttribute('data-drawn'), c.getAttribute('data-patches')] : null;
      return out; })()""")


def test_clicking_a_token_shows_its_values(explorer_page):
    """The side panel after a real mouse click holds the token's scores and per-layer values; both are
    compared with SQL over the run (named queries token_scores and token_layers)."""
    import polars as pl

    from saliency_lab.store.catalog import open_catalog

    page, base = explorer_page
    page.select("#explorer-run", "0")
    step = page.eval("(function(){var t=Array.from(document.querySelectorAll('#explorer-list span.tok.hal'))"
                     ".find(e => +e.dataset.step >= 2); t.setAttribute('data-pick', '1'); return +t.dataset.step;})()")
    page.click("#explorer-list span.tok[data-pick='1']")
    page.wait_for("!!document.querySelector('#explorer-detail canvas[data-drawn]')")
    got = _detail(page)
    assert got["run"] == "base" and got["step"] == step
    with open_catalog([str(base)]) as cat:
        ts = cat.query("token_scores", {"labels": "chair"}).filter(
            (pl.col("sample_id") == got["sample"]) & (pl.col("step") == step)).row(0, named=True)
        tl = cat.query("token_layers", {}).filter((pl.col("sample_id") == got["sample"]) & (pl.col("step") == step))
    assert {"out_mean", "source_share", "attn_out"} <= set(got["scores"])
    for name, v in got["scores"].items():
        assert (v is None and ts[name] is None) or v == pytest.approx(ts[name], rel=1e-3), name
    want = {(r["layer"], c): r[c] for r in tl.iter_rows(named=True) for c in tl.columns if c not in
            ("run_id", "sample_id", "image_id", "step", "layer")}
    assert len(got["layers"]) == len(want)
    for layer, col, v in got["layers"]:
        exp = want[(layer, col)]
        assert (v is None and exp is None) or v == pytest.approx(exp, rel=1e-3, abs=1e-12), (layer, col)
    assert got["row"] == step  # the saliency row over the earlier output tokens
    assert got["canvas"] == ["1", "1"]  # the image, with the token's patch saliency drawn over it


def test_score_selector_recolours_and_filters_filter(explorer_page):
    page, _ = explorer_page
    page.select("#explorer-run", "")
    js = "Array.from(document.querySelectorAll('#explorer-list span.tok')).map(s => s.style.backgroundColor)"
    before = page.eval(js)
    page.select("#explorer-score", "attn_out")
    after = page.eval(js)
    assert len(before) == len(after) > 20
    assert sum(a != b for a, b in zip(before, after, strict=True)) > len(before) // 3
    assert page.eval("document.getElementById('explorer-legend').textContent").startswith("attn_out")
    page.select("#explorer-run", "1")
    runs = page.eval("Array.from(document.querySelectorAll('#explorer-list .ex-sample')).map(e => e.dataset.run)")
    assert runs and set(runs) == {"sgrs"}
    page.select("#explorer-run", "")
    page.eval("(function(){var q=document.getElementById('explorer-q'); q.value='s000003';"
              "q.dispatchEvent(new Event('input')); return 1;})()")
    assert page.eval("document.querySelectorAll('#explorer-list .ex-sample').length") == 0  # ids are not text
    page.eval("(function(){var q=document.getElementById('explorer-q'); q.value='';"
              "q.dispatchEvent(new Event('input')); return 1;})()")
    page.select("#explorer-label", "hal")
    flags = page.eval("Array.from(document.querySelectorAll('#explorer-list .ex-sample'))"
                      ".map(e => !!e.querySelector('span.tok.hal'))")
    assert flags and all(flags)
    assert page.console_errors() == [] and page.network_requests() == []
