"""The world's tokenizer and processor: closed vocabulary, chat template, fast pixel path."""

from __future__ import annotations

import torch

from saliency_lab.world.captions import CAPTION_PROMPT, caption, find_example, question
from saliency_lab.world.model import ModelSpec, build_processor, pixel_values
from saliency_lab.world.render import render
from saliency_lab.world.scenes import CATEGORIES, WorldConfig, sample_scene, scene_rng
from saliency_lab.world.tokenizer import build_tokenizer


def test_every_caption_and_question_word_is_in_vocabulary():
    tok = build_tokenizer()
    unk = tok.unk_token_id
    texts = [caption(sample_scene(WorldConfig(), scene_rng(0, i))) for i in range(200)]
    texts += [question(c) for c in CATEGORIES] + [CAPTION_PROMPT, "yes .", "no ."]
    for i in range(50):  # the "Describe the X." bridge examples, both answers
        scene = sample_scene(WorldConfig(), scene_rng(0, i))
        texts += list(find_example(scene, scene.objects[0].category, True))
        texts += list(find_example(scene, "bar" if "bar" not in scene.categories() else "ring", False))
    for t in texts:
        ids = tok(t, add_special_tokens=False).input_ids
        assert unk not in ids, t
    cap = texts[0]
    assert tok.decode(tok(cap, add_special_tokens=False).input_ids) == cap.replace(" ,", ",").replace(" .", ".")


def test_chat_template_and_image_expansion():
    spec = ModelSpec()
    proc = build_processor(build_tokenizer(), spec)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a star in the image?"}]}]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True)
    assert text == "user : <image> Is there a star in the image? assistant :"
    img, _ = render(sample_scene(WorldConfig(), scene_rng(0, 1)), WorldConfig())
    enc = proc(images=img, text=text, return_tensors="pt")
    n_img = int((enc.input_ids == proc.tokenizer.convert_tokens_to_ids("<image>")).sum())
    assert n_img == (spec.image_size // spec.patch_size) ** 2
    assert torch.equal(enc.pixel_values, pixel_values([img], proc))


def test_find_example_names_the_colour_of_the_asked_shape():
    for i in range(50):
        scene = sample_scene(WorldConfig(), scene_rng(1, i))
        for o in scene.objects:
            prompt, ans = find_example(scene, o.category, True)
            assert prompt == f"Describe the {o.category}." and ans.split()[1:] == [o.colour, o.category, "."]
            assert ans.split()[0] == ("an" if o.colour == "orange" else "a")
        absent = next(c for c in CATEGORIES if c not in scene.categories())
        assert find_example(scene, absent, False) == (f"Describe the {absent}.", "no .")
