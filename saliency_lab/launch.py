"""`--shard auto`: this process's shard (rank, world size) from the launcher that started it.

Shards are independent processes (no process group, no collective): each fills its own `shard=<k>` folders
of one run, so any launcher that starts N processes and tells each its rank works. Recognised, in order:

- torchrun: `RANK`, `WORLD_SIZE` (and `LOCAL_RANK`: with `--device cuda`, process k uses `cuda:LOCAL_RANK`);
- a SLURM job array: `SLURM_ARRAY_TASK_ID` - `SLURM_ARRAY_TASK_MIN` of `SLURM_ARRAY_TASK_COUNT`;
- SLURM tasks (`srun`): `SLURM_PROCID` of `SLURM_NTASKS` (`SLURM_LOCALID` picks the GPU like LOCAL_RANK).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from saliency_lab.errors import SaliencyLabError


@dataclass(frozen=True)
class Launch:
    """Where this process sits among the shard processes."""

    rank: int
    world_size: int
    local_rank: int | None  # GPU index on this node, when the launcher gives one
    source: str  # which variables it came from


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise SaliencyLabError(
            f"--shard auto: {name}={env[name]!r} is not an integer; "
            "fix the launcher's environment or pass --shard k/N"
        ) from None


def _opt_int(env: Mapping[str, str], name: str) -> int | None:
    return _int(env, name) if env.get(name, "").strip() else None


def detect_launch(env: Mapping[str, str] | None = None) -> Launch:
    """Rank and world size from torchrun or SLURM variables; one-line SaliencyLabError when none is set."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        launch = Launch(_int(env, "RANK"), _int(env, "WORLD_SIZE"), _opt_int(env, "LOCAL_RANK"), "torchrun")
    elif "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        first = _opt_int(env, "SLURM_ARRAY_TASK_MIN") or 0
        launch = Launch(
            _int(env, "SLURM_ARRAY_TASK_ID") - first, _int(env, "SLURM_ARRAY_TASK_COUNT"), None, "slurm-array"
        )
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        launch = Launch(
            _int(env, "SLURM_PROCID"),
            _int(env, "SLURM_NTASKS"),
            _opt_int(env, "SLURM_LOCALID"),
            "slurm-tasks",
        )
    else:
        raise SaliencyLabError(
            "--shard auto: no launcher found (none of RANK/WORLD_SIZE, SLURM_ARRAY_TASK_ID/"
            "SLURM_ARRAY_TASK_COUNT, SLURM_PROCID/SLURM_NTASKS is set); start under torchrun "
            "or SLURM, or pass --shard k/N"
        )
    if not (launch.world_size >= 1 and 0 <= launch.rank < launch.world_size):
        raise SaliencyLabError(
            f"--shard auto: rank {launch.rank} of {launch.world_size} from {launch.source} "
            "is out of range; an array must be contiguous (e.g. --array=0-3), or pass --shard k/N"
        )
    return launch


def device_for(device: str, launch: Launch) -> str:
    """`cuda` -> `cuda:<local rank>` when the launcher gives one; any other device (or `cuda:i`) unchanged."""
    if device == "cuda" and launch.local_rank is not None:
        return f"cuda:{launch.local_rank}"
    return device
