"""Saliency-decay intervention (paper App. B.1, Table 5): weaken chosen output tokens and watch what follows.

After the token at output position p has been generated, the attention that every later query q >= p pays to key
p is multiplied by r (the decay rate; r = 1 is the baseline, r = 0.2 is "decay 80%"), in every language-model
layer and head. q >= p includes the query at p itself (the forward in which token p is fed, predicting p+1): that
is the edge whose saliency is token p+1's `prev`, the quantity the paper's selection rule reads.

Which tokens are decayed:
- `steps`: fixed output steps (0-based), the same for every sample;
- `threshold`: an online rule, decaying every generated token whose normalized prev saliency, averaged over the
  target layers, exceeds the threshold (the paper uses 0.45 on correct tokens; labels are unknown while decoding,
  so the rule here reads saliency only). The rule needs each token's saliency while decoding: `DecayObserver`
  asks `decode` for gradients through its layers and reads the emitted token's row after each step.

Like LocoRE the default is a post-softmax multiplication without renormalization (`mode="renormalize"` divides
each row by its new sum).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from saliency_lab.config import SaliencyDecayConfig
from saliency_lab.decoding.locore import Positions, apply_gain, as_positions
from saliency_lab.decoding.loop import target_layers
from saliency_lab.decoding.protocols import StepContext
from saliency_lab.decoding.result import DecodeResult

__all__ = ["DecayObserver", "SaliencyDecayConfig", "SaliencyDecayHook", "decay_mask"]


def decay_mask(query_positions: Positions, key_positions: Positions, decayed: Iterable[int]) -> torch.Tensor:
    """Bool [Q, K]: key j is a decayed position and the query comes at or after it (q >= j)."""
    q = as_positions(query_positions)[:, None]
    j = as_positions(key_positions)
    chosen = torch.as_tensor(sorted(set(int(p) for p in decayed)), dtype=torch.long)
    is_chosen = torch.isin(j, chosen)[None, :]
    return is_chosen & (j[None, :] <= q)


class SaliencyDecayHook:
    """Post-softmax hook scaling attention toward decayed output positions by `rate`.

    `positions` is a live set: the online rule adds a position as soon as its token is generated.
    """

    on_logits = False
    acts_on_prompt = False  # only keys at output positions are changed

    def __init__(self, cfg: SaliencyDecayConfig, output_start: int) -> None:
        cfg.validate()
        self.rate = float(cfg.rate)
        self.renormalize = cfg.mode == "renormalize"
        self.output_start = int(output_start)
        self.positions: set[int] = {self.output_start + int(s) for s in cfg.steps}

    def add_step(self, step: int) -> None:
        """Mark output step `step` as emitted (its position becomes a decay target)."""
        self.positions.add(self.output_start + int(step))

    def __call__(
        self, probs: torch.Tensor, *, layer_idx: int, query_positions: Positions, key_positions: Positions
    ) -> torch.Tensor:
        if not self.positions:
            return probs
        q = as_positions(query_positions)
        if q.numel() == 0 or int(q.max()) < min(self.positions):
            return probs
        mask = decay_mask(q, key_positions, self.positions)
        if not bool(mask.any()):
            return probs
        return apply_gain(probs, mask, self.rate, renormalize=self.renormalize)

    def __repr__(self) -> str:
        return f"SaliencyDecayHook(rate={self.rate}, positions={sorted(self.positions)})"


class DecayObserver:
    """The decay as a decoding observer: the hook, plus the online threshold rule when configured.

    Adds the token columns' worth of stats `decayed_steps` (output steps whose token was decayed) and `prev_norm`
    (per step the rule's value, None at step 0 or without the rule).
    """

    def __init__(self, cfg: SaliencyDecayConfig, output_start: int, n_layers: int) -> None:
        self.cfg = cfg
        self.hook = SaliencyDecayHook(cfg, output_start)
        self.layers = target_layers(n_layers, cfg.layers) if cfg.threshold is not None else []
        self.prev_norm: list[float | None] = []

    def attention_hooks(self) -> list[Any]:
        """The decay hook (its positions grow as the rule fires)."""
        return [self.hook]

    def grad_layers(self) -> list[int]:
        """The rule's layers (empty for fixed steps)."""
        return list(self.layers)

    def likely_requests(self, ctx: StepContext, token_id: int) -> list[int]:
        """The emitted token, when the online rule reads it at this step."""
        return [token_id] if self.layers and ctx.step >= 1 else []

    def on_token(self, ctx: StepContext, token_id: int) -> None:
        """Online rule: decay the token from the next forward on when its prev saliency exceeds the threshold."""
        value = None
        if self.layers and ctx.step >= 1:
            value = ctx.row_stats(token_id, self.layers).prev_norm()
            if value is not None and value > float(self.cfg.threshold):  # type: ignore[arg-type]
                self.hook.add_step(ctx.step)
        self.prev_norm.append(value)

    def finish(self, result: DecodeResult) -> None:
        """`decayed_steps` and `prev_norm` into the stats."""
        o, n = self.hook.output_start, len(result.output_ids)
        result.stats["decayed_steps"] = sorted(p - o for p in self.hook.positions if p - o < n)
        result.stats["prev_norm"] = list(self.prev_norm)
