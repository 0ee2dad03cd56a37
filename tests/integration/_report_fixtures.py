"""Shared helpers of the report integration tests (imported explicitly)."""

from __future__ import annotations

import importlib.util
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

_UNIT = Path(__file__).resolve().parents[1] / "unit" / "_report_synth.py"
_spec = importlib.util.spec_from_file_location("_report_synth", _UNIT)
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
synthetic_run = _mod.synthetic_run
add_rows = _mod.add_rows

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def require_chromium() -> str:
    """The Chromium binary; skip locally when missing, fail loudly under CI."""
    from saliency_lab.report.browser import INSTALL_HINT, find_chromium

    exe = find_chromium()
    if exe is None:
        msg = f"headless Chromium is needed for the report browser test: {INSTALL_HINT}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg + " (CI is set, so this is a failure, not a skip)")
        pytest.skip(msg)
    return exe


class Cells(HTMLParser):
    """Collects every table cell's data-key / data-value and every section / needs marker."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.sections: list[str] = []
        self.needs: list[str] = []
        self.charts: list[str] = []
        self.tables: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and a.get("data-key") is not None and a.get("data-value") is not None:
            self.values[a["data-key"]] = a["data-value"]
        if tag == "section":
            self.sections.append(a.get("id"))
        if a.get("data-needs"):
            self.needs.append(a["data-needs"])
        if tag == "div" and a.get("data-chart"):
            self.charts.append(a["data-chart"])
        if tag == "table" and a.get("data-table"):
            self.tables.append(a["data-table"])


def parse(html: str) -> Cells:
    p = Cells()
    p.feed(html)
    return p


def external_loads(html: str) -> list[str]:
    """Attributes or CSS that would make the browser fetch something from another origin."""
    # Script bodies are JavaScript (the Vega bundle mentions URLs in strings it never loads); drop them.
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "<script></script>", html, flags=re.S | re.I)
    bad = re.findall(r"""\b(?:src|href|srcset|action|data|poster)\s*=\s*["']?\s*((?:https?:)?//[^"'\s>]+)""",
                     markup, flags=re.I)
    bad += re.findall(r"""url\(\s*["']?((?:https?:)?//[^)"']+)""", markup, flags=re.I)
    bad += re.findall(r"""@import\s+["']?([^;"']+)""", markup, flags=re.I)
    bad += [m for m in re.findall(r"<link\b[^>]*>", markup, flags=re.I)]
    bad += re.findall(r"<(?:iframe|object|embed)\b[^>]*>", markup, flags=re.I)
    return bad
