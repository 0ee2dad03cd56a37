"""`analyze` and `calibrate`: the library calls behind `saliency-lab analyze` / `calibrate`.

Data come from the named queries in queries/ (labeled_tokens, labeled_layers, failure_cases,
run_summary, replay_tokens, replay_candidates); statistics are computed here with numpy/scipy/statsmodels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from saliency_lab.analysis.calibration import (
    GRID_SCHEMA,
    GroupCounts,
    ReplayData,
    difference_bounds,
    grid_rows,
    pareto_mask,
    verdict,
)
from saliency_lab.analysis.config import ATTENTION_MEASURES, AnalysisConfig, CalibrationConfig
from saliency_lab.analysis.curves import binned_curve, curve_frame, trend_tests
from saliency_lab.analysis.failures import attach_layer_profile
from saliency_lab.analysis.results import AnalysisResult, CalibrationResult
from saliency_lab.analysis.separation import (
    SeparationConfig,
    separation_table,
    step_band_means,
)
from saliency_lab.analysis.stats import (
    adjust_pvalues,
    auroc_ci,
    auroc_cluster_ci,
    auroc_low,
    cluster_bootstrap,
    compare_groups,
    stratified_auroc,
)
from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.catalog import Catalog, open_catalog
from saliency_lab.store.scores import SCORES

RunsArg = Sequence[str | Path] | str | Path

LABEL_MEANS_SCHEMA = {"run_id": pl.String, "measure": pl.String, "layer": pl.Int16, "label": pl.Int8,
                      "n": pl.Int64, "mean": pl.Float64, "sd": pl.Float64}
LAYER_SCHEMA = {"run_id": pl.String, "measure": pl.String, "layer": pl.Int16, "n_correct": pl.Int64,
                "n_halluc": pl.Int64, "mean_correct": pl.Float64, "mean_halluc": pl.Float64,
                "cohen_d": pl.Float64, "auroc": pl.Float64, "auroc_ci_low": pl.Float64,
                "auroc_ci_high": pl.Float64, "welch_t": pl.Float64, "welch_p": pl.Float64,
                "p_adjusted": pl.Float64, "significant": pl.Boolean, "auroc_controlled": pl.Float64}


def _layers_param(layers: list[int] | None) -> str:
    return ",".join(str(int(x)) for x in layers) if layers else "NULL"


def target_layers(n_layers: int | None, layers: list[int] | None) -> list[int] | None:
    """The layers a token score averages: `layers` when given (sorted), else the upper half of
    `n_layers` (None when the layer count is unknown)."""
    if layers:
        return sorted(int(x) for x in layers)
    return list(range(n_layers // 2, n_layers)) if n_layers else None


def check_labelset(cat: Catalog, labels: str) -> None:
    """One-line error when no opened run has the labelset `labels`."""
    found = cat.con.execute("SELECT DISTINCT labelset FROM labels ORDER BY 1").fetchall()
    names = [r[0] for r in found]
    if labels not in names:
        runs = ", ".join(r.location for r in cat.runs)
        have = f"labelsets found: {', '.join(names)}" if names else "no labelsets found"
        raise SaliencyLabError(f"labelset {labels!r} not in {runs} ({have}); "
                               f"run `saliency-lab label {labels} --run R` first or pick another --labels")


def _summary(cat: Catalog, labels: str, cfg_layers: list[int] | None) -> dict[str, dict[str, Any]]:
    rs = cat.query("run_summary", {"labels": labels})
    out: dict[str, dict[str, Any]] = {}
    loc = {r.run_id: r.location for r in cat.runs}
    for row in rs.iter_rows(named=True):
        metrics = json.loads(row.pop("metrics")) if row.get("metrics") else {}
        row["run_dir"] = loc.get(row["run_id"])
        row["target_layers"] = target_layers(row.get("n_layers"), cfg_layers)
        row["label_metrics"] = metrics
        out[row["run_id"]] = row
    return out


def _per_run_stats(run_id: str, df: pl.DataFrame, measures: list[str], cfg: AnalysisConfig,
                   curve_rows: list[dict], mean_rows: list[dict]) -> dict[str, Any]:
    y = df["label"].cast(pl.Int64).to_numpy()
    groups = df["sample_id"].to_numpy()
    resamples = cluster_bootstrap(groups, cfg.n_bootstrap, cfg.seed) if cfg.n_bootstrap else []
    res: dict[str, Any] = {}
    for m in measures:
        x = df[m].cast(pl.Float64).to_numpy()
        st = compare_groups(x, y)
        st["auroc_ci"] = list(auroc_ci(x, y, resamples)) if resamples else [math.nan, math.nan]
        st["trend"] = trend_tests(x, y, groups, cfg.bins, cfg.binning)
        st["logistic"] = st["trend"]["logistic"]
        res[m] = st
        rows, _ = binned_curve(x, y, cfg.bins, cfg.binning)
        curve_rows += [{"run_id": run_id, "measure": m, **r} for r in rows]
        for lab in (0, 1):
            v = x[y == lab]
            mean_rows.append({"run_id": run_id, "measure": m, "layer": None, "label": lab, "n": len(v),
                              "mean": float(v.mean()) if len(v) else math.nan,
                              "sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan})
    res["comparison"] = _compare_to_attention(df, measures, y, resamples)
    return res


def _compare_to_attention(df: pl.DataFrame, measures: list[str], y: np.ndarray,
                          resamples: list[np.ndarray]) -> dict[str, Any]:
    """Separation = max(AUROC, 1 - AUROC): how well a measure splits the labels in either direction.
    The saliency score is compared with each attention measure on the same tokens and the same bootstrap
    resamples (paired), so the interval of the difference answers 'does saliency separate better?'."""
    sal = measures[0]
    xs = {m: df[m].cast(pl.Float64).to_numpy() for m in measures}

    def sep(x: np.ndarray, yy: np.ndarray) -> float:
        a = auroc_low(x[yy == 1], x[yy == 0])
        return max(a, 1 - a) if not math.isnan(a) else math.nan

    out: dict[str, Any] = {"saliency_measure": sal, "separation": {m: sep(xs[m], y) for m in measures}}
    for m in measures[1:]:
        diffs = []
        for idx in resamples:
            d = sep(xs[sal][idx], y[idx]) - sep(xs[m][idx], y[idx])
            if not math.isnan(d):
                diffs.append(d)
        point = out["separation"][sal] - out["separation"][m]
        ci = [float(v) for v in np.percentile(diffs, [2.5, 97.5])] if diffs else [math.nan, math.nan]
        out[f"vs_{m}"] = {"difference": point, "ci": ci,
                          "saliency_better": bool(ci[0] > 0) if not math.isnan(ci[0]) else None}
    return out


def _layer_profile(layers_df: pl.DataFrame, measures: list[str], cfg: AnalysisConfig,
                   mean_rows: list[dict]) -> pl.DataFrame:
    rows = []
    for (run_id,), rdf in layers_df.group_by(["run_id"], maintain_order=True):
        for m in measures:
            block = []
            for (layer,), ldf in rdf.group_by(["layer"], maintain_order=True):
                sub = ldf.filter(pl.col(m).is_not_null() & pl.col(m).is_not_nan())
                x = sub[m].cast(pl.Float64).to_numpy()
                y = sub["label"].cast(pl.Int64).to_numpy()
                st = compare_groups(x, y)
                # Same rule as the token-level auroc_ci: whole samples resampled (tokens of a caption are not
                # independent), cfg.seed for every layer, so layers with the same samples share the draws.
                lo, hi = auroc_cluster_ci(x, y, sub["sample_id"].to_numpy(), cfg.n_bootstrap, cfg.seed)
                block.append({"run_id": run_id, "measure": m, "layer": int(layer),
                              **{k: st[k] for k in ("n_correct", "n_halluc", "mean_correct", "mean_halluc",
                                                    "cohen_d", "auroc", "welch_t", "welch_p")},
                              "auroc_ci_low": lo, "auroc_ci_high": hi,
                              # pairs within a step stratum only (analysis.separation), per layer
                              "auroc_controlled": stratified_auroc(
                                  x, y, sub["step"].cast(pl.Int64).to_numpy() // cfg.step_bin)})
                for lab, key in ((0, "correct"), (1, "halluc")):
                    mean_rows.append({"run_id": run_id, "measure": m, "layer": int(layer), "label": lab,
                                      "n": st[f"n_{key}"], "mean": st[f"mean_{key}"],
                                      "sd": st[f"sd_{key}"]})
            block.sort(key=lambda r: r["layer"])
            adj = adjust_pvalues(np.array([r["welch_p"] for r in block], float), cfg.fdr)
            for r, p in zip(block, adj, strict=True):
                r["p_adjusted"] = float(p)
                r["significant"] = bool(p < 0.05) if not math.isnan(p) else False
            rows += block
    return pl.DataFrame(rows, schema=LAYER_SCHEMA) if rows else pl.DataFrame(schema=LAYER_SCHEMA)


def primary_score(scores: list[str]) -> str:
    """The score the curve, failure cases and saliency-vs-attention comparison use: the first requested one
    that is a token property (not the step), out_mean when only the step was asked for."""
    return next((s for s in scores if s != "step"), "out_mean")


def analyze(runs: RunsArg, labels: str, config: AnalysisConfig | None = None) -> AnalysisResult:
    """Token-score analysis of one or more runs against a labelset; results per run (run_id)."""
    cfg = (config or AnalysisConfig()).validate()
    scores = cfg.scores
    primary = primary_score(scores)
    # per-score statistics, curves and layer profiles: every requested score but the step (no [0, 1] curve,
    # the same value at every layer), and the attention baselines for the comparison
    measures = [primary, *[s for s in scores if s not in (primary, "step")],
                *[m for m in ATTENTION_MEASURES if m not in scores and m != primary]]
    with open_catalog(runs) as cat:
        check_labelset(cat, labels)
        common = {"labels": labels, "normalization": cfg.normalization}
        summary = _summary(cat, labels, cfg.layers)
        toks = cat.query("labeled_tokens", {**common, "layers": _layers_param(cfg.layers)})
        per_layer = cat.query("labeled_layers", common)
        cases = cat.query("failure_cases", {**common, "layers": _layers_param(cfg.layers), "score": primary,
                                            "top": str(cfg.n_failures), "context": str(cfg.context_chars)})
    if cfg.first_subtoken_only:
        toks = toks.filter(pl.col("subtoken") == 0)
        per_layer = per_layer.filter(pl.col("subtoken") == 0)
    # The same tokens for every measure: step >= 1 (Eq. 6 and prev are undefined at step 0) with a primary score.
    toks = toks.filter((pl.col("step") >= 1) & pl.col(primary).is_not_null() & pl.col(primary).is_not_nan())
    sep_cfg = SeparationConfig(step_bin=cfg.step_bin, step_band=cfg.step_band, n_bootstrap=cfg.n_bootstrap,
                               seed=cfg.seed)
    curve_rows: list[dict] = []
    mean_rows: list[dict] = []
    tests: dict[str, dict[str, Any]] = {}
    separation: dict[str, list] = {}
    bands = []
    for run_id in summary:
        df = toks.filter(pl.col("run_id") == run_id)
        summary[run_id]["n_analyzed"] = df.height
        summary[run_id]["n_analyzed_halluc"] = int(df["label"].cast(pl.Int64).sum() or 0)
        if df.height == 0:
            tests[run_id] = {"error": f"no labeled tokens with a {primary} score"}
            continue
        tests[run_id] = _per_run_stats(run_id, df, measures, cfg, curve_rows, mean_rows)
        separation[run_id] = separation_table(df, scores, sep_cfg, run_id=run_id)
        bands.append(step_band_means(df, scores, cfg.step_band, run_id=run_id))
    scored_layers = per_layer.filter((pl.col("step") >= 1) & pl.col(primary).is_not_null()
                                     & pl.col(primary).is_not_nan())
    layer_profile = _layer_profile(scored_layers, measures, cfg, mean_rows)
    label_means = (pl.DataFrame(mean_rows, schema=LABEL_MEANS_SCHEMA) if mean_rows
                   else pl.DataFrame(schema=LABEL_MEANS_SCHEMA))
    failures = attach_layer_profile(cases, per_layer, primary)
    step_bands = pl.concat(bands) if bands else step_band_means(toks.head(0), scores, cfg.step_band)
    return AnalysisResult(labels=labels, config=cfg, summary=summary, label_means=label_means,
                          curve=curve_frame(curve_rows), tests=tests, layer_profile=layer_profile,
                          failures=failures, separation=separation, step_bands=step_bands,
                          runs=[str(r) for r in ([runs] if isinstance(runs, (str, Path)) else runs)])


def _default_layer_sets(cat: Catalog) -> list[tuple[str, list[int]]]:
    ns = {r.n_layers for r in cat.runs}
    if None in ns:
        got = cat.con.execute("SELECT DISTINCT n_layers FROM runs").fetchall()
        ns = {g[0] for g in got}
    if len(ns) != 1 or None in ns:
        raise SaliencyLabError(f"runs have different layer counts {sorted(map(str, ns))}; "
                               "give layer sets explicitly (--layer-sets '2,3;0,1,2,3')")
    n = ns.pop()
    assert n is not None  # checked above
    sets = [("upper_half", list(range(n // 2, n))), ("all", list(range(n))), ("last", [n - 1])]
    seen, out = set(), []
    for name, ls in sets:
        if tuple(ls) not in seen:
            seen.add(tuple(ls))
            out.append((name, ls))
    return out


def _labeled_samples(counts: GroupCounts) -> int:
    keys = [k[(h + c) > 0] for k, h, c in zip(counts.sample_keys, counts.h_tot, counts.c_tot, strict=True)]
    return len(np.unique(np.concatenate(keys))) if keys else 0


def calibrate(runs: RunsArg, labels: str, config: CalibrationConfig | None = None) -> CalibrationResult:
    """Grid search of the SGRS score, rejection direction, alpha, W and target layers by offline replay (all
    runs pooled); recommends a setting only when it beats chance (calibration.verdict)."""
    cfg = (config or CalibrationConfig()).validate()
    assert cfg.alphas is not None and cfg.windows is not None  # validate() fills both
    scores = cfg.scores
    rows: list[dict] = []
    counts = GroupCounts()
    with open_catalog(runs) as cat:
        check_labelset(cat, labels)
        sets = ([(",".join(map(str, s)), sorted(int(x) for x in s)) for s in cfg.layer_sets]
                if cfg.layer_sets else _default_layer_sets(cat))
        has_cand = (cat.con.execute("SELECT count(*) FROM candidates").fetchone() or (0,))[0] > 0
        cand_scores = [s for s in scores if SCORES[s].candidates]
        for name, layers in sets:
            params = {"layers": _layers_param(layers), "normalization": cfg.normalization}
            toks_all = cat.query("replay_tokens", {**params, "labels": labels, "score": ",".join(scores)})
            cands_all = (cat.query("replay_candidates", {**params, "score": ",".join(cand_scores)})
                         if has_cand and cand_scores else None)
            for score in scores:
                toks = toks_all.filter(pl.col("measure") == score)
                if cfg.first_subtoken_only:
                    toks = toks.with_columns(label=pl.when(pl.col("subtoken") == 0).then(pl.col("label")))
                # candidate rows carry only out_mean / prev (schema): other scores replay without candidates
                cands = cands_all.filter(pl.col("measure") == score) if cands_all is not None else None
                data = ReplayData.from_frames(toks, cands if cands is not None and cands.height else None)
                keys = np.unique(toks.sort(["run_id", "sample_id", "step"]).select(
                    pl.concat_str(["run_id", "sample_id"], separator="\x00")).to_series().to_numpy())
                for reject in cfg.directions(score):
                    rows += grid_rows(data, name, layers, cfg.alphas, cfg.windows, cfg.max_resample,
                                      score=score, reject=reject, counts=counts, sample_keys=keys)
    grid = pl.DataFrame(rows, schema=GRID_SCHEMA)
    bounds = difference_bounds(counts, cfg.n_bootstrap, cfg.seed)
    grid = grid.with_columns(
        diff=pl.Series(bounds["diff"]), diff_ci_low=pl.Series(bounds["ci_low"]),
        diff_ci_high=pl.Series(bounds["ci_high"]), diff_lower=pl.Series(bounds["lower"]),
    ).with_columns(recommendable=(pl.col("diff_lower").fill_nan(None) > 0).fill_null(False))
    grid = grid.with_columns(on_frontier=pl.Series(pareto_mask(
        grid["recall"].fill_null(np.nan).to_numpy(), grid["false_rejection_rate"].fill_null(np.nan).to_numpy())))
    frontier = grid.filter("on_frontier").sort(["false_rejection_rate", "recall"])
    if grid.filter(pl.col("recall").is_not_nan() & pl.col("false_rejection_rate").is_not_nan()).height == 0:
        raise SaliencyLabError(f"labelset {labels!r}: no labeled tokens with a score in these runs; "
                               "calibration needs both hallucinated and correct labeled tokens")
    best, reason = verdict(grid, cfg.budget)
    n_samples = _labeled_samples(counts)
    if n_samples < cfg.min_samples:
        best, reason = None, (f"too few samples to tell a setting from chance: {n_samples} samples hold labeled "
                              f"tokens, the bootstrap bound needs at least {cfg.min_samples} (min_samples); "
                              "label more samples")
    recommended = metrics = None
    if best is not None:
        recommended = {"alpha": float(best["alpha"]), "window": int(best["window"]),
                       "layers": [int(x) for x in best["layers"]], "score": best["score"], "reject": best["reject"]}
        metrics = {k: best[k] for k in ("layer_set", "recall", "false_rejection_rate", "expected_resamples",
                                        "all_below_rate", "n_halluc", "n_correct", "diff", "diff_ci_low",
                                        "diff_ci_high", "diff_lower")}
    return CalibrationResult(labels=labels, config=cfg, grid=grid, frontier=frontier, recommended=recommended,
                             recommended_metrics=metrics, reason=reason, simultaneous_q=float(bounds["q"]),
                             has_candidates=has_cand,
                             runs=[str(r) for r in ([runs] if isinstance(runs, (str, Path)) else runs)])
