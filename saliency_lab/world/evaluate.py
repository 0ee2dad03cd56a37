"""Held-out evaluation of a world checkpoint: greedy captions scored with the project's CHAIR (the world's
synonym table), prior-driven hallucination statistics on partner-absent scenes, and POPE accuracy.

`python -m saliency_lab.world.evaluate --model DIR` prints the metrics as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

import torch
from PIL import Image

from saliency_lab.errors import SaliencyLabError
from saliency_lab.labels.chair import ChairExtractor, chair_metrics, score_caption
from saliency_lab.labels.pope import parse_answer, pope_metrics_by_split
from saliency_lab.labels.synonyms import SynonymTable, parse_synonyms
from saliency_lab.world.captions import CAPTION_PROMPT
from saliency_lab.world.pope import build_questions
from saliency_lab.world.render import render
from saliency_lab.world.scenes import CATEGORIES, PAIRS, Scene, WorldConfig, eval_scenes
from saliency_lab.world.tokenizer import synonyms_text


def world_synonyms() -> SynonymTable:
    """The CHAIR synonym table of the scene world."""
    return parse_synonyms(synonyms_text(), "builtin:shapes-world")


def load_checkpoint(model_dir: str, flag: str = "--model") -> tuple[Any, Any]:
    """The model and processor saved in the local folder `model_dir` (never downloads)."""
    from transformers import AutoProcessor

    from saliency_lab.world.model import load_world_model

    model = load_world_model(model_dir, flag)
    processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    model.eval()
    return model, processor


@torch.no_grad()
def generate(model, processor, images: list[Image.Image], prompts: list[str], max_new_tokens: int = 40,
             batch_size: int = 32) -> list[str]:
    """Greedy answers, batched with left padding."""
    outs: list[str] = []
    tok = processor.tokenizer
    tok.padding_side = "left"
    for i in range(0, len(images), batch_size):
        texts = [processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}],
            add_generation_prompt=True) for p in prompts[i:i + batch_size]]
        enc = processor(images=images[i:i + batch_size], text=texts, padding=True, return_tensors="pt")
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
        outs += processor.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return [o.strip() for o in outs]


def prior_statistics(scenes: list[Scene], results) -> dict:
    """How often an absent partner is named next to its anchor, against any other absent category."""
    n_pa = hits = 0
    other_named = other_slots = 0
    partner_mentions: Counter[str] = Counter()
    hal_total = hal_partner = 0
    for scene, res in zip(scenes, results, strict=True):
        present = set(scene.categories())
        absent_partners = {PAIRS[a] for a in present if a in PAIRS and PAIRS[a] not in present}
        named = set(res.generated)
        for m in res.mentions:
            if m.hallucinated:
                hal_total += 1
                hal_partner += m.category in absent_partners
        if scene.kind == "partner_absent":
            n_pa += 1
            partner = scene.meta["absent_partner"]
            hits += partner in named
            partner_mentions[partner] += partner in named
            absent_others = [c for c in CATEGORIES if c not in present and c != partner]
            other_slots += len(absent_others)
            other_named += sum(c in named for c in absent_others)
    rate_partner = hits / n_pa if n_pa else 0.0
    rate_other = other_named / other_slots if other_slots else 0.0
    return {
        "partner_absent_scenes": n_pa,
        "absent_partner_named_rate": rate_partner,
        "other_absent_category_named_rate": rate_other,
        "partner_vs_other_ratio": (rate_partner / rate_other) if rate_other else None,
        "hallucinated_mentions": hal_total,
        "hallucinated_mentions_absent_partner": hal_partner,
        "prior_driven_share": hal_partner / hal_total if hal_total else None,
    }


def evaluate_checkpoint(model_dir: str, world: WorldConfig | None = None, seed: int = 1000, n: int = 300,
                        partner_absent_share: float = 0.6, pope_images: int = 100, model_and_processor=None,
                        ) -> dict:
    """Held-out CHAIR, prior statistics and POPE of a local checkpoint folder (or of a loaded
    `model_and_processor`)."""
    world = world or WorldConfig()
    model, processor = model_and_processor or load_checkpoint(model_dir)
    scenes = eval_scenes(world, seed, n, partner_absent_share)
    images = [render(s, world)[0] for s in scenes]
    captions = generate(model, processor, images, [CAPTION_PROMPT] * len(images))
    table = world_synonyms()
    extractor = ChairExtractor(table)
    gt = {str(i): set(s.categories()) for i, s in enumerate(scenes)}
    results = [score_caption(extractor, str(i), i, c, gt, "eval scenes") for i, c in enumerate(captions)]
    metrics = {"n_scenes": n, "seed": seed, "partner_absent_share": partner_absent_share,
               "chair": chair_metrics(results)}
    for kind in ("partner_absent", "normal"):
        sub = [r for r, s in zip(results, scenes, strict=True) if s.kind == kind]
        if sub:
            metrics[f"chair_{kind}"] = chair_metrics(sub)
    metrics["exact_caption_rate"] = sum(
        c == ref for c, ref in zip(captions, [_ref(s) for s in scenes], strict=True)) / len(scenes)
    metrics["prior"] = prior_statistics(scenes, results)
    # POPE on the first `pope_images` scenes (both kinds), three splits
    k = min(pope_images, len(scenes))
    names = [str(i) for i in range(k)]
    qs = build_questions(scenes[:k], names, world, seed)
    answers = generate(model, processor, [images[int(q["image"])] for q in qs], [q["text"] for q in qs],
                       max_new_tokens=4, batch_size=64)
    parsed = [(q["split"], parse_answer(a), q["label"]) for q, a in zip(qs, answers, strict=True)]
    metrics["pope"] = pope_metrics_by_split(parsed)
    # the trap scenes separately: there the popular / adversarial negatives are mostly the absent partner
    kinds = [scenes[int(q["image"])].kind for q in qs]
    metrics["pope_by_kind"] = {
        kind: pope_metrics_by_split(row for row, k in zip(parsed, kinds, strict=True) if k == kind)
        for kind in sorted(set(kinds))}
    metrics["examples"] = [{"kind": s.kind, "truth": _ref(s), "caption": c}
                           for s, c in list(zip(scenes, captions, strict=True))[:12]]
    return metrics


def _ref(scene: Scene) -> str:
    from saliency_lab.world.captions import caption

    # the decoded form of the reference caption (the tokenizer removes spaces before punctuation)
    return caption(scene).replace(" ,", ",").replace(" .", ".")


def main(argv: list[str] | None = None) -> int:
    """`python -m saliency_lab.world.evaluate --model DIR`: print (or write) the metrics as JSON."""
    ap = argparse.ArgumentParser(description="Evaluate a scene-world checkpoint (CHAIR, prior statistics, POPE).")
    ap.add_argument("--model", required=True)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--out", help="write the metrics JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    try:
        m = evaluate_checkpoint(args.model, seed=args.seed, n=args.n)
    except SaliencyLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(m, indent=1)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
