"""Failure cases (paper App. B.2): hallucinated tokens the score rates highly and correct tokens it rates
low, with their surrounding text (queries/failure_cases.sql) and per-layer profile.

Ranked position-controlled: by the z-score against all tokens generated at the same step of the same run
(`step_z`), not by the raw score, which drifts with the step and would pick late tokens only."""

from __future__ import annotations

from typing import Any

import polars as pl

FAILURE_SCHEMA: dict[str, Any] = {
    "run_id": pl.String, "kind": pl.String, "rank": pl.Int64, "sample_id": pl.String, "step": pl.Int32,
    "token_text": pl.String, "object": pl.String, "label": pl.Int8, "score": pl.Float64,
    "step_mean": pl.Float64, "step_z": pl.Float64, "step_n": pl.Int64, "context": pl.String, "layers": pl.List(pl.Int16), "layer_scores": pl.List(pl.Float64),
}


def attach_layer_profile(cases: pl.DataFrame, layer_values: pl.DataFrame, measure: str) -> pl.DataFrame:
    """Add `layers` and `layer_scores` (the measure at every layer, in layer order) to each case."""
    if cases.height == 0:
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    prof = (
        layer_values.select("run_id", "sample_id", "step", "layer", pl.col(measure).alias("v"))
        .sort(["run_id", "sample_id", "step", "layer"])
        .group_by(["run_id", "sample_id", "step"], maintain_order=True)
        .agg(layers=pl.col("layer"), layer_scores=pl.col("v").cast(pl.Float64))
    )
    out = cases.join(prof, on=["run_id", "sample_id", "step"], how="left")
    return out.select([pl.col(c).cast(t) for c, t in FAILURE_SCHEMA.items()])
