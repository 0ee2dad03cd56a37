"""calibration.json through its one class (saliency_lab.store.calibration.Calibration)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from saliency_lab.errors import SaliencyLabError
from saliency_lab.store.calibration import Calibration

GRID = [
    {"alpha": 0.5, "window": 3, "layers": [1, 2], "recall": 0.25, "false_rejection_rate": float("nan")},
    {"alpha": 0.7, "window": 5, "layers": [2], "recall": 0.5, "false_rejection_rate": 0.1},
]


def _cal(**kw):
    base = dict(
        recommended={"alpha": 0.7, "window": 5, "layers": [2]},
        recommended_metrics={"recall": 0.5},
        within_budget=True,
        budget=0.1,
        has_candidates=False,
        labels="chair",
        runs=["runs/a"],
        config={"score": "out_mean"},
        grid=pl.DataFrame(GRID),
        frontier=pl.DataFrame(GRID[1:]),
    )
    return Calibration(**{**base, **kw})


def test_write_then_read_round_trips(tmp_path):
    assert _cal().write(tmp_path / "sub" / "cal.json") == tmp_path / "sub" / "cal.json"  # a file path is kept
    (tmp_path / "dir").mkdir()
    path = _cal(score="prev", reject="high").write(tmp_path / "dir")
    assert path == tmp_path / "dir" / "calibration.json" and not list((tmp_path / "dir").glob(".*tmp"))
    doc = json.loads(path.read_text())
    assert doc["grid"][0]["false_rejection_rate"] is None  # NaN written as null, valid JSON
    assert (doc["score"], doc["reject"], doc["reason"]) == ("prev", "high", None) and "source" not in doc
    back = Calibration.read(tmp_path / "dir")
    assert back.source == str(path)
    # a recommendation without its own score / reject is for the file's score and direction
    assert back.sgrs_settings() == {"alpha": 0.7, "window": 5, "layers": [2], "score": "prev", "reject": "high"}
    assert (back.score, back.reject, back.budget, back.runs) == ("prev", "high", 0.1, ["runs/a"])
    assert back.grid["layers"].to_list() == [[1, 2], [2]] and back.frontier.height == 1
    assert back.grid["recall"].to_list() == [0.25, 0.5] and back.grid["false_rejection_rate"][0] is None


def test_older_files_get_defaults_and_null_recommendation_says_why(tmp_path):
    p = tmp_path / "calibration.json"
    p.write_text('{"recommended": {"alpha": 1}, "grid": []}')
    cal = Calibration.read(p)
    assert (cal.reject, cal.score, cal.reason, cal.grid.height) == ("low", None, None, 0)
    assert cal.sgrs_settings() == {"alpha": 1.0, "score": "out_mean", "reject": "low"}  # the paper's rule
    p.write_text('{"recommended": null, "reason": "no setting separates the labels"}')
    cal = Calibration.read(p)
    with pytest.raises(SaliencyLabError, match="recommends no SGRS setting \\(no setting separates") as err:
        cal.sgrs_settings()
    assert str(p) in str(err.value)


def test_recommended_score_and_direction_are_applied_and_attention_scores_refused(tmp_path):
    rec = {"alpha": 0.9, "window": 2, "score": "source_share", "reject": "high"}
    cal = _cal(recommended=rec, score="out_mean", reject="low")
    assert cal.sgrs_settings() == rec  # the recommendation's own score wins over the file's
    cal = _cal(recommended={"alpha": 0.9, "score": "lookback_ratio", "reject": "low"}, source="cal.json")
    with pytest.raises(SaliencyLabError, match="cal.json: the recommendation thresholds lookback_ratio") as err:
        cal.sgrs_settings()
    assert "\n" not in str(err.value) and "source_share" in str(err.value)


@pytest.mark.parametrize(
    "doc, message",
    [
        ("{", "not valid JSON"),
        ("[]", "not a JSON object"),
        ("{}", 'no "recommended" object'),
        ('{"recommended": {}, "recomended": 1}', "unknown field\\(s\\) recomended"),
        ('{"recommended": {"alpha": 1, "beta": 2}}', "unknown field\\(s\\) recommended.beta"),
        ('{"recommended": {"alpha": "x"}}', "alpha must be a number"),
        ('{"recommended": {"window": 0}}', "window must be an integer >= 1"),
        ('{"recommended": {"layers": [1, -2]}}', "layers must be a list of layer numbers"),
        ('{"recommended": {}, "reject": "middle"}', 'use "low" or "high"'),
        ('{"recommended": {}, "grid": {"a": 1}}', "grid must be a list of objects"),
        ('{"recommended": {}, "score": 3}', "score must be a string"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, doc, message):
    p = tmp_path / "calibration.json"
    p.write_text(doc)
    with pytest.raises(SaliencyLabError, match=message) as err:
        Calibration.read(p)
    assert "\n" not in str(err.value) and str(p) in str(err.value)


def test_missing_file_names_the_fix(tmp_path):
    with pytest.raises(SaliencyLabError, match="no calibration.json found.*saliency-lab calibrate"):
        Calibration.read(tmp_path / "nowhere")


def test_capture_flags_read_the_same_class(tmp_path):
    from saliency_lab.cli import build_parser
    from saliency_lab.cli.capture import config_from_args

    p = _cal(recommended={"alpha": 0.3, "layers": [0, 3]}).write(tmp_path / "calibration.json")
    args = build_parser().parse_args(
        ["capture", "--model", "m", "--data", "d.jsonl", "--calibration", str(p)]
    )
    sgrs = config_from_args(args).decoding.sgrs
    assert (sgrs.alpha, sgrs.layers, sgrs.window) == (0.3, [0, 3], 5)  # window: the default is kept
    _cal(recommended=None, reason="labels of one kind only").write(p)
    with pytest.raises(SaliencyLabError, match="labels of one kind only"):
        config_from_args(args)


def test_library_reads_calibration_without_the_cli():
    import subprocess
    import sys

    code = (
        "import sys, saliency_lab.decoding.calibration_file; "
        "print(sorted(m for m in sys.modules if m.startswith('saliency_lab.cli')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
