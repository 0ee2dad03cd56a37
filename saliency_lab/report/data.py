"""Reading what a report shows straight from a run folder (SPEC section 4): run.json, samples, tokens,
rows and the label sets. Statistics never come from here; they come from `saliency_lab.analysis`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.schema import check_schema_version


def _read_table(run_dir: Path, table: str, columns: list[str] | None = None) -> pl.DataFrame | None:
    folder = run_dir / table
    parts = sorted(folder.glob("shard=*/part-*.parquet"))
    if not parts:
        return None
    frames = [pl.read_parquet(p, columns=columns) for p in parts]
    return pl.concat(frames, how="diagonal_relaxed")


@dataclass
class RunData:
    """One run as the report needs it. Tables are loaded once, lazily where they can be large."""

    path: Path
    meta: dict[str, Any]
    samples: pl.DataFrame
    tokens: pl.DataFrame
    labelsets: dict[str, Path] = field(default_factory=dict)
    _rows_checked: bool = False
    _has_rows: bool = False

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id") or self.path.name)

    @property
    def n_layers(self) -> int | None:
        model = self.meta.get("model") or {}
        value = model.get("n_layers")
        return int(value) if value is not None else None

    def rows_mode(self) -> str | None:
        """'output' / 'all' when the run captured saliency rows, else None."""
        sal = self.meta.get("saliency") or {}
        mode = sal.get("rows")
        if mode:
            return str(mode)
        return "output" if self.has_rows() else None

    def has_rows(self) -> bool:
        if not self._rows_checked:
            self._has_rows = any((self.path / "rows").glob("shard=*/part-*.parquet"))
            self._rows_checked = True
        return self._has_rows

    def rows_for(self, sample_id: str) -> pl.DataFrame | None:
        """The saliency rows of one sample (all layers), or None when the run has none."""
        if not self.has_rows():
            return None
        parts = sorted((self.path / "rows").glob("shard=*/part-*.parquet"))
        frame = pl.scan_parquet(parts).filter(pl.col("sample_id") == sample_id).collect()
        return frame if frame.height else None

    def saliency_for(self, sample_id: str) -> pl.DataFrame | None:
        parts = sorted((self.path / "saliency").glob("shard=*/part-*.parquet"))
        if not parts:
            return None
        cols = ["sample_id", "step", "layer", "row_l2"]
        return pl.scan_parquet(parts).filter(pl.col("sample_id") == sample_id).select(cols).collect()

    def label_table(self, labelset: str) -> pl.DataFrame | None:
        path = self.labelsets.get(labelset)
        return pl.read_parquet(path) if path else None

    def n_labeled(self, labelset: str) -> int:
        path = self.labelsets.get(labelset)
        return pq.ParquetFile(path).metadata.num_rows if path else 0

    def label_metrics(self, labelset: str) -> dict[str, Any]:
        """The label set's JSON side file (CHAIR / POPE metrics), empty when absent or unreadable."""
        path = self.labelsets.get(labelset)
        if not path:
            return {}
        side = path.with_suffix(".json")
        if not side.is_file():
            return {}
        try:
            return json.loads(side.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}


def load_run(path: str | Path) -> RunData:
    run_dir = Path(path)
    meta_path = run_dir / "run.json"
    if not meta_path.is_file():
        raise SaliencyLabError(
            f"{run_dir}: no run.json here; pass a run folder (the one holding run.json) made by `saliency-lab capture`"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SaliencyLabError(f"{meta_path}: not valid JSON ({exc}); re-run the capture or fix the file") from exc
    check_schema_version(meta.get("schema_version"), str(run_dir))
    samples = _read_table(run_dir, "samples")
    if samples is None:
        raise SaliencyLabError(f"{run_dir}: the run has no samples table yet; wait for the capture to commit a sample")
    tokens = _read_table(
        run_dir, "tokens", ["sample_id", "step", "token_text", "char_start", "char_end", "logprob"]
    )
    if tokens is None:
        tokens = pl.DataFrame(
            schema={"sample_id": pl.Utf8, "step": pl.Int32, "token_text": pl.Utf8,
                    "char_start": pl.Int32, "char_end": pl.Int32, "logprob": pl.Float32}
        )
    labelsets = {p.stem: p for p in sorted((run_dir / "labels").glob("*.parquet"))}
    return RunData(path=run_dir, meta=meta, samples=samples, tokens=tokens, labelsets=labelsets)


def find_labelset(runs: list[RunData], wanted: str | None) -> str | None:
    """The label set to report: `wanted` when given (must exist in some run), else chair / pope / human when
    present, else the first one found (alphabetical within a run, runs in the order given)."""
    if wanted:
        if not any(wanted in r.labelsets for r in runs):
            known = sorted({name for r in runs for name in r.labelsets}) or ["none"]
            raise SaliencyLabError(
                f"label set {wanted!r} not found in {', '.join(str(r.path) for r in runs)} (found: {', '.join(known)}); "
                "run `saliency-lab label ...` first or pass --labels with one of those names"
            )
        return wanted
    found = [name for run in runs for name in run.labelsets]
    for preferred in ("chair", "pope", "human"):
        if preferred in found:
            return preferred
    return found[0] if found else None
