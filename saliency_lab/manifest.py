"""Reading and validating capture manifests (JSONL, one sample per line; docs/capture.md, "The manifest").

The whole file is validated before a capture starts, so a bad line aborts the run before anything is
written and never leaves a half-filled dataset behind. Every error names the file, the line and the fix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saliency_lab.config import ManifestSample
from saliency_lab.errors import SaliencyLabError
from saliency_lab.jsonl import iter_jsonl
from saliency_lab.seeding import sample_seed, stable_hash

__all__ = ["FIELDS", "Manifest", "file_sha256", "load_manifest", "sample_seed", "shard_of", "stable_hash"]

FIELDS = ("sample_id", "prompt", "image", "image_id", "system", "meta")
_OPTIONAL_STR = ("image", "image_id", "system")
_ONE_SAMPLE = 'write one object per line, e.g. {"sample_id": "s1", "prompt": "Describe the image."}'


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: its samples in file order plus what run.json records about the file."""

    path: Path
    sha256: str
    samples: tuple[ManifestSample, ...]

    def __len__(self) -> int:
        return len(self.samples)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _parse_line(obj: dict[str, Any], where: str, base: Path) -> ManifestSample:
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise SaliencyLabError(
            f"{where}: unknown field(s) {', '.join(unknown)}; allowed fields are {', '.join(FIELDS)} "
            "(put anything else inside \"meta\")"
        )
    for name in ("sample_id", "prompt"):
        if name not in obj or obj[name] is None:
            raise SaliencyLabError(f"{where}: missing required field {name!r}; add it to this line")
    sample_id = obj["sample_id"]
    # Integer ids are common in exported datasets; accept them and store their text so joins stay on str.
    if isinstance(sample_id, int) and not isinstance(sample_id, bool):
        sample_id = str(sample_id)
    if not isinstance(sample_id, str) or not sample_id.strip():
        raise SaliencyLabError(f"{where}: 'sample_id' must be a non-empty string; got {obj['sample_id']!r}")
    if not isinstance(obj["prompt"], str):
        raise SaliencyLabError(
            f"{where}: 'prompt' must be a string; got {type(obj['prompt']).__name__}"
        )
    for name in _OPTIONAL_STR:
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            if name == "image_id" and isinstance(value, int) and not isinstance(value, bool):
                continue  # COCO image ids are integers; stored as text
            raise SaliencyLabError(
                f"{where}: {name!r} must be a string (or null); got {type(value).__name__}"
            )
    meta = obj.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise SaliencyLabError(f"{where}: 'meta' must be a JSON object (or null); got {type(meta).__name__}")
    image = obj.get("image")
    if image is not None:
        if not image.strip():
            raise SaliencyLabError(f"{where}: 'image' is empty; give a path or leave the field out")
        img_path = Path(image).expanduser()
        # Relative paths are relative to the manifest's folder, so a manifest travels with its images.
        image = str(img_path if img_path.is_absolute() else (base / img_path))
    image_id = obj.get("image_id")
    return ManifestSample(
        sample_id=sample_id,
        prompt=obj["prompt"],
        image=image,
        image_id=None if image_id is None else str(image_id),
        system=obj.get("system"),
        meta=meta,
    )


def load_manifest(path: str | Path) -> Manifest:
    """Parse and validate every line of a JSONL manifest; raise SaliencyLabError on the first problem.

    Image files are not opened here: a missing or unreadable image is a per-sample error recorded in the
    run (status 'error'), so one bad image never stops a long capture.
    """
    path = Path(path)
    if not path.exists():
        raise SaliencyLabError(f"manifest {path}: file not found; pass an existing JSONL file with --data")
    if path.is_dir():
        raise SaliencyLabError(f"manifest {path}: is a folder; pass the JSONL file itself with --data")
    base = path.resolve().parent
    samples: list[ManifestSample] = []
    first_line: dict[str, int] = {}
    def where(lineno: int) -> str:
        return f"manifest {path}, line {lineno}"

    lines = iter_jsonl(path, "manifest", _ONE_SAMPLE, flag="--data", source=f"manifest {path}", where=where,
                       bad_json="malformed JSON")
    for lineno, obj in lines:
        sample = _parse_line(obj, where(lineno), base)
        if sample.sample_id in first_line:
            raise SaliencyLabError(
                f"{where(lineno)}: duplicate sample_id {sample.sample_id!r} (first on line "
                f"{first_line[sample.sample_id]}); sample_id must be unique"
            )
        first_line[sample.sample_id] = lineno
        samples.append(sample)
    if not samples:
        raise SaliencyLabError(f"manifest {path}: no samples; add one JSON object per line")
    return Manifest(path=path.resolve(), sha256=file_sha256(path), samples=tuple(samples))


def shard_of(sample_id: str, n_shards: int) -> int:
    """The shard (0-based) that owns `sample_id` when a run is split into `n_shards` processes."""
    return stable_hash(sample_id) % n_shards
