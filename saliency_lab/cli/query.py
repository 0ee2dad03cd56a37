"""`saliency-lab sql R [R2 ...] "SELECT ..."` and `saliency-lab query NAME R [R2 ...] --param k=v`."""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from saliency_lab.errors import SaliencyLabError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `sql` (ad-hoc SQL over runs) and `query` (the named queries of queries/)."""
    s = sub.add_parser("sql", help="ad-hoc SQL over one or more runs (views: runs, samples, tokens, saliency, "
                                   "candidates, rows, decisions, labels, label_metrics; macros: token_scores, ...)")
    s.add_argument("args", nargs="+", metavar="R... SQL", help="run folders or globs, then the SQL text")
    _common(s)
    s.set_defaults(func=_sql)

    q = sub.add_parser("query", help="run a named query from queries/ (`saliency-lab query list` lists them)")
    q.add_argument("name", help="query name (file queries/<name>.sql), or `list`")
    q.add_argument("runs", nargs="*", metavar="R", help="run folders or globs")
    _common(q)
    q.set_defaults(func=_query)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="parameter (repeatable), e.g. --param layers=2,3 --param bins=10")
    p.add_argument("--out", help="write the result to FILE (.csv, .parquet or .json) instead of printing it; "
                                 "the only way to write: SQL itself cannot (COPY, ATTACH, INSTALL are refused)")
    p.add_argument("--max-rows", type=int, default=50, help="rows printed (default 50)")
    p.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")


def parse_params(items: list[str]) -> dict[str, str]:
    """`--param name=value` items as {name: value} (values stay text); SaliencyLabError without `=`."""
    out = {}
    for item in items:
        if "=" not in item:
            raise SaliencyLabError(f"--param {item!r}: write it as name=value, e.g. --param bins=10")
        k, v = item.split("=", 1)
        out[k.strip()] = v
    return out


def emit(df: pl.DataFrame, out: str | None, max_rows: int) -> None:
    """Print `df`, or write it to a .csv / .parquet / .json file."""
    if not out:
        with pl.Config(tbl_rows=max_rows, tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=60):
            print(df)
        return
    path = Path(out)
    ext = path.suffix.lower()
    if ext not in (".csv", ".parquet", ".json"):
        raise SaliencyLabError(f"--out {out}: use a .csv, .parquet or .json file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".parquet":
        df.write_parquet(path)
    elif ext == ".json":
        df.write_json(path)
    else:
        nested = [c for c, t in df.schema.items() if isinstance(t, (pl.List, pl.Array, pl.Struct))]
        flat = df.with_columns([pl.col(c).map_elements(str, return_dtype=pl.String) for c in nested])
        flat.write_csv(path)
    print(f"wrote {df.height} rows to {path}")


def check_out(out: str | None, locations: list[str]) -> None:
    """--out must not land inside an opened run: a run's files are only ever written by capture/label."""
    if not out:
        return
    target = Path(out).resolve()
    for loc in locations:
        if "://" in loc:
            continue
        run = Path(loc).resolve()
        if target == run or run in target.parents:
            raise SaliencyLabError(f"--out {out}: inside the run {loc}; write results outside run folders")


def _sql(args: argparse.Namespace) -> int:
    import duckdb

    from saliency_lab.store.catalog import open_catalog, sql_error

    if len(args.args) < 2:
        raise SaliencyLabError('sql: give one or more runs and then the SQL, e.g. sql runs/r1 "SELECT 1"')
    *runs, query = args.args
    with open_catalog(runs, threads=args.threads) as cat:
        check_out(args.out, [r.location for r in cat.runs])
        try:
            df = cat.sql(query, parse_params(args.param)).pl()
        except duckdb.Error as exc:  # raised while the result is fetched (e.g. a damaged part file)
            raise sql_error(exc) from None
    emit(df, args.out, args.max_rows)
    return 0


def _query(args: argparse.Namespace) -> int:
    from saliency_lab.store.catalog import open_catalog
    from saliency_lab.store.sqlfiles import list_queries

    if args.name == "list":
        for q in list_queries():
            print(q.usage())
            print()
        return 0
    if not args.runs:
        raise SaliencyLabError(f"query {args.name}: give one or more run folders after the query name")
    with open_catalog(args.runs, threads=args.threads) as cat:
        check_out(args.out, [r.location for r in cat.runs])
        df = cat.query(args.name, parse_params(args.param))
    emit(df, args.out, args.max_rows)
    return 0
