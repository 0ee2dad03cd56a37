"""Batch planning: `split_batches` groups samples within the row and token caps, `BatchConfig` checks its flags,
and the CLI refuses a bad `--batch-size` with one line."""

import random

import pytest

from saliency_lab.cli import main
from saliency_lab.config import AUTO_MAX_BATCH, DEFAULT_MAX_BATCH_TOKENS, BatchConfig
from saliency_lab.errors import SaliencyLabError
from saliency_lab.pipeline.batch import split_batches


@pytest.mark.parametrize("seed", range(20))
def test_split_batches_respects_caps_and_covers_every_sample(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 300) for _ in range(rng.randint(1, 60))]
    rows, tokens, new = rng.randint(1, 16), rng.randint(50, 3000), rng.randint(1, 64)
    groups = split_batches(lengths, new, rows, tokens)
    flat = [i for g in groups for i in g]
    assert sorted(flat) == list(range(len(lengths)))
    for g in groups:
        assert 1 <= len(g) <= rows
        width = max(lengths[i] for i in g) + new
        # A group of several fits the token cap; only a sample too long on its own may exceed it, alone.
        assert len(g) * width <= tokens or len(g) == 1
        assert lengths[g[0]] == max(lengths[i] for i in g)  # the first member sets the padded width
    # Longest first: group widths never increase, so similar lengths share a batch.
    firsts = [lengths[g[0]] for g in groups]
    assert firsts == sorted(firsts, reverse=True)


def test_split_batches_fills_groups_greedily():
    # 10 samples of 20 tokens + 12 new = 32 per row; 100 tokens fit 3 rows.
    assert [len(g) for g in split_batches([20] * 10, 12, rows=8, tokens=100)] == [3, 3, 3, 1]
    assert [len(g) for g in split_batches([20] * 10, 12, rows=4, tokens=10_000)] == [4, 4, 2]
    assert split_batches([], 5, 4, 100) == []


def test_batch_config_limits_and_errors():
    assert BatchConfig().limits("cpu") == (AUTO_MAX_BATCH, DEFAULT_MAX_BATCH_TOKENS["cpu"])
    assert BatchConfig(size=8).limits("cuda:1") == (8, DEFAULT_MAX_BATCH_TOKENS["cuda"])
    assert BatchConfig(size=2, max_tokens=500).limits("cuda") == (2, 500)
    for bad, flag in [
        (BatchConfig(size=0), "--batch-size 0"),
        (BatchConfig(size="many"), "--batch-size 'many'"),
        (BatchConfig(max_tokens=0), "--max-batch-tokens 0"),
    ]:
        with pytest.raises(SaliencyLabError, match=flag):
            bad.validate()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--batch-size", "0"], "--batch-size 0"),
        (["--batch-size", "x"], "--batch-size"),
        (["--max-batch-tokens", "-3"], "--max-batch-tokens -3"),
    ],
)
def test_cli_refuses_bad_batch_flags(tmp_path, capsys, args, needle):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"sample_id": "a", "prompt": "hi"}\n')
    rc = main(
        [
            "capture",
            "--model",
            str(tmp_path / "no-model"),
            "--data",
            str(manifest),
            "--out",
            str(tmp_path / "runs"),
            *args,
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "runs").exists()
