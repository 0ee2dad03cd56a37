"""End to end on a real capture: the scene world's small LLaVA (built from its config, untrained, CPU), a
capture with --rows output, CHAIR labels from the world's COCO-format ground truth, the report, and a real
browser. Untrained weights emit random words of the world's vocabulary, so most object words are
hallucinations: the statistics are noise, but every path of the report runs on real data."""

from __future__ import annotations

import pytest
from _report_fixtures import ARTIFACTS, parse, require_chromium

from saliency_lab.config import CaptureConfig, DecodingConfig, ModelConfig, SaliencyConfig
from saliency_lab.labels.label_run import label_chair
from saliency_lab.report import ReportConfig, build_report
from saliency_lab.report.browser import check_report
from saliency_lab.run import capture
from saliency_lab.world.dataset import build_world_set
from saliency_lab.world.model import ModelSpec, build_model, build_processor
from saliency_lab.world.tokenizer import build_tokenizer
from saliency_lab.world.train import save


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    world = build_world_set(root / "world", n=8)
    tok = build_tokenizer()
    spec = ModelSpec()
    save(build_model(tok, spec, seed=0), build_processor(tok, spec), str(root / "model"))
    cfg = CaptureConfig(model=ModelConfig(model=str(root / "model")), data=str(world.caption_manifest),
                        out=str(root / "runs"), run_id="world",
                        decoding=DecodingConfig(max_new_tokens=16, strategy="sample", seed=1),
                        saliency=SaliencyConfig(rows="output", candidates=2), quiet=True)
    capture(cfg)
    run = root / "runs" / "world"
    label_chair(run, instances=str(world.instances), coco_captions=str(world.captions),
                synonyms=str(world.synonyms))
    return run


@pytest.mark.browser
def test_report_of_a_real_capture_renders(real_run):
    exe = require_chromium()
    out = build_report([real_run], ARTIFACTS / "report-real-tiny.html", ReportConfig(n_bootstrap=100))
    html = out.read_text(encoding="utf-8")
    page = parse(html)
    assert page.needs == []  # labels, rows and a computed calibration: every section filled
    assert sum(c.startswith("chart-map-") for c in page.charts) >= 1
    assert "LlavaForConditionalGeneration" in html and "chair_i" in html
    res = check_report(out, screenshot=ARTIFACTS / "report-real-tiny.png", chromium=exe)
    assert res.errors == [] and res.charts_total == len(page.charts)
    assert res.charts_done == f"{res.charts_total}/{res.charts_total}"
    assert all(res.rendered.values())
