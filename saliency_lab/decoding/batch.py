"""`decode_batch`: the one generation path for several samples at once (docs/capture.md, "Batches").

The loop is `engine.decode`'s, row by row: each row keeps its own policy, observers, attention hooks and
`torch.Generator` (seeded from its sample id), and sees its own logits; only the forwards are shared. So a row
emits the tokens it emits at batch size 1 (greedy and sampling alike: the draws come from the row's generator),
and resume, shards and batch sizes all agree.

The batch is left-padded (`saliency.batch`): one new token per row is one new column. Pad keys are masked, each
real token keeps its own position, each row's hooks run on that row alone (`RowHooks`). A row that has finished
(EOS or max_new_tokens) leaves the batch: its cache rows are dropped, so the steps after it cost what the live
rows cost.

Saliency while decoding (SGRS scores, the decay's online rule) needs one backward per scored candidate. A
backward through a batched forward costs the whole batch, so the loop asks each policy and observer which rows
they will most likely score (`StepPolicy.likely_requests`, `DecodeObserver.likely_requests`: SGRS's first draw,
the decay's emitted token) and computes all of them in one backward (rows are independent: row b's gradient is
its own loss's). A request no hint foresaw (an SGRS re-draw after a rejection) runs its own backward of that
row's loss through the batch graph: exact, slower. The hints change the cost, never a number.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from saliency_lab.config import DecodingConfig, HeadsMode
from saliency_lab.decoding.engine import Attention, finish_result, make_observers, make_policy
from saliency_lab.decoding.loop import (
    GradTap,
    HeadGrad,
    RowStats,
    cached_step,
    make_generator,
    newest_row_stats,
    without_suppressed,
)
from saliency_lab.decoding.protocols import DecodeObserver, StepContext, StepPolicy
from saliency_lab.decoding.result import DecodeResult
from saliency_lab.saliency.attention import use_attention
from saliency_lab.saliency.batch import BatchPrefix, collate_inputs, row_hooks
from saliency_lab.saliency.loss import loss_grad
from saliency_lab.saliency.prefill import prefill_forward

if TYPE_CHECKING:
    from saliency_lab.models.base import ModelBundle, PreparedInput


class BatchDecoder:
    """Left-padded rows sharing one KV cache; the live rows shrink as rows finish."""

    def __init__(
        self,
        bundle: ModelBundle,
        items: Sequence[PreparedInput],
        hooks: Sequence[Sequence[Any]],
        grad_layers: Sequence[int] = (),
        attention: str = "ours",
        heads: HeadsMode = "sum_abs",
        keep_prefix: bool = False,
    ) -> None:
        self.bundle = bundle
        self.model = bundle.model
        self.adapter = bundle.adapter
        self.items = list(items)
        self.batch = collate_inputs(bundle, self.items, left=True)
        self.row_hook_lists = [list(h) for h in hooks]
        self.tap = GradTap(grad_layers)
        self.attention = attention
        self.heads = heads
        if attention != "ours" and (any(self.row_hook_lists) or grad_layers):
            raise ValueError("hooks and gradients need attention='ours'")
        self.head = self.adapter.logits_head(self.model)
        self.cache_arg = self.adapter.cache_kwarg(self.model)
        self.suppress = list(self.adapter.suppressed_token_ids(bundle))
        self.live = list(range(len(self.items)))  # the sample (item index) of each batch row
        self.mask = self.batch.attention_mask
        self.next_pos: torch.Tensor = torch.zeros(0)
        self.cache: Any = None
        self.hidden: torch.Tensor | None = None
        self._head_grad: HeadGrad | None = None
        self._memo: dict[tuple[int, int], RowStats] = {}  # (batch row, token) -> stats at every tapped layer
        self.keep_prefix = keep_prefix
        self.prefix: BatchPrefix | None = None

    # ---- forwards ----------------------------------------------------------------------------------
    def _hooks(self) -> list[Any]:
        pads = [self.batch.pads[r] for r in self.live]
        hooks = row_hooks([self.row_hook_lists[r] for r in self.live], pads)
        return hooks + ([self.tap] if self.tap.layers else [])

    def active(self) -> contextlib.AbstractContextManager[Any]:
        """Route the language model through our attention function (a no-op on the sdpa baseline)."""
        return use_attention(self.bundle) if self.attention == "ours" else contextlib.nullcontext()

    def prefill(self) -> torch.Tensor:
        """Forward every row's whole input (no gradient, the shared prefill); logits [B, V] predicting output
        step 0."""
        b = self.batch
        pos, self.next_pos = self.adapter.batch_positions(
            self.model, b.input_ids, b.attention_mask, b.model_kwargs
        )
        kwargs = {**b.model_kwargs, "attention_mask": b.attention_mask, "position_ids": pos}
        out = prefill_forward(self.bundle, b.input_ids, kwargs, row_hooks(self.row_hook_lists, b.pads))
        self.cache = self.adapter.output_cache(out)
        if self.keep_prefix:
            # Later steps append by concatenation (new tensors), so these references stay the prefill's.
            self.prefix = BatchPrefix(
                self.items,
                [layer.keys for layer in self.cache.layers],
                [layer.values for layer in self.cache.layers],
                list(b.pads),
                self.next_pos.clone(),
                b.attention_mask,
                self.bundle.dtype,
            )
        return out.logits[:, -1]

    def step(self, tokens: Sequence[int], grad: bool) -> torch.Tensor:
        """Feed one token per live row; logits [live, V] at the new position."""
        ids = torch.tensor([[int(t)] for t in tokens], dtype=torch.long, device=self.batch.input_ids.device)
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        pos = self.adapter.step_positions(self.next_pos)
        self.next_pos = self.next_pos + 1
        self.tap.records.clear()
        self._memo.clear()
        kwargs = {self.cache_arg: self.cache, "attention_mask": self.mask, "position_ids": pos}
        step = cached_step(
            self.bundle, self.head, ids, kwargs, self._hooks() if self.attention == "ours" else None, grad
        )
        self.cache, self.hidden = step.cache, step.hidden
        return step.logits

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only these batch rows (indices into the live rows) for the next steps."""
        if len(rows) == len(self.live):
            return
        idx = torch.tensor(list(rows), dtype=torch.long, device=self.mask.device)
        for layer in self.cache.layers:
            layer.batch_select_indices(idx)
        self.live = [self.live[i] for i in rows]
        self.mask = self.mask[idx]
        self.next_pos = self.next_pos[idx]

    # ---- saliency of the newest row -----------------------------------------------------------------
    def compute(self, requests: dict[int, tuple[int, torch.Tensor, torch.Tensor]]) -> None:
        """One backward for several rows: {batch row: (token id, that row's logits, their log-softmax)}. Each
        row's gradient is its own loss's (rows share no position), so every row gets what a batch-1 backward
        gives; the stats at every tapped layer are kept for `row_stats`."""
        todo = {r: v for r, v in requests.items() if (r, v[0]) not in self._memo}
        if not todo:
            return
        layers = sorted(self.tap.records)
        if not layers:
            raise RuntimeError("row stats need a step run with grad=True")
        probs = [self.tap.records[i] for i in layers]
        if self.hidden is not None:
            if self._head_grad is None:
                self._head_grad = HeadGrad(self.head[1])  # type: ignore[index]
            gout = torch.zeros_like(self.hidden)
            for r, (tok, _, lp) in todo.items():
                gout[r, -1] = self._head_grad(lp, tok)
            raw = torch.autograd.grad(
                self.hidden, probs, grad_outputs=gout, retain_graph=True, allow_unused=True
            )
        else:
            outs = [z for _, z, _ in todo.values()]
            gz = [
                loss_grad(lp, torch.tensor(tok, device=lp.device)).to(z.dtype) for tok, z, lp in todo.values()
            ]
            raw = torch.autograd.grad(outs, probs, grad_outputs=gz, retain_graph=True, allow_unused=True)
        grads = [torch.zeros_like(a) if g is None else g for a, g in zip(probs, raw, strict=True)]
        for r, (tok, _, _) in todo.items():
            pad = self.batch.pads[self.live[r]]
            pairs = [(a[r, :, -1:, pad:], g[r, :, -1:, pad:]) for a, g in zip(probs, grads, strict=True)]
            self._memo[(r, tok)] = newest_row_stats(
                layers, pairs, self.items[self.live[r]], self.bundle.dtype, self.heads
            )

    def row_stats(
        self, row: int, token_id: int, logits_row: torch.Tensor, logp_row: torch.Tensor, layers: Sequence[int]
    ) -> RowStats:
        """RowStats of batch row `row` for candidate `token_id` at `layers` (from the memo when a hint foresaw
        it, else one backward of this row's loss)."""
        self.compute({row: (token_id, logits_row, logp_row)})
        return _subset(self._memo[(row, token_id)], layers)


