"""CHAIR object-hallucination scoring (Rohrbach et al. 2018), the variant used by OPERA / VCD / HALC.

Pipeline per caption (docs/labels.md, "CHAIR"):
1. lower-case, sentence-split, word-tokenize, keeping character spans (`tokenize.word_spans`);
2. each word -> singular noun lemma (lemminflect), except words already in the synonym table;
3. greedy left-to-right merge of two-word phrases (`phrase_table`);
4. when a caption contains "toilet", every "seat" is dropped (a toilet seat is not a chair);
5. words/phrases in the synonym table are object mentions, mapped to their COCO category;
6. a mention is hallucinated when its category is not in the image's ground truth.

Choices that change numbers (recorded in `CHAIR_CONFIG` and written to every result file):
- the phrase table holds every two-word synonym, the literature's fixed special cases (baby/adult + animal,
  passenger jet/train, bow tie -> tie, toilet seat -> toilet) and two non-object phrases the reference keeps
  so their first word is not counted ("train track", "home plate");
- recall / precision are micro-averaged over captions on unique categories per caption;
- length counts word tokens that contain a letter or digit (punctuation excluded).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from saliency_lab.errors import SaliencyLabError
from saliency_lab.labels.synonyms import SynonymTable
from saliency_lab.labels.tokenize import word_spans

#: "baby X" / "adult X" -> X for these words (the literature's list: COCO animals plus two generic words).
ANIMAL_WORDS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
                "animal", "cub")
#: "passenger X" -> X.
VEHICLE_WORDS = ("jet", "train")
#: Phrases that are not objects; merging them keeps their first word from counting as a mention.
NON_OBJECT_PHRASES = ("train track", "home plate")

CHAIR_CONFIG = {
    "tokenizer": "nltk PunktSentenceTokenizer (untrained) + NLTKWordTokenizer spans, lower-cased",
    "lemmatizer": "lemminflect getLemma(word, 'NOUN')[0]; words in the synonym table are kept as is",
    "phrases": "two-word synonyms + baby/adult <animal> -> animal, passenger jet/train -> jet/train, "
               "bow tie -> tie, toilet seat -> toilet, non-objects: train track, home plate",
    "toilet_seat_rule": "drop 'seat' when 'toilet' is in the caption",
    "recall_precision": "micro-average over captions of unique categories",
    "length": "mean word tokens per caption (tokens with a letter or digit)",
}


@dataclass(frozen=True)
class Mention:
    """One object word found in a caption, its category and character span."""

    word: str  # normalized word or merged phrase as found in the synonym table
    category: str
    start: int  # [start, end) character span into the caption
    end: int
    hallucinated: bool | None = None  # set by scoring

    def as_dict(self, caption: str | None = None) -> dict:
        """JSON-ready fields; with `caption` also the mentioned text."""
        d = {"word": self.word, "category": self.category, "start": self.start, "end": self.end,
             "hallucinated": self.hallucinated}
        if caption is not None:
            d["text"] = caption[self.start:self.end]
        return d


@dataclass
class CaptionResult:
    """CHAIR result of one caption: mentions, ground truth, and the generated / hallucinated categories."""

    key: str  # caption id (sample_id, or line number for caption files)
    image_id: str
    caption: str
    mentions: list[Mention]
    ground_truth: list[str]
    n_words: int
    generated: list[str] = field(init=False)
    hallucinated: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.generated = sorted({m.category for m in self.mentions})
        self.hallucinated = sorted({m.category for m in self.mentions if m.hallucinated})

    def as_dict(self) -> dict:
        """JSON-ready fields, mentions included."""
        return {"key": self.key, "image_id": self.image_id, "caption": self.caption,
                "mentions": [m.as_dict(self.caption) for m in self.mentions],
                "hallucinated": self.hallucinated, "ground_truth": self.ground_truth,
                "generated": self.generated, "n_words": self.n_words}


def phrase_table(table: SynonymTable) -> dict[str, str]:
    """Two-word phrase -> the word it stands for after merging."""
    phrases = {syn: syn for syn in table.to_category if len(syn.split()) == 2}
    for p in NON_OBJECT_PHRASES:
        phrases[p] = p
    for a in ANIMAL_WORDS:
        phrases[f"baby {a}"] = a
        phrases[f"adult {a}"] = a
    for v in VEHICLE_WORDS:
        phrases[f"passenger {v}"] = v
    phrases["bow tie"] = "tie"
    phrases["toilet seat"] = "toilet"
    return phrases


@lru_cache(maxsize=65536)
def _lemma(word: str) -> str:
    from lemminflect import getLemma

    lemmas = getLemma(word, upos="NOUN")
    return lemmas[0] if lemmas else word


def normalize_word(word: str, vocab: frozenset[str] | set[str]) -> str:
    """Singular noun lemma of a lower-cased word; words in `vocab` (the synonym table) are never altered."""
    if word in vocab or not word.isalpha():
        return word
    return _lemma(word)


class ChairExtractor:
    """Finds object mentions in captions for one synonym table."""

    def __init__(self, table: SynonymTable):
        self.table = table
        self.vocab = frozenset(w for w in table.to_category if " " not in w)
        self.phrases = phrase_table(table)

    def words(self, caption: str) -> list[tuple[str, int, int]]:
        """Normalized words and merged phrases with their character spans (before the toilet/seat rule)."""
        toks = [(normalize_word(w.text, self.vocab), w.start, w.end) for w in word_spans(caption)]
        merged: list[tuple[str, int, int]] = []
        i = 0
        while i < len(toks):
            if i + 1 < len(toks):
                target = self.phrases.get(f"{toks[i][0]} {toks[i + 1][0]}")
                if target is not None:
                    merged.append((target, toks[i][1], toks[i + 1][2]))
                    i += 2
                    continue
            merged.append(toks[i])
            i += 1
        return merged

    def mentions(self, caption: str) -> list[Mention]:
        """Object mentions of a caption (character span, word, category), in caption order."""
        merged = self.words(caption)
        if any(w == "toilet" for w, _, _ in merged):
            merged = [t for t in merged if t[0] != "seat"]
        out = []
        for w, a, b in merged:
            cat = self.table.category(w)
            if cat is not None:
                out.append(Mention(w, cat, a, b))
        return out

    def categories(self, caption: str) -> set[str]:
        """The object categories a caption mentions."""
        return {m.category for m in self.mentions(caption)}


def count_words(caption: str) -> int:
    """Number of words (with at least one letter or digit) in a caption."""
    return sum(1 for w in word_spans(caption) if any(c.isalnum() for c in w.text))


def norm_image_id(image_id: object) -> str:
    """Image ids compare as text; purely numeric ids drop leading zeros ("000000397133" == 397133)."""
    s = str(image_id).strip()
    return str(int(s)) if s.isdigit() else s


def score_caption(extractor: ChairExtractor, key: str, image_id: object, caption: str,
                  ground_truth: Mapping[str, set[str]], gt_source: str) -> CaptionResult:
    """CHAIR for one caption: its mentions, each marked hallucinated when its category is not in the
    image's ground truth; an image missing from the ground truth is an error."""
    iid = norm_image_id(image_id)
    if iid not in ground_truth:
        raise SaliencyLabError(
            f"{key}: image_id {image_id!r} is not in the ground truth ({gt_source}); give ground truth that "
            "covers every image (the caption is not counted as all hallucinated)"
        )
    gt = ground_truth[iid]
    mentions = [Mention(m.word, m.category, m.start, m.end, m.category not in gt)
                for m in extractor.mentions(caption)]
    return CaptionResult(key, iid, caption, mentions, sorted(gt), count_words(caption))


