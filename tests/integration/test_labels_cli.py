"""The labels and data commands end to end through `saliency-lab` (synthetic run with the real layout)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb
import pytest

from saliency_lab.cli import main
from saliency_lab.manifest import load_manifest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from _labels_runs import FakeSample, make_label_run, steps_of  # noqa: E402


def test_label_chair_command_on_a_run(tmp_path, capsys):
    s1 = FakeSample("s1", ["A", " man", " rides", " a", " surf", "board", " with", " his", " dog", "."], image_id="7")
    s2 = FakeSample("s2", ["Two", " ch", "airs", " and", " a", " table", "."], image_id="8", shard=1)
    run = make_label_run(tmp_path / "runs", [s1, s2])
    (tmp_path / "gt.json").write_text(json.dumps({"7": ["person", "surfboard"], "8": ["chair"]}))
    rc = main(["label", "chair", "--run", str(run.path), "--ground-truth", str(tmp_path / "gt.json"),
               "--name", "chair_ours"])
    assert rc == 0
    assert "label rows" in capsys.readouterr().out
    # the labelset is plain Parquet: SQL over it joins back to tokens by (sample_id, step)
    con = duckdb.connect()
    rows = con.execute(f"""
        SELECT l.sample_id, t.token_text, l.label, l.object, l.subtoken
        FROM '{run.path}/labels/chair_ours.parquet' l
        JOIN read_parquet('{run.path}/tokens/*/*.parquet', hive_partitioning=1) t USING (sample_id, step)
        ORDER BY l.sample_id, l.step""").fetchall()
    assert rows == [("s1", " man", 0, "person", 0), ("s1", " surf", 0, "surfboard", 0),
                    ("s1", "board", 0, "surfboard", 1), ("s1", " dog", 1, "dog", 0),
                    ("s2", " ch", 0, "chair", 0), ("s2", "airs", 0, "chair", 1), ("s2", " table", 1, "dining table", 0)]
    info = json.loads((run.path / "labels" / "chair_ours.json").read_text())
    assert info["config"]["synonyms"] == "builtin:chair_synonyms.txt"
    assert info["metrics"]["chair_s"] == 1.0 and info["metrics"]["chair_i"] == pytest.approx(2 / 5)  # man surfboard dog chairs table
    assert steps_of(s1, "dog") == [8]


def test_errors_are_one_line_and_leave_nothing(tmp_path, capsys):
    run = make_label_run(tmp_path / "runs", [FakeSample("s1", ["a", " dog"], image_id="7")])
    (tmp_path / "gt.json").write_text(json.dumps({"8": ["dog"]}))
    rc = main(["label", "chair", "--run", str(run.path), "--ground-truth", str(tmp_path / "gt.json")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "image_id '7' is not in the ground truth" in err
    assert not (run.path / "labels" / "chair.parquet").exists()
    bad = tmp_path / "syn.txt"
    bad.write_text("dog\ncat, dog\n")
    (tmp_path / "gt.json").write_text(json.dumps({"7": ["dog"]}))
    rc = main(["label", "chair", "--run", str(run.path), "--ground-truth", str(tmp_path / "gt.json"),
               "--synonyms", str(bad)])
    assert rc == 2 and f"{bad}:2: synonym 'dog'" in capsys.readouterr().err
    (tmp_path / "h.jsonl").write_text(json.dumps({"sample_id": "nope", "steps": [0], "label": 1}) + "\n")
    rc = main(["label", "human", "--run", str(run.path), "--file", str(tmp_path / "h.jsonl")])
    assert rc == 2 and "h.jsonl:1: sample_id 'nope'" in capsys.readouterr().err
    assert not (run.path / "labels").exists() or not any((run.path / "labels").iterdir())


def test_data_commands_build_manifests(tmp_path):
    imgs = tmp_path / "val2014"
    imgs.mkdir()
    inst = {"images": [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in range(1, 21)],
            "categories": [{"id": 1, "name": "person"}],
            "annotations": [{"id": i, "image_id": i, "category_id": 1} for i in range(1, 16)]}  # 16..20 empty
    (tmp_path / "inst.json").write_text(json.dumps(inst))
    argv = ["data", "coco-chair", "--images", str(imgs), "--annotations", str(tmp_path / "inst.json"),
            "--n", "10", "--seed", "3", "--out"]
    assert main([*argv, str(tmp_path / "m1.jsonl")]) == 0
    assert main([*argv, str(tmp_path / "m2.jsonl")]) == 0
    m1 = [json.loads(x) for x in (tmp_path / "m1.jsonl").read_text().splitlines()]
    assert (tmp_path / "m1.jsonl").read_text() == (tmp_path / "m2.jsonl").read_text()  # seeded
    assert len(m1) == 10 and len({x["image_id"] for x in m1}) == 10
    assert all(1 <= int(x["image_id"]) <= 15 for x in m1)  # only annotated images
    assert {x["prompt"] for x in m1} == {"Please help me describe the image in detail."}
    assert all(x["sample_id"] == f"coco-{x['image_id']}" for x in m1)
    # the capture's manifest reader resolves the image paths back to the real files
    loaded = load_manifest(tmp_path / "m1.jsonl")
    assert [s.image for s in loaded.samples] == [
        str(imgs.resolve() / f"COCO_val2014_{int(x['image_id']):012d}.jpg") for x in m1]
    assert main([*argv[:-3], "--n", "16", "--out", str(tmp_path / "m3.jsonl")]) == 2
    assert not (tmp_path / "m3.jsonl").exists()

    q = tmp_path / "coco_pope_random.json"
    q.write_text(json.dumps({"question_id": 5, "image": "COCO_val2014_000000000003.jpg",
                             "text": "Is there a person in the image?", "label": "yes"}) + "\n")
    assert main(["data", "pope", "--questions", str(q), "--images", str(imgs),
                 "--out", str(tmp_path / "pope.jsonl")]) == 0
    (line,) = [json.loads(x) for x in (tmp_path / "pope.jsonl").read_text().splitlines()]
    assert line["sample_id"] == "pope-random-5" and line["image_id"] == "3"
    assert line["meta"]["label"] == "yes" and line["meta"]["split"] == "random"


def test_pope_answer_file_command(tmp_path, capsys):
    q = tmp_path / "coco_pope_adversarial.json"
    q.write_text("".join(json.dumps({"question_id": i, "image": "x_1.jpg", "text": "Is there a cat in the image?",
                                     "label": lab}) + "\n" for i, lab in enumerate(["yes", "no", "no", "yes"])))
    a = tmp_path / "answers.jsonl"
    a.write_text("".join(json.dumps({"question_id": i, "text": t}) + "\n"
                         for i, t in enumerate(["Yes, there is.", "Yes.", "No, there is not.", "I see no cat."])))
    assert main(["pope", "--questions", str(q), "--answers", str(a), "--out", str(tmp_path / "p.json")]) == 0
    m = json.loads((tmp_path / "p.json").read_text())["metrics"]["adversarial"]
    # predictions yes, yes, no, no vs labels yes, no, no, yes: tp=1 fp=1 tn=1 fn=1
    assert (m["accuracy"], m["precision"], m["recall"], m["yes_ratio"]) == (0.5, 0.5, 0.5, 0.5)
