"""Named SQL queries in queries/*.sql: locating them, parsing their header, binding parameters.

A query file starts with a header of comment lines:

    -- name: binned_curve
    -- purpose: hallucination rate per score bin (Fig. 8b) with Wilson 95% intervals
    -- param labels VARCHAR = chair                 the labelset
    -- param layers INTEGER[] = NULL                target layers, comma separated; empty = upper half
    -- param score VARCHAR = out_mean {out_mean|prev|attn_out|lookback_ratio}  the measure

Parameters reach the SQL as DuckDB variables: `getvariable('labels')`. Types: VARCHAR, INTEGER, DOUBLE,
BOOLEAN, INTEGER[] (an empty list is NULL), SCORES (score names of saliency_lab.store.scores: a name, a comma
list or `all`; reaches the SQL as a VARCHAR[]). A NULL default means "not set". After the default, `{a|b}`
restricts the values, `{@labelset}` requires the name of a label set present in the opened runs (checked when
the value is given), and `[lo..hi]` bounds a number (each element of a list); either end may be empty
(unbounded) and `hi` may be `n_layers-1`, the last layer of the smallest opened model. Bounds are checked
before the query runs, so `bins=0` or `layers=99` is a one-line error instead of an empty or runaway result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from saliency_lab.errors import SaliencyLabError
from saliency_lab.resources import shipped_dir
from saliency_lab.store.scores import parse_scores

_PARAM_RE = re.compile(
    r"^--\s*param\s+(?P<name>\w+)\s+(?P<type>VARCHAR|INTEGER\[\]|INTEGER|DOUBLE|BOOLEAN|SCORES)\s*=\s*"
    r"(?P<default>[^\s{\[]*)\s*(?:\{(?P<choices>[^}]*)\})?\s*"
    r"(?:\[(?P<lo>[^\]]*?)\.\.(?P<hi>[^\]]*)\])?\s*(?P<doc>.*)$"
)
#: The `{@labelset}` choice: the value must name a label set of the opened runs.
LABELSET_CHOICE = "@labelset"
#: The symbolic upper bound: the last layer of the smallest opened model.
LAST_LAYER = "n_layers-1"
_NAME_RE = re.compile(r"^[A-Za-z][\w-]*$")


def queries_dir() -> Path:
    """The named queries: shipped inside the package by a wheel, else queries/ at the repository root."""
    folder = shipped_dir("queries", "_catalog.sql")
    if not (folder / "_catalog.sql").is_file():
        raise SaliencyLabError(f"cannot find the queries/ folder ({folder}); reinstall saliency-lab")
    return folder


def catalog_sql_path() -> Path:
    """The catalog's macros (queries/_catalog.sql)."""
    return queries_dir() / "_catalog.sql"


@dataclass
class QueryContext:
    """What a parameter's bounds are checked against: the opened runs' layer counts and label sets."""

    n_layers: dict[str, int] = field(default_factory=dict)  # run_id -> layers (runs that record it)
    labelsets: set[str] = field(default_factory=set)


@dataclass
class Param:
    """One parameter of a named query, from its `-- param` header line."""

    name: str
    type: str
    default: str
    choices: list[str] = field(default_factory=list)
    doc: str = ""
    lo: str = ""  # declared bounds, as written in the header ("" = unbounded)
    hi: str = ""

    def check(self, value: Any, ctx: QueryContext, given: bool, query: str) -> None:
        """Refuse a value outside the declared bounds or naming no label set of the runs (one line)."""
        if value is None:
            return
        if LABELSET_CHOICE in self.choices and given and value not in ctx.labelsets:
            have = ", ".join(sorted(ctx.labelsets)) or "none (run `saliency-lab label ...` first)"
            raise SaliencyLabError(f"query {query}: --param {self.name}={value}: no label set {value!r} in the "
                                   f"runs; label sets there: {have}")
        if not (self.lo or self.hi) or self.type not in ("INTEGER", "DOUBLE", "INTEGER[]"):
            return
        lo = float(self.lo) if self.lo else None
        hi, why = self._upper(ctx)
        shown = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        for v in value if isinstance(value, list) else [value]:
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                rng = f"{_num(lo) if lo is not None else ''}..{_num(hi) if hi is not None else ''}"
                raise SaliencyLabError(f"query {query}: --param {self.name}={shown}: {v} is outside the allowed "
                                       f"range {rng}{why}; pass a value in that range")

    def _upper(self, ctx: QueryContext) -> tuple[float | None, str]:
        if self.hi != LAST_LAYER:
            return (float(self.hi) if self.hi else None), ""
        if not ctx.n_layers:
            return None, ""
        run, n = min(ctx.n_layers.items(), key=lambda kv: kv[1])
        return float(n - 1), f" (run {run!r} has {n} layers)"

    def convert(self, raw: str) -> Any:
        """The typed value of a --param string (NULL or empty = not set); bad values are one-line errors."""
        raw = raw.strip()
        if raw.upper() == "NULL":
            return None
        if self.type == "SCORES":
            return parse_scores(raw, where=f"--param {self.name}={raw}")
        try:
            if self.type == "INTEGER[]":
                vals = [int(x) for x in raw.replace(" ", "").split(",") if x != ""]
                return vals or None
            if raw == "":
                return None
            if self.type == "INTEGER":
                return int(raw)
            if self.type == "DOUBLE":
                return float(raw)
            if self.type == "BOOLEAN":
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(raw)
                return raw.lower() in ("true", "1", "yes")
        except ValueError:
            raise SaliencyLabError(f"--param {self.name}={raw}: expected {self.type}") from None
        if self.choices and LABELSET_CHOICE not in self.choices and raw not in self.choices:
            raise SaliencyLabError(f"--param {self.name}={raw}: choose one of {', '.join(self.choices)}")
        return raw


