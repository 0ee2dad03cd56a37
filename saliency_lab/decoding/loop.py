"""Cached single-sequence decoding with optional gradients (what SGRS and online interventions need).

`generate()` runs under no_grad, so saliency while decoding needs its own loop. `CachedDecoder` does one
prefill (no gradient) and then one forward per new token with the KV cache. When a step runs with gradients,
the cached keys/values of earlier positions are detached right after the forward: every path from the new query's
attention row A[l, q, :] to the loss at q stays in the graph (the query's own key/value is computed in the same
forward), and no earlier position depends on A[l, q, :], so dL/dA[l, q, :] is exact (SPEC section 3).

Only the target layers get a graph: `GradTap`, the last attention hook, turns their probabilities into leaves
that require grad (the weights are frozen), so a forward builds a graph from the lowest target layer upwards and
a backward stops there. The tap reads the probabilities after every other hook, i.e. the weights actually
multiplied with V (a LocoRE-modified row under LocoRE).

Model-specific state: positions are left to the model (no position_ids are passed). Qwen2-VL computes M-RoPE
positions at the prefill (cache empty) from `mm_token_type_ids` / `image_grid_thw` and stores `rope_deltas`; each
later step uses cache length + rope_deltas. The decoder clears a stale `rope_deltas` before its prefill, since a
text-only prompt would otherwise inherit the previous sample's delta. Image inputs are passed to the prefill only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from saliency_lab.config import DecodingConfig, HeadsMode
from saliency_lab.decoding.result import DecodeResult
from saliency_lab.decoding.selection import draw_index, top_k_candidates
from saliency_lab.errors import SampleError


def target_layers(n_layers: int, layers: Sequence[int] | None) -> list[int]:
    """Explicit target layers (validated) or the upper half (layer >= n_layers // 2), like the analysis."""
    if layers is None:
        return list(range(n_layers // 2, n_layers))
    out = sorted(set(int(x) for x in layers))
    bad = [x for x in out if not 0 <= x < n_layers]
    if bad or not out:
        from saliency_lab.errors import SaliencyLabError

        raise SaliencyLabError(
            f"--sgrs-layers {','.join(map(str, layers))}: the model has layers 0..{n_layers - 1}; "
            "pick target layers in that range"
        )
    return out


class GradTap:
    """Attention hook (run last) making the target layers' probabilities graph leaves; keeps them per step."""

    on_logits = False

    def __init__(self, layers: Sequence[int]) -> None:
        self.layers = set(int(x) for x in layers)
        self.records: dict[int, torch.Tensor] = {}

    def __call__(self, probs: torch.Tensor, *, layer_idx: int, query_positions: Any, key_positions: Any):
        if layer_idx in self.layers and torch.is_grad_enabled():
            if not probs.requires_grad:
                probs = probs.detach().requires_grad_(True)
            self.records[layer_idx] = probs
        return probs


@dataclass
class RowStats:
    """Per target layer, sums of S_raw over the query row (the SALIENCY columns SGRS needs)."""

    layers: list[int]
    out_sum: torch.Tensor  # [L] float64
    prev: torch.Tensor  # [L]
    row_l2: torch.Tensor  # [L]
    step: int

    def out_mean(self) -> torch.Tensor:
        """Eq. 6 per layer: out_sum / (row_l2 * step); 0 where the row is all zero."""
        den = self.row_l2 * self.step
        return torch.where(den > 0, self.out_sum / den.clamp_min(1e-300), torch.zeros_like(den))

    def score(self) -> float | None:
        """S(c): mean of out_mean over the target layers; None at step 0 (no prior outputs)."""
        if self.step < 1:
            return None
        return float(self.out_mean().mean())

    def prev_norm(self) -> float | None:
        """Mean over target layers of prev / row_l2 (the paper's 'saliency to the previous token')."""
        if self.step < 1:
            return None
        v = torch.where(self.row_l2 > 0, self.prev / self.row_l2.clamp_min(1e-300), torch.zeros_like(self.prev))
        return float(v.mean())


class CachedDecoder:
    """One sequence, KV cache, optional gradients through the newest query row at the target layers."""

    def __init__(self, bundle: Any, prepared: Any, hooks: Sequence[Any] = (), grad_layers: Sequence[int] = (),
                 attention: str = "ours") -> None:
        self.bundle = bundle
        self.model = bundle.model
        self.prepared = prepared
        self.tap = GradTap(grad_layers)
        self.hooks = list(hooks) + ([self.tap] if grad_layers else [])
        self.attention = attention  # "ours" (hooks, gradients) or "sdpa" (plain speed baseline)
        if attention != "ours" and (self.hooks or grad_layers):
            raise ValueError("hooks and gradients need attention='ours'")
        self.cache = None
        self.output_start = prepared.n_input
        self.length = 0
        self.suppress = list(bundle.adapter.suppressed_token_ids(bundle))

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Route the language model through our attention function for the decoding (sdpa restored after)."""
        if self.attention != "ours":
            yield
            return
        from saliency_lab.saliency.attention import use_attention

        with use_attention(self.bundle):
            yield

    def _forward(self, ids: torch.Tensor, kwargs: dict, grad: bool) -> torch.Tensor:
        from saliency_lab.saliency.attention import intervention_context

        self.tap.records.clear()
        ctx = intervention_context("plain", self.hooks) if self.attention == "ours" else contextlib.nullcontext()
        with torch.set_grad_enabled(grad), ctx:
            out = self.model(input_ids=ids, cache=self.cache, use_cache=True, logits_to_keep=1, **kwargs)
        self.cache = out.cache
        if grad:
            # Past keys/values leave the graph: exactness needs only the newest position's key/value.
            for layer in self.cache.layers:
                layer.keys = layer.keys.detach()
                layer.values = layer.values.detach()
        self.length += int(ids.shape[1])
        return out.logits[0, -1]

    def prefill(self) -> torch.Tensor:
        """Forward the whole input (no gradient); logits predicting output step 0."""
        for m in self.model.modules():
            if getattr(m, "rope_deltas", None) is not None:
                m.rope_deltas = None
        self.cache, self.length = None, 0
        return self._forward(self.prepared.input_ids, dict(self.prepared.model_kwargs), grad=False)

    def step(self, token_id: int, grad: bool = False) -> torch.Tensor:
        """Feed one token; logits at its position (the query q predicting the next token)."""
        ids = torch.tensor([[int(token_id)]], dtype=torch.long, device=self.prepared.input_ids.device)
        return self._forward(ids, {}, grad=grad)

    def selection_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits candidates are chosen from: the model's, with never-emit ids (image placeholders) removed."""
        out = logits.detach()
        if self.suppress:
            out = out.clone()
            out[self.suppress] = -torch.inf
        return out

    def row_stats(self, logp: torch.Tensor, token_id: int, heads: HeadsMode, retain: bool = True) -> RowStats:
        """S_raw sums of the newest query row at the target layers for loss -logp[token_id] (one backward)."""
        from saliency_lab.saliency.single_pass import heads_reduce

        layers = sorted(self.tap.records)
        if not layers:
            raise RuntimeError("row_stats needs a step run with grad=True and target layers")
        probs = [self.tap.records[i] for i in layers]
        grads = torch.autograd.grad(-logp[token_id], probs, retain_graph=retain, allow_unused=True)
        q = self.length - 1
        o = self.output_start
        out_sum, prev, l2 = [], [], []
        for a, g in zip(probs, grads, strict=True):
            g = torch.zeros_like(a) if g is None else g
            if not bool(torch.isfinite(g).all()):
                raise SampleError(
                    f"sample {self.prepared.sample_id!r}: non-finite attention gradients in "
                    f"{str(self.bundle.dtype).replace('torch.', '')} while decoding; rerun with --dtype float32"
                )
            s = heads_reduce(a[0, :, -1:, :].detach(), g[0, :, -1:, :], heads)[0].double()  # [q + 1]
            out_sum.append(s[o:q + 1].sum())
            prev.append(s[q])
            l2.append(torch.linalg.vector_norm(s))
        return RowStats(layers, torch.stack(out_sum), torch.stack(prev), torch.stack(l2), step=q - o + 1)


def eos_set(bundle: Any) -> set[int]:
    from saliency_lab.saliency.capture import eos_ids

    return set(eos_ids(bundle))


def make_generator(decoding: DecodingConfig, sample_id: str) -> torch.Generator:
    """The per-sample generator: same seed derivation as capture's sampling, so a resumed run reproduces."""
    from saliency_lab.saliency.capture import sample_seed

    g = torch.Generator()
    g.manual_seed(sample_seed(decoding.seed, sample_id))
    return g


def decode_plain(bundle: Any, prepared: Any, decoding: DecodingConfig, hooks: Sequence[Any] = (),
                 attention: str = "ours") -> DecodeResult:
    """Greedy or top-k sampling in our loop (no gradients). Top-k sampling draws exactly like SGRS's first draw,
    so SGRS with alpha = 0 reproduces it token for token (same seed); top_k = 0 samples from the full softmax."""
    if decoding.strategy not in ("greedy", "sample"):
        raise ValueError(f"decode_plain handles greedy and sample, not {decoding.strategy!r}")
    gen = make_generator(decoding, prepared.sample_id)
    eos = eos_set(bundle)
    dec = CachedDecoder(bundle, prepared, hooks=hooks, attention=attention)
    out: list[int] = []
    t0 = time.perf_counter()
    with dec.active():
        logits = dec.prefill()
        for _ in range(decoding.max_new_tokens):
            sel = dec.selection_logits(logits)
            if decoding.strategy == "greedy":
                tok = int(torch.argmax(sel))
            else:
                k = decoding.top_k if decoding.top_k > 0 else sel.numel()
                cands = top_k_candidates(sel, k, decoding.temperature)
                tok = cands.ids[draw_index(cands.probs, gen)]
            out.append(tok)
            if tok in eos or len(out) == decoding.max_new_tokens:
                break
            logits = dec.step(tok)
    return DecodeResult(output_ids=out, stats={"seconds": time.perf_counter() - t0})
