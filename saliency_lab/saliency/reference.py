"""Per-prefix reference saliency (docs/capture.md, "How saliency is computed"): for each output token x_P,
forward the prefix x_<=q (q = P - 1) with plain eager attention, backward L_P alone, read attention row q.
O(n_out) forward+backward passes; used by tests and by `--verify`, never in production capture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from saliency_lab.config import HeadsMode
from saliency_lab.errors import SampleError
from saliency_lab.saliency.attention import intervention_context, softmax_dtype, use_attention
from saliency_lab.saliency.single_pass import PassResult, heads_reduce

if TYPE_CHECKING:
    from saliency_lab.models.base import ModelBundle, PreparedInput

# Allowed |single pass - reference| relative to the largest |S_raw| of the sample, per compute dtype.
VERIFY_RTOL = {torch.float64: 1e-8, torch.float32: 1e-3, torch.bfloat16: 5e-2, torch.float16: 5e-2}


def reference_rows(bundle: ModelBundle, prepared: PreparedInput, output_ids: list[int], heads: HeadsMode = "sum_abs",
                   hooks: list | None = None, *, naive: bool = False,
                   targets: list[int] | None = None) -> list[torch.Tensor]:
    """Per step, S_raw over keys 0..q for every layer: a list of [L, q + 1] tensors.

    targets: the token whose loss is differentiated at each step (default: the output token itself; pass a
    candidate per step for candidate saliency). The prefix is always the actual output.

    naive=True instead runs ONE plain forward over the whole sequence and one backward of sum_P L_P (no
    stop-gradient): the wrong method, kept so tests can show it differs.
    """
    model = bundle.model
    o = prepared.n_input
    out = torch.tensor([output_ids], dtype=torch.long, device=prepared.input_ids.device)
    full = torch.cat([prepared.input_ids, out], dim=1)
    emb = model.get_input_embeddings()
    handle = emb.register_forward_hook(lambda m, i, y: y.detach().requires_grad_(True))
    rows: list[torch.Tensor] = []
    try:
        if naive:
            n = full.shape[1]
            probs, logp = _forward(bundle, full, prepared, hooks, n)
            loss = -logp[torch.arange(len(output_ids)) + o - 1, out[0]].sum()
            grads = torch.autograd.grad(loss, probs, allow_unused=True)
            for s in range(len(output_ids)):
                q = o - 1 + s
                rows.append(torch.stack([heads_reduce(a[0][:, q:q + 1, :q + 1].detach(), g[0][:, q:q + 1, :q + 1], heads)[0]
                                         for a, g in zip(probs, grads, strict=True)]))
            return rows
        for s, tok in enumerate(targets if targets is not None else output_ids):
            q = o - 1 + s
            prefix = full[:, :q + 1]
            probs, logp = _forward(bundle, prefix, prepared, hooks, q + 1)
            grads = torch.autograd.grad(-logp[-1, tok], probs, allow_unused=True)
            layer_rows = []
            for a, g in zip(probs, grads, strict=True):
                g = torch.zeros_like(a) if g is None else g
                layer_rows.append(heads_reduce(a[0][:, q:q + 1, :].detach(), g[0][:, q:q + 1, :], heads)[0])
            rows.append(torch.stack(layer_rows))
    finally:
        handle.remove()
    return rows


def _forward(bundle: ModelBundle, ids: torch.Tensor, prepared: PreparedInput, hooks: list | None, n: int):
    bundle.adapter.reset_state(bundle.model)
    kwargs = bundle.adapter.forward_kwargs(prepared.model_kwargs, n)
    with torch.enable_grad(), use_attention(bundle), intervention_context("plain", hooks, record=True) as ctx:
        res = bundle.model(input_ids=ids, **kwargs, use_cache=False)
    logits = res.logits[0]
    logp = torch.log_softmax(logits.to(softmax_dtype(logits.dtype)), dim=-1)
    return [ctx.records[i] for i in sorted(ctx.records)], logp


def verify_rows(bundle: ModelBundle, prepared: PreparedInput, output_ids: list[int], res: PassResult,
                heads: HeadsMode, hooks: list | None) -> float:
    """Compare the single-pass rows with the reference; SampleError beyond the dtype's tolerance."""
    if res.rows is None:
        raise ValueError("verify_rows needs the rows of the pass (single_pass with keep_rows=True)")
    ref = reference_rows(bundle, prepared, output_ids, heads, hooks)
    o = prepared.n_input
    diff, scale = 0.0, 0.0
    for s, r in enumerate(ref):
        q = o - 1 + s
        fast = torch.stack([layer[s, :q + 1] for layer in res.rows])
        diff = max(diff, float((fast.double() - r.double()).abs().max()))
        scale = max(scale, float(r.abs().max()))
    tol = VERIFY_RTOL.get(bundle.dtype, 1e-3) * max(scale, 1e-30)
    if diff > tol:
        raise SampleError(
            f"sample {prepared.sample_id!r}: --verify failed, single-pass saliency differs from the per-prefix "
            f"reference by {diff:.3g} (tolerance {tol:.3g}); rerun with --dtype float64 to check, and report it"
        )
    return diff
