"""capture_sample end to end: tables and schemas, token offsets, EOS, candidates, rows, verify, hooks."""

import numpy as np
import pytest
import torch
from _capture_fixtures import image_path, tiny_bundle

from saliency_lab.config import DecodingConfig, LocoREConfig, ManifestSample, SaliencyConfig
from saliency_lab.decoding import decode
from saliency_lab.decoding.hooks import intervention_hooks
from saliency_lab.errors import SaliencyLabError
from saliency_lab.pipeline import capture_sample
from saliency_lab.saliency.reference import reference_rows
from saliency_lab.saliency.single_pass import single_pass
from saliency_lab.store.schema import SCHEMAS


def _capture(arch, sal=None, dec=None, tokenizer="bytelevel", prompt="Describe the image.", sid="t-1"):
    b = tiny_bundle(arch, tokenizer=tokenizer)
    img = image_path() if b.adapter.is_vision else None
    s = ManifestSample(sid, prompt, image=img, image_id="42", meta={"k": 1})
    return b, capture_sample(b, s, dec or DecodingConfig(max_new_tokens=8), sal or SaliencyConfig(), "run-x")


def test_tables_schema_and_shapes():
    b, r = _capture("llava", SaliencyConfig(candidates=3, rows="output"))
    t = r.tables
    assert set(t) == {"samples", "tokens", "saliency", "candidates", "rows"}
    for name, tab in t.items():
        assert tab.schema.equals(SCHEMAS[name]), name
    n = t["tokens"].num_rows
    L = b.n_layers
    assert t["samples"].num_rows == 1
    row = t["samples"].to_pylist()[0]
    assert row["status"] == "ok" and row["n_output"] == n and row["image_id"] == "42" and row["meta"] == '{"k": 1}'
    assert row["n_input"] == len(row["input_ids"])
    sal = t["saliency"].to_pandas()
    assert len(sal) == n * L
    assert list(sal["step"]) == [s for s in range(n) for _ in range(L)]
    assert sal.loc[sal.step == 0, "prev"].isna().all() and sal.loc[sal.step > 0, "prev"].notna().all()
    assert (sal.loc[sal.step == 0, "out_sum"] == 0).all()
    assert (sal["row_l2"] > 0).all() and (sal["img_sum"] > 0).all()
    assert t["candidates"].num_rows == n * 3 * L
    rows = t["rows"].to_pylist()
    assert [len(x["values"]) for x in rows] == [s for s in range(n) for _ in range(L)]
    assert r.seconds > 0


def test_greedy_rank0_candidate_equals_token_saliency():
    _, r = _capture("qwen2", SaliencyConfig(candidates=2))
    cand = r.tables["candidates"].to_pandas()
    sal = r.tables["saliency"].to_pandas()
    tok = r.tables["tokens"].to_pandas()
    c0 = cand[cand["rank"] == 0].reset_index(drop=True)
    assert (c0.groupby("step")["token_id"].first().values == tok["token_id"].values).all()
    for col in ("out_sum", "prompt_sum", "row_l2"):
        np.testing.assert_allclose(c0[col].values, sal[col].values, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(np.exp(tok["logprob"].values), c0.groupby("step")["prob"].first().values, rtol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "llava"])
def test_candidate_saliency_equals_reference(arch):
    # Sampling, so rank 0 is not always the emitted token: every rank goes through its own backward.
    dec = DecodingConfig(max_new_tokens=6, strategy="sample", seed=1)
    b, r = _capture(arch, SaliencyConfig(candidates=3), dec=dec)
    cand = r.tables["candidates"].to_pandas()
    out = r.tables["tokens"].column("token_id").to_pylist()
    img = image_path() if b.adapter.is_vision else None
    p = b.adapter.prepare(b, ManifestSample("t-1", "Describe the image.", image=img, image_id="42"))
    o, L = p.n_input, b.n_layers
    seg = p.segments
    for rank in range(3):
        c = cand[cand["rank"] == rank].sort_values(["step", "layer"])
        targets = c.groupby("step")["token_id"].first().tolist()
        ref = reference_rows(b, p, out, "sum_abs", targets=targets)
        want_out = [float(ref[s][layer, o:].sum()) for s in range(len(out)) for layer in range(L)]
        want_prompt = [float(ref[s][layer, seg["prompt"][0]:seg["prompt"][1]].sum())
                       for s in range(len(out)) for layer in range(L)]
        want_l2 = [float(ref[s][layer].norm()) for s in range(len(out)) for layer in range(L)]
        np.testing.assert_allclose(c["out_sum"].values, want_out, rtol=1e-5, atol=1e-12)
        np.testing.assert_allclose(c["prompt_sum"].values, want_prompt, rtol=1e-5, atol=1e-12)
        np.testing.assert_allclose(c["row_l2"].values, want_l2, rtol=1e-5)


def test_rows_all_and_l2():
    b, r = _capture("llama", SaliencyConfig(rows="all"))
    rows = r.tables["rows"].to_pylist()
    sal = r.tables["saliency"].to_pylist()
    o = r.tables["samples"].to_pylist()[0]["n_input"]
    for x, s in zip(rows, sal, strict=True):
        v = np.asarray(x["values"], dtype=np.float64)
        assert len(v) == o + x["step"]
        assert np.linalg.norm(v) == pytest.approx(s["row_l2"], rel=2e-3)  # float16 storage


