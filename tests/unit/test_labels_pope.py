"""POPE parsers, metrics, question reader and manifest builder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saliency_lab.errors import SaliencyLabError
from saliency_lab.labels.manifests import pope_manifest
from saliency_lab.labels.pope import (
    first_word_span,
    parse_reference,
    parse_strict,
    pope_metrics,
    read_questions,
    score_answers,
    split_from_path,
)

SHARED_POPE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "pope"


@pytest.mark.parametrize("answer,expected", [
    ("Yes, there is a dog in the image.", "yes"),
    ("No, there is no dog.", "no"),
    ("There is no dog in the image.", "no"),
    ("The dog is not visible", "no"),
    ("Yes. But there is not a cat.", "yes"),  # only the text before the first '.' counts
    ("No", "no"),
    ("no, it is absent", "no"),  # the comma is dropped, so "no" is a word
    ("NO", "yes"),  # the reference rule is case-sensitive: only 'No', 'not', 'no'
    ("Not at all", "yes"),
    ("", "yes"),
])
def test_reference_parser(answer, expected):
    assert parse_reference(answer) == expected


@pytest.mark.parametrize("answer,expected", [
    ("Yes, there is a dog.", "yes"), ("  no.", "no"), ("NO", "no"), ("There is no dog.", "unknown"),
    ("Yesterday", "unknown"), ("", "unknown"),
])
def test_strict_parser(answer, expected):
    assert parse_strict(answer) == expected


def test_first_word_span():
    assert first_word_span(" Yes, it is.") == (1, 4)
    assert first_word_span("...") is None


def test_metrics_by_hand():
    # labels:      yes  yes  no   no   no   yes
    # predictions: yes  no   yes  no   no   unknown
    pairs = [("yes", "yes"), ("no", "yes"), ("yes", "no"), ("no", "no"), ("no", "no"), ("unknown", "yes")]
    m = pope_metrics(pairs)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (1, 1, 2, 2)
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["precision"] == pytest.approx(1 / 2)
    assert m["recall"] == pytest.approx(1 / 3)
    assert m["f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert m["yes_ratio"] == pytest.approx(2 / 6) and m["n_unknown"] == 1


def _write_questions(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_reader_errors_name_the_line(tmp_path):
    p = _write_questions(tmp_path / "q.json", [
        {"question_id": 1, "image": "COCO_val2014_000000000042.jpg", "text": "Is there a dog in the image?",
         "label": "yes"},
        {"question_id": 2, "image": "x.jpg", "text": "?", "label": "maybe"}])
    with pytest.raises(SaliencyLabError, match=r"q.json:2: label 'maybe'"):
        read_questions(p)
    p.write_text('{"question_id": 1}\n')
    with pytest.raises(SaliencyLabError, match=r"q.json:1: missing image, text, label"):
        read_questions(p)


def test_manifest_and_scoring_on_a_small_file(tmp_path):
    q = _write_questions(tmp_path / "coco_pope_popular.json", [
        {"question_id": 1, "image": "COCO_val2014_000000000042.jpg", "text": "Is there a dog in the image?",
         "label": "yes"},
        {"question_id": 2, "image": "COCO_val2014_000000000042.jpg", "text": "Is there an oven in the image?",
         "label": "no"}])
    (tmp_path / "img").mkdir()
    lines = pope_manifest(q, tmp_path / "img")
    assert [x["sample_id"] for x in lines] == ["pope-popular-1", "pope-popular-2"]
    assert lines[0]["image_id"] == "42" and lines[0]["prompt"] == "Is there a dog in the image?"
    assert lines[1]["meta"] == {"label": "no", "split": "popular", "question_id": 2, "object": "oven"}
    assert lines[0]["image"] == str((tmp_path / "img" / "COCO_val2014_000000000042.jpg").resolve())
    rel = pope_manifest(q, tmp_path / "img", base=tmp_path / "out")  # relative to the manifest's folder
    assert rel[0]["image"] == "../img/COCO_val2014_000000000042.jpg"
    qs = read_questions(q)
    m = score_answers(qs, {"1": "Yes.", "2": "Yes, there is."}, "reference", "a.jsonl")
    assert m["popular"]["accuracy"] == 0.5 and m["popular"]["yes_ratio"] == 1.0
    with pytest.raises(SaliencyLabError, match="no answer for question_id 2"):
        score_answers(qs, {"1": "Yes."}, "reference", "a.jsonl")
    with pytest.raises(SaliencyLabError, match="image folder not found"):
        pope_manifest(q, tmp_path / "nope")


@pytest.mark.skipif(not SHARED_POPE.is_dir(), reason="../shared/reference/pope not present")
def test_reference_question_files():
    for split in ("random", "popular", "adversarial"):
        path = SHARED_POPE / f"coco_pope_{split}.json"
        assert split_from_path(path) == split
        qs = read_questions(path)
        assert len(qs) == 3000
        # POPE files are balanced: half the answers are yes
        assert sum(q.label == "yes" for q in qs) == 1500
        assert all(q.image_id is not None and q.object for q in qs)
