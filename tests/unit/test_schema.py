import pyarrow as pa
import pytest

from saliency_lab.errors import SaliencyLabError
from saliency_lab.store import schema


def test_every_table_starts_with_run_and_sample_keys():
    for name, sch in schema.SCHEMAS.items():
        assert sch.names[:2] == ["run_id", "sample_id"], name


def test_table_from_columns_fills_nullable_and_rejects_missing():
    t = schema.table_from_columns(
        "labels",
        {"run_id": ["r"], "sample_id": ["s"], "step": [3], "label": [1], "source": ["chair"], "subtoken": [0]},
    )
    assert t.schema == schema.LABELS
    assert t.column("object").null_count == 1
    with pytest.raises(SaliencyLabError, match="label"):
        schema.table_from_columns("labels", {"run_id": ["r"], "sample_id": ["s"], "step": [3]})


def test_rows_values_are_float16():
    assert schema.ROWS.field("values").type == pa.list_(pa.float16())


def test_newer_schema_version_is_refused_with_fix():
    schema.check_schema_version(schema.SCHEMA_VERSION, "run.json")
    with pytest.raises(SaliencyLabError, match="upgrade"):
        schema.check_schema_version(schema.SCHEMA_VERSION + 1, "runs/x/run.json")
