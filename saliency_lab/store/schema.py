"""Every Arrow schema of a saliency-lab run, and the schema version.

This module is the single owner of the on-disk format (docs/capture.md, "Layout on disk"). Writers build tables with
`empty_table` / `table_from_columns`; readers check `schema_version` in run.json against
`SCHEMA_VERSION` with `check_schema_version`.

Conventions that change numbers downstream, recorded here so they are in one place:
- saliency sums are *raw* S_raw sums; normalization (row / none / matrix) is derived at query time.
- `attn_out_sum` is the head-mean post-softmax attention mass from the query row to prior output keys.
- segment bounds are half-open [start, end) positions in `input_ids`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from saliency_lab.errors import SaliencyLabError

#: Bumped whenever a column is added, removed or changes meaning. Readers refuse newer versions.
SCHEMA_VERSION = 2

#: Tables stored as hive-partitioned part files under <run>/<table>/shard=<k>/part-<n>.parquet.
PARTITIONED_TABLES = ("samples", "tokens", "saliency", "candidates", "rows", "decisions")

_STR = pa.string()
_I8 = pa.int8()
_I16 = pa.int16()
_I32 = pa.int32()
_F16 = pa.float16()
_F32 = pa.float32()
_BOOL = pa.bool_()


def _f(name: str, typ: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, typ, nullable=nullable)


SAMPLES = pa.schema(
    [
        _f("run_id", _STR),
        _f("sample_id", _STR),
        _f("image_id", _STR, True),
        _f("image_path", _STR, True),
        _f("system", _STR, True),
        _f("prompt", _STR),
        _f("output_text", _STR, True),
        _f("input_ids", pa.list_(_I32), True),
        _f("n_input", _I32, True),
        _f("n_output", _I32, True),
        # [start, end) position pairs; an absent segment is [k, k).
        _f("seg_system", pa.list_(_I32), True),
        _f("seg_image", pa.list_(_I32), True),
        _f("seg_prompt", pa.list_(_I32), True),
        _f("status", _STR),  # 'ok' | 'error'
        _f("error", _STR, True),
        _f("seconds", _F32, True),
        _f("meta", _STR, True),  # the manifest's `meta` object as JSON text
    ]
)

TOKENS = pa.schema(
    [
        _f("run_id", _STR),
        _f("sample_id", _STR),
        _f("step", _I32),
        _f("position", _I32),
        _f("token_id", _I32),
        _f("token_text", _STR),
        _f("char_start", _I32),
        _f("char_end", _I32),
        _f("logprob", _F32),
        _f("entropy", _F32),
        _f("topk_ids", pa.list_(_I32), True),
        _f("topk_probs", pa.list_(_F32), True),
        # Decision columns: null unless the run decoded with SGRS.
        _f("accepted", _BOOL, True),
        _f("n_rejected", _I16, True),
        _f("fallback", _BOOL, True),
        _f("sgrs_score", _F32, True),
        _f("sgrs_score_name", _STR, True),  # the score sgrs_score is (--sgrs-score); null before schema 2
        _f("sgrs_tau", _F32, True),
    ]
)

SALIENCY = pa.schema(
    [
        _f("run_id", _STR),
        _f("sample_id", _STR),
        _f("step", _I32),
        _f("layer", _I16),
        _f("sys_sum", _F32),
        _f("img_sum", _F32),
        _f("prompt_sum", _F32),
        _f("out_sum", _F32),  # prior output keys o <= j <= q
        _f("prev", _F32, True),  # S_raw at j = q; null at step 0
        _f("row_l2", _F32),
        _f("attn_out_sum", _F32),
    ]
)

CANDIDATES = pa.schema(
    [
        _f("run_id", _STR),
        _f("sample_id", _STR),
        _f("step", _I32),
        _f("rank", _I16),  # 0 = most probable
        _f("token_id", _I32),
        _f("prob", _F32),
        _f("layer", _I16),
        _f("out_sum", _F32),
        _f("prompt_sum", _F32),
        _f("prev", _F32, True),
        _f("row_l2", _F32),
    ]
)

ROWS = pa.schema(
    [
        _f("run_id", _STR),
        _f("sample_id", _STR),
        _f("step", _I32),
        _f("layer", _I16),
        _f("keys", _STR),  # 'output' | 'all'
        _f("values", pa.list_(_F16)),  # S_raw over the chosen keys, in position order
    ]
)

# One row per candidate SGRS evaluated (draw order), so every decision can be replayed.
DECISIONS = pa.schema(
    [
        _f("run_id", _STR),
        _f("sample_id", _STR),
        _f("step", _I32),
        _f("draw", _I16),  # 0-based order in which the candidate was evaluated
        _f("rank", _I16),  # rank among the top-K by probability
        _f("token_id", _I32),
        _f("prob", _F32),
        _f("score", _F32, True),  # null at step 0: no prior output tokens, score undefined
        _f("score_name", _STR, True),  # the score thresholded (--sgrs-score); null in runs before schema 2
        _f("tau", _F32),
        _f("accepted", _BOOL),
        _f("fallback", _BOOL),
    ]
)

LABELS = pa.schema(
    [
        _f("run_id", _STR),
        _f("sample_id", _STR),
        _f("step", _I32),
        _f("label", _I8),  # 1 = hallucinated, 0 = correct
        _f("source", _STR),  # 'chair' | 'pope' | 'human' | ...
        _f("object", _STR, True),
        _f("mention_id", _I32, True),
        _f("subtoken", _I16),  # 0 = first subtoken of the mention
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "samples": SAMPLES,
    "tokens": TOKENS,
    "saliency": SALIENCY,
    "candidates": CANDIDATES,
    "rows": ROWS,
    "decisions": DECISIONS,
    "labels": LABELS,
}


def schema_for(table: str) -> pa.Schema:
    """The Arrow schema of `table`; a clear error for an unknown name."""
    try:
        return SCHEMAS[table]
    except KeyError:
        raise SaliencyLabError(
            f"unknown table {table!r}; known tables: {', '.join(SCHEMAS)}"
        ) from None


def empty_table(table: str) -> pa.Table:
    """A table's schema with no rows."""
    return schema_for(table).empty_table()


