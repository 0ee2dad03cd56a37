"""Train the world's small LLaVA from scratch on CPU: `python -m saliency_lab.world.train --out DIR`.

Fresh scenes every step (a pure function of seed and step), a mix of caption, POPE-style yes/no and
"Describe the X." examples, loss on the answer + EOS only plus an auxiliary per-cell shape loss on the vision
tower (`cellhead.py`), AdamW with warm-up and cosine decay over a fixed number of steps, so a run is
reproducible for a given (seed, steps, batch size, thread count). Periodic checkpoints go to DIR; the final
model, processor, held-out metrics and the training log are written there at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import torch

from saliency_lab.errors import SaliencyLabError
from saliency_lab.world.captions import CAPTION_PROMPT, answer, caption, find_example, question
from saliency_lab.world.cellhead import CellHead, VisionTap, cell_targets
from saliency_lab.world.model import (
    ModelSpec,
    build_model,
    build_processor,
    load_world_model,
    local_checkpoint,
    pixel_values,
)
from saliency_lab.world.render import render
from saliency_lab.world.scenes import CATEGORIES, WorldConfig, sample_scene, scene_rng
from saliency_lab.world.tokenizer import build_tokenizer, synonyms_text


@dataclass
class TrainConfig:
    """Settings of one training stage of the world model."""

    seed: int = 0
    steps: int = 4000
    batch_size: int = 40
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup: int = 100
    weight_decay: float = 0.01
    question_share: float = 0.3  # share of POPE-style yes/no examples
    find_share: float = 0.25  # share of "Describe the X." -> "a <colour> X ." / "no ." examples (see below)
    cell_loss_weight: float = 1.0  # auxiliary per-cell shape loss on the vision tower (0 = captioning only)
    threads: int = 2
    log_every: int = 25
    checkpoint_every: int = 100
    eval_scenes: int = 300
    stop_after: int | None = None  # stop (and save) after this many steps of the `steps`-long schedule
    init: str | None = None  # start from this checkpoint's weights instead of a fresh initialisation
    step_offset: int = 0  # data stream position: step k draws the scenes of step step_offset + k
    world: WorldConfig = field(default_factory=WorldConfig)
    model: ModelSpec = field(default_factory=ModelSpec)


class ExampleEncoder:
    """Token ids of (prompt, answer) pairs exactly as the chat template + processor produce them."""

    def __init__(self, processor):
        self.processor = processor
        self.tok = processor.tokenizer
        self._prefix: dict[str, list[int]] = {}

    def prefix(self, prompt: str) -> list[int]:
        """Token ids of the chat-templated prompt with the image placeholder expanded to the patch tokens
        (cached)."""
        if prompt not in self._prefix:
            msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            text = self.processor.apply_chat_template(msgs, add_generation_prompt=True)
            n_img = self.processor.image_processor.crop_size["height"] // self.processor.patch_size
            text = text.replace(self.processor.image_token, self.processor.image_token * n_img * n_img)
            self._prefix[prompt] = self.tok(text).input_ids
        return self._prefix[prompt]

    def encode(self, prompt: str, target: str) -> tuple[list[int], list[int]]:
        """(ids, labels) of prompt + target + EOS; prompt positions labelled -100 (no loss)."""
        pre = self.prefix(prompt)
        ans = self.tok(target, add_special_tokens=False).input_ids + [self.tok.eos_token_id]
        return pre + ans, [-100] * len(pre) + ans


def make_batch(cfg: TrainConfig, step: int, enc: ExampleEncoder, processor):
    """The training batch of `step` (seeded by step, so a resumed stage sees the same data)."""
    rng = scene_rng(cfg.seed, step, stream=2)
    images, seqs, scenes = [], [], []
    for _ in range(cfg.batch_size):
        scene = sample_scene(cfg.world, rng)
        scenes.append(scene)
        img, _ = render(scene, cfg.world)
        images.append(img)
        r = rng.random()
        if r < cfg.question_share + cfg.find_share:
            present = scene.categories()
            if rng.random() < 0.5:
                cat, yes = present[int(rng.integers(len(present)))], True
            else:
                absent = [c for c in CATEGORIES if c not in present]
                cat, yes = absent[int(rng.integers(len(absent)))], False
            if r < cfg.question_share:
                seqs.append(enc.encode(question(cat), answer(yes)))
            else:
                seqs.append(enc.encode(*find_example(scene, cat, yes)))
        else:
            seqs.append(enc.encode(CAPTION_PROMPT, caption(scene)))
    width = max(len(ids) for ids, _ in seqs)
    pad = enc.tok.pad_token_id
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (x, y) in enumerate(seqs):  # right padding: positions stay 0..n-1 for every real token
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return ids, mask, labels, pixel_values(images, processor), cell_targets(scenes)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate at `step`: linear warm-up, then cosine decay to min_lr_ratio x lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def save(model, processor, out: str, extra: dict | None = None) -> None:
    """Save model, processor and optional world.json to `out`."""
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if extra:
        with open(os.path.join(out, "world.json"), "w") as fh:
            json.dump(extra, fh, indent=1)


def train(cfg: TrainConfig, out: str, log=print) -> dict:
    """Train one stage and save the checkpoint to `out`; returns its metadata."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    tok = build_tokenizer()
    processor = build_processor(tok, cfg.model)
    model = build_model(tok, cfg.model, cfg.seed)
    if cfg.init:
        start = load_world_model(cfg.init, "--init")
        model.load_state_dict(start.state_dict(), strict=True)
        del start
    model.train()
    torch.manual_seed(cfg.seed + 1)
    head = CellHead(cfg.model.vision_width)
    tap = VisionTap(model.model.vision_tower)
    params = list(model.named_parameters()) + list(head.named_parameters())
    decay = [p for n, p in params if p.ndim >= 2]
    no_decay = [p for n, p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.98),
    )
    enc = ExampleEncoder(processor)
    n_params = sum(p.numel() for p in model.parameters())
    meta = {"train_config": asdict(cfg), "n_params": n_params}
    os.makedirs(out, exist_ok=True)
    log_path = os.path.join(out, "train_log.jsonl")
    logf = open(log_path, "w")
    t0 = time.time()
    ema = None
    last = cfg.steps if cfg.stop_after is None else min(cfg.steps, cfg.stop_after)
    for step in range(last):
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        ids, mask, labels, pix, cells = make_batch(cfg, cfg.step_offset + step, enc, processor)
        loss = model(input_ids=ids, attention_mask=mask, pixel_values=pix, labels=labels).loss
        cell_loss = torch.nn.functional.cross_entropy(head(tap.patches).flatten(0, 1), cells.flatten())
        total = loss + cfg.cell_loss_weight * cell_loss if cfg.cell_loss_weight else loss
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % cfg.log_every == 0 or step == last - 1:
            rec = {"step": step, "loss": round(loss.item(), 5), "loss_ema": round(ema, 5),
                   "cell_loss": round(cell_loss.item(), 5),
                   "lr": lr_at(cfg, step), "elapsed_s": round(time.time() - t0, 1)}
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log(f"step {step:5d}  loss {loss.item():.4f}  ema {ema:.4f}  cells {cell_loss.item():.4f}  "
                f"{rec['elapsed_s']:7.1f}s")
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < last:
            save(model, processor, os.path.join(out, "checkpoint"), {**meta, "step": step + 1})
    logf.close()
    tap.remove()
    train_s = time.time() - t0
    model.eval()
    meta.update({"steps": last, "train_seconds": round(train_s, 1), "final_loss_ema": ema})
    save(model, processor, out, meta)
    with open(os.path.join(out, "synonyms.txt"), "w") as fh:
        fh.write(synonyms_text())
    return meta


