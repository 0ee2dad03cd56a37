"""Report built from synthetic runs with the real schema: structure, chart specs, numbers, no network."""

from __future__ import annotations

import json
import math
import re

import jsonschema
import polars as pl
import pytest
from _report_fixtures import external_loads, parse, synthetic_run
from altair.vegalite.v6.schema import load_schema

from saliency_lab.analysis import AnalysisConfig, analyze
from saliency_lab.cli import main as cli_main
from saliency_lab.errors import SaliencyLabError
from saliency_lab.report import ReportConfig, build_report

ALL_SECTIONS = ["summary", "config", "runs", "separation", "detector", "means", "curve", "position", "distributions",
                "layers", "explorer", "maps", "failures", "calibration"]
NEED_LABELS = {"summary", "runs", "separation", "detector", "means", "curve", "position", "distributions", "layers",
               "failures", "calibration"}
FAST = dict(n_bootstrap=50)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    run = synthetic_run(root / "runs", "base", n_samples=24, n_candidates=3)
    out = build_report([run], root / "report.html", ReportConfig(**FAST))
    return run, out, out.read_text(encoding="utf-8")


def _specs(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="chart-specs">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def _inline_values(node) -> list[dict]:
    """Every inline data row anywhere in a spec (top-level data, layers, datasets)."""
    out: list[dict] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "values" and isinstance(v, list):
                out += [d for d in v if isinstance(d, dict)]
            elif k == "datasets" and isinstance(v, dict):
                out += [d for vals in v.values() for d in vals]
            else:
                out += _inline_values(v)
    elif isinstance(node, list):
        for v in node:
            out += _inline_values(v)
    return out


def test_every_section_and_chart_is_present(built):
    _, _, html = built
    page = parse(html)
    assert page.sections == ALL_SECTIONS  # a single run has no comparison section
    assert page.needs == []  # labels, rows and calibration all exist
    specs = _specs(html)
    assert set(page.charts) == set(specs)
    assert any(c.startswith("chart-curve-") for c in specs) and any(c.startswith("chart-map-") for c in specs)
    assert "chart-calibration-frontier" in specs
    assert any(c.startswith("chart-layers-auroc") for c in specs)


def test_chart_specs_validate_against_vega_lite_schema(built):
    schema = load_schema()
    validator = jsonschema.Draft7Validator(schema)
    for cid, spec in _specs(built[2]).items():
        errors = list(validator.iter_errors(spec))
        assert not errors, f"{cid}: {errors[0].message}"


def test_bundle_inlined_once_and_no_external_loads(built):
    _, out, html = built
    assert html.count("window.vegaEmbed=") == 1
    assert external_loads(html) == []
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert out.stat().st_size < 3_000_000


def test_numbers_equal_the_analysis(built):
    run, _, html = built
    vals = parse(html).values
    res = analyze([str(run)], "chair", AnalysisConfig(**FAST, n_failures=6, binning="quantile"))
    lm = res.label_means.filter(pl.col("layer").is_null())
    assert lm.height >= 4
    for r in lm.iter_rows(named=True):
        key = f"{r['run_id']}|{r['measure']}|{r['label']}"
        assert int(vals[f"{key}|n"]) == r["n"]
        mean, sd = (float(x) for x in vals[f"{key}|mean_sd"].split("|"))
        assert mean == r["mean"] and sd == r["sd"]
    for r in res.curve.filter(pl.col("measure") == "out_mean").iter_rows(named=True):
        key = f"{r['run_id']}|{r['bin']}"
        if r["n"] == 0:  # empty bins are never printed
            assert f"{key}|n" not in vals
            continue
        assert int(vals[f"{key}|n"]) == r["n"] and int(vals[f"{key}|n_halluc"]) == r["n_halluc"]
        assert float(vals[f"{key}|lo"]) == r["lo"] and float(vals[f"{key}|hi"]) == r["hi"]  # quantile edges
        if r["n"]:
            assert float(vals[f"{key}|rate"]) == r["rate"]
            lo, hi = (float(x) for x in vals[f"{key}|ci"].split("|"))
            assert (lo, hi) == (r["ci_low"], r["ci_high"])
    dist = _inline_values(_specs(html)["chart-distribution"])
    for lab, name in ((0, "correct"), (1, "hallucinated")):
        n = lm.filter((pl.col("measure") == "out_mean") & (pl.col("label") == lab))["n"].item()
        assert sum(d["count"] for d in dist if d["label_name"] == name) == n
    checked = 0
    for r in res.layer_profile.iter_rows(named=True):
        key = f"{r['run_id']}|{r['measure']}|{r['layer']}"
        for col in ("auroc", "cohen_d", "mean_correct", "mean_halluc", "welch_t"):
            if r[col] is not None and math.isfinite(r[col]):
                assert float(vals[f"{key}|{col}"]) == r[col]
                checked += 1
    assert checked > 0



def test_layer_auroc_intervals_come_from_the_analysis(built):
    run, _, html = built
    res = analyze([str(run)], "chair", AnalysisConfig(**FAST))
    assert "without an interval" not in html
    shown = 0
    for r in res.layer_profile.iter_rows(named=True):
        if math.isfinite(r["auroc_ci_low"]):
            assert f"{r['auroc']:.3f} [{r['auroc_ci_low']:.3f}, {r['auroc_ci_high']:.3f}]" in html
            shown += 1
    assert shown > 0
    specs = _specs(html)
    rows = [d for name, spec in specs.items() if name.startswith("chart-layers-auroc")
            for d in _inline_values(spec) if "auroc_ci_low" in d]
    prof = {(r["measure"], r["layer"]): r for r in res.layer_profile.iter_rows(named=True)}
    assert rows and all(d["auroc_ci_low"] == prof[(d["measure"], d["layer"])]["auroc_ci_low"] for d in rows)

def test_failure_gallery_highlights_the_token(built):
    _, _, html = built
    marks = re.findall(r'<mark class="(hal|cor)">(.*?)</mark>', html)
    assert {k for k, _ in marks} == {"hal", "cor"}
    assert all(t for _, t in marks)


def test_report_without_labels_says_what_needs_them(tmp_path):
    run = synthetic_run(tmp_path / "runs", "nolab", labels=False)
    html = build_report([run], tmp_path / "r.html", ReportConfig(**FAST)).read_text()
    page = parse(html)
    assert page.sections == ALL_SECTIONS
    assert set(page.needs) == NEED_LABELS
    assert any(c.startswith("chart-map-") for c in page.charts)  # maps need rows, not labels


def test_maps_need_rows_message(tmp_path):
    run = synthetic_run(tmp_path / "runs", "norows", rows=None)
    html = build_report([run], tmp_path / "r.html", ReportConfig(**FAST, compute_calibration=False)).read_text()
    page = parse(html)
    assert "maps" in page.needs and "--rows output" in html
    assert "calibration" in page.needs


def test_several_runs_side_by_side(tmp_path, built):
    base = built[0]
    other = synthetic_run(tmp_path / "runs", "locore", n_samples=20, effect=0.1, seed=3)
    html = build_report([base, other], tmp_path / "cmp.html",
                        ReportConfig(**FAST, compute_calibration=False, samples=["s000003"])).read_text()
    page = parse(html)
    assert page.sections[-1] == "compare" and "compare" in page.tables
    curve = next(v for k, v in _specs(html).items() if k.startswith("chart-curve-out-mean"))
    runs_in_curve = {d.get("run_id") for d in _inline_values(curve)}
    assert runs_in_curve == {"base", "locore"}
    assert sum(1 for c in page.charts if c.startswith("chart-map-")) == 2  # chosen sample, in each run


def test_calibration_read_from_file(tmp_path, built):
    from saliency_lab.analysis import CalibrationConfig, calibrate

    run = built[0]
    cal = calibrate([str(run)], "chair", CalibrationConfig(alphas=[0.4, 0.8], windows=[2, 5]))
    paths = cal.write(tmp_path / "cal")
    html = build_report([run], tmp_path / "r.html", ReportConfig(**FAST, calibration=tmp_path / "cal")).read_text()
    vals = parse(html).values
    assert float(vals["alpha"]) == cal.recommended["alpha"]
    assert str(paths["json"]) in html
    with pytest.raises(SaliencyLabError, match="calibration.json"):
        build_report([run], tmp_path / "x.html", ReportConfig(calibration=tmp_path / "nothing"))


def test_cli_writes_report_and_reports_bad_input(tmp_path, built, capsys):
    run = built[0]
    out = tmp_path / "cli.html"
    assert cli_main(["report", str(run), "-o", str(out), "--bootstrap", "20", "--no-calibrate",
                     "--samples", "s000002"]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out
    assert cli_main(["report", str(tmp_path / "missing"), "-o", str(tmp_path / "y.html")]) == 2
    assert "run.json" in capsys.readouterr().err
    assert cli_main(["report", str(run), "-o", str(tmp_path / "z.html"), "--labels", "nope"]) == 2
    assert not (tmp_path / "y.html").exists() and not (tmp_path / "z.html").exists()


def test_empty_label_set_is_explained_not_fatal(tmp_path):
    from saliency_lab.store.schema import empty_table
    from saliency_lab.store.writer import write_part_atomic

    run = synthetic_run(tmp_path / "runs", "nomentions")
    write_part_atomic(empty_table("labels"), run / "labels" / "chair.parquet")
    html = build_report([run], tmp_path / "r.html", ReportConfig(**FAST)).read_text()
    page = parse(html)
    assert {"means", "curve", "layers", "failures", "calibration", "separation"} <= set(page.needs)
    assert "has no labeled tokens" in html
