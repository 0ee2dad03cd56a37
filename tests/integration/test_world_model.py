"""The shipped scene-world checkpoint loads through the standard transformers flow and describes a scene;
the training script is reproducible for a fixed seed and step count."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoProcessor, LlavaForConditionalGeneration

from saliency_lab.labels.chair import ChairExtractor
from saliency_lab.world.captions import CAPTION_PROMPT
from saliency_lab.world.evaluate import generate, world_synonyms
from saliency_lab.world.model import ModelSpec
from saliency_lab.world.render import render
from saliency_lab.world.scenes import COLOURS, WorldConfig, eval_scenes
from saliency_lab.world.train import TrainConfig, train, train_recipe

MODEL = Path(__file__).resolve().parents[2] / "datasets" / "shapes" / "model"


def test_shipped_checkpoint_is_small_and_complete():
    files = {p.name for p in MODEL.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= files
    total = sum(p.stat().st_size for p in MODEL.iterdir() if p.is_file())
    assert total < 20 * 2**20


@pytest.fixture(scope="module")
def shipped():
    """(model, processor) of the shipped checkpoint, loaded once with the standard classes."""
    return LlavaForConditionalGeneration.from_pretrained(MODEL).eval(), AutoProcessor.from_pretrained(MODEL)


def test_shipped_checkpoint_describes_scenes_with_the_standard_flow(shipped):
    model, processor = shipped
    world = WorldConfig()
    extractor = ChairExtractor(world_synonyms())
    scenes = eval_scenes(world, seed=99, n=24, partner_absent_share=0.0)
    images = [render(s, world)[0] for s in scenes]
    # the standard single-image flow, as the LLaVA adapter uses it
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": CAPTION_PROMPT}]}],
        add_generation_prompt=True)
    enc = processor(images=images[0], text=text, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=30, do_sample=False)
    first = processor.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    captions = generate(model, processor, images, [CAPTION_PROMPT] * len(images))
    assert captions[0] == first.strip()  # batched, left-padded generation agrees with the single flow
    cat_ok = cat_n = col_ok = col_n = 0
    for scene, cap in zip(scenes, captions, strict=True):
        cats = extractor.categories(cap)
        assert cats, cap  # it names objects of the world
        cat_n += len(cats)
        cat_ok += len(cats & set(scene.categories()))
        colours = {w for w in re.findall(r"[a-z]+", cap) if w in COLOURS}
        col_n += len(colours)
        col_ok += len(colours & {o.colour for o in scene.objects})
    # chance level: ~2.5 objects of 12 categories (0.21) and of 7 colours (0.36); on training-distribution
    # scenes the shipped model is nearly always right (held-out CHAIR_i there ~0.01, datasets/shapes/README.md)
    assert cat_ok / cat_n > 0.9
    assert col_ok / col_n > 0.9


def test_shipped_checkpoint_has_the_designed_prior(shipped):
    """On scenes whose anchor is drawn without its usual partner, the model names that absent partner far more
    often than any other absent category: the co-occurrence prior the world was built to teach."""
    from saliency_lab.labels.chair import score_caption
    from saliency_lab.world.evaluate import prior_statistics

    model, processor = shipped
    world = WorldConfig()
    scenes = eval_scenes(world, seed=123, n=60, partner_absent_share=1.0)
    captions = generate(model, processor, [render(s, world)[0] for s in scenes], [CAPTION_PROMPT] * len(scenes))
    extractor = ChairExtractor(world_synonyms())
    gt = {str(i): set(s.categories()) for i, s in enumerate(scenes)}
    res = [score_caption(extractor, str(i), i, c, gt, "t") for i, c in enumerate(captions)]
    st = prior_statistics(scenes, res)
    assert st["partner_absent_scenes"] == 60
    assert st["absent_partner_named_rate"] >= 0.1  # held-out: 0.29
    assert st["absent_partner_named_rate"] > 2.5 * st["other_absent_category_named_rate"]  # held-out: 5.2x


def _tiny_cfg() -> TrainConfig:
    spec = ModelSpec(vision_width=32, vision_layers=1, vision_heads=2, text_width=32, text_layers=1,
                     text_heads=2, text_kv_heads=2, text_intermediate=64)
    return TrainConfig(steps=3, batch_size=4, warmup=1, log_every=1, checkpoint_every=0, model=spec)


def _digest(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.parametrize("threads", [1])
def test_training_is_reproducible(tmp_path, threads):
    cfg = _tiny_cfg()
    cfg.threads = threads
    a = train(cfg, str(tmp_path / "a"), log=lambda m: None)
    b = train(cfg, str(tmp_path / "b"), log=lambda m: None)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert a["final_loss_ema"] == b["final_loss_ema"]
    assert (tmp_path / "a" / "train_log.jsonl").read_text().count("\n") == 3
    # the saved folder is a complete model: it reloads with the standard classes
    AutoProcessor.from_pretrained(tmp_path / "a")
    LlavaForConditionalGeneration.from_pretrained(tmp_path / "a")


def test_two_stage_recipe_is_reproducible(tmp_path):
    tiny = _tiny_cfg()
    recipe = ({"steps": 4, "stop_after": 2}, {"steps": 2, "warmup": 1, "step_offset": 2})
    kw = {"model": tiny.model, "batch_size": 4, "log_every": 1, "checkpoint_every": 0}
    a = train_recipe(str(tmp_path / "a"), recipe, log=lambda m: None, threads=1, **kw)
    train_recipe(str(tmp_path / "b"), recipe, log=lambda m: None, threads=1, **kw)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "a" / "stage1")  # stage 2 did train
    assert a["recipe"] == list(recipe)


def test_cell_loss_reaches_the_vision_tower_only_when_enabled(tmp_path):
    base = _tiny_cfg()
    on = train(base, str(tmp_path / "on"), log=lambda m: None)
    off_cfg = _tiny_cfg()
    off_cfg.cell_loss_weight = 0.0
    off = train(off_cfg, str(tmp_path / "off"), log=lambda m: None)
    # same data and captioning loss: only the auxiliary term differs
    assert on["final_loss_ema"] != off["final_loss_ema"]
    a = LlavaForConditionalGeneration.from_pretrained(tmp_path / "on").state_dict()
    b = LlavaForConditionalGeneration.from_pretrained(tmp_path / "off").state_dict()
    assert set(a) == set(b)  # the head is not part of the saved model
    assert any(not torch.equal(a[k], b[k]) for k in a if "vision_tower" in k)
    logged = (tmp_path / "on" / "train_log.jsonl").read_text()
    assert '"cell_loss"' in logged


def test_evaluation_splits_pope_by_scene_kind(shipped):
    from saliency_lab.world.evaluate import evaluate_checkpoint

    m = evaluate_checkpoint(str(MODEL), n=10, pope_images=5, model_and_processor=shipped)
    assert m["chair"]["n_captions"] == 10
    assert m["chair_partner_absent"]["n_captions"] + m["chair_normal"]["n_captions"] == 10
    by_kind = m["pope_by_kind"]
    assert set(by_kind) == {"normal", "partner_absent"}  # the first 5 scenes already mix both kinds
    for split, total in m["pope"].items():
        parts = [by_kind[k][split] for k in by_kind]
        assert sum(p["n"] for p in parts) == total["n"]
        assert sum(p["tp"] + p["tn"] for p in parts) / total["n"] == pytest.approx(total["accuracy"])
