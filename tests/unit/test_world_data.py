"""World annotations: COCO documents agree with captions, POPE questions agree with the scenes, and the
project's CHAIR / POPE readers accept the files unchanged."""

from __future__ import annotations

import json

from saliency_lab.labels.chair import ChairExtractor, chair_metrics, score_caption
from saliency_lab.labels.groundtruth import load_coco_gt
from saliency_lab.labels.pope import read_questions
from saliency_lab.labels.synonyms import load_synonyms
from saliency_lab.world.coco import CATEGORY_IDS, coco_documents
from saliency_lab.world.dataset import build_world_set
from saliency_lab.world.pope import build_questions
from saliency_lab.world.scenes import CATEGORIES, PAIRS, WorldConfig, eval_scenes
from saliency_lab.world.tokenizer import SYNONYMS, synonyms_text

WORLD = WorldConfig()


def test_synonym_table_format_and_coverage(tmp_path):
    lines = synonyms_text().strip().split("\n")
    assert [ln.split(", ")[0] for ln in lines] == list(CATEGORIES)
    path = tmp_path / "syn.txt"
    path.write_text(synonyms_text())
    table = load_synonyms(path)
    assert set(table.categories) == set(CATEGORIES)
    for cat, syns in SYNONYMS.items():
        assert all(table.category(s) == cat for s in syns)
    ex = ChairExtractor(table)
    assert ex.categories("two stars and a crescent near some boxes.") == {"star", "moon", "square"}


def test_coco_instances_match_captions(tmp_path):
    scenes = eval_scenes(WORLD, seed=3, n=30)
    inst, caps = coco_documents(scenes, WORLD, None)
    assert [c["id"] for c in inst["categories"]] == list(range(1, len(CATEGORIES) + 1))
    assert len(inst["images"]) == len(caps["annotations"]) == 30
    (tmp_path / "i.json").write_text(json.dumps(inst))
    (tmp_path / "c.json").write_text(json.dumps(caps))
    (tmp_path / "s.txt").write_text(synonyms_text())
    table = load_synonyms(tmp_path / "s.txt")
    from_inst = load_coco_gt(table, instances=tmp_path / "i.json").objects
    from_caps = load_coco_gt(table, captions=tmp_path / "c.json").objects
    assert from_inst == from_caps  # every captioned object is annotated and vice versa
    for k, scene in enumerate(scenes):
        assert from_inst[str(k + 1)] == set(scene.categories())
    # the reference captions score as CHAIR 0, recall 1 against their own annotations
    ex = ChairExtractor(table)
    res = [score_caption(ex, str(a["id"]), a["image_id"], a["caption"], from_inst, "t")
           for a in caps["annotations"]]
    m = chair_metrics(res)
    assert m["chair_s"] == 0 and m["chair_i"] == 0 and m["recall"] == 1.0
    ids = [a["category_id"] for a in inst["annotations"]]
    assert set(ids) <= set(CATEGORY_IDS.values())


def test_pope_questions_labels_and_splits():
    scenes = eval_scenes(WORLD, seed=4, n=40)
    names = [f"scene_{k + 1:06d}.png" for k in range(40)]
    qs = build_questions(scenes, names, WORLD, seed=4, per_image=2)
    assert len({q["question_id"] for q in qs}) == len(qs)
    by_image = {n: set(s.categories()) for n, s in zip(names, scenes, strict=True)}
    for q in qs:
        present = q["category"] in by_image[q["image"]]
        assert q["label"] == ("yes" if present else "no")
        assert q["text"] == f"Is there a {q['category']} in the image?"
    for split in ("random", "popular", "adversarial"):
        sub = [q for q in qs if q["split"] == split]
        assert sum(q["label"] == "yes" for q in sub) == sum(q["label"] == "no" for q in sub)
    # adversarial negatives: the absent partner of a present anchor is always asked about
    adv = {(q["image"], q["category"]) for q in qs if q["split"] == "adversarial" and q["label"] == "no"}
    for n, s in zip(names, scenes, strict=True):
        if s.kind == "partner_absent":
            assert (n, s.meta["absent_partner"]) in adv
    assert build_questions(scenes, names, WORLD, seed=4, per_image=2) == qs


def test_world_set_files_are_read_by_the_label_code(tmp_path):
    ws = build_world_set(tmp_path / "w", n=8, seed=5, pope_images=4)
    assert len(list(ws.images.glob("*.png"))) == 8
    for split, path in ws.pope_files.items():
        qs = read_questions(path)
        assert qs and all(q.split == split for q in qs)
        assert all(q.image_id in {str(i) for i in range(1, 5)} for q in qs)
    man = [json.loads(x) for x in ws.pope_manifest.read_text().splitlines()]
    assert len(man) == ws.n_questions and all(m["meta"]["label"] in ("yes", "no") for m in man)
    caps = [json.loads(x) for x in ws.caption_manifest.read_text().splitlines()]
    assert [c["image_id"] for c in caps] == [str(i) for i in range(1, 9)]
    kinds = [c["meta"]["kind"] for c in caps]
    assert kinds.count("partner_absent") == 5
    assert all(PAIRS[c["meta"]["anchor"]] == c["meta"]["absent_partner"]
               for c in caps if c["meta"]["kind"] == "partner_absent")
    again = build_world_set(tmp_path / "w2", n=8, seed=5, pope_images=4)
    assert (again.instances.read_bytes() == ws.instances.read_bytes())
    assert [p.read_bytes() for p in sorted(again.images.glob("*.png"))] == \
        [p.read_bytes() for p in sorted(ws.images.glob("*.png"))]
