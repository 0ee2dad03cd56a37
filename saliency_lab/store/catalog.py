"""Open saliency runs as DuckDB views and Polars LazyFrames (docs/analysis.md, "SQL over runs").

    cat = open_catalog(["runs/baseline", "runs/sgrs-*"])
    cat.sql("SELECT * FROM token_scores(layers := [2, 3]) LIMIT 5").pl()
    cat.query("binned_curve", {"labels": "chair", "bins": "10"})

Views: runs, samples, tokens, saliency, candidates, rows, decisions, labels (+ a `labelset` column),
label_metrics (flattened from labels/<labelset>.json). A table folder absent from every run gives an empty
view of the right schema. Macros (token_scores, labeled_scores, ...) come from queries/_catalog.sql.
Local runs are read by DuckDB's own Parquet reader; URIs (s3://, gs://, file://, ...) go through
pyarrow's filesystems and are scanned as Arrow datasets.

The connection is sandboxed (docs/failures.md): DuckDB may read only the opened runs' folders
(`enable_external_access` off, `allowed_directories` = the runs), extensions are neither installed nor
loaded, the configuration is locked, and `Catalog.sql` refuses statements that write files or attach
databases (COPY, EXPORT, ATTACH, INSTALL/LOAD). Results leave through the caller (`--out FILE`), never
through SQL.
"""

from __future__ import annotations

import glob as globlib
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from saliency_lab.errors import IncompleteRunWarning, SaliencyLabError
from saliency_lab.store.integrity import file_sha256, run_problems
from saliency_lab.store.runs import Run, open_runs
from saliency_lab.store.schema import PARTITIONED_TABLES, SCHEMAS
from saliency_lab.store.sqlfiles import QueryContext, catalog_sql_path, load_query, set_params
from saliency_lab.threads import configured_threads

# Statements that would write files, reach other databases or fetch code; everything else runs inside the
# sandbox, whose locked settings already stop reads outside the runs.
_REFUSED = {"COPY": "COPY", "EXPORT": "EXPORT DATABASE", "COPY_DATABASE": "COPY FROM DATABASE",
            "ATTACH": "ATTACH", "DETACH": "DETACH", "LOAD": "INSTALL/LOAD", "EXTENSION": "extension statements"}


def _no_half(t: pa.DataType) -> pa.DataType:
    if t == pa.float16():
        return pa.float32()
    if pa.types.is_list(t):
        return pa.list_(_no_half(t.value_type))
    return t


def scan_schema(table: str) -> pa.Schema:
    """The table's schema as scanned: float16 (rows.values) widened to float32, which DuckDB's Arrow
    scanner supports (its Parquet reader widens the same way)."""
    return pa.schema([f.with_type(_no_half(f.type)) for f in SCHEMAS[table]])


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _columns_sql(table: str) -> str:
    return ", ".join(f'"{n}"' for n in SCHEMAS[table].names)


