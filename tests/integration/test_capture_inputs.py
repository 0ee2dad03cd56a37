"""Adapters: segments derived from the processor's expansion, chat templates, and bad-input errors."""

import pytest
from _capture_fixtures import corrupt_image_path, image_path, tiny_bundle, tiny_dir

from saliency_lab.config import ManifestSample, ModelConfig
from saliency_lab.errors import SaliencyLabError, SampleError
from saliency_lab.models.registry import load_model


def _prepare(arch, image=True, system="Be brief.", prompt="What is in the picture?"):
    b = tiny_bundle(arch)
    s = ManifestSample("seg-1", prompt, image=image_path() if image else None, system=system)
    return b, b.adapter.prepare(b, s)


def _check_partition(p):
    seg = p.segments
    assert seg["system"][0] == 0
    assert seg["system"][1] == seg["image"][0]
    assert seg["image"][1] == seg["prompt"][0]
    assert seg["prompt"][1] == p.n_input


def test_llava_image_segment_is_the_processor_expansion():
    b, p = _prepare("llava")
    _check_partition(p)
    ids = p.input_ids[0].tolist()
    vc = b.model.config.vision_config
    n_img = (vc.image_size // vc.patch_size) ** 2  # "default" strategy drops CLS
    a, e = p.segments["image"]
    assert e - a == n_img
    img_id = b.model.config.image_token_id
    assert all(t == img_id for t in ids[a:e]) and img_id not in ids[:a] + ids[e:]
    assert "Be brief." in b.tokenizer.decode(ids[:a])
    assert "What is in the picture?" in b.tokenizer.decode(ids[e:])


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen_vl_image_segment_follows_grid(arch):
    b, p = _prepare(arch)
    _check_partition(p)
    ids = p.input_ids[0].tolist()
    grid = p.model_kwargs["image_grid_thw"][0]
    merge = b.processor.image_processor.merge_size
    a, e = p.segments["image"]
    assert e - a == int(grid.prod()) // merge**2
    tok = b.tokenizer
    # Vision start/end markers count as system/prompt by their side.
    assert ids[a - 1] == tok.convert_tokens_to_ids("<|vision_start|>")
    assert ids[e] == tok.convert_tokens_to_ids("<|vision_end|>")
    assert bool((p.model_kwargs["mm_token_type_ids"][0, a:e] == 1).all())


def test_qwen_vl_larger_image_gives_more_tokens():
    b = tiny_bundle("qwen2_vl")
    small = b.adapter.prepare(b, ManifestSample("a", "x", image=image_path(56, 56)))
    big = b.adapter.prepare(b, ManifestSample("b", "x", image=image_path(112, 112)))
    ns = small.segments["image"][1] - small.segments["image"][0]
    nb = big.segments["image"][1] - big.segments["image"][0]
    assert nb > ns  # never a hard-coded length


def test_internvl_markers_outside_image_segment():
    b, p = _prepare("internvl")
    _check_partition(p)
    ids = p.input_ids[0].tolist()
    a, e = p.segments["image"]
    assert e - a == b.processor.image_seq_length
    assert ids[a - 1] == b.tokenizer.convert_tokens_to_ids("<img>")
    assert ids[e] == b.tokenizer.convert_tokens_to_ids("</img>")


@pytest.mark.parametrize("arch", ["llama", "qwen2", "llava"])
def test_text_segments(arch):
    b, p = _prepare(arch, image=False, system="Be brief.", prompt="Name three colours.")
    _check_partition(p)
    ids = p.input_ids[0].tolist()
    start = p.segments["prompt"][0]
    assert p.segments["image"] == (start, start)
    assert "Be brief." in b.tokenizer.decode(ids[:start])
    assert "Name" not in b.tokenizer.decode(ids[:start])
    assert "Name three colours." in b.tokenizer.decode(ids[start:])


def test_chat_template_used_with_system():
    b, p = _prepare("qwen2", image=False)
    text = b.tokenizer.decode(p.input_ids[0])
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")


def test_missing_image():
    b = tiny_bundle("llava")
    with pytest.raises(SampleError, match=r"s-miss.*not found"):
        b.adapter.prepare(b, ManifestSample("s-miss", "x", image="/nonexistent/cat.jpg"))


@pytest.mark.parametrize("arch", ["llava", "qwen2_vl"])
def test_corrupt_image(arch):
    b = tiny_bundle(arch)
    with pytest.raises(SampleError, match=r"s-bad.*corrupt\.png.*not a readable image"):
        b.adapter.prepare(b, ManifestSample("s-bad", "x", image=corrupt_image_path()))


def test_image_for_text_only_model():
    b = tiny_bundle("llama")
    with pytest.raises(SampleError, match=r"s-img.*text-only"):
        b.adapter.prepare(b, ManifestSample("s-img", "x", image=image_path()))


def test_context_too_long():
    b = tiny_bundle("llama")
    with pytest.raises(SampleError, match=r"s-long.*exceeds the context of 1024"):
        b.adapter.prepare(b, ManifestSample("s-long", "word " * 50), max_new_tokens=1000)


def test_unknown_architecture(tmp_path):
    (tmp_path / "config.json").write_text('{"architectures": ["FooBarForCausalLM"], "model_type": "foo"}')
    with pytest.raises(SaliencyLabError, match=r"FooBarForCausalLM.*LlavaForConditionalGeneration"):
        load_model(ModelConfig(str(tmp_path)))


def test_hf_id_not_local(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(SaliencyLabError, match=r"llava-hf/llava-1.5-7b-hf.*never downloads.*--model"):
        load_model(ModelConfig("llava-hf/llava-1.5-7b-hf"))


def test_bad_paths(tmp_path):
    with pytest.raises(SaliencyLabError, match="no config.json"):
        load_model(ModelConfig(str(tmp_path)))
    with pytest.raises(SaliencyLabError, match="not a directory"):
        load_model(ModelConfig(str(tmp_path / "missing" / "model")))


def test_bundle_info():
    b = tiny_bundle("llava")
    info = b.info()
    assert info["architecture"] == "LlavaForConditionalGeneration"
    assert (info["n_layers"], info["n_heads"], info["n_kv_heads"]) == (2, 4, 2)
    assert info["dtype"] == "float64" and info["device"] == "cpu"
    assert len(info["weights_sha256"]) == 64
    again = load_model(ModelConfig(str(tiny_dir("llava")), dtype="float32"))
    assert again.info()["weights_sha256"] == info["weights_sha256"]


def test_incomplete_model_folder(tmp_path):
    import shutil

    shutil.copy(tiny_dir("llava") / "config.json", tmp_path / "config.json")
    with pytest.raises(SaliencyLabError, match=r"LlavaForConditionalGeneration.*cannot load it"):
        load_model(ModelConfig(str(tmp_path)))
