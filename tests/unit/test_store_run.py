"""The capture loop (run.capture) with an injected model-free capture function."""

import argparse
import json

import pyarrow.parquet as pq
import pytest
from _store_fakes import fake_capture, fake_load, write_manifest

from saliency_lab.cli import capture as capture_cli
from saliency_lab.config import CaptureConfig, ModelConfig
from saliency_lab.errors import SaliencyLabError
from saliency_lab.manifest import shard_of
from saliency_lab.run import capture


def _parser() -> argparse.ArgumentParser:
    # Only the capture command: the full CLI imports every command group (torch, transformers), too slow here.
    parser = argparse.ArgumentParser(prog="saliency-lab")
    capture_cli.register(parser.add_subparsers())
    return parser


def _cfg(tmp_path, manifest, **kw):
    return CaptureConfig(model=ModelConfig("fake"), data=str(manifest), out=str(tmp_path / "runs"),
                         run_id=kw.pop("run_id", "r"), quiet=True, samples_per_part=kw.pop("spp", 4), **kw)


def _tables(run_dir, name):
    t = pq.read_table(run_dir / name)  # all shards, hive-partitioned folder
    drop = [c for c in ("seconds", "shard") if c in t.schema.names]
    t = t.drop_columns(drop)
    keys = [k for k in ("sample_id", "step", "layer") if k in t.schema.names]
    return t.sort_by([(k, "ascending") for k in keys]).to_pylist()


def test_error_rows_and_run_continues(tmp_path):
    m = tmp_path / "m.jsonl"
    lines = [{"sample_id": "ok1", "prompt": "hi"},
             {"sample_id": "noimg", "prompt": "hi", "image": "missing.png", "image_id": "9", "meta": {"k": 1}},
             {"sample_id": "long", "prompt": "x" * 500},
             {"sample_id": "ok2", "prompt": "hello"}]
    m.write_text("\n".join(json.dumps(x) for x in lines))
    res = capture(_cfg(tmp_path, m), load_fn=fake_load, capture_fn=fake_capture)
    assert (res.ok, res.error, res.skipped, res.total) == (2, 2, 0, 4)
    rows = {r["sample_id"]: r for r in _tables(res.run_dir, "samples")}
    bad = rows["noimg"]
    assert bad["status"] == "error" and "missing.png" in bad["error"] and "\n" not in bad["error"]
    assert bad["image_id"] == "9" and bad["image_path"] == str(tmp_path.resolve() / "missing.png")
    assert json.loads(bad["meta"]) == {"k": 1} and bad["n_output"] is None
    assert rows["long"]["status"] == "error" and "context" in rows["long"]["error"]
    assert rows["ok1"]["status"] == rows["ok2"]["status"] == "ok"
    assert {r["sample_id"] for r in _tables(res.run_dir, "tokens")} == {"ok1", "ok2"}


def test_crash_then_resume_equals_uninterrupted(tmp_path):
    m = write_manifest(tmp_path / "m.jsonl", 23)
    full = capture(_cfg(tmp_path, m, run_id="full"), load_fn=fake_load, capture_fn=fake_capture)

    calls = []

    def crashing(bundle, sample, dec, sal, run_id):
        calls.append(sample.sample_id)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return fake_capture(bundle, sample, dec, sal, run_id)

    cfg = _cfg(tmp_path, m, run_id="part")
    with pytest.raises(KeyboardInterrupt):
        capture(cfg, load_fn=fake_load, capture_fn=crashing)
    run_dir = tmp_path / "runs" / "part"
    # the 9 samples completed before Ctrl-C are committed (2 full parts + the flushed remainder)
    assert len(_tables(run_dir, "samples")) == 9
    with pytest.raises(SaliencyLabError, match="--resume"):
        capture(cfg, load_fn=fake_load, capture_fn=fake_capture)
    cfg.resume = True
    res = capture(cfg, load_fn=fake_load, capture_fn=fake_capture)
    assert (res.ok, res.skipped) == (14, 9)
    for name in ("samples", "tokens", "saliency"):
        a, b = _tables(full.run_dir, name), _tables(run_dir, name)
        for r in a + b:
            r.pop("run_id")
        assert a == b, name
    again = capture(cfg, load_fn=fake_load, capture_fn=fake_capture)  # nothing left: no duplicates
    assert (again.ok, again.skipped) == (0, 23)
    assert len(_tables(run_dir, "samples")) == 23


def test_shards_together_equal_unsharded_run(tmp_path):
    m = write_manifest(tmp_path / "m.jsonl", 30)
    whole = capture(_cfg(tmp_path, m, run_id="whole"), load_fn=fake_load, capture_fn=fake_capture)
    totals = 0
    for k in range(3):
        r = capture(_cfg(tmp_path, m, run_id="sh", shard=(k, 3)), load_fn=fake_load, capture_fn=fake_capture)
        totals += r.total
        ids = pq.read_table(r.run_dir / "samples" / f"shard={k}").column("sample_id").to_pylist()
        assert all(shard_of(i, 3) == k for i in ids)
    assert totals == 30
    info = json.loads((tmp_path / "runs" / "sh" / "run.json").read_text())
    assert info["shards"] == 3
    for name in ("samples", "tokens", "saliency"):
        a, b = _tables(whole.run_dir, name), _tables(tmp_path / "runs" / "sh", name)
        for r in a + b:
            r.pop("run_id")
        assert a == b


