"""Catalog views and SQL macros against plain numpy computations on synthetic runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from _analysis_fixtures import read, token_scores

from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.catalog import open_catalog, scan_tables
from saliency_lab.store.schema import SCHEMA_VERSION, SCHEMAS
from saliency_lab.testing.synthetic import SyntheticSpec, make_run


def one(cat, sql):
    return cat.sql(sql).fetchall()[0][0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cat")
    a = make_run(root, "ra", SyntheticSpec(n_samples=12, n_layers=4, n_candidates=3, seed=3))
    b = make_run(root, "rb", SyntheticSpec(n_samples=8, n_layers=5, seed=4, n_shards=2, samples_per_part=3))
    return root, a, b


def test_views_match_files_and_absent_tables_are_empty(runs):
    root, a, b = runs
    with open_catalog([a, b]) as cat:
        for table in ("samples", "tokens", "saliency"):
            n_files = len(read(a, table)["step" if table != "samples" else "sample_id"]) + len(
                read(b, table)["step" if table != "samples" else "sample_id"])
            assert one(cat, f"SELECT count(*) FROM {table}") == n_files
        # candidates only in run a; decisions and rows nowhere: empty views with the schema's columns
        assert one(cat, "SELECT count(DISTINCT run_id) FROM candidates") == 1
        for table in ("decisions", "rows"):
            rel = cat.sql(f"SELECT * FROM {table}")
            assert rel.columns == SCHEMAS[table].names
            assert rel.fetchall() == []
        # an error sample has a samples row and no tokens
        err = cat.sql("SELECT sample_id FROM samples WHERE status = 'error'").fetchall()
        assert err and one(cat, f"SELECT count(*) FROM tokens WHERE sample_id = '{err[0][0]}'") == 0
        runs_rows = cat.sql("SELECT run_id, n_layers, schema_version FROM runs ORDER BY run_id").fetchall()
        assert runs_rows == [("ra", 4, SCHEMA_VERSION), ("rb", 5, SCHEMA_VERSION)]
        labelsets = cat.sql("SELECT DISTINCT labelset FROM labels").fetchall()
        assert labelsets == [("chair",)]
        m = dict(cat.sql("SELECT metric, value FROM label_metrics WHERE run_id = 'ra'").fetchall())
        doc = json.loads((a / "labels" / "chair.json").read_text())
        assert m["chair_i"] == pytest.approx(doc["metrics"]["chair_i"])


@pytest.mark.parametrize("normalization", ["row", "none", "matrix"])
@pytest.mark.parametrize("layers", [None, [0, 3]])
def test_token_score_macro_matches_numpy(runs, normalization, layers):
    _, a, _ = runs
    expect = token_scores(a, 4, layers, normalization)
    lay = "NULL" if layers is None else str(layers)
    with open_catalog([a]) as cat:
        got = cat.sql(f"SELECT sample_id, step, out_mean, prev, attn_out, lookback_ratio, n_layers "
                      f"FROM token_scores(layers := {lay}, normalization := '{normalization}')").fetchall()
    assert len(got) == len(expect)
    for sid, step, om, pv, at, lb, nl in got:
        e = expect[(sid, step)]
        for val, ref in ((om, e["out_mean"]), (pv, e["prev"]), (at, e["attn_out"])):
            assert (val is None) == (ref is None)
            if ref is not None:
                assert val == pytest.approx(ref, rel=1e-6)
        assert lb == pytest.approx(1 - e["attn_out"])
        assert nl == (2 if layers else 2)


def test_default_layers_are_upper_half_per_run(runs):
    _, _, b = runs  # 5 layers -> layers 2, 3, 4
    expect = token_scores(b, 5)
    with open_catalog([b]) as cat:
        got = cat.sql("SELECT sample_id, step, out_mean, n_layers FROM token_scores()").fetchall()
    assert {r[3] for r in got} == {3}
    for sid, step, om, _ in got:
        ref = expect[(sid, step)]["out_mean"]
        assert (om is None and ref is None) or om == pytest.approx(ref, rel=1e-6)


def test_candidate_scores_macro(runs):
    _, a, _ = runs
    c = read(a, "candidates")
    with open_catalog([a]) as cat:
        got = cat.sql("SELECT sample_id, step, rank, out_mean FROM candidate_scores(layers := [1, 2])").fetchall()
    for sid, step, rank, om in got[:50]:
        sel = (c["sample_id"] == sid) & (c["step"] == step) & (c["rank"] == rank) & np.isin(c["layer"], [1, 2])
        if step == 0:
            assert om is None
            continue
        ref = np.mean(c["out_sum"][sel].astype(float) / (c["row_l2"][sel].astype(float) * step))
        assert om == pytest.approx(ref, rel=1e-6)


def test_uri_runs_and_polars_read_the_same_rows(runs):
    _, a, b = runs
    with open_catalog([a.as_uri(), b]) as cat:
        uri_sum = cat.sql("SELECT run_id, count(*), sum(out_sum) FROM saliency GROUP BY 1 ORDER BY 1").fetchall()
        cands = one(cat, "SELECT count(*) FROM candidates")
    with open_catalog([a, b]) as cat:
        local_sum = cat.sql("SELECT run_id, count(*), sum(out_sum) FROM saliency GROUP BY 1 ORDER BY 1").fetchall()
    assert [r[:2] for r in uri_sum] == [r[:2] for r in local_sum]
    assert [r[2] for r in uri_sum] == pytest.approx([r[2] for r in local_sum])
    assert cands == len(read(a, "candidates")["step"])
    lf = scan_tables([a, b])
    sal = lf["saliency"].collect()
    assert sal.height == sum(r[1] for r in local_sum)
    assert sal.columns == SCHEMAS["saliency"].names
    assert lf["decisions"].collect().height == 0 and lf["decisions"].collect().columns == SCHEMAS["decisions"].names
    assert lf["labels"].collect()["labelset"].unique().to_list() == ["chair"]


def test_bad_inputs_give_one_line_errors(runs, tmp_path):
    root, a, _ = runs
    with pytest.raises(SaliencyLabError, match="not a run"):
        open_catalog([tmp_path])
    with pytest.raises(SaliencyLabError, match="matches no run"):
        open_catalog([str(tmp_path / "nothing*")])
    newer = make_run(tmp_path, "newer", SyntheticSpec(n_samples=3))
    info = json.loads((newer / "run.json").read_text())
    info["schema_version"] = SCHEMA_VERSION + 1
    (newer / "run.json").write_text(json.dumps(info))
    with pytest.raises(SaliencyLabError, match="newer than this toolkit"):
        open_catalog([newer])
    with pytest.raises(SaliencyLabError, match="distinct run ids"):
        open_catalog([a, a])
    with open_catalog([a]) as cat:
        with pytest.raises(SaliencyLabError, match="choose one of"):
            cat.query("binned_curve", {"score": "bogus"})
        with pytest.raises(SaliencyLabError, match="unknown parameter"):
            cat.query("binned_curve", {"nope": "1"})
        with pytest.raises(SaliencyLabError, match="expected INTEGER"):
            cat.query("binned_curve", {"bins": "ten"})
        with pytest.raises(SaliencyLabError, match="no named query"):
            cat.query("nope")
        with pytest.raises(SaliencyLabError, match="SQL error"):
            cat.sql("SELECT * FROM no_such_table")


def test_glob_opens_every_run(runs):
    root, a, b = runs
    with open_catalog([str(root / "r*")]) as cat:
        assert one(cat, "SELECT count(*) FROM runs") == 2
    assert not math.isnan(pq.read_table(a / "labels" / "chair.parquet").num_rows)


def test_a_schema_1_run_without_the_score_name_columns_reads_them_as_null(tmp_path):
    """Schema 2 added tokens.sgrs_score_name and decisions.score_name; a run written before (its part files lack
    the columns, run.json says schema_version 1) still opens, alone or next to a new run, with those columns
    NULL in its rows."""
    from saliency_lab.store.schema import table_from_columns

    old = make_run(tmp_path, "old", SyntheticSpec(n_samples=3, n_layers=2, seed=1))
    info = json.loads((old / "run.json").read_text())
    info["schema_version"] = 1
    (old / "run.json").write_text(json.dumps(info))
    for part in (old / "tokens").rglob("*.parquet"):
        pq.write_table(pq.read_table(part).drop_columns(["sgrs_score_name"]), part)
    dec = table_from_columns("decisions", {
        "run_id": ["old"], "sample_id": ["s"], "step": [1], "draw": [0], "rank": [0], "token_id": [5],
        "prob": [0.5], "score": [0.1], "tau": [0.0], "accepted": [True], "fallback": [False]})
    (old / "decisions" / "shard=0").mkdir(parents=True)
    pq.write_table(dec.drop_columns(["score_name"]), old / "decisions" / "shard=0" / "part-0.parquet")
    assert "score_name" not in pq.read_schema(old / "decisions" / "shard=0" / "part-0.parquet").names
    with open_catalog([old]) as cat:
        assert cat.sql("SELECT score_name, score FROM decisions").fetchall() == [(None, pytest.approx(0.1))]
        assert one(cat, "SELECT count(*) FROM tokens WHERE sgrs_score_name IS NULL") == one(
            cat, "SELECT count(*) FROM tokens") > 0
    new = make_run(tmp_path, "new", SyntheticSpec(n_samples=2, n_layers=2, seed=2))
    with open_catalog([old, new]) as cat:
        assert cat.sql("SELECT DISTINCT run_id, schema_version FROM runs ORDER BY run_id").fetchall() == [
            ("new", SCHEMA_VERSION), ("old", 1)]
        assert one(cat, "SELECT count(*) FROM decisions WHERE score_name IS NULL") == 1
