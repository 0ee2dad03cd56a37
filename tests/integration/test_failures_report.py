"""Item 4 of docs/failures.md for `report`: bad options, a damaged or vanished run and an unwritable output
are one-line errors (exit 2); no `<out>.tmp` is ever left behind and an earlier report is kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _failure_fixtures import cli, read_only, tree_hash
from _report_fixtures import synthetic_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return synthetic_run(tmp_path_factory.mktemp("runs"), "base", n_samples=10, n_layers=2)


def _one_line_error(rc: int, err: str, needle: str) -> None:
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err


FAST = ("--no-calibrate", "--bootstrap", "20")


def test_layers_outside_the_model(run, tmp_path, capsys):
    rc, _, err = cli(capsys, "report", run, "-o", tmp_path / "r.html", "--layers", "7,8", *FAST)
    _one_line_error(rc, err, "--layers 7,8: layer 7 is outside run 'base', which has 2 layers (0..1)")
    assert list(tmp_path.iterdir()) == []


def test_unknown_sample(run, tmp_path, capsys):
    rc, _, err = cli(capsys, "report", run, "-o", tmp_path / "r.html", "--samples", "nosuch", *FAST)
    _one_line_error(rc, err, "--samples: no sample 'nosuch'")


def test_out_is_an_existing_folder(run, tmp_path, capsys):
    folder = tmp_path / "existing"
    folder.mkdir()
    rc, _, err = cli(capsys, "report", run, "-o", folder, *FAST)
    _one_line_error(rc, err, "is a folder")
    assert list(tmp_path.iterdir()) == [folder] and list(folder.iterdir()) == []  # no existing.tmp


def test_unwritable_output_keeps_the_old_report_and_leaves_no_tmp(run, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "r.html").write_text("old report")
    with read_only(out_dir):
        rc, _, err = cli(capsys, "report", run, "-o", out_dir / "r.html", *FAST)
    _one_line_error(rc, err, "cannot write the report")
    assert sorted(p.name for p in out_dir.iterdir()) == ["r.html"]
    assert (out_dir / "r.html").read_text() == "old report"


def test_read_only_run_folder_still_reports(run, tmp_path, capsys):
    before = tree_hash(run)
    with read_only(run):
        rc, out, err = cli(capsys, "report", run, "-o", tmp_path / "r.html", *FAST)
    assert rc == 0 and (tmp_path / "r.html").stat().st_size > 10_000, err
    assert tree_hash(run) == before


def test_corrupt_parquet_part(run, tmp_path, capsys):
    r = tmp_path / "base"
    shutil.copytree(run, r)
    part = sorted((r / "saliency" / "shard=0").glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])
    rc, _, err = cli(capsys, "report", r, "-o", tmp_path / "r.html", *FAST)
    _one_line_error(rc, err, "part-")
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.html.tmp").exists()


def test_run_deleted_while_the_report_is_built(run, tmp_path, capsys, monkeypatch):
    import saliency_lab.report.build as build

    r = tmp_path / "base"
    shutil.copytree(run, r)
    real = build._analyze

    def delete_then_analyze(*args, **kw):  # the run vanishes after it was opened
        shutil.rmtree(r)
        return real(*args, **kw)

    monkeypatch.setattr(build, "_analyze", delete_then_analyze)
    rc, _, err = cli(capsys, "report", r, "-o", tmp_path / "r.html", *FAST)
    _one_line_error(rc, err, str(r))
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.html.tmp").exists()


def test_incomplete_run_warns_once_in_a_report(run, tmp_path, capsys):
    import json

    r = tmp_path / "base"
    shutil.copytree(run, r)
    info = json.loads((r / "run.json").read_text())
    info["shards"] = 2
    (r / "run.json").write_text(json.dumps(info))
    rc, _, err = cli(capsys, "report", r, "-o", tmp_path / "r.html", *FAST)
    assert rc == 0
    warned = [ln for ln in err.splitlines() if "incomplete run" in ln]
    assert len(warned) == 1 and "shard(s) 1 of 2" in warned[0]
