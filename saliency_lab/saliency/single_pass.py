"""The single-pass saliency computation: one teacher-forced forward in stop-gradient mode, one backward of
sum_P L_P, then vectorized reductions of S_raw = heads-reduce(A * dL/dA) over the query rows q = P - 1.

See saliency_lab.saliency.attention for why the stop-gradient pass gives every row exactly dL_P/dA[q,:].
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from saliency_lab.config import HeadsMode
from saliency_lab.errors import SampleError
from saliency_lab.saliency.attention import (
    AttentionContext,
    intervention_context,
    softmax_dtype,
    use_attention,
)
from saliency_lab.saliency.loss import token_loss
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


def _masks(n: int, o: int, s0: int, t: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """[T, n] boolean masks: all keys j <= q and output keys o <= j <= q, with q = o - 1 + step, for the
    steps s0..s0+T-1."""
    j = torch.arange(n, device=device)
    q = (o - 1 + s0 + torch.arange(t, device=device)).unsqueeze(1)
    causal = j.unsqueeze(0) <= q
    return causal, causal & (j.unsqueeze(0) >= o)


def _segment_sums(s: torch.Tensor, seg: dict[str, tuple[int, int]], causal, outm, q1: int) -> dict[str, torch.Tensor]:
    """Per-row sums of S_raw [T, n] whose first row is query q1 - 1 (q1 = o + first step)."""
    s = s * causal
    t = s.shape[0]
    prev = s[torch.arange(t), q1 - 1 + torch.arange(t)]
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


def pass_dtype(model_dtype: torch.dtype, precision: str) -> torch.dtype:
    """dtype the saliency pass computes in: float32 for a bf16/fp16 model with precision "float32" (or "auto"),
    else the model's own."""
    low = model_dtype in (torch.bfloat16, torch.float16)
    return torch.float32 if low and precision in ("float32", "auto") else model_dtype


@contextlib.contextmanager
def compute_dtype(model: torch.nn.Module, dtype: torch.dtype, from_dtype: torch.dtype) -> Iterator[None]:
    """Inside the block, every `from_dtype` parameter and buffer of `model` is held in `dtype`; afterwards each
    gets its own dtype back (bf16 -> float32 -> bf16 is exact, so the weights are unchanged)."""
    if dtype == from_dtype:
        yield
        return
    changed: list[tuple[torch.nn.Module, str, bool]] = []
    with torch.no_grad():
        for mod in model.modules():
            stores: tuple[tuple[bool, dict[str, Any]], ...] = ((True, mod._parameters), (False, mod._buffers))
            for kind, store in stores:
                for name, t in store.items():
                    if t is not None and t.dtype == from_dtype:
                        if kind:
                            t.data = t.data.to(dtype)
                        else:
                            store[name] = t.to(dtype)
                        changed.append((mod, name, kind))
    try:
        yield
    finally:
        with torch.no_grad():
            for mod, name, kind in changed:
                current: Any = (mod._parameters if kind else mod._buffers)[name]
                if kind:
                    current.data = current.data.to(from_dtype)
                else:
                    mod._buffers[name] = current.to(from_dtype)


class _UpcastLinear(torch.autograd.Function):
    """y = x W^T + b computed in `dtype` from low-precision weights. Saves the low-precision weight for the
    backward (upcast again there), so no full-precision copy of the model is ever held."""

    @staticmethod
    def forward(ctx, x, weight, bias, dtype):
        ctx.save_for_backward(weight)
        ctx.dtype = dtype
        return torch.nn.functional.linear(x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype))

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        return grad @ weight.to(ctx.dtype), None, None, None  # frozen weights: only the input gets a gradient


