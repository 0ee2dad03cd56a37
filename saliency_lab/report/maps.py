"""Saliency maps like the paper's Fig. 2/3: for each generated token (row) the saliency toward every prior
output token (column), from the `rows` table captured with `--rows output` (or `all`).

Shown values are row-normalized (S_raw[l, j] / row_l2[l], the toolkit's default `row` normalization) and
averaged over the layers the token score uses, so a map reads on the same scale as the score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from saliency_lab.report.data import RunData


@dataclass
class SaliencyMap:
    """Heat-map cells (output step x earlier token) of one sample and why it was picked."""

    sample_id: str
    reason: str
    cells: list[dict[str, Any]]
    order: list[str]  # axis labels in step order ("12 blue")
    halluc: list[str]  # axis labels of hallucinated tokens
    first_step: int
    last_step: int
    n_output: int
    layers: list[int] = field(default_factory=list)


def token_label(step: int, text: str) -> str:
    """Axis label "step text"; blanks, newlines and EOS shown as symbols, control characters escaped."""
    shown = text.strip() or ("⏎" if "\n" in text else ("␣" if text else "⟨eos⟩"))
    # Control characters (random tiny models emit them) would be invisible or break the axis layout.
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in shown)
    return f"{step:>3} {shown}"


def build_map(run: RunData, sample_id: str, layers: list[int], reason: str, halluc_steps: set[int],
              focus_step: int | None = None, max_steps: int = 40) -> SaliencyMap | str:
    """The map of one sample, or a one-line reason why there is none."""
    rows = run.rows_for(sample_id)
    if rows is None:
        return f"sample {sample_id}: no saliency rows stored"
    toks = run.tokens.filter(pl.col("sample_id") == sample_id).sort("step")
    if toks.height < 2:
        return f"sample {sample_id}: fewer than two output tokens"
    srow = run.samples.filter(pl.col("sample_id") == sample_id)
    n_input = int(srow["n_input"][0]) if srow.height and srow["n_input"][0] is not None else None
    sal = run.saliency_for(sample_id)
    norms: dict[tuple[int, int], float] = {}
    if sal is not None:
        for s, layer, l2 in sal.select("step", "layer", "row_l2").iter_rows():
            norms[(int(s), int(layer))] = float(l2)
    available = sorted({int(v) for v in rows["layer"].to_list()})
    use = [layer for layer in layers if layer in available] or available
    n_out = toks.height
    texts = toks["token_text"].to_list()
    steps = toks["step"].to_list()
    # Window: the focus token near the bottom, with as much preceding context as fits.
    end = n_out if focus_step is None else min(n_out, focus_step + 4)
    start = max(0, end - max_steps)
    matrix = np.full((n_out, n_out), np.nan)
    counts = np.zeros((n_out, n_out))
    for step, layer, keys, values in rows.select("step", "layer", "keys", "values").iter_rows():
        step, layer = int(step), int(layer)
        if layer not in use or step < 1 or step >= n_out or values is None:
            continue
        vals = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
        if keys == "all":
            if n_input is None:
                continue
            vals = vals[n_input: n_input + step]
        vals = vals[:step]
        l2 = norms.get((step, layer))
        if l2 is None or not l2 > 0:
            continue
        m = np.isfinite(vals)
        row = matrix[step, : len(vals)]
        row[m] = np.where(np.isnan(row[m]), 0.0, row[m]) + vals[m] / l2
        counts[step, : len(vals)][m] += 1
    with np.errstate(invalid="ignore"):
        matrix = matrix / np.where(counts > 0, counts, np.nan)
    labels = [token_label(int(s), t) for s, t in zip(steps, texts, strict=True)]
    cells = []
    for q in range(max(start, 1), end):
        for k in range(start, q):
            v = matrix[q, k]
            if np.isfinite(v):
                cells.append({"query": labels[q], "key": labels[k], "value": float(v)})
    if not cells:
        return f"sample {sample_id}: its stored rows hold no values for the chosen layers"
    order = labels[start:end]
    halluc = [labels[i] for i in range(start, end) if int(steps[i]) in halluc_steps]
    return SaliencyMap(sample_id=sample_id, reason=reason, cells=cells, order=order, halluc=halluc,
                       first_step=int(steps[start]), last_step=int(steps[end - 1]), n_output=n_out, layers=use)


def pick_samples(token_scores: pl.DataFrame | None, candidates: list[str], n_each: int = 1
                 ) -> list[tuple[str, str, int | None]]:
    """Automatic choice: the clearest hallucination (hallucinated token with the lowest score) and the
    clearest correct caption (no hallucinated token, highest mean score). Returns (sample_id, reason, focus).

    `token_scores`: sample_id, step, score, label (label null when unlabeled)."""
    if token_scores is None or token_scores.height == 0:
        return [(sid, "first sample with saliency rows", None) for sid in candidates[:1]]
    everything = token_scores.filter(pl.col("sample_id").is_in(candidates))
    ts = everything.filter(pl.col("score").is_not_null())
    picked: list[tuple[str, str, int | None]] = []
    if "label" in ts.columns and ts["label"].is_not_null().any():
        hal = ts.filter(pl.col("label") == 1).sort(["score", "sample_id", "step"])
        for sid, step, score in hal.select("sample_id", "step", "score").iter_rows():
            if len(picked) >= n_each:
                break
            if sid not in [p[0] for p in picked]:
                picked.append((sid, f"clearest hallucination: step {step} scores {score:.4f}, the lowest "
                                    "score of any hallucinated token", int(step)))
        # "Clean" looks at every token, including step 0 which has no out_mean score.
        per = everything.group_by("sample_id").agg(
            pl.col("label").fill_null(0).max().alias("any_h"),
            pl.col("label").is_not_null().sum().alias("n_lab"),
            pl.col("score").mean().alias("mean"),
        ).filter(pl.col("mean").is_not_null())
        clean = per.filter((pl.col("any_h") == 0) & (pl.col("n_lab") > 0)).sort(["mean", "sample_id"],
                                                                                  descending=[True, False])
        for sid, mean in clean.select("sample_id", "mean").iter_rows():
            if sum(1 for p in picked if p[1].startswith("clearest correct")) >= n_each:
                break
            if sid not in [p[0] for p in picked]:
                picked.append((sid, f"clearest correct caption: labeled objects all correct, mean score {mean:.4f}",
                               None))
        if not any(p[1].startswith("clearest correct") for p in picked):
            # Every labeled caption has a hallucination: show the correct token that scores highest instead.
            cor = ts.filter(pl.col("label") == 0).sort(["score", "sample_id", "step"], descending=[True, False, False])
            for sid, step, score in cor.select("sample_id", "step", "score").iter_rows():
                if sid not in [p[0] for p in picked]:
                    picked.append((sid, f"clearest correct token: step {step} scores {score:.4f}, the highest score "
                                        "of any correct token (no caption is free of hallucinations)", int(step)))
                    break
    if not picked:
        per = ts.group_by("sample_id").agg(pl.col("score").min().alias("low"), pl.col("score").mean().alias("mean"))
        low = per.sort(["low", "sample_id"]).row(0, named=True)
        high = per.sort(["mean", "sample_id"], descending=[True, False]).row(0, named=True)
        picked.append((low["sample_id"], f"lowest token score ({low['low']:.4f}) among unlabeled samples", None))
        if high["sample_id"] != low["sample_id"]:
            picked.append((high["sample_id"], f"highest mean token score ({high['mean']:.4f})", None))
    return picked
