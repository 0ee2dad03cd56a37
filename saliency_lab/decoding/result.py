"""What a decoding loop hands back to the capture engine.

`token_columns` holds the TOKENS decision columns (one entry per output step) and `decisions` the DECISIONS table
columns without run_id/sample_id (one entry per evaluated candidate), both ready for
`saliency_lab.store.schema.table_from_columns` once the ids are added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from saliency_lab.decoding.selection import StepDecision

TOKEN_DECISION_COLUMNS = ("accepted", "n_rejected", "fallback", "sgrs_score", "sgrs_score_name", "sgrs_tau")
DECISION_COLUMNS = ("step", "draw", "rank", "token_id", "prob", "score", "score_name", "tau", "accepted",
                    "fallback")


@dataclass
class DecodeResult:
    """Output ids of one sample plus what the policy and the observers recorded."""

    output_ids: list[int]
    token_columns: dict[str, list] = field(default_factory=dict)
    decisions: dict[str, list] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)  # timings and counters, for benchmarks and logs
    hooks: list[Any] = field(default_factory=list)  # attention hooks as they ended, for the saliency pass
    prefix: Any = None  # decode_batch(keep_prefix=True): the batch's input prefill (saliency.batch.BatchPrefix)


class DecisionLog:
    """Accumulates StepDecisions into the TOKENS decision columns and the DECISIONS table columns."""

    def __init__(self, score_name: str = "out_mean") -> None:
        self.score_name = score_name  # the score thresholded (`--sgrs-score`), recorded with every value
        self.token_columns: dict[str, list] = {c: [] for c in TOKEN_DECISION_COLUMNS}
        self.decisions: dict[str, list] = {c: [] for c in DECISION_COLUMNS}
        self.history: list[tuple[float | None, bool]] = []  # (score of emitted token, accepted by threshold)

    def add(self, step: int, dec: StepDecision) -> None:
        """Record one step's decision."""
        score = dec.score
        self.token_columns["accepted"].append(dec.accepted)
        self.token_columns["n_rejected"].append(dec.n_rejected)
        self.token_columns["fallback"].append(dec.fallback)
        self.token_columns["sgrs_score"].append(score)
        self.token_columns["sgrs_score_name"].append(self.score_name)
        self.token_columns["sgrs_tau"].append(dec.tau)
        last = len(dec.draws) - 1
        for d in dec.draws:
            emitted = d.token_id == dec.token_id
            self.decisions["step"].append(step)
            self.decisions["draw"].append(d.draw)
            self.decisions["rank"].append(d.rank)
            self.decisions["token_id"].append(d.token_id)
            self.decisions["prob"].append(d.prob)
            self.decisions["score"].append(d.score)
            self.decisions["score_name"].append(self.score_name)
            self.decisions["tau"].append(dec.tau)
            self.decisions["accepted"].append(dec.accepted and d.draw == last)
            self.decisions["fallback"].append(dec.fallback and emitted)
        self.history.append((score, dec.accepted))
