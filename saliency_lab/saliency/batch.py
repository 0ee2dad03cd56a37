"""Several samples in one forward: padding, positions and per-row attention hooks (docs/capture.md, "Batches").

A padded row must compute exactly what its sample computes alone. Two layouts give that:

- **left padding** (the batched decoding loop): every row ends at the same index, so one new token per row is
  one new column for the whole batch. Pad keys are masked (their probability is exactly 0 after the softmax) and
  each real token gets the position it has in its own sequence (`ModelAdapter.batch_positions`; M-RoPE for
  Qwen2-VL), so attention rows, logits and saliency equal the batch-1 ones up to the summation order of the
  matrix products (float64: ~1e-15 relative).
- **right padding** (the batched saliency pass): positions are the unpadded ones already and the causal mask alone
  keeps pad positions out of every real row (they come after it). No attention mask is needed.

Attention hooks (LocoRE, the decay, caller hooks) are written for one sequence whose keys start at position 0;
`RowHooks` runs each row's own hooks on that row alone, with the pad columns cut off, so a hook sees exactly what
it sees at batch size 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from saliency_lab.models.base import ModelBundle, PreparedInput


@dataclass
class Batch:
    """Rows of token ids padded to one width, with their mask, model kwargs and pad counts."""

    input_ids: torch.Tensor  # [B, N]
    attention_mask: torch.Tensor  # [B, N] long, 1 on real tokens
    model_kwargs: dict[str, Any]
    pads: list[int]  # pad positions per row (on the left when `left`, else on the right)
    left: bool

    @property
    def size(self) -> int:
        """Number of rows."""
        return int(self.input_ids.shape[0])


@dataclass
class BatchPrefix:
    """The no-grad prefill of a left-padded batch of inputs, kept by the batched decoding so the batched saliency
    pass can start from it instead of forwarding the inputs again (`batch_pass.single_pass_batch(prefix=...)`).

    Per layer the cached keys and values [B, H_kv, W, d] of the W input columns (row b's input at columns
    pads[b]..W-1), each row's next position (after its input) and the dtype they were computed in (the pass
    reuses them only when it computes in the same dtype)."""

    items: list[PreparedInput]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    pads: list[int]
    next_positions: torch.Tensor  # [B]
    attention_mask: torch.Tensor  # [B, W]
    dtype: torch.dtype

    @property
    def width(self) -> int:
        """Input columns W."""
        return int(self.attention_mask.shape[1])


def pad_token_id(bundle: ModelBundle) -> int:
    """The id pad positions hold: the tokenizer's pad (else EOS, else 0), never an image placeholder (the model
    would try to splice image features into it)."""
    tok = bundle.tokenizer
    avoid = set(bundle.adapter.image_token_ids(bundle))
    for cand in (getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None), 0):
        if cand is not None and int(cand) not in avoid:
            return int(cand)
    return next(i for i in range(len(avoid) + 1) if i not in avoid)


def collate(
    bundle: ModelBundle, rows: Sequence[torch.Tensor], kwargs_list: Sequence[dict[str, Any]], *, left: bool
) -> Batch:
    """Pad 1-D id rows (and their model kwargs, by the adapter's rule) into one batch."""
    width = max(int(r.numel()) for r in rows)
    pad_id = pad_token_id(bundle)
    device = rows[0].device
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    pads = []
    for b, r in enumerate(rows):
        n = int(r.numel())
        pad = width - n
        sl = slice(pad, width) if left else slice(0, n)
        ids[b, sl] = r.reshape(-1)
        mask[b, sl] = 1
        pads.append(pad)
    kwargs = bundle.adapter.collate_kwargs(list(kwargs_list), width, pads, left)
    return Batch(ids, mask, kwargs, pads, left)


def collate_inputs(bundle: ModelBundle, items: Sequence[PreparedInput], *, left: bool) -> Batch:
    """The samples' whole inputs as one batch (the decoding prefill)."""
    return collate(bundle, [p.input_ids[0] for p in items], [p.model_kwargs for p in items], left=left)


class RowHooks:
    """One attention hook that applies each row's own hooks to that row of a left- or right-padded batch.

    Row b's hooks get the row with its `pad` leading key columns (and the query rows at pad positions) cut off,
    and positions counted from its first real token, i.e. the tensor they would see at batch size 1; the cut
    parts are put back unchanged. Build one for the probability hooks and one for the logit hooks
    (`on_logits`), as `intervention_context` sends each list to its place."""

    def __init__(self, per_row: Sequence[Sequence[Any]], left_pads: Sequence[int], on_logits: bool) -> None:
        self.per_row = [list(h) for h in per_row]
        self.left_pads = [int(p) for p in left_pads]
        self.on_logits = on_logits
        hooks = [h for row in self.per_row for h in row]
        self.acts_on_prompt = any(getattr(h, "acts_on_prompt", True) is not False for h in hooks)

    def __bool__(self) -> bool:
        return any(self.per_row)

    def __call__(self, x: torch.Tensor, *, layer_idx: int, query_positions: Any, key_positions: Any):
        k_len, q_len = x.shape[-1], x.shape[-2]
        off = k_len - q_len
        outs = []
        for b, hooks in enumerate(self.per_row):
            xb = x[b : b + 1]
            if not hooks:
                outs.append(xb)
                continue
            p = self.left_pads[b]
            qs = max(0, p - off)  # query rows at pad positions are left as they are
            body = xb[:, :, qs:, p:]
            kpos = torch.arange(k_len - p, device=x.device)
            qpos = kpos[off + qs - p :]
            for h in hooks:
                body = h(body, layer_idx=layer_idx, query_positions=qpos, key_positions=kpos)
            if p == 0 and qs == 0:
                outs.append(body)
                continue
            lower = torch.cat([xb[:, :, qs:, :p], body], dim=-1)
            outs.append(torch.cat([xb[:, :, :qs, :], lower], dim=-2))
        return torch.cat(outs, dim=0)


def row_hooks(per_row: Sequence[Sequence[Any]], left_pads: Sequence[int]) -> list[Any]:
    """The per-row hooks of a batch as at most two batch hooks (probability hooks, logit hooks); empty when no
    row has a hook."""
    out: list[Any] = []
    for on_logits in (False, True):
        split = [[h for h in row if bool(getattr(h, "on_logits", False)) == on_logits] for row in per_row]
        if any(split):
            out.append(RowHooks(split, left_pads, on_logits))
    return out
