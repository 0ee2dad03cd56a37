"""The one run reader: open a run folder (or a URI, or a glob of folders), read and validate run.json
once, and list the run's table part files and label files.

    run = open_run("runs/baseline")
    run.run_id, run.info["decoding"], run.files("saliency"), run.labelsets()
    runs = open_runs(["runs/baseline", "runs/sgrs-*"])

Everything that reads a run (the catalog, labeling, the report, capture's resume check) goes through here,
so a run that is not a run, a damaged run.json or a dataset from a newer toolkit gets the same one-line
error everywhere. Layout of a run folder: docs/capture.md ("Layout on disk", "run.json").
Local runs are plain paths; URIs (s3://, gs://, file://, ...) are opened with pyarrow's filesystems.
"""

from __future__ import annotations

import glob as globlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.schema import check_schema_version

RUN_JSON = "run.json"
_GLOB_CHARS = set("*?[")
_NOT_A_RUN = (
    "not a run (no run.json); pass the run folder, the one holding run.json (made by `saliency-lab capture`)"
)

RunsArg = Iterable[str | Path] | str | Path


@dataclass
class Run:
    """One opened run: where it lives and its validated run.json (`info`)."""

    location: str  # local folder or URI, as given (globs expanded)
    info: dict[str, Any]
    fs: pafs.FileSystem | None = None  # None = local path read natively
    base: str = ""  # path inside `fs`

    @property
    def run_id(self) -> str:
        """run.json's run_id, else the folder name."""
        return str(self.info.get("run_id") or Path(self.location.rstrip("/")).name)

    @property
    def n_layers(self) -> int | None:
        """The language model's layer count recorded in run.json, or None when not recorded."""
        n = (self.info.get("model") or {}).get("n_layers")
        return int(n) if n is not None else None

    @property
    def path(self) -> Path:
        """The run folder as a local Path (only for local runs)."""
        if self.fs is not None:
            raise SaliencyLabError(
                f"{self.location}: this needs a local run folder; copy the run locally first"
            )
        return Path(self.location)

    def files(self, table: str) -> list[str]:
        """Committed part files of `table` (paths for local runs, paths inside `fs` for remote ones)."""
        if self.fs is None:
            pattern = os.path.join(globlib.escape(self.location), table, "shard=*", "part-*.parquet")
            return sorted(globlib.glob(pattern))
        sel = pafs.FileSelector(f"{self.base}/{table}", allow_not_found=True, recursive=True)
        return sorted(
            i.path
            for i in self.fs.get_file_info(sel)
            if i.type == pafs.FileType.File
            and i.base_name.startswith("part-")
            and i.path.endswith(".parquet")
            and "/shard=" in i.path
        )

    def label_files(self) -> list[str]:
        """The run's label set files labels/<name>.parquet, sorted by name."""
        if self.fs is None:
            return sorted(globlib.glob(os.path.join(globlib.escape(self.location), "labels", "*.parquet")))
        sel = pafs.FileSelector(f"{self.base}/labels", allow_not_found=True)
        return sorted(
            i.path
            for i in self.fs.get_file_info(sel)
            if i.type == pafs.FileType.File
            and i.path.endswith(".parquet")
            and not i.base_name.startswith(".")
        )

    def labelsets(self) -> dict[str, str]:
        """Label set name -> its Parquet file."""
        return {os.path.basename(p)[: -len(".parquet")]: p for p in self.label_files()}

    def read_text(self, path: str) -> str:
        """The text of a file of this run (`path` as returned by `join`, `files` or `label_files`)."""
        if self.fs is None:
            return Path(path).read_text(encoding="utf-8")
        with self.fs.open_input_stream(path) as fh:
            return fh.read().decode("utf-8")

    def join(self, *parts: str) -> str:
        """A path inside the run, in the form `read_text` and `fs` expect."""
        return os.path.join(self.location, *parts) if self.fs is None else "/".join([self.base, *parts])


def is_uri(location: str) -> bool:
    """True for URIs (scheme://...), which are opened through pyarrow's filesystems."""
    return "://" in location


def parse_run_info(text: str, where: str) -> dict[str, Any]:
    """Validate the text of a run.json: a JSON object with a schema_version this toolkit can read."""
    try:
        info = json.loads(text)
    except ValueError as exc:
        raise SaliencyLabError(
            f"{where}: not valid JSON ({exc}); restore it from the capture or capture into a new --run-id"
        ) from None
    if not isinstance(info, dict):
        raise SaliencyLabError(
            f"{where}: not a JSON object; restore it from the capture or capture into a new --run-id"
        )
    check_schema_version(info.get("schema_version"), where)
    return info


def open_run(location: str | Path) -> Run:
    """Open one run (a folder or URI, not a glob) and validate its run.json."""
    location = str(location)
    fs, base = None, ""
    if is_uri(location):
        try:
            fs, base = pafs.FileSystem.from_uri(location)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise SaliencyLabError(
                f"{location}: cannot open this URI with pyarrow ({exc}); "
                "use a local path or a filesystem pyarrow supports"
            ) from None
        base = base.rstrip("/")
    run = Run(location=location, info={}, fs=fs, base=base)
    path = run.join(RUN_JSON)
    try:
        text = run.read_text(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise SaliencyLabError(f"{location}: {_NOT_A_RUN}") from None
    except OSError as exc:
        raise SaliencyLabError(f"{path}: unreadable ({exc}); check its permissions or restore it") from None
    run.info = parse_run_info(text, path)
    return run


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """The validated run.json of one run folder."""
    return open_run(run_dir).info


def expand_runs(runs: RunsArg) -> list[str]:
    """Run locations with globs expanded to the matching folders that hold a run.json (sorted)."""
    items = [runs] if isinstance(runs, (str, Path)) else list(runs)
    locations: list[str] = []
    for item in items:
        s = str(item)
        if not is_uri(s) and _GLOB_CHARS & set(s):
            matches = [m for m in sorted(globlib.glob(s)) if os.path.isfile(os.path.join(m, RUN_JSON))]
            if not matches:
                raise SaliencyLabError(f"{s}: the pattern matches no run folder (none holds a run.json)")
            locations += matches
        else:
            locations.append(s)
    if not locations:
        raise SaliencyLabError("no runs given; pass one or more run folders (the ones holding run.json)")
    return locations


def open_runs(runs: RunsArg, *, same_folder_once: bool = False) -> list[Run]:
    """Expand globs and open every run. Two runs with one run_id are refused (their rows would mix);
    with `same_folder_once`, a local folder named twice (say, by a path and a glob) is opened once."""
    locations = expand_runs(runs)
    if same_folder_once:
        seen_paths: set[str] = set()
        unique = []
        for loc in locations:
            key = loc if is_uri(loc) else str(Path(loc).resolve())
            if key not in seen_paths:
                seen_paths.add(key)
                unique.append(loc)
        locations = unique
    opened = [open_run(loc) for loc in locations]
    seen: dict[str, str] = {}
    for r in opened:
        if r.run_id in seen:
            raise SaliencyLabError(
                f"{r.location}: run_id {r.run_id!r} is also the id of {seen[r.run_id]}; "
                "open runs with distinct run ids"
            )
        seen[r.run_id] = r.location
    return opened
