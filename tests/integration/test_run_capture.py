"""`saliency-lab capture` on real tiny models: the dataset round trip and every documented bad input."""

import json

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from _run_fixtures import read_sorted, tiny_llama, tiny_llava, write_text_manifest  # noqa: F401
from PIL import Image

from saliency_lab.cli import main
from saliency_lab.config import CaptureConfig, ModelConfig, SaliencyConfig
from saliency_lab.run import capture
from saliency_lab.store.schema import SCHEMAS


def test_round_trip_on_tiny_llama(tmp_path, tiny_llama):  # noqa: F811
    m = write_text_manifest(tmp_path / "m.jsonl", 5)
    cfg = CaptureConfig(model=ModelConfig(str(tiny_llama)), data=str(m), out=str(tmp_path / "runs"), run_id="rt",
                        saliency=SaliencyConfig(candidates=2, rows="output"), samples_per_part=2, quiet=True)
    cfg.decoding.max_new_tokens = 10
    res = capture(cfg)
    assert (res.ok, res.error) == (5, 0)
    n_layers = json.loads((res.run_dir / "run.json").read_text())["model"]["n_layers"]
    assert n_layers == 2
    for name in ("samples", "tokens", "saliency", "candidates", "rows"):
        files = sorted((res.run_dir / name / "shard=0").glob("part-*.parquet"))
        assert len(files) == 3  # 2 + 2 + 1 samples
        assert all(pq.read_schema(f).equals(SCHEMAS[name]) for f in files)
    samples = read_sorted(res.run_dir, "samples")
    tokens = read_sorted(res.run_dir, "tokens")
    sal = read_sorted(res.run_dir, "saliency")
    cands = read_sorted(res.run_dir, "candidates")
    rows = read_sorted(res.run_dir, "rows")
    for s in samples:
        sid, n_out = s["sample_id"], s["n_output"]
        assert s["status"] == "ok" and n_out >= 1 and json.loads(s["meta"])["i"] == int(sid[1:])
        toks = [t for t in tokens if t["sample_id"] == sid]
        assert [t["step"] for t in toks] == list(range(n_out))
        text = s["output_text"]
        assert "".join(text[t["char_start"]:t["char_end"]] for t in toks) == text
        assert all(text[t["char_start"]:t["char_end"]] == t["token_text"] for t in toks)
        s_rows = [r for r in sal if r["sample_id"] == sid]
        assert len(s_rows) == n_out * n_layers
        assert {(r["step"], r["layer"]) for r in s_rows} == {(p, layer) for p in range(n_out)
                                                             for layer in range(n_layers)}
        assert sum(1 for r in cands if r["sample_id"] == sid) == n_out * 2 * n_layers
        assert sum(1 for r in rows if r["sample_id"] == sid) == n_out * n_layers
    # the dataset is readable as is by DuckDB with the hive shard column
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{res.run_dir}/saliency/*/*.parquet', "
                   "hive_partitioning=true) WHERE shard = 0").fetchall()[0][0]
    assert n == len(sal)


def test_bad_samples_become_error_rows_and_run_continues(tmp_path, tiny_llava):  # noqa: F811
    Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype("uint8")).save(tmp_path / "ok.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n definitely not an image")
    lines = [
        {"sample_id": "good", "prompt": "What is shown?", "image": "ok.png"},
        {"sample_id": "missing", "prompt": "What is shown?", "image": "nope.png"},
        {"sample_id": "corrupt", "prompt": "What is shown?", "image": "corrupt.png"},
        {"sample_id": "too-long", "prompt": "word " * 1500},
        {"sample_id": "text", "prompt": "Say something."},
    ]
    m = tmp_path / "m.jsonl"
    m.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    rc = main(["capture", "--model", str(tiny_llava), "--data", str(m), "--out", str(tmp_path / "runs"),
               "--run-id", "bad", "--max-new-tokens", "6", "--quiet"])
    assert rc == 0
    rows = {r["sample_id"]: r for r in read_sorted(tmp_path / "runs" / "bad", "samples")}
    assert rows["good"]["status"] == rows["text"]["status"] == "ok"
    expect = {"missing": "not found", "corrupt": "not a readable image", "too-long": "exceeds the context"}
    for sid, words in expect.items():
        r = rows[sid]
        assert r["status"] == "error" and words in r["error"] and "\n" not in r["error"], r
        assert r["prompt"] == lines[[x["sample_id"] for x in lines].index(sid)]["prompt"]
    assert rows["missing"]["image_path"] == str((tmp_path / "nope.png").resolve())
    assert {t["sample_id"] for t in read_sorted(tmp_path / "runs" / "bad", "tokens")} == {"good", "text"}


def test_input_errors_exit_2_with_one_line(tmp_path, capsys, tiny_llama):  # noqa: F811
    good = write_text_manifest(tmp_path / "m.jsonl", 2)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sample_id": "a", "prompt": "x"}\n{"sample_id": "b", "prompt": "y",}\n')
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"sample_id": "a", "prompt": "x"}\n{"sample_id": "a", "prompt": "y"}\n')
    weird = tmp_path / "weird-model"
    weird.mkdir()
    (weird / "config.json").write_text(json.dumps({"architectures": ["FrobnicatorForCausalLM"]}))
    out = str(tmp_path / "runs")
    cases = [
        (["--model", str(tiny_llama), "--data", str(bad)], "bad.jsonl, line 2: malformed JSON"),
        (["--model", str(tiny_llama), "--data", str(dup)], "dup.jsonl, line 2: duplicate sample_id 'a'"),
        (["--model", str(weird), "--data", str(good)], "unsupported model architecture 'FrobnicatorForCausalLM'"),
    ]
    for args, message in cases:
        rc = main(["capture", *args, "--out", out, "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and err.count("\n") == 1, err
    # nothing was written by the refused runs except run folders never created
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.parquet"))

    # a dataset written by a newer toolkit is refused on resume, before any model is loaded
    assert main(["capture", "--model", str(tiny_llama), "--data", str(good), "--out", out, "--run-id", "r",
                 "--max-new-tokens", "4", "--quiet"]) == 0
    capsys.readouterr()
    info_path = tmp_path / "runs" / "r" / "run.json"
    info = json.loads(info_path.read_text())
    info["schema_version"] += 1
    info_path.write_text(json.dumps(info))
    rc = main(["capture", "--model", str(tiny_llama), "--data", str(good), "--out", out, "--run-id", "r",
               "--max-new-tokens", "4", "--resume", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "newer than this toolkit" in err and err.count("\n") == 1


@pytest.mark.parametrize("flag", ["--heads", "--strategy"])
def test_cli_rejects_unknown_choices(flag, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["capture", "--model", "m", "--data", "d", flag, "bogus"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
