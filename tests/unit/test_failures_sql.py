"""Items 2-3 of docs/failures.md: the catalog's DuckDB sandbox, declared bounds of named-query parameters,
and the warning on incomplete runs. Real synthetic runs (real Parquet), real DuckDB, the real CLI."""

from __future__ import annotations

import hashlib
import shutil
import warnings
from pathlib import Path

import pytest

from saliency_lab.cli import main
from saliency_lab.errors import IncompleteRunWarning, SaliencyLabError
from saliency_lab.store.catalog import open_catalog
from saliency_lab.store.sqlfiles import list_queries
from saliency_lab.testing.synthetic import SyntheticSpec, make_run


def tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(
        tmp_path_factory.mktemp("runs"), "r", SyntheticSpec(n_samples=10, n_layers=2, samples_per_part=4)
    )


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize(
    "sql, needle",
    [
        ("COPY (SELECT 1 AS a) TO '{part}' (FORMAT parquet)", "COPY is not allowed"),
        ("COPY samples TO '{outside}/x.csv'", "COPY is not allowed"),
        ("EXPORT DATABASE '{outside}/db'", "EXPORT DATABASE is not allowed"),
        ("ATTACH '{outside}/x.duckdb' AS x", "ATTACH is not allowed"),
        ("INSTALL httpfs", "INSTALL/LOAD is not allowed"),
        ("LOAD httpfs", "INSTALL/LOAD is not allowed"),
        ("SELECT * FROM read_csv('{secret}')", "sandbox reads only the opened runs"),
        ("SELECT * FROM read_parquet('https://example.com/x.parquet')", "sandbox reads only the opened runs"),
        ("SET enable_external_access = true", "sandbox"),
        ("SELECT 1; COPY (SELECT 1) TO '{outside}/y.csv'", "COPY is not allowed"),
    ],
)
def test_sql_sandbox_refuses_writes_and_outside_reads(run, tmp_path, capsys, sql, needle):
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    part = sorted((run / "samples").rglob("part-*.parquet"))[0]
    before = tree_hash(run)
    rc, _, err = _cli(capsys, "sql", str(run), sql.format(part=part, outside=tmp_path, secret=secret))
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert tree_hash(run) == before  # the committed part was not overwritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.csv"]  # nothing written outside either


def test_sql_reads_the_runs_and_writes_only_through_out(run, tmp_path, capsys):
    rc, out, _ = _cli(capsys, "sql", str(run), "SELECT count(*) AS n FROM samples")
    assert rc == 0 and "10" in out
    rc, _, _ = _cli(
        capsys, "sql", str(run), "SELECT sample_id FROM samples", "--out", str(tmp_path / "s.csv")
    )
    assert rc == 0 and len((tmp_path / "s.csv").read_text().splitlines()) == 11
    before = tree_hash(run)
    rc, _, err = _cli(capsys, "sql", str(run), "SELECT 1", "--out", str(run / "samples" / "x.parquet"))
    assert rc == 2 and "inside the run" in err and tree_hash(run) == before


@pytest.mark.parametrize(
    "name, param, needle",
    [
        ("binned_curve", "bins=0", "bins=0: 0 is outside the allowed range 1..1000"),
        ("binned_curve", "bins=100000000", "outside the allowed range 1..1000"),
        ("binned_curve", "labels=chiar", "no label set 'chiar'"),
        ("binned_curve", "layers=99", "99 is outside the allowed range 0..1 (run 'r' has 2 layers)"),
        ("labeled_tokens", "layers=0,-1", "-1 is outside the allowed range 0..1"),
        ("failure_cases", "context=-10", "-10 is outside the allowed range 0..10000"),
        ("failure_cases", "top=0", "outside the allowed range 1..100000"),
        ("layer_profile", "auroc_bins=-1", "outside the allowed range 0..10000000"),
        ("run_summary", "labels=nosuch", "no label set 'nosuch'"),
    ],
)
def test_named_query_bounds_are_checked_before_running(run, capsys, name, param, needle):
    rc, out, err = _cli(capsys, "query", name, str(run), "--param", param)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert out == ""


def test_in_bounds_values_still_run(run):
    with open_catalog(run) as cat:
        df = cat.query("binned_curve", {"bins": "1000", "layers": "0,1", "labels": "chair"})
        assert df.height == 1000
        assert cat.query("failure_cases", {"context": "0"}).height > 0


def test_every_named_query_declares_its_bounds():
    for q in list_queries():
        for p in q.params.values():
            if p.name == "layers":
                assert p.hi == "n_layers-1" and p.lo == "0", q.name
            if p.name == "labels":
                assert "@labelset" in p.choices, q.name
            if p.type in ("INTEGER", "DOUBLE"):
                assert p.lo or p.hi, f"{q.name}: {p.name} has no declared bounds"


def _copy(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst)
    return dst


def test_missing_shard_warns_once(run, tmp_path):
    r = _copy(run, tmp_path / "r")
    import json

    info = json.loads((r / "run.json").read_text())
    info["shards"] = 2
    (r / "run.json").write_text(json.dumps(info))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with open_catalog(r) as cat:
            cat.query("run_summary")
            cat.sql("SELECT count(*) FROM samples").fetchall()
    msgs = [str(w.message) for w in caught if issubclass(w.category, IncompleteRunWarning)]
    assert len(msgs) == 1 and "shard(s) 1 of 2 have no committed samples" in msgs[0]


def test_uncommitted_part_warns_in_the_cli(run, tmp_path, capsys):
    r = _copy(run, tmp_path / "r")
    last = sorted((r / "samples" / "shard=0").glob("part-*.parquet"))[-1]
    last.unlink()  # its tokens/saliency parts are now uncommitted, as after a kill mid-commit
    rc, _, err = _cli(capsys, "query", "run_summary", str(r))
    lines = err.strip().splitlines()
    assert rc == 0 and len(lines) == 1 and "incomplete run" in lines[0] and "uncommitted part" in lines[0]


def test_complete_run_gives_no_warning(run, capsys):
    rc, _, err = _cli(capsys, "query", "run_summary", str(run))
    assert rc == 0 and err == ""


def test_analyze_layers_outside_the_model(run, tmp_path, capsys):
    rc, _, err = _cli(
        capsys, "analyze", str(run), "--labels", "chair", "--out", str(tmp_path / "a"), "--layers", "9"
    )
    assert rc == 2 and "9 is outside the allowed range 0..1" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


def test_corrupt_parquet_part_under_sql_is_one_line(run, tmp_path, capsys):
    r = _copy(run, tmp_path / "r")
    part = sorted((r / "saliency" / "shard=0").glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:200])
    rc, _, err = _cli(capsys, "sql", str(r), "SELECT sum(prev) FROM saliency")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "part-" in err and "Traceback" not in err


def test_python_api_errors_are_saliency_lab_errors(run):
    with open_catalog(run) as cat, pytest.raises(SaliencyLabError, match="COPY is not allowed"):
        cat.sql("COPY samples TO 'x.csv'")
