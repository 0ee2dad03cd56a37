"""Tiny random models built from configs (no hub), saved as ordinary model directories.

`build_tiny("llava", out)` writes a folder that `load_model` (and `saliency-lab capture --model out`) loads
like any real checkpoint: weights, config, tokenizer with a chat template, processor for VLMs. The models are
untrained (random weights) and exist for tests, docs and benchmarks. Shapes: hidden 64, 2 layers, 4 query heads,
2 KV heads (GQA), so the exactness tests cover grouped-query attention.
"""

from __future__ import annotations

from pathlib import Path

import torch

from saliency_lab.errors import SaliencyLabError
from saliency_lab.models import TINY_ARCHS
from saliency_lab.models.tokenizer_build import TokenizerStyle, build_tokenizer

_CONTENT = (
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}IMAGE{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
)

# Llama-2 / LLaVA-1.5 flavoured template ("USER: <image>\n... ASSISTANT:").
LLAVA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}" + _CONTENT + "{{ ' ' }}"
    "{% elif m['role'] == 'user' %}USER: " + _CONTENT + "{{ ' ' }}"
    "{% else %}ASSISTANT: " + _CONTENT + "{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n" + _CONTENT + "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

QWEN_SPECIALS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                 "<|video_pad|>"]
INTERNVL_SPECIALS = ["<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]

HIDDEN, LAYERS, HEADS, KV_HEADS, INTER = 64, 2, 4, 2, 128


def _text_kwargs(tok, max_pos: int = 1024) -> dict:
    return dict(
        vocab_size=len(tok), hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=max_pos,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )


def _build_text(arch: str, style: TokenizerStyle):
    import transformers as tf

    if arch == "qwen2":
        tok = build_tokenizer(style, QWEN_SPECIALS)
        tok.chat_template = CHATML_TEMPLATE
        cfg = tf.Qwen2Config(**_text_kwargs(tok))
        return tf.Qwen2ForCausalLM(cfg), tok, None
    tok = build_tokenizer(style, [])
    tok.chat_template = LLAVA_TEMPLATE.replace("IMAGE", "")
    if arch == "mistral":
        cfg = tf.MistralConfig(**_text_kwargs(tok), sliding_window=None)
        return tf.MistralForCausalLM(cfg), tok, None
    cfg = tf.LlamaConfig(**_text_kwargs(tok))
    return tf.LlamaForCausalLM(cfg), tok, None


def _build_llava(style: TokenizerStyle):
    import transformers as tf

    tok = build_tokenizer(style, ["<image>"], image_token="<image>")
    template = LLAVA_TEMPLATE.replace("IMAGE", "<image>\n")
    image_id = tok.convert_tokens_to_ids("<image>")
    vision = tf.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 image_size=56, patch_size=14, projection_dim=32)
    cfg = tf.LlavaConfig(vision_config=vision, text_config=tf.LlamaConfig(**_text_kwargs(tok)),
                         image_token_id=image_id, vision_feature_layer=-2,
                         vision_feature_select_strategy="default", image_seq_length=16, tie_word_embeddings=False)
    ip = tf.CLIPImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    proc = tf.LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
                             num_additional_image_tokens=1, chat_template=template, image_token="<image>")
    tok.chat_template = template
    return tf.LlavaForConditionalGeneration(cfg), tok, proc


def _build_qwen_vl(arch: str, style: TokenizerStyle):
    import transformers as tf

    from saliency_lab.models.processors import ImageOnlyQwen2VLProcessor

    tok = build_tokenizer(style, QWEN_SPECIALS, image_token="<|image_pad|>", video_token="<|video_pad|>")
    template = CHATML_TEMPLATE.replace("IMAGE", "<|vision_start|><|image_pad|><|vision_end|>")
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = _text_kwargs(tok)
    head_dim = HIDDEN // HEADS
    # M-RoPE: temporal/height/width sections must sum to head_dim / 2.
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0,
                               "mrope_section": [2, 3, head_dim // 2 - 5]}
    common = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                  tie_word_embeddings=False)
    if arch == "qwen2_vl":
        vision = dict(depth=2, embed_dim=32, hidden_size=HIDDEN, num_heads=2, mlp_ratio=2, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
        cfg = tf.Qwen2VLConfig(text_config=text, vision_config=vision, **common)
        model = tf.Qwen2VLForConditionalGeneration(cfg)
    else:
        vision = dict(depth=2, hidden_size=32, out_hidden_size=HIDDEN, num_heads=2, intermediate_size=64,
                      patch_size=14, spatial_merge_size=2, temporal_patch_size=2, in_channels=3,
                      window_size=56, fullatt_block_indexes=[1])
        cfg = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common)
        model = tf.Qwen2_5_VLForConditionalGeneration(cfg)
    ip = tf.Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14, merge_size=2,
                                      temporal_patch_size=2)
    tok.chat_template = template
    return model, tok, ImageOnlyQwen2VLProcessor(image_processor=ip, tokenizer=tok, chat_template=template)


def _build_internvl(style: TokenizerStyle):
    import transformers as tf

    from saliency_lab.models.processors import ImageOnlyInternVLProcessor

    tok = build_tokenizer(style, INTERNVL_SPECIALS, start_image_token="<img>", end_image_token="</img>",
                          context_image_token="<IMG_CONTEXT>", video_token="<video>")
    template = CHATML_TEMPLATE.replace("IMAGE", "<IMG_CONTEXT>\n")
    vision = tf.InternVLVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                     image_size=[56, 56], patch_size=[14, 14])
    # 56/14 = 4x4 patches, pixel-shuffle downsample 0.5 -> 4 image tokens.
    cfg = tf.InternVLConfig(vision_config=vision, text_config=tf.Qwen2Config(**_text_kwargs(tok)),
                            image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=4,
                            downsample_ratio=0.5, tie_word_embeddings=False)
    ip = tf.GotOcr2ImageProcessorPil(size={"height": 56, "width": 56}, crop_to_patches=False, max_patches=1)
    tok.chat_template = template
    proc = ImageOnlyInternVLProcessor(image_processor=ip, tokenizer=tok, image_seq_length=4, chat_template=template)
    return tf.InternVLForConditionalGeneration(cfg), tok, proc


def build_tiny(arch: str, out_dir: str | Path, *, seed: int = 0, dtype: torch.dtype = torch.float32,
               tokenizer: TokenizerStyle = "bytelevel") -> Path:
    """Build a tiny random model of `arch` and save it (model + tokenizer/processor) into `out_dir`."""
    if arch not in TINY_ARCHS:
        raise SaliencyLabError(f"unknown tiny architecture {arch!r}; choose one of: {', '.join(TINY_ARCHS)}")
    if tokenizer not in ("bytelevel", "metaspace"):
        raise SaliencyLabError(f"unknown tokenizer style {tokenizer!r}; choose bytelevel or metaspace")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if arch == "llava":
        model, tok, proc = _build_llava(tokenizer)
    elif arch in ("qwen2_vl", "qwen2_5_vl"):
        model, tok, proc = _build_qwen_vl(arch, tokenizer)
    elif arch == "internvl":
        model, tok, proc = _build_internvl(tokenizer)
    else:
        model, tok, proc = _build_text(arch, tokenizer)
    model = model.to(dtype).eval()
    eos = [tok.eos_token_id]
    if "<|im_end|>" in tok.get_vocab():
        eos.insert(0, tok.convert_tokens_to_ids("<|im_end|>"))
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    if proc is not None:
        proc.save_pretrained(out)
    return out
