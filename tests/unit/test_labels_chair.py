"""CHAIR word pipeline and metrics on hand-made captions whose answers are stated in each test."""

from __future__ import annotations

import json

import pytest

from saliency_lab.errors import SaliencyLabError, SaliencyLabWarning
from saliency_lab.labels.chair import ChairExtractor, chair_metrics, normalize_word, score_caption
from saliency_lab.labels.groundtruth import load_coco_gt, load_gt_mapping
from saliency_lab.labels.synonyms import load_synonyms, parse_synonyms
from saliency_lab.labels.tokenize import word_spans

TABLE_TEXT = """person, man, woman, people, baby, passenger
bus
train
airplane, plane, jet
elephant
giraffe
dog, puppy
skis, ski
tie, bow tie
toilet
chair, seat
traffic light, stoplight
hot dog
dining table, table
teddy bear
"""


@pytest.fixture(scope="module")
def ex() -> ChairExtractor:
    return ChairExtractor(parse_synonyms(TABLE_TEXT, "test-table"))


def cats(ex: ChairExtractor, caption: str) -> list[str]:
    return [m.category for m in ex.mentions(caption)]


def surface(ex: ChairExtractor, caption: str) -> list[str]:
    return [caption[m.start:m.end] for m in ex.mentions(caption)]


def test_sentence_split_unglues_periods_and_spans_point_into_text():
    cap = "A dog sits at the table. Two men stand."
    words = word_spans(cap)
    assert [w.text for w in words] == ["a", "dog", "sits", "at", "the", "table", ".", "two", "men", "stand", "."]
    for w in words:
        assert cap.lower()[w.start:w.end] == w.text


def test_lowercasing_keeps_offsets_for_characters_that_grow():
    cap = "İstanbul: a dog."  # 'İ'.lower() is two code points; spans must still index the original text
    ms = ChairExtractor(parse_synonyms("dog\n", "t")).mentions(cap)
    assert [(cap[m.start:m.end], m.category) for m in ms] == [("dog", "dog")]


def test_plurals_are_lemmatized_but_table_words_are_not(ex):
    assert normalize_word("buses", ex.vocab) == "bus"
    assert normalize_word("bus", ex.vocab) == "bus"
    # lemminflect would turn "skis" into "ski"; it is in the table, so it stays as written
    assert normalize_word("skis", frozenset()) == "ski"
    assert normalize_word("skis", ex.vocab) == "skis"
    assert [m.word for m in ex.mentions("Two buses and a bus, plus skis.")] == ["bus", "bus", "skis"]
    assert cats(ex, "three puppies and two women") == ["dog", "person"]


def test_two_word_objects_merge_into_one_mention(ex):
    cap = "A hot dog near two traffic lights and a teddy bear."
    assert cats(ex, cap) == ["hot dog", "traffic light", "teddy bear"]
    assert surface(ex, cap) == ["hot dog", "traffic lights", "teddy bear"]
    # without the phrase "dog" alone is a dog
    assert cats(ex, "a hot day with a dog") == ["dog"]


def test_phrases_do_not_cross_punctuation(ex):
    assert cats(ex, "It is hot. Dog owners wait.") == ["dog"]


def test_baby_and_adult_animals_map_to_the_animal_not_person(ex):
    assert cats(ex, "A baby elephant and two adult giraffes.") == ["elephant", "giraffe"]
    assert surface(ex, "A baby elephant and two adult giraffes.") == ["baby elephant", "adult giraffes"]
    assert cats(ex, "A baby in a crib.") == ["person"]
    # "puppy" is not one of the literature's animal words: baby -> person, puppy -> dog
    assert cats(ex, "a baby puppy") == ["person", "dog"]


def test_passenger_jet_and_train(ex):
    assert cats(ex, "A passenger jet flies over a passenger train.") == ["airplane", "train"]
    assert cats(ex, "A passenger waits.") == ["person"]


def test_bow_tie_is_one_tie(ex):
    assert cats(ex, "a man in a bow tie") == ["person", "tie"]
    assert surface(ex, "a man in a bow tie") == ["man", "bow tie"]


def test_toilet_seat_and_seat_dropping(ex):
    assert cats(ex, "The toilet seat is up.") == ["toilet"]
    # any other "seat" is dropped when the caption mentions a toilet
    assert cats(ex, "A toilet and a seat. Two seats.") == ["toilet"]
    assert cats(ex, "A seat by the window.") == ["chair"]


def test_train_track_is_not_a_train_and_merging_is_greedy_left_to_right(ex):
    assert cats(ex, "train tracks run by") == []
    # "passenger train" merges first, leaving "track" alone -> one train, no person
    assert cats(ex, "a passenger train track") == ["train"]


