"""`--shard auto` under a real `torchrun --nproc_per_node 2` (CPU, no process group): the two shard processes
write one run whose rows equal the unsharded run's, row for row."""

import json
import os
import subprocess
import sys

from _run_fixtures import assert_rows_match, read_sorted, tiny_llama, write_text_manifest  # noqa: F401

from saliency_lab.cli import main

TABLES = ("samples", "tokens", "saliency")


def test_torchrun_two_shards_equal_unsharded(tmp_path, tiny_llama):  # noqa: F811
    manifest = write_text_manifest(tmp_path / "m.jsonl", 10)
    common = [
        "--model",
        str(tiny_llama),
        "--data",
        str(manifest),
        "--out",
        str(tmp_path / "runs"),
        "--max-new-tokens",
        "6",
        "--samples-per-part",
        "2",
        "--quiet",
        "--threads",
        "1",
    ]
    assert main(["capture", *common, "--run-id", "plain"]) == 0

    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_"))
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "--module",
        "saliency_lab",
        "capture",
        *common,
        "--run-id",
        "tr",
        "--shard",
        "auto",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "shard 0/2" in proc.stdout and "shard 1/2" in proc.stdout

    run = tmp_path / "runs" / "tr"
    shards = {p.name for p in (run / "samples").iterdir() if p.name.startswith("shard=")}
    assert shards == {"shard=0", "shard=1"}
    info = json.loads((run / "run.json").read_text())
    assert info["shards"] == 2 and info["threads"] == 1
    for table in TABLES:
        assert_rows_match(read_sorted(run, table), read_sorted(tmp_path / "runs" / "plain", table), table)