def _flatten(prefix: str, obj: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out.append((prefix, obj))


def _runs_table(refs: Sequence[Run]) -> pa.Table:
    def g(d: Any, *keys: str) -> Any:
        for k in keys:
            d = d.get(k) if isinstance(d, dict) else None
        return d

    rows = {
        "run_id": [r.run_id for r in refs],
        "location": [r.location for r in refs],
        "schema_version": [int(r.info["schema_version"]) for r in refs],
        "created_at": [str(r.info.get("created_at")) if r.info.get("created_at") else None for r in refs],
        "model_id": [str(g(r.info, "model", "id") or g(r.info, "model", "path") or "") or None for r in refs],
        "architecture": [g(r.info, "model", "architecture") for r in refs],
        "n_layers": [r.n_layers for r in refs],
        "n_heads": [g(r.info, "model", "n_heads") for r in refs],
        "strategy": [g(r.info, "decoding", "strategy") for r in refs],
        "heads": [g(r.info, "saliency", "heads") for r in refs],
        "candidates": [g(r.info, "saliency", "candidates") for r in refs],
        "run_json": [json.dumps(r.info, sort_keys=True) for r in refs],
    }
    types = {"schema_version": pa.int32(), "n_layers": pa.int32(), "n_heads": pa.int32(), "candidates": pa.int32()}
    return pa.table({k: pa.array(v, type=types.get(k, pa.string())) for k, v in rows.items()})


def _labels_tables(refs: Sequence[Run]) -> tuple[pa.Table, pa.Table]:
    """All labelsets of all runs (with a labelset column) and their metrics in long form."""
    pieces = []
    metrics: dict[str, list] = {k: [] for k in ("run_id", "labelset", "source", "metric", "value", "value_text")}
    schema = SCHEMAS["labels"].append(pa.field("labelset", pa.string(), nullable=False))
    for r in refs:
        for path in r.label_files():
            name = os.path.basename(path)[: -len(".parquet")]
            try:
                t = pq.read_table(path, filesystem=r.fs)
            except (pa.ArrowInvalid, OSError) as exc:
                raise SaliencyLabError(f"{path}: unreadable labels file ({exc}); run `label` again") from None
            missing = set(SCHEMAS["labels"].names) - set(t.schema.names)
            if missing:
                raise SaliencyLabError(f"{path}: not a labels file (missing {sorted(missing)}); run `label` again")
            t = t.select(SCHEMAS["labels"].names).cast(SCHEMAS["labels"])
            pieces.append(t.append_column("labelset", pa.array([name] * t.num_rows, pa.string())))
            meta_path = path[: -len(".parquet")] + ".json"
            try:
                doc = json.loads(r.read_text(meta_path))
            except (OSError, ValueError):
                continue  # metrics are optional
            _check_label_pair(r, path, meta_path, doc)
            flat: list[tuple[str, Any]] = []
            _flatten("", doc.get("metrics") or {}, flat)
            for key, val in flat:
                metrics["run_id"].append(r.run_id)
                metrics["labelset"].append(name)
                metrics["source"].append(doc.get("source"))
                metrics["metric"].append(key)
                num = isinstance(val, (int, float)) and not isinstance(val, bool)
                metrics["value"].append(float(val) if num else None)
                metrics["value_text"].append(None if num else json.dumps(val))
    labels = pa.concat_tables([p.cast(schema) for p in pieces]) if pieces else schema.empty_table()
    mtypes = {"value": pa.float64()}
    mt = pa.table({k: pa.array(v, type=mtypes.get(k, pa.string())) for k, v in metrics.items()})
    return labels, mt


def _check_label_pair(r: Run, parquet: str, meta: str, doc: Any) -> None:
    """labels/<name>.json pins the sha256 of the Parquet file written with it: a `label` killed between the
    two renames (new labels, old metrics, or the reverse) is refused instead of read as one label set."""
    want = doc.get("labels_sha256") if isinstance(doc, dict) else None
    if not want:
        return  # written before the hash was recorded
    try:
        if r.fs is None:
            data = Path(parquet).read_bytes()
        else:
            with r.fs.open_input_stream(parquet) as fh:
                data = fh.read()
    except OSError as exc:
        raise SaliencyLabError(f"{parquet}: unreadable labels file ({exc}); run `label` again") from None
    if file_sha256(data) != want:
        raise SaliencyLabError(f"{parquet} and {os.path.basename(meta)} come from different `label` runs (one "
                               "was interrupted between its two writes); run the same `label` command again")


def sql_error(exc: Exception) -> SaliencyLabError:
    """A DuckDB error as one line; a sandbox refusal says what the sandbox allows."""
    line = " ".join(str(exc).splitlines()[0].split()) if str(exc) else type(exc).__name__
    if "disabled by configuration" in line or "configuration has been locked" in line:
        line += " (the sandbox reads only the opened runs' folders and keeps its settings locked)"
    return SaliencyLabError(f"SQL error: {line}")


# (run folder, problems) already reported in this process: a command that opens the same runs several times
# (report, analyze) warns once.
_WARNED: set[tuple[str, str]] = set()


def _warn_incomplete(refs: Sequence[Run]) -> None:
    for r in refs:
        if r.fs is not None:
            continue
        shards = r.info.get("shards")
        problems = run_problems(r.location, int(shards) if isinstance(shards, int) else None)
        key = (os.path.realpath(r.location), "; ".join(problems))
        if problems and key not in _WARNED:
            _WARNED.add(key)
            warnings.warn(f"{r.location}: incomplete run: {'; '.join(problems)}; results cover only the committed "
                          "samples (finish it with `capture --resume`)", IncompleteRunWarning, stacklevel=3)


class Catalog:
    """A sandboxed DuckDB connection with the views and macros over a set of runs."""

    def __init__(self, runs: Iterable[str | Path] | str | Path, threads: int | None = None):
        self.runs = open_runs(runs)
        _warn_incomplete(self.runs)
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET enable_progress_bar = false")
        threads = threads or configured_threads()  # --threads of the running command, if any
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self._sandbox()
        self._keep: list[Any] = []  # Arrow objects the views scan; must outlive the connection's use
        try:
            self._create_views()
        except duckdb.Error as exc:  # a damaged part file (truncated, not Parquet) of one of the runs
            line = " ".join(str(exc).splitlines()[0].split())
            raise SaliencyLabError(f"cannot open the runs: {line}; restore that file or capture the run "
                                   "again") from None
        self.con.execute(catalog_sql_path().read_text(encoding="utf-8"))

    def _sandbox(self) -> None:
        """Reads only inside the runs' folders, no extension installs or loads, settings locked."""
        dirs: list[str] = []
        for r in self.runs:
            if r.fs is None:
                for d in {os.path.abspath(r.location), os.path.realpath(r.location)}:
                    dirs.append(d.rstrip(os.sep) + os.sep)
        self.con.execute("SET allowed_directories = ?", [dirs])
        for setting in ("autoinstall_known_extensions", "autoload_known_extensions", "enable_external_access"):
            self.con.execute(f"SET {setting} = false")
        self.con.execute("SET lock_configuration = true")

    # -- setup ---------------------------------------------------------------------------------
    def _register(self, name: str, obj: Any) -> None:
        self._keep.append(obj)
        self.con.register(name, obj)

    def _create_views(self) -> None:
        self._register("_runs", _runs_table(self.runs))
        if any(r.n_layers is None for r in self.runs):
            runs_sql = ("SELECT r.* REPLACE (coalesce(r.n_layers, m.n)::INTEGER AS n_layers) FROM _runs r "
                        "LEFT JOIN (SELECT run_id, max(layer) + 1 AS n FROM saliency GROUP BY run_id) m "
                        "USING (run_id)")
        else:
            runs_sql = "SELECT * FROM _runs"
        for table in PARTITIONED_TABLES:
            self.con.execute(f"CREATE OR REPLACE VIEW {table} AS {self._table_sql(table)}")
        self.con.execute(f"CREATE OR REPLACE VIEW runs AS {runs_sql}")
        labels, metrics = _labels_tables(self.runs)
        self._register("_labels", labels)
        self._register("_label_metrics", metrics)
        self.con.execute("CREATE OR REPLACE VIEW labels AS SELECT * FROM _labels")
        self.con.execute("CREATE OR REPLACE VIEW label_metrics AS SELECT * FROM _label_metrics")

    def _table_sql(self, table: str) -> str:
        cols = _columns_sql(table)
        local = [os.path.join(globlib.escape(r.location), table, "shard=*", "part-*.parquet")
                 for r in self.runs if r.fs is None and r.files(table)]
        parts = []
        if local:
            files = "[" + ", ".join(_sql_str(p) for p in local) + "]"
            parts.append(f"SELECT * FROM read_parquet({files}, hive_partitioning = false, union_by_name = true)")
        remote = [pads.dataset(f, filesystem=r.fs, format="parquet", schema=scan_schema(table))
                  for r in self.runs if r.fs is not None for f in [r.files(table)] if f]
        if remote:
            name = f"_ds_{table}"
            self._register(name, remote[0] if len(remote) == 1 else pads.dataset(remote))
            parts.append(f"SELECT * FROM {name}")
        # The typed empty table is always part of the union: a column added by a later schema version is NULL
        # in the rows of older runs (and the view has every column even when no run has the table).
        name = f"_empty_{table}"
        self._register(name, scan_schema(table).empty_table())
        parts.append(f"SELECT * FROM {name}")
        return f"SELECT {cols} FROM (" + " UNION ALL BY NAME ".join(parts) + ")"

    # -- querying ------------------------------------------------------------------------------
    def sql(self, query: str, params: dict[str, Any] | None = None) -> duckdb.DuckDBPyRelation:
        """Run SQL (one or more statements; the last one's result is returned) with optional variables
        (read in SQL as getvariable('name'))."""
        for k, v in (params or {}).items():
            set_params(self.con, {k: v})
        try:
            for st in self.con.extract_statements(query):
                what = _REFUSED.get(st.type.name)
                if what:
                    raise SaliencyLabError(f"SQL: {what} is not allowed here (runs are opened read-only and "
                                           "nothing outside them is reachable); select the rows and pass "
                                           "--out FILE (.csv, .parquet or .json) to write them")
            return self.con.sql(query)
        except duckdb.Error as exc:
            raise sql_error(exc) from None

    def context(self) -> QueryContext:
        """The opened runs' layer counts and label set names, against which named-query bounds are checked."""
        n_layers = {r.run_id: n for r in self.runs if (n := r.n_layers) is not None}
        if len(n_layers) < len(self.runs):  # run.json without n_layers: the saliency table says
            for run_id, n in self.con.execute("SELECT run_id, n_layers FROM runs").fetchall():
                if n is not None:
                    n_layers[run_id] = int(n)
        # From the files, not the rows: an empty label set (CHAIR found no mention) is still a label set.
        names = {name for r in self.runs for name in r.labelsets()}
        return QueryContext(n_layers, names)

    def query(self, name: str, params: dict[str, str] | None = None) -> pl.DataFrame:
        """Run the named query queries/<name>.sql with `params` (strings, as from --param k=v), after checking
        them against the bounds its header declares."""
        q = load_query(name)
        set_params(self.con, q.bind(params or {}, self.context()))
        try:
            return self.con.sql(q.sql).pl()
        except duckdb.Error as exc:
            raise SaliencyLabError(f"query {name}: {str(exc).splitlines()[0]}") from None

    def close(self) -> None:
        """Close the DuckDB connection."""
        self.con.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_catalog(runs: Iterable[str | Path] | str | Path, threads: int | None = None) -> Catalog:
    """Open runs (folders, URIs or globs) as a Catalog."""
    return Catalog(runs, threads=threads)


def _frame(table: pa.Table) -> pl.DataFrame:
    # pl.from_arrow is typed DataFrame | Series; a Table always gives a DataFrame
    return cast(pl.DataFrame, pl.from_arrow(table))


def scan_tables(runs: Iterable[str | Path] | str | Path) -> dict[str, pl.LazyFrame]:
    """Polars LazyFrames over the same files as the DuckDB views: the partitioned tables, `labels`
    (with a labelset column) and `runs`. Absent tables are empty frames of the right schema."""
    refs = open_runs(runs)
    out: dict[str, pl.LazyFrame] = {}
    for table in PARTITIONED_TABLES:
        frames = []
        for r in refs:
            files = r.files(table)
            if not files:
                continue
            if r.fs is not None:
                frames.append(pl.scan_pyarrow_dataset(
                    pads.dataset(files, filesystem=r.fs, format="parquet", schema=SCHEMAS[table])))
            else:
                frames.append(pl.scan_parquet(files, hive_partitioning=False,
                                              schema=_frame(SCHEMAS[table].empty_table()).schema))
        out[table] = (pl.concat(frames, how="vertical") if frames
                      else _frame(SCHEMAS[table].empty_table()).lazy())
    labels, metrics = _labels_tables(refs)
    out["labels"] = _frame(labels).lazy()
    out["label_metrics"] = _frame(metrics).lazy()
    out["runs"] = _frame(_runs_table(refs)).lazy()
    return out
