"""Thread defaults (saliency_lab.threads) and `--shard auto` launcher detection (saliency_lab.launch)."""

import sys
import types

import pytest

from saliency_lab.cli import main
from saliency_lab.errors import SaliencyLabError
from saliency_lab.launch import detect_launch, device_for
from saliency_lab.threads import default_threads, resolve_threads


@pytest.mark.parametrize(
    "env,cores,expected",
    [
        ({}, 2, 1),  # a shared 2-core machine: one thread
        ({}, 1, 1),
        ({}, 16, 8),
        ({}, 64, 8),  # capped: more threads than this rarely help a per-sample capture
        ({"LOCAL_WORLD_SIZE": "4"}, 32, 4),  # four torchrun processes share the node's cores
        ({"SLURM_NTASKS_PER_NODE": "2"}, 8, 2),
        ({"SLURM_CPUS_PER_TASK": "6"}, 64, 6),  # an allocation is used as given
        ({"OMP_NUM_THREADS": "3", "SLURM_CPUS_PER_TASK": "6"}, 64, 3),
        ({"OMP_NUM_THREADS": "zero"}, 16, 8),  # unusable values are ignored
    ],
)
def test_default_threads(env, cores, expected):
    assert default_threads(env, cores=cores) == expected


def test_resolve_threads():
    assert resolve_threads(5, {}) == 5
    assert resolve_threads(None, {"OMP_NUM_THREADS": "2"}) == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(SaliencyLabError, match="--threads"):
            resolve_threads(bad, {})


@pytest.mark.parametrize(
    "env,expected",
    [
        ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, (1, 4, 1, "torchrun")),
        ({"RANK": "0", "WORLD_SIZE": "1"}, (0, 1, None, "torchrun")),
        # torchrun wins over the SLURM allocation it runs inside
        (
            {"RANK": "2", "WORLD_SIZE": "3", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"},
            (2, 3, None, "torchrun"),
        ),
        (
            {
                "SLURM_ARRAY_TASK_ID": "3",
                "SLURM_ARRAY_TASK_COUNT": "4",
                "SLURM_PROCID": "0",
                "SLURM_NTASKS": "1",
            },
            (3, 4, None, "slurm-array"),
        ),
        (
            {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "8"},
            (4, 8, None, "slurm-array"),
        ),  # --array=1-8
        ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}, (5, 8, 1, "slurm-tasks")),
    ],
)
def test_detect_launch(env, expected):
    launch = detect_launch(env)
    assert (launch.rank, launch.world_size, launch.local_rank, launch.source) == expected


@pytest.mark.parametrize(
    "env,match",
    [
        ({}, "no launcher found"),
        ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x' is not an integer"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "out of range"),
        ({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "4"}, "contiguous"),  # --array=0,9,...
    ],
)
def test_detect_launch_errors(env, match):
    with pytest.raises(SaliencyLabError, match=match):
        detect_launch(env)


def test_device_for():
    launch = detect_launch({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert device_for("cuda", launch) == "cuda:1"
    assert device_for("cuda:0", launch) == "cuda:0"  # an explicit index is kept
    assert device_for("cpu", launch) == "cpu"
    assert (
        device_for("cuda", detect_launch({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2"}))
        == "cuda"
    )


def test_cli_one_line_errors(tmp_path, capsys, monkeypatch):
    for name in (
        "RANK",
        "WORLD_SIZE",
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_PROCID",
        "SLURM_NTASKS",
    ):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "m.jsonl").write_text('{"sample_id": "a", "prompt": "x"}\n')
    base = [
        "capture",
        "--model",
        str(tmp_path / "nomodel"),
        "--data",
        str(tmp_path / "m.jsonl"),
        "--out",
        str(tmp_path / "runs"),
    ]
    for extra, match in (
        (["--shard", "auto"], "--shard auto: no launcher found"),
        (["--threads", "0"], "--threads 0: must be an integer >= 1"),
        (["--max-pass-tokens", "0"], "--max-pass-tokens 0: must be an integer >= 1"),
    ):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("saliency-lab: error: ") and match in err and "\n" not in err, err
    assert not (tmp_path / "runs").exists()  # nothing written


class _NoTorch(types.SimpleNamespace):
    """A `sys` stand-in whose modules hold no torch: configure_threads then only sets environment variables."""

    def __init__(self):
        super().__init__(modules={k: v for k, v in sys.modules.items() if k != "torch"})


def test_configured_threads_reach_duckdb(tmp_path, monkeypatch):
    import saliency_lab.threads as threads_mod
    from saliency_lab.store.catalog import open_catalog
    from saliency_lab.testing.synthetic import SyntheticSpec, make_run

    run = make_run(tmp_path, "r", SyntheticSpec(n_samples=2, n_layers=2, seed=1))
    monkeypatch.setattr(threads_mod, "_configured", None)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "POLARS_MAX_THREADS"):  # restored after the test
        monkeypatch.setenv(name, "1")
    torch = sys.modules.get("torch")
    if torch is not None:
        monkeypatch.setattr(threads_mod, "sys", _NoTorch())  # keep this process's torch pool as it is
    assert threads_mod.configure_threads(3) == 3
    with open_catalog([run]) as cat:
        assert cat.sql("SELECT current_setting('threads')").fetchall()[0][0] == 3
    with open_catalog([run], threads=2) as cat:  # an explicit value (sql --threads) wins
        assert cat.sql("SELECT current_setting('threads')").fetchall()[0][0] == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["analyze", "r", "--labels", "x", "--out", "o"],
        ["calibrate", "r", "--labels", "x", "--out", "o"],
        ["report", "r", "-o", "x.html"],
        ["demo"],
        ["label", "chair", "--run", "r"],
        ["label", "pope", "--run", "r"],
        ["label", "human", "--run", "r", "--file", "f"],
    ],
)
def test_every_computing_command_takes_threads(argv):
    from saliency_lab.cli import build_parser

    args = build_parser().parse_args([*argv, "--threads", "2"])
    assert args.threads == 2 and args.configure_threads


def test_resume_accepts_old_runs_and_other_threads_or_pass_bounds(tmp_path):
    """A run made before --saliency-precision (no precision in run.json) is the "model" precision; threads and
    --max-pass-tokens may change between processes; another precision is refused."""
    import json

    from saliency_lab.config import CaptureConfig, ModelConfig, SaliencyConfig
    from saliency_lab.store.runinfo import build_run_info, write_or_check_run_info

    def info(**sal):
        cfg = CaptureConfig(ModelConfig("m"), "d.jsonl", "o", saliency=SaliencyConfig(**sal))
        return build_run_info(cfg, "r", {"weights_sha256": "0" * 64}, tmp_path / "d.jsonl", "f" * 64)

    old = info(precision="model")
    del old["saliency"]["precision"], old["saliency"]["max_pass_tokens"]
    (tmp_path / "run.json").write_text(json.dumps({**old, "threads": 4}))
    write_or_check_run_info(tmp_path, {**info(precision="model", max_pass_tokens=64), "threads": 1})
    with pytest.raises(SaliencyLabError, match="saliency.precision"):
        write_or_check_run_info(tmp_path, info(precision="float32"))
