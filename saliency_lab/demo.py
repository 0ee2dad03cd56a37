"""`saliency-lab demo`: the whole pipeline on CPU with nothing downloaded, in one of two worlds: the bundled
scene world and its small trained LLaVA (the default), or the text-grounded world on a real pretrained LLM
(`saliency_lab.demo_text`).

Stages, shared by both worlds: build a held-out evaluation set -> capture greedy answers with saliency ->
CHAIR labels -> analyze (saliency of hallucinated vs correct object tokens) -> calibrate SGRS -> capture
again with top-K sampling (SGRS's paired control), calibrated SGRS and LocoRE -> one HTML report. What
differs between worlds (model, data, labels, extra runs such as POPE, extra findings) sits behind the
`DemoWorld` protocol. A stage whose module is missing from the installation is skipped with a printed note.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from saliency_lab.config import DType
from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.scores import SALIENCY_SCORES
from saliency_lab.threads import configured_threads

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "datasets" / "shapes" / "model"


@dataclass
class DemoConfig:
    """Settings of `run_demo`: output folder, model, sizes, seed and which stages run."""

    out: str = "saliency-lab-demo"
    model: str | None = None  # default: the shipped checkpoint datasets/shapes/model
    quick: bool = False
    n_images: int = 60
    pope_images: int = 24
    seed: int = 7  # evaluation scenes (held out: training and its own evaluation use other streams)
    partner_absent_share: float = 0.6
    max_new_tokens: int | None = None  # default: the world's
    dtype: DType = "float32"
    n_samples: int | None = None  # text world: prompts (default: the world's; --quick fewer)
    locore_beta: float = 0.5
    interventions: bool = True
    report: bool = True
    retrain: bool = False
    retrain_steps: int | None = None  # default: the training script's default
    quiet_progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def sizes(self) -> tuple[int, int]:
        """(caption images, POPE images): (8, 4) with `quick`."""
        return (8, 4) if self.quick else (self.n_images, self.pope_images)


def _available(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return False
        raise
    return True


def _print_now(msg: str) -> None:
    print(msg, flush=True)  # progress lines must show up as they happen, also when stdout is a file


class _Log:
    def __init__(self, printer):
        self.printer = printer
        self.t0 = time.perf_counter()
        self.notes: list[str] = []

    def __call__(self, msg: str) -> None:
        self.printer(f"[{time.perf_counter() - self.t0:6.1f}s] {msg}")

    def skip(self, stage: str, why: str) -> None:
        note = f"skipped {stage}: {why}"
        self.notes.append(note)
        self(note)


class DemoWorld(Protocol):
    """What differs between the demo's worlds; everything else is the shared runner `run_demo`."""

    name: str
    title: str  # report title

    def answer_length(self, cfg: DemoConfig) -> int:
        """Default max_new_tokens of the answers (--max-new-tokens overrides it)."""
        ...

    def resolve_model(self, cfg: DemoConfig, log: _Log) -> str:
        """The --model value the captures load (folder, GGUF file or packaged short name)."""
        ...

    def prepare(self, cfg: DemoConfig, out: Path, summary: dict, log: _Log) -> Path:
        """Write the evaluation data under `out`; return the manifest of the answers to analyze."""
        ...

    def label(self, run_dir: Path, slot: dict) -> None:
        """Write CHAIR labels on `run_dir`; put the metrics into `slot["chair"]`."""
        ...

    def side_runs(self, cap: CaptureFn, summary: dict, log: _Log) -> None:
        """Extra captures beside the answers (the scene world's POPE questions); may do nothing."""
        ...

    def findings(self, run_dir: Path, score: str, summary: dict) -> None:
        """World-specific results of the greedy run, added to `summary`."""
        ...

    def format_findings(self, summary: dict) -> list[str]:
        """Printed lines for what `findings` added."""
        ...


class CaptureFn(Protocol):
    """How a world runs one capture: a manifest, a run id, optional decoding and saliency settings."""
    def __call__(self, manifest: Path, run_id: str, decoding: Any = None, saliency: Any = None) -> Any: ...


