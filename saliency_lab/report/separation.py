"""Does each score separate hallucinated from correct tokens, pooled and with position controlled, and how
far does position alone get? Read from the analysis (`AnalysisResult.separation`, one
`analysis.separation.ScoreSeparation` per run and score); this module only words and tabulates it.

Direction: AUROC is the analysis' P(hallucinated token scores lower) (0.5 = chance). A score "separates"
when the whole 95% interval is above 0.5, "separates in reverse" when it is below (hallucinated tokens
score higher), otherwise it "does not separate".
"""

from __future__ import annotations

import math
from typing import Any

from saliency_lab.report import tables as tb
from saliency_lab.report.page import Section


def verdict(ci: Any) -> str:
    """Words for an AUROC interval: 'separates' above 0.5, 'separates in reverse' below, else 'does not
    separate'."""
    if ci is None or len(ci) != 2 or not all(v is not None and math.isfinite(float(v)) for v in ci):
        return "does not separate"
    if float(ci[0]) == float(ci[1]):
        # a zero-width interval: every resample gave the same value, i.e. one or two pairs shared a step (a
        # handful of hallucinated tokens); that is no evidence either way
        return "does not separate"
    if float(ci[0]) > 0.5:
        return "separates"
    if float(ci[1]) < 0.5:
        return "separates in reverse"
    return "does not separate"


VERDICT_CLASS = {"separates": "good", "separates in reverse": "warn", "does not separate": "bad"}


def rows_of(result: Any) -> dict[str, list[Any]]:
    """run_id -> ScoreSeparation rows, the primary score first, the position-only `step` row dropped (its
    AUROC is on every row as step_auroc)."""
    if result is None:
        return {}
    out = {}
    for run_id, rows in (getattr(result, "separation", None) or {}).items():
        out[run_id] = [r for r in rows if r.score != "step"]
    return out


def family_separation(paths: list[Any], labels: str, cfg: Any) -> dict[str, list[Any]]:
    """`analysis.separation.separation_table` for every score of the family (saliency_lab.store.scores), per
    run, on the tokens `analyze` tests (step >= 1 with a primary score; query labeled_tokens)."""
    import polars as pl

    from saliency_lab.analysis.separation import SeparationConfig, separation_table
    from saliency_lab.store.catalog import open_catalog
    from saliency_lab.store.scores import SCORE_NAMES

    primary = cfg.scores[0]
    family = [primary, *(s for s in SCORE_NAMES if s != primary)]
    layers = ",".join(str(int(x)) for x in cfg.layers) if cfg.layers else "NULL"
    with open_catalog([str(p) for p in paths]) as cat:
        toks = cat.query(
            "labeled_tokens", {"labels": labels, "normalization": cfg.normalization, "layers": layers}
        )
    if cfg.first_subtoken_only:
        toks = toks.filter(pl.col("subtoken") == 0)
    toks = toks.filter((pl.col("step") >= 1) & pl.col(primary).is_not_null() & pl.col(primary).is_not_nan())
    sep_cfg = SeparationConfig(
        step_bin=cfg.step_bin, step_band=cfg.step_band, n_bootstrap=cfg.n_bootstrap, seed=cfg.seed
    )
    out = {}
    for (run_id,), df in toks.group_by(["run_id"], maintain_order=True):
        out[str(run_id)] = separation_table(df, family, sep_cfg, run_id=str(run_id))
    return out


def _ci_cell(est: float, ci: Any, key: str) -> tb.Cell:
    if est is None or not math.isfinite(est):
        return tb.Cell("–", cls="num")
    text = f"{est:.3f}"
    if ci is not None and all(v is not None and math.isfinite(v) for v in ci):
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return tb.Cell(text, value=repr(float(est)), cls=f"num {VERDICT_CLASS[verdict(ci)]}", key=key)


def separation_section(result: Any, missing: str) -> Section:
    """Pooled, step-controlled and step-only AUROC of every score, with verdicts; only `needs` without
    rows."""
    sec = Section(
        "separation",
        "Separation by score, pooled and position-controlled",
        intro="For every score of the family: the AUROC (P(hallucinated scores lower), 0.5 = chance) over "
        "all labeled tokens (pooled), with pairs formed only at the same step (controlled: "
        "position cannot help), and the AUROC of the step alone on the same tokens. Green: the "
        "interval is above 0.5 (low score flags hallucination); amber: below (hallucinated tokens "
        "score higher); red: the interval contains 0.5. Intervals: 95% bootstrap over samples.",
    )
    per_run = rows_of(result)
    if not per_run:
        sec.needs = missing
        return sec
    for run_id, rows in per_run.items():
        t = tb.Table(
            key=f"separation:{run_id}",
            title=f"Separation — {run_id}",
            columns=[
                "score",
                "hallucinated",
                "correct",
                "pooled AUROC",
                "controlled AUROC",
                "step alone",
                "logistic coef (step held)",
                "p",
                "Spearman with step",
                "warnings",
            ],
        )
        for r in rows:
            k = f"separation|{run_id}|{r.score}"
            t.rows.append(
                [
                    tb.text(r.score),
                    tb.num(r.n_pos),
                    tb.num(r.n_neg),
                    _ci_cell(r.pooled_auroc, r.pooled_ci, f"{k}|pooled"),
                    _ci_cell(r.controlled_auroc, r.controlled_ci, f"{k}|controlled"),
                    _ci_cell(r.step_auroc, r.step_ci, f"{k}|step"),
                    tb.num(r.logit_coef, key=f"{k}|logit_coef"),
                    tb.pval(r.logit_p, key=f"{k}|logit_p"),
                    tb.num(r.spearman_step, key=f"{k}|spearman"),
                    tb.text("; ".join(r.warnings) or "–"),
                ]
            )
        sec.table(t)
    return sec
