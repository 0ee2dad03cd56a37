"""Independent numpy computations over a run's files, for checking the SQL macros and the analysis."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def read(run_dir: Path, table: str) -> dict[str, np.ndarray]:
    files = sorted((Path(run_dir) / table).glob("shard=*/part-*.parquet"))
    cols: dict[str, list] = defaultdict(list)
    for f in files:
        t = pq.read_table(f)
        for name in t.column_names:
            cols[name] += t.column(name).to_pylist()
    return {k: np.array(v, dtype=object if k in ("run_id", "sample_id", "token_text") else None)
            for k, v in cols.items()}


def token_scores(run_dir: Path, n_layers: int, layers: list[int] | None = None,
                 normalization: str = "row") -> dict[tuple[str, int], dict[str, float]]:
    """{(sample_id, step): {score: value}} for every score of the family, by plain loops, for the given target
    layers (shares: segment sum / (system + image + prompt + output sums) per layer, then the layer mean)."""
    s = read(run_dir, "saliency")
    target = set(layers) if layers else set(range(n_layers // 2, n_layers))
    frob: dict[tuple[str, int], float] = defaultdict(float)
    for sid, layer, r in zip(s["sample_id"], s["layer"], s["row_l2"], strict=True):
        frob[(sid, int(layer))] += float(r) ** 2
    acc: dict[tuple[str, int], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for i in range(len(s["step"])):
        layer = int(s["layer"][i])
        if layer not in target:
            continue
        sid, step = s["sample_id"][i], int(s["step"][i])
        norm = {"row": float(s["row_l2"][i]), "none": 1.0, "matrix": np.sqrt(frob[(sid, layer)])}[normalization]
        a = acc[(sid, step)]
        if step >= 1:
            a["out_mean"].append(float(s["out_sum"][i]) / (norm * step))
        if s["prev"][i] is not None and not np.isnan(s["prev"][i]):
            a["prev"].append(float(s["prev"][i]) / norm)
        a["attn_out"].append(float(s["attn_out_sum"][i]))
        a["lookback_ratio"].append(1.0 - float(s["attn_out_sum"][i]))
        seg = {k: float(s[c][i]) for k, c in (("system", "sys_sum"), ("image", "img_sum"),
                                               ("prompt", "prompt_sum"), ("out", "out_sum"))}
        total = sum(seg.values())
        if total > 0:
            for k, v in seg.items():
                a[f"{k}_share"].append(v / total)
            a["source_share"].append((seg["prompt"] + seg["image"]) / total)
            if s["prev"][i] is not None and not np.isnan(s["prev"][i]):
                a["prev_share"].append(float(s["prev"][i]) / total)
    out = {}
    for key, a in acc.items():
        out[key] = {m: (float(np.mean(a[m])) if a[m] else None) for m in SCORE_COLUMNS}
        out[key]["step"] = float(key[1])
    return out


#: every score of the family but the step, as the loops above compute them
SCORE_COLUMNS = ("out_mean", "prev", "out_share", "prev_share", "prompt_share", "image_share", "system_share",
                 "source_share", "attn_out", "lookback_ratio")


def labels(run_dir: Path, labelset: str = "chair") -> dict[tuple[str, int], int]:
    t = pq.read_table(Path(run_dir) / "labels" / f"{labelset}.parquet")
    return {(sid, int(st)): int(lb) for sid, st, lb in zip(t.column("sample_id").to_pylist(),
                                                          t.column("step").to_pylist(),
                                                          t.column("label").to_pylist(), strict=True)}


def labeled_arrays(run_dir: Path, n_layers: int, measure: str = "out_mean", layers=None, normalization="row",
                   labelset: str = "chair"):
    """(x, y, sample_ids) of labeled tokens with a non-null `measure`, sorted by (sample, step)."""
    sc = token_scores(run_dir, n_layers, layers, normalization)
    lab = labels(run_dir, labelset)
    keys = sorted(k for k in lab if k in sc and sc[k][measure] is not None and sc[k]["out_mean"] is not None)
    x = np.array([sc[k][measure] for k in keys])
    y = np.array([lab[k] for k in keys])
    g = np.array([k[0] for k in keys])
    return x, y, g
