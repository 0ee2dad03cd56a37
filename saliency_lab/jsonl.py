"""Reading JSONL input files (manifests, captions, POPE questions and answers, human labels) line by line,
and `jsonable`, the plain-JSON copy every result file is written through.

Every reader of the package goes through `iter_jsonl`, so a bad file fails the same way everywhere: one
SaliencyLabError line naming the file (and line) and the fix. Blank lines are skipped (a trailing newline or
a spacer line is harmless); line numbers count them, so they match what an editor shows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from saliency_lab.errors import SaliencyLabError

ONE_OBJECT_PER_LINE = "write one JSON object per line"


def iter_jsonl(
    path: str | Path,
    what: str,
    hint: str = ONE_OBJECT_PER_LINE,
    *,
    flag: str | None = None,
    source: str | None = None,
    where: Callable[[int], str] | None = None,
    bad_json: str = "not valid JSON",
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for every non-blank line of a JSONL file.

    what: what the file holds ("captions"), used in the read error; hint: the fix for a line that is not a
    JSON object; flag: the option that named the file ("--captions"), for the read error's fix; source: how
    the file is named in file-level errors (default: its path); where(lineno): how a line is named (default
    "<path>:<line>"); bad_json: the phrase for a line that does not parse. Callers raise their own errors
    for missing or ill-typed fields, naming the line the same way.
    """
    p = Path(path)
    name = source or str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SaliencyLabError(
            f"{name}: not UTF-8 text ({exc.reason}); save the {what} file as UTF-8"
        ) from None
    except OSError as exc:
        check = f"check the {flag} path" if flag else "check the path"
        raise SaliencyLabError(f"{name}: cannot read {what} ({exc.strerror or exc}); {check}") from None
    at = where or (lambda n: f"{p}:{n}")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SaliencyLabError(
                f"{at(lineno)}: {bad_json} ({exc.msg} at column {exc.colno}); {hint}"
            ) from None
        if not isinstance(obj, dict):
            raise SaliencyLabError(f"{at(lineno)}: expected a JSON object, got {type(obj).__name__}; {hint}")
        yield lineno, obj


def jsonable(obj: Any) -> Any:
    """Plain-JSON copy of nested results: NaN/inf become null, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "to_dicts"):  # a Polars DataFrame, without importing Polars here
        return jsonable(obj.to_dicts())
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            obj = obj.item()
        except (TypeError, ValueError):
            pass
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj
