"""The text-grounded world: seeded prompts over the 80 COCO categories, ground truth keyed by sample_id, and
CHAIR labelling of a text-only run (no image_id) with per-category hallucination counts."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from _labels_runs import FakeSample, make_label_run, steps_of

from saliency_lab.errors import SaliencyLabError
from saliency_lab.labels.chair import ChairExtractor
from saliency_lab.labels.label_run import label_chair
from saliency_lab.labels.synonyms import load_synonyms
from saliency_lab.world.text import SCENE_TYPES, build_text_set, listing, sample, samples, surface


def test_pools_cover_coco_and_every_listed_noun_maps_back():
    table = load_synonyms()
    pooled = {c for s in SCENE_TYPES for c in s.pool}
    assert pooled == set(table.categories) and len(pooled) == 80
    ex = ChairExtractor(table)
    for c in sorted(pooled):
        assert [m.category for m in ex.mentions(f"There is {listing([surface(c)])} here.")] == [c], c
    assert len({s.name for s in SCENE_TYPES}) == len(SCENE_TYPES) >= 5


def test_samples_are_seeded_and_the_prompt_lists_exactly_the_ground_truth():
    assert samples(30, seed=3) == samples(30, seed=3) and samples(5, seed=3) != samples(5, seed=4)
    ex = ChairExtractor(load_synonyms())
    seen_sizes = set()
    for s in samples(200, seed=1):
        assert 2 <= len(s.objects) <= 5 and len(set(s.objects)) == len(s.objects)
        pool = next(t.pool for t in SCENE_TYPES if t.name == s.scene)
        assert set(s.objects) <= set(pool)
        listed = s.prompt.split(" there are: ")[1].split(". Describe")[0]
        assert [m.category for m in ex.mentions(listed)] == list(s.objects)
        seen_sizes.add(len(s.objects))
    assert seen_sizes == {2, 3, 4, 5}
    s = sample(0, 7)
    assert s.prompt.endswith(" in a few sentences.") and s.sample_id == "txt-0-0007"


def test_kitchen_prompt_wording():
    assert listing(["cup", "knife", "apple"]) == "a cup, a knife and an apple"
    assert listing(["cup", "knife"]) == "a cup and a knife"


def test_text_run_is_labelled_by_sample_id_with_per_category_counts(tmp_path):
    ts = build_text_set(tmp_path / "data", n=3, seed=0)
    lines = [json.loads(x) for x in ts.manifest.read_text().splitlines()]
    gt = json.loads(ts.ground_truth.read_text())
    assert [x["sample_id"] for x in lines] == list(gt) and all("image_id" not in x for x in lines)
    assert gt[lines[0]["sample_id"]] == lines[0]["meta"]["objects"]
    # outputs written for a known ground truth: "people" (person) and "desk" (dining table) are not listed
    (tmp_path / "gt.json").write_text(json.dumps({"a1": ["cup", "knife"], "a2": ["dog"]}))
    run = make_label_run(
        tmp_path / "runs",
        [
            FakeSample(
                "a1", ["A", " cup", " and", " a", " knife", " on", " a", " desk", " near", " people", "."]
            ),
            FakeSample(
                "a2", ["The", " dog", " sees", " people", " at", " a", " desk", " and", " a", " desk", "."]
            ),
        ],
    )
    res = label_chair(run.path, ground_truth=str(tmp_path / "gt.json"))
    m = res.info["metrics"]
    assert (m["n_mentions"], m["n_hallucinated_mentions"], m["chair_s"]) == (8, 5, 1.0)
    assert res.info["hallucinated_by_category"] == {
        "dining table": {"n": 3, "words": {"desk": 3}},
        "person": {"n": 2, "words": {"people": 2}},
    }
    assert json.loads(res.json.read_text())["hallucinated_by_category"]["person"]["n"] == 2
    rows = {(r["sample_id"], r["step"]): r["label"] for r in pq.read_table(res.parquet).to_pylist()}
    s1 = run.samples[0]
    assert [rows["a1", st] for st in steps_of(s1, " desk")] == [1]
    assert [rows["a1", st] for st in steps_of(s1, " cup")] == [0]


def test_text_run_without_its_sample_id_in_the_ground_truth(tmp_path):
    (tmp_path / "gt.json").write_text(json.dumps({"other": ["cup"]}))
    run = make_label_run(tmp_path / "runs", [FakeSample("a1", ["A", " cup", "."])])
    with pytest.raises(SaliencyLabError, match=r"sample 'a1' has no image_id .* no entry for its sample_id"):
        label_chair(run.path, ground_truth=str(tmp_path / "gt.json"))


def _caps(flags: list[list[bool]]):
    from saliency_lab.labels.chair import CaptionResult, Mention

    return [
        CaptionResult(f"k{i}", "", "", [Mention("w", "c", 0, 1, h) for h in ms], [], 1)
        for i, ms in enumerate(flags)
    ]


def test_chair_bootstrap_point_values_and_pairing():
    from saliency_lab.labels.chair import chair_bootstrap

    a = _caps([[True, False], [False], [False, False, False], [True, True]])
    r = chair_bootstrap(a, n_boot=400, seed=1)
    assert r["chair_s"] == pytest.approx(2 / 4) and r["chair_i"] == pytest.approx(3 / 8)
    assert (
        r["chair_s_ci"][0] <= r["chair_s"] <= r["chair_s_ci"][1]
        and 0 <= r["chair_i_ci"][0] < r["chair_i_ci"][1]
    )
    same = chair_bootstrap(a, baseline=list(reversed(a)), n_boot=200)  # paired by key, not by position
    assert same["chair_s"] == 0 and same["chair_s_ci"] == [0.0, 0.0] and same["paired"]
    b = _caps([[False, False], [False], [False, False, False], [True, False]])
    d = chair_bootstrap(a, baseline=b, n_boot=400)
    assert d["chair_s"] == pytest.approx(0.25) and d["chair_i"] == pytest.approx(3 / 8 - 1 / 8)
    assert d["chair_i_ci"][0] >= 0  # a never hallucinates less than b on any caption
    with pytest.raises(SaliencyLabError, match="no counterpart"):
        chair_bootstrap(a, baseline=b[:2])
