"""SGRS selection logic (paper Algorithm 1), independent of any model.

The decoding loop hands this module the step's probabilities and a scoring function; everything about *which*
token is chosen lives here, so it can be tested without a model and reused by offline replays.

Conventions (they change numbers, and docs/interventions.md repeats them):
- Candidates are the top-K tokens of softmax(logits / temperature), ranked by probability (rank 0 = most probable).
- Draws are without replacement, one at a time, each from the remaining candidates' probabilities renormalized
  (`torch.multinomial` with a seeded `torch.Generator`). Top-K sampling in `loop.py` uses the very same draw, so
  SGRS whose first draw is always accepted (alpha = 0) reproduces top-K sampling token for token.
- tau at step s = alpha * mean of the scores of the tokens *accepted by the threshold* at steps s-W .. s-1
  (fallback tokens and steps without a defined score are left out); when that set is empty tau = 0 under reject
  low and +inf under reject high, so nothing is rejected (the offline replay's rule, analysis/calibration.py).
- reject low (the paper's rule): a candidate is accepted when its score >= tau; reject high: when its score <= tau.
  A candidate whose score is undefined (step 0: SGRS scores no step-0 candidate; or when every other
  probability underflows to 0, where the loss gradient and so every saliency row is zero) is accepted as drawn.
- When all R draws are rejected, the evaluated candidate with the best score (highest under reject low, lowest
  under reject high) is emitted (fallback); ties go to the earlier draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

ScoreFn = Callable[[int], "float | None"]


@dataclass(frozen=True)
class Candidates:
    """The top-K of one step: token ids and their (temperature-scaled) probabilities, most probable first."""

    ids: list[int]
    probs: torch.Tensor  # float64 [k], not renormalized


@dataclass(frozen=True)
class Draw:
    """One candidate SGRS evaluated at a step: draw order, probability rank, probability and score."""

    draw: int  # 0-based evaluation order
    rank: int  # rank among the candidates by probability
    token_id: int
    prob: float
    score: float | None


@dataclass
class StepDecision:
    """What SGRS decided at one step: the emitted token, tau, and every draw it evaluated."""

    token_id: int
    tau: float
    accepted: bool  # a draw met the threshold
    fallback: bool  # no draw met it; the best-scoring evaluated draw was emitted
    draws: list[Draw] = field(default_factory=list)

    @property
    def n_rejected(self) -> int:
        """Draws that failed the threshold (all of them on a fallback)."""
        return len(self.draws) - (1 if self.accepted else 0)

    @property
    def score(self) -> float | None:
        """Score of the emitted token."""
        for d in self.draws:
            if d.token_id == self.token_id:
                return d.score
        return None


def top_k_candidates(logits: torch.Tensor, k: int, temperature: float = 1.0) -> Candidates:
    """Top-k of softmax(logits / temperature); tokens with zero probability are dropped (never drawn)."""
    if k < 1:
        raise ValueError(f"top-k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = logits.detach().reshape(-1)
    top, idx = torch.topk(z, min(k, z.numel()))
    # p_i = exp(z_i / T - logsumexp(z / T)) in float64, only for the top-k (no full softmax is materialized).
    lse = torch.logsumexp(z.double() / temperature, dim=0)
    vals = torch.exp(top.double() / temperature - lse)
    # On the CPU: the seeded generator is a CPU generator, so draws do not depend on the model's device.
    vals, idx = vals.cpu(), idx.cpu()
    keep = vals > 0
    return Candidates(ids=[int(i) for i in idx[keep]], probs=vals[keep].clone())


def draw_index(weights: torch.Tensor, generator: torch.Generator) -> int:
    """One draw from unnormalized non-negative weights. The single sampling primitive of the package."""
    return int(torch.multinomial(weights, 1, generator=generator))


def sgrs_threshold(history: Sequence[tuple[float | None, bool]], alpha: float, window: int,
                   reject: str = "low") -> float:
    """tau for the next step from the per-step history [(score of emitted token, accepted by threshold)].

    Only the last `window` steps count, and among them only threshold-accepted steps with a defined score; with
    none, tau rejects nothing (0 under reject low, +inf under reject high).
    """
    recent = [s for s, ok in history[-window:] if ok and s is not None and math.isfinite(s)] if window > 0 else []
    if not recent:
        return math.inf if reject == "high" else 0.0
    return float(alpha) * (sum(recent) / len(recent))


def passes(score: float | None, tau: float, reject: str = "low") -> bool:
    """Whether a candidate's score meets the threshold (an undefined score always does)."""
    if score is None:
        return True
    return score <= tau if reject == "high" else score >= tau


def sgrs_select(
    cands: Candidates,
    score_fn: ScoreFn,
    tau: float,
    max_draws: int,
    generator: torch.Generator,
    reject: str = "low",
) -> StepDecision:
    """Draw up to `max_draws` candidates without replacement; accept the first that `passes` tau.

    `score_fn(token_id)` returns the candidate's saliency score, or None when it is undefined (then the candidate
    is accepted). Only drawn candidates are scored.
    """
    if not cands.ids:
        raise ValueError("no candidates with non-zero probability")
    n = min(max(1, max_draws), len(cands.ids))
    remaining = cands.probs.clone()
    draws: list[Draw] = []
    for d in range(n):
        rank = draw_index(remaining, generator)
        remaining[rank] = 0.0
        tok = cands.ids[rank]
        score = score_fn(tok)
        draws.append(Draw(d, rank, tok, float(cands.probs[rank]), score))
        if passes(score, tau, reject):
            return StepDecision(tok, tau, accepted=True, fallback=False, draws=draws)
    sign = -1.0 if reject == "high" else 1.0  # the best score is the one furthest on the accepted side
    best = max(draws, key=lambda x: (sign * x.score if x.score is not None else -math.inf, -x.draw))
    return StepDecision(best.token_id, tau, accepted=False, fallback=True, draws=draws)
