"""`analyze` on synthetic runs against independent computations, and the analyze / query CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import polars as pl
import pytest
from _analysis_fixtures import labeled_arrays
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from saliency_lab.analysis import AnalysisConfig, analyze
from saliency_lab.cli import analyze as cli_analyze
from saliency_lab.cli import query as cli_query
from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.catalog import open_catalog
from saliency_lab.store.scores import SCORE_NAMES
from saliency_lab.store.synthetic import SyntheticSpec, make_run


def main(argv: list[str]) -> int:
    """The two command modules under test on their own parser (the full CLI also imports torch for other
    commands, which costs seconds)."""
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli_query.register(sub)
    cli_analyze.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("an")
    a = make_run(root, "base", SyntheticSpec(n_samples=30, n_layers=4, seed=21, effect=0.3))
    b = make_run(root, "sgrs", SyntheticSpec(n_samples=20, n_layers=4, seed=22, effect=0.0))
    return a, b


@pytest.fixture(scope="module")
def result(two_runs):
    return analyze(list(two_runs), "chair", AnalysisConfig(n_bootstrap=100, seed=3))


def test_tests_match_scipy_on_independent_scores(two_runs, result):
    a, _ = two_runs
    x, y, g = labeled_arrays(a, 4, "out_mean")
    t = result.tests["base"]["out_mean"]
    x1, x0 = x[y == 1], x[y == 0]
    assert (t["n_halluc"], t["n_correct"]) == (len(x1), len(x0))
    assert t["mean_halluc"] == pytest.approx(x1.mean()) and t["sd_correct"] == pytest.approx(x0.std(ddof=1))
    assert t["welch_p"] == pytest.approx(sps.ttest_ind(x1, x0, equal_var=False).pvalue, rel=1e-6)
    assert t["mannwhitney_p"] == pytest.approx(sps.mannwhitneyu(x1, x0).pvalue, rel=1e-6)
    assert t["auroc"] == pytest.approx(sps.mannwhitneyu(x0, x1).statistic / (len(x0) * len(x1)))
    assert t["auroc_ci"][0] < t["auroc"] < t["auroc_ci"][1]
    xa, ya, _ = labeled_arrays(a, 4, "attn_out")
    ta = result.tests["base"]["attn_out"]
    assert ta["auroc"] == pytest.approx(sps.mannwhitneyu(xa[ya == 0], xa[ya == 1]).statistic
                                        / ((ya == 0).sum() * (ya == 1).sum()))
    # Lookback ratio = 1 - attention mass: the same ranking mirrored
    assert result.tests["base"]["lookback_ratio"]["auroc"] == pytest.approx(1 - ta["auroc"])
    # the effect is planted in run "base" only: saliency separates better there, and not in "sgrs"
    assert result.tests["base"]["comparison"]["vs_attn_out"]["saliency_better"] is True
    assert result.tests["sgrs"]["out_mean"]["auroc"] < result.tests["base"]["out_mean"]["auroc"]


def test_curve_matches_sql_query_and_wilson(two_runs, result):
    a, _ = two_runs
    with open_catalog([a]) as cat:
        sql = cat.query("binned_curve", {"score": "out_mean"})
    py = result.curve.filter((pl.col("run_id") == "base") & (pl.col("measure") == "out_mean"))
    assert py["n"].to_list() == sql["n"].to_list()
    assert py["n_halluc"].to_list() == sql["n_halluc"].to_list()
    for r in py.filter(pl.col("n") > 0).iter_rows(named=True):
        assert (r["ci_low"], r["ci_high"]) == pytest.approx(
            proportion_confint(r["n_halluc"], r["n"], method="wilson"), abs=1e-12)


def test_layer_profile_and_label_means(two_runs, result):
    a, _ = two_runs
    lp = result.layer_profile.filter((pl.col("run_id") == "base") & (pl.col("measure") == "out_mean"))
    assert lp["layer"].to_list() == [0, 1, 2, 3]
    with open_catalog([a]) as cat:
        sql = cat.query("layer_profile", {"auroc_bins": "0"})
    assert lp["auroc"].to_list() == pytest.approx(sql["auroc"].to_list())
    assert lp["cohen_d"].to_list() == pytest.approx(sql["cohen_d"].to_list())
    # Holm across the 4 layers, by hand: sorted p * (4, 3, 2, 1), running max, capped at 1
    p = np.array(lp["welch_p"].to_list())
    order = np.argsort(p)
    adj = np.minimum(np.maximum.accumulate(p[order] * np.array([4, 3, 2, 1])), 1)
    expect = np.empty(4)
    expect[order] = adj
    assert lp["p_adjusted"].to_list() == pytest.approx(expect.tolist())
    assert lp.filter(pl.col("layer") >= 2)["significant"].all()
    lm = result.label_means.filter((pl.col("run_id") == "base") & pl.col("layer").is_null()
                                   & (pl.col("measure") == "out_mean")).sort("label")
    x, y, _ = labeled_arrays(a, 4, "out_mean")
    assert lm["mean"].to_list() == pytest.approx([x[y == 0].mean(), x[y == 1].mean()])



def test_layer_profile_auroc_interval_by_sample_bootstrap(two_runs, result):
    """Per-layer AUROC CI: numpy resampling of whole samples (the documented draw rule, seed 3, 100 draws)
    over the per-layer scores recomputed from the files, AUROC by scipy."""
    a, _ = two_runs
    lp = result.layer_profile.filter((pl.col("run_id") == "base") & (pl.col("measure") == "out_mean")).sort("layer")
    for layer, row in zip(range(4), lp.iter_rows(named=True), strict=True):
        x, y, g = labeled_arrays(a, 4, "out_mean", layers=[layer])
        rng = np.random.default_rng(3)
        uniq = np.unique(g)
        vals = []
        for _ in range(100):
            pick = rng.integers(0, len(uniq), len(uniq))
            idx = np.concatenate([np.flatnonzero(g == uniq[c]) for c in pick])
            xb, yb = x[idx], y[idx]
            n0, n1 = (yb == 0).sum(), (yb == 1).sum()
            if n0 and n1:
                vals.append(sps.mannwhitneyu(xb[yb == 0], xb[yb == 1]).statistic / (n0 * n1))
        lo, hi = np.percentile(vals, [2.5, 97.5])
        assert (row["auroc_ci_low"], row["auroc_ci_high"]) == pytest.approx((lo, hi), abs=1e-12)
        assert row["auroc_ci_low"] <= row["auroc"] <= row["auroc_ci_high"]
    no_boot = analyze([a], "chair", AnalysisConfig(n_bootstrap=0))
    assert no_boot.layer_profile["auroc_ci_low"].is_nan().all()

def test_result_json_and_files(result, tmp_path):
    doc = result.to_json()
    json.dumps(doc, allow_nan=False)
    assert set(doc["summary"]) == {"base", "sgrs"}
    assert doc["summary"]["base"]["target_layers"] == [2, 3]
    assert "chair_i" in doc["summary"]["base"]["label_metrics"]
    paths = result.write(tmp_path)
    assert json.loads(paths["json"].read_text())["labels"] == "chair"
    for name in ("label_means", "curve", "layer_profile", "failures"):
        assert pl.read_parquet(paths[name]).height == getattr(result, name).height
    f = result.failures.filter(pl.col("run_id") == "base")
    hi = f.filter(pl.col("kind") == "high_score_hallucination")
    assert hi.height == 20 and (hi["label"] == 1).all()
    assert f["layer_scores"].list.len().unique().to_list() == [4]


def test_cli_analyze_calibrate_query(two_runs, tmp_path, capsys):
    a, _ = two_runs
    assert main(["analyze", str(a), "--labels", "chair", "--out", str(tmp_path / "an"),
                 "--n-bootstrap", "50", "--score", "prev"]) == 0
    assert "AUROC" in capsys.readouterr().out
    assert (tmp_path / "an" / "curve.parquet").exists()
    assert main(["calibrate", str(a), "--labels", "chair", "--out", str(tmp_path / "cal"),
                 "--alphas", "0.5,0.7", "--windows", "3,5", "--layer-sets", "2,3;3"]) == 0
    doc = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert doc["recommended"]["layers"] in ([2, 3], [3]) and len(doc["grid"]) == 8
    out = tmp_path / "q.csv"
    assert main(["query", "binned_curve", str(a), "--param", "bins=5", "--out", str(out)]) == 0
    assert pl.read_csv(out).height == 5
    # any score name, several at once, or all: one block of rows per score (column measure)
    assert main(["query", "binned_curve", str(a), "--param", "bins=5", "--param", "score=all", "--out", str(out)]) == 0
    assert pl.read_csv(out)["measure"].unique(maintain_order=True).to_list() == list(SCORE_NAMES)
    assert main(["query", "layer_profile", str(a), "--param", "score=source_share,prev", "--out", str(out)]) == 0
    assert set(pl.read_csv(out)["measure"]) == {"source_share", "prev"}
    with pytest.raises(SaliencyLabError, match="--param score nope: unknown score"):
        main(["query", "binned_curve", str(a), "--param", "score=out_mean,nope"])
    assert main(["sql", str(a), "SELECT count(*) AS n FROM labels", "--out", str(tmp_path / "n.parquet")]) == 0
    with pytest.raises(SaliencyLabError, match="unknown parameter"):
        main(["query", "failure_cases", str(a), "--param", "bins=5"])
    with pytest.raises(SaliencyLabError, match="labelset 'nope'"):
        main(["analyze", str(a), "--labels", "nope", "--out", str(tmp_path / "x")])
    with pytest.raises(SaliencyLabError, match="--out"):
        main(["sql", str(a), "SELECT 1", "--out", str(tmp_path / "x.txt")])


def test_first_subtoken_only_and_quantile_curve(two_runs):
    import pyarrow.parquet as pq

    a, _ = two_runs
    res = analyze([a], "chair", AnalysisConfig(n_bootstrap=0, first_subtoken_only=True, binning="quantile",
                                               bins=5))
    lab = pq.read_table(a / "labels" / "chair.parquet").to_pydict()
    x, y, g = labeled_arrays(a, 4, "out_mean")
    sub0 = {(s, st) for s, st, k in zip(lab["sample_id"], lab["step"], lab["subtoken"], strict=True) if k == 0}
    sc = {(s, st) for s, st in zip(*_keys(a), strict=True)} & sub0
    assert res.summary["base"]["n_analyzed"] == len(sc)
    curve = res.curve.filter(pl.col("measure") == "out_mean")
    assert curve["n"].sum() == len(sc) and curve.height == 5
    assert res.tests["base"]["out_mean"]["auroc_ci"] == [None, None] or all(
        np.isnan(v) for v in res.tests["base"]["out_mean"]["auroc_ci"])


def _keys(run):
    from _analysis_fixtures import labels, token_scores

    sc = token_scores(run, 4)
    keys = [k for k in labels(run) if sc.get(k, {}).get("out_mean") is not None]
    return [k[0] for k in keys], [k[1] for k in keys]


def test_analyze_bad_config(two_runs):
    with pytest.raises(SaliencyLabError, match="binning"):
        analyze([two_runs[0]], "chair", AnalysisConfig(binning="log"))
