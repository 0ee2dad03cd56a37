"""A whole capture run under the saliency-decay intervention (paper App. B.1), for side-by-side comparison with
a baseline run of the same manifest.

    from saliency_lab.decoding.decay import SaliencyDecayConfig
    from saliency_lab.decoding.decay_capture import capture_decay
    result = capture_decay(capture_config, SaliencyDecayConfig(rate=0.4, threshold=0.45))

Each sample decodes with `decode_with_decay` (greedy or sample, LocoRE too when configured), then the capture
engine's teacher-forced saliency pass runs with the same hooks and the decayed positions, so the stored saliency
reflects the decayed attention. The decay settings and each sample's decayed steps are written to
`<run>/intervention.json` (run.json records the decoding config as for any run). Without an explicit run_id the run
is named `<default run id>-decay-<hash of the decay settings>`, so it never collides with the baseline run.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from saliency_lab.config import CaptureConfig, DecodingConfig, ManifestSample, SaliencyConfig
from saliency_lab.decoding.decay import SaliencyDecayConfig, decode_with_decay
from saliency_lab.decoding.hooks import intervention_hooks
from saliency_lab.errors import SampleError

INTERVENTION_JSON = "intervention.json"


def decay_capture_fn(decay: SaliencyDecayConfig, decayed: dict[str, list[int]] | None = None):
    """A per-sample capture function for `saliency_lab.run.capture(capture_fn=...)`."""
    from saliency_lab.saliency.capture import SampleResult, build_tables
    from saliency_lab.saliency.single_pass import single_pass

    def capture_one(bundle: Any, sample: ManifestSample, decoding: DecodingConfig, sal: SaliencyConfig,
                    run_id: str) -> SampleResult:
        t0 = time.perf_counter()
        prepared = bundle.adapter.prepare(bundle, sample, max_new_tokens=decoding.max_new_tokens)
        res = decode_with_decay(bundle, prepared, decoding, decay, heads=sal.heads)
        if not res.output_ids:
            raise SampleError(f"sample {sample.sample_id!r}: the model generated no tokens")
        hooks = intervention_hooks(decoding, prepared.n_input) + [res.stats["hook"]]
        sp = single_pass(bundle, prepared, res.output_ids, heads=sal.heads, hooks=hooks,
                         keep_rows=bool(sal.rows), candidates=sal.candidates, precision=sal.precision,
                         max_pass_tokens=sal.max_pass_tokens)
        seconds = time.perf_counter() - t0
        tables = build_tables(bundle, sample, prepared, res.output_ids, sp, sal, run_id, seconds, None)
        if decayed is not None:
            decayed[sample.sample_id] = list(res.stats["decayed_steps"])
        return SampleResult(sample.sample_id, tables, seconds, {"decayed_steps": res.stats["decayed_steps"]})

    return capture_one


def decay_run_id(cfg: CaptureConfig, decay: SaliencyDecayConfig) -> str:
    from saliency_lab.manifest import load_manifest
    from saliency_lab.run import default_run_id

    digest = hashlib.sha256(json.dumps(asdict(decay), sort_keys=True).encode()).hexdigest()[:6]
    return f"{default_run_id(cfg, load_manifest(cfg.data))}-decay-{digest}"


def capture_decay(cfg: CaptureConfig, decay: SaliencyDecayConfig):
    """Capture `cfg` with the decay intervention; returns saliency_lab.run.RunResult."""
    from saliency_lab.run import capture

    decay.validate()
    if cfg.run_id is None:
        cfg = replace(cfg, run_id=decay_run_id(cfg, decay))
    decayed: dict[str, list[int]] = {}
    path = Path(cfg.out) / str(cfg.run_id) / INTERVENTION_JSON
    try:
        result = capture(cfg, capture_fn=decay_capture_fn(decay, decayed))
    finally:
        # Written whenever the run exists (also after a crash or Ctrl-C), merged with earlier resumed parts.
        if (path.parent / "run.json").exists():
            old = json.loads(path.read_text()) if path.exists() else {}
            steps = {**old.get("decayed_steps", {}), **decayed}
            doc = {"intervention": "saliency_decay", "decay": asdict(decay), "decayed_steps": steps}
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
            tmp.replace(path)
    return result
