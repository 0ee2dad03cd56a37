"""Fixtures for the decoding integration tests: tiny float64 models of every adapter family, built once per
session from configs, and prepared inputs (with an image for the vision models)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from saliency_lab.models.registry import adapter_for, tiny_recipes

_RECIPES = tiny_recipes()
#: Every registered tiny recipe (one per architecture): the greedy-equivalence test runs over all of them.
ALL_ARCHS = tuple(_RECIPES)
VISION = {name for name, r in _RECIPES.items() if r.vision}


def _one_per_adapter() -> tuple[str, ...]:
    seen: dict[type, str] = {}
    for name, r in _RECIPES.items():
        seen.setdefault(type(adapter_for(r.architecture)), name)
    return tuple(sorted(seen.values()))


#: One recipe per adapter class (the costlier SGRS/LocoRE tests): every adapter's quirks, fewer duplicates.
ARCHS = _one_per_adapter()


@pytest.fixture(scope="session")
def decoding_models(tmp_path_factory):
    """get(arch, dtype="float64") -> ModelBundle, built and loaded once per (arch, dtype)."""
    from saliency_lab.config import ModelConfig
    from saliency_lab.models.registry import load_model
    from saliency_lab.models.tiny import build_tiny

    root = tmp_path_factory.mktemp("decoding-models")
    cache: dict = {}

    def get(arch: str, dtype: str = "float64"):
        if (arch, dtype) not in cache:
            path = root / arch
            if not path.exists():
                build_tiny(arch, path, seed=0)
            cache[(arch, dtype)] = load_model(ModelConfig(str(path), dtype=dtype))
        return cache[(arch, dtype)]

    return get


@pytest.fixture(scope="session")
def decoding_image(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("decoding-img") / "red.png"
    img = Image.new("RGB", (56, 56), (30, 30, 30))
    for x in range(10, 40):
        for y in range(12, 30):
            img.putpixel((x, y), (220, 40, 40))
    img.save(path)
    return path


def prepare(bundle, arch: str, image: Path | None, prompt: str = "describe the red cube on the table",
            sample_id: str = "s0", max_new_tokens: int = 8):
    from saliency_lab.config import ManifestSample

    sample = ManifestSample(sample_id=sample_id, prompt=prompt,
                            image=str(image) if (image is not None and arch in VISION) else None)
    return bundle.adapter.prepare(bundle, sample, max_new_tokens=max_new_tokens)


def sgrs_score_reference(bundle, prepared, prefix: list[int], cand: int, layers: list[int]) -> float:
    """S(cand) at step len(prefix) from the per-prefix reference (eager forward + backward of the prefix)."""
    from saliency_lab.saliency.reference import reference_rows

    step = len(prefix)
    o = prepared.n_input
    q = o - 1 + step
    row = reference_rows(bundle, prepared, prefix + [cand])[-1]  # [L, q + 1]
    vals = [row[layer][o:q + 1].sum() / (torch.linalg.vector_norm(row[layer]) * step) for layer in layers]
    return float(torch.stack(vals).mean())


def check_decisions(res, cfg, eos: set[int] | None = None) -> None:
    """Everything the decision records claim is consistent with the algorithm and with the output."""
    from saliency_lab.decoding.selection import sgrs_threshold

    reject = getattr(cfg, "reject", "low")
    sign = -1.0 if reject == "high" else 1.0  # sign * score >= sign * tau passes in either direction
    tc, dc = res.token_columns, res.decisions
    n = len(res.output_ids)
    assert all(len(v) == n for v in tc.values())
    history: list[tuple[float | None, bool]] = []
    for step in range(n):
        rows = [i for i, s in enumerate(dc["step"]) if s == step]
        draws = [dc["draw"][i] for i in rows]
        assert draws == list(range(len(rows))) and 1 <= len(rows) <= cfg.max_resample
        toks = [dc["token_id"][i] for i in rows]
        assert len(set(toks)) == len(toks)  # without replacement
        tau = sgrs_threshold(history, cfg.alpha, cfg.window, reject)
        assert tc["sgrs_tau"][step] == pytest.approx(tau, rel=1e-12, abs=0)
        assert all(dc["tau"][i] == tc["sgrs_tau"][step] for i in rows)
        scores = [dc["score"][i] for i in rows]
        if step == 0:
            assert scores == [None] and tc["accepted"][0] and tc["sgrs_score"][0] is None
        emitted = res.output_ids[step]
        if tc["accepted"][step]:
            assert not tc["fallback"][step] and toks[-1] == emitted and dc["accepted"][rows[-1]]
            assert scores[-1] is None or sign * scores[-1] >= sign * tau
            assert all(sign * s < sign * tau for s in scores[:-1])
            assert tc["n_rejected"][step] == len(rows) - 1
        else:
            assert tc["fallback"][step] and all(sign * s < sign * tau for s in scores)
            assert emitted == toks[max(range(len(rows)), key=lambda k: (sign * scores[k], -k))]
            assert tc["n_rejected"][step] == len(rows)
        chosen = [i for i in rows if dc["accepted"][i] or dc["fallback"][i]]
        assert len(chosen) == 1 and dc["token_id"][chosen[0]] == emitted
        assert tc["sgrs_score"][step] == dc["score"][chosen[0]]
        history.append((tc["sgrs_score"][step], tc["accepted"][step]))
    if eos:
        assert all(t not in eos for t in res.output_ids[:-1])


def hf_generate(bundle, prepared, max_new_tokens: int, hooks=()) -> list[int]:
    """Reference: transformers' greedy `generate` (sdpa, or our attention with `hooks`), EOS included."""
    from transformers import GenerationConfig

    from saliency_lab.saliency.attention import intervention_context, use_attention

    eos = bundle.adapter.eos_token_ids(bundle)
    pad = bundle.tokenizer.pad_token_id
    gc = GenerationConfig(max_new_tokens=max_new_tokens, num_beams=1, do_sample=False, eos_token_id=eos or None,
                          pad_token_id=pad if pad is not None else (eos[0] if eos else None), repetition_penalty=1.0,
                          suppress_tokens=bundle.adapter.suppressed_token_ids(bundle) or None)
    with torch.no_grad():
        if hooks:
            with use_attention(bundle), intervention_context("plain", list(hooks)):
                out = bundle.model.generate(prepared.input_ids, **prepared.model_kwargs, generation_config=gc)
        else:
            out = bundle.model.generate(prepared.input_ids, **prepared.model_kwargs, generation_config=gc)
    return out[0, prepared.n_input:].tolist()