@contextlib.contextmanager
def language_model_in(model: torch.nn.Module, dtype: torch.dtype, from_dtype: torch.dtype) -> Iterator[None]:
    """Inside the block the language model (token embeddings, decoder, LM head) computes in `dtype` while its
    weights stay in `from_dtype`: each linear layer upcasts its weight on the fly, the embedding output is
    upcast (exactly). Norm layers then see `dtype` inputs and promote on their own. A vision tower keeps its
    dtype (its features are cast where the model merges them into the embeddings)."""
    if dtype == from_dtype:
        yield
        return
    hf: Any = model
    linears: list[Any] = [m for m in hf.get_decoder().modules() if isinstance(m, torch.nn.Linear)]
    head = hf.get_output_embeddings()
    if isinstance(head, torch.nn.Linear):
        linears.append(head)
    emb: Any = hf.get_input_embeddings()
    patched: list[Any] = []

    def linear_forward(mod: Any) -> Any:
        return lambda x: _UpcastLinear.apply(x, mod.weight, mod.bias, dtype)

    def embedding_forward(original: Any) -> Any:
        return lambda ids: original(ids).to(dtype)

    try:
        for mod in linears:
            if "forward" not in mod.__dict__:  # an instance-level forward (e.g. an offloading hook) is left alone
                mod.forward = linear_forward(mod)
                patched.append(mod)
        if "forward" not in emb.__dict__:
            emb.forward = embedding_forward(emb.forward)
            patched.append(emb)
        yield
    finally:
        for mod in patched:
            del mod.forward


def _detach_cache(cache) -> None:
    """Drop the autograd history the last block left in the KV cache (the next block reads it detached)."""
    for layer in getattr(cache, "layers", []):
        for attr in ("keys", "values"):
            value = getattr(layer, attr, None)
            if isinstance(value, torch.Tensor):
                setattr(layer, attr, value.detach())


def single_pass(
    bundle: ModelBundle,
    prepared: PreparedInput,
    output_ids: list[int],
    *,
    heads: HeadsMode = "sum_abs",
    hooks: list | None = None,
    keep_rows: bool = False,
    candidates: int = 0,
    precision: str = "model",
    max_pass_tokens: int | None = None,
) -> PassResult:
    """Saliency of every output token (all layers) from one forward + backward (+1 backward per candidate).

    `precision`: "float32" (or "auto") runs the language model of a bf16/fp16 model in float32 for this pass,
    on the same weights (`language_model_in`: weights stay bf16, each layer upcasts on the fly).
    `max_pass_tokens`: split the output rows into blocks of at most this many, one forward + backward each,
    the earlier rows held in the KV cache without autograd. Exact for the same reason the prefill is: a row
    gets gradient only from its own loss, through its own position.
    """
    dtype = pass_dtype(bundle.dtype, precision)
    with language_model_in(bundle.model, dtype, bundle.dtype):
        return _single_pass(bundle, prepared, output_ids, heads, hooks, keep_rows, candidates, max_pass_tokens)


def _single_pass(bundle, prepared, output_ids, heads, hooks, keep_rows, candidates, max_pass_tokens):
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
    kwargs: dict[str, Any] = {}
    if cache is None:
        adapter.reset_state(bundle.model)
        kwargs = adapter.forward_kwargs(prepared.model_kwargs, n)
    # Without a prefill (an image placeholder at or after o - 1) the first block must carry the whole prefix
    # and its pixels, so the output rows are not split.
    chunk = t if cache is None or not max_pass_tokens else max_pass_tokens
    parts: list[PassResult] = []
    for s0 in range(0, t, chunk):
        s1 = min(t, s0 + chunk)
        parts.append(_pass_block(bundle, prepared, full, out, p0 if s0 == 0 else o - 1 + s0, s0, s1, cache,
                                 kwargs, heads, hooks, keep_rows, candidates))
        if cache is not None:
            _detach_cache(cache)
    return parts[0] if len(parts) == 1 else _concat(parts, n)


def _concat(parts: list[PassResult], n: int) -> PassResult:
    """One PassResult from consecutive blocks of output rows (rows padded with zeros to all n keys)."""
    res = PassResult(logprobs=torch.cat([p.logprobs for p in parts]),
                     sums={k: np.concatenate([p.sums[k] for p in parts]) for k in parts[0].sums})
    if parts[0].rows is not None:
        blocks = [p.rows or [] for p in parts]
        res.rows = [torch.cat([torch.nn.functional.pad(b[i], (0, n - b[i].shape[1])) for b in blocks])
                    for i in range(len(blocks[0]))]
    if parts[0].cand_ids is not None:
        res.cand_ids = np.concatenate([p.cand_ids for p in parts])
        res.cand_probs = np.concatenate([p.cand_probs for p in parts])
        res.cand_sums = {k: np.concatenate([p.cand_sums[k] for p in parts]) for k in parts[0].cand_sums}
    return res


