"""How many CPU threads a command uses: one setting for torch's intra-op pool, DuckDB and Polars.

The default is chosen so that several users (or several shard processes) on one machine do not oversubscribe
it: torch's own default (one thread per core) made a capture ~5x slower on a shared 2-core machine, because
spinning OpenMP threads fight over the cores. Order of precedence:

1. `--threads N` (or `CaptureConfig.threads`);
2. an allocation the launcher already made: `OMP_NUM_THREADS`, then `SLURM_CPUS_PER_TASK`;
3. half of the cores this process may run on (`os.sched_getaffinity`), divided among the processes that
   torchrun / SLURM start on this node (`LOCAL_WORLD_SIZE`, `SLURM_NTASKS_PER_NODE`), at least 1, at most 8.

`configure_threads(n)` applies it for the whole process: torch (`torch.set_num_threads`, or
`OMP_NUM_THREADS` when torch is not imported yet), DuckDB connections
opened afterwards by `saliency_lab.store.catalog` (`SET threads`) and Polars (`POLARS_MAX_THREADS`, read
when Polars is first imported). Measured effect: docs/capture.md, "Threads".
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from saliency_lab.errors import SaliencyLabError

MAX_DEFAULT_THREADS = 8

_configured: int | None = None


def _positive_int(text: str | None) -> int | None:
    try:
        value = int(str(text).strip())
    except (TypeError, ValueError):
        return None
    return value if value >= 1 else None


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity mask, which containers and SLURM narrow)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads(env: Mapping[str, str] | None = None, cores: int | None = None) -> int:
    """The thread count used when none is asked for (see the module docstring for the rule)."""
    env = os.environ if env is None else env
    for name in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        value = _positive_int(env.get(name))
        if value is not None:
            return value
    cores = available_cores() if cores is None else cores
    local = _positive_int(env.get("LOCAL_WORLD_SIZE")) or _positive_int(env.get("SLURM_NTASKS_PER_NODE")) or 1
    return max(1, min(MAX_DEFAULT_THREADS, cores // 2 // local))


def resolve_threads(requested: int | None, env: Mapping[str, str] | None = None) -> int:
    """`requested` checked (>= 1), or the default; one-line SaliencyLabError naming --threads otherwise."""
    if requested is None:
        return default_threads(env)
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise SaliencyLabError(
            f"--threads {requested!r}: must be an integer >= 1 (or leave it out for "
            f"the default, {default_threads(env)} here)"
        )
    return requested


def configure_threads(requested: int | None = None) -> int:
    """Resolve the thread count and apply it to torch (when importable), DuckDB and Polars; returns it."""
    global _configured
    n = resolve_threads(requested)
    _configured = n
    if "polars" not in sys.modules:  # Polars sizes its pool once, at import
        os.environ["POLARS_MAX_THREADS"] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:  # never imported just for this (the query commands do not need torch): it reads these at import
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(n)
    return n


def configured_threads() -> int | None:
    """The count set by `configure_threads` in this process, or None when nothing was configured."""
    return _configured