class RowView:
    """One sample's view of a BatchDecoder, what a StepContext needs (`saliency_lab.decoding.protocols.Decoder`)."""

    def __init__(self, decoder: BatchDecoder, item: int) -> None:
        self.decoder = decoder
        self.item = item
        self.prepared = decoder.items[item]

    def selection_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The row's logits with never-emit ids at -inf."""
        return without_suppressed(logits, self.decoder.suppress)

    def row_stats(
        self,
        logits: torch.Tensor,
        logp: torch.Tensor,
        token_id: int,
        heads: HeadsMode,
        retain: bool = True,
        layers: Sequence[int] | None = None,
    ) -> RowStats:
        """Stats of this sample's newest query row for candidate `token_id`."""
        dec = self.decoder
        wanted = sorted(dec.tap.layers) if layers is None else layers
        return dec.row_stats(dec.live.index(self.item), token_id, logits, logp, wanted)


def _subset(r: RowStats, layers: Sequence[int]) -> RowStats:
    idx = [r.layers.index(int(x)) for x in sorted(set(int(x) for x in layers))]
    if len(idx) == len(r.layers):
        return r

    def pick(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[idx]

    return RowStats(
        [r.layers[i] for i in idx],
        r.out_sum[idx],
        r.prev[idx],
        r.row_l2[idx],
        r.step,
        pick(r.sys_sum),
        pick(r.img_sum),
        pick(r.prompt_sum),
    )


class _Row:
    """Per-sample state of the batched loop: policy, observers, step context, tokens so far."""

    def __init__(self, policy: StepPolicy, observers: list[DecodeObserver], ctx: StepContext) -> None:
        self.policy = policy
        self.observers = observers
        self.ctx = ctx
        self.out: list[int] = []


def decode_batch(
    bundle: ModelBundle,
    items: Sequence[PreparedInput],
    cfg: DecodingConfig,
    *,
    heads: HeadsMode = "sum_abs",
    hooks: Sequence[Sequence[Any]] | None = None,
    attention: Attention = "auto",
    keep_prefix: bool = False,
) -> list[DecodeResult]:
    """`engine.decode` for several samples at once (see the module docstring); one result per item, each equal to
    what `decode` returns for that item alone (tokens, decisions, decayed steps; `stats["seconds"]` is the
    batch's). `hooks` adds per-item attention hooks after the configured ones. `keep_prefix`: every result's
    `prefix` is the batch's input prefill (`BatchPrefix`), for `single_pass_batch` to start from (it holds one
    prefill's keys and values in memory until dropped)."""
    cfg.validate(bundle.n_layers)
    policies: list[StepPolicy] = []
    observers: list[list[DecodeObserver]] = []
    for i, p in enumerate(items):
        policies.append(make_policy(bundle, cfg))
        observers.append(make_observers(bundle, p, cfg, hooks[i] if hooks else ()))
    row_hooks_ = [[h for ob in obs for h in ob.attention_hooks()] for obs in observers]
    layers = sorted(
        set().union(
            *(pol.grad_layers() for pol in policies), *(ob.grad_layers() for obs in observers for ob in obs)
        )
    )
    if attention == "auto":
        attention = "ours" if (any(row_hooks_) or layers) else "sdpa"
    dec = BatchDecoder(bundle, items, row_hooks_, layers, attention, heads, keep_prefix)
    rows = [
        _Row(pol, obs, StepContext(RowView(dec, i), make_generator(cfg, p.sample_id), heads))
        for i, (pol, obs, p) in enumerate(zip(policies, observers, items, strict=True))
    ]
    eos = set(bundle.adapter.eos_token_ids(bundle))
    t0 = time.perf_counter()
    logits = dec.prefill()
    with dec.active():
        for step in range(cfg.max_new_tokens):
            live = [rows[i] for i in dec.live]
            for b, row in enumerate(live):
                row.ctx.begin(step, logits[b])
            if layers and step >= 1:
                dec.compute(
                    {
                        b: (tok, row.ctx.logits, row.ctx.logprobs())
                        for b, row in enumerate(live)
                        for tok in row.policy.likely_requests(row.ctx)[:1]
                    }
                )
            chosen = [row.policy.choose(row.ctx) for row in live]
            if layers and step >= 1:
                dec.compute(
                    {
                        b: (tok, row.ctx.logits, row.ctx.logprobs())
                        for b, (row, t) in enumerate(zip(live, chosen, strict=True))
                        for ob in row.observers
                        for tok in ob.likely_requests(row.ctx, t)[:1]
                    }
                )
            keep = []
            for b, (row, tok) in enumerate(zip(live, chosen, strict=True)):
                for ob in row.observers:
                    ob.on_token(row.ctx, tok)
                row.out.append(tok)
                if tok not in eos and len(row.out) < cfg.max_new_tokens:
                    keep.append(b)
            if not keep:
                break
            dec.keep(keep)
            logits = dec.step([chosen[b] for b in keep], grad=bool(layers))
    seconds = time.perf_counter() - t0
    results = [
        finish_result(row.out, h, row.policy, row.observers, row.ctx, seconds)
        for row, h in zip(rows, row_hooks_, strict=True)
    ]
    for r in results:
        r.prefix = dec.prefix
    return results
