"""Reading what a report shows straight from a run folder (layout: docs/capture.md): samples, tokens, rows
and the label sets, over a run opened by the store's one reader (`saliency_lab.store.runs`, which also reads
run.json). Statistics never come from here; they come from `saliency_lab.analysis`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.runs import Run, RunsArg, open_run, open_runs


def _read_table(run: Run, table: str, columns: list[str] | None = None) -> pl.DataFrame | None:
    parts = run.files(table)
    if not parts:
        return None
    frames = [pl.read_parquet(p, columns=columns) for p in parts]
    return pl.concat(frames, how="diagonal_relaxed")


@dataclass
class RunData:
    """One run as the report needs it. Tables are loaded once, lazily where they can be large."""

    run: Run
    samples: pl.DataFrame
    tokens: pl.DataFrame
    labelsets: dict[str, Path] = field(default_factory=dict)
    _rows_checked: bool = False
    _has_rows: bool = False

    @property
    def path(self) -> Path:
        """The run folder."""
        return self.run.path

    @property
    def meta(self) -> dict[str, Any]:
        """The run's run.json."""
        return self.run.info

    @property
    def run_id(self) -> str:
        """The run's id (run.json, else the folder name)."""
        return self.run.run_id

    @property
    def n_layers(self) -> int | None:
        """Layer count recorded in run.json, if any."""
        return self.run.n_layers

    def parts(self, table: str) -> list[Path]:
        """The committed part files of `table`."""
        return [Path(p) for p in self.run.files(table)]

    def rows_mode(self) -> str | None:
        """'output' / 'all' when the run captured saliency rows, else None."""
        sal = self.meta.get("saliency") or {}
        mode = sal.get("rows")
        if mode:
            return str(mode)
        return "output" if self.has_rows() else None

    def has_rows(self) -> bool:
        """Whether the run stored saliency rows (checked once)."""
        if not self._rows_checked:
            self._has_rows = bool(self.parts("rows"))
            self._rows_checked = True
        return self._has_rows

    def rows_for(self, sample_id: str) -> pl.DataFrame | None:
        """The saliency rows of one sample (all layers), or None when the run has none."""
        if not self.has_rows():
            return None
        parts = self.parts("rows")
        frame = pl.scan_parquet(parts).filter(pl.col("sample_id") == sample_id).collect()
        return frame if frame.height else None

    def saliency_for(self, sample_id: str) -> pl.DataFrame | None:
        """row_l2 per (step, layer) of one sample, or None when the run has no saliency table."""
        parts = self.parts("saliency")
        if not parts:
            return None
        cols = ["sample_id", "step", "layer", "row_l2"]
        return pl.scan_parquet(parts).filter(pl.col("sample_id") == sample_id).select(cols).collect()

    def label_table(self, labelset: str | None) -> pl.DataFrame | None:
        """The rows of one label set, or None when the run does not have it."""
        path = self.labelsets.get(labelset) if labelset else None
        return pl.read_parquet(path) if path else None

    def n_labeled(self, labelset: str | None) -> int:
        """Number of labeled tokens in one label set (0 when absent)."""
        path = self.labelsets.get(labelset) if labelset else None
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


def _from_run(run: Run) -> RunData:
    samples = _read_table(run, "samples")
    if samples is None:
        raise SaliencyLabError(f"{run.location}: the run has no samples table yet; wait for the capture to commit a sample")
    tokens = _read_table(
        run, "tokens", ["sample_id", "step", "token_text", "char_start", "char_end", "logprob"]
    )
    if tokens is None:
        tokens = pl.DataFrame(
            schema={"sample_id": pl.Utf8, "step": pl.Int32, "token_text": pl.Utf8,
                    "char_start": pl.Int32, "char_end": pl.Int32, "logprob": pl.Float32}
        )
    labelsets = {name: Path(p) for name, p in run.labelsets().items()}
    return RunData(run=run, samples=samples, tokens=tokens, labelsets=labelsets)


def load_run(path: str | Path) -> RunData:
    """One run folder as the report reads it."""
    return _from_run(open_run(path))


def load_runs(runs: RunsArg) -> list[RunData]:
    """Run folders or globs (a folder named twice is read once) as the report reads them."""
    return [_from_run(r) for r in open_runs(runs, same_folder_once=True)]


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
