"""Where the non-Python files live: the named SQL queries (queries/) and the report template and stylesheet
(reports/). In the repository they sit at the root, next to the package; a wheel or `pip install .` ships
them inside it as saliency_lab/queries and saliency_lab/reports (the mapping is in setup.py)."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def shipped_dir(name: str, marker: str) -> Path:
    """The folder `name` ("queries" or "reports") that holds the file `marker`: inside the installed package
    first, else at the repository root (a source checkout or an editable install). When neither holds it,
    the in-package location, so the caller's "not found" error names where an install puts it."""
    inside, at_root = PACKAGE_DIR / name, PACKAGE_DIR.parent / name
    for folder in (inside, at_root):
        if (folder / marker).is_file():
            return folder
    return inside
