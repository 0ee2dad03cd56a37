"""The one run reader (saliency_lab.store.runs): opening runs, globs, validation and file listings."""

from __future__ import annotations

import json

import pytest

from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.runs import expand_runs, open_run, open_runs, read_run_info
from saliency_lab.store.schema import SCHEMA_VERSION
from saliency_lab.testing.synthetic import SyntheticSpec, make_run


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    make_run(root, "ra", SyntheticSpec(n_samples=5, n_layers=3, seed=1, samples_per_part=2))
    make_run(root, "rb", SyntheticSpec(n_samples=4, n_layers=6, seed=2, n_shards=2, samples_per_part=1))
    return root


def test_open_run_reads_run_json_and_lists_files(root):
    run = open_run(root / "ra")
    info = json.loads((root / "ra" / "run.json").read_text())
    assert run.info == info == read_run_info(root / "ra")
    assert (run.run_id, run.n_layers, run.path) == ("ra", 3, root / "ra")
    parts = run.files("samples")
    # 5 samples, 2 per part, one shard: 3 committed parts; nothing else in the folder is listed
    assert len(parts) == 3 and all("/shard=0/part-" in p and p.endswith(".parquet") for p in parts)
    (root / "ra" / "samples" / "shard=0" / ".part-99.parquet.tmp").write_bytes(b"half")
    assert run.files("samples") == parts
    assert run.files("decisions") == []  # a table absent from the run
    assert list(run.labelsets()) == ["chair"] and run.labelsets()["chair"].endswith("labels/chair.parquet")
    rb = open_run(root / "rb")
    assert {p.split("/shard=")[1][0] for p in rb.files("samples")} == {"0", "1"}  # both shards


def test_uri_runs_list_the_same_files(root):
    local, remote = open_run(root / "rb"), open_run(f"file://{root / 'rb'}")
    assert remote.fs is not None and remote.info == local.info
    assert [p.split("/rb/")[1] for p in remote.files("tokens")] == [
        p.split("/rb/")[1] for p in local.files("tokens")
    ]
    assert list(remote.labelsets()) == ["chair"]
    with pytest.raises(SaliencyLabError, match="local run folder"):
        _ = remote.path


def test_globs_duplicates_and_order(root):
    assert expand_runs(str(root / "r*")) == [str(root / "ra"), str(root / "rb")]
    assert [r.run_id for r in open_runs([str(root / "rb"), str(root / "r[a]")])] == ["rb", "ra"]
    with pytest.raises(SaliencyLabError, match="distinct run ids"):
        open_runs([root / "ra", str(root / "r*")])
    # the same folder named twice (path and glob) is opened once when asked
    assert [r.run_id for r in open_runs([root / "ra", str(root / "r*")], same_folder_once=True)] == [
        "ra",
        "rb",
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not a run \\(no run.json\\)"),
        ("{oops", "not valid JSON"),
        ("[1]", "not a JSON object"),
        ('{"run_id": "x"}', "no schema_version"),
        (json.dumps({"schema_version": SCHEMA_VERSION + 1}), "newer than this toolkit"),
    ],
)
def test_bad_runs_give_one_line_errors(tmp_path, content, message):
    run = tmp_path / "bad"
    run.mkdir()
    if content is not None:
        (run / "run.json").write_text(content)
    with pytest.raises(SaliencyLabError, match=message) as err:
        open_run(run)
    assert "\n" not in str(err.value) and str(run) in str(err.value)


def test_bad_run_lists(tmp_path):
    with pytest.raises(SaliencyLabError, match="matches no run folder"):
        open_runs(str(tmp_path / "nothing-*"))
    with pytest.raises(SaliencyLabError, match="no runs given"):
        open_runs([])
