"""SGRS: Saliency-Guided Rejection Sampling (paper Algorithm 1, Eq. 6-7) in our cached decoding loop.

Per step (output step s, new position P = o + s, query q = P - 1):
1. one forward of the previous token with gradients through the target layers (`CachedDecoder.step`);
2. top-K candidates of softmax(logits / temperature) (image placeholder ids removed);
3. up to R draws without replacement (seeded `torch.Generator`, see `selection.py`); each drawn candidate c gets
   one backward of -log p(c) (p = the model's softmax at q, temperature 1, like capture) on the same graph;
4. S(c) = mean over target layers of out_sum / (row_l2 * s), the `out_mean` of SPEC section 2 with row
   normalization, S_raw over heads as `heads` (default sum_abs); accept the first c with S(c) >= tau, else emit the
   evaluated candidate with the highest S (fallback).
At step 0 there are no prior output tokens: S is undefined (null in the tables), tau is 0 and the first draw is
accepted without a backward (the prefill runs without gradients). S(c) equals what capture's saliency tables give
for the same token (`out_sum / (row_l2 * step)` averaged over the same layers), tested against the per-prefix
reference.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from saliency_lab.config import DecodingConfig, HeadsMode, SGRSConfig
from saliency_lab.decoding.hooks import intervention_hooks
from saliency_lab.decoding.loop import CachedDecoder, eos_set, make_generator, target_layers
from saliency_lab.decoding.result import DecisionLog, DecodeResult
from saliency_lab.decoding.selection import sgrs_select, sgrs_threshold, top_k_candidates
from saliency_lab.errors import SampleError


def validate_sgrs(cfg: SGRSConfig, n_layers: int | None = None) -> None:
    """One-line errors naming the flag for impossible SGRS settings (`SGRSConfig.validate`)."""
    cfg.validate(n_layers)


def decode_sgrs(bundle: Any, prepared: Any, decoding: DecodingConfig, *, heads: HeadsMode = "sum_abs",
                extra_hooks: Sequence[Any] = ()) -> DecodeResult:
    """Generate one sample with SGRS (and LocoRE when decoding.locore.beta != 0); every decision recorded."""
    cfg = decoding.sgrs
    # run.capture has checked all of this before the run started; direct library calls get the same errors.
    decoding.validate(bundle.n_layers)
    layers = target_layers(bundle.n_layers, cfg.layers)
    hooks = intervention_hooks(decoding, prepared.n_input) + list(extra_hooks)
    dec = CachedDecoder(bundle, prepared, hooks=hooks, grad_layers=layers)
    gen = make_generator(decoding, prepared.sample_id)
    eos = eos_set(bundle)
    log = DecisionLog()
    out: list[int] = []
    n_backward = 0
    t0 = time.perf_counter()
    with dec.active():
        logits = dec.prefill()
        for step in range(decoding.max_new_tokens):
            cands = top_k_candidates(dec.selection_logits(logits), cfg.k, decoding.temperature)
            if not cands.ids:
                raise SampleError(f"sample {prepared.sample_id!r}: no token with non-zero probability at step {step}")
            tau = sgrs_threshold(log.history, cfg.alpha, cfg.window)
            if step == 0:
                def score_fn(tok: int) -> float | None:
                    return None
            else:
                logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)

                def score_fn(tok: int, logp: torch.Tensor = logp) -> float | None:
                    nonlocal n_backward
                    n_backward += 1
                    return dec.row_stats(logp, tok, heads).score()

            decision = sgrs_select(cands, score_fn, tau, cfg.max_resample, gen)
            log.add(step, decision)
            out.append(decision.token_id)
            if decision.token_id in eos or len(out) == decoding.max_new_tokens:
                break
            logits = dec.step(decision.token_id, grad=True)
    stats = {"seconds": time.perf_counter() - t0, "backward_passes": n_backward, "target_layers": layers,
             "fallbacks": sum(log.token_columns["fallback"]),
             "rejections": sum(log.token_columns["n_rejected"])}
    return DecodeResult(output_ids=out, token_columns=log.token_columns, decisions=log.decisions, stats=stats)
