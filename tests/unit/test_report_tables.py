"""Report tables and page pieces: escaping, number formatting, script-safe JSON."""

from __future__ import annotations

import json

import altair as alt
import pytest

from saliency_lab.report import tables as tb
from saliency_lab.report.assets import render_page
from saliency_lab.report.page import Charts, Section


def test_fmt_num_and_cells_keep_exact_values():
    assert tb.fmt_num(0.4721) == "0.472"
    assert tb.fmt_num(12345) == "12,345"
    assert tb.fmt_num(None) == "–"
    assert tb.fmt_num(float("nan")) == "–"
    assert tb.fmt_num(2.5e-5) == "2.50e-05"
    cell = tb.num(0.123456789)
    assert cell.text == "0.123" and float(cell.value) == 0.123456789
    ms = tb.mean_sd(0.472, 0.136)
    assert ms.text == "0.472 ± 0.136" and ms.value == "0.472|0.136"
    assert tb.fmt_p(1e-20) == "< 1e-16" and tb.fmt_p(0.5) == "0.5000" and tb.fmt_p(2e-4) == "2.00e-04"
    assert tb.num(float("inf")).value is None


def test_flatten_nested_config():
    out = tb.flatten("decoding", {"seed": 1, "sgrs": {"alpha": 0.6, "window": 5}}, [])
    assert out == [("decoding.seed", 1), ("decoding.sgrs.alpha", 0.6), ("decoding.sgrs.window", 5)]


def test_template_escapes_user_text():
    evil = '<script>alert("x")</script>'
    sec = Section("summary", "Run <summary>")
    sec.table(tb.key_value_table("k", "T", [("prompt", evil)]))
    sec.cases("c", "cases", [{"sample_id": evil, "step": 1, "cls": "hal", "before": evil, "token": "<b>",
                              "after": "&", "head": evil}])
    charts = Charts()
    charts.add("x", alt.Chart(alt.Data(values=[{"t": evil}])).mark_point().encode(x="t:N"))
    html = render_page(dict(title=evil, version="0", generated_at="now", runs=[], labelset=None, score_desc="s",
                            sections=[sec], css="", vega_js="", charts_json=charts.to_script_json(),
                            vega_versions="v"))
    assert evil not in html
    assert "&lt;script&gt;alert(" in html and "Run &lt;summary&gt;" in html and "<mark class=\"hal\">&lt;b&gt;</mark>" in html
    # The JSON island parses back to the same spec and cannot close its <script> element.
    start = html.index('id="chart-specs">') + len('id="chart-specs">')
    island = html[start: html.index("</script>", start)]
    assert "</" not in island
    specs = json.loads(island)
    assert specs["chart-x"]["data"]["values"][0]["t"] == evil


def test_chart_ids_are_unique_and_specs_validate():
    charts = Charts()
    ch = alt.Chart(alt.Data(values=[{"a": 1}])).mark_point().encode(x="a:Q")
    a = charts.add("map s1", ch)
    b = charts.add("map s1", ch)
    assert a["chart_id"] != b["chart_id"]
    bad = alt.Chart(alt.Data(values=[{"a": 1}])).mark_point().encode(x=alt.X("a:Q", scale={"zero": "nope"}))
    with pytest.raises(Exception):  # noqa: B017 - Altair raises its own SchemaValidationError
        charts.add("bad", bad)
