"""Config validation: impossible decoding / SGRS / LocoRE / saliency settings are refused by `run.capture`
with one line naming the flag, before the model is loaded and before anything is written."""

import argparse
import json

import pytest
from _store_fakes import FakeBundle, fake_capture, write_manifest

from saliency_lab.cli import capture as capture_cli
from saliency_lab.config import (
    CaptureConfig,
    DecodingConfig,
    LocoREConfig,
    ModelConfig,
    SaliencyConfig,
    SGRSConfig,
    validate_layers,
)
from saliency_lab.decoding.loop import target_layers
from saliency_lab.errors import SaliencyLabError
from saliency_lab.run import capture

BAD_DECODING = [
    (dict(sgrs=SGRSConfig(alpha=-0.1)), "--sgrs-alpha -0.1"),
    (dict(sgrs=SGRSConfig(alpha=float("nan"))), "--sgrs-alpha nan"),
    (dict(sgrs=SGRSConfig(window=0)), "--sgrs-window 0"),
    (dict(sgrs=SGRSConfig(k=0)), "--sgrs-k 0"),
    (dict(sgrs=SGRSConfig(max_resample=0)), "--sgrs-max-resample 0"),
    (dict(sgrs=SGRSConfig(k=2, max_resample=3)), "--sgrs-max-resample 3: at most --sgrs-k (2)"),
    (dict(sgrs=SGRSConfig(layers=[-1, 2])), "--sgrs-layers -1,2"),
    (dict(sgrs=SGRSConfig(layers=[])), "--sgrs-layers"),
    (dict(locore=LocoREConfig(beta=-0.5)), "--locore-beta -0.5"),
    (dict(locore=LocoREConfig(beta=-2.0)), "--locore-beta -2.0"),
    (dict(locore=LocoREConfig(window=0)), "--locore-window 0"),
    (dict(locore=LocoREConfig(mode="bogus")), "--locore-mode 'bogus'"),
    (dict(temperature=0.0), "--temperature 0.0"),
    (dict(temperature=-1.0, strategy="sample"), "--temperature -1.0"),
    (dict(max_new_tokens=0), "--max-new-tokens 0"),
    (dict(top_k=-1), "--top-k -1"),
    (dict(strategy="beam"), "--strategy 'beam'"),
    (dict(seed=1.5), "--seed 1.5"),
]


def _cfg(tmp_path, data, **kw):
    return CaptureConfig(model=ModelConfig("fake"), data=str(data), out=str(tmp_path / "runs"),
                         run_id=kw.pop("run_id", "r"), quiet=True, **kw)


def _no_load(model_cfg):
    raise AssertionError("the model must not be loaded for a config error")


@pytest.mark.parametrize("decoding, flag", BAD_DECODING)
def test_bad_decoding_is_refused_before_manifest_model_and_writes(tmp_path, decoding, flag):
    # The manifest does not exist: the config error must come first (nothing read, loaded or written).
    cfg = _cfg(tmp_path, tmp_path / "missing.jsonl", decoding=DecodingConfig(**decoding))
    with pytest.raises(SaliencyLabError) as err:
        capture(cfg, load_fn=_no_load, capture_fn=fake_capture)
    msg = str(err.value)
    assert msg.startswith(flag) and "\n" not in msg and ":" in msg
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("saliency, flag", [
    (SaliencyConfig(candidates=-1), "--candidates -1"),
    (SaliencyConfig(heads="mean"), "--heads 'mean'"),
    (SaliencyConfig(rows="some"), "--rows 'some'"),
])
def test_bad_saliency_settings_are_refused(tmp_path, saliency, flag):
    cfg = _cfg(tmp_path, write_manifest(tmp_path / "m.jsonl", 2), saliency=saliency)
    with pytest.raises(SaliencyLabError, match="^" + flag.replace("(", r"\(")):
        capture(cfg, load_fn=_no_load, capture_fn=fake_capture)
    assert not (tmp_path / "runs").exists()


def test_sgrs_layers_out_of_range_refused_after_load_before_run_json(tmp_path):
    loaded = []

    def load(model_cfg):
        loaded.append(model_cfg)
        return FakeBundle(n_layers=3)

    dec = DecodingConfig(strategy="sgrs", sgrs=SGRSConfig(layers=[1, 3]))
    cfg = _cfg(tmp_path, write_manifest(tmp_path / "m.jsonl", 2), decoding=dec)
    with pytest.raises(SaliencyLabError, match=r"^--sgrs-layers 1,3: the model has layers 0\.\.2"):
        capture(cfg, load_fn=load, capture_fn=fake_capture)
    assert len(loaded) == 1
    assert not (tmp_path / "runs" / "r" / "run.json").exists()
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*"))
    # The same layers are fine for a greedy run (SGRS layers are unused there) ...
    ok = capture(_cfg(tmp_path, tmp_path / "m.jsonl", run_id="g",
                      decoding=DecodingConfig(sgrs=SGRSConfig(layers=[1, 3]))),
                 load_fn=load, capture_fn=fake_capture)
    assert ok.ok == 2
    # ... and in range for SGRS.
    DecodingConfig(strategy="sgrs", sgrs=SGRSConfig(layers=[1, 2])).validate(n_layers=3)


def test_boundary_values_are_accepted():
    DecodingConfig().validate()
    DecodingConfig(strategy="sgrs", temperature=0.01, top_k=0,
                   sgrs=SGRSConfig(alpha=0.0, window=1, k=3, max_resample=3, layers=[0]),
                   locore=LocoREConfig(beta=0.0, window=1, mode="logit_offset")).validate(n_layers=1)
    SaliencyConfig(candidates=0, rows="all", heads="abs_sum").validate()


def test_layer_check_is_shared_with_the_decoding_loop():
    assert target_layers(4, [3, 2, 3]) == [2, 3]
    assert target_layers(4, None) == [2, 3]
    for bad in ([4], [-1]):
        with pytest.raises(SaliencyLabError) as a:
            target_layers(4, bad)
        with pytest.raises(SaliencyLabError) as b:
            validate_layers(bad, 4)
        assert str(a.value) == str(b.value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saliency-lab")
    capture_cli.register(parser.add_subparsers())
    return parser


@pytest.mark.parametrize("flags, flag", [
    (["--sgrs-window", "0"], "--sgrs-window 0"),
    (["--sgrs-k", "2"], "--sgrs-max-resample 3"),
    (["--locore-beta", "-1.5"], "--locore-beta -1.5"),
    (["--max-new-tokens", "0"], "--max-new-tokens 0"),
    (["--temperature", "0"], "--temperature 0.0"),
    (["--samples-per-part", "0"], "--samples-per-part 0"),
])
def test_cli_flags_reach_the_same_checks(tmp_path, flags, flag):
    cal = tmp_path / "c.json"
    cal.write_text(json.dumps({"recommended": {"alpha": 0.5}}))
    args = _parser().parse_args(["capture", "--model", "m", "--data", str(tmp_path / "d.jsonl"),
                                 "--out", str(tmp_path / "runs"), *flags])
    with pytest.raises(SaliencyLabError, match="^" + flag):
        capture(capture_cli.config_from_args(args), load_fn=_no_load, capture_fn=fake_capture)
    assert not (tmp_path / "runs").exists()
