import json
import multiprocessing as mp
from pathlib import Path

import pytest

from saliency_lab.config import CaptureConfig, ModelConfig
from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.runinfo import build_run_info, write_or_check_run_info
from saliency_lab.store.runs import read_run_info
from saliency_lab.store.schema import SCHEMA_VERSION

MODEL_INFO = {"id": "m", "path": "/x/m", "architecture": "LlamaForCausalLM", "weights_sha256": "ab" * 32,
              "dtype": "float32", "device": "cpu", "n_layers": 2, "n_heads": 4}


def _info(seed=0, shards=1, device="cpu", path="/data/m.jsonl", sha="f" * 64):
    cfg = CaptureConfig(model=ModelConfig("m"), data=path, out="o", shard=(0, shards))
    cfg.decoding.seed = seed
    return build_run_info(cfg, "r1", {**MODEL_INFO, "device": device}, Path(path), sha)


def test_fields_and_round_trip(tmp_path):
    info = _info()
    for key in ("run_id", "created_at", "toolkit_version", "schema_version", "model", "decoding", "saliency",
                "manifest", "shards", "conventions"):
        assert key in info
    assert info["schema_version"] == SCHEMA_VERSION and info["shards"] == 1
    assert info["manifest"]["sha256"] == "f" * 64
    assert "upper half" in info["conventions"]["default_target_layers"]
    assert "query time" in info["conventions"]["normalization"]
    stored = write_or_check_run_info(tmp_path, info)
    assert stored == info == read_run_info(tmp_path)


def test_same_config_accepted_other_device_and_manifest_path_too(tmp_path):
    write_or_check_run_info(tmp_path, _info())
    # another shard process on another GPU with the manifest at another path: same run
    write_or_check_run_info(tmp_path, _info(device="cuda:3", path="/elsewhere/m.jsonl"))


@pytest.mark.parametrize("kwargs, field", [({"seed": 1}, "decoding.seed"), ({"shards": 4}, "shards"),
                                           ({"sha": "0" * 64}, "manifest.sha256")])
def test_different_config_is_refused(tmp_path, kwargs, field):
    write_or_check_run_info(tmp_path, _info())
    with pytest.raises(SaliencyLabError) as err:
        write_or_check_run_info(tmp_path, _info(**kwargs))
    msg = str(err.value)
    assert field in msg and "new --run-id" in msg and "\n" not in msg


def test_newer_schema_version_is_refused(tmp_path):
    info = _info()
    info["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "run.json").write_text(json.dumps(info))
    with pytest.raises(SaliencyLabError, match="newer than this toolkit"):
        read_run_info(tmp_path)
    with pytest.raises(SaliencyLabError, match="newer than this toolkit"):
        write_or_check_run_info(tmp_path, _info())


def _create(args):
    run_dir, seed = args
    try:
        write_or_check_run_info(run_dir, _info(seed=seed))
        return "ok"
    except SaliencyLabError:
        return "refused"


def test_concurrent_creators_one_config_wins(tmp_path):
    # Eight processes race to create run.json; exactly the config that landed is accepted by everyone with it.
    ctx = mp.get_context("fork")
    with ctx.Pool(4) as pool:
        results = pool.map(_create, [(tmp_path, i % 2) for i in range(8)])
    winner = json.loads((tmp_path / "run.json").read_text())["decoding"]["seed"]
    assert [r == "ok" for r in results] == [i % 2 == winner for i in range(8)]
    assert not list(tmp_path.glob(".run.json*"))  # no temporary files left


def test_run_made_before_the_loss_gradient_rule_is_not_resumed(tmp_path):
    """A run captured before toolkit 0.2.0 (no `conventions.loss_gradient`) computed float32 saliency of confident
    tokens with the cancelling formula: resuming it would mix both rules in one dataset."""
    old = _info()
    del old["conventions"]["loss_gradient"]
    (tmp_path / "run.json").write_text(json.dumps(old))
    with pytest.raises(SaliencyLabError) as err:
        write_or_check_run_info(tmp_path, _info())
    msg = str(err.value)
    assert "conventions.loss_gradient" in msg and "new --run-id" in msg and "\n" not in msg
