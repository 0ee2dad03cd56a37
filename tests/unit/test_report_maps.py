"""Saliency maps (Fig. 2/3) and automatic sample choice."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from _report_synth import synthetic_run

from saliency_lab.report.data import load_run
from saliency_lab.report.maps import build_map, pick_samples, token_label


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("maps")
    return synthetic_run(root, "out_rows", rows="output"), synthetic_run(root, "all_rows", rows="all")


def _expected(run_dir, sid, layers):
    rows = pl.read_parquet(run_dir / "rows" / "**" / "*.parquet").filter(pl.col("sample_id") == sid)
    sal = pl.read_parquet(run_dir / "saliency" / "**" / "*.parquet").filter(pl.col("sample_id") == sid)
    l2 = {(s, la): v for s, la, v in sal.select("step", "layer", "row_l2").iter_rows()}
    out = {}
    for step, layer, vals in rows.select("step", "layer", "values").iter_rows():
        if layer in layers:
            vals = np.asarray(vals, dtype=np.float64)[-step:]
            for k, v in enumerate(vals):
                out.setdefault((step, k), []).append(v / l2[(step, layer)])
    return {key: float(np.mean(v)) for key, v in out.items()}


def test_map_values_are_row_normalized_means_over_layers(runs):
    run_dir = runs[0]
    run = load_run(run_dir)
    sid = "s000003"
    halluc = {2}
    m = build_map(run, sid, [2, 3], "test", halluc, None, max_steps=100)
    assert not isinstance(m, str)
    expected = _expected(run_dir, sid, [2, 3])
    toks = run.tokens.filter(pl.col("sample_id") == sid).sort("step")
    labels = [token_label(s, t) for s, t in toks.select("step", "token_text").iter_rows()]
    got = {(labels.index(c["query"]), labels.index(c["key"])): c["value"] for c in m.cells}
    assert set(got) == set(expected)
    for key, v in expected.items():
        assert got[key] == pytest.approx(v, rel=1e-9)
    assert m.halluc == [labels[2]]
    assert m.order == labels and m.layers == [2, 3]


def test_all_keys_rows_give_the_same_map(runs):
    a = build_map(load_run(runs[0]), "s000004", [2, 3], "t", set(), None)
    b = build_map(load_run(runs[1]), "s000004", [2, 3], "t", set(), None)
    assert [c["value"] for c in a.cells] == pytest.approx([c["value"] for c in b.cells], rel=1e-9)


def test_window_keeps_focus_token_and_limits_size(runs):
    run = load_run(runs[0])
    n = run.tokens.filter(pl.col("sample_id") == "s000005").height
    m = build_map(run, "s000005", [3], "t", set(), focus_step=6, max_steps=5)
    assert len(m.order) == 5 and m.last_step == min(n - 1, 9) and m.first_step == m.last_step - 4
    assert all(c["query"] in m.order and c["key"] in m.order for c in m.cells)


def test_missing_rows_reason(tmp_path):
    run = load_run(synthetic_run(tmp_path, "norows", rows=None))
    assert "no saliency rows" in build_map(run, "s000002", [2], "t", set())


def test_pick_samples_prefers_lowest_hallucination_and_cleanest_caption():
    ts = pl.DataFrame({
        "sample_id": ["a", "a", "b", "b", "c", "c"],
        "step": [1, 2, 1, 2, 1, 2],
        "score": [0.5, 0.05, 0.2, 0.3, 0.9, 0.8],
        "label": [0, 1, 1, None, 0, None],
    }, schema_overrides={"label": pl.Int8})
    picks = pick_samples(ts, ["a", "b", "c"])
    assert picks[0][0] == "a" and picks[0][2] == 2 and "hallucination" in picks[0][1]
    assert picks[1][0] == "c" and "correct" in picks[1][1]
    unl = ts.with_columns(pl.lit(None, dtype=pl.Int8).alias("label"))
    picks = pick_samples(unl, ["a", "b", "c"])
    assert [p[0] for p in picks] == ["a", "c"]


def test_pick_correct_token_when_every_caption_hallucinates():
    ts = pl.DataFrame({"sample_id": ["a", "a", "b", "b"], "step": [1, 2, 1, 2], "score": [0.1, 0.7, 0.2, 0.9],
                       "label": [1, 0, 1, 0]}, schema_overrides={"label": pl.Int8})
    picks = pick_samples(ts, ["a", "b"])
    assert picks[0][:1] == ("a",) and picks[1][0] == "b" and picks[1][2] == 2 and "correct token" in picks[1][1]
