"""The query / analysis stack on a real captured run: a tiny random Llama captured with candidates,
labeled with human step labels through the labels module, then queried, analyzed and calibrated. Every
number is checked against an independent numpy / scipy computation over the run's own files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from _analysis_fixtures import labeled_arrays, read, token_scores  # noqa: E402
from scipy import stats as sps  # noqa: E402

from saliency_lab.analysis import AnalysisConfig, CalibrationConfig, analyze, calibrate  # noqa: E402
from saliency_lab.store.catalog import open_catalog  # noqa: E402


@pytest.fixture(scope="module")
def labeled_run(tmp_path_factory):
    from saliency_lab.config import CaptureConfig, DecodingConfig, ModelConfig, SaliencyConfig
    from saliency_lab.labels.label_run import label_human
    from saliency_lab.models.tiny import build_tiny
    from saliency_lab.run import capture

    root = tmp_path_factory.mktemp("analysis_tiny")
    model = build_tiny("llama", root / "model")
    man = root / "manifest.jsonl"
    prompts = ["Describe the dog.", "Is there a cat?", "A man and a table", "Two birds on a wire.",
               "What is on the plate?", "A red bus in the street."]
    man.write_text("".join(json.dumps({"sample_id": f"s{i}", "prompt": p}) + "\n" for i, p in enumerate(prompts)))
    cfg = CaptureConfig(model=ModelConfig(str(model)), data=str(man), out=str(root / "runs"), run_id="tiny",
                        decoding=DecodingConfig(max_new_tokens=16), saliency=SaliencyConfig(candidates=3),
                        quiet=True)
    res = capture(cfg)
    assert res.ok == len(prompts)
    run = res.run_dir
    tokens = read(run, "tokens")
    # label every output step >= 1: hallucinated on a seeded random third of them
    rng = np.random.default_rng(0)
    lines = []
    for sid in sorted(set(tokens["sample_id"])):
        steps = sorted(int(s) for s in tokens["step"][tokens["sample_id"] == sid] if s >= 1)
        flags = rng.random(len(steps)) < 0.35
        flags[0], flags[-1] = True, False  # both labels in every sample
        for lab in (0, 1):
            lines.append(json.dumps({"sample_id": sid, "steps": [s for s, f in zip(steps, flags, strict=True)
                                                                    if f == lab], "label": lab}))
    (root / "human.jsonl").write_text("\n".join(lines) + "\n")
    label_human(run, file=str(root / "human.jsonl"), name="human")
    return run, json.loads((run / "run.json").read_text())["model"]["n_layers"]


def test_token_scores_macro_on_captured_run(labeled_run):
    run, n_layers = labeled_run
    for norm in ("row", "matrix"):
        expect = token_scores(run, n_layers, None, norm)
        with open_catalog([run]) as cat:
            got = cat.sql(f"SELECT sample_id, step, out_mean, prev FROM token_scores(normalization := '{norm}')"
                          ).fetchall()
        assert len(got) == len(expect) > 0
        for sid, step, om, pv in got:
            e = expect[(sid, step)]
            assert (om is None) == (e["out_mean"] is None) and (pv is None) == (e["prev"] is None)
            if om is not None:
                assert om == pytest.approx(e["out_mean"], rel=1e-6)
                assert pv == pytest.approx(e["prev"], rel=1e-6)
    with open_catalog([run]) as cat:
        # the candidates the capture recorded: rank 0 of a greedy run is the generated token itself
        same = cat.sql("SELECT count(*), count(*) FILTER (c.token_id = t.token_id) FROM candidates c "
                       "JOIN tokens t USING (run_id, sample_id, step) WHERE c.rank = 0 AND c.layer = 0").fetchall()
        assert same[0][0] > 0 and same[0][0] == same[0][1]


def test_analyze_on_captured_run(labeled_run, tmp_path):
    run, n_layers = labeled_run
    res = analyze([run], "human", AnalysisConfig(n_bootstrap=100))
    t = res.tests["tiny"]
    for measure in ("out_mean", "attn_out"):
        x, y, _ = labeled_arrays(run, n_layers, measure, labelset="human")
        x1, x0 = x[y == 1], x[y == 0]
        assert (t[measure]["n_halluc"], t[measure]["n_correct"]) == (len(x1), len(x0))
        assert t[measure]["welch_t"] == pytest.approx(sps.ttest_ind(x1, x0, equal_var=False).statistic, rel=1e-6)
        assert t[measure]["auroc"] == pytest.approx(
            sps.mannwhitneyu(x0, x1).statistic / (len(x0) * len(x1)), rel=1e-9)
    assert res.summary["tiny"]["target_layers"] == list(range(n_layers // 2, n_layers))
    paths = res.write(tmp_path / "an")
    json.loads(paths["json"].read_text())
    assert res.failures.height > 0 and (res.failures["context"].str.contains(r"\[\[", literal=False)).all()
    with open_catalog([run]) as cat:
        for name in ("run_summary", "binned_curve", "layer_profile", "label_means", "failure_cases",
                     "token_scores"):
            assert cat.query(name, {"labels": "human"}).height > 0, name


def test_calibrate_on_captured_run(labeled_run, tmp_path):
    run, n_layers = labeled_run
    res = calibrate([run], "human", CalibrationConfig(alphas=[0.5, 0.8, 1.0], windows=[2, 5]))
    assert res.has_candidates
    doc = json.loads(res.write(tmp_path)["json"].read_text())
    g = res.grid
    # a recommendation exists exactly when some setting beats chance within the budget; else null + reason
    ok = g.filter(pl.col("recommendable") & (pl.col("false_rejection_rate") <= 0.1))
    if ok.height:
        assert set(doc["recommended"]) == {"alpha", "window", "layers", "score", "reject"}
        assert all(0 <= layer < n_layers for layer in doc["recommended"]["layers"])
    else:
        assert doc["recommended"] is None and doc["score"] is None and doc["reason"]
    assert ((g["all_below_rate"] >= 0) & (g["all_below_rate"] <= 1)).all()
    assert (g["expected_resamples"] <= 2).all()  # at most R - 1 = 2 extra draws per token
