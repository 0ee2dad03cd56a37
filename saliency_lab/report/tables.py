"""HTML tables as plain data: the template renders them with autoescaping, so token text, prompts and model
names can never inject markup. Every numeric cell keeps its exact value in `data-value`, which is how tests
check that the page shows the analysis numbers and not numbers of its own."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Cell:
    """A table cell: shown text, the exact value behind it (for checks), CSS class, key."""

    text: str
    value: str | None = None  # repr of the exact number shown, for machine checks
    cls: str | None = None
    key: str | None = None
    href: str | None = None  # "#section": the section that derives this number


@dataclass
class Table:
    """A report table: header columns and rows of cells."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    note: str | None = None


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def fmt_num(x: Any, digits: int = 3) -> str:
    """Numbers with `digits` significant decimals; integers as integers; missing as an en dash."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}f}"


def fmt_p(p: Any) -> str:
    """A p-value as text: 4 decimals, scientific below 1e-3, '< 1e-16' below 1e-16, '–' when not finite."""
    if not _finite(p):
        return "–"
    v = float(p)
    return "< 1e-16" if v < 1e-16 else (f"{v:.2e}" if v < 1e-3 else f"{v:.4f}")


def num(x: Any, digits: int = 3, cls: str | None = None, key: str | None = None) -> Cell:
    """A numeric cell shown with `digits`; the exact value is kept for booleans and finite numbers."""
    value = None
    if isinstance(x, bool):
        value = str(x).lower()
    elif _finite(x):
        value = repr(int(x)) if isinstance(x, int) else repr(float(x))
    return Cell(fmt_num(x, digits), value=value, cls=f"num {cls}" if cls else "num", key=key)


def pval(p: Any, key: str | None = None) -> Cell:
    """A p-value cell (`fmt_p`)."""
    return Cell(fmt_p(p), value=repr(float(p)) if _finite(p) else None, cls="num", key=key)


def mean_sd(mean: Any, sd: Any, key: str | None = None) -> Cell:
    """'0.472 ± 0.136' as in the paper's Table 4; data-value holds 'mean|sd'."""
    if not _finite(mean):
        return Cell("–", cls="num", key=key)
    scale = max(abs(float(mean)), abs(float(sd)) if _finite(sd) else 0.0)
    # Three decimals like the paper; small scores (e.g. normalization "none") keep 3 significant digits.
    f = ".3f" if scale >= 0.01 or scale == 0 else ".3g"
    text = f"{float(mean):{f}} ± {float(sd):{f}}" if _finite(sd) else f"{float(mean):{f}}"
    value = f"{float(mean)!r}|{float(sd)!r}" if _finite(sd) else repr(float(mean))
    return Cell(text, value=value, cls="num", key=key)


def interval(est: Any, lo: Any, hi: Any, key: str | None = None) -> Cell:
    """A cell 'est [lo, hi]' (the interval only when finite); '–' when est is not finite."""
    if not _finite(est):
        return Cell("–", cls="num", key=key)
    text = f"{float(est):.3f}"
    if _finite(lo) and _finite(hi):
        text += f" [{float(lo):.3f}, {float(hi):.3f}]"
    return Cell(text, value=repr(float(est)), cls="num", key=key)


def text(x: Any, key: str | None = None) -> Cell:
    """A text cell; '–' for None."""
    return Cell("–" if x is None else str(x), key=key)


def key_value_table(key: str, title: str, items: Mapping[str, Any] | Iterable[tuple[str, Any]],
                    note: str | None = None) -> Table:
    """A two-column (field, value) table; numbers as numeric cells."""
    pairs = items.items() if isinstance(items, Mapping) else items
    rows = []
    for name, value in pairs:
        if isinstance(value, int | float):
            cell = num(value, key=name)
        else:
            cell = text(_plain(value), key=name)
        rows.append([Cell(str(name)), cell])
    return Table(key=key, title=title, columns=["field", "value"], rows=rows, note=note)


def _plain(value: Any) -> str | None:
    """Nested config values as compact 'k=v' text, readable in a table cell."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(_plain(v)) for v in value) + "]"
    return str(value)


def flatten(prefix: str, value: Any, out: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Nested dicts as dotted keys, one table row each (decoding.sgrs.alpha = 0.6)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out.append((prefix, value))
    return out


def comparison_table(key: str, title: str, run_ids: Sequence[str],
                     rows: Sequence[tuple[str, Sequence[Any]]], note: str | None = None) -> Table:
    """Metrics side by side: one column per run."""
    body = []
    for name, values in rows:
        cells = [Cell(name)]
        for v in values:
            cells.append(num(v, key=name) if isinstance(v, int | float) or v is None else text(v, key=name))
        body.append(cells)
    return Table(key=key, title=title, columns=["metric", *run_ids], rows=body, note=note)
