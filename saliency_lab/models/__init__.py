"""Model loading and one adapter per model family (see registry.py).

Kept import-light: the CLI reads TINY_ARCHS while building its parser, before torch is needed.
"""

#: Families `saliency-lab tiny-model` can build.
TINY_ARCHS = ("llama", "qwen2", "mistral", "llava", "qwen2_vl", "qwen2_5_vl", "internvl")
