"""The summary section answers first, and its numbers are the ones the data give: CHAIR per run and the
paired change of an intervention recomputed here by hand, SGRS rates recomputed from the decisions table,
separation numbers equal to the analysis, and every number links to a section of the page."""

from __future__ import annotations

import json
import re

import numpy as np
import polars as pl
import pytest
from _report_fixtures import parse, synthetic_run

from saliency_lab.report import ReportConfig, build_report

_spec = __import__("_report_fixtures")._mod  # the synthetic-run helpers (tests/unit/_report_synth.py)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("summary")
    runs = {}
    for name, kw in (
        ("base", {}),
        ("sample", {"seed": 1}),
        ("sgrs", {"seed": 2, "effect": 0.1}),
        ("locore", {"seed": 3}),
    ):
        runs[name] = synthetic_run(root / "runs", name, n_samples=24, **kw)
    _spec.as_intervention(runs["sample"], "sample", top_k=5)
    _spec.as_intervention(runs["sgrs"], "sgrs", seed=4)
    _spec.as_intervention(runs["locore"], "greedy", locore_beta=0.2)
    _spec.as_intervention(runs["base"], "greedy")
    out = build_report(list(runs.values()), root / "r.html", ReportConfig(n_bootstrap=50))
    html = out.read_text(encoding="utf-8")
    return runs, html, parse(html)


def _chair_by_hand(run) -> tuple[float, dict[str, tuple[int, int]]]:
    lab = pl.read_parquet(run / "labels" / "chair.parquet")
    per: dict[str, dict[int, int]] = {}
    for sid, mid, label in lab.select("sample_id", "mention_id", "label").iter_rows():
        per.setdefault(sid, {})
        per[sid][mid] = max(per[sid].get(mid, 0), int(label))
    counts = {sid: (len(m), sum(m.values())) for sid, m in per.items()}
    return sum(h for _, h in counts.values()) / sum(m for m, _ in counts.values()), counts


def test_summary_is_first_and_links_every_number(page):
    _, html, p = page
    assert p.sections[0] == "summary"
    assert {"interventions", "separation", "detector", "config", "explorer"} <= set(p.sections)
    summary = html[
        html.index('<section id="summary"') : html.index("</section>", html.index('<section id="summary"'))
    ]
    links = re.findall(r'<a href="#([a-z-]+)"', summary)
    assert links and set(links) <= set(p.sections)
    # every number in the summary's tables and sentences carries a link
    for cell in re.findall(r"<td[^>]*data-value[^>]*>(.*?)</td>", summary):
        assert cell.startswith("<a href=")


def test_chair_and_paired_change_by_hand(page):
    runs, _, p = page
    for name, run in runs.items():
        chair_i, _ = _chair_by_hand(run)
        assert float(p.values[f"summary|{name}|chair_i"]) == pytest.approx(chair_i, rel=1e-12)
        assert p.values[f"runs|{name}|chair_i"] == p.values[f"summary|{name}|chair_i"]  # the linked section
    # sgrs vs sample, locore vs base: the same samples, intervention minus control
    for name, ctl in (("sgrs", "sample"), ("locore", "base")):
        _, c1 = _chair_by_hand(runs[name])
        _, c0 = _chair_by_hand(runs[ctl])
        ok = set(
            pl.read_parquet(runs[name] / "samples" / "**" / "*.parquet").filter(pl.col("status") == "ok")[
                "sample_id"
            ]
        ) & set(
            pl.read_parquet(runs[ctl] / "samples" / "**" / "*.parquet").filter(pl.col("status") == "ok")[
                "sample_id"
            ]
        )

        def ci(c, ok=ok):
            return sum(c.get(s, (0, 0))[1] for s in ok) / sum(c.get(s, (0, 0))[0] for s in ok)

        assert float(p.values[f"summary|{name}|delta_chair_i"]) == pytest.approx(ci(c1) - ci(c0), rel=1e-12)
    assert "summary|base|delta_chair_i" not in p.values and "summary|sample|delta_chair_i" not in p.values


def test_sgrs_rates_from_the_decisions_table(page):
    runs, _, p = page
    d = pl.read_parquet(runs["sgrs"] / "decisions" / "**" / "*.parquet")
    steps = {}
    for sid, step, draw, acc, fb in d.select("sample_id", "step", "draw", "accepted", "fallback").iter_rows():
        s = steps.setdefault((sid, step), {"first_rejected": False, "fallback": False})
        s["first_rejected"] |= draw == 0 and not acc
        s["fallback"] |= fb
    rej = np.mean([s["first_rejected"] for s in steps.values()])
    fall = np.mean([s["fallback"] for s in steps.values()])
    r, f = (float(x) for x in p.values["summary|sgrs|sgrs"].split("|"))
    assert r == pytest.approx(rej) and f == pytest.approx(fall) and 0 < f < r


