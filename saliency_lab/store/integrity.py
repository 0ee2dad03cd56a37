"""Checks on a run folder as readers see it: missing shards, uncommitted parts, label files that belong
together.

A reader never fails on a partial run (a capture still going on is normal), but it says so once, so a result
computed on part of a run is never mistaken for the whole (see docs/failures.md).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from saliency_lab.store.schema import PARTITIONED_TABLES

_PART = re.compile(r"^part-(\d+)\.parquet$")
_SHARD = re.compile(r"^shard=(\d+)$")


def file_sha256(data: bytes) -> str:
    """sha256 of a file's bytes (how a labels JSON pins the Parquet file written with it)."""
    return hashlib.sha256(data).hexdigest()


def _parts(folder: Path) -> tuple[set[int], bool]:
    """Committed part numbers in a shard folder, and whether a temporary (uncommitted) file is there."""
    nums, tmp = set(), False
    for name in os.listdir(folder):
        m = _PART.match(name)
        if m:
            nums.add(int(m.group(1)))
        elif name.startswith(".part-") and name.endswith(".tmp"):
            tmp = True
    return nums, tmp


def run_problems(run_dir: str | Path, n_shards: int | None) -> list[str]:
    """What makes a local run folder incomplete: shards of `n_shards` with no committed sample, and parts
    (or temporary files) with no `samples` part of the same number, i.e. a writer killed mid-commit."""
    run = Path(run_dir)
    problems: list[str] = []
    committed: dict[int, set[int]] = {}
    samples = run / "samples"
    if samples.is_dir():
        for d in samples.iterdir():
            m = _SHARD.match(d.name)
            if m and d.is_dir():
                nums, _ = _parts(d)
                if nums:
                    committed[int(m.group(1))] = nums
    if n_shards and n_shards > 0:
        missing = [k for k in range(n_shards) if k not in committed]
        if missing:
            shown = ", ".join(str(k) for k in missing[:8]) + (" ..." if len(missing) > 8 else "")
            problems.append(f"shard(s) {shown} of {n_shards} have no committed samples")
    orphans = 0
    for table in PARTITIONED_TABLES:
        folder = run / table
        if not folder.is_dir():
            continue
        for d in folder.iterdir():
            m = _SHARD.match(d.name)
            if not (m and d.is_dir()):
                continue
            nums, tmp = _parts(d)
            orphans += int(tmp) + len(nums - committed.get(int(m.group(1)), set()))
    if orphans:
        problems.append(f"{orphans} uncommitted part file(s) (a capture was stopped mid-write or is running)")
    return problems
