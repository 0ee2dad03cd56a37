"""A hallucination detector over per-layer token features, compared across four feature sets.

For every generated token with step >= 1 the features are (queries/token_layers.sql, one column per score
and layer, named `score@L<layer>`):

    position   step, log(step)
    attention  attn_out at every layer (per-layer Lookback-Lens ratios: the context ratio is 1 - attn_out)
    saliency   out_mean, prev, out_share, prev_share, prompt_share, image_share, system_share at every layer
               (source_share = prompt_share + image_share and lookback_ratio = 1 - attn_out are left out:
               linear copies add nothing to a linear probe)
    all        the three together

The probe is scikit-learn's L2-regularized LogisticRegression on standardized features (missing values
imputed with the training mean). Cross-validation is GroupKFold over samples, grouped by image_id when the
samples carry one (captions of one image never sit on both sides of a split) and by (run, sample)
otherwise. The CV AUROC is P(probability of a hallucinated token > that of a correct one), ties half (0.5 =
chance, 1 = perfect), with pairs compared within a test fold only: the folds' AUROCs weighted by the pairs
they hold (pooling the folds' probabilities would mix models with different intercepts, which pulls the
AUROC below 0.5 on pure noise). Its 95% interval is a percentile bootstrap that resamples the groups; it
covers the sampling of the evaluated tokens given the fold models, not the refitting. The model written to
detector.json is refitted on all tokens.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from saliency_lab.analysis.api import check_labelset
from saliency_lab.analysis.results import jsonable
from saliency_lab.analysis.stats import cluster_ci_of, stratified_auroc_weighted
from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.catalog import open_catalog

RunsArg = Sequence[str | Path] | str | Path

FEATURE_SETS = ("position", "attention", "saliency", "all")
SALIENCY_FEATURES = (
    "out_mean",
    "prev",
    "out_share",
    "prev_share",
    "prompt_share",
    "image_share",
    "system_share",
)
ATTENTION_FEATURES = ("attn_out",)
KEYS = ["run_id", "sample_id", "step"]


@dataclass
class DetectorConfig:
    """Options of `train_detector`; written into detector.json."""

    feature_sets: list[str] = field(default_factory=lambda: list(FEATURE_SETS))
    c: float = 1.0  # inverse L2 strength of LogisticRegression
    n_splits: int = 5  # GroupKFold folds (fewer when there are fewer groups)
    n_bootstrap: int = 1000  # group resamples for the CV AUROC interval
    seed: int = 0
    normalization: str = "row"
    max_iter: int = 2000

    def validate(self) -> DetectorConfig:
        """Check the options; one-line errors naming the bad value."""
        bad = [f for f in self.feature_sets if f not in FEATURE_SETS]
        if bad or not self.feature_sets:
            raise SaliencyLabError(
                f"--features {','.join(bad) or '(none)'}: choose from {', '.join(FEATURE_SETS)}"
            )
        if self.c <= 0:
            raise SaliencyLabError(f"C={self.c}: the inverse regularization strength must be > 0")
        if self.n_splits < 2:
            raise SaliencyLabError(f"n_splits={self.n_splits}: cross-validation needs at least 2 folds")
        if self.normalization not in ("row", "none", "matrix"):
            raise SaliencyLabError(f"normalization={self.normalization!r}: choose row, none or matrix")
        return self


@dataclass
class FeatureSetResult:
    """One feature set: its CV performance and the model refitted on all tokens."""

    name: str
    features: list[str]
    cv_auroc: float  # pooled out-of-fold AUROC, higher probability = hallucinated
    cv_ci: tuple[float, float]
    n_folds: int
    coefficients: list[float]  # per standardized feature, same order as `features`
    intercept: float
    impute: list[float]  # training means used for missing values
    mean: list[float]  # standardization
    scale: list[float]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(hallucinated) for a feature matrix whose columns follow `features`."""
        x = np.where(np.isnan(x), np.asarray(self.impute)[None, :], x)
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coefficients) + self.intercept)))


@dataclass
class DetectorResult:
    """What `train_detector` returns and detector.json holds."""

    labels: str
    config: DetectorConfig
    feature_sets: dict[str, FeatureSetResult]
    n_tokens: int
    n_pos: int
    n_groups: int
    group_by: str  # 'image_id' or 'sample'
    layers: list[int]
    runs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The detector.json document."""
        return jsonable(
            {
                "kind": "saliency-lab detector",
                "labels": self.labels,
                "config": asdict(self.config),
                "n_tokens": self.n_tokens,
                "n_pos": self.n_pos,
                "n_groups": self.n_groups,
                "group_by": self.group_by,
                "layers": self.layers,
                "runs": self.runs,
                "feature_sets": {
                    k: {**asdict(v), "cv_ci": list(v.cv_ci)} for k, v in self.feature_sets.items()
                },
            }
        )

    def write(self, out_dir: str | Path) -> Path:
        """Write <out_dir>/detector.json; returns its path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "detector.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)
        return path

    def best(self) -> str:
        """The feature set with the highest CV AUROC."""
        ok = {k: v.cv_auroc for k, v in self.feature_sets.items() if not math.isnan(v.cv_auroc)}
        return max(ok, key=lambda k: ok[k]) if ok else next(iter(self.feature_sets))


