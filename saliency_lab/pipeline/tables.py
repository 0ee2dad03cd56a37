"""The rows of every table of one captured sample (docs/capture.md, "Tables"), from its output ids and the
saliency pass; schemas come from `saliency_lab.store.schema`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import torch

from saliency_lab.config import ManifestSample, SaliencyConfig
from saliency_lab.saliency.offsets import token_spans, tokenizer_decode
from saliency_lab.saliency.single_pass import CAND_COLUMNS, SUM_COLUMNS, PassResult
from saliency_lab.store.schema import table_from_columns

if TYPE_CHECKING:
    from saliency_lab.decoding.result import DecodeResult
    from saliency_lab.models.base import ModelBundle, PreparedInput

TOPK_TOKENS = 5


def _tokens_columns(
    bundle: ModelBundle, prepared: PreparedInput, output_ids: list[int], res: PassResult
) -> tuple[dict[str, Any], str]:
    tok = bundle.tokenizer
    spans = token_spans(output_ids, tokenizer_decode(tok), set(tok.all_special_ids))
    lp = res.logprobs
    t = len(output_ids)
    ids = torch.tensor(output_ids, device=lp.device)
    chosen = lp[torch.arange(t, device=lp.device), ids]
    p = lp.exp()
    entropy = -(p * lp).nan_to_num().sum(-1)
    top = torch.topk(lp, min(TOPK_TOKENS, lp.shape[-1]), dim=-1)
    cols = {
        "step": np.arange(t, dtype=np.int32),
        "position": prepared.n_input + np.arange(t, dtype=np.int32),
        "token_id": np.asarray(output_ids, dtype=np.int32),
        "token_text": spans.texts,
        "char_start": np.asarray(spans.starts, dtype=np.int32),
        "char_end": np.asarray(spans.ends, dtype=np.int32),
        "logprob": chosen.float().cpu().numpy(),
        "entropy": entropy.float().cpu().numpy(),
        "topk_ids": top.indices.cpu().numpy().astype(np.int32).tolist(),
        "topk_probs": top.values.exp().float().cpu().numpy().tolist(),
    }
    return cols, spans.output_text


def build_tables(
    bundle: ModelBundle,
    sample: ManifestSample,
    prepared: PreparedInput,
    output_ids: list[int],
    res: PassResult,
    sal: SaliencyConfig,
    run_id: str,
    seconds: float,
    decode_result: DecodeResult | None = None,
) -> dict[str, pa.Table]:
    """Every enabled table of one sample (status 'ok'); `decode_result` adds the SGRS decision columns/rows."""
    t = len(output_ids)
    n_layers = res.sums["row_l2"].shape[1]
    sid = sample.sample_id
    tok_cols, output_text = _tokens_columns(bundle, prepared, output_ids, res)
    if decode_result is not None:
        tok_cols.update(decode_result.token_columns)
    tables: dict[str, pa.Table] = {}
    seg = prepared.segments
    tables["samples"] = table_from_columns(
        "samples",
        {
            "run_id": [run_id],
            "sample_id": [sid],
            "image_id": [sample.image_id],
            "image_path": [sample.image],
            "system": [sample.system],
            "prompt": [sample.prompt],
            "output_text": [output_text],
            "input_ids": [prepared.input_ids[0].tolist()],
            "n_input": [prepared.n_input],
            "n_output": [t],
            "seg_system": [list(seg["system"])],
            "seg_image": [list(seg["image"])],
            "seg_prompt": [list(seg["prompt"])],
            "status": ["ok"],
            "error": [None],
            "seconds": [seconds],
            "meta": [json.dumps(sample.meta) if sample.meta is not None else None],
        },
    )
    tables["tokens"] = table_from_columns(
        "tokens", {"run_id": [run_id] * t, "sample_id": [sid] * t, **tok_cols}
    )

    # Saliency rows ordered by (step, layer).
    steps = np.repeat(np.arange(t, dtype=np.int32), n_layers)
    layers = np.tile(np.arange(n_layers, dtype=np.int16), t)
    sal_cols: dict[str, Any] = {
        "run_id": [run_id] * (t * n_layers),
        "sample_id": [sid] * (t * n_layers),
        "step": steps,
        "layer": layers,
    }
    for c in SUM_COLUMNS:
        sal_cols[c] = res.sums[c].reshape(-1).astype(np.float32)
    prev = sal_cols["prev"]
    sal_cols["prev"] = pa.array(prev, type=pa.float32(), mask=steps == 0)
    tables["saliency"] = table_from_columns("saliency", sal_cols)

    if res.cand_ids is not None and res.cand_probs is not None:  # set together by single_pass
        k = res.cand_ids.shape[1]
        st, rk, ly = np.meshgrid(np.arange(t), np.arange(k), np.arange(n_layers), indexing="ij")
        m = t * k * n_layers
        cand = {
            "run_id": [run_id] * m,
            "sample_id": [sid] * m,
            "step": st.reshape(-1).astype(np.int32),
            "rank": rk.reshape(-1).astype(np.int16),
            "token_id": np.repeat(res.cand_ids.reshape(-1), n_layers).astype(np.int32),
            "prob": np.repeat(res.cand_probs.reshape(-1), n_layers).astype(np.float32),
            "layer": ly.reshape(-1).astype(np.int16),
        }
        for c in CAND_COLUMNS:
            cand[c] = res.cand_sums[c].reshape(-1).astype(np.float32)
        cand["prev"] = pa.array(cand["prev"], type=pa.float32(), mask=cand["step"] == 0)
        tables["candidates"] = table_from_columns("candidates", cand)

    if sal.rows:
        tables["rows"] = _rows_table(res, prepared.n_input, sal.rows, run_id, sid)
    if decode_result is not None and decode_result.decisions:
        d = dict(decode_result.decisions)
        m = len(next(iter(d.values())))
        tables["decisions"] = table_from_columns(
            "decisions", {"run_id": [run_id] * m, "sample_id": [sid] * m, **d}
        )
    return tables


def _rows_table(res: PassResult, o: int, keys: str, run_id: str, sid: str) -> pa.Table:
    if res.rows is None:
        raise ValueError("the rows table needs the rows of the pass (single_pass with keep_rows=True)")
    t = res.rows[0].shape[0]
    n_layers = len(res.rows)
    stacked = torch.stack(res.rows, dim=1).float().cpu().numpy().astype(np.float16)  # [T, L, n]
    values, steps, layers = [], [], []
    for s in range(t):
        q = o - 1 + s
        lo = o if keys == "output" else 0
        for layer in range(n_layers):
            values.append(stacked[s, layer, lo : q + 1])
            steps.append(s)
            layers.append(layer)
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(v) for v in values])
    flat = np.concatenate(values) if values else np.zeros(0, np.float16)
    arr = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.float16()))
    m = len(values)
    return table_from_columns(
        "rows",
        {
            "run_id": [run_id] * m,
            "sample_id": [sid] * m,
            "step": np.asarray(steps, np.int32),
            "layer": np.asarray(layers, np.int16),
            "keys": [keys] * m,
            "values": arr,
        },
    )
