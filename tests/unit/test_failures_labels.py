"""Items 4-5 of docs/failures.md: labels written as one unit (a real kill between the two renames is
detected), unknown fields refused or warned, read-only runs and a full disk as one-line errors, a copied run
folder explained on resume."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _failure_fixtures import cli, read_only, tree_hash
from _labels_runs import FakeSample, make_label_run
from _store_fakes import fake_capture, fake_load, write_manifest

from saliency_lab.config import CaptureConfig, ModelConfig
from saliency_lab.errors import SaliencyLabError, SaliencyLabWarning
from saliency_lab.labels.label_run import label_human
from saliency_lab.run import capture
from saliency_lab.store.catalog import open_catalog

REPO = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path) -> Path:
    samples = [
        FakeSample("s1", ["A", " cat", " on", " a", " mat", "."]),
        FakeSample("s2", ["A", " dog", " and", " a", " ball", "."]),
    ]
    return make_label_run(tmp_path, samples).path


def _labels_file(path: Path, label: int) -> Path:
    path.write_text(
        json.dumps({"sample_id": "s1", "steps": [1], "label": label})
        + "\n"
        + json.dumps({"sample_id": "s2", "steps": [1, 4], "label": label})
        + "\n"
    )
    return path


def test_label_json_pins_the_parquet_it_was_written_with(tmp_path):
    run = _run(tmp_path)
    label_human(run, file=str(_labels_file(tmp_path / "l.jsonl", 1)))
    info = json.loads((run / "labels" / "human.json").read_text())
    assert len(info["labels_sha256"]) == 64
    with open_catalog(run) as cat:
        assert cat.sql("SELECT count(*) FROM labels").fetchall()[0][0] == 3


_KILL_BETWEEN_RENAMES = textwrap.dedent("""
    import os, signal, sys
    import saliency_lab.labels.join as join
    real = os.replace
    calls = []
    def replace(src, dst):
        real(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill between the two renames
    join.os.replace = replace
    from saliency_lab.labels.label_run import label_human
    label_human(sys.argv[1], file=sys.argv[2])
""")


def test_kill_between_the_two_renames_is_detected(tmp_path):
    run = _run(tmp_path)
    label_human(run, file=str(_labels_file(tmp_path / "old.jsonl", 0)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_BETWEEN_RENAMES, str(run), str(_labels_file(tmp_path / "new.jsonl", 1))],
        env=env,
        capture_output=True,
    )
    assert proc.returncode == -9  # killed, not finished
    with pytest.raises(SaliencyLabError, match="come from different `label` runs"):
        open_catalog(run)
    # Labelling again repairs it.
    label_human(run, file=str(tmp_path / "new.jsonl"))
    with open_catalog(run) as cat:
        assert cat.sql("SELECT min(label) FROM labels").fetchall()[0][0] == 1


def test_unknown_fields_in_human_labels_are_refused_by_name(tmp_path, capsys):
    run = _run(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"sample_id": "s1", "steps": [1], "lable": 1}) + "\n")
    rc, _, err = cli(capsys, "label", "human", "--run", run, "--file", bad)
    assert rc == 2 and "unknown field 'lable'" in err and f"{bad}:1" in err
    span = tmp_path / "span.jsonl"
    span.write_text(
        json.dumps({"sample_id": "s1", "spans": [{"start": 0, "end": 1, "label": 1, "note": "x"}]})
    )
    rc, _, err = cli(capsys, "label", "human", "--run", run, "--file", span)
    assert rc == 2 and "unknown field 'note'" in err
    assert not (run / "labels").exists()


def test_unknown_chair_categories_are_warned_with_the_category(tmp_path):
    from saliency_lab.labels.groundtruth import load_gt_mapping
    from saliency_lab.labels.synonyms import load_synonyms

    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"1": ["cat", "dog"], "2": ["unicorn", "television"]}))
    with pytest.warns(SaliencyLabWarning, match="unknown CHAIR category 'unicorn' \\(entry '2'\\)"):
        out = load_gt_mapping(gt, load_synonyms(None))
    assert out.objects["2"] == {"unicorn", "tv"}  # kept; synonyms still mapped


def test_label_on_a_read_only_run_is_one_line(tmp_path, capsys):
    run = _run(tmp_path)
    label_human(run, file=str(_labels_file(tmp_path / "l.jsonl", 0)))
    before = tree_hash(run)
    with read_only(run):
        rc, _, err = cli(
            capsys, "label", "human", "--run", run, "--file", _labels_file(tmp_path / "n.jsonl", 1)
        )
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "labels" in err and ("read-only" in err or "permission denied" in err or "not permitted" in err)
    assert tree_hash(run) == before


def _cfg(tmp_path, manifest, **kw):
    return CaptureConfig(
        model=ModelConfig("fake"),
        data=str(manifest),
        out=str(tmp_path / "runs"),
        run_id=kw.pop("run_id", "r"),
        quiet=True,
        samples_per_part=2,
        **kw,
    )


def test_resume_on_a_read_only_run_is_one_line(tmp_path):
    m = write_manifest(tmp_path / "m.jsonl", 6)
    capture(_cfg(tmp_path, m), load_fn=fake_load, capture_fn=fake_capture)
    run = tmp_path / "runs" / "r"
    before = tree_hash(run)
    with read_only(run), pytest.raises(SaliencyLabError) as exc:
        capture(_cfg(tmp_path, m, resume=True), load_fn=fake_load, capture_fn=fake_capture)
    msg = str(exc.value)
    assert "\n" not in msg and str(run) in msg and "writable" in msg
    assert tree_hash(run) == before


def test_disk_full_at_the_writer_keeps_committed_parts_and_resume_finishes(tmp_path, monkeypatch):
    import saliency_lab.store.writer as writer

    m = write_manifest(tmp_path / "m.jsonl", 7)
    full = capture(_cfg(tmp_path, m, run_id="full"), load_fn=fake_load, capture_fn=fake_capture)
    real = writer.pq.write_table
    calls = []

    def enospc(table, where, **kw):  # the disk fills up while the 2nd part is written
        calls.append(where)
        if len(calls) > len(writer.PARTITIONED_TABLES[:3]):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, **kw)

    monkeypatch.setattr(writer.pq, "write_table", enospc)
    with pytest.raises(SaliencyLabError, match="disk is full") as exc:
        capture(_cfg(tmp_path, m), load_fn=fake_load, capture_fn=fake_capture)
    assert "--resume" in str(exc.value) and "\n" not in str(exc.value)
    run = tmp_path / "runs" / "r"
    assert not list(run.rglob("*.tmp"))  # no temporary file left behind
    monkeypatch.setattr(writer.pq, "write_table", real)
    res = capture(_cfg(tmp_path, m, resume=True), load_fn=fake_load, capture_fn=fake_capture)
    assert res.skipped >= 2 and res.skipped + res.ok == 7
    with open_catalog([run]) as a, open_catalog([full.run_dir]) as b:
        q = "SELECT sample_id, step, layer, prev FROM saliency ORDER BY ALL"
        assert a.sql(q).fetchall() == b.sql(q).fetchall()


def test_copied_run_folder_gives_a_hint_on_resume(tmp_path):
    m = write_manifest(tmp_path / "m.jsonl", 4)
    capture(_cfg(tmp_path, m), load_fn=fake_load, capture_fn=fake_capture)
    shutil.copytree(tmp_path / "runs" / "r", tmp_path / "runs" / "copy")
    with pytest.raises(SaliencyLabError, match="holds run 'r'.*copied or renamed.*--run-id r") as exc:
        capture(_cfg(tmp_path, m, run_id="copy", resume=True), load_fn=fake_load, capture_fn=fake_capture)
    assert "\n" not in str(exc.value)