@dataclass
class NamedQuery:
    """A named query file: its header (purpose, parameters) and SQL."""

    name: str
    path: Path
    purpose: str
    params: dict[str, Param]
    sql: str

    def bind(self, given: dict[str, Any], ctx: QueryContext | None = None) -> dict[str, tuple[Any, str]]:
        """Values for every parameter (given or default), typed and checked against the declared bounds
        (`ctx`: the opened runs; None skips the checks that need them); unknown names are an error."""
        unknown = set(given) - set(self.params)
        if unknown:
            known = ", ".join(self.params) or "none"
            raise SaliencyLabError(f"query {self.name}: unknown parameter(s) {sorted(unknown)}; known: {known}")
        out = {}
        for name, p in self.params.items():
            raw = given.get(name, p.default)
            if p.type == "SCORES" and not isinstance(raw, str):
                raw = ",".join(raw)
            value = p.convert(raw) if isinstance(raw, str) else raw
            p.check(value, ctx or QueryContext(), name in given and ctx is not None, self.name)
            out[name] = (value, "VARCHAR[]" if p.type == "SCORES" else p.type)
        return out

    def usage(self) -> str:
        """The query's help text: purpose and one line per parameter."""
        lines = [f"{self.name}: {self.purpose}"]
        for p in self.params.values():
            choices = f" {{{'|'.join(p.choices)}}}" if p.choices else ""
            bounds = f" [{p.lo}..{p.hi}]" if p.lo or p.hi else ""
            lines.append(f"  --param {p.name}={p.default}{choices}{bounds}  ({p.type}) {p.doc}".rstrip())
        return "\n".join(lines)


def parse_query(path: Path) -> NamedQuery:
    """Read a query file and parse its header."""
    text = path.read_text(encoding="utf-8")
    purpose, params = "", {}
    for line in text.splitlines():
        s = line.strip()
        if not s.startswith("--"):
            if s:
                break
            continue
        m = _PARAM_RE.match(s)
        if m:
            choices = [c.strip() for c in (m.group("choices") or "").split("|") if c.strip()]
            lo, hi = (m.group("lo") or "").strip(), (m.group("hi") or "").strip()
            for end in (lo, hi):
                if end and end != LAST_LAYER:
                    float(end)  # a malformed bound in a shipped query is a bug: fail loudly
            params[m.group("name")] = Param(m.group("name"), m.group("type"), m.group("default"), choices,
                                            m.group("doc").strip(), lo, hi)
        elif s.lstrip("- ").startswith("purpose:"):
            purpose = s.split("purpose:", 1)[1].strip()
    return NamedQuery(path.stem, path, purpose, params, text)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def list_queries() -> list[NamedQuery]:
    """Every named query (files starting with _ are not queries)."""
    return [parse_query(p) for p in sorted(queries_dir().glob("*.sql")) if not p.name.startswith("_")]


def load_query(name: str) -> NamedQuery:
    """The named query `name`; an unknown name lists the available ones."""
    if not _NAME_RE.match(name):
        raise SaliencyLabError(f"query name {name!r}: use a name from queries/ (letters, digits, _ and -)")
    path = queries_dir() / f"{name}.sql"
    if not path.is_file():
        names = ", ".join(q.name for q in list_queries())
        raise SaliencyLabError(f"no named query {name!r}; available: {names}")
    return parse_query(path)


def auto_type(raw: str) -> tuple[Any, str]:
    """Type a free --param value for ad-hoc SQL: integer, float, integer list (with a comma) or text."""
    s = raw.strip()
    for conv, typ in ((int, "INTEGER"), (float, "DOUBLE")):
        try:
            return conv(s), typ
        except ValueError:
            pass
    if "," in s:
        try:
            return [int(x) for x in s.split(",") if x.strip()], "INTEGER[]"
        except ValueError:
            pass
    return s, "VARCHAR"


def set_params(con: duckdb.DuckDBPyConnection, values: dict[str, Any]) -> None:
    """SET VARIABLE for each value; values may be (value, type) pairs or plain (auto-typed if str)."""
    for name, v in values.items():
        if not re.match(r"^\w+$", name):
            raise SaliencyLabError(f"--param {name}: parameter names are letters, digits and _")
        value, typ = v if isinstance(v, tuple) else (auto_type(v) if isinstance(v, str) else (v, None))
        if value is None:
            con.execute(f"SET VARIABLE \"{name}\" = NULL::{typ or 'VARCHAR'}")
        elif typ:
            con.execute(f"SET VARIABLE \"{name}\" = ?::{typ}", [value])
        else:
            con.execute(f"SET VARIABLE \"{name}\" = ?", [value])
