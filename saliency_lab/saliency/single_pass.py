"""The single-pass saliency computation: one teacher-forced forward in stop-gradient mode, one backward of
sum_P L_P, then vectorized reductions of S_raw = heads-reduce(A * dL/dA) over the query rows q = P - 1.

See saliency_lab.saliency.attention for why the stop-gradient pass gives every row exactly dL_P/dA[q,:].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from saliency_lab.config import HeadsMode
from saliency_lab.errors import SampleError
from saliency_lab.saliency.attention import intervention_context, softmax_dtype, use_attention
from saliency_lab.saliency.prefill import prefill

if TYPE_CHECKING:
    from saliency_lab.models.base import ModelBundle, PreparedInput

SUM_COLUMNS = ("sys_sum", "img_sum", "prompt_sum", "out_sum", "prev", "row_l2", "attn_out_sum")
CAND_COLUMNS = ("out_sum", "prompt_sum", "prev", "row_l2")


@dataclass
class PassResult:
    """Saliency of every output token of one sample: per-layer sums, optional rows and candidates."""

    logprobs: torch.Tensor  # [T, V] log-softmax at the query rows (detached, softmax dtype)
    sums: dict[str, np.ndarray]  # column -> [T, L]
    rows: list[torch.Tensor] | None = None  # per layer S_raw [T, n] (only when requested)
    cand_ids: np.ndarray | None = None  # [T, K]
    cand_probs: np.ndarray | None = None  # [T, K]
    cand_sums: dict[str, np.ndarray] = field(default_factory=dict)  # column -> [T, K, L]


def heads_reduce(a: torch.Tensor, g: torch.Tensor, heads: HeadsMode) -> torch.Tensor:
    """S_raw from A and dL/dA of shape [H, T, n] -> [T, n]."""
    prod = a * g
    if heads == "sum_abs":
        return prod.abs().sum(0)
    if heads == "abs_sum":
        return prod.sum(0).abs()
    raise ValueError(f"unknown heads mode {heads!r}")


def _masks(n: int, o: int, t: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """[T, n] boolean masks: all keys j <= q and output keys o <= j <= q, with q = o - 1 + step."""
    j = torch.arange(n, device=device)
    q = (o - 1 + torch.arange(t, device=device)).unsqueeze(1)
    causal = j.unsqueeze(0) <= q
    return causal, causal & (j.unsqueeze(0) >= o)


def _segment_sums(s: torch.Tensor, seg: dict[str, tuple[int, int]], causal, outm, o: int) -> dict[str, torch.Tensor]:
    s = s * causal
    t = s.shape[0]
    prev = s[torch.arange(t), o - 1 + torch.arange(t)]
    return {
        "sys_sum": s[:, seg["system"][0]:seg["system"][1]].sum(-1),
        "img_sum": s[:, seg["image"][0]:seg["image"][1]].sum(-1),
        "prompt_sum": s[:, seg["prompt"][0]:seg["prompt"][1]].sum(-1),
        "out_sum": (s * outm).sum(-1),
        "prev": prev,
        "row_l2": torch.linalg.vector_norm(s, dim=-1),
    }


def _check_finite(grads: list[torch.Tensor], dtype: torch.dtype, sample_id: str) -> None:
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        raise SampleError(
            f"sample {sample_id!r}: non-finite attention gradients in {str(dtype).replace('torch.', '')}; "
            "rerun with --dtype float32"
        )


def single_pass(
    bundle: ModelBundle,
    prepared: PreparedInput,
    output_ids: list[int],
    *,
    heads: HeadsMode = "sum_abs",
    hooks: list | None = None,
    keep_rows: bool = False,
    candidates: int = 0,
) -> PassResult:
    """Saliency of every output token (all layers) from one forward + backward (+1 backward per candidate)."""
    model = bundle.model
    o = prepared.n_input
    t = len(output_ids)
    out = torch.tensor([output_ids], dtype=torch.long, device=prepared.input_ids.device)
    full = torch.cat([prepared.input_ids, out], dim=1)
    n = int(full.shape[1]) - 1  # positions fed to the model: 0..n-1 (the last output token is never input)

    # Rows before q = o - 1 receive no gradient (every path from them to a loss crosses an off-diagonal
    # key/value), so the prompt prefix runs once without autograd into a KV cache (prefill) and only the
    # T query rows o-1..n-1 run with gradients. Same numbers as one full stop-gradient pass, far cheaper.
    adapter = bundle.adapter
    p0 = adapter.prefill_length(bundle, full[0, :n].tolist(), o)
    cache = prefill(bundle, prepared, p0, hooks or ()).cache if p0 > 0 else None
    if cache is None:
        adapter.reset_state(model)
        kwargs = adapter.forward_kwargs(prepared.model_kwargs, n)
    else:
        kwargs = {adapter.cache_kwarg(model): cache}

    # Frozen weights: make the embeddings the leaf so the graph exists but no weight gradients are computed.
    emb = model.get_input_embeddings()
    handle = emb.register_forward_hook(lambda m, i, y: y.detach().requires_grad_(True))
    try:
        with torch.enable_grad(), use_attention(bundle), intervention_context(
            "stopgrad", hooks, record=True
        ) as ctx:
            res = model(input_ids=full[:, p0:n], **kwargs, use_cache=cache is not None)
    finally:
        handle.remove()
    logits = res.logits[0, -t:]
    sdt = softmax_dtype(logits.dtype)
    logp = torch.log_softmax(logits.to(sdt), dim=-1)  # [T, V]
    if not bool(torch.isfinite(logp).all()):
        raise SampleError(
            f"sample {prepared.sample_id!r}: non-finite logits in {str(bundle.dtype).replace('torch.', '')}; "
            "rerun with --dtype float32"
        )
    layers = sorted(ctx.records)
    probs = [ctx.records[i] for i in layers]
    steps = torch.arange(t, device=full.device)
    q0 = o - 1 - p0  # first query row of interest inside the forwarded block
    loss = -logp[steps, out[0]].sum()
    raw = torch.autograd.grad(loss, probs, retain_graph=candidates > 0, allow_unused=True)
    grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(raw, probs, strict=True)]
    _check_finite(grads, bundle.dtype, prepared.sample_id)

    causal, outm = _masks(n, o, t, full.device)
    seg = prepared.segments
    cols: dict[str, list[torch.Tensor]] = {c: [] for c in SUM_COLUMNS}
    rows: list[torch.Tensor] | None = [] if keep_rows else None
    a_rows = [p[0][:, q0:, :].detach() for p in probs]  # [H, T, n] per layer
    for a, g in zip(a_rows, grads, strict=True):
        s = heads_reduce(a, g[0][:, q0:, :], heads)
        for col, v in _segment_sums(s, seg, causal, outm, o).items():
            cols[col].append(v)
        cols["attn_out_sum"].append((a.mean(0) * outm).sum(-1))
        if rows is not None:
            rows.append(s * causal)
    sums = {k: torch.stack(v, dim=1).float().cpu().numpy() for k, v in cols.items()}
    result = PassResult(logprobs=logp.detach(), sums=sums, rows=rows)

    if candidates > 0:
        k = min(candidates, logp.shape[-1])
        top = torch.topk(logp.detach(), k, dim=-1)
        result.cand_ids = top.indices.cpu().numpy()
        result.cand_probs = top.values.exp().float().cpu().numpy()
        per: dict[str, list[torch.Tensor]] = {c: [] for c in CAND_COLUMNS}
        # Greedy decoding: rank 0 is the generated token everywhere, its gradients are the ones above.
        reuse0 = bool((top.indices[:, 0] == out[0]).all())
        last = k - 1
        for r in range(k):
            if r == 0 and reuse0:
                g_r = grads
            else:
                loss_r = -logp[steps, top.indices[:, r]].sum()
                raw_r = torch.autograd.grad(loss_r, probs, retain_graph=r < last, allow_unused=True)
                g_r = [g if g is not None else torch.zeros_like(p) for g, p in zip(raw_r, probs, strict=True)]
                _check_finite(g_r, bundle.dtype, prepared.sample_id)
            layer_vals: dict[str, list[torch.Tensor]] = {c: [] for c in CAND_COLUMNS}
            for a, g in zip(a_rows, g_r, strict=True):
                d = _segment_sums(heads_reduce(a, g[0][:, q0:, :], heads), seg, causal, outm, o)
                for c in CAND_COLUMNS:
                    layer_vals[c].append(d[c])
            for c in CAND_COLUMNS:
                per[c].append(torch.stack(layer_vals[c], dim=1))  # [T, L]
        result.cand_sums = {c: torch.stack(v, dim=1).float().cpu().numpy() for c, v in per.items()}  # [T,K,L]
    del probs, grads, ctx
    return result
