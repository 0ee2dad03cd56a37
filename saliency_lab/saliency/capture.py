"""capture_sample: generate for one manifest sample, then compute the saliency of every output token with
one teacher-forced stop-gradient pass, and return the sample's rows for every table of SPEC section 4.

Generation: `model.generate` (sdpa, KV cache) for greedy/sample; when decoding interventions are active
(`saliency_lab.decoding.hooks.intervention_hooks`), generate runs through our attention function with the
hooks; strategy "sgrs" delegates to `saliency_lab.decoding.sgrs.decode_sgrs`. Sampling is seeded per sample
(`saliency_lab.seeding.sample_seed`: the run seed and the sample_id) so a resumed or sharded run reproduces the same output.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from saliency_lab.config import DecodingConfig, ManifestSample, SaliencyConfig
from saliency_lab.errors import SaliencyLabError, SampleError
from saliency_lab.saliency.attention import intervention_context, use_attention
from saliency_lab.saliency.offsets import token_spans, tokenizer_decode
from saliency_lab.saliency.single_pass import CAND_COLUMNS, SUM_COLUMNS, PassResult, single_pass
from saliency_lab.seeding import sample_seed
from saliency_lab.store.schema import table_from_columns

TOPK_TOKENS = 5


@dataclass
class SampleResult:
    sample_id: str
    tables: dict[str, pa.Table]
    seconds: float
    stats: dict[str, Any] = field(default_factory=dict)  # e.g. verify_max_abs_diff, generate_seconds


def eos_ids(bundle) -> list[int]:
    ids = bundle.model.generation_config.eos_token_id
    ids = [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
    if bundle.tokenizer.eos_token_id is not None and bundle.tokenizer.eos_token_id not in ids:
        ids.append(bundle.tokenizer.eos_token_id)
    return ids


def generation_config(bundle, decoding: DecodingConfig):
    """A complete GenerationConfig from our DecodingConfig (the model's own sampling defaults are ignored)."""
    from transformers import GenerationConfig

    eos = eos_ids(bundle)
    pad = bundle.tokenizer.pad_token_id
    common = dict(max_new_tokens=decoding.max_new_tokens, num_beams=1, eos_token_id=eos or None,
                  pad_token_id=pad if pad is not None else (eos[0] if eos else None), repetition_penalty=1.0,
                  suppress_tokens=bundle.adapter.suppressed_token_ids(bundle) or None)
    if decoding.strategy == "sample":
        return GenerationConfig(do_sample=True, temperature=decoding.temperature, top_k=decoding.top_k,
                                top_p=1.0, **common)
    return GenerationConfig(do_sample=False, **common)


def generate_ids(bundle, prepared, decoding: DecodingConfig, hooks: list) -> list[int]:
    """Output ids (EOS included when generated) for greedy / sample decoding."""
    gc = generation_config(bundle, decoding)
    dev = bundle.device
    cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(sample_seed(decoding.seed, prepared.sample_id))
        with torch.no_grad():
            if hooks:
                with use_attention(bundle), intervention_context("plain", hooks):
                    out = bundle.model.generate(prepared.input_ids, **prepared.model_kwargs, generation_config=gc)
            else:
                out = bundle.model.generate(prepared.input_ids, **prepared.model_kwargs, generation_config=gc)
    return out[0, prepared.n_input:].tolist()


def _sgrs(bundle, prepared, decoding: DecodingConfig, heads: str = "sum_abs"):
    try:
        from saliency_lab.decoding.sgrs import decode_sgrs
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("saliency_lab.decoding"):
            raise SaliencyLabError("--strategy sgrs is not available in this installation") from None
        raise
    return decode_sgrs(bundle, prepared, decoding, heads=heads)  # SGRS scores use the run's heads mode


def capture_sample(bundle, sample: ManifestSample, decoding: DecodingConfig, sal: SaliencyConfig,
                   run_id: str) -> SampleResult:
    """Generate, compute saliency, and return the sample's tables (status 'ok'); SampleError on bad input."""
    from saliency_lab.decoding.hooks import intervention_hooks

    t0 = time.perf_counter()
    prepared = bundle.adapter.prepare(bundle, sample, max_new_tokens=decoding.max_new_tokens)
    hooks = intervention_hooks(decoding, prepared.n_input) or []
    decode_result = None
    if decoding.strategy == "sgrs":
        decode_result = _sgrs(bundle, prepared, decoding, sal.heads)
        output_ids = list(decode_result.output_ids)
    elif decoding.strategy in ("greedy", "sample"):
        output_ids = generate_ids(bundle, prepared, decoding, hooks)
    else:
        raise SaliencyLabError(f"unknown decoding strategy {decoding.strategy!r}; use greedy, sample or sgrs")
    t_gen = time.perf_counter() - t0
    if not output_ids:
        raise SampleError(f"sample {sample.sample_id!r}: the model generated no tokens")

    res = single_pass(bundle, prepared, output_ids, heads=sal.heads, hooks=hooks,
                      keep_rows=bool(sal.rows) or sal.verify, candidates=sal.candidates,
                      precision=sal.precision, max_pass_tokens=sal.max_pass_tokens)
    stats: dict[str, Any] = {"generate_seconds": t_gen}
    if sal.verify:
        from saliency_lab.saliency.reference import verify_rows

        stats["verify_max_abs_diff"] = verify_rows(bundle, prepared, output_ids, res, sal.heads, hooks)
    seconds = time.perf_counter() - t0
    tables = build_tables(bundle, sample, prepared, output_ids, res, sal, run_id, seconds, decode_result)
    return SampleResult(sample.sample_id, tables, seconds, stats)


def _tokens_columns(bundle, prepared, output_ids: list[int], res: PassResult) -> tuple[dict[str, Any], str]:
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


def build_tables(bundle, sample: ManifestSample, prepared, output_ids: list[int], res: PassResult,
                 sal: SaliencyConfig, run_id: str, seconds: float, decode_result=None) -> dict[str, pa.Table]:
    t = len(output_ids)
    n_layers = res.sums["row_l2"].shape[1]
    sid = sample.sample_id
    tok_cols, output_text = _tokens_columns(bundle, prepared, output_ids, res)
    if decode_result is not None:
        tok_cols.update(decode_result.token_columns)
    tables: dict[str, pa.Table] = {}
    seg = prepared.segments
    tables["samples"] = table_from_columns("samples", {
        "run_id": [run_id], "sample_id": [sid], "image_id": [sample.image_id], "image_path": [sample.image],
        "system": [sample.system], "prompt": [sample.prompt], "output_text": [output_text],
        "input_ids": [prepared.input_ids[0].tolist()], "n_input": [prepared.n_input], "n_output": [t],
        "seg_system": [list(seg["system"])], "seg_image": [list(seg["image"])], "seg_prompt": [list(seg["prompt"])],
        "status": ["ok"], "error": [None], "seconds": [seconds],
        "meta": [json.dumps(sample.meta) if sample.meta is not None else None],
    })
    tables["tokens"] = table_from_columns("tokens", {"run_id": [run_id] * t, "sample_id": [sid] * t, **tok_cols})

    # Saliency rows ordered by (step, layer).
    steps = np.repeat(np.arange(t, dtype=np.int32), n_layers)
    layers = np.tile(np.arange(n_layers, dtype=np.int16), t)
    sal_cols: dict[str, Any] = {"run_id": [run_id] * (t * n_layers), "sample_id": [sid] * (t * n_layers),
                                "step": steps, "layer": layers}
    for c in SUM_COLUMNS:
        sal_cols[c] = res.sums[c].reshape(-1).astype(np.float32)
    prev = sal_cols["prev"]
    sal_cols["prev"] = pa.array(prev, type=pa.float32(), mask=steps == 0)
    tables["saliency"] = table_from_columns("saliency", sal_cols)

    if res.cand_ids is not None:
        k = res.cand_ids.shape[1]
        st, rk, ly = np.meshgrid(np.arange(t), np.arange(k), np.arange(n_layers), indexing="ij")
        m = t * k * n_layers
        cand = {"run_id": [run_id] * m, "sample_id": [sid] * m, "step": st.reshape(-1).astype(np.int32),
                "rank": rk.reshape(-1).astype(np.int16),
                "token_id": np.repeat(res.cand_ids.reshape(-1), n_layers).astype(np.int32),
                "prob": np.repeat(res.cand_probs.reshape(-1), n_layers).astype(np.float32),
                "layer": ly.reshape(-1).astype(np.int16)}
        for c in CAND_COLUMNS:
            cand[c] = res.cand_sums[c].reshape(-1).astype(np.float32)
        cand["prev"] = pa.array(cand["prev"], type=pa.float32(), mask=cand["step"] == 0)
        tables["candidates"] = table_from_columns("candidates", cand)

    if sal.rows:
        tables["rows"] = _rows_table(res, prepared.n_input, sal.rows, run_id, sid)
    if decode_result is not None and decode_result.decisions:
        d = dict(decode_result.decisions)
        m = len(next(iter(d.values())))
        tables["decisions"] = table_from_columns("decisions", {"run_id": [run_id] * m, "sample_id": [sid] * m, **d})
    return tables


def _rows_table(res: PassResult, o: int, keys: str, run_id: str, sid: str) -> pa.Table:
    t = res.rows[0].shape[0]
    n_layers = len(res.rows)
    stacked = torch.stack(res.rows, dim=1).float().cpu().numpy().astype(np.float16)  # [T, L, n]
    values, steps, layers = [], [], []
    for s in range(t):
        q = o - 1 + s
        lo = o if keys == "output" else 0
        for layer in range(n_layers):
            values.append(stacked[s, layer, lo:q + 1])
            steps.append(s)
            layers.append(layer)
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(v) for v in values])
    flat = np.concatenate(values) if values else np.zeros(0, np.float16)
    arr = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.float16()))
    m = len(values)
    return table_from_columns("rows", {"run_id": [run_id] * m, "sample_id": [sid] * m,
                                       "step": np.asarray(steps, np.int32), "layer": np.asarray(layers, np.int16),
                                       "keys": [keys] * m, "values": arr})
