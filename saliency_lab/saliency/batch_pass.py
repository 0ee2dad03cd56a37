"""The single-pass saliency computation for several samples in one forward (docs/capture.md, "Batches").

Rows are RIGHT-padded: every real token keeps its unpadded position and the causal mask alone keeps the pad
positions (which come after every real one) out of each real row, so no attention mask is needed and each row
computes exactly what `single_pass` computes for its sample alone, up to the summation order of the batched
matrix products (float64: ~1e-15 relative). Qwen2-VL's M-RoPE deltas are per row.

Layout: a common prefix of p0 positions (the shortest prefill any row allows, see `_common_prefill`) runs once
without autograd into a KV cache; the rest of the padded width runs in one graded forward in stop-gradient mode;
one backward of the sum over rows of their losses gives each row exactly its own gradients (rows never mix).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from saliency_lab.config import HeadsMode
from saliency_lab.saliency.batch import Batch, BatchPrefix, collate, pad_token_id, row_hooks
from saliency_lab.saliency.prefill import hooks_act_on_prompt, prefill_forward
from saliency_lab.saliency.single_pass import (
    PassResult,
    RowSpan,
    graded_forward,
    graded_results,
    language_model_in,
    pass_dtype,
)

if TYPE_CHECKING:
    from saliency_lab.models.base import ModelBundle, PreparedInput


def single_pass_batch(
    bundle: ModelBundle,
    prepared: Sequence[PreparedInput],
    outputs: Sequence[list[int]],
    *,
    heads: HeadsMode = "sum_abs",
    hooks: Sequence[list | None] | None = None,
    keep_rows: bool = False,
    candidates: int = 0,
    precision: str = "model",
    prefix: BatchPrefix | None = None,
) -> list[PassResult]:
    """`single_pass` of every sample (its output ids `outputs[i]`, its own attention hooks `hooks[i]`) from one
    batched forward + backward (+1 backward per candidate rank): result i equals
    `single_pass(bundle, prepared[i], outputs[i], hooks=hooks[i], ...)` in fields, shapes and dtypes.

    Memory: the graded forward holds the activations and attention probabilities of every row at the padded
    width, i.e. about B times one sample's. There is no `max_pass_tokens` here: a caller that splits the output
    rows into blocks (or has one sample) calls `single_pass` per sample instead.

    `prefix`: the batched decoding's prefill of these very inputs (`decode_batch(keep_prefix=True)`). When the
    pass computes in the dtype it was made in, no hook acts on prompt rows and no row has an image placeholder at
    or after its last input position, the pass starts from it (left-padded, like the decoding) instead of
    forwarding the inputs again; otherwise it is ignored. Same numbers either way.
    """
    if len(prepared) != len(outputs) or (hooks is not None and len(hooks) != len(prepared)):
        raise ValueError(
            f"single_pass_batch: {len(prepared)} inputs, {len(outputs)} outputs and "
            f"{'no' if hooks is None else len(hooks)} hook lists; give one output (and hook list) per input"
        )
    empty = [p.sample_id for p, out in zip(prepared, outputs, strict=True) if not out]
    if empty:
        raise ValueError(
            f"single_pass_batch: sample {empty[0]!r} has no output ids; leave it out of the batch"
        )
    per_row = [list(h or []) for h in hooks] if hooks is not None else [[] for _ in prepared]
    dtype = pass_dtype(bundle.dtype, precision)
    with language_model_in(bundle.model, dtype, bundle.dtype):
        what = _Wanted(heads, keep_rows, candidates)
        if prefix is not None and _prefix_usable(bundle, prefix, list(prepared), per_row, dtype):
            return _prefix_pass(bundle, prefix, list(outputs), per_row, what)
        return _batch_pass(bundle, list(prepared), list(outputs), per_row, what)


@dataclass(frozen=True)
class _Wanted:
    """What the pass reduces the rows to (the `single_pass` options)."""

    heads: HeadsMode
    keep_rows: bool
    candidates: int


def _batch_pass(
    bundle: ModelBundle,
    prepared: list[PreparedInput],
    outputs: list[list[int]],
    per_row: list[list[Any]],
    what: _Wanted,
) -> list[PassResult]:
    adapter = bundle.adapter
    model = bundle.model
    device = prepared[0].input_ids.device
    # Positions fed per row: input + output[:-1] (the last output token is never input).
    fulls = [
        torch.cat([p.input_ids[0], torch.tensor(out[:-1], dtype=torch.long, device=device)])
        for p, out in zip(prepared, outputs, strict=True)
    ]
    ns = [int(f.numel()) for f in fulls]
    kwargs_list = [adapter.forward_kwargs(p.model_kwargs, n) for p, n in zip(prepared, ns, strict=True)]
    batch = collate(bundle, fulls, kwargs_list, left=False)
    p0 = _common_prefill(bundle, prepared, fulls)
    # The hooks see each row alone; with right padding no row has leading pad keys.
    hooks = row_hooks(per_row, [0] * batch.size)
    kwargs: dict[str, Any]
    if p0 > 0:
        # p0 <= o_i - 1 < n_i for every row: the prefix holds no pad position, and every image (see
        # `_common_prefill`), so the pixels and M-RoPE positions are all consumed here.
        out = prefill_forward(bundle, batch.input_ids[:, :p0], _cut_kwargs(bundle, batch, p0), hooks)
        kwargs = {adapter.cache_kwarg(model): adapter.output_cache(out)}
    else:
        adapter.reset_state(model)
        kwargs = dict(batch.model_kwargs)
    with graded_forward(bundle, hooks) as ctx:
        res = model(input_ids=batch.input_ids[:, p0:], **kwargs, use_cache=p0 > 0)
    spans = [
        RowSpan(
            p,
            torch.tensor(out, dtype=torch.long, device=device),
            batch_row=b,
            q0=p.n_input - 1 - p0,
            keys=n,
        )
        for b, (p, out, n) in enumerate(zip(prepared, outputs, ns, strict=True))
    ]
    return graded_results(bundle, res.logits, ctx.records, spans, what.heads, what.keep_rows, what.candidates)


def _common_prefill(bundle: ModelBundle, prepared: list[PreparedInput], fulls: list[torch.Tensor]) -> int:
    """Positions every row may prefill without gradients: the smallest per-row prefill, or 0 when some row has
    an image placeholder at or after it (an image is never split between the prefill and the graded forward:
    Qwen2-VL computes its M-RoPE positions, LLaVA and InternVL splice their features, in one call)."""
    adapter = bundle.adapter
    p0 = min(
        adapter.prefill_length(bundle, f.tolist(), p.n_input) for p, f in zip(prepared, fulls, strict=True)
    )
    img = adapter.image_token_ids(bundle)
    if p0 > 0 and any(int(t) in img for f in fulls for t in f[p0:].tolist()):
        return 0
    return p0


def _cut_kwargs(bundle: ModelBundle, batch: Batch, n: int) -> dict[str, Any]:
    """The batch's model kwargs for its first n positions: per-token kwargs cut, pixels and grids kept."""
    token = bundle.adapter.token_kwargs
    return {k: (v[:, :n] if k in token else v) for k, v in batch.model_kwargs.items()}