def _pass_block(bundle, prepared, full, out, start: int, s0: int, s1: int, cache, kwargs, heads, hooks,
                keep_rows: bool, candidates: int) -> PassResult:
    """Forward positions start..o-2+s1 (the earlier ones are in `cache`) with gradients, backward of the
    losses of output steps s0..s1-1, and the reductions of their rows."""
    model = bundle.model
    o = prepared.n_input
    stop = o - 1 + s1  # keys 0..stop-1
    kwargs = dict(kwargs)
    if cache is not None:
        kwargs[bundle.adapter.cache_kwarg(model)] = cache
    with graded_forward(bundle, hooks) as ctx:
        res = model(input_ids=full[:, start:stop], **kwargs, use_cache=cache is not None)
    span = RowSpan(prepared, out[0, s0:s1], batch_row=0, q0=o - 1 + s0 - start, keys=stop, s0=s0)
    return graded_results(bundle, res.logits, ctx.records, [span], heads, keep_rows, candidates)[0]


@contextlib.contextmanager
def graded_forward(bundle: ModelBundle, hooks: list | None) -> Iterator[AttentionContext]:
    """The block a graded forward runs in: autograd on, our attention in stop-gradient mode with `hooks`,
    probabilities recorded, and the embedding output as the graph's leaf (the weights are frozen, so no weight
    gradient is ever computed)."""
    emb = bundle.model.get_input_embeddings()
    handle = emb.register_forward_hook(lambda m, i, y: y.detach().requires_grad_(True))
    try:
        with (
            torch.enable_grad(),
            use_attention(bundle),
            intervention_context("stopgrad", hooks, record=True) as ctx,
        ):
            yield ctx
    finally:
        handle.remove()


@dataclass
class RowSpan:
    """Where one sample's output rows sit in a graded forward: batch row `batch_row`, query rows q0..q0+T-1 of
    the forwarded block (output steps s0..s0+T-1, emitted ids `target`), keys 0..keys-1 (at columns
    key0..key0+keys-1)."""

    prepared: PreparedInput
    target: torch.Tensor  # [T]
    batch_row: int
    q0: int
    keys: int
    s0: int = 0
    key0: int = 0  # column of the sample's position 0 (its left pad count in a left-padded forward)

    @property
    def t(self) -> int:
        """Number of output rows."""
        return int(self.target.shape[0])

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """This span's [H, T, keys] part of a recorded [B, H, Q, K] tensor."""
        return x[self.batch_row, :, self.q0 : self.q0 + self.t, self.key0 : self.key0 + self.keys]


def graded_results(
    bundle: ModelBundle,
    logits: torch.Tensor,
    records: dict[int, torch.Tensor],
    spans: list[RowSpan],
    heads: HeadsMode,
    keep_rows: bool,
    candidates: int,
) -> list[PassResult]:
    """One PassResult per span from a graded forward's logits [B, Q, V] and recorded probabilities: one backward
    of every span's summed losses (rows of a batch never mix, so each row gets exactly its own gradients), one
    more per candidate rank, and the reductions of each span's rows."""
    probs = [records[i] for i in sorted(records)]
    zs = [_promoted(logits[sp.batch_row, sp.q0 : sp.q0 + sp.t]) for sp in spans]
    logps = [_logprobs(bundle, z, sp) for z, sp in zip(zs, spans, strict=True)]
    grads = _span_grads(bundle, probs, spans, zs, logps, [sp.target for sp in spans], retain=candidates > 0)
    a_rows = [[sp.view(p).detach() for p in probs] for sp in spans]  # per span, per layer [H, T, keys]
    results = []
    for sp, lp, a in zip(spans, logps, a_rows, strict=True):
        sums, rows = _reduce(sp, a, [sp.view(g) for g in grads], heads, SUM_COLUMNS, keep_rows)
        results.append(PassResult(logprobs=lp.detach(), sums=_to_numpy(sums), rows=rows))
    if candidates > 0:
        _candidates(bundle, probs, spans, (zs, logps), grads, a_rows, results, heads, candidates)
    return results


def _promoted(logits: torch.Tensor) -> torch.Tensor:
    """The logits in the softmax dtype (at least float32), still in the graph."""
    return logits.to(softmax_dtype(logits.dtype))


