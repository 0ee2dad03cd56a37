"""Per-token scores used to *choose* which samples get a saliency map. They come from the catalog's named
query `token_scores` (queries/token_scores.sql), the same definition the analysis uses, so a score quoted in
a map caption is the analysis' token score."""

from __future__ import annotations

import polars as pl

from saliency_lab.report.data import RunData


def default_layers(run: RunData) -> list[int]:
    """Upper half of the layers (layer >= n_layers // 2), the toolkit's default target layers."""
    n = run.n_layers
    if n is None:
        parts = run.parts("saliency")
        if not parts:
            return []
        n = int(pl.scan_parquet(parts).select(pl.col("layer").max()).collect().item()) + 1
    return list(range(n // 2, n))


def token_scores(runs: list[RunData], labelset: str | None, layers: list[int] | None,
                 score: str = "out_mean", normalization: str = "row") -> dict[str, pl.DataFrame]:
    """run_id -> frame of sample_id, step, score, label (null where unlabeled; max over label rows)."""
    from saliency_lab.store.catalog import open_catalog

    if not runs:
        return {}
    params = {"labels": labelset or "", "normalization": normalization,
              "layers": ",".join(str(int(x)) for x in layers) if layers else "NULL"}
    with open_catalog([str(r.path) for r in runs]) as cat:
        df = cat.query("token_scores", params)
    df = (df.group_by("run_id", "sample_id", "step")
          .agg(pl.col(score).first().cast(pl.Float64).alias("score"), pl.col("label").max().cast(pl.Int8))
          .sort("run_id", "sample_id", "step"))
    return {rid: sub.drop("run_id") for (rid,), sub in df.group_by(["run_id"], maintain_order=True)}


def labeled_scores(paths: list[str], labelset: str, layers: list[int] | None, score: str = "out_mean",
                   normalization: str = "row") -> pl.DataFrame:
    """run_id, label, score of exactly the tokens `analyze` tests (query `labeled_tokens`, score not null)."""
    from saliency_lab.store.catalog import open_catalog

    params = {"labels": labelset, "normalization": normalization,
              "layers": ",".join(str(int(x)) for x in layers) if layers else "NULL"}
    with open_catalog(paths) as cat:
        df = cat.query("labeled_tokens", params)
    return (df.filter(pl.col(score).is_not_null() & pl.col(score).is_not_nan())
            .select("run_id", pl.col("label").cast(pl.Int8), pl.col(score).cast(pl.Float64).alias("score")))