@pytest.mark.parametrize("tokenizer", ["bytelevel", "metaspace"])
@pytest.mark.parametrize("arch", ["llama", "llava"])
def test_token_offsets_reconstruct_output(arch, tokenizer):
    b, r = _capture(arch, dec=DecodingConfig(max_new_tokens=24, strategy="sample", seed=3), tokenizer=tokenizer)
    text = r.tables["samples"].to_pylist()[0]["output_text"]
    toks = r.tables["tokens"].to_pylist()
    assert "".join(t["token_text"] for t in toks) == text
    for t in toks:
        assert text[t["char_start"]:t["char_end"]] == t["token_text"]
    ids = [t["token_id"] for t in toks]
    expect = b.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    assert text == expect


def test_eos_is_kept_with_empty_span():
    b = tiny_bundle("llama", dtype="float64")
    s = ManifestSample("eos-1", "Describe the image.")
    first = capture_sample(b, s, DecodingConfig(max_new_tokens=6), SaliencyConfig(), "r")
    ids = first.tables["tokens"].column("token_id").to_pylist()
    eos = b.tokenizer.eos_token_id
    head = b.model.lm_head.weight
    saved = head[eos].clone()
    try:
        with torch.no_grad():  # make EOS the argmax exactly where token 3 was chosen
            head[eos] = head[ids[3]] * 3
        r = capture_sample(b, s, DecodingConfig(max_new_tokens=6), SaliencyConfig(candidates=1), "r")
    finally:
        with torch.no_grad():
            head[eos] = saved
    toks = r.tables["tokens"].to_pylist()
    assert toks[-1]["token_id"] == eos and len(toks) <= 4
    assert toks[-1]["token_text"] == "" and toks[-1]["char_start"] == toks[-1]["char_end"]
    text = r.tables["samples"].to_pylist()[0]["output_text"]
    assert toks[-1]["char_end"] == len(text)
    assert r.tables["saliency"].num_rows == len(toks) * b.n_layers  # EOS has saliency rows too


def test_sampling_is_seeded_per_sample():
    dec = DecodingConfig(max_new_tokens=10, strategy="sample", seed=7)
    _, a = _capture("qwen2", dec=dec)
    _, b = _capture("qwen2", dec=dec)
    _, c = _capture("qwen2", dec=DecodingConfig(max_new_tokens=10, strategy="sample", seed=8))
    ids = [x.tables["tokens"].column("token_id").to_pylist() for x in (a, b, c)]
    assert ids[0] == ids[1] and ids[0] != ids[2]


@pytest.mark.parametrize("heads", ["sum_abs", "abs_sum"])
def test_verify_records_diff(heads):
    _, r = _capture("qwen2_vl", SaliencyConfig(verify=True, heads=heads))
    assert 0 <= r.stats["verify_max_abs_diff"] <= 1e-10


def test_float32_verify():
    b = tiny_bundle("llava", dtype="float32")
    s = ManifestSample("f32", "Describe the image.", image=image_path())
    r = capture_sample(b, s, DecodingConfig(max_new_tokens=5), SaliencyConfig(verify=True), "r")
    assert r.stats["verify_max_abs_diff"] < 1e-5


def test_text_sample_after_image_sample_on_qwen_vl():
    # Qwen2-VL caches rope_deltas across calls; a text-only sample must not reuse the image sample's.
    b = tiny_bundle("qwen2_vl")
    capture_sample(b, ManifestSample("i", "Describe.", image=image_path()), DecodingConfig(max_new_tokens=3),
                   SaliencyConfig(), "r")
    r = capture_sample(b, ManifestSample("t", "Describe."), DecodingConfig(max_new_tokens=4),
                       SaliencyConfig(verify=True), "r")
    assert r.stats["verify_max_abs_diff"] <= 1e-10
    assert r.tables["saliency"].to_pandas()["img_sum"].eq(0).all()


def test_locore_hooks_apply_in_generation_and_saliency():
    dec = DecodingConfig(max_new_tokens=8, locore=LocoREConfig(beta=3.0, window=3))
    _, boosted = _capture("llama", SaliencyConfig(verify=True), dec=dec)
    # The reference applies the same hooks, so single pass and reference still agree exactly.
    assert boosted.stats["verify_max_abs_diff"] <= 1e-10
    # Same output ids, with and without the hooks: LocoRE starts at step 2 (first query with an earlier
    # output key), and there it multiplies attention on recent outputs by 1 + beta.
    b = tiny_bundle("llama")
    p = b.adapter.prepare(b, ManifestSample("h", "Describe the image."))
    out = decode(b, p, DecodingConfig(max_new_tokens=8)).output_ids
    plain = single_pass(b, p, out)
    hooked = single_pass(b, p, out, hooks=intervention_hooks(dec, p.n_input))
    a, c = plain.sums["attn_out_sum"], hooked.sums["attn_out_sum"]
    np.testing.assert_allclose(a[:2], c[:2], rtol=1e-12)
    assert (c[2:] > a[2:] * 1.5).all()


def test_sgrs_strategy_runs_or_clear_error():
    dec = DecodingConfig(max_new_tokens=4, strategy="sgrs")
    try:
        import saliency_lab.decoding.sgrs  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(SaliencyLabError, match="sgrs is not available"):
            _capture("llama", dec=dec)
        return
    _, r = _capture("llama", dec=dec, sal=SaliencyConfig(verify=True))
    assert r.stats["verify_max_abs_diff"] <= 1e-10
    toks = r.tables["tokens"].to_pandas()
    assert toks["accepted"].notna().all() and toks["n_rejected"].notna().all()
    d = r.tables["decisions"].to_pandas()
    assert set(d["step"]) == set(toks["step"])
