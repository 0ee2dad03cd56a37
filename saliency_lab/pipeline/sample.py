"""`capture_sample`: one manifest sample through the capture pipeline (docs/capture.md).

1. `adapter.prepare`: chat template, image, segments;
2. `saliency_lab.decoding.decode`: the one generation path (greedy, sampling or SGRS, with LocoRE and the saliency
   decay when configured), seeded per sample (`seeding.sample_seed` of the run seed and the sample id) so a resumed
   or sharded run reproduces the same output;
3. `single_pass`: the saliency of every output token with one teacher-forced stop-gradient pass, under the very
   attention hooks the decoding ended with (LocoRE, the decayed positions);
4. `build_tables`: the rows of every enabled table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from saliency_lab.config import DecodingConfig, ManifestSample, SaliencyConfig
from saliency_lab.decoding import decode
from saliency_lab.errors import SampleError
from saliency_lab.pipeline.tables import build_tables
from saliency_lab.saliency.reference import verify_rows
from saliency_lab.saliency.single_pass import PassResult, single_pass

if TYPE_CHECKING:
    from saliency_lab.decoding.result import DecodeResult
    from saliency_lab.models.base import ModelBundle, PreparedInput


@dataclass
class SampleResult:
    """One captured sample: its tables (status 'ok'), wall time and stats for the run summary."""

    sample_id: str
    tables: dict[str, pa.Table]
    seconds: float
    # generate_seconds; verify_max_abs_diff with --verify; decayed_steps under the saliency decay
    stats: dict[str, Any] = field(default_factory=dict)


def capture_sample(
    bundle: ModelBundle, sample: ManifestSample, decoding: DecodingConfig, sal: SaliencyConfig, run_id: str
) -> SampleResult:
    """Generate, compute saliency, and return the sample's tables (status 'ok'); SampleError on bad input."""
    t0 = time.perf_counter()
    prepared = bundle.adapter.prepare(bundle, sample, max_new_tokens=decoding.max_new_tokens)
    return capture_prepared(bundle, sample, prepared, decoding, sal, run_id, t0)


def capture_prepared(bundle: ModelBundle, sample: ManifestSample, prepared: PreparedInput, decoding: DecodingConfig,
                     sal: SaliencyConfig, run_id: str, t0: float) -> SampleResult:
    """`capture_sample` from the prepared input on (`t0`: when the sample's capture started)."""
    result = decode(bundle, prepared, decoding, heads=sal.heads)
    t_gen = time.perf_counter() - t0
    check_generated(sample, result)
    res = saliency_of(bundle, prepared, result, sal)
    return assemble(bundle, sample, prepared, result, res, SampleContext(decoding, sal, run_id),
                    t_gen, time.perf_counter() - t0)


def check_generated(sample: ManifestSample, result: DecodeResult) -> None:
    """SampleError when the model emitted no token (there is nothing to compute saliency for)."""
    if not result.output_ids:
        raise SampleError(f"sample {sample.sample_id!r}: the model generated no tokens")


def saliency_of(bundle: ModelBundle, prepared: PreparedInput, result: DecodeResult, sal: SaliencyConfig) -> PassResult:
    """The single pass over one sample's output, under the attention hooks its decoding ended with."""
    return single_pass(
        bundle,
        prepared,
        list(result.output_ids),
        heads=sal.heads,
        hooks=list(result.hooks),
        keep_rows=bool(sal.rows) or sal.verify,
        candidates=sal.candidates,
        precision=sal.precision,
        max_pass_tokens=sal.max_pass_tokens,
    )


@dataclass(frozen=True)
class SampleContext:
    """The run settings every sample's tables are built with."""

    decoding: DecodingConfig
    sal: SaliencyConfig
    run_id: str


def assemble(bundle: ModelBundle, sample: ManifestSample, prepared: PreparedInput, result: DecodeResult,
             res: PassResult, run: SampleContext, t_gen: float, seconds: float) -> SampleResult:
    """The sample's tables and stats from its decoding and its saliency pass (`--verify` checks it here)."""
    output_ids = list(result.output_ids)
    stats: dict[str, Any] = {"generate_seconds": t_gen}
    if "decayed_steps" in result.stats:
        stats["decayed_steps"] = list(result.stats["decayed_steps"])
    if run.sal.verify:
        stats["verify_max_abs_diff"] = verify_rows(bundle, prepared, output_ids, res, run.sal.heads,
                                                   list(result.hooks))
    decisions = result if run.decoding.strategy == "sgrs" else None
    tables = build_tables(bundle, sample, prepared, output_ids, res, run.sal, run.run_id, seconds, decisions)
    return SampleResult(sample.sample_id, tables, seconds, stats)
