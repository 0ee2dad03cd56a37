"""SGRS: Saliency-Guided Rejection Sampling (paper Algorithm 1, Eq. 6-7), the `sgrs` step policy of `decode`.

Per step (output step s, new position P = o + s, query q = P - 1):
1. one forward of the previous token with gradients through the target layers (`CachedDecoder.step`);
2. top-K candidates of softmax(logits / temperature) (image placeholder ids removed);
3. up to R draws without replacement (seeded `torch.Generator`, see `selection.py`); each drawn candidate c gets
   one backward of -log p(c) (p = the model's softmax at q, temperature 1, like capture) on the same graph;
4. S(c) = the mean over target layers of the chosen score (`--sgrs-score`, default the paper's out_mean =
   out_sum / (row_l2 * s) with row normalization; any saliency score of docs/analysis.md, "Token scores", with
   the formulas of the SQL macros, see `loop.ROW_SCORES`), S_raw over heads as `heads` (default sum_abs);
   accept the first c that passes tau (reject low: S(c) >= tau, the paper's rule; reject high: S(c) <= tau),
   else emit the evaluated candidate with the best S (fallback).
At step 0 S is undefined (null in the tables; out_mean has no prior output keys, and the prefill runs without
gradients for every score): the first draw is accepted without a backward. S(c) equals what the SQL macros give
on capture's saliency tables for the same token, tested against the per-prefix reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from saliency_lab.config import DecodingConfig, SGRSConfig
from saliency_lab.decoding.loop import target_layers
from saliency_lab.decoding.protocols import StepContext, register_policy
from saliency_lab.decoding.result import DecisionLog, DecodeResult
from saliency_lab.decoding.selection import draw_index, sgrs_select, sgrs_threshold, top_k_candidates
from saliency_lab.errors import SampleError

if TYPE_CHECKING:
    from saliency_lab.models.base import ModelBundle


class SGRSPolicy:
    """Rejection sampling on the saliency score; every decision is logged for the TOKENS/DECISIONS tables."""

    def __init__(self, cfg: SGRSConfig, layers: list[int], temperature: float) -> None:
        self.cfg = cfg
        self.layers = layers
        self.temperature = float(temperature)
        self.log = DecisionLog(cfg.score)

    def grad_layers(self) -> list[int]:
        """The SGRS target layers (`--sgrs-layers`, default the upper half)."""
        return list(self.layers)

    def likely_requests(self, ctx: StepContext) -> list[int]:
        """The first draw (peeked with a copy of the generator): most steps accept it."""
        if ctx.step == 0:
            return []
        cands = top_k_candidates(ctx.selection_logits(), self.cfg.k, self.temperature)
        if not cands.ids:
            return []
        peek = torch.Generator()
        peek.set_state(ctx.generator.get_state())
        return [cands.ids[draw_index(cands.probs, peek)]]

    def choose(self, ctx: StepContext) -> int:
        """Draw up to R top-K candidates, accept the first whose score reaches tau (else the best-scoring)."""
        cfg, step = self.cfg, ctx.step
        cands = top_k_candidates(ctx.selection_logits(), cfg.k, self.temperature)
        if not cands.ids:
            raise SampleError(f"sample {ctx.decoder.prepared.sample_id!r}: no token with non-zero probability at "
                              f"step {step}")
        tau = sgrs_threshold(self.log.history, cfg.alpha, cfg.window, cfg.reject)

        def score(tok: int) -> float | None:
            # Step 0 is not scored (no gradient through the prefill): undefined, accepted as drawn.
            return None if step == 0 else ctx.row_stats(tok, self.layers).score(cfg.score)

        decision = sgrs_select(cands, score, tau, cfg.max_resample, ctx.generator, cfg.reject)
        self.log.add(step, decision)
        return decision.token_id

    def finish(self, result: DecodeResult) -> None:
        """TOKENS decision columns, DECISIONS rows and counters."""
        result.token_columns.update(self.log.token_columns)
        result.decisions.update(self.log.decisions)
        result.stats.update(target_layers=list(self.layers), score=self.cfg.score, reject=self.cfg.reject,
                            fallbacks=sum(self.log.token_columns["fallback"]),
                            rejections=sum(self.log.token_columns["n_rejected"]))


@register_policy("sgrs")
def sgrs_policy(bundle: ModelBundle, cfg: DecodingConfig) -> SGRSPolicy:
    """Policy of `--strategy sgrs` (`--sgrs-*`, `--temperature`)."""
    return SGRSPolicy(cfg.sgrs, target_layers(bundle.n_layers, cfg.sgrs.layers), cfg.temperature)