def _logprobs(bundle: ModelBundle, logits: torch.Tensor, span: RowSpan) -> torch.Tensor:
    """[T, V] log-softmax of promoted logits, outside the graph (the losses use `loss.token_loss`); SampleError on
    non-finite logits."""
    with torch.no_grad():
        logp = torch.log_softmax(logits, dim=-1)
    if not bool(torch.isfinite(logp).all()):
        raise SampleError(
            f"sample {span.prepared.sample_id!r}: non-finite logits in {str(bundle.dtype).replace('torch.', '')}; "
            "rerun with --dtype float32"
        )
    return logp


def _span_grads(
    bundle: ModelBundle,
    probs: list[torch.Tensor],
    spans: list[RowSpan],
    zs: list[torch.Tensor],
    logps: list[torch.Tensor],
    targets: list[torch.Tensor],
    retain: bool,
) -> list[torch.Tensor]:
    """dL/dA per layer for L = sum over spans of -logp[step, target[step]] (backward `loss.loss_grad` at the
    logits `zs`); SampleError naming the first span with a non-finite gradient."""
    losses = [token_loss(z, lp, tg).sum() for z, lp, tg in zip(zs, logps, targets, strict=True)]
    loss = torch.stack(losses).sum()
    raw = torch.autograd.grad(loss, probs, retain_graph=retain, allow_unused=True)
    grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(raw, probs, strict=True)]
    for sp in spans:
        _check_finite([g[sp.batch_row] for g in grads], bundle.dtype, sp.prepared.sample_id)
    return grads


def _reduce(
    span: RowSpan,
    a_rows: list[torch.Tensor],
    g_rows: list[torch.Tensor],
    heads: HeadsMode,
    columns: tuple[str, ...],
    keep_rows: bool,
) -> tuple[dict[str, torch.Tensor], list[torch.Tensor] | None]:
    """Columns (each [T, L]) and, when asked, the causal rows S_raw [T, keys] per layer of one span."""
    o = span.prepared.n_input
    causal, outm = _masks(span.keys, o, span.s0, span.t, a_rows[0].device)
    cols: dict[str, list[torch.Tensor]] = {c: [] for c in columns}
    rows: list[torch.Tensor] | None = [] if keep_rows else None
    for a, g in zip(a_rows, g_rows, strict=True):
        s = heads_reduce(a, g, heads)
        for col, v in _segment_sums(s, span.prepared.segments, causal, outm, o + span.s0).items():
            if col in cols:
                cols[col].append(v)
        if "attn_out_sum" in cols:
            cols["attn_out_sum"].append((a.mean(0) * outm).sum(-1))
        if rows is not None:
            rows.append(s * causal)
    return {k: torch.stack(v, dim=1) for k, v in cols.items()}, rows


def _to_numpy(cols: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.float().cpu().numpy() for k, v in cols.items()}


def _candidates(bundle, probs, spans, zs_logps, grads, a_rows, results, heads, candidates: int) -> None:
    """Top-k ids, probabilities and per-rank sums of every span (one backward per rank for all spans)."""
    zs, logps = zs_logps
    k = min(candidates, logps[0].shape[-1])
    tops = [torch.topk(lp.detach(), k, dim=-1) for lp in logps]
    for res, top in zip(results, tops, strict=True):
        res.cand_ids = top.indices.cpu().numpy()
        res.cand_probs = top.values.exp().float().cpu().numpy()
    # Greedy decoding: rank 0 is the generated token everywhere, its gradients are the ones above.
    reuse0 = all(bool((top.indices[:, 0] == sp.target).all()) for top, sp in zip(tops, spans, strict=True))
    per: list[dict[str, list[torch.Tensor]]] = [{c: [] for c in CAND_COLUMNS} for _ in spans]
    for r in range(k):
        g_r = (
            grads
            if r == 0 and reuse0
            else _span_grads(
                bundle, probs, spans, zs, logps, [top.indices[:, r] for top in tops], retain=r < k - 1
            )
        )
        for i, sp in enumerate(spans):
            d, _ = _reduce(sp, a_rows[i], [sp.view(g) for g in g_r], heads, CAND_COLUMNS, False)
            for c in CAND_COLUMNS:
                per[i][c].append(d[c])  # [T, L]
    for res, cols in zip(results, per, strict=True):
        res.cand_sums = _to_numpy({c: torch.stack(v, dim=1) for c, v in cols.items()})  # [T, K, L]
