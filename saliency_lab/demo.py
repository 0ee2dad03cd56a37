"""`saliency-lab demo`: the whole pipeline on the bundled scene world and its small trained LLaVA, on CPU,
with nothing downloaded.

Stages: build a held-out evaluation set of the world (COCO JSON, synonyms, POPE files, manifests) -> capture
greedy captions and POPE answers with saliency -> label with CHAIR and POPE -> analyze (saliency of
hallucinated vs correct object tokens) -> calibrate SGRS -> capture again with SGRS (calibrated) and LocoRE ->
one HTML report. A stage whose module is missing from the installation is skipped with a printed note.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from saliency_lab.errors import SaliencyLabError
from saliency_lab.threads import configured_threads

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "datasets" / "shapes" / "model"


@dataclass
class DemoConfig:
    out: str = "saliency-lab-demo"
    model: str | None = None  # default: the shipped checkpoint datasets/shapes/model
    quick: bool = False
    n_images: int = 60
    pope_images: int = 24
    seed: int = 7  # evaluation scenes (held out: training and its own evaluation use other streams)
    partner_absent_share: float = 0.6
    max_new_tokens: int = 32
    locore_beta: float = 0.5
    interventions: bool = True
    report: bool = True
    retrain: bool = False
    retrain_steps: int | None = None  # default: the training script's default
    quiet_progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def sizes(self) -> tuple[int, int]:
        return (8, 4) if self.quick else (self.n_images, self.pope_images)


def _available(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return False
        raise
    return True


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


def resolve_model(cfg: DemoConfig, log: _Log) -> Path:
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
        return dest
    path = Path(cfg.model) if cfg.model else DEFAULT_MODEL
    if not (path / "config.json").is_file():
        raise SaliencyLabError(f"{path}: no model checkpoint there; pass --model DIR or --retrain to train one")
    return path


def _capture(model: Path, manifest: Path, runs: Path, run_id: str, cfg: DemoConfig, decoding=None,
             saliency=None):
    from saliency_lab.config import CaptureConfig, DecodingConfig, ModelConfig, SaliencyConfig
    from saliency_lab.run import capture

    dec = decoding or DecodingConfig(max_new_tokens=cfg.max_new_tokens)
    cc = CaptureConfig(model=ModelConfig(str(model)), data=str(manifest), out=str(runs), run_id=run_id,
                       decoding=dec, saliency=saliency or SaliencyConfig(), quiet=cfg.quiet_progress)
    return capture(cc)


def run_demo(cfg: DemoConfig, printer=print) -> dict[str, Any]:
    """Run every stage; returns (and writes to <out>/demo_summary.json) what was found."""
    import torch

    from saliency_lab.world.dataset import build_world_set

    t0 = time.perf_counter()
    log = _Log(printer)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(configured_threads() or max(1, min(2, torch.get_num_threads())))
    summary: dict[str, Any] = {"config": asdict(cfg), "runs": {}, "files": {}}
    model = resolve_model(cfg, log)
    summary["model"] = str(model)

    n_images, pope_images = cfg.sizes()
    ws = build_world_set(out / "data", n=n_images, seed=cfg.seed, partner_absent_share=cfg.partner_absent_share,
                         pope_images=pope_images, pope_per_image=1)
    log(f"scene world: {ws.n_images} images ({round(cfg.partner_absent_share * 100)}% with an anchor whose "
        f"usual partner is absent), {ws.n_questions} POPE questions -> {ws.root}")
    summary["files"]["data"] = str(ws.root)

    if not _available("saliency_lab.run"):
        log.skip("capture and every later stage", "saliency_lab.run is not in this installation")
        return _finish(summary, log, out, t0)
    from saliency_lab.config import DecodingConfig, LocoREConfig, SaliencyConfig, SGRSConfig

    runs = out / "runs"
    _clear_runs(runs)
    cap_sal = SaliencyConfig(candidates=5, rows="output")
    res = _capture(model, ws.caption_manifest, runs, "greedy", cfg, saliency=cap_sal)
    log(f"captured captions: {res.summary()}")
    pope = _capture(model, ws.pope_manifest, runs, "pope", cfg,
                    decoding=DecodingConfig(max_new_tokens=4))
    log(f"captured POPE answers: {pope.summary()}")
    caption_runs = {"greedy": res.run_dir}
    summary["runs"]["greedy"] = {"dir": str(res.run_dir)}
    summary["runs"]["pope"] = {"dir": str(pope.run_dir)}

    have_labels = _available("saliency_lab.labels.label_run")
    if have_labels:
        _label_chair(res.run_dir, ws, summary["runs"]["greedy"])
        from saliency_lab.labels.label_run import label_pope

        summary["runs"]["pope"]["pope"] = label_pope(pope.run_dir).info["metrics"]
    else:
        log.skip("labels", "saliency_lab.labels is not in this installation")

    cal = None
    if have_labels and _available("saliency_lab.analysis"):
        cal = _analyze(res.run_dir, out, summary, log)
    else:
        log.skip("analysis and calibration", "saliency_lab.analysis (or labels) is not available")

    if cfg.interventions:
        sg = cal or {}
        # SGRS samples from the top-K, so its control is top-K sampling with the same K and seed (SGRS with
        # alpha = 0 reproduces it token for token), not greedy decoding
        inter = {
            "sample": DecodingConfig(max_new_tokens=cfg.max_new_tokens, strategy="sample",
                                     top_k=SGRSConfig().k),
            "sgrs": DecodingConfig(max_new_tokens=cfg.max_new_tokens, strategy="sgrs",
                                   sgrs=SGRSConfig(alpha=sg.get("alpha", 0.6), window=sg.get("window", 5),
                                                   layers=sg.get("layers"))),
            "locore": DecodingConfig(max_new_tokens=cfg.max_new_tokens,
                                     locore=LocoREConfig(beta=cfg.locore_beta)),
        }
        needs = {"sample": "saliency_lab.decoding.loop", "sgrs": "saliency_lab.decoding.sgrs",
                 "locore": "saliency_lab.decoding.locore"}
        for name, dec in inter.items():
            if not _available(needs[name]):
                log.skip(f"{name} capture", f"{needs[name]} is not in this installation")
                continue
            try:
                r = _capture(model, ws.caption_manifest, runs, name, cfg, decoding=dec)
                slot = {"dir": str(r.run_dir), "decoding": asdict(dec)}
                if have_labels:
                    _label_chair(r.run_dir, ws, slot)
            except Exception as exc:  # an optional stage must not sink the demo; say what failed
                log.skip(f"{name} run", f"it failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
                continue
            log(f"captured with {name}: {r.summary()}")
            summary["runs"][name] = slot
            caption_runs[name] = r.run_dir

    if cfg.report and _available("saliency_lab.report"):
        from saliency_lab.report import ReportConfig, build_report

        html = build_report([str(p) for p in caption_runs.values()], out / "report.html",
                            ReportConfig(labels="chair" if have_labels else None,
                                         calibration=str(out / "calibration") if cal else None,
                                         title="saliency-lab demo: the scene world"))
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


def _label_chair(run_dir: Path, ws, slot: dict) -> None:
    from saliency_lab.labels.label_run import label_chair

    info = label_chair(run_dir, instances=str(ws.instances), synonyms=str(ws.synonyms)).info
    slot["chair"] = info["metrics"]


def _analyze(run_dir: Path, out: Path, summary: dict, log: _Log) -> dict | None:
    from saliency_lab.analysis import AnalysisConfig, CalibrationConfig, analyze, calibrate

    m = summary["runs"]["greedy"].get("chair", {})
    if not m.get("n_hallucinated_mentions"):
        log.skip("analysis and calibration", "the greedy captions hold no hallucinated object mention")
        return None
    res = analyze([str(run_dir)], "chair", AnalysisConfig(n_bootstrap=200))
    res.write(out / "analysis")
    tests = next(iter(res.tests.values()))
    score = res.config.score
    st = tests.get(score, {}) if isinstance(tests, dict) else {}
    summary["saliency"] = {k: st.get(k) for k in ("n_correct", "n_halluc", "mean_correct", "mean_halluc",
                                                  "auroc", "auroc_ci", "cohen_d", "welch_p", "mannwhitney_p")}
    summary["saliency"]["score"] = score
    summary["saliency_by_kind"] = _partner_split(run_dir, score)
    summary["files"]["analysis"] = str(out / "analysis")
    try:
        cal = calibrate([str(run_dir)], "chair", CalibrationConfig())
    except SaliencyLabError as exc:
        log.skip("calibration", str(exc))
        return None
    cal.write(out / "calibration")
    summary["calibration"] = {"recommended": cal.recommended, "metrics": cal.recommended_metrics,
                              "within_budget": cal.within_budget}
    summary["files"]["calibration"] = str(out / "calibration" / "calibration.json")
    return cal.recommended


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


def format_findings(summary: dict) -> list[str]:
    """The lines the CLI prints at the end."""
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
    k = summary.get("saliency_by_kind")
    if k:
        lines.append(f"  by kind: partner words (the prior's pull) hallucinated {_f(k['partner_halluc_mean'])} "
                     f"(n={k['partner_halluc_n']}) vs correct {_f(k['partner_correct_mean'])} "
                     f"(n={k['partner_correct_n']}); other objects hallucinated {_f(k['other_halluc_mean'])} "
                     f"(n={k['other_halluc_n']}) vs correct {_f(k['other_correct_mean'])} "
                     f"(n={k['other_correct_n']})")
    cal = summary.get("calibration")
    if cal:
        rec = cal["recommended"]
        lines.append(f"SGRS calibration: alpha {rec['alpha']}, W {rec['window']}, layers {rec['layers']} "
                     f"(recall {_f(cal['metrics'].get('recall'))}, false rejections "
                     f"{_f(cal['metrics'].get('false_rejection_rate'))})")
    for note in summary.get("notes", []):
        lines.append(f"note: {note}")
    return lines


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"
