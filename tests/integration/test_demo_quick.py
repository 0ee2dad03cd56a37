"""`saliency-lab demo --quick` end to end on the shipped model: every stage writes its files and the
printed findings come from them."""

from __future__ import annotations

import json

from saliency_lab.cli import main
from saliency_lab.demo import MIN_HALLUCINATED


def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "demo_summary.json").read_text())
    assert (out / "data" / "instances.json").is_file() and (out / "data" / "pope_adversarial.jsonl").is_file()
    greedy = summary["runs"]["greedy"]
    chair = greedy["chair"]
    assert chair["n_captions"] == 8 and chair["n_mentions"] > 0
    assert f"CHAIR_s {chair['chair_s']:.3f}" in printed
    pope = summary["runs"]["pope"]["pope"]
    assert set(pope) == {"random", "popular", "adversarial"}
    assert all(m["n"] == 8 for m in pope.values())  # 4 images x (1 yes + 1 no) per split
    assert (out / "runs" / "greedy" / "run.json").is_file()
    assert (out / "runs" / "greedy" / "labels" / "chair.parquet").is_file()
    if summary.get("saliency"):
        # the partner / other split covers exactly the object tokens the analysis compared
        k, sal = summary["saliency_by_kind"], summary["saliency"]
        assert k["partner_halluc_n"] + k["other_halluc_n"] == sal["n_halluc"]
        assert k["partner_correct_n"] + k["other_correct_n"] == sal["n_correct"]
        assert "by kind: partner words" in printed
        # every score with position control, the detector and `calibrate --score auto` ran on the demo
        assert {r["score"] for r in summary["separation"]} >= {"out_mean", "source_share", "step"}
        # a best score is named only with enough hallucinated tokens for the position control to have pairs
        n_pos = max(int(r["n_pos"] or 0) for r in summary["separation"] if r["score"] != "step")
        if n_pos >= MIN_HALLUCINATED:
            assert "best score:" in printed and "step-controlled AUROC" in printed
        else:
            assert f"best score: none named: only {n_pos} hallucinated" in printed
        assert set(summary["detector"]) == {"position", "attention", "saliency", "all"}
        assert "detector CV AUROC: position" in printed
        cal = json.loads((out / "calibration" / "calibration.json").read_text())
        assert {"recommended", "reason", "score", "reject"} <= set(cal) and cal["reason"]
        assert len(cal["grid"]) == summary["calibration"]["n_settings"] and "SGRS calibration (auto" in printed
    # SGRS and its control (top-K sampling, same K and seed) both ran and were labelled
    assert {"sample", "sgrs", "locore"} <= set(summary["runs"])
    assert summary["runs"]["sample"]["decoding"]["top_k"] == summary["runs"]["sgrs"]["decoding"]["sgrs"]["k"]
    import pyarrow.dataset as ds

    dec = ds.dataset(out / "runs" / "sgrs" / "decisions", format="parquet").to_table().to_pylist()
    assert dec
    # an undefined score (step 0, or a certain token whose saliency rows are all zero) is never a rejection
    assert not [d for d in dec if d["score"] is None and not d["accepted"]]
    if "report" in summary["files"]:
        html = (out / "report.html").read_text()
        assert "<html" in html.lower() and "greedy" in html
    # a second call replaces the demo's runs instead of refusing to overwrite them
    assert main(["demo", "--quick", "--out", str(out), "--no-interventions", "--no-report"]) == 0