def test_resume_with_other_config_is_refused(tmp_path):
    m = write_manifest(tmp_path / "m.jsonl", 3)
    capture(_cfg(tmp_path, m), load_fn=fake_load, capture_fn=fake_capture)
    cfg = _cfg(tmp_path, m, resume=True)
    cfg.decoding.max_new_tokens = 5
    with pytest.raises(SaliencyLabError, match="different configuration: decoding.max_new_tokens"):
        capture(cfg, load_fn=fake_load, capture_fn=fake_capture)


def test_default_run_id_is_stable_and_config_dependent(tmp_path):
    m = write_manifest(tmp_path / "m.jsonl", 2)
    cfg = _cfg(tmp_path, m, run_id=None)
    a = capture(cfg, load_fn=fake_load, capture_fn=fake_capture).run_id
    cfg.resume = True
    assert capture(cfg, load_fn=fake_load, capture_fn=fake_capture).run_id == a
    cfg.decoding.seed = 3
    assert capture(cfg, load_fn=fake_load, capture_fn=fake_capture).run_id != a
    assert a.startswith("fake-m-")


def test_sgrs_score_choice_keeps_the_ids_of_runs_made_before_it(tmp_path):
    """The ids below were computed by the toolkit before SGRSConfig had `score` / `reject`: the paper's rule
    (the defaults) keeps them; another score or direction is another run."""
    from saliency_lab.config import DecodingConfig, SGRSConfig
    from saliency_lab.manifest import load_manifest
    from saliency_lab.run import default_run_id

    m = tmp_path / "m.jsonl"
    m.write_text('{"sample_id": "a", "prompt": "hi"}\n')

    def rid(strategy: str, **sgrs) -> str:
        cfg = CaptureConfig(model=ModelConfig("fake"), data=str(m), out=str(tmp_path),
                            decoding=DecodingConfig(strategy=strategy, sgrs=SGRSConfig(**sgrs)))
        return default_run_id(cfg, load_manifest(m))

    assert rid("greedy") == "fake-m-0778f927" and rid("sgrs") == "fake-m-6d584c4e"
    others = {rid("sgrs", score="source_share"), rid("sgrs", reject="high"), rid("sgrs", score="prev")}
    assert len(others) == 3 and "fake-m-6d584c4e" not in others


def test_cli_maps_flags_and_calibration(tmp_path):
    from saliency_lab.cli.capture import config_from_args

    cal = tmp_path / "calibration.json"
    cal.write_text(json.dumps({"recommended": {"alpha": 0.45, "window": 7, "layers": [1, 2]}}))
    args = _parser().parse_args([
        "capture", "--model", "m", "--data", "d.jsonl", "--strategy", "sgrs", "--calibration", str(cal),
        "--sgrs-window", "3", "--shard", "1/4", "--candidates", "5", "--rows", "all", "--heads", "abs_sum",
        "--locore-beta", "0.15", "--max-new-tokens", "9", "--dtype", "float64", "--seed", "4", "--resume",
    ])
    cfg = config_from_args(args)
    assert cfg.decoding.sgrs.alpha == 0.45 and cfg.decoding.sgrs.layers == [1, 2]
    assert cfg.decoding.sgrs.window == 3  # explicit flag beats the calibration file
    assert (cfg.decoding.sgrs.score, cfg.decoding.sgrs.reject) == ("out_mean", "low")  # the paper's rule
    cal.write_text(json.dumps({"recommended": {"alpha": 0.45, "score": "source_share", "reject": "high"}}))
    args = _parser().parse_args(["capture", "--model", "m", "--data", "d.jsonl", "--strategy", "sgrs",
                                 "--calibration", str(cal)])
    assert (config_from_args(args).decoding.sgrs.score, config_from_args(args).decoding.sgrs.reject) == (
        "source_share", "high")
    args = _parser().parse_args(["capture", "--model", "m", "--data", "d.jsonl", "--strategy", "sgrs",
                                 "--calibration", str(cal), "--sgrs-score", "prev", "--sgrs-reject", "low"])
    sgrs = config_from_args(args).decoding.sgrs
    assert (sgrs.alpha, sgrs.score, sgrs.reject) == (0.45, "prev", "low")  # flags override the file
    assert cfg.shard == (1, 4) and cfg.resume and cfg.decoding.seed == 4
    assert (cfg.saliency.candidates, cfg.saliency.rows, cfg.saliency.heads) == (5, "all", "abs_sum")
    assert cfg.decoding.locore.beta == 0.15 and cfg.decoding.locore.window == 5
    assert cfg.model.dtype == "float64" and cfg.decoding.max_new_tokens == 9
    cal.write_text("{}")
    with pytest.raises(SaliencyLabError, match='no "recommended" object'):
        config_from_args(args)


def test_cli_bad_shard_is_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["capture", "--model", "m", "--data", "d", "--shard", "4/4"])
    assert exc.value.code == 2 and "need 0 <= k < N" in capsys.readouterr().err