def test_separation_numbers_are_the_analysis(page):
    runs, html, p = page
    from saliency_lab.analysis import AnalysisConfig
    from saliency_lab.report.separation import family_separation

    sep = family_separation([runs["base"]], "chair", AnalysisConfig(n_bootstrap=50).validate())
    rows = {r.score: r for r in sep["base"] if r.score != "step"}  # step alone is on every row as step_auroc
    assert {"out_mean", "source_share", "attn_out"} <= set(rows)
    assert "sep|base|step|controlled" not in p.values
    for score, r in rows.items():
        assert float(p.values[f"sep|base|{score}|controlled"]) == r.controlled_auroc
        assert float(p.values[f"separation|base|{score}|pooled"]) == r.pooled_auroc
    assert float(p.values["sep|base|step"]) == rows["out_mean"].step_auroc


def test_configuration_once(page):
    _, html, p = page
    differ = html[
        html.index('data-table="config-differ"') : html.index(
            "</table>", html.index('data-table="config-differ"')
        )
    ]
    assert "decoding.strategy" in differ and "decoding.locore.beta" in differ
    # SGRS settings appear for the SGRS run only; a greedy run shows a dash
    assert p.values.get("config|sgrs|decoding.sgrs.alpha") == "0.6"
    assert "config|base|decoding.sgrs.alpha" not in p.values
    assert re.search(r'<td class="na" data-key="config\|base\|decoding\.sgrs\.alpha">–</td>', html)
    assert '<details class="folded" data-details="config-same">' in html
    same = html[
        html.index('data-details="config-same"') : html.index(
            "</details>", html.index('data-details="config-same"')
        )
    ]
    assert "model.n_layers" in same and "decoding.strategy" not in same


def test_no_nan_bins_and_a_step_controlled_curve(page):
    _, html, p = page
    main = html[html.index("<main>") : html.index("</main>")]  # the page's markup, no scripts
    assert not re.search(r"\bnan\b", main, re.I)
    assert "curve-controlled" in p.tables and "position" in p.tables
    assert any(c.startswith("chart-curve-out-mean-step-controlled") for c in p.charts)
    assert "chart-position-rate" in p.charts and "chart-position-score" in p.charts


def test_explorer_document(page):
    runs, html, _ = page
    doc = json.loads(
        re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', html, re.S).group(1)
    )
    from saliency_lab.store.catalog import open_catalog

    with open_catalog([str(runs["base"])]) as cat:
        ts = cat.query("token_scores", {"labels": "chair"})
    family = [c for c in ("out_mean", "prev", "out_share", "source_share", "attn_out", "lookback_ratio")]
    assert set(family) <= set(doc["scores"]) and doc["default"] == "out_mean" and "step" not in doc["scores"]
    n_ok = sum(
        pl.read_parquet(r / "samples" / "**" / "*.parquet").filter(pl.col("status") == "ok").height
        for r in runs.values()
    )
    assert len(doc["samples"]) == n_ok
    s = next(x for x in doc["samples"] if doc["runs"][x["r"]]["id"] == "base")
    want = ts.filter(pl.col("sample_id") == s["id"]).sort("step")
    assert s["st"] == want["step"].to_list()
    for name in family:
        for got, exp in zip(s["s"][name], want[name].to_list(), strict=True):
            assert (got is None and exp is None) or got == pytest.approx(exp, rel=1e-3)


def test_media_budget_drops_and_says_so(tmp_path):
    run = synthetic_run(tmp_path / "runs", "img", rows="all", images=16, n_samples=10)
    one = build_report([run], tmp_path / "full.html", ReportConfig(n_bootstrap=0, compute_calibration=False))
    doc = json.loads(re.search(r'id="explorer-data">(.*?)</script>', one.read_text(), re.S).group(1))
    assert all("img" in s and "patch" in s for s in doc["samples"]) and doc["dropped"] == []
    image_bytes = len(doc["images"][0])
    # room for about two images and nothing else: the rest is dropped, and the page says what and why
    cfg = ReportConfig(n_bootstrap=0, compute_calibration=False, image_budget_mb=2.5 * image_bytes / 1e6)
    html = build_report([run], tmp_path / "small.html", cfg).read_text()
    doc = json.loads(re.search(r'id="explorer-data">(.*?)</script>', html, re.S).group(1))
    with_img = [s for s in doc["samples"] if "img" in s]
    assert 0 < len(with_img) < len(doc["samples"]) and len(doc["images"]) == len(with_img)
    assert all("img_note" in s for s in doc["samples"] if "img" not in s)
    assert "left out (embedded media budget" in html and "image" in doc["dropped"][0]
