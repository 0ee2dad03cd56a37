"""Ground-truth objects per image for CHAIR, and the caption-file reader.

Sources: a JSON mapping image_id -> [categories] (for text-only runs, whose samples have no image_id: keyed
by sample_id), or COCO files (instances: the categories of the image's
annotations; captions: the categories mentioned in its reference captions, found with the same CHAIR
extractor). Category names are mapped through the synonym table when they are synonyms ("television" -> "tv").
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from saliency_lab.errors import SaliencyLabError, SaliencyLabWarning
from saliency_lab.jsonl import iter_jsonl
from saliency_lab.labels.chair import ChairExtractor, norm_image_id
from saliency_lab.labels.synonyms import SynonymTable


@dataclass
class GroundTruth:
    """Object categories present per image id, with where they came from (and the files' sha256)."""

    objects: dict[str, set[str]]
    source: str  # human-readable description, used in error messages
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_json(path: str | Path, what: str) -> object:
    """The parsed JSON of `path`; SaliencyLabError naming the file (`what`) when unreadable or invalid."""
    p = Path(path)
    try:
        with open(p, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        raise SaliencyLabError(f"{p}: cannot read {what} ({exc.strerror}); check the path") from None
    except json.JSONDecodeError as exc:
        raise SaliencyLabError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg}); fix the {what} file") from None


def _canon(name: str, table: SynonymTable) -> str:
    name = " ".join(str(name).lower().split())
    if name in table.categories:
        return name
    return table.category(name) or name


def load_gt_mapping(path: str | Path, table: SynonymTable) -> GroundTruth:
    """Ground truth from a JSON object image_id -> [categories], mapped onto `table`'s categories."""
    data = read_json(path, "ground-truth")
    if not isinstance(data, dict):
        raise SaliencyLabError(
            f"{path}: ground truth must be a JSON object mapping image_id (or sample_id) -> [categories]"
        )
    objects: dict[str, set[str]] = {}
    unknown: dict[str, str] = {}  # category -> first entry naming it
    for k, v in data.items():
        if not isinstance(v, list) or not all(isinstance(c, str) for c in v):
            raise SaliencyLabError(
                f"{path}: entry {k!r} must be a list of category names, got {type(v).__name__}"
            )
        objects[norm_image_id(k)] = {_canon(c, table) for c in v}
        for c in objects[norm_image_id(k)] - set(table.categories):
            unknown.setdefault(c, str(k))
    if unknown:
        # Kept (the mapping is the user's), but such a category can never match a caption mention.
        shown = ", ".join(f"{c!r} (entry {e!r})" for c, e in list(unknown.items())[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        warnings.warn(f"{path}: unknown CHAIR categor{'y' if len(unknown) == 1 else 'ies'} {shown}{more}; no "
                      "caption mention can match them: use the synonym table's category names",
                      SaliencyLabWarning, stacklevel=2)
    return GroundTruth(objects, str(path), {str(path): _sha256(Path(path))})


def load_coco_gt(table: SynonymTable, instances: str | Path | None = None,
                 captions: str | Path | None = None, only: set[str] | None = None) -> GroundTruth:
    """Union of instance-annotation categories and categories mentioned in the reference captions.

    `only` (normalized image ids) limits the caption parsing, the slow part, to the images that are needed.
    """
    objects: dict[str, set[str]] = {}
    files: dict[str, str] = {}
    if instances is not None:
        data = read_json(instances, "COCO instances")
        if not isinstance(data, dict) or "annotations" not in data or "categories" not in data:
            raise SaliencyLabError(
                f"{instances}: not a COCO instances file (needs 'annotations' and 'categories')"
            )
        names = {c["id"]: _canon(c["name"], table) for c in data["categories"]}
        for img in data.get("images", []):
            objects.setdefault(norm_image_id(img["id"]), set())
        for ann in data["annotations"]:
            cat = names.get(ann.get("category_id"))
            if cat is None:
                raise SaliencyLabError(
                    f"{instances}: annotation {ann.get('id')} has unknown category_id {ann.get('category_id')}"
                )
            objects.setdefault(norm_image_id(ann["image_id"]), set()).add(cat)
        files[str(instances)] = _sha256(Path(instances))
    if captions is not None:
        data = read_json(captions, "COCO captions")
        if not isinstance(data, dict) or "annotations" not in data:
            raise SaliencyLabError(f"{captions}: not a COCO captions file (needs 'annotations')")
        extractor = ChairExtractor(table)
        for img in data.get("images", []):
            objects.setdefault(norm_image_id(img["id"]), set())
        for ann in data["annotations"]:
            iid = norm_image_id(ann["image_id"])
            cats = set() if only is not None and iid not in only else extractor.categories(str(ann.get("caption", "")))
            objects.setdefault(iid, set()).update(cats)
        files[str(captions)] = _sha256(Path(captions))
    if not files:
        raise SaliencyLabError("no ground truth given; pass --ground-truth GT.json or --instances/--coco-captions")
    return GroundTruth(objects, " + ".join(files), files)


def resolve_ground_truth(table: SynonymTable, ground_truth: str | None = None, instances: str | None = None,
                         coco_captions: str | None = None, image_ids: set[str] | None = None) -> GroundTruth:
    """Ground truth from a mapping file or COCO files; `image_ids` (normalized) restricts caption parsing."""
    if ground_truth and (instances or coco_captions):
        raise SaliencyLabError("give either --ground-truth or --instances/--coco-captions, not both")
    if ground_truth:
        return load_gt_mapping(ground_truth, table)
    return load_coco_gt(table, instances, coco_captions, image_ids)


_CAPTION_LINE = 'write one {"image_id": ..., "caption": "..."} object per line'


def read_caption_file(path: str | Path) -> list[tuple[str, object, str]]:
    """JSONL {image_id, caption} -> [(key, image_id, caption)]; key is `path:line` or the line's sample_id."""
    p = Path(path)
    out = []
    for lineno, obj in iter_jsonl(p, "captions", _CAPTION_LINE, flag="--captions"):
        if "image_id" not in obj or not isinstance(obj.get("caption"), str):
            raise SaliencyLabError(
                f'{p}:{lineno}: expected {{"image_id": ..., "caption": "..."}}; add the missing field'
            )
        key = str(obj.get("sample_id") or f"{p.name}:{lineno}")
        out.append((key, obj["image_id"], obj["caption"]))
    if not out:
        raise SaliencyLabError(f"{p}: no captions found; expected JSON lines with image_id and caption")
    return out