def load_detector(path: str | Path) -> DetectorResult:
    """Read a detector.json (or the folder holding it) written by `train_detector` / `saliency-lab detect`."""
    p = Path(path)
    p = p / "detector.json" if p.is_dir() else p
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SaliencyLabError(
            f"{p}: not found; pass the detector.json written by `saliency-lab detect`"
        ) from None
    except (OSError, ValueError) as exc:
        raise SaliencyLabError(f"{p}: not valid JSON ({exc}); run `saliency-lab detect` again") from None
    if not isinstance(doc, dict) or doc.get("kind") != "saliency-lab detector":
        raise SaliencyLabError(
            f"{p}: not a detector file; pass the detector.json written by `saliency-lab detect`"
        )
    sets = {}
    for k, v in doc["feature_sets"].items():
        v = dict(v)
        v["cv_ci"] = tuple(math.nan if c is None else c for c in v["cv_ci"])
        v["cv_auroc"] = math.nan if v["cv_auroc"] is None else v["cv_auroc"]
        sets[k] = FeatureSetResult(**v)
    return DetectorResult(
        labels=doc["labels"],
        config=DetectorConfig(**doc["config"]),
        feature_sets=sets,
        n_tokens=doc["n_tokens"],
        n_pos=doc["n_pos"],
        n_groups=doc["n_groups"],
        group_by=doc["group_by"],
        layers=doc["layers"],
        runs=doc.get("runs", []),
    )


def _features(runs: RunsArg, normalization: str) -> tuple[pl.DataFrame, list[int]]:
    """One row per token with step >= 1: keys, image_id and every feature column."""
    with open_catalog(runs) as cat:
        per_layer = cat.query("token_layers", {"normalization": normalization})
    per_layer = per_layer.filter(pl.col("step") >= 1)
    layers = sorted(int(x) for x in per_layer["layer"].unique().to_list())
    cols = [*SALIENCY_FEATURES, *ATTENTION_FEATURES]
    wide = per_layer.pivot(on="layer", index=[*KEYS, "image_id"], values=cols, aggregate_function="first")
    # polars names pivoted columns "<value>_<layer>"; rename to the stable "<score>@L<layer>"
    ren = {f"{c}_{layer}": f"{c}@L{layer}" for c in cols for layer in layers}
    wide = wide.rename({k: v for k, v in ren.items() if k in wide.columns})
    wide = wide.with_columns(
        step_f=pl.col("step").cast(pl.Float64), log_step=pl.col("step").cast(pl.Float64).log()
    )
    return wide.sort(KEYS), layers


def feature_names(feature_set: str, layers: Sequence[int]) -> list[str]:
    """Column names of one feature set, in model order."""
    pos = ["step_f", "log_step"]
    att = [f"{c}@L{layer}" for c in ATTENTION_FEATURES for layer in layers]
    sal = [f"{c}@L{layer}" for c in SALIENCY_FEATURES for layer in layers]
    return {"position": pos, "attention": att, "saliency": sal, "all": sal + att + pos}[feature_set]


def _matrix(df: pl.DataFrame, names: Sequence[str]) -> np.ndarray:
    cols = [
        df[n].cast(pl.Float64).fill_null(np.nan).to_numpy() if n in df.columns else np.full(df.height, np.nan)
        for n in names
    ]
    return np.column_stack(cols) if cols else np.empty((df.height, 0))


