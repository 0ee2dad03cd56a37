"""Human labels: spans and steps, validation errors naming file:line, nothing written on error."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from _labels_runs import FakeSample, make_label_run, steps_of

from saliency_lab.errors import SaliencyLabError
from saliency_lab.labels.label_run import label_human


@pytest.fixture()
def run(tmp_path):
    return make_label_run(tmp_path / "runs", [
        FakeSample("a", ["The", " red", " bus", " is", " par", "ked", "."]),
        FakeSample("b", ["A", " cat", "."]),
    ])


def _write(tmp_path, rows) -> str:
    p = tmp_path / "human.jsonl"
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(p)


def test_spans_and_steps(run, tmp_path):
    a = run.samples[0]
    bus = a.text.index("bus")
    parked = a.text.index("parked")
    f = _write(tmp_path, [
        {"sample_id": "a", "spans": [{"start": bus, "end": bus + 3, "label": 1, "object": "bus"},
                                     {"start": parked, "end": parked + 6, "label": 0}]},
        {"sample_id": "b", "steps": [1], "label": 1},
    ])
    res = label_human(run.path, file=f, name="ann1")
    rows = [(r["sample_id"], r["step"], r["label"], r["object"], r["mention_id"], r["subtoken"], r["source"])
            for r in pq.read_table(res.parquet).to_pylist()]
    (bus_step,) = steps_of(a, "bus")
    p0, p1 = steps_of(a, "parked")
    assert rows == [("a", bus_step, 1, "bus", 0, 0, "human"), ("a", p0, 0, None, 1, 0, "human"),
                    ("a", p1, 0, None, 1, 1, "human"), ("b", 1, 1, None, 0, 0, "human")]
    info = json.loads(res.json.read_text())
    assert info["labelset"] == "ann1" and info["metrics"]["n_hallucinated_tokens"] == 2


@pytest.mark.parametrize("rows,match", [
    ([{"sample_id": "zz", "steps": [0], "label": 1}], r"human.jsonl:1: sample_id 'zz' is not"),
    ([{"sample_id": "b", "spans": [{"start": 2, "end": 99, "label": 1}]}], r"human.jsonl:1: span \[2, 99\) is outside"),
    ([{"sample_id": "b", "spans": [{"start": 3, "end": 3, "label": 1}]}], r"human.jsonl:1: .*or empty"),
    ([{"sample_id": "a", "spans": [{"start": 0, "end": 5, "label": 1}]},
      {"sample_id": "a", "spans": [{"start": 4, "end": 8, "label": 0}]}], r"human.jsonl:2: .*overlaps span \[0, 5\)"),
    ([{"sample_id": "b", "steps": [7], "label": 1}], r"human.jsonl:1: step 7 is out of range .*steps 0..3"),
    ([{"sample_id": "b", "steps": [1], "label": 1}, {"sample_id": "b", "steps": [1, 2], "label": 0}],
     r"human.jsonl:2: step 1 .* already labeled"),
    ([{"sample_id": "b", "steps": [1], "label": 2}], r"human.jsonl:1: label must be 0 or 1"),
    (["{oops"], r"human.jsonl:1: not valid JSON"),
    ([{"sample_id": "b"}], r"human.jsonl:1: expected"),
])
def test_validation_errors(run, tmp_path, rows, match):
    f = _write(tmp_path, rows)
    with pytest.raises(SaliencyLabError, match=match):
        label_human(run.path, file=f)
    assert not (run.path / "labels" / "human.parquet").exists()
    assert not (run.path / "labels" / "human.json").exists()


def test_span_and_steps_on_the_same_token_is_an_error(run, tmp_path):
    f = _write(tmp_path, [{"sample_id": "b", "spans": [{"start": 2, "end": 5, "label": 1}]},
                          {"sample_id": "b", "steps": [1], "label": 0}])
    with pytest.raises(SaliencyLabError, match=r"steps \[1\] are labeled both"):
        label_human(run.path, file=f)
