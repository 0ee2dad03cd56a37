"""Label a real captured run (tiny random Llama, real tokenizer spans, EOS rows) with CHAIR, POPE and human
labels. The tiny model's text is noise, so expectations are derived from the run's own tokens: the synonym
table is built from a word the model really produced, and the expected label rows come from an independent
overlap computation on the tokens table."""

from __future__ import annotations

import json

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")

from saliency_lab.cli import main  # noqa: E402
from saliency_lab.labels.tokenize import word_spans  # noqa: E402
from saliency_lab.store.schema import LABELS  # noqa: E402


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from saliency_lab.config import CaptureConfig, DecodingConfig, ModelConfig
    from saliency_lab.models.tiny import build_tiny
    from saliency_lab.run import capture

    root = tmp_path_factory.mktemp("labels_tiny")
    model = build_tiny("llama", root / "model")
    man = root / "manifest.jsonl"
    prompts = ["Describe the dog.", "Is there a cat?", "A man and a table"]
    man.write_text("".join(json.dumps({"sample_id": f"s{i}", "prompt": p, "image_id": str(100 + i),
                                       "meta": {"label": "yes" if i % 2 else "no", "split": "random"}}) + "\n"
                           for i, p in enumerate(prompts)))
    cfg = CaptureConfig(model=ModelConfig(str(model)), data=str(man), out=str(root / "runs"), run_id="t1",
                        decoding=DecodingConfig(max_new_tokens=12), quiet=True)
    res = capture(cfg)
    assert res.ok == 3
    run = res.run_dir
    samples = {r["sample_id"]: r for r in ds.dataset(str(run / "samples"), partitioning="hive").to_table().to_pylist()}
    tokens = ds.dataset(str(run / "tokens"), partitioning="hive").to_table(
        columns=["sample_id", "step", "char_start", "char_end"]).to_pylist()
    return root, run, samples, tokens


def _overlapping(tokens, sid, a, b):
    return sorted(t["step"] for t in tokens if t["sample_id"] == sid and t["char_end"] > t["char_start"]
                  and t["char_start"] < b and t["char_end"] > a)


def test_chair_on_real_tokens(tiny_run):
    root, run, samples, tokens = tiny_run
    words = [w for w in word_spans(samples["s0"]["output_text"]) if any(c.isalpha() for c in w.text)]
    if not words:
        pytest.skip("tiny model produced no word")
    w = words[0].text
    (root / "syn.txt").write_text(f"dog, {w}\n")
    (root / "gt.json").write_text(json.dumps({"100": ["dog"], "101": [], "102": ["person"]}))
    assert main(["label", "chair", "--run", str(run), "--ground-truth", str(root / "gt.json"),
                 "--synonyms", str(root / "syn.txt")]) == 0
    table = pq.read_table(run / "labels" / "chair.parquet")
    assert table.schema.equals(LABELS)
    got = sorted((r["sample_id"], r["step"], r["label"], r["mention_id"]) for r in table.to_pylist())
    expected = []
    for sid, s in samples.items():
        spans = [x for x in word_spans(s["output_text"]) if x.text == w]
        for mid, x in enumerate(spans):
            lab = 0 if sid == "s0" else 1  # only image 100 has a dog
            expected += [(sid, st, lab, mid) for st in _overlapping(tokens, sid, x.start, x.end)]
    assert got == sorted(expected) and any(r[0] == "s0" for r in got)
    info = json.loads((run / "labels" / "chair.json").read_text())
    assert info["run_id"] == "t1" and info["metrics"]["n_captions"] == 3


def test_pope_and_human_on_real_tokens(tiny_run):
    root, run, samples, tokens = tiny_run
    from saliency_lab.labels.pope import first_word_span, parse_reference

    assert main(["label", "pope", "--run", str(run)]) == 0
    got = sorted((r["sample_id"], r["step"], r["label"]) for r in
                 pq.read_table(run / "labels" / "pope.parquet").to_pylist())
    expected = []
    for sid, s in samples.items():
        span = first_word_span(s["output_text"])
        if span:
            wrong = int(parse_reference(s["output_text"]) != json.loads(s["meta"])["label"])
            expected += [(sid, st, wrong) for st in _overlapping(tokens, sid, *span)]
    assert got == sorted(expected)

    text = samples["s1"]["output_text"]
    (root / "h.jsonl").write_text(json.dumps({"sample_id": "s1", "spans": [{"start": 0, "end": len(text),
                                                                            "label": 1}]}) + "\n")
    assert main(["label", "human", "--run", str(run), "--file", str(root / "h.jsonl")]) == 0
    rows = pq.read_table(run / "labels" / "human.parquet").to_pylist()
    assert [r["step"] for r in rows] == _overlapping(tokens, "s1", 0, len(text))
    assert [r["subtoken"] for r in rows] == list(range(len(rows)))