def hallucinated_by_category(results: Iterable[CaptionResult]) -> dict[str, dict]:
    """Hallucinated mentions per category, most frequent first, with the words that produced them, so the
    synonym table's share is visible ("desk" counts as dining table, "people" as person)."""
    cats: dict[str, dict] = {}
    for r in results:
        for m in r.mentions:
            if m.hallucinated:
                c = cats.setdefault(m.category, {"n": 0, "words": {}})
                c["n"] += 1
                c["words"][m.word] = c["words"].get(m.word, 0) + 1
    for c in cats.values():
        c["words"] = dict(sorted(c["words"].items(), key=lambda kv: (-kv[1], kv[0])))
    return dict(sorted(cats.items(), key=lambda kv: (-kv[1]["n"], kv[0])))


def chair_bootstrap(results: list[CaptionResult], *, baseline: list[CaptionResult] | None = None,
                    n_boot: int = 1000, seed: int = 0) -> dict:
    """CHAIR_s and CHAIR_i with percentile 95% bootstrap intervals over captions (resampled whole, so
    CHAIR_i stays a ratio of sums). With `baseline` (captions of the same keys from another run), the
    difference results - baseline, with the same captions resampled in both runs (paired)."""
    import numpy as np

    def arrays(rs: list[CaptionResult]) -> np.ndarray:
        return np.array([[any(m.hallucinated for m in r.mentions), sum(bool(m.hallucinated) for m in r.mentions),
                          len(r.mentions)] for r in rs], dtype=float).reshape(-1, 3)

    def stats(x: np.ndarray) -> np.ndarray:  # x: [..., n, 3] -> [..., 2] (chair_s, chair_i)
        s = x[..., 0].mean(-1)
        m = x[..., 2].sum(-1)
        i = np.divide(x[..., 1].sum(-1), m, out=np.zeros_like(m), where=m > 0)
        return np.stack([s, i], -1)

    if baseline is not None:
        other = {r.key: r for r in baseline}
        missing = [r.key for r in results if r.key not in other]
        if missing:
            raise SaliencyLabError(f"paired CHAIR: {len(missing)} captions (e.g. {missing[0]!r}) have no "
                                   "counterpart in the baseline run; compare runs of the same manifest")
        base = arrays([other[r.key] for r in results])
    a = arrays(results)
    idx = np.random.default_rng(seed).integers(0, len(results), size=(n_boot, len(results)))
    point = stats(a) - (stats(base) if baseline is not None else 0)
    boot = stats(a[idx]) - (stats(base[idx]) if baseline is not None else 0)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    return {"chair_s": float(point[0]), "chair_s_ci": [float(lo[0]), float(hi[0])],
            "chair_i": float(point[1]), "chair_i_ci": [float(lo[1]), float(hi[1])],
            "n_captions": len(results), "n_boot": n_boot, "paired": baseline is not None}


def chair_metrics(results: Iterable[CaptionResult]) -> dict:
    """CHAIR_s, CHAIR_i, recall, precision, F1, mean length over caption results."""
    results = list(results)
    n = len(results)
    n_ment = sum(len(r.mentions) for r in results)
    n_hal = sum(1 for r in results for m in r.mentions if m.hallucinated)
    n_hal_caps = sum(1 for r in results if any(m.hallucinated for m in r.mentions))
    correct = sum(len(set(r.generated) - set(r.hallucinated)) for r in results)
    n_gen = sum(len(r.generated) for r in results)
    n_gt = sum(len(r.ground_truth) for r in results)
    recall = correct / n_gt if n_gt else 0.0
    precision = correct / n_gen if n_gen else 0.0
    f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
    return {
        "n_captions": n,
        "n_mentions": n_ment,
        "n_hallucinated_mentions": n_hal,
        "n_hallucinated_captions": n_hal_caps,
        "chair_s": n_hal_caps / n if n else 0.0,
        "chair_i": n_hal / n_ment if n_ment else 0.0,
        "recall": recall,
        "precision": precision,
        "f1": f1,
        "mean_length": sum(r.n_words for r in results) / n if n else 0.0,
    }