def test_metrics_on_two_captions(ex):
    gt = {"1": {"dog", "person"}, "2": {"bus", "dining table", "chair"}}
    r1 = score_caption(ex, "a", 1, "A man and a dog near a bus. The dog sleeps.", gt, "gt")
    r2 = score_caption(ex, "b", "000002", "A bus by a table.", gt, "gt")
    assert [(m.category, m.hallucinated) for m in r1.mentions] == [
        ("person", False), ("dog", False), ("bus", True), ("dog", False)]
    assert r2.image_id == "2" and not any(m.hallucinated for m in r2.mentions)
    m = chair_metrics([r1, r2])
    assert m["chair_s"] == 0.5  # one of two captions hallucinates
    assert m["chair_i"] == 1 / 6  # one of six mentions (repeats counted)
    # unique correct categories: {person, dog} + {bus, dining table} = 4 of 2 + 3 ground truth
    assert m["recall"] == pytest.approx(4 / 5)
    assert m["precision"] == pytest.approx(4 / 5)  # unique generated: 3 + 2
    assert m["f1"] == pytest.approx(0.8)
    assert m["mean_length"] == (11 + 5) / 2  # words, punctuation excluded


def test_unknown_image_id_is_an_error(ex):
    with pytest.raises(SaliencyLabError, match="image_id 7"):
        score_caption(ex, "s", 7, "a dog", {"1": set()}, "gt.json")


def test_synonym_file_errors_name_the_line(tmp_path):
    with pytest.raises(SaliencyLabError, match=r"t:3: synonym 'pup'"):
        parse_synonyms("dog, pup\n\ncat, pup\n", "t")
    with pytest.raises(SaliencyLabError, match=r"t:2: .*empty category"):
        parse_synonyms("dog\n, cat\n", "t")
    with pytest.raises(SaliencyLabError, match=r"t:2: category 'dog' already"):
        parse_synonyms("dog\ndog, pup\n", "t")
    bad = tmp_path / "syn.txt"
    bad.write_bytes(b"dog\n\xff\xfe\n")
    with pytest.raises(SaliencyLabError, match="not UTF-8"):
        load_synonyms(bad)
    with pytest.raises(SaliencyLabError, match="cannot read"):
        load_synonyms(tmp_path / "missing.txt")


def test_synonym_parsing_tolerates_spacing_case_and_trailing_commas():
    t = parse_synonyms("Cell Phone, iPhone,  mobile   phone,\nstove top oven, stove\n", "t")
    assert t.category("iphone") == "cell phone" and t.category("mobile phone") == "cell phone"
    assert t.ignored == ("stove top oven",)  # three-word entries can never match; recorded


def test_shipped_table_covers_the_80_coco_categories():
    t = load_synonyms()
    assert len(t.categories) == 80
    assert {"person", "dining table", "tv", "hair drier", "teddy bear"} <= set(t.categories)
    assert t.source == "builtin:chair_synonyms.txt" and len(t.sha256) == 64
    ex = ChairExtractor(t)
    assert cats(ex, "A woman holds a cellphone next to a sofa.") == ["person", "cell phone", "couch"]


def test_ground_truth_from_coco_files(tmp_path, ex):
    inst = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 18, "name": "dog"}, {"id": 5, "name": "airplane"}],
            "annotations": [{"id": 9, "image_id": 1, "category_id": 18}]}
    caps = {"images": [{"id": 1}, {"id": 2}],
            "annotations": [{"image_id": 1, "caption": "A man walks a dog."},
                            {"image_id": 2, "caption": "A passenger jet on the runway."}]}
    (tmp_path / "i.json").write_text(json.dumps(inst))
    (tmp_path / "c.json").write_text(json.dumps(caps))
    gt = load_coco_gt(ex.table, tmp_path / "i.json", tmp_path / "c.json")
    assert gt.objects == {"1": {"dog", "person"}, "2": {"airplane"}}
    # captions are parsed only for the images asked for (the others keep their instance categories)
    assert load_coco_gt(ex.table, tmp_path / "i.json", tmp_path / "c.json", only={"1"}).objects == {
        "1": {"dog", "person"}, "2": set()}
    only_inst = load_coco_gt(ex.table, instances=tmp_path / "i.json")
    assert only_inst.objects == {"1": {"dog"}, "2": set()}
    with pytest.raises(SaliencyLabError, match="no ground truth"):
        load_coco_gt(ex.table)


def test_ground_truth_mapping_canonicalizes_synonyms(tmp_path, ex):
    p = tmp_path / "gt.json"
    p.write_text(json.dumps({"0042": ["Dog", "jet", "unlisted thing"]}))
    with pytest.warns(SaliencyLabWarning, match="unknown CHAIR category 'unlisted thing'"):  # kept, but said
        assert load_gt_mapping(p, ex.table).objects == {"42": {"dog", "airplane", "unlisted thing"}}
    p.write_text("{not json")
    with pytest.raises(SaliencyLabError, match=r"gt.json:1: not valid JSON"):
        load_gt_mapping(p, ex.table)
