"""Append-only, atomic Parquet writer for one shard of a run (docs/capture.md, "Layout on disk" and "Commit, crash and resume").

Layout: ``<run_dir>/<table>/shard=<k>/part-<n>.parquet`` (hive partitions; DuckDB, Polars, Spark read it as is).

Commit protocol. Samples are buffered `samples_per_part` at a time. A flush writes part ``n`` of every table
under a hidden temporary name (``.part-<n>.parquet.tmp``, matched by no ``*.parquet`` glob), fsyncs it and
renames it into place, and writes the ``samples`` part **last**. A sample is therefore committed exactly when
its ``samples`` row exists; part files of other tables whose number has no ``samples`` part are orphans of
a crash and `recover` deletes them. Resuming continues with a part number above every existing one, so a
committed file is never rewritten.

A lock file per shard (``<run_dir>/.locks/shard=<k>.lock``) stops two live processes from filling the same
shard; a lock left by a killed process is detected (its pid is gone) and taken over.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from saliency_lab.errors import SaliencyLabError, os_error
from saliency_lab.store.schema import PARTITIONED_TABLES, SCHEMAS

PART_RE = re.compile(r"^part-(\d+)\.parquet$")
TMP_RE = re.compile(r"^\.part-\d+\.parquet\.tmp$")

# Rows are sorted inside a part so equal ids/steps sit together: run-length and dictionary encodings then
# make the key columns nearly free, and readers filtering on sample_id skip pages via statistics.
SORT_KEYS: dict[str, tuple[str, ...]] = {
    "samples": ("sample_id",),
    "tokens": ("sample_id", "step"),
    "saliency": ("sample_id", "step", "layer"),
    "candidates": ("sample_id", "step", "rank", "layer"),
    "rows": ("sample_id", "step", "layer"),
    "decisions": ("sample_id", "step", "draw"),
}

# Low-cardinality text columns get dictionary encoding; free text (prompts, outputs) does not.
DICT_COLUMNS = ("run_id", "sample_id", "status", "keys", "token_text", "image_id", "image_path", "system",
                "prompt")

#: Parquet settings for size. Measured on real captures (bench/bench_storage.py runs): byte-stream-split on
#: float columns saves ~2.5 bytes per (token, layer) of the saliency table (18.1 vs 21.2 at 32 layers);
#: zstd levels 1..19 differ by < 0.5 byte, so the fast level 3 is kept; step-major vs layer-major order
#: inside a part makes no measurable difference.
PARQUET_OPTIONS = {
    "compression": "zstd",
    "compression_level": 3,
    "write_statistics": True,
}


def part_name(n: int) -> str:
    """File name of part number n."""
    return f"part-{n:05d}.parquet"


def _float_columns(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if pa.types.is_floating(f.type) and f.type != pa.float16()]


def write_part_atomic(table: pa.Table, path: Path) -> None:
    """Write `table` to `path` via a temporary file, fsync and rename: readers never see a partial file.

    A failed write (disk full, read-only folder) removes its temporary file and raises a one-line
    SaliencyLabError; parts committed before stay as they are, so `--resume` continues from them."""
    tmp = path.parent / f".{path.name}.tmp"
    dict_cols = [c for c in DICT_COLUMNS if c in table.schema.names]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            table,
            tmp,
            use_dictionary=dict_cols,
            use_byte_stream_split=_float_columns(table.schema) or False,
            **PARQUET_OPTIONS,
        )
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the folder itself refuses writes; nothing was left there either
        if exc.filename is None:  # pyarrow's errors carry no file name
            exc.filename = str(path)
        raise os_error(exc, "cannot write this part (committed samples are kept; `--resume` continues)") from None


def conform(name: str, table: pa.Table) -> pa.Table:
    """Return `table` with exactly the schema module's schema for `name` (column order, types)."""
    if name not in SCHEMAS or name not in PARTITIONED_TABLES:
        raise ValueError(f"capture produced an unknown table {name!r}")
    schema = SCHEMAS[name]
    if table.schema.equals(schema):
        return table
    missing = set(schema.names) - set(table.schema.names)
    extra = set(table.schema.names) - set(schema.names)
    if missing or extra:
        raise ValueError(f"capture table {name!r}: missing columns {sorted(missing)}, unknown {sorted(extra)}")
    return table.select(schema.names).cast(schema)


def sort_table(name: str, table: pa.Table) -> pa.Table:
    """A table sorted by its sort keys (sample_id, step, layer ...), as parts are written."""
    keys = [(k, "ascending") for k in SORT_KEYS.get(name, ()) if k in table.schema.names]
    if not keys or table.num_rows < 2:
        return table
    return table.take(pc.sort_indices(table, sort_keys=keys))


class ShardLock:
    """An exclusive per-shard lock file holding the owner's host and pid."""

    def __init__(self, run_dir: Path, shard: int):
        self.path = run_dir / ".locks" / f"shard={shard}.lock"
        self.shard = shard
        self._held = False

    def acquire(self) -> None:
        """Take the shard's lock file, or take over a stale one left by a dead process."""
        me: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(2):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale(me["host"])
                continue
            except OSError as exc:
                raise os_error(exc, "cannot take the shard lock; the run folder must be writable") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self._held = True
            return
        raise SaliencyLabError(f"{self.path}: could not take the shard lock; retry")

    def _take_over_if_stale(self, host: str) -> None:
        try:
            owner = json.loads(self.path.read_text())
        except (OSError, ValueError):
            owner = {}
        pid, owner_host = owner.get("pid"), owner.get("host")
        if owner_host == host and isinstance(pid, int) and not _pid_alive(pid):
            self.path.unlink(missing_ok=True)  # left behind by a killed process
            return
        raise SaliencyLabError(
            f"shard {self.shard} of {self.path.parent.parent} is being written by pid {pid} on {owner_host}; "
            f"wait for it, give this process another --shard, or delete {self.path} if that process is gone"
        )

    def release(self) -> None:
        """Remove the lock file if this process holds it."""
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


