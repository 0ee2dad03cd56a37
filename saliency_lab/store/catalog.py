"""Open saliency runs as DuckDB views and Polars LazyFrames (SPEC section 4, "Derived quantities").

    cat = open_catalog(["runs/baseline", "runs/sgrs-*"])
    cat.sql("SELECT * FROM token_scores(layers := [2, 3]) LIMIT 5").pl()
    cat.query("binned_curve", {"labels": "chair", "bins": "10"})

Views: runs, samples, tokens, saliency, candidates, rows, decisions, labels (+ a `labelset` column),
label_metrics (flattened from labels/<labelset>.json). A table folder absent from every run gives an empty
view of the right schema. Macros (token_scores, labeled_scores, ...) come from queries/_catalog.sql.
Local runs are read by DuckDB's own Parquet reader; URIs (s3://, gs://, file://, ...) go through
pyarrow's filesystems and are scanned as Arrow datasets.
"""

from __future__ import annotations

import glob as globlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.schema import PARTITIONED_TABLES, SCHEMAS, check_schema_version
from saliency_lab.store.sqlfiles import catalog_sql_path, load_query, set_params
from saliency_lab.threads import configured_threads

_GLOB_CHARS = set("*?[")


@dataclass
class RunRef:
    """One opened run: where it lives and what its run.json says."""

    location: str  # local folder or URI, as given (globs expanded)
    info: dict[str, Any]
    fs: pafs.FileSystem | None = None  # None = local path read natively
    base: str = ""  # path inside `fs`

    @property
    def run_id(self) -> str:
        return str(self.info.get("run_id") or Path(self.location.rstrip("/")).name)

    @property
    def n_layers(self) -> int | None:
        n = (self.info.get("model") or {}).get("n_layers")
        return int(n) if n is not None else None

    def files(self, table: str) -> list[str]:
        """Committed part files of `table` (paths for local runs, URIs' inner paths for remote ones)."""
        if self.fs is None:
            pattern = os.path.join(globlib.escape(self.location), table, "shard=*", "part-*.parquet")
            return sorted(globlib.glob(pattern))
        sel = pafs.FileSelector(f"{self.base}/{table}", allow_not_found=True, recursive=True)
        return sorted(
            i.path for i in self.fs.get_file_info(sel)
            if i.type == pafs.FileType.File and i.base_name.startswith("part-") and i.path.endswith(".parquet")
            and "/shard=" in i.path
        )

    def label_files(self) -> list[str]:
        if self.fs is None:
            return sorted(globlib.glob(os.path.join(globlib.escape(self.location), "labels", "*.parquet")))
        sel = pafs.FileSelector(f"{self.base}/labels", allow_not_found=True)
        return sorted(i.path for i in self.fs.get_file_info(sel)
                      if i.type == pafs.FileType.File and i.path.endswith(".parquet")
                      and not i.base_name.startswith("."))

    def read_text(self, path: str) -> str:
        if self.fs is None:
            return Path(path).read_text(encoding="utf-8")
        with self.fs.open_input_stream(path) as fh:
            return fh.read().decode("utf-8")

    def join(self, *parts: str) -> str:
        return os.path.join(self.location, *parts) if self.fs is None else "/".join([self.base, *parts])


def _is_uri(s: str) -> bool:
    return "://" in s


