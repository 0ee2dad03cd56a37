"""The token explorer's data: every sample's output with each token's scores, label, per-layer values, its
saliency row over prior outputs and (with `--rows all`) over image patches, and the sample's image.

Everything is embedded in the page as one JSON document that reports/explorer.js renders. Scores come from
the named query `explorer_tokens` (every column `token_scores()` defines: the score family is read from the
data, not listed here); per-layer values from `token_layers`; rows from the run's `rows` table, normalized
like the maps (S_raw / row_l2 per layer, averaged over the score layers).

Size: numbers are rounded to 4 significant digits; images (thumbnails) and image-patch maps share one byte
budget (`ReportConfig.image_budget_mb`), filled in sample order; what does not fit is listed in the page.
"""

from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from saliency_lab.report.data import RunData

# token_scores() columns that are bookkeeping, not scores.
_NOT_SCORES = {
    "run_id",
    "sample_id",
    "step",
    "token_text",
    "char_start",
    "char_end",
    "label",
    "object",
    "n_layers",
    "layer",
    "image_id",
}


def _r(x: Any) -> float | None:
    """4 significant digits, None for missing / non-finite (JSON has no NaN)."""
    if x is None:
        return None
    v = float(x)
    if not math.isfinite(v):
        return None
    return float(f"{v:.4g}")


@dataclass
class ExplorerData:
    """The token explorer's data document and what the size budget left out of it."""

    doc: dict[str, Any]
    dropped: list[str] = field(default_factory=list)  # what the size budget left out, said in the page

    def to_script_json(self) -> str:
        """The document as compact JSON safe inside a <script> element (<, >, & escaped)."""
        text = json.dumps(self.doc, separators=(",", ":"), allow_nan=False)
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def score_family(frame: pl.DataFrame) -> list[str]:
    """The float columns of a token or layer frame that are scores (whatever token_scores() defines), in
    the registry's order (saliency_lab.store.scores) where it names them."""
    from saliency_lab.store.scores import SCORE_NAMES

    found = [c for c, t in frame.schema.items() if c not in _NOT_SCORES and t.is_float()]
    rank = {n: i for i, n in enumerate(SCORE_NAMES)}
    return sorted(found, key=lambda c: (rank.get(c, len(rank)), found.index(c)))