def table_from_columns(table: str, columns: Mapping[str, Sequence[Any] | Any]) -> pa.Table:
    """Build a table of `table`'s schema from column arrays; nullable columns may be omitted.

    Raises a SaliencyLabError naming the column when one is missing or has the wrong type.
    """
    schema = schema_for(table)
    n = None
    for v in columns.values():
        n = len(v)
        break
    arrays = []
    for field in schema:
        if field.name in columns:
            try:
                arrays.append(pa.array(columns[field.name], type=field.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
                raise SaliencyLabError(
                    f"{table}.{field.name}: cannot convert to {field.type}: {exc}"
                ) from exc
        elif field.nullable:
            arrays.append(pa.nulls(n or 0, type=field.type))
        else:
            raise SaliencyLabError(f"{table}: required column {field.name!r} is missing")
    unknown = set(columns) - set(schema.names)
    if unknown:
        raise SaliencyLabError(f"{table}: unknown columns {sorted(unknown)}")
    return pa.Table.from_arrays(arrays, schema=schema)


def check_schema_version(found: int | None, where: str) -> None:
    """Refuse datasets written by a newer toolkit; older versions are read as is."""
    if found is None:
        raise SaliencyLabError(f"{where}: run.json has no schema_version; is this a saliency-lab run?")
    if int(found) > SCHEMA_VERSION:
        raise SaliencyLabError(
            f"{where}: dataset schema_version {found} is newer than this toolkit's {SCHEMA_VERSION}; "
            "upgrade saliency-lab (pip install -U saliency-lab)"
        )
