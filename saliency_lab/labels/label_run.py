"""Label a run's output tokens with CHAIR, POPE or human labels and write `<run>/labels/<labelset>.parquet`
plus run-level metrics in `<run>/labels/<labelset>.json` ({"labelset", "source", "metrics", "config"}).

Everything is computed and validated in memory first, so a bad input leaves no labels file behind.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from saliency_lab.errors import SaliencyLabError
from saliency_lab.labels.chair import (
    CHAIR_CONFIG,
    CaptionResult,
    ChairExtractor,
    chair_metrics,
    hallucinated_by_category,
    norm_image_id,
    score_caption,
)
from saliency_lab.labels.groundtruth import resolve_ground_truth
from saliency_lab.labels.human import read_human_labels
from saliency_lab.labels.join import LabelRows, SpanLabel, join_spans, write_labelset
from saliency_lab.labels.pope import first_word_span, parse_answer, pope_metrics_by_split
from saliency_lab.labels.runread import RunTokens, read_run
from saliency_lab.labels.synonyms import load_synonyms


@dataclass
class LabelResult:
    """What labelling a run wrote: the labels Parquet, its JSON summary, the row count and the summary's
    content."""

    parquet: Path
    json: Path
    n_rows: int
    info: dict
    captions: list[CaptionResult] = field(default_factory=list)  # CHAIR: per-caption results


def _finish(run: RunTokens, name: str, rows: LabelRows, source: str, metrics: dict, config: dict,
            extra: dict | None = None) -> LabelResult:
    info = {"labelset": name, "source": source, "run_id": run.run_id, "metrics": metrics, "config": config,
            **(extra or {})}
    pq_path, js_path = write_labelset(run.path, name, rows, info)
    return LabelResult(pq_path, js_path, len(rows), info)


def label_chair(run_dir: str | Path, *, ground_truth: str | None = None, instances: str | None = None,
                coco_captions: str | None = None, synonyms: str | None = None,
                name: str = "chair") -> LabelResult:
    """Label object-mention tokens with CHAIR and write labels/<name>.parquet and .json."""
    run = read_run(run_dir)
    table = load_synonyms(synonyms)
    needed = {norm_image_id(s.image_id) for s in run.samples.values() if s.image_id is not None}
    gt = resolve_ground_truth(table, ground_truth, instances, coco_captions, needed)
    extractor = ChairExtractor(table)
    rows = LabelRows(run.run_id, "chair")
    results = []
    unjoined = 0
    for sid, s in sorted(run.samples.items()):
        # text-only runs have no image: their ground truth is keyed by sample_id
        key = s.image_id if s.image_id is not None else sid
        if s.image_id is None and norm_image_id(sid) not in gt.objects:
            raise SaliencyLabError(f"{run.path}: sample {sid!r} has no image_id and the ground truth "
                                   f"({gt.source}) has no entry for its sample_id; key the ground truth by "
                                   "sample_id (text-only runs) or set image_id in the manifest and recapture")
        res = score_caption(extractor, f"sample {sid!r}", key, s.output_text, gt.objects, gt.source)
        results.append(res)
        spans = [SpanLabel(m.start, m.end, int(bool(m.hallucinated)), m.category, i)
                 for i, m in enumerate(res.mentions)]
        labels = join_spans(s.tokens, spans)
        unjoined += len({sp.mention_id for sp in spans} - {lab.mention_id for lab in labels})
        rows.add(sid, labels)
    metrics = chair_metrics(results)
    metrics["n_labeled_tokens"] = len(rows)
    metrics["n_mentions_without_tokens"] = unjoined
    metrics["n_error_samples_skipped"] = run.n_error_samples
    config = {"synonyms": table.source, "synonyms_sha256": table.sha256,
              "ground_truth": gt.files, **CHAIR_CONFIG}
    out = _finish(run, name, rows, "chair", metrics, config,
                  {"hallucinated_by_category": hallucinated_by_category(results)})
    out.captions = results
    return out


def label_pope(run_dir: str | Path, *, parser: str = "reference", name: str = "pope") -> LabelResult:
    """Label POPE answer tokens (1 = the parsed answer is wrong) and write labels/<name>.parquet and .json."""
    run = read_run(run_dir)
    parse_answer("", parser)  # validates the parser name before any work
    rows = LabelRows(run.run_id, "pope")
    triples = []
    for sid, s in sorted(run.samples.items()):
        label = str(s.meta.get("label", "")).strip().lower()
        if label not in ("yes", "no"):
            raise SaliencyLabError(f"{run.path}: sample {sid!r} has no meta.label yes/no; build the manifest "
                                   "with `saliency-lab data pope` (it stores the POPE label in meta)")
        split = str(s.meta.get("split") or "all")
        pred = parse_answer(s.output_text, parser)
        triples.append((split, pred, label))
        span = first_word_span(s.output_text)
        if span is not None:
            obj = s.meta.get("object")
            sp = SpanLabel(span[0], span[1], int(pred != label), None if obj is None else str(obj), 0)
            rows.add(sid, join_spans(s.tokens, [sp]))
    metrics = pope_metrics_by_split(triples)
    config = {"parser": parser, "answer_tokens": "tokens overlapping the first word of the answer",
              "n_error_samples_skipped": run.n_error_samples}
    return _finish(run, name, rows, "pope", metrics, config)


def label_human(run_dir: str | Path, *, file: str, name: str = "human") -> LabelResult:
    """Label tokens from a human labels file (spans or steps) and write labels/<name>.parquet and .json."""
    run = read_run(run_dir)
    human = read_human_labels(file, run)
    rows = LabelRows(run.run_id, "human")
    n_hal = 0
    for sid in sorted(set(human.spans) | set(human.steps)):
        by_steps = list(human.steps.get(sid, []))
        by_spans = join_spans(run.samples[sid].tokens, human.spans.get(sid, []))
        clash = {lab.step for lab in by_spans} & {lab.step for lab in by_steps}
        if clash:
            raise SaliencyLabError(f"{file}: sample {sid!r}: steps {sorted(clash)} are labeled both by a span "
                                   "and by a steps record; label each token once")
        labels = by_spans + by_steps  # mention ids are already unique per sample (numbered in file order)
        labels.sort(key=lambda lab: lab.step)
        n_hal += sum(lab.label for lab in labels)
        rows.add(sid, labels)
    sha = hashlib.sha256(Path(file).read_bytes()).hexdigest()
    metrics = {"n_records": human.n_records, "n_samples": len(set(human.spans) | set(human.steps)),
               "n_labeled_tokens": len(rows), "n_hallucinated_tokens": n_hal}
    return _finish(run, name, rows, "human", metrics, {"file": str(file), "file_sha256": sha})
