"""POPE (Li et al. 2023): question files, answer parsers and per-split metrics.

Parsers (the choice is recorded in every result):
- `reference`: the rule of the POPE evaluation script: take the text before the first '.', drop commas, split on
  spaces; the answer is "no" if any word is exactly `No`, `not` or `no`, else "yes". ("NO" or "Not" do not count,
  as in the original.)
- `strict`: the first word (letters only, case-insensitive) must be "yes" or "no"; anything else is "unknown",
  which counts as a wrong answer and as a non-"yes" prediction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from saliency_lab.errors import SaliencyLabError
from saliency_lab.jsonl import iter_jsonl

PARSERS = ("reference", "strict")
_FIRST_WORD = re.compile(r"[A-Za-z]+")
_OBJECT = re.compile(r"is there an? (.+?) in the (?:image|picture|photo)", re.IGNORECASE)
_IMAGE_DIGITS = re.compile(r"(\d+)(?=\.[A-Za-z]+$)")


@dataclass(frozen=True)
class PopeQuestion:
    """One POPE question and its yes/no ground-truth answer."""

    question_id: int | str
    image: str
    text: str
    label: str  # 'yes' | 'no'
    split: str

    @property
    def image_id(self) -> str | None:
        """The COCO image id from the image file name (leading zeros dropped), None without digits."""
        m = _IMAGE_DIGITS.search(self.image)
        return str(int(m.group(1))) if m else None

    @property
    def object(self) -> str | None:
        """The object the question asks about, lower-cased; None when the text does not match the POPE
        form."""
        m = _OBJECT.search(self.text)
        return m.group(1).lower() if m else None


def split_from_path(path: str | Path) -> str:
    """'coco_pope_adversarial.json' -> 'adversarial'; otherwise the file stem."""
    stem = Path(path).stem
    for s in ("random", "popular", "adversarial"):
        if stem.endswith(s):
            return s
    return stem


def read_questions(path: str | Path, split: str | None = None) -> list[PopeQuestion]:
    """The questions of a POPE JSON-lines file; SaliencyLabError naming the line on a missing field, bad
    label or duplicate id."""
    p = Path(path)
    split = split or split_from_path(p)
    out, seen = [], set()
    for lineno, obj in iter_jsonl(p, "POPE questions", "write one question object per line"):
        missing = [k for k in ("question_id", "image", "text", "label") if k not in obj]
        if missing:
            raise SaliencyLabError(f"{p}:{lineno}: missing {', '.join(missing)}; each line needs "
                                   "question_id, image, text, label")
        label = str(obj["label"]).strip().lower()
        if label not in ("yes", "no"):
            raise SaliencyLabError(f"{p}:{lineno}: label {obj['label']!r} must be 'yes' or 'no'")
        if obj["question_id"] in seen:
            raise SaliencyLabError(f"{p}:{lineno}: duplicate question_id {obj['question_id']}; ids must be unique")
        seen.add(obj["question_id"])
        out.append(PopeQuestion(obj["question_id"], str(obj["image"]), str(obj["text"]), label, split))
    return out


def parse_reference(answer: str) -> str:
    """'yes' or 'no' by the POPE reference rule: 'no' when the first sentence has 'No', 'no' or 'not'."""
    first = answer.split(".")[0].replace(",", "")
    words = first.split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def parse_strict(answer: str) -> str:
    """The first word when it is yes/no (case-insensitive), else 'unknown'."""
    m = _FIRST_WORD.search(answer)
    w = m.group(0).lower() if m else ""
    return w if w in ("yes", "no") else "unknown"


def parse_answer(answer: str, parser: str = "reference") -> str:
    """The answer parsed with the named parser (reference or strict)."""
    if parser == "reference":
        return parse_reference(answer)
    if parser == "strict":
        return parse_strict(answer)
    raise SaliencyLabError(f"unknown POPE parser {parser!r}; choose one of {', '.join(PARSERS)}")


def first_word_span(answer: str) -> tuple[int, int] | None:
    """Character span of the answer's first word (the tokens labeled for POPE)."""
    m = re.search(r"\w+", answer)
    return (m.start(), m.end()) if m else None


def pope_metrics(pairs: Iterable[tuple[str, str]]) -> dict:
    """(prediction, label) pairs -> accuracy, precision, recall, F1 ('yes' positive), yes-ratio of predictions."""
    tp = fp = tn = fn = unknown = n = 0
    for pred, label in pairs:
        n += 1
        if pred == "unknown":
            unknown += 1
        if pred == "yes":
            tp += label == "yes"
            fp += label == "no"
        else:
            fn += label == "yes"
            tn += label == "no" and pred == "no"
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"n": n, "accuracy": (tp + tn) / n if n else 0.0, "precision": precision, "recall": recall,
            "f1": f1, "yes_ratio": (tp + fp) / n if n else 0.0, "n_unknown": unknown,
            "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def pope_metrics_by_split(rows: Iterable[tuple[str, str, str]]) -> dict[str, dict]:
    """(split, prediction, label) -> {split: metrics}."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for split, pred, label in rows:
        groups.setdefault(split, []).append((pred, label))
    return {s: pope_metrics(v) for s, v in sorted(groups.items())}


def read_answers(path: str | Path) -> dict[str, str]:
    """JSONL {question_id, text} (or `answer`) -> {str(question_id): text}."""
    p = Path(path)
    out: dict[str, str] = {}
    for lineno, obj in iter_jsonl(p, "answers", 'write one {"question_id": ..., "text": "..."} object per line'):
        text = obj.get("text", obj.get("answer"))
        if "question_id" not in obj or not isinstance(text, str):
            raise SaliencyLabError(f'{p}:{lineno}: expected {{"question_id": ..., "text": "..."}}')
        out[str(obj["question_id"])] = text
    return out


def score_answers(questions: list[PopeQuestion], answers: dict[str, str], parser: str, source: str) -> dict:
    """POPE metrics per split; SaliencyLabError when a question has no answer in `answers` (keyed by
    question id)."""
    rows = []
    for q in questions:
        text = answers.get(str(q.question_id))
        if text is None:
            raise SaliencyLabError(f"{source}: no answer for question_id {q.question_id} ({q.split}); "
                                   "answer every question of the file")
        rows.append((q.split, parse_answer(text, parser), q.label))
    return pope_metrics_by_split(rows)
