import hashlib
import json
from pathlib import Path

import pytest

from saliency_lab.errors import SaliencyLabError
from saliency_lab.manifest import load_manifest, sample_seed, shard_of, stable_hash


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_parses_all_fields_and_resolves_relative_images(tmp_path):
    (tmp_path / "imgs").mkdir()
    m = _write(tmp_path / "m.jsonl", [
        json.dumps({"sample_id": "a", "prompt": "p1", "image": "imgs/x.png", "image_id": 42,
                    "system": "be brief", "meta": {"split": "val"}}),
        "",
        json.dumps({"sample_id": 7, "prompt": "p2", "image": "/abs/y.png"}),
    ])
    man = load_manifest(m)
    assert [s.sample_id for s in man.samples] == ["a", "7"]
    a, b = man.samples
    assert a.image == str(tmp_path.resolve() / "imgs" / "x.png")
    assert a.image_id == "42" and a.system == "be brief" and a.meta == {"split": "val"}
    assert b.image == "/abs/y.png" and b.image_id is None and b.meta is None
    assert man.sha256 == hashlib.sha256(m.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "line, expected",
    [
        ('{"sample_id": "a", "prompt": "x"', "line 2: malformed JSON"),
        ('{"prompt": "x"}', "line 2: missing required field 'sample_id'"),
        ('{"sample_id": "b"}', "line 2: missing required field 'prompt'"),
        ('{"sample_id": "a", "prompt": "x"}', "line 2: duplicate sample_id 'a' (first on line 1)"),
        ('{"sample_id": "b", "prompt": 3}', "line 2: 'prompt' must be a string"),
        ('{"sample_id": "b", "prompt": "x", "image": 5}', "line 2: 'image' must be a string"),
        ('{"sample_id": "b", "prompt": "x", "meta": [1]}', "line 2: 'meta' must be a JSON object"),
        ('{"sample_id": "b", "prompt": "x", "imgae": "x.png"}', "line 2: unknown field(s) imgae"),
        ('["b", "x"]', "line 2: expected a JSON object"),
        ('{"sample_id": "", "prompt": "x"}', "line 2: 'sample_id' must be a non-empty string"),
    ],
)
def test_bad_lines_name_file_line_and_problem(tmp_path, line, expected):
    m = _write(tmp_path / "bad.jsonl", ['{"sample_id": "a", "prompt": "x"}', line])
    with pytest.raises(SaliencyLabError) as err:
        load_manifest(m)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(m.resolve().name) in msg and expected in msg


def test_missing_empty_and_folder(tmp_path):
    with pytest.raises(SaliencyLabError, match="file not found"):
        load_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(SaliencyLabError, match="is a folder"):
        load_manifest(tmp_path)
    with pytest.raises(SaliencyLabError, match="no samples"):
        load_manifest(_write(tmp_path / "e.jsonl", ["", "  "]))


def test_stable_hash_is_sha256_based_and_shards_partition():
    # Independent computation of the documented rule: first 8 bytes of sha256, big-endian.
    sid = "sample-17"
    expected = int(hashlib.sha256(sid.encode()).hexdigest()[:16], 16)
    assert stable_hash(sid) == expected
    assert shard_of(sid, 4) == expected % 4
    assert sample_seed(5, sid) == (5 + expected) % 2**63
    ids = [f"id{i}" for i in range(400)]
    counts = [sum(shard_of(i, 4) == k for i in ids) for k in range(4)]
    assert sum(counts) == 400 and min(counts) > 60  # every shard gets a fair share
