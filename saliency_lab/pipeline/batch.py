"""`capture_batch`: several manifest samples through the capture pipeline at once (docs/capture.md, "Batches").

1. each sample is prepared alone (a bad image fails only its own sample);
2. the prepared samples are grouped (`split_batches`: longest first, at most `rows` per group and at most
   `tokens` padded tokens, i.e. rows x (longest input + max_new_tokens));
3. each group is decoded with `decode_batch` and its saliency computed with `single_pass_batch` (per sample with
   `--max-pass-tokens`, whose chunking is per sequence), then every sample's tables are built as `capture_sample`
   builds them. Each row equals its batch-1 capture (tokens; saliency to float rounding).

One bad sample never fails its batch-mates: when a group raises, each of its samples is captured again alone and
only the one that fails alone gets an error row. A sample's `seconds` is its group's wall time divided by the
group's size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from saliency_lab.config import DecodingConfig, ManifestSample, SaliencyConfig
from saliency_lab.decoding.batch import decode_batch
from saliency_lab.errors import SampleError
from saliency_lab.pipeline.sample import (
    SampleContext,
    SampleResult,
    assemble,
    capture_prepared,
    check_generated,
    saliency_of,
)
from saliency_lab.saliency.batch_pass import single_pass_batch
from saliency_lab.saliency.single_pass import pass_dtype

if TYPE_CHECKING:
    from saliency_lab.decoding.result import DecodeResult
    from saliency_lab.models.base import ModelBundle, PreparedInput
    from saliency_lab.saliency.single_pass import PassResult

Outcome = SampleResult | Exception


def split_batches(lengths: Sequence[int], max_new_tokens: int, rows: int, tokens: int) -> list[list[int]]:
    """Indices of `lengths` (input lengths) grouped into batches: longest first (similar lengths share a batch,
    so little is padded), at most `rows` per batch and rows x (longest input + max_new_tokens) <= `tokens`; a
    sample too long for `tokens` on its own forms a batch of one."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    for i in order:
        g = groups[-1] if groups else None
        # Longest first: the group's first member sets its padded width.
        if g is not None and len(g) < rows and (len(g) + 1) * (lengths[g[0]] + max_new_tokens) <= tokens:
            g.append(i)
        else:
            groups.append([i])
    return groups


def capture_batch(
    bundle: ModelBundle,
    samples: Sequence[ManifestSample],
    decoding: DecodingConfig,
    sal: SaliencyConfig,
    run_id: str,
    *,
    rows: int,
    tokens: int,
    on_redo: Callable[[int, Exception], None] | None = None,
) -> list[Outcome]:
    """One outcome per sample, in order: its SampleResult, or the exception that failed it alone. `on_redo(n,
    exc)` hears of every group of n samples that raised `exc` and is being redone one sample at a time (so a
    batch size too large for the device shows up in the run's summary instead of silently running slower)."""
    run = SampleContext(decoding, sal, run_id)
    out: dict[int, Outcome] = {}
    prepared: dict[int, PreparedInput] = {}
    starts: dict[int, float] = {}
    for i, sample in enumerate(samples):
        starts[i] = time.perf_counter()
        try:
            prepared[i] = bundle.adapter.prepare(bundle, sample, max_new_tokens=decoding.max_new_tokens)
        except Exception as exc:  # this sample only; the others go on
            out[i] = exc
    ready = sorted(prepared)
    groups = split_batches([prepared[i].n_input for i in ready], decoding.max_new_tokens, rows, tokens)
    for group in ([ready[j] for j in g] for g in groups):
        if len(group) > 1:
            try:
                out.update(
                    _group(bundle, [samples[i] for i in group], [prepared[i] for i in group], run, group)
                )
                continue
            except Exception as exc:  # redone one by one below, so only a sample that fails alone is marked
                if on_redo is not None:
                    on_redo(len(group), exc)
        for i in group:
            try:
                out[i] = capture_prepared(bundle, samples[i], prepared[i], decoding, sal, run_id, starts[i])
            except Exception as exc:
                out[i] = exc
    return [out[i] for i in range(len(samples))]


def _group(
    bundle: ModelBundle,
    samples: list[ManifestSample],
    prepared: list[PreparedInput],
    run: SampleContext,
    index: list[int],
) -> dict[int, Outcome]:
    t0 = time.perf_counter()
    results = decode_batch(
        bundle, prepared, run.decoding, heads=run.sal.heads, keep_prefix=_reuse_prefill(bundle, run.sal)
    )
    t_gen = (time.perf_counter() - t0) / len(samples)
    out: dict[int, Outcome] = {}
    keep = []
    for k, (sample, result) in enumerate(zip(samples, results, strict=True)):
        try:
            check_generated(sample, result)  # a row that emitted nothing fails alone, not its batch
            keep.append(k)
        except SampleError as exc:
            out[index[k]] = exc
    if keep:
        passes = _passes(bundle, [prepared[k] for k in keep], [results[k] for k in keep], run.sal)
        seconds = (time.perf_counter() - t0) / len(samples)
        for k, res in zip(keep, passes, strict=True):
            out[index[k]] = assemble(bundle, samples[k], prepared[k], results[k], res, run, t_gen, seconds)
    return out


def _passes(
    bundle: ModelBundle, prepared: list[PreparedInput], results: list[DecodeResult], sal: SaliencyConfig
) -> list[PassResult]:
    """The saliency of every row: one batched pass, or per sample when the pass is chunked."""
    if sal.max_pass_tokens is not None:
        return [saliency_of(bundle, p, r, sal) for p, r in zip(prepared, results, strict=True)]
    prefix = results[0].prefix
    for r in results:  # the pass is its last user: its keys and values are freed with the pass
        r.prefix = None
    return single_pass_batch(
        bundle,
        prepared,
        [list(r.output_ids) for r in results],
        heads=sal.heads,
        hooks=[list(r.hooks) for r in results],
        keep_rows=bool(sal.rows) or sal.verify,
        candidates=sal.candidates,
        precision=sal.precision,
        prefix=prefix,
    )


def _reuse_prefill(bundle: ModelBundle, sal: SaliencyConfig) -> bool:
    """Whether the decoding should keep its input prefill for the saliency pass: only when the pass runs batched
    and in the model's own dtype (a bf16 model's float32 pass must forward its inputs in float32 itself)."""
    return sal.max_pass_tokens is None and pass_dtype(bundle.dtype, sal.precision) == bundle.dtype