# The recipe of the shipped checkpoint: one 4000-step cosine schedule at 1e-3 from scratch, 45% captions,
# 30% POPE-style yes/no and 25% "Describe the X." examples, with the auxiliary cell loss (about 34 minutes on
# 2 cores). Without the cell loss the world sits on the loss plateau of STACK-NOTES (colours and counts, no
# shapes) for well over 1,600 steps; with it the plateau ends near step 800. Without the "Describe the X."
# examples the yes/no answers stayed independent of the image for 6,000 steps (p(yes) equal to 5 decimals
# for present and absent objects); with them POPE accuracy rises from step ~500 on.
SHIPPED_RECIPE: tuple[dict, ...] = (
    {"steps": 4000, "lr": 1e-3, "question_share": 0.3, "find_share": 0.25},
)


def train_recipe(out: str, recipe: tuple[dict, ...] = SHIPPED_RECIPE, log=print, seed: int = 0,
                 threads: int = 2, **overrides) -> dict:
    """Run the stages of `recipe` one after the other (each starts from the previous stage's weights);
    the final model is written to `out`, intermediate stages to `out/stage<k>`."""
    prev, total, meta = None, 0.0, {}
    for k, stage in enumerate(recipe, start=1):
        dest = out if k == len(recipe) else os.path.join(out, f"stage{k}")
        cfg = TrainConfig(seed=seed, threads=threads, init=prev, **{**overrides, **stage})
        log(f"stage {k}/{len(recipe)}: {stage}")
        meta = train(cfg, dest, log=log)
        total += meta["train_seconds"]
        prev = dest
    meta["recipe"] = list(recipe)
    meta["train_seconds_total"] = round(total, 1)
    with open(os.path.join(out, "world.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    return meta


def main(argv: list[str] | None = None) -> int:
    """`python -m saliency_lab.world.train --out DIR`: train the world model (the shipped recipe by default)."""
    ap = argparse.ArgumentParser(description="Train the scene world's small LLaVA from scratch on CPU. Without "
                                 "--single it runs the recipe of the shipped checkpoint (SHIPPED_RECIPE).")
    ap.add_argument("--out", required=True, help="output folder for the checkpoint and logs")
    ap.add_argument("--single", action="store_true", help="one stage with the options below instead")
    ap.add_argument("--steps", type=int, default=TrainConfig.steps)
    ap.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    ap.add_argument("--seed", type=int, default=TrainConfig.seed)
    ap.add_argument("--threads", type=int, default=TrainConfig.threads)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument("--warmup", type=int, default=TrainConfig.warmup)
    ap.add_argument("--question-share", type=float, default=TrainConfig.question_share,
                    help="share of POPE-style yes/no examples")
    ap.add_argument("--find-share", type=float, default=TrainConfig.find_share,
                    help="share of 'Describe the X.' examples (the rest are captions)")
    ap.add_argument("--cell-loss-weight", type=float, default=TrainConfig.cell_loss_weight,
                    help="weight of the auxiliary per-cell shape loss (0 = captioning only)")
    ap.add_argument("--stop-after", type=int, default=None, help="stop after N steps of the schedule")
    ap.add_argument("--init", default=None, help="start from this checkpoint's weights")
    ap.add_argument("--step-offset", type=int, default=0, help="data stream position of step 0")
    ap.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation at the end")
    args = ap.parse_args(argv)
    if args.init is not None:
        try:  # before any training: a wrong path is a one-line error, never a hub lookup
            local_checkpoint(args.init, "--init")
        except SaliencyLabError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.single:
        cfg = TrainConfig(seed=args.seed, steps=args.steps, batch_size=args.batch_size, threads=args.threads,
                          lr=args.lr, warmup=args.warmup, stop_after=args.stop_after, init=args.init,
                          step_offset=args.step_offset, cell_loss_weight=args.cell_loss_weight,
                          question_share=args.question_share, find_share=args.find_share)
        meta = train(cfg, args.out)
        seconds = meta["train_seconds"]
    else:
        meta = train_recipe(args.out, seed=args.seed, threads=args.threads)
        seconds = meta["train_seconds_total"]
    print(f"trained in {seconds:.0f}s; model in {args.out}")
    if not args.no_eval:
        write_metrics(args.out, seconds, meta["n_params"], seed=args.seed)
    return 0


def write_metrics(model_dir: str, train_seconds: float, n_params: int, seed: int = 0) -> dict:
    """Evaluate a trained checkpoint and write metrics.json next to it."""
    from saliency_lab.world.evaluate import evaluate_checkpoint

    cfg = TrainConfig()
    metrics = evaluate_checkpoint(model_dir, cfg.world, seed=seed + 1000, n=cfg.eval_scenes)
    metrics.update({"train_seconds": train_seconds, "n_params": n_params})
    with open(os.path.join(model_dir, "metrics.json"), "w") as fh:
        json.dump(metrics, fh, indent=1)
    print(json.dumps({k: v for k, v in metrics.items() if k != "examples"}, indent=1))
    return metrics


if __name__ == "__main__":
    raise SystemExit(main())
