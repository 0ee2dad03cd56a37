"""Synthetic runs with the real on-disk layout and schema, for tests and benchmarks.

A synthetic run is made of captions built from a small word list; object words are labeled (1 =
hallucinated with probability `p_halluc`). Saliency is drawn so that, in the upper half of the layers,
hallucinated tokens have lower Eq. 6 out_mean and lower normalized prev than correct ones (the effect the
paper reports), while the lower layers carry no signal. Parts are written with the real writer
(`saliency_lab.store.writer.write_part_atomic`: same Parquet settings, sorting and atomic rename).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from saliency_lab.store.schema import SCHEMA_VERSION, table_from_columns
from saliency_lab.store.writer import part_name, sort_table, write_part_atomic

# (word, token pieces, is_object). Two-piece words exercise multi-subtoken mentions.
_WORDS = [
    (" a", [" a"], False),
    (" the", [" the"], False),
    (" on", [" on"], False),
    (" with", [" with"], False),
    (" and", [" and"], False),
    (" sitting", [" sitt", "ing"], False),
    (" near", [" near"], False),
    (" cat", [" cat"], True),
    (" dog", [" dog"], True),
    (" table", [" table"], True),
    (" surfboard", [" surf", "board"], True),
    (" person", [" person"], True),
    (" bus", [" bus"], True),
]


@dataclass
class SyntheticSpec:
    """Shape of a synthetic run: sizes, label rate and the saliency effect drawn in the upper layers."""

    n_samples: int = 24
    min_steps: int = 8
    max_steps: int = 24
    n_layers: int = 4
    n_heads: int = 4
    n_candidates: int = 0  # K; 0 = no candidates table
    n_error: int = 1  # samples with status 'error' (no tokens)
    p_halluc: float = 0.35
    effect: float = 0.25  # how much lower hallucinated tokens' saliency is in the upper layers
    samples_per_part: int = 16
    n_shards: int = 1
    labelset: str = "chair"
    seed: int = 0


def make_run(root: str | Path, run_id: str = "synth", spec: SyntheticSpec | None = None) -> Path:
    """Write a synthetic run to `<root>/<run_id>` and return its folder."""
    spec = spec or SyntheticSpec()
    rng = np.random.default_rng(spec.seed)
    run_dir = Path(root) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    samples, per_sample = _captions(rng, spec, run_id)
    tables = _tables(rng, spec, run_id, samples, per_sample)
    _write_tables(run_dir, spec, samples, tables)
    _write_run_json(run_dir, run_id, spec)
    _write_labels(run_dir, spec, tables["labels"], samples)
    return run_dir


Piece = tuple[str, int, int, str]  # (text, mention or -1, subtoken, word)


def _captions(
    rng: np.random.Generator, spec: SyntheticSpec, run_id: str
) -> tuple[list[dict[str, Any]], list[list[Piece]]]:
    samples: list[dict[str, Any]] = []
    per_sample: list[list[Piece]] = []
    for i in range(spec.n_samples):
        sid = f"s{i:06d}"
        if i < spec.n_error:
            samples.append({"sample_id": sid, "status": "error", "text": None, "pieces": []})
            per_sample.append([])
            continue
        n_target = int(rng.integers(spec.min_steps, spec.max_steps + 1))
        pieces: list[Piece] = []
        n_mentions = 0
        while len(pieces) < n_target - 1:
            w = int(rng.integers(len(_WORDS)))
            word, toks, is_obj = _WORDS[w]
            mention = n_mentions if is_obj else -1
            n_mentions += int(is_obj)
            for k, t in enumerate(toks):
                pieces.append((t, mention, k, word.strip()))
        pieces = pieces[: n_target - 1] + [("", -1, 0, "")]  # EOS: empty text, empty span
        samples.append(
            {"sample_id": sid, "status": "ok", "text": "".join(p[0] for p in pieces), "pieces": pieces}
        )
        per_sample.append(pieces)
    return samples, per_sample


def _tables(
    rng: np.random.Generator,
    spec: SyntheticSpec,
    run_id: str,
    samples: list[dict[str, Any]],
    per_sample: list[list[Piece]],
) -> dict[str, dict[str, Any]]:
    tok: dict[str, list[Any]] = {
        k: [] for k in ("sample_id", "step", "token_text", "char_start", "char_end", "mention", "sub", "word")
    }
    for s, pieces in zip(samples, per_sample, strict=True):
        pos = 0
        for k, (text, mention_k, sub, word) in enumerate(pieces):
            tok["sample_id"].append(s["sample_id"])
            tok["step"].append(k)
            tok["token_text"].append(text)
            tok["char_start"].append(pos)
            tok["char_end"].append(pos + len(text))
            tok["mention"].append(mention_k)
            tok["sub"].append(sub)
            tok["word"].append(word)
            pos += len(text)
    n = len(tok["step"])
    step = np.asarray(tok["step"], dtype=np.int32)
    mention = np.asarray(tok["mention"])
    sid = np.asarray(tok["sample_id"], dtype=object)
    # One hallucination draw per mention, shared by its subtokens.
    mention_key = np.char.add(sid.astype(str), np.char.add(":", mention.astype(str)))
    uniq, inv = np.unique(mention_key, return_inverse=True)
    halluc_m = rng.random(len(uniq)) < spec.p_halluc
    is_obj = mention >= 0
    label = np.where(is_obj, halluc_m[inv].astype(np.int8), -1)
    vocab = {t: i + 3 for i, t in enumerate(sorted({p for w in _WORDS for p in w[1]}))}
    token_id = np.array([vocab.get(t, 2) for t in tok["token_text"]], dtype=np.int32)
    n_input = 20
    tokens = {
        "run_id": [run_id] * n,
        "sample_id": tok["sample_id"],
        "step": step,
        "position": step + n_input,
        "token_id": token_id,
        "token_text": tok["token_text"],
        "char_start": tok["char_start"],
        "char_end": tok["char_end"],
        "logprob": -rng.exponential(0.7, n).astype(np.float32),
        "entropy": rng.exponential(1.0, n).astype(np.float32),
    }
    sal = _saliency(rng, spec, run_id, tok["sample_id"], step, label)
    lab_mask = label >= 0
    labels = {
        "run_id": [run_id] * int(lab_mask.sum()),
        "sample_id": sid[lab_mask].tolist(),
        "step": step[lab_mask],
        "label": label[lab_mask],
        "source": [spec.labelset] * int(lab_mask.sum()),
        "object": [w for w, m in zip(tok["word"], lab_mask, strict=True) if m],
        "mention_id": mention[lab_mask].astype(np.int32),
        "subtoken": np.asarray(tok["sub"])[lab_mask],
    }
    out = {"tokens": tokens, "saliency": sal, "labels": labels}
    if spec.n_candidates > 0:
        out["candidates"] = _candidates(rng, spec, run_id, sal, token_id)
    return out


def _saliency(rng, spec: SyntheticSpec, run_id: str, sample_ids, step, label):
    n, n_layers = len(step), spec.n_layers
    upper = np.arange(n_layers) >= n_layers // 2
    # Latent per-token level shared across layers, lowered for hallucinated tokens in the upper layers.
    base = rng.beta(4.0, 3.0, n)
    shift = np.where(label == 1, spec.effect, 0.0)
    lvl = base[:, None] - shift[:, None] * upper[None, :] + rng.normal(0, 0.08, (n, n_layers))
    lvl = np.clip(lvl, 0.005, 0.995)
    row_l2 = rng.lognormal(0.0, 0.5, (n, n_layers))
    stepf = np.maximum(step, 1)[:, None].astype(np.float64)
    out_sum = np.where(step[:, None] >= 1, lvl * row_l2 * stepf, 0.0)
    prev_frac = np.clip(lvl + rng.normal(0, 0.1, (n, n_layers)), 0.0, 1.0)
    prev = prev_frac * row_l2
    attn = np.clip(0.3 + 0.1 * rng.standard_normal((n, n_layers)) - 0.03 * (label == 1)[:, None], 0, 1)
    attn = np.where(step[:, None] >= 1, attn, 0.0)
    rep = np.repeat
    prev_valid = rep(step >= 1, n_layers)
    return {
        "run_id": pa.array([run_id] * (n * n_layers)).dictionary_encode(),
        "sample_id": rep(np.asarray(sample_ids, dtype=object), n_layers),
        "step": rep(step, n_layers),
        "layer": np.tile(np.arange(n_layers, dtype=np.int16), n),
        "sys_sum": rng.exponential(0.2, n * n_layers).astype(np.float32),
        "img_sum": rng.exponential(1.0, n * n_layers).astype(np.float32),
        "prompt_sum": rng.exponential(0.5, n * n_layers).astype(np.float32),
        "out_sum": out_sum.ravel().astype(np.float32),
        "prev": pa.array(prev.ravel().astype(np.float32), mask=~prev_valid),
        "row_l2": row_l2.ravel().astype(np.float32),
        "attn_out_sum": attn.ravel().astype(np.float32),
    }


def _candidates(rng, spec: SyntheticSpec, run_id: str, sal, token_id):
    k, n_layers = spec.n_candidates, spec.n_layers
    n_rows = len(sal["step"])
    n_tok = n_rows // n_layers
    # rank 0 is the generated token (same saliency); other ranks draw fresh levels.
    idx = np.repeat(np.arange(n_rows), k)
    rank = np.tile(np.arange(k, dtype=np.int16), n_rows)
    row_l2 = np.asarray(sal["row_l2"])[idx]
    step = np.asarray(sal["step"])[idx]
    lvl = rng.beta(4.0, 3.0, n_rows * k)
    out_sum = np.where(rank == 0, np.asarray(sal["out_sum"])[idx], lvl * row_l2 * np.maximum(step, 1))
    out_sum = np.where(step >= 1, out_sum, 0.0)
    tok_idx = idx // n_layers
    cand_tok = np.where(rank == 0, token_id[tok_idx], 100 + rank)
    prob = np.sort(rng.dirichlet(np.ones(k), n_tok), axis=1)[:, ::-1]
    return {
        "run_id": [run_id] * len(idx),
        "sample_id": np.asarray(sal["sample_id"])[idx],
        "step": step,
        "rank": rank,
        "token_id": cand_tok.astype(np.int32),
        "prob": prob[tok_idx, rank].astype(np.float32),
        "layer": np.asarray(sal["layer"])[idx],
        "out_sum": out_sum.astype(np.float32),
        "prompt_sum": rng.exponential(0.5, len(idx)).astype(np.float32),
        "prev": pa.array((lvl * row_l2).astype(np.float32), mask=step < 1),
        "row_l2": row_l2.astype(np.float32),
    }


def _write_tables(run_dir: Path, spec: SyntheticSpec, samples, tables) -> None:
    n_input = 20
    sample_rows = {
        "run_id": [run_dir.name] * len(samples),
        "sample_id": [s["sample_id"] for s in samples],
        "image_id": [str(i) for i in range(len(samples))],
        "prompt": ["Describe the image."] * len(samples),
        "output_text": [s["text"] for s in samples],
        "n_input": [n_input if s["status"] == "ok" else None for s in samples],
        "n_output": [len(s["pieces"]) if s["status"] == "ok" else None for s in samples],
        "seg_system": [[0, 5]] * len(samples),
        "seg_image": [[5, 15]] * len(samples),
        "seg_prompt": [[15, 20]] * len(samples),
        "status": [s["status"] for s in samples],
        "error": [None if s["status"] == "ok" else "synthetic failure" for s in samples],
        "seconds": [0.1] * len(samples),
    }
    full = {"samples": table_from_columns("samples", sample_rows)}
    for name in ("tokens", "saliency", "candidates"):
        if name in tables:
            full[name] = table_from_columns(name, tables[name])
    ids = [s["sample_id"] for s in samples]
    per = spec.samples_per_part
    # Every table is in sample order (ids are zero-padded, so sorted): each part is a contiguous slice.
    bounds = {
        name: np.asarray(t.column("sample_id").to_numpy(zero_copy_only=False), dtype=str)
        for name, t in full.items()
    }
    for part, lo in enumerate(range(0, len(ids), per)):
        first, last = ids[lo], ids[min(lo + per, len(ids)) - 1]
        shard = part % spec.n_shards
        for name, table in full.items():
            a = int(np.searchsorted(bounds[name], first, side="left"))
            b = int(np.searchsorted(bounds[name], last, side="right"))
            piece = sort_table(name, table.slice(a, b - a))
            write_part_atomic(piece, run_dir / name / f"shard={shard}" / part_name(part))


def _write_run_json(run_dir: Path, run_id: str, spec: SyntheticSpec) -> None:
    info = {
        "run_id": run_id,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "toolkit_version": "synthetic",
        "schema_version": SCHEMA_VERSION,
        "model": {
            "id": "synthetic",
            "architecture": "Synthetic",
            "n_layers": spec.n_layers,
            "n_heads": spec.n_heads,
            "dtype": "float32",
            "device": "cpu",
        },
        "decoding": {"max_new_tokens": spec.max_steps, "strategy": "greedy", "seed": spec.seed},
        "saliency": {"heads": "sum_abs", "candidates": spec.n_candidates, "rows": None},
        "manifest": {"path": "synthetic", "sha256": ""},
        "shards": spec.n_shards,
        "synthetic": {k: v for k, v in spec.__dict__.items()},
    }
    (run_dir / "run.json").write_text(json.dumps(info, indent=2) + "\n")


def _write_labels(run_dir: Path, spec: SyntheticSpec, labels, samples) -> None:
    table = table_from_columns("labels", labels)
    out = run_dir / "labels"
    write_part_atomic(table, out / f"{spec.labelset}.parquet")
    lab = np.asarray(labels["label"])
    sub0 = np.asarray(labels["subtoken"]) == 0
    sids = np.asarray(labels["sample_id"], dtype=object)
    n_ok = sum(s["status"] == "ok" for s in samples)
    halluc_caps = len(set(sids[sub0 & (lab == 1)]))
    metrics = {
        "chair_s": halluc_caps / n_ok if n_ok else None,
        "chair_i": float(lab[sub0].mean()) if sub0.any() else None,
        "n_captions": n_ok,
        "n_mentions": int(sub0.sum()),
    }
    doc = {"labelset": spec.labelset, "source": spec.labelset, "metrics": metrics}
    (out / f"{spec.labelset}.json").write_text(json.dumps(doc, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """`python -m saliency_lab.testing.synthetic ROOT [--run-id ID ...]`: write a synthetic run for trying the
    query and analysis commands without a model."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m saliency_lab.testing.synthetic", description=main.__doc__)
    ap.add_argument("root", help="folder that receives <root>/<run-id>")
    ap.add_argument("--run-id", default="synth")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--candidates", type=int, default=5)
    ap.add_argument("--effect", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    run = make_run(
        a.root,
        a.run_id,
        SyntheticSpec(
            n_samples=a.samples, n_layers=a.layers, n_candidates=a.candidates, effect=a.effect, seed=a.seed
        ),
    )
    print(run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
