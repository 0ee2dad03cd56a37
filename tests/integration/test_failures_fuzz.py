"""Item 6 of docs/failures.md: malformed inputs across every command. Each must end with exit code 2,
exactly one line on stderr that names the bad input, no traceback, and the run folder byte-for-byte as it
was. The CLI runs in-process (saliency_lab.cli.main); a few cases also run as real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _failure_fixtures import cli, tree_hash
from _report_fixtures import synthetic_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    run = synthetic_run(root / "runs", "base", n_samples=8, n_layers=2, rows=None)
    shutil.copytree(run, root / "runs" / "copy")  # a run folder copied to a new name
    f = root / "files"
    f.mkdir()
    (f / "bad.json").write_text("{not json")
    (f / "bad.jsonl").write_text('{"sample_id": "a", "prompt": "x"}\n{oops\n')
    (f / "noprompt.jsonl").write_text('{"sample_id": "a"}\n')
    (f / "dup.jsonl").write_text('{"sample_id": "a", "prompt": "x"}\n{"sample_id": "a", "prompt": "y"}\n')
    (f / "ok.jsonl").write_text('{"sample_id": "a", "prompt": "x"}\n')
    (f / "lable.jsonl").write_text('{"sample_id": "s000001", "steps": [0], "lable": 1}\n')
    (f / "good.jsonl").write_text('{"sample_id": "s000001", "steps": [0], "label": 1}\n')
    (f / "nosample.jsonl").write_text('{"sample_id": "zzz", "steps": [0], "label": 1}\n')
    (f / "badstep.jsonl").write_text('{"sample_id": "s000001", "steps": [999], "label": 1}\n')
    (f / "cal.json").write_text('{"recommended": {"alpha": "high"}}')
    (f / "gt.json").write_text('["not", "a", "mapping"]')
    (f / "caps.jsonl").write_text('{"image_id": 1}\n')
    (f / "q.jsonl").write_text(
        '{"question_id": 1, "image": "a.jpg", "text": "Is there a cat?", "label": "maybe"}\n'
    )
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_text("{broken")
    (root / "existing").mkdir()
    return {"root": root, "run": run, "f": f, "model": model}


# (id, argv with {run} {f} {root} {model} placeholders, text stderr must contain)
CASES = [
    (
        "capture-missing-manifest",
        "capture --model {model} --data {f}/nosuch.jsonl --out {root}/o",
        "nosuch.jsonl",
    ),
    (
        "capture-bad-json-line",
        "capture --model {model} --data {f}/bad.jsonl --out {root}/o",
        "bad.jsonl, line 2",
    ),
    (
        "capture-no-prompt",
        "capture --model {model} --data {f}/noprompt.jsonl --out {root}/o",
        "noprompt.jsonl",
    ),
    ("capture-duplicate-id", "capture --model {model} --data {f}/dup.jsonl --out {root}/o", "dup.jsonl"),
    ("capture-missing-model", "capture --model {root}/nomodel --data {f}/ok.jsonl --out {root}/o", "nomodel"),
    ("capture-broken-config", "capture --model {model} --data {f}/ok.jsonl --out {root}/o", "config.json"),
    (
        "capture-samples-per-part-0",
        "capture --model {model} --data {f}/ok.jsonl --out {root}/o --samples-per-part 0",
        "--samples-per-part 0",
    ),
    (
        "capture-max-new-tokens-0",
        "capture --model {model} --data {f}/ok.jsonl --out {root}/o --max-new-tokens 0",
        "--max-new-tokens 0",
    ),
    (
        "capture-missing-calibration",
        "capture --model {model} --data {f}/ok.jsonl --calibration {f}/nocal.json",
        "nocal.json",
    ),
    (
        "capture-bad-calibration",
        "capture --model {model} --data {f}/ok.jsonl --calibration {f}/cal.json",
        "recommended.alpha",
    ),
    (
        "capture-decay-without-rate",
        "capture --model {model} --data {f}/ok.jsonl --decay-steps 1",
        "--decay-steps",
    ),
    (
        "capture-copied-run",
        "capture --model {model} --data {f}/ok.jsonl --out {root}/runs --run-id copy --resume",
        "copied or renamed",
    ),
    ("label-human-missing-file", "label human --run {run} --file {f}/nolabels.jsonl", "nolabels.jsonl"),
    ("label-human-unknown-field", "label human --run {run} --file {f}/lable.jsonl", "'lable'"),
    ("label-human-unknown-sample", "label human --run {run} --file {f}/nosample.jsonl", "'zzz'"),
    ("label-human-bad-step", "label human --run {run} --file {f}/badstep.jsonl", "step 999"),
    ("label-not-a-run", "label human --run {root}/nowhere --file {f}/lable.jsonl", "nowhere"),
    ("label-bad-name", "label human --run {run} --file {f}/good.jsonl --name a/b", "a/b"),
    ("label-chair-bad-gt", "label chair --run {run} --ground-truth {f}/bad.json", "bad.json"),
    ("label-chair-gt-not-mapping", "label chair --run {run} --ground-truth {f}/gt.json", "gt.json"),
    ("label-pope-no-meta", "label pope --run {run}", "meta.label"),
    ("sql-copy-into-run", "sql {run} COPY_INTO_RUN", "COPY is not allowed"),
    ("sql-read-outside", "sql {run} READ_OUTSIDE", "bad.json"),
    ("sql-attach", "sql {run} ATTACH_OUTSIDE", "ATTACH is not allowed"),
    ("sql-syntax", "sql {run} SELEC_1", "SELEC"),
    ("sql-bad-out", "sql {run} SELECT_1 --out {root}/x.txt", "x.txt"),
    ("sql-not-a-run", "sql {root}/nowhere SELECT_1", "nowhere"),
    ("query-unknown", "query nosuch {run}", "nosuch"),
    ("query-bins-0", "query binned_curve {run} --param bins=0", "bins=0"),
    ("query-bins-huge", "query binned_curve {run} --param bins=100000000", "bins=100000000"),
    ("query-labels-typo", "query binned_curve {run} --param labels=chiar", "chiar"),
    ("query-layers-99", "query token_scores {run} --param layers=99", "layers=99"),
    ("query-context-negative", "query failure_cases {run} --param context=-10", "context=-10"),
    ("query-param-no-equals", "query binned_curve {run} --param bins", "'bins'"),
    ("query-param-unknown", "query binned_curve {run} --param colour=red", "colour"),
    ("query-param-type", "query binned_curve {run} --param bins=ten", "bins=ten"),
    ("query-param-choice", "query binned_curve {run} --param score=nonsense", "score=nonsense"),
    ("analyze-labels-typo", "analyze {run} --labels chiar --out {root}/a", "chiar"),
    ("analyze-layers-9", "analyze {run} --labels chair --layers 9 --out {root}/a", "layers=9"),
    ("calibrate-labels-typo", "calibrate {run} --labels chiar --out {root}/c", "chiar"),
    ("calibrate-layer-set-9", "calibrate {run} --labels chair --layer-sets 9 --out {root}/c", "9"),
    ("report-layers-7-8", "report {run} -o {root}/r.html --layers 7,8 --no-calibrate", "--layers 7,8"),
    ("report-samples-nosuch", "report {run} -o {root}/r.html --samples nosuch --no-calibrate", "nosuch"),
    ("report-out-folder", "report {run} -o {root}/existing --no-calibrate", "existing"),
    ("report-not-a-run", "report {root}/nowhere -o {root}/r.html", "nowhere"),
    (
        "chair-missing-captions",
        "chair --captions {f}/nocaps.jsonl --ground-truth {f}/gt.json --out {root}/c.json",
        "nocaps.jsonl",
    ),
    (
        "chair-caption-missing-field",
        "chair --captions {f}/caps.jsonl --ground-truth {f}/gt.json --out {root}/c.json",
        "caps.jsonl:1",
    ),
    ("pope-missing-questions", "pope --questions {f}/noq.jsonl --answers {f}/ok.jsonl", "noq.jsonl"),
    ("pope-bad-label", "pope --questions {f}/q.jsonl --answers {f}/ok.jsonl", "q.jsonl"),
    (
        "data-coco-missing-annotations",
        "data coco-chair --images {root} --annotations {f}/noann.json --out {root}/m.jsonl",
        "noann.json",
    ),
    (
        "data-pope-missing-questions",
        "data pope --questions {f}/noq.jsonl --images {root} --out {root}/m.jsonl",
        "noq.jsonl",
    ),
]

_SQL = {
    "COPY_INTO_RUN": "COPY (SELECT 1 AS a) TO '{run}/samples/shard=0/part-00000.parquet' (FORMAT parquet)",
    "READ_OUTSIDE": "SELECT * FROM read_text('{f}/bad.json')",
    "ATTACH_OUTSIDE": "ATTACH '{root}/x.duckdb' AS x",
    "SELEC_1": "SELEC 1",
    "SELECT_1": "SELECT 1",
}


def _argv(template: str, w: dict[str, Path]) -> list[str]:
    fmt = {k: str(v) for k, v in w.items()}
    return [_SQL.get(tok, tok).format(**fmt) for tok in template.split()]


def test_at_least_thirty_cases_across_every_command():
    commands = {c[1].split()[0] for c in CASES}
    assert len(CASES) >= 30
    assert {
        "capture",
        "label",
        "sql",
        "query",
        "analyze",
        "report",
        "calibrate",
        "chair",
        "pope",
        "data",
    } <= commands


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_input_is_one_line_and_changes_nothing(world, capsys, case):
    _, template, needle = case
    before = {p: tree_hash(p) for p in (world["run"], world["root"] / "runs" / "copy")}
    rc, _, err = cli(capsys, *_argv(template, world))
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("saliency-lab: error: "), err
    assert needle in lines[0], err
    assert {p: tree_hash(p) for p in before} == before
    assert not list(world["root"].rglob("*.tmp"))


@pytest.mark.parametrize("name", ["sql-copy-into-run", "query-bins-huge", "report-layers-7-8"])
def test_real_subprocess(world, name):
    template, needle = next((c[1], c[2]) for c in CASES if c[0] == name)
    before = tree_hash(world["run"])
    proc = subprocess.run(
        [sys.executable, "-m", "saliency_lab", *_argv(template, world)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr
    assert tree_hash(world["run"]) == before


def test_inputs_written_after_the_failures_are_still_valid(world):
    """The run survives every case above: it still opens and its counts are unchanged."""
    from saliency_lab.store.catalog import open_catalog

    with open_catalog(world["run"]) as cat:
        assert cat.sql("SELECT count(*) FROM samples").fetchall() == [(8,)]
    assert json.loads((world["run"] / "run.json").read_text())["run_id"] == "base"
