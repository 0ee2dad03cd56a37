"""Prior statistics of the world evaluation, on hand-made captions with hand-computed answers."""

from __future__ import annotations

import pytest

from saliency_lab.labels.chair import ChairExtractor, score_caption
from saliency_lab.world.evaluate import prior_statistics, world_synonyms
from saliency_lab.world.scenes import Scene, SceneObject


def _scene(cats, kind="normal", meta=None):
    objs = [SceneObject(c, "red", 10.0 + 12 * i, 20.0, 14.0, 0.0) for i, c in enumerate(cats)]
    return Scene(objs, noise_seed=0, kind=kind, meta=meta or {})


def test_prior_statistics_by_hand():
    ex = ChairExtractor(world_synonyms())
    scenes = [
        _scene(["star"], "partner_absent", {"anchor": "star", "absent_partner": "moon"}),
        _scene(["heart", "bar"], "partner_absent", {"anchor": "heart", "absent_partner": "arrow"}),
        _scene(["square", "cross"]),
    ]
    captions = [
        "a red star and a red moon.",        # the absent partner: prior-driven
        "a red heart and a red hexagon.",    # a non-partner hallucination, bar missed
        "a red square and a red cross.",     # correct
    ]
    gt = {str(i): set(s.categories()) for i, s in enumerate(scenes)}
    res = [score_caption(ex, str(i), i, c, gt, "t") for i, c in enumerate(captions)]
    st = prior_statistics(scenes, res)
    assert st["partner_absent_scenes"] == 2
    assert st["absent_partner_named_rate"] == 0.5
    # other absent categories: scene 0 has 12 - 1 (star) - 1 (moon) = 10 slots, scene 1 has 12 - 2 - 1 = 9;
    # one of the 19 (hexagon) was named
    assert st["other_absent_category_named_rate"] == pytest.approx(1 / 19)
    assert st["partner_vs_other_ratio"] == pytest.approx(0.5 * 19)
    assert st["hallucinated_mentions"] == 2 and st["hallucinated_mentions_absent_partner"] == 1
    assert st["prior_driven_share"] == 0.5


@pytest.mark.parametrize("module, argv", [("evaluate", ["--model", "some-org/not-a-folder"]),
                                          ("train", ["--out", "OUT", "--init", "some-org/not-a-folder"])])
def test_world_tools_load_local_files_only(tmp_path, monkeypatch, capsys, module, argv):
    import importlib

    monkeypatch.chdir(tmp_path)  # a relative id that is no folder here
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the refusal must not depend on the hub being switched off
    main = importlib.import_module(f"saliency_lab.world.{module}").main
    assert main([a.replace("OUT", str(tmp_path / "out")) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "some-org/not-a-folder: not a local checkpoint folder" in err and "\n" not in err
    assert not (tmp_path / "out").exists()  # nothing trained or written
