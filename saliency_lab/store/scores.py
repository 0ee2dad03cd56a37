"""The token-score family: names and direction conventions.

The formulas live once, as SQL in queries/_catalog.sql (`saliency_norm`, `token_scores`, `pick_score`); this
module only names them for argument parsing and says which way each is read. A unit test checks that the
names here are exactly the score columns `token_scores()` returns and the names `pick_score` accepts.

`reject` is the direction the score's own hypothesis predicts for a hallucinated token: "low" = a
hallucinated token scores lower (the paper's claim for saliency toward earlier outputs; less grounding for
the source shares; Lookback Lens for the context ratio), "high" = it scores higher (later positions). It is
the default rejection direction, nothing more: analyses report AUROC in one fixed convention and
`calibrate --score auto` searches both directions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from saliency_lab.errors import SaliencyLabError

Direction = Literal["low", "high"]


@dataclass(frozen=True)
class ScoreInfo:
    """One score of the family."""

    name: str
    kind: Literal["saliency", "attention", "position"]
    reject: Direction  # the direction its hypothesis predicts for hallucinated tokens
    candidates: bool  # computable on recorded top-K candidate rows (queries/_catalog.sql candidate_scores)
    doc: str


SCORES: dict[str, ScoreInfo] = {
    s.name: s
    for s in (
        ScoreInfo("out_mean", "saliency", "low", True, "Eq. 6: out_sum / (norm * step)"),
        ScoreInfo("prev", "saliency", "low", True, "prev / norm: saliency toward the previous token"),
        ScoreInfo("out_share", "saliency", "low", False, "out_sum / row total"),
        ScoreInfo("prev_share", "saliency", "low", False, "prev / row total"),
        ScoreInfo("prompt_share", "saliency", "low", False, "prompt_sum / row total"),
        ScoreInfo("image_share", "saliency", "low", False, "img_sum / row total"),
        ScoreInfo("system_share", "saliency", "low", False, "sys_sum / row total"),
        ScoreInfo("source_share", "saliency", "low", False, "(prompt_sum + img_sum) / row total"),
        ScoreInfo("attn_out", "attention", "low", False, "head-mean attention mass on prior outputs"),
        ScoreInfo("lookback_ratio", "attention", "low", False, "1 - attn_out: Lookback-Lens context share"),
        ScoreInfo("step", "position", "high", False, "the token's output position (position-only baseline)"),
    )
}

SCORE_NAMES: tuple[str, ...] = tuple(SCORES)
SALIENCY_SCORES: tuple[str, ...] = tuple(n for n, s in SCORES.items() if s.kind == "saliency")
ATTENTION_SCORES: tuple[str, ...] = tuple(n for n, s in SCORES.items() if s.kind == "attention")


def parse_scores(
    spec: str | Sequence[str] | None, *, where: str = "--score", allowed: Iterable[str] | None = None
) -> list[str]:
    """Score names from 'all', a name, a comma list or a list of names; order kept, duplicates dropped.

    `allowed` narrows the family (e.g. scores a decoder can compute); an unknown name is a one-line error."""
    choices = list(allowed) if allowed is not None else list(SCORE_NAMES)
    if spec is None:
        return ["out_mean"]
    items = spec.split(",") if isinstance(spec, str) else [str(x) for x in spec]
    out: list[str] = []
    for raw in items:
        name = raw.strip()
        if not name:
            continue
        names = choices if name == "all" else [name]
        for n in names:
            if n not in choices:
                raise SaliencyLabError(
                    f"{where} {name}: unknown score; choose one of {', '.join(choices)} "
                    "or all (comma-separate several)"
                )
            if n not in out:
                out.append(n)
    if not out:
        raise SaliencyLabError(f"{where}: give a score name, a comma list or all")
    return out
