"""The CHAIR synonym table: one line per COCO category, `category, syn1, syn2, ...`.

The project ships its own table (`saliency_lab/assets/chair_synonyms.txt`); any file in the same format can
replace it (`--synonyms FILE`). Entries are lower-cased on load, so a table entry such as "iPhone" matches the
lower-cased captions CHAIR works on. Empty fields (a trailing comma) are ignored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from saliency_lab.errors import SaliencyLabError

DEFAULT_SYNONYMS = "chair_synonyms.txt"


@dataclass(frozen=True)
class SynonymTable:
    """Categories in file order and the inverse map synonym -> category."""

    categories: tuple[str, ...]
    to_category: dict[str, str]
    source: str  # path of the file, or "builtin:chair_synonyms.txt"
    sha256: str
    #: multi-word entries that can never match (only two-word phrases are merged), kept for the record
    ignored: tuple[str, ...] = field(default_factory=tuple)

    @property
    def words(self) -> frozenset[str]:
        """Every known word and phrase."""
        return frozenset(self.to_category)

    def category(self, word: str) -> str | None:
        """The category of a normalized word or phrase, None when unknown."""
        return self.to_category.get(word)


def parse_synonyms(text: str, source: str) -> SynonymTable:
    """Parse the table; a malformed line raises a SaliencyLabError naming source:line."""
    categories: list[str] = []
    inverse: dict[str, str] = {}
    ignored: list[str] = []
    where: dict[str, int] = {}
    for lineno, raw in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [" ".join(f.split()).lower() for f in line.split(",")]
        if not fields[0]:
            raise SaliencyLabError(
                f"{source}:{lineno}: line starts with an empty category name; "
                "write `category, synonym1, synonym2, ...`"
            )
        cat = fields[0]
        if cat in categories:
            raise SaliencyLabError(
                f"{source}:{lineno}: category {cat!r} already defined on line {where[cat]}; "
                "merge the two lines into one"
            )
        categories.append(cat)
        where[cat] = lineno
        for syn in fields:
            if not syn:
                continue
            if len(syn.split()) > 2:
                ignored.append(syn)
                continue
            prev = inverse.get(syn)
            if prev is not None and prev != cat:
                raise SaliencyLabError(
                    f"{source}:{lineno}: synonym {syn!r} is listed under both {prev!r} and {cat!r}; "
                    "keep it under one category"
                )
            inverse[syn] = cat
    if not categories:
        raise SaliencyLabError(f"{source}: no categories found; expected lines `category, syn1, syn2, ...`")
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return SynonymTable(tuple(categories), inverse, source, sha, tuple(ignored))


def load_synonyms(path: str | Path | None = None) -> SynonymTable:
    """Load `path`, or the project's own table when `path` is None."""
    if path is None:
        text = resources.files("saliency_lab").joinpath("assets").joinpath(DEFAULT_SYNONYMS).read_text("utf-8")
        return parse_synonyms(text, f"builtin:{DEFAULT_SYNONYMS}")
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise SaliencyLabError(f"{p}: cannot read synonym file ({exc.strerror}); check the --synonyms path") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SaliencyLabError(
            f"{p}: synonym file is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    return parse_synonyms(text, str(p))
