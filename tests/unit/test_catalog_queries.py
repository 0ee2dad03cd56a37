"""Named queries in queries/*.sql against independent computations (numpy, scipy, statsmodels)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _analysis_fixtures import labeled_arrays, read, token_scores
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from saliency_lab.store.catalog import open_catalog
from saliency_lab.store.scores import SCORE_NAMES
from saliency_lab.store.sqlfiles import list_queries
from saliency_lab.store.writer import write_part_atomic
from saliency_lab.testing.synthetic import SyntheticSpec, make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("q"), "rq", SyntheticSpec(n_samples=30, n_layers=4, seed=11))


def test_every_query_has_a_documented_header():
    names = {q.name for q in list_queries()}
    assert {"token_scores", "label_means", "binned_curve", "layer_profile", "failure_cases",
            "run_summary"} <= names
    for q in list_queries():
        assert q.purpose, q.name
        for p in q.params.values():
            assert p.doc, (q.name, p.name)


@pytest.mark.parametrize("score,bins", [("out_mean", 10), ("prev", 4), ("attn_out", 7)])
def test_binned_curve_matches_numpy_and_statsmodels(run, score, bins):
    measure = score
    x, y, _ = labeled_arrays(run, 4, measure if measure != "attn_out" else "attn_out")
    if score == "prev":  # prev is defined wherever out_mean is (step >= 1) in this data
        assert not np.isnan(x).any()
    b = np.clip(np.floor(x * bins), 0, bins - 1).astype(int)
    with open_catalog([run]) as cat:
        df = cat.query("binned_curve", {"score": score, "bins": str(bins)})
    assert df.height == bins
    for row in df.iter_rows(named=True):
        sel = b == row["bin"]
        n, k = int(sel.sum()), int(y[sel].sum())
        # the SQL also counts step-0 tokens for measures defined there (attn_out); compare only step >= 1
        if score != "attn_out":
            assert row["n"] == n and row["n_halluc"] == k
        if row["n"]:
            lo, hi = proportion_confint(row["n_halluc"], row["n"], method="wilson")
            assert row["ci_low"] == pytest.approx(lo, abs=1e-12)
            assert row["ci_high"] == pytest.approx(hi, abs=1e-12)
            assert row["rate"] == pytest.approx(row["n_halluc"] / row["n"])
        assert row["lo"] == pytest.approx(row["bin"] / bins)


def _per_layer_values(run, measure="out_mean"):
    s = read(run, "saliency")
    t = pq.read_table(run / "labels" / "chair.parquet").to_pydict()
    lab = {(sid, st): lb for sid, st, lb in zip(t["sample_id"], t["step"], t["label"], strict=True)}
    out = {}
    for layer in sorted(set(s["layer"].tolist())):
        sel = (s["layer"] == layer) & (s["step"] >= 1) if measure == "out_mean" else (s["layer"] == layer)
        xs, ys = [], []
        for i in np.flatnonzero(sel):
            key = (s["sample_id"][i], int(s["step"][i]))
            if key in lab:
                xs.append(float(s["out_sum"][i]) / (float(s["row_l2"][i]) * key[1]) if measure == "out_mean"
                          else float(s["attn_out_sum"][i]))
                ys.append(lab[key])
        out[layer] = (np.array(xs), np.array(ys))
    return out


@pytest.mark.parametrize("bins", [0, 4096])
def test_layer_profile_matches_scipy(run, bins):
    with open_catalog([run]) as cat:
        prof = cat.query("layer_profile", {"auroc_bins": str(bins)})
    assert prof["layer"].to_list() == [0, 1, 2, 3]
    values = _per_layer_values(run)
    for row in prof.iter_rows(named=True):
        x, y = values[row["layer"]]
        x1, x0 = x[y == 1], x[y == 0]
        exact = sps.mannwhitneyu(x0, x1).statistic / (len(x0) * len(x1))  # correct > hallucinated, ties / 2
        if bins == 0:
            assert row["auroc"] == pytest.approx(exact, rel=1e-12) and row["auroc_max_error"] == 0
        else:
            assert abs(row["auroc"] - exact) <= row["auroc_max_error"] + 1e-12
            assert row["auroc_max_error"] < 0.01
        assert row["welch_t"] == pytest.approx(sps.ttest_ind(x1, x0, equal_var=False).statistic, rel=1e-6)
        sp = np.sqrt(((len(x1) - 1) * x1.var(ddof=1) + (len(x0) - 1) * x0.var(ddof=1)) / (len(x) - 2))
        assert row["cohen_d"] == pytest.approx((x1.mean() - x0.mean()) / sp, rel=1e-6)
        assert (row["n_correct"], row["n_halluc"]) == (len(x0), len(x1))


def test_layer_profile_auroc_with_ties(tmp_path):
    # attention mass drawn from {0.1, 0.2, 0.3}: many exact ties, which take half a pair each
    run = make_run(tmp_path, "ties", SyntheticSpec(n_samples=12, n_layers=2, seed=5))
    rng = np.random.default_rng(0)
    for f in sorted((run / "saliency").glob("shard=*/part-*.parquet")):
        t = pq.read_table(f)
        vals = rng.choice(np.array([0.1, 0.2, 0.3], dtype=np.float32), t.num_rows)
        t = t.set_column(t.schema.get_field_index("attn_out_sum"), t.schema.field("attn_out_sum"), pa.array(vals))
        write_part_atomic(t, f)
    values = _per_layer_values(run, "attn_out")
    for bins in ("0", "4096"):
        with open_catalog([run]) as cat:
            prof = cat.query("layer_profile", {"score": "attn_out", "auroc_bins": bins})
        for row in prof.iter_rows(named=True):
            x, y = values[row["layer"]]
            x1, x0 = x[y == 1], x[y == 0]
            brute = ((x1[:, None] < x0[None, :]).sum() + 0.5 * (x1[:, None] == x0[None, :]).sum()) / (
                len(x1) * len(x0))
            assert row["auroc"] == pytest.approx(brute, rel=1e-12)


def test_label_means_and_failure_cases(run):
    with open_catalog([run]) as cat:
        means = cat.query("label_means", {})
        cases = cat.query("failure_cases", {"top": "3", "context": "10"})
        summ = cat.query("run_summary", {})
    sc = token_scores(run, 4)
    t = read(run, "tokens")
    lab = pq.read_table(run / "labels" / "chair.parquet").to_pydict()
    assert means["measure"].unique(maintain_order=True).to_list() == list(SCORE_NAMES)  # default: all
    for score in SCORE_NAMES:
        for label in (0, 1):
            vals = [sc[(s, st)][score] for s, st, lb in zip(lab["sample_id"], lab["step"], lab["label"],
                                                            strict=True)
                    if lb == label and sc[(s, st)][score] is not None]
            row = means.filter((means["label"] == label) & (means["measure"] == score)).row(0, named=True)
            assert row["mean"] == pytest.approx(np.mean(vals)), score
            assert row["sd"] == pytest.approx(np.std(vals, ddof=1)), score
            assert row["n"] == len(vals) and row["step_lo"] is None
    assert cases.height == 6
    hi = cases.filter(cases["kind"] == "high_score_hallucination")
    z = [v for v in hi["step_z"].to_list() if v is not None]
    assert z == sorted(z, reverse=True)  # ranked position-controlled (z within the step), nulls last
    samples = read(run, "samples")
    text = dict(zip(samples["sample_id"], samples["output_text"], strict=True))
    for row in cases.iter_rows(named=True):
        i = np.flatnonzero((t["sample_id"] == row["sample_id"]) & (t["step"] == row["step"]))[0]
        a, b = int(t["char_start"][i]), int(t["char_end"][i])
        s = text[row["sample_id"]]
        assert row["context"] == s[max(a - 10, 0):a] + "[[" + s[a:b] + "]]" + s[b:b + 10]
    r = summ.row(0, named=True)
    assert r["n_samples"] == 30 and r["n_error"] == 1 and r["n_tokens"] == len(t["step"])
    assert r["n_labeled"] == len(lab["label"]) and r["n_halluc"] == sum(lab["label"])
    assert json.loads(r["metrics"])["n_captions"] == 29


def test_object_means_first_subtoken_per_object_and_label(run):
    with open_catalog([run]) as cat:
        df = cat.query("object_means", {})
    sc = token_scores(run, 4)
    lab = pq.read_table(run / "labels" / "chair.parquet").to_pydict()
    groups: dict[tuple[str, int], list[float]] = {}
    for s, st, lb, obj, sub in zip(lab["sample_id"], lab["step"], lab["label"], lab["object"], lab["subtoken"],
                                   strict=True):
        if sub or lb is None:
            continue
        groups.setdefault((obj, lb), []).append(sc[(s, st)]["out_mean"])
    assert df.height == len(groups) and any(sub for sub in lab["subtoken"])  # subtokens exist and are left out
    for row in df.iter_rows(named=True):
        vals = groups[(row["object"], row["label"])]
        assert row["n"] == len(vals)
        defined = [v for v in vals if v is not None]
        assert row["out_mean_mean"] == pytest.approx(np.mean(defined)) if defined else row["out_mean_mean"] is None


def test_failure_cases_are_position_controlled(run):
    """step_z recomputed from the independent token scores: (score - mean) / sd over the run's same step;
    the ranking follows it (nulls last), not the raw score."""
    with open_catalog([run]) as cat:
        cases = cat.query("failure_cases", {"top": "50", "context": "10", "min_step_tokens": "3"})
    sc = token_scores(run, 4)
    for kind, sign in (("high_score_hallucination", -1), ("low_score_correct", 1)):
        z = cases.filter(cases["kind"] == kind)["step_z"].to_list()
        defined = [v for v in z if v is not None]
        assert defined == sorted(defined, key=lambda v: sign * v)
        assert z[: len(defined)] == defined  # undefined z (rare steps) rank last
    for row in cases.iter_rows(named=True):
        same = [v["out_mean"] for (sid, st), v in sc.items() if st == row["step"] and v["out_mean"] is not None]
        assert row["step_n"] == len(same)
        assert row["step_mean"] == pytest.approx(np.mean(same))
        if len(same) >= 3:
            assert row["step_z"] == pytest.approx((row["score"] - np.mean(same)) / np.std(same, ddof=1))
        else:
            assert row["step_z"] is None


def test_label_means_per_step_band_and_score_lists(run):
    with open_catalog([run]) as cat:
        means = cat.query("label_means", {"score": "prompt_share,out_mean", "step_band": "5"})
    sc = token_scores(run, 4)
    lab = pq.read_table(run / "labels" / "chair.parquet").to_pydict()
    assert means["measure"].unique(maintain_order=True).to_list() == ["prompt_share", "out_mean"]
    for row in means.iter_rows(named=True):
        vals = [sc[(s, st)][row["measure"]] for s, st, lb in zip(lab["sample_id"], lab["step"], lab["label"],
                                                                 strict=True)
                if lb == row["label"] and row["step_lo"] <= st < row["step_hi"]
                and sc[(s, st)][row["measure"]] is not None]
        assert row["step_hi"] - row["step_lo"] == 5 and row["step_lo"] % 5 == 0
        assert row["n"] == len(vals)
        if vals:
            assert row["mean"] == pytest.approx(np.mean(vals))


def test_token_scores_returns_every_score_of_the_registry(run):
    """The Python registry and the SQL agree: token_scores() has one column per score and pick_score takes
    every name, giving the column's value; the values match the plain loops of the fixtures."""
    sc = token_scores(run, 4)
    with open_catalog([run]) as cat:
        df = cat.sql("SELECT * FROM token_scores()").pl()
        cols = set(df.columns) - {"run_id", "sample_id", "n_layers"}
        assert cols == set(SCORE_NAMES)
        for name in SCORE_NAMES:
            picked = cat.sql(f"SELECT pick_score('{name}', t) AS v, t.{name} AS c FROM token_scores() t").pl()
            assert picked["v"].cast(pl.Float64).fill_null(-1).to_list() == \
                picked["c"].cast(pl.Float64).fill_null(-1).to_list(), name
        assert cat.sql("SELECT pick_score('nope', t) AS v FROM token_scores() t LIMIT 1").fetchall()[0][0] is None
    for row in df.iter_rows(named=True):
        want = sc[(row["sample_id"], row["step"])]
        for name in SCORE_NAMES:
            if want[name] is None:
                assert row[name] is None or np.isnan(row[name]), name
            else:
                assert row[name] == pytest.approx(want[name], rel=1e-5, abs=1e-7), name
    shares = df.select(pl.sum_horizontal("out_share", "prompt_share", "image_share", "system_share")).to_series()
    assert np.allclose(shares.to_numpy(), 1.0)  # the four segments partition the recorded row


def test_candidate_flags_of_the_registry_match_candidate_scores(tmp_path):
    from saliency_lab.store.scores import SCORES

    run = make_run(tmp_path, "cand", SyntheticSpec(n_samples=4, n_layers=2, n_candidates=2, seed=1))
    with open_catalog([run]) as cat:
        df = cat.sql("SELECT * FROM candidate_scores() WHERE step >= 1").pl()
    for name, info in SCORES.items():
        if name == "step":
            continue  # a key of every row; the registry keeps it out of SGRS (all candidates share it)
        assert (df[name].null_count() == 0) == info.candidates, name