def _load_run(location: str) -> RunRef:
    fs, base = None, ""
    if _is_uri(location):
        try:
            fs, base = pafs.FileSystem.from_uri(location)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise SaliencyLabError(f"{location}: cannot open this URI with pyarrow ({exc}); "
                                   "use a local path or a filesystem pyarrow supports") from None
        base = base.rstrip("/")
    ref = RunRef(location=location, info={}, fs=fs, base=base)
    path = ref.join("run.json")
    try:
        text = ref.read_text(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise SaliencyLabError(
            f"{location}: not a run (no run.json); pass the run folder, the one holding run.json") from None
    except OSError as exc:
        raise SaliencyLabError(f"{path}: unreadable ({exc})") from None
    try:
        info = json.loads(text)
    except ValueError as exc:
        raise SaliencyLabError(f"{path}: not valid JSON ({exc}); restore it from the capture") from None
    if not isinstance(info, dict):
        raise SaliencyLabError(f"{path}: not a JSON object; restore it from the capture")
    check_schema_version(info.get("schema_version"), path)
    ref.info = info
    return ref


def resolve_runs(runs: Iterable[str | Path] | str | Path) -> list[RunRef]:
    """Expand globs and open every run; clear errors for paths that are not runs or duplicate run ids."""
    if isinstance(runs, (str, Path)):
        runs = [runs]
    locations: list[str] = []
    for item in runs:
        s = str(item)
        if not _is_uri(s) and _GLOB_CHARS & set(s):
            matches = [m for m in sorted(globlib.glob(s)) if os.path.isfile(os.path.join(m, "run.json"))]
            if not matches:
                raise SaliencyLabError(f"{s}: the pattern matches no run folder (none holds a run.json)")
            locations += matches
        else:
            locations.append(s)
    if not locations:
        raise SaliencyLabError("no runs given; pass one or more run folders (the ones holding run.json)")
    refs = [_load_run(loc) for loc in locations]
    seen: dict[str, str] = {}
    for r in refs:
        if r.run_id in seen:
            raise SaliencyLabError(f"{r.location}: run_id {r.run_id!r} is also the id of {seen[r.run_id]}; "
                                   "open runs with distinct run ids")
        seen[r.run_id] = r.location
    return refs


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


def _runs_table(refs: Sequence[RunRef]) -> pa.Table:
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


def _labels_tables(refs: Sequence[RunRef]) -> tuple[pa.Table, pa.Table]:
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


class Catalog:
    """A DuckDB connection with the views and macros over a set of runs."""

    def __init__(self, runs: Iterable[str | Path] | str | Path, threads: int | None = None):
        self.runs = resolve_runs(runs)
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET enable_progress_bar = false")
        threads = threads or configured_threads()  # --threads of the running command, if any
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self._keep: list[Any] = []  # Arrow objects the views scan; must outlive the connection's use
        self._create_views()
        self.con.execute(catalog_sql_path().read_text(encoding="utf-8"))

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
            parts.append(f"SELECT {cols} FROM read_parquet({files}, hive_partitioning = false, "
                         "union_by_name = true)")
        remote = [pads.dataset(f, filesystem=r.fs, format="parquet", schema=scan_schema(table))
                  for r in self.runs if r.fs is not None for f in [r.files(table)] if f]
        if remote:
            name = f"_ds_{table}"
            self._register(name, remote[0] if len(remote) == 1 else pads.dataset(remote))
            parts.append(f"SELECT {cols} FROM {name}")
        if not parts:
            name = f"_empty_{table}"
            self._register(name, scan_schema(table).empty_table())
            parts.append(f"SELECT {cols} FROM {name}")
        return " UNION ALL BY NAME ".join(parts)

    # -- querying ------------------------------------------------------------------------------
    def sql(self, query: str, params: dict[str, Any] | None = None) -> duckdb.DuckDBPyRelation:
        """Run SQL (one or more statements; the last one's result is returned) with optional variables
        (read in SQL as getvariable('name'))."""
        for k, v in (params or {}).items():
            set_params(self.con, {k: v})
        try:
            return self.con.sql(query)
        except duckdb.Error as exc:
            raise SaliencyLabError(f"SQL error: {str(exc).splitlines()[0]}") from None

    def query(self, name: str, params: dict[str, str] | None = None) -> pl.DataFrame:
        """Run the named query queries/<name>.sql with `params` (strings, as from --param k=v)."""
        q = load_query(name)
        set_params(self.con, q.bind(params or {}))
        try:
            return self.con.sql(q.sql).pl()
        except duckdb.Error as exc:
            raise SaliencyLabError(f"query {name}: {str(exc).splitlines()[0]}") from None

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_catalog(runs: Iterable[str | Path] | str | Path, threads: int | None = None) -> Catalog:
    return Catalog(runs, threads=threads)


def scan_tables(runs: Iterable[str | Path] | str | Path) -> dict[str, pl.LazyFrame]:
    """Polars LazyFrames over the same files as the DuckDB views: the partitioned tables, `labels`
    (with a labelset column) and `runs`. Absent tables are empty frames of the right schema."""
    refs = resolve_runs(runs)
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
                                              schema=pl.from_arrow(SCHEMAS[table].empty_table()).schema))
        out[table] = (pl.concat(frames, how="vertical") if frames
                      else pl.from_arrow(SCHEMAS[table].empty_table()).lazy())
    labels, metrics = _labels_tables(refs)
    out["labels"] = pl.from_arrow(labels).lazy()
    out["label_metrics"] = pl.from_arrow(metrics).lazy()
    out["runs"] = pl.from_arrow(_runs_table(refs)).lazy()
    return out
