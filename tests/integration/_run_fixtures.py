"""Session fixtures for the capture-run integration tests: tiny models built from configs, manifests, and
helpers that read a run back for comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

# Columns that legitimately differ between two otherwise identical runs.
TIMING_COLUMNS = ("seconds", "run_id", "shard")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    from saliency_lab.models.tiny import build_tiny

    return build_tiny("llama", tmp_path_factory.mktemp("run-models") / "tiny-llama", seed=0)


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory) -> Path:
    from saliency_lab.models.tiny import build_tiny

    return build_tiny("llava", tmp_path_factory.mktemp("run-models") / "tiny-llava", seed=0)


def write_text_manifest(path: Path, n: int) -> Path:
    words = ["cat", "table", "river", "cloud", "bicycle", "lamp", "garden", "violin"]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"sample_id": f"q{i:03d}", "prompt": f"Describe a {words[i % 8]} number {i}.",
                                 "meta": {"i": i}}) + "\n")
    return path


def read_sorted(run_dir: Path, table: str) -> list[dict]:
    """All rows of `table` over every shard, timing columns dropped, in key order."""
    t = pq.read_table(run_dir / table)
    t = t.drop_columns([c for c in TIMING_COLUMNS if c in t.schema.names])
    keys = [k for k in ("sample_id", "step", "rank", "layer") if k in t.schema.names]
    return t.sort_by([(k, "ascending") for k in keys]).to_pylist()


def assert_rows_match(got: list[dict], expected: list[dict], what: str, rtol: float = 1e-5) -> None:
    """Same rows: every non-float value equal, floats equal to `rtol` (relative; 1e-6 absolute near zero).

    Batched capture (the default) gives every sample its batch-1 numbers up to float rounding, and a resumed
    run or another shard puts a sample in a batch with different neighbours, so float32 columns may differ in
    the last bits between two such runs (tokens, ids and every other column are identical). With
    `--batch-size 1` they are equal bit for bit."""
    import math

    def close(v, w) -> bool:
        if isinstance(v, float) and isinstance(w, float):
            return math.isclose(w, v, rel_tol=rtol, abs_tol=1e-6) or (math.isnan(v) and math.isnan(w))
        if isinstance(v, list) and isinstance(w, list):
            return len(v) == len(w) and all(close(a, b) for a, b in zip(v, w, strict=True))
        return v == w

    assert len(got) == len(expected), what
    for g, e in zip(got, expected, strict=True):
        assert g.keys() == e.keys(), what
        for k, v in e.items():
            assert close(v, g[k]), (what, k, e.get("sample_id"), v, g[k])
