"""Our attention function ("saliency_lab"), registered with transformers' AttentionInterface and
AttentionMaskInterface (the mask registration is what makes models pass it the additive causal mask).

Behaviour is set per call site with `attention_context(...)` (a contextvar, so nothing leaks between calls):

- mode="plain": exact eager attention (softmax in float32, or float64 for float64 models).
- mode="stopgrad": the single-pass saliency method. Keys and values are stop-gradient for every off-diagonal
  pair (query i, key j != i) and keep their gradient on the diagonal (j == i). Forward values are unchanged
  (the added terms are exactly zero), so logits equal plain eager. Why: every path from A[l,h,q,:] to a later
  loss L_Q (Q > q+1) passes through position q's key or value as seen by a later query (off-diagonal), so
  after one backward of sum_P L_P the gradient at row q is exactly dL_{q+1}/dA[q,:].
- record=True: each layer's post-softmax probabilities (after hooks, i.e. the weights actually multiplied
  with V) are stored in `ctx.records[layer_idx]` so capture can take A and dL/dA.

Hook contract (for decoding interventions, e.g. LocoRE in saliency_lab.decoding):

    hook(probs, *, layer_idx, query_positions, key_positions) -> probs
        probs: [B, H, Q, K] post-softmax attention (before dropout and the value product), dtype of the
               softmax (float32, or float64 for float64 models); return a tensor of the same shape (do not
               modify in place: it may be needed for backward).
        layer_idx: int, language-model layer index.
        query_positions: LongTensor [Q] absolute positions of the queries; with a KV cache the queries are
               the last Q of the K positions, i.e. arange(K - Q, K).
        key_positions: LongTensor [K] absolute positions of the keys, arange(K).
    logit_hook(scores, *, layer_idx, query_positions, key_positions) -> scores
        the same, applied to the masked pre-softmax scores (masked entries hold a very negative number).

`hooks` run in list order after softmax; `logit_hooks` before it. Callers holding one mixed list use
`intervention_context(mode, hooks)`, which sends hooks whose `on_logits` attribute is true to `logit_hooks`. Both apply in every mode, including the
teacher-forced saliency pass, so saliency reflects the intervention that produced the output. Positions
assume a single sequence whose cache starts at position 0 (no left padding, no sliding window cache).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from saliency_lab.models.base import ModelBundle

NAME = "saliency_lab"

Hook = Callable[..., torch.Tensor]


@dataclass
class AttentionContext:
    """State of `saliency_attention` during one call: stop-gradient mode, the hooks, recorded probabilities
    per layer."""

    mode: Literal["plain", "stopgrad"] = "plain"
    hooks: list[Hook] = field(default_factory=list)
    logit_hooks: list[Hook] = field(default_factory=list)
    record: bool = False
    records: dict[int, torch.Tensor] = field(default_factory=dict)


_CTX: contextvars.ContextVar[AttentionContext | None] = contextvars.ContextVar("saliency_lab_attn", default=None)


@contextlib.contextmanager
def attention_context(
    mode: Literal["plain", "stopgrad"] = "plain",
    hooks: list[Hook] | None = None,
    logit_hooks: list[Hook] | None = None,
    record: bool = False,
) -> Iterator[AttentionContext]:
    """Set how the registered attention function behaves inside the block; yields the context (records)."""
    if mode not in ("plain", "stopgrad"):
        raise ValueError(f"unknown attention mode {mode!r}")
    ctx = AttentionContext(mode, list(hooks or []), list(logit_hooks or []), record)
    token = _CTX.set(ctx)
    try:
        yield ctx
    finally:
        _CTX.reset(token)


def split_hooks(hooks: list[Hook] | None) -> tuple[list[Hook], list[Hook]]:
    """(probability hooks, logit hooks): a hook with a true `on_logits` attribute acts on scores."""
    hooks = list(hooks or [])
    return [h for h in hooks if not getattr(h, "on_logits", False)], [h for h in hooks if getattr(h, "on_logits", False)]


@contextlib.contextmanager
def intervention_context(mode: Literal["plain", "stopgrad"], hooks: list[Hook] | None,
                         record: bool = False) -> Iterator[AttentionContext]:
    """attention_context with one mixed hook list split by each hook's `on_logits` attribute."""
    ph, lh = split_hooks(hooks)
    with attention_context(mode, hooks=ph, logit_hooks=lh, record=record) as ctx:
        yield ctx


def softmax_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32; float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def saliency_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention as transformers calls it: (output, probabilities). Applies the context's logit and
    probability hooks, records the probabilities, and in stopgrad mode (under autograd) lets gradients
    reach keys and values only at each query's own position."""
    ctx = _CTX.get() or AttentionContext()
    n_rep = query.shape[1] // key.shape[1]
    k = _repeat_kv(key, n_rep)
    v = _repeat_kv(value, n_rep)
    q_len, k_len = query.shape[2], k.shape[2]
    off = k_len - q_len  # queries are the last q_len of the k_len positions
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    stop = ctx.mode == "stopgrad" and torch.is_grad_enabled()
    if stop:
        kd, vd = k.detach(), v.detach()
        scores = torch.matmul(query, kd.transpose(2, 3))
        # Diagonal keeps the key gradient: add q_i . (k_i - sg(k_i)) == 0 in value.
        diag = (query * (k[:, :, off:] - kd[:, :, off:])).sum(-1)
        scores.diagonal(offset=off, dim1=-2, dim2=-1).add_(diag)
    else:
        scores = torch.matmul(query, k.transpose(2, 3))
    scores = scores * scaling
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, :k_len]
    sdt = softmax_dtype(query.dtype)
    qpos = kpos = None
    if ctx.hooks or ctx.logit_hooks:
        kpos = torch.arange(k_len, device=query.device)
        qpos = kpos[off:]
    layer_idx = getattr(module, "layer_idx", None)
    if ctx.logit_hooks:
        scores = scores.to(sdt)
        for h in ctx.logit_hooks:
            scores = h(scores, layer_idx=layer_idx, query_positions=qpos, key_positions=kpos)
    probs = torch.softmax(scores, dim=-1, dtype=sdt)
    for h in ctx.hooks:
        probs = h(probs, layer_idx=layer_idx, query_positions=qpos, key_positions=kpos)
    if ctx.record and layer_idx is not None:
        ctx.records[layer_idx] = probs
    p = probs.to(query.dtype)
    if dropout and module.training:
        p = torch.nn.functional.dropout(p, p=dropout, training=True)
    if stop:
        out = torch.matmul(p, vd)
        # Diagonal keeps the value gradient: add A[i,i] * (v_i - sg(v_i)) == 0 in value.
        a_ii = torch.diagonal(p, offset=off, dim1=-2, dim2=-1).unsqueeze(-1)
        out = out + a_ii * (v[:, :, off:] - vd[:, :, off:])
    else:
        out = torch.matmul(p, v)
    return out.transpose(1, 2).contiguous(), probs


def register_attention() -> str:
    """Register our function (idempotent) and return its name for `set_attn_implementation`."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(NAME, saliency_attention)
    AttentionMaskInterface.register(NAME, eager_mask)
    return NAME


@contextlib.contextmanager
def use_attention(bundle: ModelBundle, name: str | None = None) -> Iterator[None]:
    """Route the bundle's language model through `name` (default: ours) inside the block, then restore sdpa."""
    name = name or register_attention()
    bundle.adapter.set_attention(bundle.model, name)
    try:
        yield
    finally:
        bundle.adapter.set_attention(bundle.model, "sdpa")
