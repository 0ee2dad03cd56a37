"""`decode(bundle, prepared, cfg)`: the one generation path of saliency-lab (docs/interventions.md).

Every decoding in the package, capture's greedy and sampling runs, SGRS, LocoRE and the saliency decay, runs
this loop over one `CachedDecoder`, with one prefill. What varies is behind two small protocols:

- a `StepPolicy` picks each token (`greedy`, `sample`, `sgrs`; registered by strategy name in `POLICIES`);
- `DecodeObserver`s contribute attention hooks (LocoRE, the decay) and may act after each chosen token (the
  decay's online rule reads the token's saliency and decays it from the next forward on).

Both may ask for gradients through some layers (`grad_layers`); a step's forward then runs with gradients
through the union, and each reads its own layers with `StepContext.row_stats`. Sampling draws from one
`torch.Generator` per sample (`loop.make_generator`), and the `sample` policy draws exactly like SGRS's first
draw, so `--strategy sample --top-k K` and `--strategy sgrs --sgrs-alpha 0 --sgrs-k K` with the same seed emit the
same tokens: every SGRS run has a paired control.

Per-sample state lives in the decoder, the policy, the observers and the generator, never in module globals,
so a batched loop can later keep one of each per row.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from saliency_lab.config import DecodingConfig, HeadsMode
from saliency_lab.decoding import policies, sgrs  # noqa: F401  (register the greedy, sample and sgrs policies)
from saliency_lab.decoding.hooks import observers_for
from saliency_lab.decoding.loop import CachedDecoder, make_generator
from saliency_lab.decoding.protocols import POLICIES, DecodeObserver, HookObserver, StepContext, StepPolicy
from saliency_lab.decoding.result import DecodeResult
from saliency_lab.errors import SaliencyLabError

if TYPE_CHECKING:
    from saliency_lab.models.base import ModelBundle, PreparedInput

Attention = Literal["auto", "ours", "sdpa"]


def make_policy(bundle: ModelBundle, cfg: DecodingConfig) -> StepPolicy:
    """The registered policy of `cfg.strategy`."""
    try:
        factory = POLICIES[cfg.strategy]
    except KeyError:
        raise SaliencyLabError(
            f"--strategy {cfg.strategy!r}: unknown decoding strategy; use one of {', '.join(sorted(POLICIES))}"
        ) from None
    return factory(bundle, cfg)


def decode(
    bundle: ModelBundle,
    prepared: PreparedInput,
    cfg: DecodingConfig,
    *,
    heads: HeadsMode = "sum_abs",
    hooks: Sequence[Any] = (),
    attention: Attention = "auto",
) -> DecodeResult:
    """Generate one sample with the strategy and interventions of `cfg` (see the module docstring).

    `heads` is the run's head reduction (SGRS scores and the decay rule read saliency like capture records it);
    `hooks` adds attention hooks after the configured ones; `attention` forces our attention function ("ours")
    or stock sdpa ("sdpa", only without hooks and gradients); "auto" uses sdpa when nothing needs ours.
    `result.hooks` holds the attention hooks as they ended (the decay's chosen positions included), which the
    saliency pass must reuse so the stored saliency reflects the attention that produced the output.
    """
    cfg.validate(bundle.n_layers)
    policy = make_policy(bundle, cfg)
    observers = make_observers(bundle, prepared, cfg, hooks)
    attn_hooks = [h for ob in observers for h in ob.attention_hooks()]
    layers = sorted(set(policy.grad_layers()).union(*(ob.grad_layers() for ob in observers)))
    if attention == "auto":
        attention = "ours" if (attn_hooks or layers) else "sdpa"
    dec = CachedDecoder(bundle, prepared, hooks=attn_hooks, grad_layers=layers, attention=attention)
    ctx = StepContext(dec, make_generator(cfg, prepared.sample_id), heads)
    eos = set(bundle.adapter.eos_token_ids(bundle))
    out: list[int] = []
    t0 = time.perf_counter()
    logits = dec.prefill()
    with dec.active():
        for step in range(cfg.max_new_tokens):
            ctx.begin(step, logits)
            tok = policy.choose(ctx)
            for ob in observers:
                ob.on_token(ctx, tok)
            out.append(tok)
            if tok in eos or len(out) == cfg.max_new_tokens:
                break
            logits = dec.step(tok, grad=bool(layers))
    return finish_result(out, attn_hooks, policy, observers, ctx, time.perf_counter() - t0)


def make_observers(bundle: ModelBundle, prepared: PreparedInput, cfg: DecodingConfig,
                   hooks: Sequence[Any] = ()) -> list[DecodeObserver]:
    """The observers of one sample: the configured interventions, then the caller's extra hooks."""
    observers: list[DecodeObserver] = list(observers_for(cfg, prepared.n_input, bundle.n_layers))
    if hooks:
        observers.append(HookObserver(hooks))
    return observers


def finish_result(output_ids: list[int], attn_hooks: list[Any], policy: StepPolicy,
                  observers: Sequence[DecodeObserver], ctx: StepContext, seconds: float) -> DecodeResult:
    """One sample's DecodeResult: its tokens and hooks, then what the policy and the observers add."""
    result = DecodeResult(output_ids=output_ids, hooks=attn_hooks)
    result.stats["seconds"] = seconds
    result.stats["backward_passes"] = ctx.backward_passes
    policy.finish(result)
    for ob in observers:
        ob.finish(result)
    return result
