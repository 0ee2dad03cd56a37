"""Per-token latency of decoding interventions (docs/interventions.md, "Benchmark": SGRS <= 1.6x greedy; LocoRE <= 1.05x).

Model: Llama-shaped, 4 layers, hidden 256, 8 heads, vocab 32000, random weights (~20.6M params) built in this
script (no tokenizer needed: the prompt is random token ids, and there is no EOS so every method generates
exactly --new tokens). float32, --threads torch threads (default 2).

Methods (all one sequence, KV cache, --prompt prompt tokens, --new new tokens; time = prefill + all steps):
  hf_generate        greedy `model.generate` (sdpa)                         <- the "greedy" baseline
  loop_sdpa          `decode`, greedy (sdpa: what capture runs without interventions)
  loop_ours          `decode`, greedy, forced through our attention function (no hooks)
  locore             `decode`, greedy, LocoRE beta 0.15, w_s 5 (post-softmax hook, every layer)
  sgrs               `decode`, SGRS K=5, R=3, alpha 0.6, W 5, upper-half target layers (grads through the new row)
  sgrs_locore        SGRS + LocoRE
Each method runs once (or --repeats interleaved rounds, fastest kept) after one warm-up run of all methods;
ratios are against hf_generate ("x greedy"), the faster of hf_generate and loop_sdpa ("x fastest") and loop_ours. ms/token = (prefill + all steps) / new tokens.

    .venv/bin/python bench/bench_decoding.py              # ~1 min on 2 cores
    .venv/bin/python bench/bench_decoding.py --quick      # smaller shapes, a smoke test
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

VOCAB, HIDDEN, LAYERS, HEADS, INTER = 32000, 256, 4, 8, 1024


def build_bundle(vocab: int, hidden: int, layers: int, heads: int, inter: int, max_pos: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from saliency_lab.models.base import ModelBundle
    from saliency_lab.models.causal_lm import CausalLMAdapter

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_pos,
                      bos_token_id=None, eos_token_id=None, pad_token_id=None, tie_word_embeddings=False,
                      attn_implementation="sdpa")
    model = LlamaForCausalLM(cfg).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    tok = SimpleNamespace(eos_token_id=None, pad_token_id=0)
    return ModelBundle(model=model, tokenizer=tok, processor=None, adapter=CausalLMAdapter(),
                       architecture="LlamaForCausalLM", n_layers=layers, n_heads=heads, n_kv_heads=heads,
                       dtype=torch.float32, device=torch.device("cpu"), max_context=max_pos, source="bench",
                       path=Path("."))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompt", type=int, default=600)
    ap.add_argument("--new", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="interleaved rounds; the fastest counts (default 1)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    import torch
    from transformers import GenerationConfig

    from saliency_lab.config import DecodingConfig, LocoREConfig, SGRSConfig
    from saliency_lab.decoding import decode
    from saliency_lab.models.base import PreparedInput

    torch.set_num_threads(args.threads)
    shape = (2000, 64, 2, 4, 128) if args.quick else (VOCAB, HIDDEN, LAYERS, HEADS, INTER)
    prompt_len, new = (60, 20) if args.quick else (args.prompt, args.new)
    bundle = build_bundle(*shape, max_pos=max(2048, prompt_len + new + 8))
    n_params = sum(p.numel() for p in bundle.model.parameters())
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, shape[0], (1, prompt_len), generator=g)
    prepared = PreparedInput(ids, {}, {"system": (0, 0), "image": (0, 0), "prompt": (0, prompt_len)}, "bench")

    locore = LocoREConfig(beta=0.15, window=5)
    sgrs = SGRSConfig(alpha=0.6, window=5, k=5, max_resample=3)
    greedy = DecodingConfig(max_new_tokens=new, strategy="greedy")
    gc = GenerationConfig(max_new_tokens=new, do_sample=False, num_beams=1, eos_token_id=None, pad_token_id=0)

    def hf_generate() -> list[int]:
        with torch.no_grad():
            return bundle.model.generate(prepared.input_ids, generation_config=gc)[0, prompt_len:].tolist()

    methods = {
        "hf_generate": hf_generate,
        "loop_sdpa": lambda: decode(bundle, prepared, greedy, attention="sdpa").output_ids,
        "loop_ours": lambda: decode(bundle, prepared, greedy, attention="ours").output_ids,
        "locore": lambda: decode(bundle, prepared, DecodingConfig(max_new_tokens=new, locore=locore)).output_ids,
        "sgrs": lambda: decode(bundle, prepared, DecodingConfig(max_new_tokens=new, strategy="sgrs", sgrs=sgrs)),
        "sgrs_locore": lambda: decode(bundle, prepared, DecodingConfig(max_new_tokens=new, strategy="sgrs",
                                                                       sgrs=sgrs, locore=locore)),
    }
    for fn in methods.values():  # warm-up
        fn()
    results: dict[str, dict] = {}
    # Methods interleaved, --repeats rounds; the fastest round counts (the least disturbed by other processes
    # on a shared machine). --repeats 1 is the plain "one run".
    for _ in range(args.repeats):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            out = fn()
            sec = time.perf_counter() - t0
            n_out = len(out.output_ids) if hasattr(out, "output_ids") else len(out)
            row = {"seconds": sec, "ms_per_token": 1000 * sec / n_out, "tokens": n_out}
            if hasattr(out, "stats"):
                row.update({k: out.stats[k] for k in ("backward_passes", "rejections", "fallbacks")})
            prev = results.get(name)
            runs = (prev["all_seconds"] if prev else []) + [sec]
            if prev is None or sec < prev["seconds"]:
                results[name] = row
            results[name]["all_seconds"] = runs
    base, ours = results["hf_generate"]["seconds"], results["loop_ours"]["seconds"]
    fastest = min(base, results["loop_sdpa"]["seconds"])  # the strictest greedy baseline
    print(f"model: Llama {shape[2]} layers, hidden {shape[1]}, {shape[3]} heads, vocab {shape[0]}, "
          f"{n_params / 1e6:.1f}M params, float32, {torch.get_num_threads()} threads; "
          f"prompt {prompt_len} + {new} new tokens; fastest of {args.repeats} interleaved run(s) after a warm-up")
    print(f"{'method':<12} {'ms/token':>9} {'x greedy':>9} {'x fastest':>10} {'x loop_ours':>12}  notes")
    for name, r in results.items():
        note = ""
        if "backward_passes" in r:
            note = f"backward passes {r['backward_passes']}, rejections {r['rejections']}, fallbacks {r['fallbacks']}"
        print(f"{name:<12} {r['ms_per_token']:>9.2f} {r['seconds'] / base:>9.2f} {r['seconds'] / fastest:>10.2f} "
              f"{r['seconds'] / ours:>12.2f}  {note}")
    print(f"targets: locore <= 1.05x greedy -> {results['locore']['seconds'] / base:.2f}x "
          f"({results['locore']['seconds'] / fastest:.2f}x the fastest greedy); "
          f"sgrs <= 1.6x greedy -> {results['sgrs']['seconds'] / base:.2f}x "
          f"({results['sgrs']['seconds'] / fastest:.2f}x the fastest greedy)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
