"""Token join and `label chair|pope` on synthetic runs with the real schema."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from _labels_runs import FakeSample, make_label_run, steps_of

from saliency_lab.errors import SaliencyLabError
from saliency_lab.labels.join import SpanLabel, join_spans
from saliency_lab.labels.label_run import label_chair, label_pope
from saliency_lab.labels.runread import TokenSpan, read_run
from saliency_lab.store.schema import LABELS

SYN = "person, man, woman\ndog, puppy\nsurfboard\nhot dog\ncat\n"


def _toks(pieces):
    out, pos = [], 0
    for i, p in enumerate(pieces):
        out.append(TokenSpan(i, pos, pos + len(p), p))
        pos += len(p)
    return out


def test_join_marks_every_overlapping_token_in_order():
    toks = _toks(["A", " surf", "board", " and", " a", " dog", ".", ""])
    labs = join_spans(toks, [SpanLabel(2, 11, 1, "surfboard", 0), SpanLabel(18, 21, 0, "dog", 1)])
    assert [(x.step, x.label, x.mention_id, x.subtoken) for x in labs] == [
        (1, 1, 0, 0), (2, 1, 0, 1), (5, 0, 1, 0)]


def test_token_across_two_mentions_gets_one_row_hallucinated_wins():
    toks = _toks(["dogcat", " x"])
    labs = join_spans(toks, [SpanLabel(0, 3, 0, "dog", 0), SpanLabel(3, 6, 1, "cat", 1)])
    assert [(x.step, x.label, x.object) for x in labs] == [(0, 1, "cat")]


@pytest.fixture()
def syn_file(tmp_path):
    p = tmp_path / "syn.txt"
    p.write_text(SYN)
    return p


@pytest.fixture()
def chair_run(tmp_path):
    samples = [
        FakeSample("s1", ["A", " man", " on", " a", " surf", "board", ".", " A", " dog", "."], image_id="1"),
        FakeSample("s2", ["Two", " hot", " dogs", " and", " a", " cat", "."], image_id="000002", shard=1),
        FakeSample("s3", [], image_id="99", status="error"),  # errors are skipped (no ground truth needed)
    ]
    gt = {"1": ["person", "surfboard"], "2": ["cat"]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    return make_label_run(tmp_path / "runs", samples), tmp_path / "gt.json"


def test_label_chair_writes_labels_schema_and_metrics(chair_run, syn_file):
    run, gt = chair_run
    res = label_chair(run.path, ground_truth=str(gt), synonyms=str(syn_file))
    table = pq.read_table(res.parquet)
    assert table.schema.equals(LABELS)
    rows = {(r["sample_id"], r["step"]): r for r in table.to_pylist()}
    s1, s2 = run.samples[0], run.samples[1]
    expect = {("s1", st): (0, "person", 0) for st in steps_of(s1, "man")}
    expect |= {("s1", st): (0, "surfboard", 1) for st in steps_of(s1, "surfboard")}
    expect |= {("s1", st): (1, "dog", 2) for st in steps_of(s1, "dog")}
    expect |= {("s2", st): (1, "hot dog", 0) for st in steps_of(s2, "hot dogs")}
    expect |= {("s2", st): (0, "cat", 1) for st in steps_of(s2, "cat")}
    assert {k: (r["label"], r["object"], r["mention_id"]) for k, r in rows.items()} == expect
    assert [rows["s1", st]["subtoken"] for st in steps_of(s1, "surfboard")] == [0, 1]
    assert {r["source"] for r in rows.values()} == {"chair"} and {r["run_id"] for r in rows.values()} == {"r1"}
    info = json.loads(res.json.read_text())
    assert info["labelset"] == "chair" and info["source"] == "chair"
    assert info["metrics"]["chair_s"] == 1.0 and info["metrics"]["chair_i"] == pytest.approx(2 / 5)
    assert info["metrics"]["n_error_samples_skipped"] == 1
    assert info["config"]["synonyms"] == str(syn_file) and len(info["config"]["synonyms_sha256"]) == 64
    assert res.json == run.path / "labels" / "chair.json"


def test_unknown_image_id_errors_and_keeps_old_labels(chair_run, syn_file, tmp_path):
    run, gt = chair_run
    first = label_chair(run.path, ground_truth=str(gt), synonyms=str(syn_file), name="mine")
    before = first.parquet.read_bytes()
    (tmp_path / "gt_small.json").write_text(json.dumps({"1": ["person"]}))
    with pytest.raises(SaliencyLabError, match=r"sample 's2'.*image_id '000002' is not in the ground truth"):
        label_chair(run.path, ground_truth=str(tmp_path / "gt_small.json"), synonyms=str(syn_file), name="mine")
    assert first.parquet.read_bytes() == before
    assert sorted(p.name for p in (run.path / "labels").iterdir()) == ["mine.json", "mine.parquet"]


def test_missing_image_id_and_bad_name(tmp_path, syn_file):
    run = make_label_run(tmp_path / "runs", [FakeSample("s1", ["a", " dog"])])
    (tmp_path / "gt.json").write_text("{}")
    with pytest.raises(SaliencyLabError, match="has no image_id"):
        label_chair(run.path, ground_truth=str(tmp_path / "gt.json"), synonyms=str(syn_file))
    assert not (run.path / "labels").exists() or not list((run.path / "labels").iterdir())


def test_run_checks(tmp_path):
    with pytest.raises(SaliencyLabError, match="no run.json"):
        read_run(tmp_path)
    run = make_label_run(tmp_path / "runs", [FakeSample("s1", ["a"])], schema_version=99)
    with pytest.raises(SaliencyLabError, match="newer than this toolkit"):
        read_run(run.path)


def test_label_pope_answer_tokens(tmp_path):
    samples = [
        FakeSample("q1", ["Yes", ",", " there", " is", "."], meta={"label": "yes", "split": "random"}),
        FakeSample("q2", ["Ye", "s", " it", " is", "."], meta={"label": "no", "split": "random",
                                                             "object": "oven"}),
        FakeSample("q3", ["There", " is", " no", " dog", "."], meta={"label": "no", "split": "adversarial"}),
        FakeSample("q4", ["No", "."], meta={"label": "yes", "split": "adversarial"}),
    ]
    run = make_label_run(tmp_path / "runs", samples)
    res = label_pope(run.path)
    rows = [(r["sample_id"], r["step"], r["label"], r["subtoken"], r["object"])
            for r in pq.read_table(res.parquet).to_pylist()]
    assert rows == [("q1", 0, 0, 0, None), ("q2", 0, 1, 0, "oven"), ("q2", 1, 1, 1, "oven"),
                    ("q3", 0, 0, 0, None), ("q4", 0, 1, 0, None)]
    m = json.loads(res.json.read_text())["metrics"]
    assert m["random"]["accuracy"] == 0.5 and m["adversarial"]["accuracy"] == 0.5
    assert m["random"]["yes_ratio"] == 1.0 and m["adversarial"]["yes_ratio"] == 0.0
    strict = label_pope(run.path, parser="strict", name="pope_strict")
    sm = json.loads(strict.json.read_text())["metrics"]
    assert sm["adversarial"]["n_unknown"] == 1 and sm["adversarial"]["accuracy"] == 0.0
    assert json.loads(strict.json.read_text())["config"]["parser"] == "strict"


def test_pope_needs_meta_label(tmp_path):
    run = make_label_run(tmp_path / "runs", [FakeSample("q1", ["Yes"], meta={"split": "random"})])
    with pytest.raises(SaliencyLabError, match="no meta.label"):
        label_pope(run.path)
    assert not (run.path / "labels" / "pope.parquet").exists()
