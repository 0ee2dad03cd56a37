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
from saliency_lab.saliency.single_pass import single_pass

if TYPE_CHECKING:
    from saliency_lab.models.base import ModelBundle


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
    result = decode(bundle, prepared, decoding, heads=sal.heads)
    output_ids = list(result.output_ids)
    t_gen = time.perf_counter() - t0
    if not output_ids:
        raise SampleError(f"sample {sample.sample_id!r}: the model generated no tokens")

    hooks = list(result.hooks)
    res = single_pass(
        bundle,
        prepared,
        output_ids,
        heads=sal.heads,
        hooks=hooks,
        keep_rows=bool(sal.rows) or sal.verify,
        candidates=sal.candidates,
        precision=sal.precision,
        max_pass_tokens=sal.max_pass_tokens,
    )
    stats: dict[str, Any] = {"generate_seconds": t_gen}
    if "decayed_steps" in result.stats:
        stats["decayed_steps"] = list(result.stats["decayed_steps"])
    if sal.verify:
        stats["verify_max_abs_diff"] = verify_rows(bundle, prepared, output_ids, res, sal.heads, hooks)
    seconds = time.perf_counter() - t0
    decisions = result if decoding.strategy == "sgrs" else None
    tables = build_tables(bundle, sample, prepared, output_ids, res, sal, run_id, seconds, decisions)
    return SampleResult(sample.sample_id, tables, seconds, stats)
