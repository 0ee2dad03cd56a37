"""Reliability of a real capture: SIGKILL part-way then --resume, and k/N shards, both reproduce the
uninterrupted run row for row (timing columns aside), with nothing lost or duplicated."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _run_fixtures import assert_rows_match, read_sorted, tiny_llama, write_text_manifest  # noqa: F401

from saliency_lab.config import CaptureConfig, ModelConfig
from saliency_lab.run import capture

N_SAMPLES = 36
MAX_NEW = 12
TABLES = ("samples", "tokens", "saliency")


def _cfg(model: Path, manifest: Path, out: Path, **kw) -> CaptureConfig:
    cfg = CaptureConfig(model=ModelConfig(str(model)), data=str(manifest), out=str(out), run_id="r",
                        samples_per_part=3, quiet=True, **kw)
    cfg.decoding.max_new_tokens = MAX_NEW
    return cfg


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, tiny_llama):  # noqa: F811
    root = tmp_path_factory.mktemp("run-baseline")
    manifest = write_text_manifest(root / "m.jsonl", N_SAMPLES)
    res = capture(_cfg(tiny_llama, manifest, root / "runs"))
    assert res.ok == N_SAMPLES
    return manifest, {t: read_sorted(res.run_dir, t) for t in TABLES}


def _start_and_kill(model: Path, manifest: Path, out: Path, sig: int) -> subprocess.Popen:
    """Run `saliency-lab capture` in a subprocess and send it `sig` soon after its first part is committed."""
    cmd = [sys.executable, "-m", "saliency_lab", "capture", "--model", str(model), "--data", str(manifest),
           "--out", str(out), "--run-id", "r", "--max-new-tokens", str(MAX_NEW), "--samples-per-part", "3",
           "--quiet"]
    # Same intra-op thread count as the in-process baseline: float reductions are only bit-identical when
    # the work is split the same way.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first_part = out / "r" / "samples" / "shard=0" / "part-00000.parquet"
    deadline = time.monotonic() + 120
    while not first_part.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "capture subprocess wrote no part in time"
        time.sleep(0.005)
    time.sleep(0.05)  # land the signal somewhere inside the following samples/parts
    proc.send_signal(sig)
    proc.wait(timeout=60)  # reap it, so its pid is really gone
    return proc


def test_sigterm_flushes_complete_samples_and_exits_130(tmp_path, tiny_llama, baseline):  # noqa: F811
    manifest, expected = baseline
    out = tmp_path / "runs"
    proc = _start_and_kill(tiny_llama, manifest, out, signal.SIGTERM)
    assert proc.returncode == 130 and "interrupted" in proc.stderr.read()
    done = read_sorted(out / "r", "samples")
    assert 3 <= len(done) < N_SAMPLES
    # a clean stop: lock released, no temporary or orphan parts, committed rows equal the baseline's
    assert not (out / "r" / ".locks" / "shard=0.lock").exists()
    assert not list((out / "r").rglob(".part-*"))
    ids = {r["sample_id"] for r in done}
    assert_rows_match(read_sorted(out / "r", "saliency"), [r for r in expected["saliency"] if r["sample_id"] in ids],
                      "saliency")


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, tiny_llama, baseline):  # noqa: F811
    manifest, expected = baseline
    out = tmp_path / "runs"
    _start_and_kill(tiny_llama, manifest, out, signal.SIGKILL)
    done = read_sorted(out / "r", "samples")
    assert 3 <= len(done) < N_SAMPLES, "the kill came too late to test resuming"
    assert (out / "r" / ".locks" / "shard=0.lock").exists()  # stale: taken over below

    res = capture(_cfg(tiny_llama, manifest, out, resume=True))
    assert res.skipped == len(done) and res.ok == N_SAMPLES - len(done)
    for table in TABLES:
        assert_rows_match(read_sorted(out / "r", table), expected[table], table)
    ids = [r["sample_id"] for r in read_sorted(out / "r", "samples")]
    assert len(ids) == len(set(ids)) == N_SAMPLES
    # no temporary or orphan files remain
    assert not list((out / "r").rglob(".part-*"))
    for table in ("tokens", "saliency"):
        parts = {p.name for p in (out / "r" / table / "shard=0").glob("*.parquet")}
        assert parts == {p.name for p in (out / "r" / "samples" / "shard=0").glob("*.parquet")}


def test_shards_together_equal_unsharded(tmp_path, tiny_llama, baseline):  # noqa: F811
    manifest, expected = baseline
    out = tmp_path / "runs"
    counts = [capture(_cfg(tiny_llama, manifest, out, shard=(k, 3))).total for k in range(3)]
    assert sum(counts) == N_SAMPLES and min(counts) > 0
    for table in TABLES:
        assert_rows_match(read_sorted(out / "r", table), expected[table], table)
    assert sorted(p.name for p in (out / "r" / "samples").iterdir()) == ["shard=0", "shard=1", "shard=2"]
