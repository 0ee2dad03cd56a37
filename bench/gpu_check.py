"""GPU check, ready to run: a LLaVA-1.5-7B-shaped model with random weights (built from a config, nothing
downloaded), bfloat16 on CUDA, through the toolkit's own capture path. Prints in one run:

- generate vs capture tokens/s at batch 1, 8, 32: generate is plain HF generate of the same prompt repeated B
  times; capture is the toolkit's batched capture (`saliency_lab.pipeline.batch.capture_batch`, what
  `saliency-lab capture --batch-size B` runs) of B samples with that prompt in one group: batched decoding, the
  batched saliency pass and every table, with the default --saliency-precision (float32 for a bf16 model);
- peak GPU memory of generate and of capture at each batch size, and of the single pass with and without
  --max-pass-tokens;
- bf16 vs float32 saliency error on a short sample: the pass in bf16 (--saliency-precision model) against the
  pass in float32 on the same bf16 weights (--saliency-precision float32), same tokens.

Shapes: default = LLaVA-1.5-7B (CLIP ViT-L/14-336: 24 layers, width 1024, 576 image tokens; Llama 32 layers,
hidden 4096, 32 heads, MLP 11008, vocab 32064); --quick = 8 layers, hidden 2048, 16 heads, a 4-layer tower,
still 576 image tokens; --tiny = 2 layers, hidden 64 (the CI smoke test, on CPU).
The tokenizer and processor are those of `saliency-lab tiny-model --arch llava`, set to 336-px images.

    python bench/gpu_check.py                       # on a GPU: the 7B shape (~16 GB of bf16 weights)
    python bench/gpu_check.py --quick               # a smaller shape
    python bench/gpu_check.py --quick --device cpu  # runs on CPU too (slow); add --tiny for a smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import tempfile
import time
from pathlib import Path

from _batching import greedy_config, widest_forward

SHAPES = {
    "7b": dict(
        layers=32,
        hidden=4096,
        heads=32,
        inter=11008,
        v_layers=24,
        v_hidden=1024,
        v_heads=16,
        v_inter=4096,
        image=336,
    ),
    "quick": dict(
        layers=8,
        hidden=2048,
        heads=16,
        inter=5504,
        v_layers=4,
        v_hidden=512,
        v_heads=8,
        v_inter=2048,
        image=336,
    ),
    "tiny": dict(
        layers=2, hidden=64, heads=4, inter=128, v_layers=1, v_hidden=32, v_heads=2, v_inter=64, image=56
    ),
}
VOCAB = 32064


def build_bundle(shape: dict, device: str, dtype, tmp: Path):
    """A ModelBundle holding a random LLaVA of `shape` (tokenizer/processor from the tiny LLaVA)."""
    import torch
    import transformers as tf

    from saliency_lab.config import ModelConfig
    from saliency_lab.models.registry import load_model
    from saliency_lab.models.tiny import build_tiny

    small = load_model(ModelConfig(str(build_tiny("llava", tmp / "tiny-llava"))))
    tok, proc = small.tokenizer, small.processor
    side = shape["image"]
    proc.image_processor.size = {"shortest_edge": side}
    proc.image_processor.crop_size = {"height": side, "width": side}
    vision = tf.CLIPVisionConfig(
        hidden_size=shape["v_hidden"],
        intermediate_size=shape["v_inter"],
        num_hidden_layers=shape["v_layers"],
        num_attention_heads=shape["v_heads"],
        image_size=side,
        patch_size=14,
        projection_dim=shape["v_hidden"],
    )
    text = tf.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=shape["hidden"],
        intermediate_size=shape["inter"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["heads"],
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    n_img = (side // 14) ** 2
    cfg = tf.LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=small.model.config.image_token_id,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=n_img,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = tf.LlavaForConditionalGeneration(cfg).eval()
    finally:
        torch.set_default_dtype(old)
    for p in model.parameters():
        p.requires_grad_(False)
    model.generation_config = small.model.generation_config
    model.set_attn_implementation({"text_config": "sdpa", "vision_config": "sdpa"})
    n_params = sum(p.numel() for p in model.parameters())
    bundle = dataclasses.replace(
        small,
        model=model,
        dtype=dtype,
        device=torch.device(device),
        n_layers=shape["layers"],
        n_heads=shape["heads"],
        n_kv_heads=shape["heads"],
        max_context=4096,
    )
    return bundle, n_params, n_img


def generate_batch(bundle, prepared, gc, batch: int) -> list[list[int]]:
    """Plain HF generate of the same prompt repeated `batch` times (no padding needed); output ids per row."""
    import torch

    ids = prepared.input_ids.repeat(batch, 1)
    kw = {
        k: v.repeat(batch, *[1] * (v.dim() - 1)) if isinstance(v, torch.Tensor) else v
        for k, v in prepared.model_kwargs.items()
    }
    with torch.no_grad():
        out = bundle.model.generate(ids, **kw, generation_config=gc)
    return [row[prepared.n_input :].tolist() for row in out]


class Meter:
    """Wall time and peak memory (GPU: max_memory_allocated; CPU: process max RSS) of a block."""

    def __init__(self, device):
        import torch

        self.torch, self.cuda = torch, device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.torch.cuda.synchronize()
            self.peak_gb = self.torch.cuda.max_memory_allocated() / 2**30
        else:
            self.peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        self.seconds = time.perf_counter() - self.t0


def capture_batch_of(bundle, sample, dec, batch: int, n_in: int) -> tuple[int, int]:
    """Batched capture of `batch` copies of `sample` (`n_in` input tokens) in one group: (output tokens
    captured, most rows any model forward saw). capture_batch redoes a failing group sample by sample, so the
    second number is what shows the rows really shared their forwards."""
    from saliency_lab.config import SaliencyConfig
    from saliency_lab.pipeline.batch import capture_batch

    copies = [dataclasses.replace(sample, sample_id=f"{sample.sample_id}-{i}") for i in range(batch)]
    with widest_forward(bundle.model) as widest:
        outcomes = capture_batch(
            bundle,
            copies,
            dec,
            SaliencyConfig(),
            "gpu-check",
            rows=batch,
            tokens=batch * (n_in + dec.max_new_tokens),
        )
    failed = [o for o in outcomes if isinstance(o, Exception)]
    if failed:
        raise RuntimeError(f"gpu_check: batched capture at batch {batch} failed: {failed[0]}")
    return sum(o.tables["tokens"].num_rows for o in outcomes), widest[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smaller shape (8 layers, hidden 2048)")
    ap.add_argument("--tiny", action="store_true", help="a very small shape (CI smoke test)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--new", type=int, default=None, help="new tokens per sample (default 64; 8 with --tiny)")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--max-pass-tokens", type=int, default=16)
    args = ap.parse_args()
    import numpy as np
    import torch
    from PIL import Image
    from transformers.utils import logging as hf_logging

    from saliency_lab.config import DecodingConfig, ManifestSample
    from saliency_lab.saliency.single_pass import single_pass

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: CUDA is not available here; run with --device cpu --quick (or --tiny)")
    name = "tiny" if args.tiny else "quick" if args.quick else "7b"
    shape = SHAPES[name]
    new = args.new or (8 if args.tiny else 64)
    dtype = torch.bfloat16
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        bundle, n_params, n_img = build_bundle(shape, str(device), dtype, Path(tmp))
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(
            f"shape {name}: {n_params / 1e6:,.1f} M parameters, {shape['layers']} layers, hidden {shape['hidden']}, "
            f"{n_img} image tokens, vocab {VOCAB}; bfloat16 on {where}; built in {time.perf_counter() - t0:.0f} s"
        )
        img_path = Path(tmp) / "img.png"
        Image.new("RGB", (shape["image"], shape["image"]), (40, 120, 200)).save(img_path)
        sample = ManifestSample("g1", "Describe the image in detail.", image=str(img_path))
        prepared = bundle.adapter.prepare(bundle, sample, max_new_tokens=new)
        dec = DecodingConfig(max_new_tokens=new)
        print(f"input {prepared.n_input} tokens ({n_img} image), {new} new tokens")

        gc = greedy_config(bundle, dec.max_new_tokens)
        generate_batch(bundle, prepared, gc, 1)  # warm-up (kernels, allocator, lazy imports)
        capture_batch_of(bundle, sample, dec, 1, prepared.n_input)
        print(
            "| batch | generate tokens/s | capture tokens/s | capture / generate time | peak GB generate "
            "| peak GB capture | rows per capture forward |"
        )
        print("|---|---|---|---|---|---|---|")
        for b in [int(x) for x in args.batches.split(",")]:
            with Meter(device) as mg:
                outs = generate_batch(bundle, prepared, gc, b)
            gen_tps = sum(len(o) for o in outs) / mg.seconds
            with Meter(device) as mc:
                n_tok, rows = capture_batch_of(bundle, sample, dec, b, prepared.n_input)
            cap, ratio, peak_c = (
                f"{n_tok / mc.seconds:.1f}",
                f"{mc.seconds / mg.seconds:.2f}",
                f"{mc.peak_gb:.1f}",
            )
            print(f"| {b} | {gen_tps:.1f} | {cap} | {ratio} | {mg.peak_gb:.1f} | {peak_c} | {rows} |")

        out = outs[0]
        with Meter(device) as m_full:
            low = single_pass(bundle, prepared, out, precision="model")
        with Meter(device) as m_f32:
            high = single_pass(bundle, prepared, out, precision="float32")
        with Meter(device) as m_bound:
            single_pass(bundle, prepared, out, precision="model", max_pass_tokens=args.max_pass_tokens)
        print(
            f"single pass over {len(out)} tokens: bf16 {m_full.seconds:.2f} s, peak {m_full.peak_gb:.1f} GB; "
            f"float32 on bf16 weights {m_f32.seconds:.2f} s, peak {m_f32.peak_gb:.1f} GB; "
            f"bf16 with --max-pass-tokens {args.max_pass_tokens}: {m_bound.seconds:.2f} s, "
            f"peak {m_bound.peak_gb:.1f} GB"
        )

        def share(s):
            total = s["sys_sum"] + s["img_sum"] + s["prompt_sum"] + s["out_sum"]
            return (s["out_sum"] / np.where(total > 0, total, np.nan))[1:]

        err = np.abs(share(low.sums) - share(high.sums))
        err = err[np.isfinite(err)]
        rel = np.abs(low.sums["row_l2"] - high.sums["row_l2"]) / np.maximum(high.sums["row_l2"], 1e-30)
        print(
            f"bf16 vs float32 saliency (same tokens): out-share per (token, layer) abs error median "
            f"{np.median(err):.2g}, p99 {np.quantile(err, 0.99):.2g}, max {err.max():.2g}; row_l2 relative "
            f"error median {np.median(rel):.2g}, max {rel.max():.2g}"
        )


if __name__ == "__main__":
    main()