class SceneWorld:
    """The bundled scene world and its small trained LLaVA (docs/demo.md)."""

    name = "scenes"
    title = "saliency-lab demo: the scene world"

    def __init__(self) -> None:
        self.ws: Any = None

    def answer_length(self, cfg: DemoConfig) -> int:
        """32 tokens: a scene caption is short."""
        return 32

    def resolve_model(self, cfg: DemoConfig, log: _Log) -> str:
        """The shipped (or retrained, or given) scene-world LLaVA folder."""
        out = Path(cfg.out)
        if cfg.retrain:
            from saliency_lab.world.train import TrainConfig, train, train_recipe

            dest = out / "model"
            if cfg.retrain_steps:
                log(f"training the scene-world model from scratch ({cfg.retrain_steps} steps) into {dest} ...")
                train(TrainConfig(steps=cfg.retrain_steps), str(dest), log=log)
            else:
                log(f"retraining the scene-world model with the shipped recipe into {dest} (about 35 minutes on 2 cores) ...")
                train_recipe(str(dest), log=log)
            return str(dest)
        path = Path(cfg.model) if cfg.model else DEFAULT_MODEL
        if not (path / "config.json").is_file():
            raise SaliencyLabError(f"{path}: no model checkpoint there; pass --model DIR or --retrain to train one")
        return str(path)

    def prepare(self, cfg: DemoConfig, out: Path, summary: dict, log: _Log) -> Path:
        """Held-out scenes, their COCO-style ground truth and POPE questions under `out`."""
        from saliency_lab.world.dataset import build_world_set

        n_images, pope_images = cfg.sizes()
        ws = build_world_set(out / "data", n=n_images, seed=cfg.seed, partner_absent_share=cfg.partner_absent_share,
                             pope_images=pope_images, pope_per_image=1)
        log(f"scene world: {ws.n_images} images ({round(cfg.partner_absent_share * 100)}% with an anchor whose "
            f"usual partner is absent), {ws.n_questions} POPE questions -> {ws.root}")
        summary["files"]["data"] = str(ws.root)
        self.ws = ws
        return ws.caption_manifest

    def label(self, run_dir: Path, slot: dict) -> None:
        """CHAIR labels against the scenes' instances; metrics go into `slot`."""
        from saliency_lab.labels.label_run import label_chair

        info = label_chair(run_dir, instances=str(self.ws.instances), synonyms=str(self.ws.synonyms)).info
        slot["chair"] = info["metrics"]

    def side_runs(self, cap: CaptureFn, summary: dict, log: _Log) -> None:
        """The POPE capture and its labels."""
        from saliency_lab.config import DecodingConfig

        pope = cap(self.ws.pope_manifest, "pope", decoding=DecodingConfig(max_new_tokens=4))
        log(f"captured POPE answers: {pope.summary()}")
        summary["runs"]["pope"] = {"dir": str(pope.run_dir)}
        if _available("saliency_lab.labels.label_run"):
            from saliency_lab.labels.label_run import label_pope

            summary["runs"]["pope"]["pope"] = label_pope(pope.run_dir).info["metrics"]

    def findings(self, run_dir: Path, score: str, summary: dict) -> None:
        """Saliency split into partner words (the planted prior's pull) and other objects."""
        summary["saliency_by_kind"] = _partner_split(run_dir, score)

    def format_findings(self, summary: dict) -> list[str]:
        """The partner / other split as a printed line."""
        k = summary.get("saliency_by_kind")
        if not k:
            return []
        return [f"  by kind: partner words (the prior's pull) hallucinated {_f(k['partner_halluc_mean'])} "
                f"(n={k['partner_halluc_n']}) vs correct {_f(k['partner_correct_mean'])} "
                f"(n={k['partner_correct_n']}); other objects hallucinated {_f(k['other_halluc_mean'])} "
                f"(n={k['other_halluc_n']}) vs correct {_f(k['other_correct_mean'])} "
                f"(n={k['other_correct_n']})"]


def _load_once(model: str, dtype: DType, log: _Log):
    """Load the model once for every capture of the demo (a real model takes seconds to load)."""
    from transformers.utils import logging as hf_logging

    from saliency_lab.config import ModelConfig
    from saliency_lab.models.registry import load_model

    hf_logging.disable_progress_bar()
    t = time.perf_counter()
    bundle = load_model(ModelConfig(model, dtype=dtype))
    log(f"loaded {model} ({bundle.architecture}, {bundle.n_layers} layers, {dtype}) in "
        f"{time.perf_counter() - t:.1f} s")
    return bundle


