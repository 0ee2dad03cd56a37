"""LocoRE: Local Coherence Reinforcement (paper Eq. 8-10, Algorithm 2) as an attention hook.

Indexing (our reading of the paper, written down because the paper mixes 1- and 0-based rows): the paper's
A^(P+1) has P+1 rows, so its last row "P+1" is the query at 0-based position P, the last generated token, whose
forward predicts the next token. Its keys j with P - j <= w_s and o <= j < P get gain 1 + beta. So, for a query at
0-based position q, the boosted keys are

    max(o, q - w_s) <= j < q            (o = first output position)

i.e. the w_s output tokens *before* the query token; the query's own key (the diagonal) is not boosted. The boost
first has an effect at output step 2 (query o+1, key o). It applies in every language-model layer and head, to every
query row the forward holds (one row per cached decoding step; every output row in a teacher-forced pass, which is
how the capture engine's saliency pass sees the same modified attention the generation used).

Modes:
- "post_softmax" (default, the paper's Eq. 9): multiply the probabilities, no renormalization (rows then sum to
  slightly more than 1).
- "renormalize": multiply, then divide each row by its new sum.
- "logit_offset": add log(1 + beta) to the masked pre-softmax scores of those keys. This equals "renormalize" up to
  rounding (softmax of shifted logits = rescaled, renormalized probabilities).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from saliency_lab.config import LocoREConfig

Positions = torch.Tensor | range | Sequence[int]


def as_positions(pos: Positions, device: torch.device | str | None = None) -> torch.Tensor:
    """Positions as a 1-D long tensor (the attention hook contract allows tensors, ranges or lists)."""
    if isinstance(pos, torch.Tensor):
        return pos.reshape(-1).to(device=device, dtype=torch.long)
    if isinstance(pos, range):
        return torch.arange(pos.start, pos.stop, pos.step, device=device, dtype=torch.long)
    return torch.as_tensor(list(pos), device=device, dtype=torch.long)


def locore_mask(
    query_positions: Positions, key_positions: Positions, output_start: int, window: int
) -> torch.Tensor:
    """Bool [Q, K]: True where key j gets LocoRE's gain for query q: max(o, q - w_s) <= j < q."""
    q = as_positions(query_positions)[:, None]
    j = as_positions(key_positions)[None, :]
    return (j >= output_start) & (j < q) & (j >= q - window)


def apply_gain(probs: torch.Tensor, mask: torch.Tensor, gain: float, renormalize: bool) -> torch.Tensor:
    """probs [..., Q, K] with masked entries multiplied by `gain` (out of place, autograd-safe)."""
    factor = torch.ones(mask.shape, dtype=probs.dtype, device=probs.device)
    factor = factor.masked_fill(mask.to(probs.device), gain)
    out = probs * factor
    if renormalize:
        out = out / out.sum(dim=-1, keepdim=True)
    return out


def apply_logit_offset(scores: torch.Tensor, mask: torch.Tensor, offset: float) -> torch.Tensor:
    """Pre-softmax scores [..., Q, K] with `offset` added on masked entries."""
    add = torch.zeros(mask.shape, dtype=scores.dtype, device=scores.device)
    add = add.masked_fill(mask.to(scores.device), offset)
    return scores + add


class LocoREHook:
    """Callable attention hook (probabilities, or pre-softmax scores in "logit_offset" mode)."""

    acts_on_prompt = False  # only queries after the first output position are changed

    def __init__(self, cfg: LocoREConfig, output_start: int) -> None:
        if cfg.beta < 0:
            raise ValueError(f"LocoRE beta must be >= 0, got {cfg.beta}")
        if cfg.window < 1:
            raise ValueError(f"LocoRE window must be >= 1, got {cfg.window}")
        if cfg.mode not in ("post_softmax", "renormalize", "logit_offset"):
            raise ValueError(f"unknown LocoRE mode {cfg.mode!r}")
        self.beta = float(cfg.beta)
        self.window = int(cfg.window)
        self.mode = cfg.mode
        self.output_start = int(output_start)
        self._row_key: tuple | None = None
        self._row: torch.Tensor | None = None

    @property
    def on_logits(self) -> bool:
        """True when the boost acts on the attention logits (mode logit_offset), not on the probabilities."""
        return self.mode == "logit_offset"

    def _mask(self, query_positions: Positions, key_positions: Positions) -> torch.Tensor | None:
        q = as_positions(query_positions)
        # Queries at or before the first output position have no output key before them: nothing to do.
        if q.numel() == 0 or int(q.max()) <= self.output_start:
            return None
        mask = locore_mask(q, key_positions, self.output_start, self.window)
        return mask if bool(mask.any()) else None

    def _decode_row(self, x: torch.Tensor) -> torch.Tensor | None:
        """The one-query (cached decoding) case as a [K] factor/offset vector, built once per step and shared by
        all layers; None when no key is boosted. Per the attention function's contract the keys are arange(K)
        and the query is the last position, K - 1."""
        k = x.shape[-1]
        key = (k, x.dtype, x.device)
        if self._row_key != key:
            q = k - 1
            lo, hi = max(self.output_start, q - self.window), q
            vec = None
            if lo < hi:
                fill = math.log1p(self.beta) if self.on_logits else 1.0 + self.beta
                vec = torch.full((k,), 0.0 if self.on_logits else 1.0, dtype=x.dtype, device=x.device)
                vec[lo:hi] = fill
            self._row_key, self._row = key, vec
        return self._row

    def __call__(
        self, x: torch.Tensor, *, layer_idx: int, query_positions: Positions, key_positions: Positions
    ) -> torch.Tensor:
        if x.shape[-2] == 1 and isinstance(key_positions, torch.Tensor) and key_positions.numel() == x.shape[-1]:
            row = self._decode_row(x)
            if row is None:
                return x
            if self.on_logits:
                return x + row
            out = x * row
            return out / out.sum(dim=-1, keepdim=True) if self.mode == "renormalize" else out
        mask = self._mask(query_positions, key_positions)
        if mask is None:
            return x
        if self.on_logits:
            return apply_logit_offset(x, mask, math.log1p(self.beta))
        return apply_gain(x, mask, 1.0 + self.beta, renormalize=self.mode == "renormalize")

    def __repr__(self) -> str:
        return f"LocoREHook(beta={self.beta}, window={self.window}, mode={self.mode!r}, o={self.output_start})"
