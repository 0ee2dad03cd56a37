"""Saliency-decay intervention (paper App. B.1, Table 5): weaken chosen output tokens and watch what follows.

After the token at output position p has been generated, the attention that every later query q >= p pays to key
p is multiplied by r (the decay rate; r = 1 is the baseline, r = 0.2 is "decay 80%"), in every language-model
layer and head. q >= p includes the query at p itself (the forward in which token p is fed, predicting p+1): that
is the edge whose saliency is token p+1's `prev`, the quantity the paper's selection rule reads.

Which tokens are decayed:
- `steps`: fixed output steps (0-based), the same for every sample;
- `threshold`: an online rule, decaying every generated token whose normalized prev saliency, averaged over the
  target layers, exceeds the threshold (the paper uses 0.45 on correct tokens; labels are unknown while decoding,
  so the rule here reads saliency only). The rule needs each token's saliency while decoding, so it runs in our
  gradient-enabled loop (`decode_with_decay`); fixed steps work as plain hooks in any generation.

Like LocoRE the default is a post-softmax multiplication without renormalization (`mode="renormalize"` divides
each row by its new sum).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from saliency_lab.config import DecodingConfig, HeadsMode
from saliency_lab.decoding.locore import Positions, apply_gain, as_positions
from saliency_lab.decoding.result import DecodeResult
from saliency_lab.errors import SaliencyLabError


@dataclass
class SaliencyDecayConfig:
    rate: float = 1.0  # r: factor on attention toward a decayed token (1 = no change)
    steps: list[int] = field(default_factory=list)  # output steps to decay
    threshold: float | None = None  # online rule: decay tokens whose normalized prev saliency > threshold
    layers: list[int] | None = None  # layers the rule averages over; None = upper half
    mode: Literal["post_softmax", "renormalize"] = "post_softmax"

    def validate(self) -> None:
        if not 0.0 <= self.rate:
            raise ValueError(f"decay rate must be >= 0, got {self.rate}")
        if any(int(s) < 0 for s in self.steps):
            raise ValueError(f"decay steps must be >= 0, got {self.steps}")
        if self.mode not in ("post_softmax", "renormalize"):
            raise ValueError(f"unknown decay mode {self.mode!r}")

    @property
    def active(self) -> bool:
        return self.rate != 1.0 and (bool(self.steps) or self.threshold is not None)


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


def decode_with_decay(bundle: Any, prepared: Any, decoding: DecodingConfig, decay: SaliencyDecayConfig,
                      *, heads: HeadsMode = "sum_abs") -> DecodeResult:
    """Greedy / top-k sampling (our loop) with the decay intervention; SGRS via `decode_sgrs(extra_hooks=...)`.

    With `threshold` set, every step >= 1 runs with gradients through the target layers and one backward for the
    emitted token; its normalized prev saliency (mean over the layers) decides whether it is decayed from the
    next forward on. `stats` holds `decayed_steps` and the per-step `prev_norm` values (None at step 0).
    """
    from saliency_lab.decoding.hooks import intervention_hooks
    from saliency_lab.decoding.loop import CachedDecoder, eos_set, make_generator, target_layers
    from saliency_lab.decoding.selection import draw_index, top_k_candidates

    if decoding.strategy not in ("greedy", "sample"):
        raise SaliencyLabError(
            f"saliency decay runs with strategy greedy or sample, not {decoding.strategy!r}; for SGRS pass "
            "SaliencyDecayHook(...) to decode_sgrs(extra_hooks=...)"
        )
    decay.validate()
    hook = SaliencyDecayHook(decay, prepared.n_input)
    online = decay.threshold is not None
    layers = target_layers(bundle.n_layers, decay.layers) if online else []
    dec = CachedDecoder(bundle, prepared, hooks=intervention_hooks(decoding, prepared.n_input) + [hook],
                        grad_layers=layers)
    gen = make_generator(decoding, prepared.sample_id)
    eos = eos_set(bundle)
    out: list[int] = []
    prev_norm: list[float | None] = []
    with dec.active():
        logits = dec.prefill()
        for step in range(decoding.max_new_tokens):
            sel = dec.selection_logits(logits)
            if decoding.strategy == "greedy":
                tok = int(torch.argmax(sel))
            else:
                cands = top_k_candidates(sel, decoding.top_k or sel.numel(), decoding.temperature)
                tok = cands.ids[draw_index(cands.probs, gen)]
            value = None
            if online and step >= 1:
                logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
                value = dec.row_stats(logp, tok, heads, retain=False).prev_norm()
                if value is not None and value > decay.threshold:
                    hook.add_step(step)
            prev_norm.append(value)
            out.append(tok)
            if tok in eos or len(out) == decoding.max_new_tokens:
                break
            logits = dec.step(tok, grad=online)
    decayed = sorted(p - prepared.n_input for p in hook.positions if p - prepared.n_input < len(out))
    return DecodeResult(output_ids=out, stats={"decayed_steps": decayed, "prev_norm": prev_norm, "hook": hook})
