"""Saliency-decay intervention (App. B.1) in the loop and as a whole capture run."""
# ruff: noqa: F811  (pytest fixtures imported from _decoding_fixtures are redefined as parameters)

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from _decoding_fixtures import decoding_image, decoding_models, prepare  # noqa: F401
from _run_fixtures import tiny_llama, write_text_manifest  # noqa: F401

from saliency_lab.config import CaptureConfig, DecodingConfig, ModelConfig, SaliencyDecayConfig
from saliency_lab.decoding import decode
from saliency_lab.decoding.decay import SaliencyDecayHook
from saliency_lab.errors import SaliencyLabError
from saliency_lab.run import capture
from saliency_lab.saliency.single_pass import single_pass


def decode_with_decay(bundle, prep, cfg: DecodingConfig, decay: SaliencyDecayConfig):
    return decode(bundle, prep, DecodingConfig(**{**cfg.__dict__, "decay": decay}))


def capture_decay(cfg: CaptureConfig, decay: SaliencyDecayConfig):
    cfg.decoding.decay = decay
    return capture(cfg)


def test_rate_one_is_baseline_and_fixed_steps_act_only_later(decoding_models):
    bundle = decoding_models("llama")
    prep = prepare(bundle, "llama", None, max_new_tokens=12)
    cfg = DecodingConfig(max_new_tokens=12)
    base = decode(bundle, prep, cfg).output_ids
    same = decode_with_decay(bundle, prep, cfg, SaliencyDecayConfig(rate=1.0, threshold=0.0))
    assert same.output_ids == base
    cut = decode_with_decay(bundle, prep, cfg, SaliencyDecayConfig(rate=0.0, steps=[1, 2, 3])).output_ids
    # the token at step 1 is first attended by the query at its own position, which predicts step 2
    assert cut[:2] == base[:2] and cut != base


@pytest.mark.parametrize("arch", ["llama", "qwen2_vl"])
def test_online_rule_decays_tokens_above_threshold(arch, decoding_models, decoding_image):
    bundle = decoding_models(arch)
    prep = prepare(bundle, arch, decoding_image, max_new_tokens=10)
    cfg = DecodingConfig(max_new_tokens=10)
    first = decode_with_decay(bundle, prep, cfg, SaliencyDecayConfig(rate=0.3, threshold=-1.0))
    assert first.stats["decayed_steps"] == list(range(1, len(first.output_ids)))
    thr = float(np.median([v for v in first.stats["prev_norm"] if v is not None]))
    res = decode_with_decay(bundle, prep, cfg, SaliencyDecayConfig(rate=0.3, threshold=thr))
    vals = res.stats["prev_norm"]
    assert vals[0] is None
    assert res.stats["decayed_steps"] == [s for s, v in enumerate(vals) if v is not None and v > thr]
    assert res.stats["decayed_steps"]
    # the online values equal the capture engine's single pass under the final decay hook
    (hook,) = res.hooks
    assert isinstance(hook, SaliencyDecayHook)
    assert sorted(p - prep.n_input for p in hook.positions) == res.stats["decayed_steps"]
    sp = single_pass(bundle, prep, res.output_ids, hooks=[hook])
    upper = list(range(bundle.n_layers // 2, bundle.n_layers))
    prev = sp.sums["prev"][:, upper] / sp.sums["row_l2"][:, upper]
    for s in range(1, len(vals)):
        assert vals[s] == pytest.approx(float(prev[s].mean()), rel=1e-5)


def test_decay_refuses_sgrs_strategy(decoding_models):
    bundle = decoding_models("llama")
    prep = prepare(bundle, "llama", None)
    with pytest.raises(SaliencyLabError, match="not sgrs"):
        decode_with_decay(bundle, prep, DecodingConfig(strategy="sgrs"), SaliencyDecayConfig(rate=0.5, steps=[1]))
    with pytest.raises(SaliencyLabError, match="--decay-layers"):
        decode_with_decay(bundle, prep, DecodingConfig(), SaliencyDecayConfig(rate=0.5, threshold=0.1, layers=[7]))


def test_capture_decay_run_records_the_intervention(tmp_path, tiny_llama):  # noqa: F811
    m = write_text_manifest(tmp_path / "m.jsonl", 2)
    cfg = CaptureConfig(model=ModelConfig(str(tiny_llama)), data=str(m), out=str(tmp_path / "runs"), quiet=True)
    cfg.decoding.max_new_tokens = 6
    base_id = capture(cfg).run_id
    decay = SaliencyDecayConfig(rate=0.2, threshold=-1.0)
    res = capture_decay(cfg, decay)
    assert (res.ok, res.error) == (2, 0) and res.run_id != base_id  # the decay is part of the run's identity
    run_json = json.loads((res.run_dir / "run.json").read_text())
    assert run_json["decoding"]["decay"]["rate"] == 0.2
    doc = json.loads((res.run_dir / "intervention.json").read_text())
    assert doc["decay"]["rate"] == 0.2 and set(doc["decayed_steps"]) == {"q000", "q001"}
    tokens = pq.read_table(res.run_dir / "tokens").to_pylist()
    for sid, steps in doc["decayed_steps"].items():
        n = sum(1 for t in tokens if t["sample_id"] == sid)
        assert steps == list(range(1, n))


def test_capture_cli_decay_flags_equal_the_python_api(tmp_path, tiny_llama, capsys):  # noqa: F811
    from saliency_lab.cli import main

    m = write_text_manifest(tmp_path / "m.jsonl", 2)
    argv = ["capture", "--model", str(tiny_llama), "--data", str(m), "--out", str(tmp_path / "cli"),
            "--max-new-tokens", "6", "--quiet"]
    assert main(argv + ["--decay-rate", "0.2", "--decay-threshold", "-1"]) == 0
    cfg = CaptureConfig(model=ModelConfig(str(tiny_llama)), data=str(m), out=str(tmp_path / "api"), quiet=True)
    cfg.decoding.max_new_tokens = 6
    api = capture_decay(cfg, SaliencyDecayConfig(rate=0.2, threshold=-1.0))
    cli_run = tmp_path / "cli" / api.run_id  # same default run id: same config and decay settings
    assert (cli_run / "intervention.json").read_text() == (api.run_dir / "intervention.json").read_text()
    for table in ("tokens", "saliency"):
        a = pq.read_table(cli_run / table).drop_columns(["run_id"]).to_pylist()
        b = pq.read_table(api.run_dir / table).drop_columns(["run_id"]).to_pylist()
        assert a == b
    capsys.readouterr()
    # bad combinations: one line naming the flag, nothing written
    for extra, word in ((["--decay-steps", "1,2"], "--decay-steps needs --decay-rate"),
                        (["--decay-rate", "0.5"], "--decay-steps S1,S2 or --decay-threshold T"),
                        (["--decay-rate", "0.5", "--decay-steps", "1", "--strategy", "sgrs"], "not sgrs"),
                        (["--decay-rate", "-1", "--decay-steps", "1"], "--decay-rate -1.0"),
                        (["--decay-rate", "0.5", "--decay-threshold", "0.1", "--decay-layers", "9"],
                         "--decay-layers 9")):
        assert main(argv[:-3] + ["--out", str(tmp_path / "bad"), "--quiet"] + extra) == 2
        err = capsys.readouterr().err.strip()
        assert word in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "bad").exists()
