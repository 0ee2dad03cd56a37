"""The cached single-sequence decoder under `saliency_lab.decoding.decode` (the one generation path).

`CachedDecoder` does one prefill (`saliency_lab.saliency.prefill`, no gradient) and then one forward per new token
with the KV cache. When a step runs with gradients, the cached keys/values of earlier positions are detached right
after the forward: every path from the new query's attention row A[l, q, :] to the loss at q stays in the graph
(the query's own key/value is computed in the same forward), and no earlier position depends on A[l, q, :], so
dL/dA[l, q, :] is exact (docs/capture.md, "How saliency is computed").

Only the target layers get a graph: `GradTap`, the last attention hook, turns their probabilities into leaves
that require grad (the weights are frozen), so a forward builds a graph from the lowest target layer upwards and
a backward stops there. The tap reads the probabilities after every other hook, i.e. the weights actually
multiplied with V (a LocoRE-modified row under LocoRE).

Model-specific state (positions, M-RoPE deltas, image inputs, the cache argument, the logits head) belongs to the
adapter (`saliency_lab.models.base.ModelAdapter`); positions are left to the model (no position_ids are passed)
and image inputs reach the prefill only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from saliency_lab.config import DecodingConfig, HeadsMode, validate_layers
from saliency_lab.errors import SampleError
from saliency_lab.saliency.attention import intervention_context, use_attention
from saliency_lab.saliency.loss import loss_grad
from saliency_lab.saliency.prefill import prefill
from saliency_lab.saliency.single_pass import heads_reduce
from saliency_lab.seeding import sample_seed

if TYPE_CHECKING:
    from saliency_lab.models.base import ModelBundle, PreparedInput


def target_layers(n_layers: int, layers: Sequence[int] | None) -> list[int]:
    """Explicit target layers (validated) or the upper half (layer >= n_layers // 2), like the analysis."""
    if layers is None:
        return list(range(n_layers // 2, n_layers))
    out = [int(x) for x in layers]
    validate_layers(out, n_layers)
    return sorted(set(out))


class GradTap:
    """Attention hook (run last) making the target layers' probabilities graph leaves; keeps them per step."""

    on_logits = False
    acts_on_prompt = False  # grad steps feed output tokens only

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
    # Segment sums (keys of the system prompt, the image, the prompt), for the share scores.
    sys_sum: torch.Tensor | None = None
    img_sum: torch.Tensor | None = None
    prompt_sum: torch.Tensor | None = None

    def out_mean(self) -> torch.Tensor:
        """Eq. 6 per layer: out_sum / (row_l2 * step); 0 where the row is all zero."""
        den = self.row_l2 * self.step
        return torch.where(den > 0, self.out_sum / den.clamp_min(1e-300), torch.zeros_like(den))

    def score(self, name: str = "out_mean") -> float | None:
        """S(c): the mean over the target layers of score `name`'s per-layer value (`ROW_SCORES`, the formulas of
        the SQL macros in queries/_catalog.sql), over the layers where it is defined; None at step 0 (SGRS
        scores no step-0 candidate: the prefill runs without gradients) and when no layer defines it.

        A zero row means the candidate's loss gradient vanished (every other probability underflows to 0 in the
        compute dtype), so it carries no
        saliency: undefined, not low, exactly as the SQL macros treat it (a zero norm or total gives NULL).
        Scoring it 0 would make SGRS reject every certain token, EOS included."""
        if self.step < 1:
            return None
        v = ROW_SCORES[name](self)
        defined = torch.isfinite(v)
        if not bool(defined.any()):
            return None
        return float(v[defined].mean())

    def prev_norm(self) -> float | None:
        """Mean over target layers of prev / row_l2 (the paper's 'saliency to the previous token')."""
        if self.step < 1:
            return None
        v = torch.where(self.row_l2 > 0, self.prev / self.row_l2.clamp_min(1e-300), torch.zeros_like(self.prev))
        return float(v.mean())


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den per layer, NaN (undefined, like SQL's nullif(den, 0)) where den == 0."""
    return torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.full_like(den, torch.nan))


def _segments(r: RowStats) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The row's system, image and prompt sums per layer (rows scored for a share always carry them)."""
    if r.sys_sum is None or r.img_sum is None or r.prompt_sum is None:
        raise RuntimeError("share scores need the segment sums of the row")
    return r.sys_sum, r.img_sum, r.prompt_sum


def _share(part: Callable[[RowStats], torch.Tensor]) -> Callable[[RowStats], torch.Tensor]:
    """A segment's share of the row: part / (system + image + prompt + prior outputs), as `seg_share`."""

    def share(r: RowStats) -> torch.Tensor:
        sys_sum, img_sum, prompt_sum = _segments(r)
        return _ratio(part(r), sys_sum + img_sum + prompt_sum + r.out_sum)

    return share


#: Per-layer value of every saliency score a candidate's row gives (NaN = undefined in that layer); the names
#: are `saliency_lab.store.scores.SALIENCY_SCORES` (a unit test checks it) and the formulas those of
#: `saliency_norm` in queries/_catalog.sql.
ROW_SCORES: dict[str, Callable[[RowStats], torch.Tensor]] = {
    "out_mean": lambda r: _ratio(r.out_sum, r.row_l2 * r.step),
    "prev": lambda r: _ratio(r.prev, r.row_l2),
    "out_share": _share(lambda r: r.out_sum),
    "prev_share": _share(lambda r: r.prev),
    "prompt_share": _share(lambda r: _segments(r)[2]),
    "image_share": _share(lambda r: _segments(r)[1]),
    "system_share": _share(lambda r: _segments(r)[0]),
    "source_share": _share(lambda r: _segments(r)[2] + _segments(r)[1]),
}


class CachedDecoder:
    """One sequence, KV cache, optional gradients through the newest query row at the target layers.

    Speed (same numbers, fewer operations):
    - the prefill runs on sdpa when no hook can act on prompt rows (every hook says `acts_on_prompt = False`; the
      LocoRE, decay and gradient hooks never touch queries before the first output position);
    - with no hook and no gradient (plain greedy or sampling) every step runs on sdpa too (`attention="sdpa"`);
    - with a plain linear LM head, a gradient step forwards the base model and applies the head itself without a
      graph; the loss gradient at the final hidden state is then W^T (p - e_c) for candidate c (`HeadGrad`, one
      matrix-vector product per candidate, with the c entry computed without cancellation), so each backward
      starts below the head.
    """

    def __init__(self, bundle: ModelBundle, prepared: PreparedInput, hooks: Sequence[Any] = (),
                 grad_layers: Sequence[int] = (), attention: str = "ours") -> None:
        self.bundle = bundle
        self.model = bundle.model
        self.prepared = prepared
        self.tap = GradTap(grad_layers)
        self.user_hooks = list(hooks)
        self.hooks = self.user_hooks + ([self.tap] if grad_layers else [])
        self.attention = attention  # "ours" (hooks, gradients) or "sdpa" (plain speed baseline)
        if attention != "ours" and (self.hooks or grad_layers):
            raise ValueError("hooks and gradients need attention='ours'")
        self.head = bundle.adapter.logits_head(self.model)
        self.cache_arg = bundle.adapter.cache_kwarg(self.model)
        self._head_grad: HeadGrad | None = None  # built on the first closed-form gradient
        self.cache: Any = None  # the model's KV cache (a transformers Cache) once prefilled
        self.output_start = prepared.n_input
        self.length = 0
        self.hidden: torch.Tensor | None = None  # final hidden state of the newest position (grad steps)
        self.suppress = list(bundle.adapter.suppressed_token_ids(bundle))

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Route the language model through our attention function for the decoding (sdpa restored after)."""
        if self.attention != "ours":
            yield
            return
        with use_attention(self.bundle):
            yield

    def _forward(self, ids: torch.Tensor, kwargs: dict, grad: bool) -> torch.Tensor:
        self.tap.records.clear()
        step = cached_step(self.bundle, self.head, ids, {self.cache_arg: self.cache, **kwargs},
                           self.hooks if self.attention == "ours" else None, grad)
        self.cache, self.hidden = step.cache, step.hidden
        self.length += int(ids.shape[1])
        return step.logits[0]

    def prefill(self) -> torch.Tensor:
        """Forward the whole input (no gradient, the shared prefill); logits predicting output step 0. Call it
        outside `active()`: it routes the prompt rows itself."""
        pre = prefill(self.bundle, self.prepared, self.prepared.n_input, self.user_hooks)
        self.cache, self.length = pre.cache, pre.length
        return pre.logits

    def step(self, token_id: int, grad: bool = False) -> torch.Tensor:
        """Feed one token; logits at its position (the query q predicting the next token)."""
        ids = torch.tensor([[int(token_id)]], dtype=torch.long, device=self.prepared.input_ids.device)
        return self._forward(ids, {}, grad=grad)

    def selection_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits candidates are chosen from: the model's, with never-emit ids (image placeholders) removed."""
        return without_suppressed(logits, self.suppress)

    def row_stats(self, logits: torch.Tensor, logp: torch.Tensor, token_id: int, heads: HeadsMode,
                  retain: bool = True, layers: Sequence[int] | None = None) -> RowStats:
        """S_raw sums of the newest query row for loss -logp[token_id] (one backward), at `layers` (default: every
        tapped layer; the policy and the observers may each read their own subset of the tapped layers).

        `logits` are the step's logits (in the graph unless the closed-form head path is used), `logp` their
        log-softmax; the loss gradient at the logits is `saliency.loss.loss_grad` (accurate for confident tokens).
        """
        layers = sorted(self.tap.records) if layers is None else sorted(set(int(x) for x in layers))
        if not layers or any(i not in self.tap.records for i in layers):
            raise RuntimeError("row_stats needs a step run with grad=True through the requested layers")
        probs = [self.tap.records[i] for i in layers]
        if self.hidden is not None:
            if self._head_grad is None:
                self._head_grad = HeadGrad(self.head[1])  # type: ignore[index]
            gout = self._head_grad(logp, token_id).reshape(self.hidden.shape)
            raw = torch.autograd.grad(self.hidden, probs, grad_outputs=gout, retain_graph=retain, allow_unused=True)
        else:
            gz = loss_grad(logp, torch.tensor(token_id, device=logp.device)).to(logits.dtype)
            raw = torch.autograd.grad(logits, probs, grad_outputs=gz, retain_graph=retain, allow_unused=True)
        grads = [torch.zeros_like(a) if g is None else g for a, g in zip(probs, raw, strict=True)]
        pairs = [(a[0, :, -1:, :], g[0, :, -1:, :]) for a, g in zip(probs, grads, strict=True)]
        return newest_row_stats(layers, pairs, self.prepared, self.bundle.dtype, heads)


class HeadGrad:
    """dL/dh = W^T dL/dz at the final hidden state through a bias-free linear head, dL/dz from
    `saliency.loss.loss_grad` (nothing cancels, unlike W^T p - W[c], which loses every digit for a token whose
    probability is within rounding of 1)."""

    def __init__(self, head: torch.nn.Linear) -> None:
        self.weight = head.weight
        self._wt: torch.Tensor | None = None  # contiguous W^T on the CPU (matrix-vector speed)

    def __call__(self, logp: torch.Tensor, token_id: int) -> torch.Tensor:
        w = self.weight.detach()
        d = loss_grad(logp, torch.tensor(token_id, device=logp.device)).to(w.dtype)
        if w.device.type == "cpu":
            if self._wt is None:
                self._wt = w.t().contiguous()
            return torch.nn.functional.linear(d, self._wt)
        return torch.mv(w.t(), d)


@dataclass
class Step:
    """What one cached forward leaves: logits [B, V] at the newest position, the cache, and the final hidden
    state [B, 1, D] in the graph (closed-form head path with gradients; else None)."""

    logits: torch.Tensor
    cache: Any
    hidden: torch.Tensor | None


def cached_step(bundle: ModelBundle, head: tuple[Any, torch.nn.Linear] | None, ids: torch.Tensor,
                kwargs: dict[str, Any], hooks: list[Any] | None, grad: bool) -> Step:
    """One decoding forward of `ids` [B, 1] with the KV cache in `kwargs`, shared by `CachedDecoder` and the batched
    loop: through our attention function with `hooks` (None: stock attention), with gradients when `grad`. With a
    linear `head` a gradient step applies the head itself outside the graph, so a backward starts below it
    (`HeadGrad`); the cached keys/values of earlier positions then leave the graph (exactness needs only the
    newest position's)."""
    ctx = intervention_context("plain", hooks) if hooks is not None else contextlib.nullcontext()
    hidden = None
    with torch.set_grad_enabled(grad), ctx:
        if grad and head is not None:
            base, lm_head = head
            out = base(input_ids=ids, use_cache=True, **kwargs)
            hidden = out.last_hidden_state[:, -1:, :]
            with torch.no_grad():
                logits = lm_head(hidden.detach())  # the same call the model makes with logits_to_keep=1
        else:
            out = bundle.model(input_ids=ids, use_cache=True, logits_to_keep=1, **kwargs)
            logits = out.logits
    cache = bundle.adapter.output_cache(out)
    if grad:
        for layer in cache.layers:
            layer.keys = layer.keys.detach()
            layer.values = layer.values.detach()
    return Step(logits[:, -1], cache, hidden)


def without_suppressed(logits: torch.Tensor, suppress: Sequence[int]) -> torch.Tensor:
    """The logits detached, with the never-emit ids (image placeholders) at -inf."""
    out = logits.detach()
    if suppress:
        out = out.clone()
        out[list(suppress)] = -torch.inf
    return out


def newest_row_stats(layers: list[int], pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
                     prepared: PreparedInput, dtype: torch.dtype, heads: HeadsMode) -> RowStats:
    """RowStats of the newest query row of one sequence from (A, dL/dA) of that row per layer, each [H, 1, q + 1]
    (keys 0..q of the sequence alone: a batched caller cuts its pad columns off first)."""
    o = prepared.n_input
    seg = prepared.segments
    out_sum, prev, l2, sys_sum, img_sum, prompt_sum = [], [], [], [], [], []
    q = -1
    for a, g in pairs:
        if not bool(torch.isfinite(g).all()):
            raise SampleError(
                f"sample {prepared.sample_id!r}: non-finite attention gradients in "
                f"{str(dtype).replace('torch.', '')} while decoding; rerun with --dtype float32"
            )
        s = heads_reduce(a.detach(), g, heads)[0].double()  # [q + 1]
        q = int(s.shape[0]) - 1
        out_sum.append(s[o:q + 1].sum())
        prev.append(s[q])
        l2.append(torch.linalg.vector_norm(s))
        # Segment bounds as in the saliency pass (single_pass._segment_sums); all lie before q.
        sys_sum.append(s[seg["system"][0]:seg["system"][1]].sum())
        img_sum.append(s[seg["image"][0]:seg["image"][1]].sum())
        prompt_sum.append(s[seg["prompt"][0]:seg["prompt"][1]].sum())
    return RowStats(layers, torch.stack(out_sum), torch.stack(prev), torch.stack(l2), step=q - o + 1,
                    sys_sum=torch.stack(sys_sum), img_sum=torch.stack(img_sum), prompt_sum=torch.stack(prompt_sum))


def make_generator(decoding: DecodingConfig, sample_id: str) -> torch.Generator:
    """The per-sample generator (`seeding.sample_seed` of the run seed and the sample id), so a resumed or sharded
    run draws the same tokens; one generator per sample is also what a batched loop keeps per row."""
    g = torch.Generator()
    g.manual_seed(sample_seed(decoding.seed, sample_id))
    return g