class ShardWriter:
    """Buffers per-sample tables and writes them as atomic parts of one shard.

    `tables` lists the tables every part holds (an empty part of the right schema is written when no sample
    in the buffer produced rows), so each table's folder exists and globs over it never fail.
    """

    def __init__(self, run_dir: str | Path, shard: int, tables: Iterable[str], samples_per_part: int = 16):
        if samples_per_part < 1:
            raise SaliencyLabError(f"samples_per_part must be >= 1, got {samples_per_part}")
        self.run_dir = Path(run_dir)
        self.shard = int(shard)
        self.tables = ["samples"] + [t for t in dict.fromkeys(tables) if t != "samples"]
        for t in self.tables:
            if t not in PARTITIONED_TABLES:
                raise ValueError(f"unknown partitioned table {t!r}")
        self.samples_per_part = int(samples_per_part)
        self.committed: set[str] = set()
        self._buffer: list[dict[str, pa.Table]] = []
        self._next_part = 0
        self.parts_written = 0

    # -- reading the shard's state -------------------------------------------------------------
    def shard_dir(self, table: str) -> Path:
        """The folder of this shard's parts of `table`."""
        return self.run_dir / table / f"shard={self.shard}"

    def _parts(self, table: str) -> dict[int, Path]:
        folder = self.shard_dir(table)
        if not folder.is_dir():
            return {}
        found = {}
        for p in folder.iterdir():
            m = PART_RE.match(p.name)
            if m:
                found[int(m.group(1))] = p
        return found

    def has_data(self) -> bool:
        """True when this shard already holds any part or temporary file (committed or not)."""
        for t in PARTITIONED_TABLES:
            folder = self.shard_dir(t)
            if folder.is_dir() and any(PART_RE.match(p.name) or TMP_RE.match(p.name) for p in folder.iterdir()):
                return True
        return False

    def recover(self) -> set[str]:
        """Delete orphan and temporary files of a crashed writer; return the committed sample ids."""
        committed_parts = self._parts("samples")
        highest = max(committed_parts, default=-1)
        for t in PARTITIONED_TABLES:
            folder = self.shard_dir(t)
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                m = PART_RE.match(p.name)
                if TMP_RE.match(p.name) or (m and int(m.group(1)) not in committed_parts):
                    try:
                        p.unlink()
                    except OSError as exc:
                        raise os_error(exc, "cannot remove an uncommitted part; the run folder must be "
                                            "writable to resume") from None
                elif m:
                    highest = max(highest, int(m.group(1)))
        ids: set[str] = set()
        for _n, p in sorted(committed_parts.items()):
            try:
                col = pq.read_table(p, columns=["sample_id"]).column("sample_id").to_pylist()
            except (OSError, pa.ArrowException) as exc:
                raise SaliencyLabError(
                    f"{p}: unreadable committed part ({type(exc).__name__}); delete it and --resume again "
                    "(its samples are captured anew, the matching parts of other tables are cleaned up)"
                ) from None
            dup = ids.intersection(col)
            if dup:
                raise SaliencyLabError(
                    f"{p}: sample(s) {sorted(dup)[:3]} already committed in an earlier part; "
                    "the shard was written by two processes at once; capture it again into a new --run-id"
                )
            ids.update(col)
        self.committed = ids
        self._next_part = highest + 1
        return ids

    # -- writing -------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Number of samples buffered and not yet committed."""
        return len(self._buffer)

    def add(self, tables: Mapping[str, pa.Table]) -> None:
        """Buffer one sample's tables ('samples' must hold exactly its one row); flush when the buffer is full."""
        samples = tables.get("samples")
        if samples is None or samples.num_rows != 1:
            raise ValueError("each sample must come with exactly one 'samples' row")
        sid = samples.column("sample_id")[0].as_py()
        if sid in self.committed or any(b["samples"].column("sample_id")[0].as_py() == sid for b in self._buffer):
            raise ValueError(f"sample {sid!r} is already committed or buffered")
        conformed = {name: conform(name, t) for name, t in tables.items()}
        for name in conformed:
            if name not in self.tables:
                self.tables.append(name)
        self._buffer.append(conformed)
        if len(self._buffer) >= self.samples_per_part:
            self.flush()

    def flush(self) -> int:
        """Write the buffered samples as one part of every table; return how many samples were committed."""
        if not self._buffer:
            return 0
        n = self._next_part
        # Every table before 'samples': the samples part is the commit marker.
        for name in self.tables[1:] + ["samples"]:
            pieces = [b[name] for b in self._buffer if name in b]
            table = pa.concat_tables(pieces) if pieces else SCHEMAS[name].empty_table()
            write_part_atomic(sort_table(name, table), self.shard_dir(name) / part_name(n))
        count = len(self._buffer)
        for b in self._buffer:
            self.committed.add(b["samples"].column("sample_id")[0].as_py())
        self._buffer.clear()
        self._next_part = n + 1
        self.parts_written += 1
        return count

    def discard(self) -> int:
        """Drop buffered samples without writing them (they were never committed)."""
        count = len(self._buffer)
        self._buffer.clear()
        return count