def _prefix_usable(
    bundle: ModelBundle,
    prefix: BatchPrefix,
    prepared: list[PreparedInput],
    per_row: list[list[Any]],
    dtype: torch.dtype,
) -> bool:
    """Whether the decoding's prefill serves this pass: the same samples in the same order, computed in the
    pass's dtype, no hook changing prompt rows, and every row may prefill up to its last input position."""
    if len(prefix.items) != len(prepared) or any(
        a is not b for a, b in zip(prefix.items, prepared, strict=True)
    ):
        return False
    if prefix.dtype != dtype or any(hooks_act_on_prompt(h) for h in per_row):
        return False
    adapter = bundle.adapter
    return all(
        adapter.prefill_length(bundle, p.input_ids[0].tolist(), p.n_input) == p.n_input - 1 for p in prepared
    )


def _prefix_pass(
    bundle: ModelBundle,
    prefix: BatchPrefix,
    outputs: list[list[int]],
    per_row: list[list[Any]],
    what: _Wanted,
) -> list[PassResult]:
    """The pass from the decoding's left-padded prefill: the cache of the first W - 1 input columns (every row's
    input ends at column W - 1), then one graded forward of each row's last input token and its outputs but the
    last, right-padded to the longest; pad keys masked, positions continued per row."""
    from transformers import DynamicCache

    adapter = bundle.adapter
    model = bundle.model
    prepared = prefix.items
    device = prefix.attention_mask.device
    w = prefix.width
    t_max = max(len(out) for out in outputs)
    ids = torch.full((len(outputs), t_max), pad_token_id(bundle), dtype=torch.long, device=device)
    for b, (p, out) in enumerate(zip(prepared, outputs, strict=True)):
        ids[b, 0] = p.input_ids[0, -1]
        ids[b, 1 : len(out)] = torch.tensor(out[:-1], dtype=torch.long, device=device)
    cache = DynamicCache(config=model.config)
    for layer, (k, v) in enumerate(zip(prefix.keys, prefix.values, strict=True)):
        cache.update(k[:, :, : w - 1], v[:, :, : w - 1], layer)
    mask = torch.cat([prefix.attention_mask[:, : w - 1], torch.ones_like(ids)], dim=1)
    positions = adapter.step_positions(prefix.next_positions - 1, t_max)
    hooks = row_hooks(per_row, prefix.pads)
    adapter.reset_state(model)
    with graded_forward(bundle, hooks) as ctx:
        res = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            **{adapter.cache_kwarg(model): cache},
            use_cache=True,
        )
    spans = [
        RowSpan(
            p,
            torch.tensor(out, dtype=torch.long, device=device),
            batch_row=b,
            q0=0,
            keys=p.n_input - 1 + len(out),
            key0=prefix.pads[b],
        )
        for b, (p, out) in enumerate(zip(prepared, outputs, strict=True))
    ]
    return graded_results(bundle, res.logits, ctx.records, spans, what.heads, what.keep_rows, what.candidates)
