"""The variation points of the decoding loop (`saliency_lab.decoding.engine.decode`): a `StepPolicy` per strategy,
registered by name, and `DecodeObserver`s for interventions; `StepContext` is what both see at one step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch

from saliency_lab.config import DecodingConfig, HeadsMode
from saliency_lab.decoding.loop import RowStats
from saliency_lab.decoding.result import DecodeResult

if TYPE_CHECKING:
    from saliency_lab.models.base import ModelBundle, PreparedInput


class Decoder(Protocol):
    """What a step sees of the decoder of its sample: `loop.CachedDecoder` alone, or one row of a
    `batch.BatchDecoder`."""

    prepared: PreparedInput

    def selection_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits with never-emit ids at -inf, detached."""
        ...

    def row_stats(self, logits: torch.Tensor, logp: torch.Tensor, token_id: int, heads: HeadsMode,
                  retain: bool = True, layers: Sequence[int] | None = None) -> RowStats:
        """Saliency sums of the newest query row for candidate `token_id` (the step's logits and their
        log-softmax)."""
        ...


class StepContext:
    """What a policy or an observer sees at one output step (the decoder, the step's logits, the generator)."""

    def __init__(self, decoder: Decoder, generator: torch.Generator, heads: HeadsMode) -> None:
        self.decoder = decoder
        self.generator = generator
        self.heads = heads
        self.step = 0
        self.logits: torch.Tensor = torch.empty(0)
        self.backward_passes = 0
        self._logp: torch.Tensor | None = None

    def begin(self, step: int, logits: torch.Tensor) -> None:
        """Start output step `step` with the logits that predict it."""
        self.step, self.logits, self._logp = step, logits, None

    def selection_logits(self) -> torch.Tensor:
        """The step's logits with never-emit ids (image placeholders) at -inf; detached."""
        return self.decoder.selection_logits(self.logits)

    def logprobs(self) -> torch.Tensor:
        """log-softmax of the step's logits in at least float32 (kept in the graph on gradient steps)."""
        if self._logp is None:
            lg = self.logits
            self._logp = torch.log_softmax(lg.to(torch.promote_types(lg.dtype, torch.float32)), dim=-1)
        return self._logp

    def row_stats(self, token_id: int, layers: Sequence[int]) -> RowStats:
        """Saliency sums of this step's query row for candidate `token_id` at `layers` (one backward); only on
        steps >= 1 of a loop some policy or observer asked gradients through those layers for."""
        self.backward_passes += 1
        return self.decoder.row_stats(self.logits, self.logprobs(), token_id, self.heads, layers=layers)


class StepPolicy(Protocol):
    """Chooses the token of each output step."""

    def grad_layers(self) -> list[int]:
        """Layers the policy reads saliency from while decoding (empty: it needs no gradients)."""
        ...

    def likely_requests(self, ctx: StepContext) -> list[int]:
        """Candidates `choose` will most likely ask `ctx.row_stats` for at this step (without drawing from
        `ctx.generator`). A batched loop computes them for all rows in one backward; a wrong or empty hint
        costs time, never changes a token."""
        ...

    def choose(self, ctx: StepContext) -> int:
        """The token id emitted at `ctx.step`."""
        ...

    def finish(self, result: DecodeResult) -> None:
        """Add the policy's token columns, decision rows and stats to the result."""
        ...


class DecodeObserver(Protocol):
    """Changes or watches the decoding without choosing tokens (attention interventions, online rules)."""

    def attention_hooks(self) -> list[Any]:
        """Hooks for the attention function, active in every forward of the loop and in the saliency pass."""
        ...

    def grad_layers(self) -> list[int]:
        """Layers the observer reads saliency from while decoding (empty: none)."""
        ...

    def likely_requests(self, ctx: StepContext, token_id: int) -> list[int]:
        """Candidates `on_token` will ask `ctx.row_stats` for once `token_id` is chosen (a hint, like the
        policy's)."""
        ...

    def on_token(self, ctx: StepContext, token_id: int) -> None:
        """Called once the token of `ctx.step` is chosen, before it is fed to the model."""
        ...

    def finish(self, result: DecodeResult) -> None:
        """Add the observer's columns and stats to the result."""
        ...


PolicyFactory = Callable[["ModelBundle", DecodingConfig], StepPolicy]
POLICIES: dict[str, PolicyFactory] = {}


def register_policy(strategy: str) -> Callable[[PolicyFactory], PolicyFactory]:
    """Decorator: register the policy factory of a `--strategy` name."""

    def deco(factory: PolicyFactory) -> PolicyFactory:
        POLICIES[strategy] = factory
        return factory

    return deco


class HookObserver:
    """Attention hooks passed by the caller (tests, experiments), active like the configured interventions."""

    def __init__(self, hooks: Sequence[Any]) -> None:
        self.hooks = list(hooks)

    def attention_hooks(self) -> list[Any]:
        """The caller's hooks, in order."""
        return list(self.hooks)

    def grad_layers(self) -> list[int]:
        """None: plain hooks read no saliency."""
        return []

    def likely_requests(self, ctx: StepContext, token_id: int) -> list[int]:
        """None: plain hooks read no saliency."""
        return []

    def on_token(self, ctx: StepContext, token_id: int) -> None:
        """Nothing to do per token."""

    def finish(self, result: DecodeResult) -> None:
        """Nothing to add."""
