import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _store_fakes import FakeBundle, fake_capture

from saliency_lab.config import DecodingConfig, ManifestSample, SaliencyConfig
from saliency_lab.store.schema import SCHEMAS
from saliency_lab.store.writer import ShardWriter, part_name


def _sample_tables(i: int, candidates: int = 0):
    s = ManifestSample(sample_id=f"s{i:03d}", prompt=f"prompt {i}")
    return fake_capture(FakeBundle(), s, DecodingConfig(max_new_tokens=20), SaliencyConfig(candidates=candidates),
                        "r1").tables


def _read(run_dir, table, shard=0):
    return pq.read_table(run_dir / table / f"shard={shard}")


def test_round_trip_schema_rows_offsets(tmp_path):
    w = ShardWriter(tmp_path, 0, ["tokens", "saliency", "candidates"], samples_per_part=3)
    written = {}
    for i in range(7):
        t = _sample_tables(i, candidates=2)
        written[f"s{i:03d}"] = t
        w.add(t)
    assert w.parts_written == 2 and w.pending == 1
    w.flush()
    for name in ("samples", "tokens", "saliency", "candidates"):
        files = sorted((tmp_path / name / "shard=0").glob("*.parquet"))
        assert [f.name for f in files] == [part_name(n) for n in range(3)]
        for f in files:  # every part carries exactly the schema module's schema
            assert pq.read_schema(f).equals(SCHEMAS[name])
    samples = _read(tmp_path, "samples").to_pylist()
    tokens = _read(tmp_path, "tokens").to_pylist()
    sal = _read(tmp_path, "saliency")
    assert len(samples) == 7
    for row in samples:
        n_out = row["n_output"]
        toks = sorted((t for t in tokens if t["sample_id"] == row["sample_id"]), key=lambda t: t["step"])
        assert [t["step"] for t in toks] == list(range(n_out))
        # offsets reconstruct output_text exactly
        assert "".join(row["output_text"][t["char_start"]:t["char_end"]] for t in toks) == row["output_text"]
        assert all(row["output_text"][t["char_start"]:t["char_end"]] == t["token_text"] for t in toks)
        n_sal = sum(1 for s in sal.column("sample_id").to_pylist() if s == row["sample_id"])
        assert n_sal == n_out * FakeBundle().n_layers
    # the values survive unchanged (compare one sample against what was added)
    got = sal.filter(pa.compute.equal(sal["sample_id"], "s004")).sort_by([("step", "ascending"),
                                                                          ("layer", "ascending")])
    want = written["s004"]["saliency"].sort_by([("step", "ascending"), ("layer", "ascending")])
    assert got.equals(want)


def test_parts_are_sorted_and_readable_by_duckdb_as_hive(tmp_path):
    w = ShardWriter(tmp_path, 2, ["tokens", "saliency"], samples_per_part=10)
    for i in (5, 1, 3):
        w.add(_sample_tables(i))
    w.flush()
    keys = [(r["sample_id"], r["step"], r["layer"]) for r in _read(tmp_path, "saliency", 2).to_pylist()]
    assert keys == sorted(keys)
    n = duckdb.sql(
        f"SELECT count(*), min(shard), max(shard) FROM read_parquet('{tmp_path}/saliency/*/*.parquet', "
        "hive_partitioning=true)").fetchall()[0]
    assert n[0] == len(keys) and n[1] == n[2] == 2


def test_all_error_part_writes_empty_tables_of_right_schema(tmp_path):
    from saliency_lab.run import error_row

    w = ShardWriter(tmp_path, 0, ["tokens", "saliency", "rows"], samples_per_part=5)
    w.add({"samples": error_row("r1", ManifestSample(sample_id="x", prompt="p"), "image missing", 0.1)})
    w.flush()
    for name in ("tokens", "saliency", "rows"):
        t = _read(tmp_path, name)
        assert t.num_rows == 0 and t.schema.equals(SCHEMAS[name])
    row = _read(tmp_path, "samples").to_pylist()[0]
    assert row["status"] == "error" and row["error"] == "image missing"


def test_recover_deletes_orphans_and_continues_numbering(tmp_path):
    w = ShardWriter(tmp_path, 0, ["tokens", "saliency"], samples_per_part=2)
    for i in range(4):
        w.add(_sample_tables(i))
    assert w.parts_written == 2
    # Simulate a crash in the middle of part 2: tokens renamed, saliency still temporary, no samples part.
    pq.write_table(_sample_tables(9)["tokens"], tmp_path / "tokens" / "shard=0" / part_name(2))
    (tmp_path / "saliency" / "shard=0" / ".part-00002.parquet.tmp").write_bytes(b"partial")
    w2 = ShardWriter(tmp_path, 0, ["tokens", "saliency"], samples_per_part=2)
    assert w2.has_data()
    assert w2.recover() == {"s000", "s001", "s002", "s003"}
    assert not (tmp_path / "tokens" / "shard=0" / part_name(2)).exists()
    assert not list((tmp_path / "saliency" / "shard=0").glob(".*tmp"))
    with pytest.raises(ValueError, match="already committed"):
        w2.add(_sample_tables(1))
    w2.add(_sample_tables(4))
    w2.flush()
    assert (tmp_path / "samples" / "shard=0" / part_name(2)).exists()
    ids = _read(tmp_path, "samples").column("sample_id").to_pylist()
    assert sorted(ids) == ["s000", "s001", "s002", "s003", "s004"]
    assert "s009" not in _read(tmp_path, "tokens").column("sample_id").to_pylist()


def test_rejects_a_sample_without_its_samples_row(tmp_path):
    w = ShardWriter(tmp_path, 0, ["tokens"], samples_per_part=2)
    t = _sample_tables(0)
    with pytest.raises(ValueError, match="exactly one 'samples' row"):
        w.add({"tokens": t["tokens"]})


def test_corrupt_committed_part_gives_a_clear_error_and_the_fix_works(tmp_path):
    from saliency_lab.errors import SaliencyLabError

    w = ShardWriter(tmp_path, 0, ["tokens"], samples_per_part=1)
    w.add(_sample_tables(0))
    w.add(_sample_tables(1))
    bad = tmp_path / "samples" / "shard=0" / part_name(1)
    bad.write_bytes(b"PAR1 truncated")
    w2 = ShardWriter(tmp_path, 0, ["tokens"], samples_per_part=1)
    with pytest.raises(SaliencyLabError, match="unreadable committed part.*delete it"):
        w2.recover()
    bad.unlink()  # the documented fix
    assert w2.recover() == {"s000"}
    assert not (tmp_path / "tokens" / "shard=0" / part_name(1)).exists()
