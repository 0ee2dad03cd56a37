"""run.json: what a run is and how it was made (docs/capture.md, "run.json"); written here, read by
`saliency_lab.store.runs`.

Several shard processes may start a run at the same moment, so run.json is created with an exclusive
create-or-compare: the first process writes it atomically (hard link of a fully written temporary file),
every other process reads it and checks that its own configuration is the same. A different configuration,
or a dataset written by a newer toolkit, is refused with a one-line error.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from saliency_lab.config import CaptureConfig
from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.runs import RUN_JSON, read_run_info
from saliency_lab.store.schema import SCHEMA_VERSION
from saliency_lab.version import __version__

__all__ = ["CONVENTIONS", "RUN_JSON", "build_run_info", "read_run_info", "write_or_check_run_info"]

# Fields that may differ between the processes filling one run (they do not change the numbers, or they
# describe the process rather than the run). Everything else must match exactly.
_VOLATILE_TOP = ("created_at", "created_by", "toolkit_version", "threads", "batch")
# The model is identified by its weights hash, not by where it sits: shards on other machines (or a
# resume from another working directory) load the same weights from another path.
_VOLATILE_MODEL = ("device", "id", "path")
# Exact chunking of the single pass (--max-pass-tokens) is a memory setting: a resume may change it.
_VOLATILE_SALIENCY = ("max_pass_tokens",)

# Choices that change the numbers but are not plain config fields, written so a reader of run.json knows
# how to interpret the saliency table without reading the code.
CONVENTIONS = {
    "saliency_row": "query row q = P-1 for generated token x_P (loss L_P = -log p(x_P | x_<P))",
    "stored_values": "raw S_raw sums per key segment and the row L2 norm; no normalization stored",
    "normalization": "derived at query time: row (default, S_raw / row_l2) | none | matrix",
    "default_target_layers": "upper half of the language model layers (layer >= n_layers // 2)",
    "attn_out_sum": "head-mean post-softmax attention from the query row to prior output keys",
    "per_sample_seed": "(decoding.seed + first 8 bytes of sha256(sample_id), unsigned big-endian) mod 2**63 "
    "seeds the global RNGs and the decoding loop's torch.Generator of every sample (never its "
    "position in the run), so sharded and resumed runs reproduce an uninterrupted one; strategy sample draws "
    "like SGRS's first draw, so sample and sgrs with alpha 0 and the same seed and K emit the same tokens",
    "shard_assignment": "first 8 bytes of sha256(sample_id) (unsigned big-endian) modulo shards",
    "loss_gradient": "dL/dz = p - e_c with the c entry computed as minus the sum of the other probabilities "
    "(no cancellation for confident tokens; saliency_lab/saliency/loss.py, toolkit 0.2.0 on)",
}


def build_run_info(
    cfg: CaptureConfig, run_id: str, model_info: dict[str, Any], manifest_path: Path, manifest_sha256: str
) -> dict[str, Any]:
    """The run.json document for a capture about to start."""
    dec = cfg.to_json()
    return {
        "run_id": run_id,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "created_by": f"{socket.gethostname()}:{os.getpid()}",
        "toolkit_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "model": dict(model_info),
        "decoding": dec["decoding"],
        "saliency": {k: v for k, v in dec["saliency"].items() if k != "verify"},
        "manifest": {"path": str(manifest_path), "sha256": manifest_sha256},
        "shards": int(cfg.shard[1]),
        "conventions": dict(CONVENTIONS),
    }


def _comparable(info: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in info.items() if k not in _VOLATILE_TOP}
    if isinstance(out.get("model"), dict):
        out["model"] = {k: v for k, v in out["model"].items() if k not in _VOLATILE_MODEL}
    if isinstance(out.get("saliency"), dict):
        out["saliency"] = {k: v for k, v in out["saliency"].items() if k not in _VOLATILE_SALIENCY}
        out["saliency"].setdefault("precision", "model")  # runs made before the option computed in the model's dtype
    # The manifest may be moved between machines; its content hash is what must match.
    if isinstance(out.get("manifest"), dict):
        out["manifest"] = {"sha256": out["manifest"].get("sha256")}
    return json.loads(json.dumps(out))  # normalise tuples to lists


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = []
        for k in sorted(set(a) | set(b)):
            diffs += _differences(a.get(k), b.get(k), f"{prefix}{k}.")
        return diffs
    return [] if a == b else [f"{prefix.rstrip('.')} ({a!r} there, {b!r} here)"]


def write_or_check_run_info(run_dir: str | Path, info: dict[str, Any]) -> dict[str, Any]:
    """Create run.json, or check that an existing one describes the same run; return the stored document."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SaliencyLabError(f"cannot create the run folder {run_dir} ({exc.strerror}); pick a writable --out") from None
    path = run_dir / RUN_JSON
    if not path.exists():
        tmp = run_dir / f".run.json.{socket.gethostname()}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(info, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        try:
            os.link(tmp, path)  # atomic and exclusive: exactly one concurrent creator wins
            return info
        except FileExistsError:
            pass  # another shard process created it first; compare below
        finally:
            tmp.unlink(missing_ok=True)
    existing = read_run_info(run_dir)
    diffs = _differences(_comparable(existing), _comparable(info))
    if diffs:
        shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
        raise SaliencyLabError(
            f"{path}: this run was made with a different configuration: {shown}; "
            "use the same settings to resume it, or pick a new --run-id or --out for a new run"
        )
    return existing
