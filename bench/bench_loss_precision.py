"""float32 saliency of confident tokens: the loss gradient without cancellation (saliency_lab/saliency/loss.py)
against the usual formulas, both measured against float64 on the same tokens (docs/capture.md, "dtype notes").

Model: the demo's LLaVA (`datasets/shapes/model`), loaded twice (float32 and float64); --n scene captions of the
demo's world (seed 7), greedy outputs of the float64 model (up to 32 tokens). For every output token after the
first: out_mean over the upper-half layers (row normalization), from

  capture pass   `single_pass` (the teacher-forced pass capture stores), float32 vs float64;
  decoding time  `CachedDecoder.row_stats` of the same token teacher-forced through the cached loop (what SGRS
                 and the decay rule read), float32 vs float64;

each once with the toolkit's gradient and once with the usual one (autograd of log_softmax in the pass,
W^T p - W[c] at the hidden state while decoding), swapped in for the comparison only. Prints the relative
error's median / p99 / max per row, and the share of tokens whose probability is above 1 - 1e-5.

    python bench/bench_loss_precision.py            # 16 captions (~1 min)
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch


def _usual_loss(logits: torch.Tensor, logp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-logp[target] through autograd of log_softmax (the c entry of dL/dz as exp(log p_c) - 1)."""
    return -torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)


class _UsualHeadGrad:
    """W^T p - W[c]: two nearly equal vectors for a confident token."""

    def __init__(self, head: torch.nn.Linear) -> None:
        self.weight = head.weight

    def __call__(self, logp: torch.Tensor, token_id: int) -> torch.Tensor:
        w = self.weight.detach()
        return torch.mv(w.t(), logp.detach().exp().to(w.dtype)) - w[token_id]


@contextlib.contextmanager
def usual_formulas(on: bool) -> Iterator[None]:
    """Swap the usual loss gradient in (for this comparison only)."""
    from saliency_lab.decoding import loop
    from saliency_lab.saliency import single_pass

    if not on:
        yield
        return
    saved = single_pass.token_loss, loop.HeadGrad
    single_pass.token_loss, loop.HeadGrad = _usual_loss, _UsualHeadGrad  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        single_pass.token_loss, loop.HeadGrad = saved  # type: ignore[misc]


def out_mean(sums: dict[str, np.ndarray], layers: list[int]) -> np.ndarray:
    """Per token, the mean over `layers` of out_sum / (row_l2 * step) (steps >= 1)."""
    t = sums["out_sum"].shape[0]
    den = sums["row_l2"] * np.arange(t)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.where(den > 0, sums["out_sum"] / den, np.nan)
    return np.nanmean(v[1:, layers], axis=1)


def decoding_scores(bundle, prepared, out: list[int], layers: list[int]) -> np.ndarray:
    """out_mean of each output token (steps >= 1) read while decoding, the tokens teacher-forced."""
    from saliency_lab.decoding.loop import CachedDecoder

    dec = CachedDecoder(bundle, prepared, grad_layers=layers)
    dec.prefill()
    scores = []
    with dec.active():
        for t in range(len(out) - 1):
            logits = dec.step(out[t], grad=True)
            logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)
            scores.append(dec.row_stats(logits, logp, out[t + 1], "sum_abs").score("out_mean"))
    return np.array(scores, dtype=float)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--model", default=str(Path(__file__).resolve().parents[1] / "datasets" / "shapes" / "model"))
    args = ap.parse_args()

    from saliency_lab.config import DecodingConfig, ModelConfig
    from saliency_lab.decoding import decode
    from saliency_lab.manifest import load_manifest
    from saliency_lab.models.registry import load_model
    from saliency_lab.saliency.single_pass import single_pass
    from saliency_lab.threads import configure_threads
    from saliency_lab.world.dataset import build_world_set

    configure_threads(1)
    tmp = Path(tempfile.mkdtemp())
    ws = build_world_set(tmp / "data", n=args.n, seed=7, partner_absent_share=0.6, pope_images=0)
    samples = load_manifest(ws.caption_manifest).samples
    b64 = load_model(ModelConfig(args.model, dtype="float64"))
    b32 = load_model(ModelConfig(args.model, dtype="float32"))
    layers = list(range(b64.n_layers // 2, b64.n_layers))
    errors: dict[tuple[str, str], list[np.ndarray]] = {}
    confident = []
    for s in samples:
        p64, p32 = (b.adapter.prepare(b, s, max_new_tokens=32) for b in (b64, b32))
        out = decode(b64, p64, DecodingConfig(max_new_tokens=32)).output_ids
        if len(out) < 2:
            continue
        truth = single_pass(b64, p64, out)
        logp = truth.logprobs[torch.arange(len(out)), torch.tensor(out)]
        confident.append((logp.exp() > 1 - 1e-5).numpy()[1:])
        ref_pass = out_mean(truth.sums, layers)
        ref_dec = decoding_scores(b64, p64, out, layers)
        for rule in ("toolkit", "usual"):
            with usual_formulas(rule == "usual"):
                got_pass = out_mean(single_pass(b32, p32, out).sums, layers)
                got_dec = decoding_scores(b32, p32, out, layers)
            errors.setdefault(("capture pass", rule), []).append(np.abs(got_pass - ref_pass) / np.abs(ref_pass))
            errors.setdefault(("decoding time", rule), []).append(np.abs(got_dec - ref_dec) / np.abs(ref_dec))
    share = float(np.mean(np.concatenate(confident)))
    n = len(np.concatenate(confident))
    print(f"bench_loss_precision: demo LLaVA, {len(samples)} captions, {n} scored tokens; "
          f"p(token) > 1 - 1e-5 for {share:.0%} of them")
    print("| where | gradient | median | p99 | max |   (relative error of float32 out_mean vs float64)")
    print("|---|---|---|---|---|")
    for (where, rule), errs in errors.items():
        e = np.concatenate(errs)
        e = e[np.isfinite(e)]
        print(f"| {where} | {rule} | {np.median(e):.2g} | {np.quantile(e, 0.99):.2g} | {e.max():.2g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