def _fit_one(
    name: str, x: np.ndarray, y: np.ndarray, groups: np.ndarray, names: list[str], cfg: DetectorConfig
) -> FeatureSetResult:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # all-NaN columns (a score no layer defines) carry nothing and break the imputer: give them 0
    x = np.where(np.isnan(x).all(axis=0)[None, :], 0.0, x)

    def model():
        return make_pipeline(
            SimpleImputer(strategy="mean"),
            StandardScaler(),
            LogisticRegression(C=cfg.c, max_iter=cfg.max_iter),
        )

    n_folds = min(cfg.n_splits, len(np.unique(groups)))
    oof = np.full(len(y), np.nan)
    fold = np.full(len(y), -1)
    for k, (tr, te) in enumerate(GroupKFold(n_splits=n_folds).split(x, y, groups)):
        if len(np.unique(y[tr])) < 2:
            continue  # a fold whose training part lacks a label cannot be fitted; its tokens stay unscored
        oof[te] = model().fit(x[tr], y[tr]).predict_proba(x[te])[:, 1]
        fold[te] = k
    ok = ~np.isnan(oof)
    # Pairs are compared within a fold only (each fold's AUROC, weighted by its pairs): pooling the folds'
    # probabilities would mix models with different intercepts, which biases the AUROC below 0.5 on noise.
    # -p makes stats' "hallucinated lower" AUROC the usual P(p_halluc > p_correct).
    folds = [k for k in np.unique(fold[ok]) if len(np.unique(y[fold == k])) == 2]
    pairs = np.array([(y[fold == k] == 1).sum() * (y[fold == k] == 0).sum() for k in folds], dtype=float)
    aucs = np.array([roc_auc_score(y[fold == k], oof[fold == k]) for k in folds])
    auc = float((aucs * pairs).sum() / pairs.sum()) if folds else math.nan

    def within_folds(v: np.ndarray, yy: np.ndarray, w: np.ndarray) -> np.ndarray:
        # the same estimator on weighted resamples (stats: "hallucinated lower" AUROC of -p)
        return stratified_auroc_weighted(v, yy, fold[ok], w)

    ci = (
        cluster_ci_of(within_folds, -oof[ok], y[ok], groups[ok], cfg.n_bootstrap, cfg.seed)
        if folds
        else (math.nan, math.nan)
    )
    full = model().fit(x, y)
    imp, sc, lr = full.steps[0][1], full.steps[1][1], full.steps[2][1]
    return FeatureSetResult(
        name=name,
        features=list(names),
        cv_auroc=auc,
        cv_ci=ci,
        n_folds=n_folds,
        coefficients=[float(v) for v in lr.coef_[0]],
        intercept=float(lr.intercept_[0]),
        impute=[float(v) for v in imp.statistics_],
        mean=[float(v) for v in sc.mean_],
        scale=[float(v) for v in sc.scale_],
    )


def train_detector(runs: RunsArg, labels: str, config: DetectorConfig | None = None) -> DetectorResult:
    """Fit and cross-validate the detector on every labeled token (step >= 1) of `runs` for each feature set."""
    cfg = (config or DetectorConfig()).validate()
    with open_catalog(runs) as cat:
        check_labelset(cat, labels)
        lab = cat.query("labeled_tokens", {"labels": labels, "normalization": cfg.normalization})
        run_list = [r.location for r in cat.runs]
    lab = lab.group_by(KEYS).agg(pl.col("label").max().cast(pl.Int64))
    feats, layers = _features(runs, cfg.normalization)
    df = feats.join(lab, on=KEYS, how="inner").sort(KEYS)
    y = df["label"].to_numpy()
    if df.height == 0 or len(np.unique(y)) < 2:
        raise SaliencyLabError(
            f"labelset {labels!r}: the detector needs hallucinated and correct labeled tokens "
            "with step >= 1; label more samples"
        )
    has_image = df["image_id"].null_count() == 0 and df["image_id"].n_unique() > 1
    key = (
        df["image_id"]
        if has_image
        else df.select(pl.concat_str(["run_id", "sample_id"], separator="\x00")).to_series()
    )
    _, groups = np.unique(key.to_numpy(), return_inverse=True)
    if len(np.unique(groups)) < 2:
        raise SaliencyLabError("the detector's cross-validation needs labeled tokens from at least 2 samples")
    sets = {}
    for name in cfg.feature_sets:
        names = feature_names(name, layers)
        sets[name] = _fit_one(name, _matrix(df, names), y, groups, names, cfg)
    return DetectorResult(
        labels=labels,
        config=cfg,
        feature_sets=sets,
        n_tokens=df.height,
        n_pos=int(y.sum()),
        n_groups=int(len(np.unique(groups))),
        group_by="image_id" if has_image else "sample",
        layers=layers,
        runs=run_list,
    )


def score_run(
    detector: DetectorResult | str | Path, run: RunsArg, feature_set: str | None = None
) -> pl.DataFrame:
    """Per-token P(hallucinated) for every generated token with step >= 1 of `run` (one or more runs):
    columns run_id, sample_id, step, prob. `feature_set` defaults to the detector's best one."""
    det = detector if isinstance(detector, DetectorResult) else load_detector(detector)
    name = feature_set or det.best()
    if name not in det.feature_sets:
        raise SaliencyLabError(
            f"feature set {name!r} is not in this detector ({', '.join(det.feature_sets)})"
        )
    fs = det.feature_sets[name]
    feats, _ = _features(run, det.config.normalization)
    missing = [f for f in fs.features if f not in feats.columns]
    if missing:
        raise SaliencyLabError(
            f"the run lacks detector features {missing[:3]}...; score runs of a model with the "
            "same layers as the training runs"
        )
    prob = fs.predict(_matrix(feats, fs.features))
    return feats.select(KEYS).with_columns(prob=pl.Series(prob))