def run_demo(cfg: DemoConfig, printer=None, world: DemoWorld | None = None) -> dict[str, Any]:
    """Run every stage in `world` (default: the scene world); returns (and writes to
    <out>/demo_summary.json) what was found."""
    import torch

    world = world or SceneWorld()
    t0 = time.perf_counter()
    log = _Log(printer or _print_now)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(configured_threads() or max(1, min(2, torch.get_num_threads())))
    summary: dict[str, Any] = {"config": asdict(cfg), "world": world.name, "runs": {}, "files": {}}
    model = world.resolve_model(cfg, log)
    summary["model"] = model
    max_new = cfg.max_new_tokens or world.answer_length(cfg)
    manifest = world.prepare(cfg, out, summary, log)

    if not _available("saliency_lab.run"):
        log.skip("capture and every later stage", "saliency_lab.run is not in this installation")
        return _finish(summary, log, out, t0)
    from saliency_lab.config import (
        CaptureConfig,
        DecodingConfig,
        LocoREConfig,
        ModelConfig,
        SaliencyConfig,
        SGRSConfig,
    )
    from saliency_lab.run import capture

    runs = out / "runs"
    _clear_runs(runs)
    bundle = _load_once(model, cfg.dtype, log)

    def cap(manifest: Path, run_id: str, decoding=None, saliency=None):
        cc = CaptureConfig(model=ModelConfig(model, dtype=cfg.dtype), data=str(manifest), out=str(runs),
                           run_id=run_id, decoding=decoding or DecodingConfig(max_new_tokens=max_new),
                           saliency=saliency or SaliencyConfig(), quiet=cfg.quiet_progress)
        return capture(cc, load_fn=lambda _: bundle)

    res = cap(manifest, "greedy", saliency=SaliencyConfig(candidates=5, rows="output"))
    log(f"captured greedy answers: {res.summary()}")
    caption_runs = {"greedy": res.run_dir}
    summary["runs"]["greedy"] = {"dir": str(res.run_dir)}
    world.side_runs(cap, summary, log)

    have_labels = _available("saliency_lab.labels.label_run")
    if have_labels:
        world.label(res.run_dir, summary["runs"]["greedy"])
        log("labelled the greedy run with CHAIR")
    else:
        log.skip("labels", "saliency_lab.labels is not in this installation")

    cal = None
    if have_labels and _available("saliency_lab.analysis"):
        cal = _analyze(res.run_dir, out, summary, log, world)
    else:
        log.skip("analysis and calibration", "saliency_lab.analysis (or labels) is not available")

    if cfg.interventions:
        sg = cal or {}
        # SGRS samples from the top-K, so its control is top-K sampling with the same K and seed (SGRS with
        # alpha = 0 reproduces it token for token), not greedy decoding
        inter = {
            "sample": DecodingConfig(max_new_tokens=max_new, strategy="sample", top_k=SGRSConfig().k),
            "sgrs": DecodingConfig(max_new_tokens=max_new, strategy="sgrs",
                                   sgrs=SGRSConfig(alpha=sg.get("alpha", 0.6), window=sg.get("window", 5),
                                                   layers=sg.get("layers"), score=sg.get("score", "out_mean"),
                                                   reject=sg.get("reject", "low"))),
            "locore": DecodingConfig(max_new_tokens=max_new, locore=LocoREConfig(beta=cfg.locore_beta)),
        }
        needs = {"sample": "saliency_lab.decoding.policies", "sgrs": "saliency_lab.decoding.sgrs",
                 "locore": "saliency_lab.decoding.locore"}
        for name, dec in inter.items():
            if not _available(needs[name]):
                log.skip(f"{name} capture", f"{needs[name]} is not in this installation")
                continue
            try:
                r = cap(manifest, name, decoding=dec)
                slot = {"dir": str(r.run_dir), "decoding": asdict(dec)}
                if have_labels:
                    world.label(r.run_dir, slot)
            except Exception as exc:  # an optional stage must not sink the demo; say what failed
                log.skip(f"{name} run", f"it failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
                continue
            log(f"captured with {name}: {r.summary()}")
            summary["runs"][name] = slot
            caption_runs[name] = r.run_dir

    if cfg.report and _available("saliency_lab.report"):
        from saliency_lab.report import ReportConfig, build_report

        # Side runs (the scene world's POPE answers) ride along for their accuracy per split in the summary;
        # their answers have no CHAIR labels.
        side = [Path(v["dir"]) for k, v in summary["runs"].items() if k not in caption_runs and "dir" in v]
        html = build_report([str(p) for p in [*caption_runs.values(), *side]], out / "report.html",
                            ReportConfig(labels="chair" if have_labels else None,
                                         calibration=str(out / "calibration") if cal else None,
                                         title=world.title))
        summary["files"]["report"] = str(html)
        log(f"report -> {html}")
    elif cfg.report:
        log.skip("report", "saliency_lab.report is not in this installation")
    return _finish(summary, log, out, t0)


def _clear_runs(runs: Path) -> None:
    """The demo's runs are rebuilt on every call (a capture refuses to overwrite a run without --resume)."""
    import shutil

    for name in ("greedy", "pope", "sample", "sgrs", "locore"):
        d = runs / name
        if d.is_dir() and (d / "run.json").exists():
            shutil.rmtree(d)


def _analyze(run_dir: Path, out: Path, summary: dict, log: _Log, world: DemoWorld) -> dict | None:
    """Analysis (every score, position-controlled), the detector and `calibrate --score auto`; returns the
    recommended SGRS setting (score, direction, alpha, W, layers) for the demo's SGRS run, or None (no setting
    beats chance: the SGRS run then uses the paper's defaults, out_mean rejecting low)."""
    from saliency_lab.analysis import (
        AnalysisConfig,
        CalibrationConfig,
        DetectorConfig,
        analyze,
        calibrate,
        train_detector,
    )

    m = summary["runs"]["greedy"].get("chair", {})
    if not m.get("n_hallucinated_mentions"):
        log.skip("analysis and calibration", "the greedy answers hold no hallucinated object mention")
        return None
    res = analyze([str(run_dir)], "chair", AnalysisConfig(score="all", n_bootstrap=200))
    res.write(out / "analysis")
    tests = next(iter(res.tests.values()))
    score = res.config.scores[0]
    st = tests.get(score, {}) if isinstance(tests, dict) else {}
    summary["saliency"] = {k: st.get(k) for k in ("n_correct", "n_halluc", "mean_correct", "mean_halluc",
                                                  "auroc", "auroc_ci", "cohen_d", "welch_p", "mannwhitney_p")}
    summary["saliency"]["score"] = score
    world.findings(run_dir, score, summary)
    rows = next(iter(res.separation.values()), [])
    summary["separation"] = [r.to_json() for r in rows]
    summary["files"]["analysis"] = str(out / "analysis")
    log(f"analysis -> {out / 'analysis'}")
    try:
        det = train_detector([str(run_dir)], "chair", DetectorConfig(n_bootstrap=200))
        det.write(out / "detector")
        summary["detector"] = {k: {"cv_auroc": v.cv_auroc, "cv_ci": list(v.cv_ci), "n_features": len(v.features)}
                               for k, v in det.feature_sets.items()}
        summary["files"]["detector"] = str(out / "detector" / "detector.json")
    except SaliencyLabError as exc:
        log.skip("detector", str(exc))
    try:
        cal = calibrate([str(run_dir)], "chair", CalibrationConfig(score="auto", n_bootstrap=200))
    except SaliencyLabError as exc:
        log.skip("calibration", str(exc))
        return None
    cal.write(out / "calibration")
    summary["calibration"] = {"recommended": cal.recommended, "reason": cal.reason, "score": cal.score,
                              "reject": cal.reject, "metrics": cal.recommended_metrics,
                              "within_budget": cal.within_budget, "n_settings": cal.grid.height}
    summary["files"]["calibration"] = str(out / "calibration" / "calibration.json")
    log(f"calibration -> {out / 'calibration'}")
    rec = cal.recommended
    if rec is None or rec["score"] not in SALIENCY_SCORES:
        return None  # no setting beats chance (or an attention score, which SGRS cannot use): paper defaults
    return {k: rec[k] for k in ("alpha", "window", "layers", "score", "reject")}


def _partner_split(run_dir: Path, score: str) -> dict:
    """Mean score of correct / hallucinated mentions of partner categories (the ones the world's prior pulls
    in) and of all other categories, from the `object_means` query; means weighted by mention counts."""
    from saliency_lab.store.catalog import open_catalog
    from saliency_lab.world.scenes import ANCHOR_OF_PARTNER

    with open_catalog([str(run_dir)]) as cat:
        rows = cat.query("object_means", {}).to_dicts()
    col = f"{score}_mean" if rows and f"{score}_mean" in rows[0] else "out_mean_mean"
    split: dict = {}
    for kind in ("partner", "other"):
        for label, name in ((1, "halluc"), (0, "correct")):
            sel = [r for r in rows if r["label"] == label and (r["object"] in ANCHOR_OF_PARTNER) == (kind == "partner")
                   and r[col] is not None]
            n = sum(r["n"] for r in sel)
            split[f"{kind}_{name}_n"] = n
            split[f"{kind}_{name}_mean"] = sum(r[col] * r["n"] for r in sel) / n if n else None
    return split


def _finish(summary: dict, log: _Log, out: Path, t0: float) -> dict:
    summary["notes"] = log.notes
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    path = out / "demo_summary.json"
    from saliency_lab.analysis.results import jsonable

    path.write_text(json.dumps(jsonable(summary), indent=1) + "\n")
    summary["files"]["summary"] = str(path)
    return summary


def format_findings(summary: dict, world: DemoWorld | None = None) -> list[str]:
    """The lines the CLI prints at the end (`world`: the world that ran, for its own lines; default scene)."""
    world = world or SceneWorld()
    lines = []
    for name, r in summary.get("runs", {}).items():
        c = r.get("chair")
        if c:
            lines.append(f"{name:>7}: CHAIR_s {c['chair_s']:.3f}  CHAIR_i {c['chair_i']:.3f}  recall "
                         f"{c['recall']:.3f}  ({c['n_hallucinated_mentions']} hallucinated of "
                         f"{c['n_mentions']} object mentions, {c['n_captions']} captions)")
        p = r.get("pope")
        if p:
            accs = "  ".join(f"{s} acc {m['accuracy']:.3f} (yes-ratio {m['yes_ratio']:.2f})" for s, m in p.items())
            lines.append(f"   POPE: {accs}")
    s = summary.get("saliency")
    if s and s.get("mean_correct") is not None:
        lines.append(f"saliency ({s['score']}, upper-half layers): hallucinated object tokens mean "
                     f"{_f(s['mean_halluc'])} (n={s['n_halluc']}) vs correct {_f(s['mean_correct'])} "
                     f"(n={s['n_correct']}); AUROC(low score flags hallucination) {_f(s['auroc'])}")
    lines += world.format_findings(summary)
    lines += _score_findings(summary)
    for note in summary.get("notes", []):
        lines.append(f"note: {note}")
    return lines


#: Fewest hallucinated tokens for which the demo names a best score by its step-controlled AUROC.
MIN_HALLUCINATED = 10


def _score_findings(summary: dict) -> list[str]:
    """Best score (by distance of its step-controlled AUROC from 0.5), detector per feature set, calibration."""
    lines = []
    rows = [r for r in summary.get("separation") or [] if r["score"] != "step" and r["controlled_auroc"] is not None]
    rows = [r for r in rows if r["controlled_auroc"] == r["controlled_auroc"]]  # drop NaN
    n_pos = max((int(r.get("n_pos") or 0) for r in rows), default=0)
    if rows and n_pos < MIN_HALLUCINATED:
        # With a handful of hallucinated tokens, few pairs share a step: the controlled AUROC of the "best" score
        # would be a degenerate extreme (0 or 1 from one or two pairs), so none is named.
        lines.append(f"best score: none named: only {n_pos} hallucinated token(s), fewer than {MIN_HALLUCINATED} "
                     "needed for a position-controlled comparison; rerun with more samples (--n-samples / --n-images)")
        rows = []
    if rows:
        b = max(rows, key=lambda r: abs(r["controlled_auroc"] - 0.5))
        c, p = b["controlled_ci"], b["pooled_ci"]
        lines.append(f"best score: {b['score']}, step-controlled AUROC {_f(b['controlled_auroc'])} "
                     f"[{_f(c[0])}, {_f(c[1])}] (pooled {_f(b['pooled_auroc'])} [{_f(p[0])}, {_f(p[1])}]; step "
                     f"alone {_f(b['step_auroc'])}; AUROC = P(hallucinated scores lower))")
        n_warn = sum(len(r["warnings"]) for r in summary["separation"])
        if n_warn:
            lines.append(f"  {n_warn} position warning(s); see analysis/analysis.json (warnings)")
    det = summary.get("detector")
    if det:
        lines.append("detector CV AUROC: " + "  ".join(
            f"{k} {_f(v['cv_auroc'])} [{_f(v['cv_ci'][0])}, {_f(v['cv_ci'][1])}]" for k, v in det.items()))
    cal = summary.get("calibration")
    if cal:
        rec = cal.get("recommended")
        if rec:
            lines.append(f"SGRS calibration (auto, {cal.get('n_settings')} settings): {rec['score']} reject "
                         f"{rec['reject']}, alpha {rec['alpha']}, W {rec['window']}, layers {rec['layers']} (recall "
                         f"{_f(cal['metrics'].get('recall'))}, false rejections "
                         f"{_f(cal['metrics'].get('false_rejection_rate'))})")
        else:
            why = (cal.get("reason") or "").split(":")[0]
            lines.append(f"SGRS calibration (auto, {cal.get('n_settings')} settings): no recommendation ({why}); "
                         "the SGRS run uses the paper's defaults")
    return lines


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"
