"""Named SQL queries in queries/*.sql: locating them, parsing their header, binding parameters.

A query file starts with a header of comment lines:

    -- name: binned_curve
    -- purpose: hallucination rate per score bin (Fig. 8b) with Wilson 95% intervals
    -- param labels VARCHAR = chair                 the labelset
    -- param layers INTEGER[] = NULL                target layers, comma separated; empty = upper half
    -- param score VARCHAR = out_mean {out_mean|prev|attn_out|lookback_ratio}  the measure

Parameters reach the SQL as DuckDB variables: `getvariable('labels')`. Types: VARCHAR, INTEGER, DOUBLE,
BOOLEAN, INTEGER[] (an empty list is NULL), SCORES (score names of saliency_lab.store.scores: a name, a comma
list or `all`; reaches the SQL as a VARCHAR[]). A NULL default means "not set".. `{a|b}` after the default restricts the values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.scores import parse_scores

_PARAM_RE = re.compile(
    r"^--\s*param\s+(?P<name>\w+)\s+(?P<type>VARCHAR|INTEGER\[\]|INTEGER|DOUBLE|BOOLEAN|SCORES)\s*=\s*"
    r"(?P<default>[^\s{]*)\s*(?:\{(?P<choices>[^}]*)\})?\s*(?P<doc>.*)$"
)
_NAME_RE = re.compile(r"^[A-Za-z][\w-]*$")


def queries_dir() -> Path:
    """queries/ at the repository root (editable install), else one shipped inside the package."""
    pkg = Path(__file__).resolve().parents[1]
    for cand in (pkg.parent / "queries", pkg / "queries"):
        if (cand / "_catalog.sql").is_file():
            return cand
    raise SaliencyLabError(f"cannot find the queries/ folder next to {pkg}; reinstall saliency-lab")


def catalog_sql_path() -> Path:
    return queries_dir() / "_catalog.sql"


@dataclass
class Param:
    name: str
    type: str
    default: str
    choices: list[str] = field(default_factory=list)
    doc: str = ""

    def convert(self, raw: str) -> Any:
        raw = raw.strip()
        if raw.upper() == "NULL":
            return None
        if self.type == "SCORES":
            return parse_scores(raw, where=f"--param {self.name}")
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
        if self.choices and raw not in self.choices:
            raise SaliencyLabError(f"--param {self.name}={raw}: choose one of {', '.join(self.choices)}")
        return raw


@dataclass
class NamedQuery:
    name: str
    path: Path
    purpose: str
    params: dict[str, Param]
    sql: str

    def bind(self, given: dict[str, Any]) -> dict[str, tuple[Any, str]]:
        """Values for every parameter (given or default), typed; unknown names are an error."""
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
            out[name] = (value, "VARCHAR[]" if p.type == "SCORES" else p.type)
        return out

    def usage(self) -> str:
        lines = [f"{self.name}: {self.purpose}"]
        for p in self.params.values():
            choices = f" {{{'|'.join(p.choices)}}}" if p.choices else ""
            lines.append(f"  --param {p.name}={p.default}{choices}  ({p.type}) {p.doc}".rstrip())
        return "\n".join(lines)


def parse_query(path: Path) -> NamedQuery:
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
            params[m.group("name")] = Param(m.group("name"), m.group("type"), m.group("default"), choices,
                                            m.group("doc").strip())
        elif s.lstrip("- ").startswith("purpose:"):
            purpose = s.split("purpose:", 1)[1].strip()
    return NamedQuery(path.stem, path, purpose, params, text)


def list_queries() -> list[NamedQuery]:
    return [parse_query(p) for p in sorted(queries_dir().glob("*.sql")) if not p.name.startswith("_")]


def load_query(name: str) -> NamedQuery:
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
