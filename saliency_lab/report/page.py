"""The page model handed to the template: sections made of blocks (tables, charts, galleries, notes)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import altair as alt

from saliency_lab.report.charts import spec
from saliency_lab.report.tables import Table


@dataclass
class Section:
    """One section of the report page: title, intro, and its blocks (tables, notes, charts, cases)."""

    id: str
    title: str
    intro: str | None = None
    needs: str | None = None  # shown when the section cannot be filled ("needs labels: ...")
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def table(self, table: Table) -> None:
        """Append a table block."""
        self.blocks.append({"kind": "table", "table": table})

    def note(self, text: str) -> None:
        """Append a note paragraph."""
        self.blocks.append({"kind": "note", "text": text})

    def heading(self, text: str) -> None:
        """Append a sub-heading."""
        self.blocks.append({"kind": "heading", "text": text})

    def cases(self, key: str, title: str, cases: list[dict[str, Any]]) -> None:
        """Append a list of failure cases under `title`."""
        self.blocks.append({"kind": "cases", "key": key, "title": title, "cases": cases})


class Charts:
    """Collects chart specs under unique DOM ids; each spec is validated when added."""

    def __init__(self) -> None:
        self.specs: dict[str, dict[str, Any]] = {}

    def add(self, name: str, chart: alt.TopLevelMixin, caption: str | None = None) -> dict[str, Any]:
        """Register the chart's spec under an id unique on the page (from `name`); the reference to place
        it."""
        base = "chart-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        cid, k = base, 2
        while cid in self.specs:
            cid, k = f"{base}-{k}", k + 1
        self.specs[cid] = spec(chart)
        return {"chart_id": cid, "caption": caption}

    def block(self, name: str, chart: alt.TopLevelMixin, caption: str | None = None) -> dict[str, Any]:
        """A chart block for `Section.blocks`, registering the chart."""
        return {"kind": "chart", **self.add(name, chart, caption)}

    def row(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """A block placing the given chart references side by side."""
        return {"kind": "charts_row", "charts": items}

    def to_script_json(self) -> str:
        """JSON that is safe inside a <script> element: '<', '>' and '&' only appear as \\u escapes."""
        text = json.dumps(self.specs, separators=(",", ":"), allow_nan=False)
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
