"""`<run>/intervention.json`: the saliency-decay settings and, per sample, the output steps whose token was decayed
(the online rule decides them while decoding, so they are data of the run, written beside its tables)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from saliency_lab.config import SaliencyDecayConfig

INTERVENTION_JSON = "intervention.json"


def write_intervention(run_dir: Path, decay: SaliencyDecayConfig, decayed: dict[str, list[int]]) -> None:
    """Merge this process's decayed steps into intervention.json (atomic; earlier resumed parts are kept)."""
    path = Path(run_dir) / INTERVENTION_JSON
    old = json.loads(path.read_text()) if path.exists() else {}
    steps = {**old.get("decayed_steps", {}), **decayed}
    doc = {"intervention": "saliency_decay", "decay": asdict(decay), "decayed_steps": steps}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
    tmp.replace(path)