def query_tokens(
    runs: list[RunData], labelset: str | None, layers: list[int] | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(explorer_tokens, token_layers) over all runs, from the catalog's named queries."""
    from saliency_lab.store.catalog import open_catalog

    params = {
        "labels": labelset or "",
        "normalization": "row",
        "layers": ",".join(str(int(x)) for x in layers) if layers else "NULL",
    }
    with open_catalog([str(r.path) for r in runs]) as cat:
        toks = cat.query("explorer_tokens", params)
        per_layer = cat.query("token_layers", {"normalization": "row"})
    return toks, per_layer


def build_explorer(
    runs: list[RunData],
    labelset: str | None,
    layers: list[int] | None,
    layers_by_run: dict[str, list[int]],
    default_score: str,
    budget_bytes: int,
    image_px: int,
) -> ExplorerData:
    """The explorer document of every run's tokens, scores and per-layer values, cut to `budget_bytes`."""
    toks, per_layer = query_tokens(runs, labelset, layers)
    family = score_family(toks)
    order = [default_score] + [s for s in family if s != default_score] if default_score in family else family
    budget = _Budget(budget_bytes)
    images = _Images()
    layer_values = score_family(per_layer)
    lay = _layers_index(per_layer, layer_values)
    samples_out: list[dict[str, Any]] = []
    runs_out = []
    for ri, run in enumerate(runs):
        rmode = run.rows_mode() if run.has_rows() else None
        used = layers_by_run.get(run.run_id, [])
        runs_out.append({"id": run.run_id, "rows": rmode, "layers": used})
        rt = toks.filter(pl.col("run_id") == run.run_id)
        by_sample = {sid: sub for (sid,), sub in rt.group_by(["sample_id"], maintain_order=True)}
        rows = _RowReader(run, used) if rmode else None
        ok = run.samples.filter(pl.col("status") == "ok").sort("sample_id")
        for srow in ok.iter_rows(named=True):
            sid = srow["sample_id"]
            sub = by_sample.get(sid)
            if sub is None:
                continue
            samples_out.append(
                _sample(
                    ri,
                    srow,
                    sub.sort("step"),
                    order,
                    lay.get((run.run_id, sid), {}),
                    rows,
                    budget,
                    images,
                    image_px,
                    run.run_id,
                )
            )
    doc = {
        "scores": order,
        "default": order[0] if order else None,
        "layer_values": layer_values,
        "runs": runs_out,
        "samples": samples_out,
        "images": images.uris,
        "labelset": labelset,
        "dropped": budget.notes(),
    }
    return ExplorerData(doc=doc, dropped=budget.notes())


def _layers_index(
    per_layer: pl.DataFrame, values: list[str]
) -> dict[tuple[str, str], dict[int, list[list[Any]]]]:
    """(run, sample) -> step -> [[layer, value of each of `values`], ...]."""
    out: dict[tuple[str, str], dict[int, list[list[Any]]]] = {}
    for r in per_layer.select("run_id", "sample_id", "step", "layer", *values).iter_rows():
        run_id, sid, step, layer, *vals = r
        out.setdefault((run_id, sid), {}).setdefault(int(step), []).append(
            [int(layer), *(_r(v) for v in vals)]
        )
    return out


def _sample(
    ri: int,
    srow: dict[str, Any],
    sub: pl.DataFrame,
    order: list[str],
    layers: dict[int, list[list[Any]]],
    rows: _RowReader | None,
    budget: _Budget,
    images: _Images,
    image_px: int,
    run_id: str,
) -> dict[str, Any]:
    steps = [int(s) for s in sub["step"].to_list()]
    labels = sub["label"].to_list()
    objects = sub["object"].to_list()
    out: dict[str, Any] = {
        "r": ri,
        "id": srow["sample_id"],
        "text": srow.get("output_text") or "",
        "tok": [
            [_int(a), _int(b)]
            for a, b in zip(sub["char_start"].to_list(), sub["char_end"].to_list(), strict=True)
        ],
        "tt": sub["token_text"].to_list(),
        "st": steps,
        "lab": [None if v is None else int(v) for v in labels],
        "obj": objects,
        "s": {name: [_r(v) for v in sub[name].to_list()] for name in order},
        "lay": [layers.get(s, []) for s in steps],
        "cats": sorted({o for o in objects if o}),
    }
    if rows is not None:
        out_rows, patches, grid = rows.sample(srow, steps)
        out["row"] = out_rows
        if patches is not None:
            key = f"{run_id}/{srow['sample_id']}"
            cost = sum(len(p) for p in patches if p)
            if budget.take(cost, f"image-patch saliency of {key}"):
                out["patch"] = patches
                out["grid"] = grid
    img = srow.get("image_path")
    if img:
        idx = images.index_of(img, image_px, budget)
        if isinstance(idx, int):
            out["img"] = idx
        else:
            out["img_note"] = idx
    return out


class _Images:
    """Unique images as data URIs (runs over the same images share one copy), charged once to the budget."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self.index: dict[str, int | str] = {}

    def index_of(self, path: str, px: int, budget: _Budget) -> int | str:
        if path not in self.index:
            uri = _thumbnail(path, px)
            if uri is None:
                self.index[path] = f"image {Path(path).name} could not be read"
            elif budget.take(len(uri), f"image of {path}"):
                self.uris.append(uri)
                self.index[path] = len(self.uris) - 1
            else:
                self.index[path] = "image left out: the report's embedded media budget was used up"
        return self.index[path]


def _int(x: Any) -> int | None:
    return None if x is None else int(x)


class _Budget:
    def __init__(self, total: int) -> None:
        self.left = total
        self.total = total
        self.dropped: dict[str, int] = {}

    def take(self, nbytes: int, what: str) -> bool:
        if nbytes <= self.left:
            self.left -= nbytes
            return True
        kind = what.split(" of ")[0]
        self.dropped[kind] = self.dropped.get(kind, 0) + 1
        return False

    def notes(self) -> list[str]:
        return [
            f"{n} {kind}{'s' if n != 1 else ''} left out (embedded media budget "
            f"{self.total / 1e6:.1f} MB reached)"
            for kind, n in self.dropped.items()
        ]


class _RowReader:
    """A run's saliency rows, normalized and averaged over the score layers, per sample."""

    def __init__(self, run: RunData, layers: list[int]) -> None:
        parts = sorted((run.path / "rows").glob("shard=*/part-*.parquet"))
        self.rows = pl.read_parquet(parts).sort("sample_id", "step", "layer") if parts else None
        sal_parts = sorted((run.path / "saliency").glob("shard=*/part-*.parquet"))
        sal = pl.read_parquet(sal_parts, columns=["sample_id", "step", "layer", "row_l2"])
        self.norms = {(s, int(st), int(ly)): float(v) for s, st, ly, v in sal.iter_rows()}
        self.by_sample = (
            {sid: sub for (sid,), sub in self.rows.group_by(["sample_id"])} if self.rows is not None else {}
        )
        available = (
            sorted({int(x) for x in self.rows["layer"].unique().to_list()}) if self.rows is not None else []
        )
        self.layers = [x for x in layers if x in available] or available

    def sample(
        self, srow: dict[str, Any], steps: list[int]
    ) -> tuple[list[list[float | None] | None], list[str | None] | None, list[int] | None]:
        """Per step: the row over prior outputs (4 significant digits) and, for `all` rows with an image
        segment, the patch values quantized to one byte each (base64; relative to the token's largest patch)."""
        sid = srow["sample_id"]
        sub = self.by_sample.get(sid)
        n_input = srow.get("n_input")
        seg = srow.get("seg_image") or []
        img_span = (int(seg[0]), int(seg[1])) if len(seg) == 2 and seg[1] > seg[0] else None
        acc: dict[int, list[np.ndarray]] = {}
        pacc: dict[int, list[np.ndarray]] = {}
        if sub is not None:
            for step, layer, keys, values in sub.select("step", "layer", "keys", "values").iter_rows():
                if int(layer) not in self.layers or values is None:
                    continue
                l2 = self.norms.get((sid, int(step), int(layer)))
                if not l2 or not l2 > 0:
                    continue
                vals = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64) / l2
                if keys == "all":
                    if n_input is None:
                        continue
                    if img_span is not None:
                        pacc.setdefault(int(step), []).append(vals[img_span[0] : img_span[1]])
                    vals = vals[int(n_input) : int(n_input) + int(step)]
                if int(step) >= 1:  # step 0 has no earlier output, but its image patches count
                    acc.setdefault(int(step), []).append(vals[: int(step)])
        out_rows: list[list[float | None] | None] = []
        for s in steps:
            got = acc.get(s)
            out_rows.append(None if not got else [_r(v) for v in np.nanmean(np.vstack(got), axis=0)])
        if not pacc:
            return out_rows, None, None
        patches: list[str | None] = []
        n_patch = img_span[1] - img_span[0] if img_span else 0
        for s in steps:
            got = pacc.get(s)
            if not got:
                patches.append(None)
                continue
            v = np.nanmean(np.vstack(got), axis=0)
            top = float(np.nanmax(v)) if np.isfinite(v).any() else 0.0
            q = (
                np.zeros(len(v), dtype=np.uint8)
                if top <= 0
                else np.clip(np.nan_to_num(v / top) * 255, 0, 255)
            )
            patches.append(base64.b64encode(bytes(np.asarray(q, dtype=np.uint8))).decode("ascii"))
        side = int(round(math.sqrt(n_patch)))
        grid = [side, side] if side * side == n_patch else [1, n_patch]
        return out_rows, patches, grid


def _thumbnail(path: str, px: int) -> str | None:
    """The image as a PNG data URI, its longest side at most `px` pixels; None when unreadable."""
    try:
        from PIL import Image

        with Image.open(Path(path)) as src:
            im = src.convert("RGB")
            im.thumbnail((px, px))
            buf = io.BytesIO()
            im.save(buf, format="PNG", optimize=True)
    except (OSError, ValueError):
        return None
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
