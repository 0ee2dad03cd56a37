"""`capture(cfg)`: run generation + saliency capture over a manifest into a Parquet dataset (docs/capture.md).

The model is loaded once; the samples of this process's shard are captured one by one, buffered and written
as atomic parts (`store.writer`). Any exception raised while capturing one sample (SampleError: missing or
corrupt image, context too long, non-finite gradients; or the image processor refusing an image, e.g. a PIL
decompression bomb or an extreme aspect ratio) becomes a `samples` row with status 'error' naming the
exception class, and the run goes on; `RunResult.error_classes` counts them (docs/failures.md). Ctrl-C or any other
exception first flushes every sample already complete, so nothing finished is lost; `resume=True` continues.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from saliency_lab.config import CaptureConfig, DecodingConfig, ManifestSample, ModelConfig, SaliencyConfig
from saliency_lab.errors import SaliencyLabError, SampleError
from saliency_lab.launch import detect_launch, device_for
from saliency_lab.manifest import Manifest, load_manifest, shard_of
from saliency_lab.progress import Progress
from saliency_lab.seeding import sample_seed
from saliency_lab.store.runinfo import RUN_JSON, build_run_info, read_run_info, write_or_check_run_info
from saliency_lab.store.schema import table_from_columns
from saliency_lab.store.writer import ShardLock, ShardWriter
from saliency_lab.threads import configure_threads, configured_threads


class _Result(Protocol):
    tables: dict[str, pa.Table]
    seconds: float


CaptureFn = Callable[[Any, ManifestSample, DecodingConfig, SaliencyConfig, str], _Result]
LoadFn = Callable[[ModelConfig], Any]


@dataclass
class RunResult:
    """What one `capture` call did (for its shard)."""

    run_dir: Path
    run_id: str
    shard: tuple[int, int]
    total: int  # samples of the manifest that belong to this shard
    ok: int  # captured now with status 'ok'
    error: int  # captured now with status 'error'
    skipped: int  # already committed by an earlier (resumed) process
    seconds: float
    verify_max_abs_diff: float | None = None  # with --verify: worst |single pass - reference| over samples
    error_classes: dict[str, int] = field(default_factory=dict)  # failed samples by exception class
    batches_redone: int = 0  # batches that raised and were captured again one sample at a time

    def error_summary(self) -> str:
        """'3 sample(s) failed: SampleError 2, DecompressionBombError 1' (empty when none failed)."""
        if not self.error:
            return ""
        classes = ", ".join(f"{k} {v}" for k, v in sorted(self.error_classes.items(), key=lambda kv: -kv[1]))
        return f"{self.error} sample(s) failed" + (f": {classes}" if classes else "")

    def summary(self) -> str:
        """One line: run id, shard, sample counts by outcome, time and the verify difference."""
        k, n = self.shard
        shard = f" (shard {k}/{n})" if n > 1 else ""
        verify = "" if self.verify_max_abs_diff is None else f"; verify max |diff| {self.verify_max_abs_diff:.3g}"
        redone = f"; {self.batches_redone} batch(es) redone one sample at a time" if self.batches_redone else ""
        return (
            f"run {self.run_id}{shard}: {self.ok} ok, {self.error} error, {self.skipped} already done "
            f"of {self.total} samples in {self.seconds:.1f} s{verify}{redone}"
        )


def _id_saliency(sal: dict[str, Any]) -> dict[str, Any]:
    """The saliency settings that name a run: not verify or max_pass_tokens (same numbers), and precision only
    when it is not "model", so runs made before the option keep their ids."""
    return {k: v for k, v in sal.items()
            if k not in ("verify", "max_pass_tokens") and not (k == "precision" and v == "model")}


def default_run_id(cfg: CaptureConfig, manifest: Manifest) -> str:
    """`<model>-<manifest>-<hash of everything that changes numbers>`: the same command line gives the same
    id, so independently started shard processes and `--resume` find the same run without `--run-id`."""
    dec = cfg.to_json()
    decoding = dict(dec["decoding"])
    # The SGRS score and direction joined the config later: at the paper's rule (the defaults) they are left
    # out of the hash, so runs made before keep their ids; any other choice changes the id.
    sgrs = {k: v for k, v in decoding["sgrs"].items() if (k, v) not in (("score", "out_mean"), ("reject", "low"))}
    decoding["sgrs"] = sgrs
    key = {
        "model": {k: v for k, v in dec["model"].items() if k != "device"},
        "decoding": decoding,
        "saliency": _id_saliency({**dec["saliency"],
                                  "precision": cfg.saliency.effective_precision(cfg.model.dtype)}),
        "manifest": manifest.sha256,
        "shards": cfg.shard[1],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]

    def clean(s: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-._")[:40] or "x"

    model_name = Path(cfg.model.model.rstrip("/")).name
    return f"{clean(model_name)}-{clean(manifest.path.stem)}-{digest}"


def enabled_tables(cfg: CaptureConfig) -> list[str]:
    """The tables a capture with this configuration writes."""
    tables = ["samples", "tokens", "saliency"]
    if cfg.saliency.candidates > 0:
        tables.append("candidates")
    if cfg.saliency.rows:
        tables.append("rows")
    if cfg.decoding.strategy == "sgrs":
        tables.append("decisions")
    return tables


def error_row(run_id: str, sample: ManifestSample, reason: str, seconds: float) -> pa.Table:
    """The `samples` row recording a failed sample: manifest fields, status 'error', one-line reason."""
    return table_from_columns(
        "samples",
        {
            "run_id": [run_id],
            "sample_id": [sample.sample_id],
            "image_id": [sample.image_id],
            "image_path": [sample.image],
            "system": [sample.system],
            "prompt": [sample.prompt],
            "status": ["error"],
            "error": [" ".join(str(reason).split()) or "unknown error"],
            "seconds": [seconds],
            "meta": [None if sample.meta is None else json.dumps(sample.meta, sort_keys=True)],
        },
    )


def _with_manifest_fields(samples: pa.Table, sample: ManifestSample) -> pa.Table:
    """Fill manifest fields the capture left null (meta as JSON text), so every row carries its input."""
    values = {
        "image_id": sample.image_id,
        "image_path": sample.image,
        "system": sample.system,
        "meta": None if sample.meta is None else json.dumps(sample.meta, sort_keys=True),
    }
    for name, value in values.items():
        if value is None or name not in samples.schema.names:
            continue
        col = samples.column(name)
        if col.null_count == len(col):
            idx = samples.schema.get_field_index(name)
            samples = samples.set_column(idx, samples.schema.field(name), pa.array([value] * len(col), col.type))
    return samples


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    if "numpy" in sys.modules:
        import numpy as np

        np.random.seed(seed % 2**32)
    if "torch" in sys.modules:  # imported by the model loader; never imported here just to seed it
        import torch

        torch.manual_seed(seed)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _sigterm_as_interrupt() -> tuple[Any] | None:
    """Treat SIGTERM (batch schedulers, `kill`) like Ctrl-C so complete samples are flushed; returns the
    previous handler (in a tuple: it may itself be None), or None outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return (signal.signal(signal.SIGTERM, _raise_interrupt),)


def _default_load(model_cfg: ModelConfig, quiet: bool = False) -> Any:
    from saliency_lab.models.registry import load_model

    if quiet:  # transformers draws its own "Loading weights" bar; --quiet means no bars at all
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        return load_model(model_cfg)
    except (SaliencyLabError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # corrupt/truncated safetensors, a refused pickle checkpoint, a bad config
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), "")
        raise SaliencyLabError(
            f"--model {model_cfg.model}: cannot load the model ({type(exc).__name__}: {' '.join(first.split())[:300]}); "
            "check that its files are complete safetensors weights and a matching config.json"
        ) from None


def _outcome(sample_fn: CaptureFn, bundle: Any, sample: ManifestSample, cfg: CaptureConfig,
             run_id: str) -> _Result | Exception:
    """One sample's result, or the exception that failed it (KeyboardInterrupt and the like still stop)."""
    try:
        return sample_fn(bundle, sample, cfg.decoding, cfg.saliency, run_id)
    except Exception as exc:
        return exc


def _tables_of(outcome: _Result | Exception, sample: ManifestSample, run_id: str, seconds: float,
               classes: Counter[str]) -> dict[str, pa.Table]:
    """The tables to commit for one sample: its captured tables, or its error row (the class counted)."""
    if isinstance(outcome, Exception):
        classes[type(outcome).__name__] += 1
        reason = str(outcome) if isinstance(outcome, SampleError) else (
            f"sample {sample.sample_id!r}: {type(outcome).__name__}: {outcome}")
        return {"samples": error_row(run_id, sample, reason, seconds)}
    tables = dict(outcome.tables)
    tables["samples"] = _with_manifest_fields(tables["samples"], sample)
    return tables


def _capture_batch(bundle: Any, samples: list[ManifestSample], decoding: DecodingConfig, sal: SaliencyConfig,
                   run_id: str, *, rows: int, tokens: int, on_redo: Callable[[int, Exception], None]) -> list[Any]:
    from saliency_lab.pipeline.batch import capture_batch

    return list(capture_batch(bundle, samples, decoding, sal, run_id, rows=rows, tokens=tokens, on_redo=on_redo))


class _Redone:
    """Batches that raised and were captured again one sample at a time (told once on stderr, counted)."""

    def __init__(self) -> None:
        self.batches = 0
        self.samples = 0

    def add(self, n: int, exc: Exception) -> None:
        """A group of n samples raised `exc`; its samples are being redone alone."""
        if not self.batches:
            first = next((ln for ln in str(exc).splitlines() if ln.strip()), "")
            print(f"saliency-lab: a batch of {n} samples failed ({type(exc).__name__}: {first[:200]}); its samples "
                  "are captured one at a time; if this repeats, lower --batch-size or --max-batch-tokens",
                  file=sys.stderr)
        self.batches += 1
        self.samples += n


def _default_capture() -> CaptureFn:
    from saliency_lab.pipeline import capture_sample

    return capture_sample


def resolve_launch(cfg: CaptureConfig) -> CaptureConfig:
    """`shard="auto"`: a copy with the shard (and `cuda` -> `cuda:<local rank>`) from torchrun or SLURM."""
    if cfg.shard != "auto":
        return cfg
    launch = detect_launch()
    model = replace(cfg.model, device=device_for(cfg.model.device, launch))
    return replace(cfg, shard=(launch.rank, launch.world_size), model=model)


def _shard_numbers(cfg: CaptureConfig) -> tuple[int, int]:
    if isinstance(cfg.shard, str):  # validate() refuses an unresolved "auto"; this narrows the type
        raise SaliencyLabError("--shard auto: not resolved")
    return cfg.shard


def capture(
    cfg: CaptureConfig,
    *,
    load_fn: LoadFn | None = None,
    capture_fn: CaptureFn | None = None,
) -> RunResult:
    """Capture this process's shard of `cfg.data` into `<cfg.out>/<run_id>`; see the module docstring.

    `load_fn` / `capture_fn` replace the model loader and the per-sample capture (tests inject fakes).
    """
    t0 = time.perf_counter()
    cfg = resolve_launch(cfg)
    cfg.validate()  # every setting that needs no model: before the manifest is read or anything is written
    # run.json and the run id record what "auto" means for this dtype, not the word "auto".
    cfg = replace(cfg, saliency=replace(cfg.saliency, precision=cfg.saliency.effective_precision(cfg.model.dtype)))
    manifest = load_manifest(cfg.data)  # validates every line before anything is written
    run_id = cfg.run_id or default_run_id(cfg, manifest)
    run_dir = Path(cfg.out) / run_id
    k, n_shards = _shard_numbers(cfg)
    mine = [s for s in manifest.samples if shard_of(s.sample_id, n_shards) == k]

    writer = ShardWriter(run_dir, k, enabled_tables(cfg), cfg.samples_per_part)
    # Cheap checks before the (slow) model load: a newer dataset, or an unintended overwrite.
    if (run_dir / RUN_JSON).exists():
        stored = read_run_info(run_dir).get("run_id")
        if stored and stored != run_id:
            raise SaliencyLabError(
                f"{run_dir}: holds run {stored!r} (its rows carry that id), not {run_id!r}: the folder was copied or "
                f"renamed; resume it where it was made (--out {run_dir.parent} --run-id {stored}), or rename the "
                f"folder back to {stored}"
            )
    if not cfg.resume and writer.has_data():
        raise SaliencyLabError(
            f"{run_dir}: shard {k} already holds captured data; pass --resume to continue it, "
            "or pick a new --run-id or --out"
        )

    bundle = load_fn(cfg.model) if load_fn else _default_load(cfg.model, cfg.quiet)
    threads = configure_threads(cfg.threads if cfg.threads is not None else configured_threads())
    # The SGRS layers can only be checked against the model; still before run.json or any part is written.
    cfg.decoding.validate(getattr(bundle, "n_layers", None))
    sample_fn = capture_fn or _default_capture()
    info = build_run_info(cfg, run_id, bundle.info(), manifest.path, manifest.sha256)
    info["threads"] = threads  # of the process that created run.json; other shards may differ
    rows, tokens = cfg.batch.limits(cfg.model.device)
    info["batch"] = {"size": cfg.batch.size, "max_rows": rows, "max_tokens": tokens}  # never changes numbers
    write_or_check_run_info(run_dir, info)

    lock = ShardLock(run_dir, k)
    lock.acquire()
    old_term = _sigterm_as_interrupt()
    progress: Progress | None = None
    ok = err = 0
    classes: Counter[str] = Counter()
    verify_diff: float | None = None
    decayed: dict[str, list[int]] = {}  # per sample, the output steps the saliency decay chose
    redo = _Redone()
    try:
        committed = writer.recover()
        todo = [s for s in mine if s.sample_id not in committed]
        skipped = len(mine) - len(todo)
        progress = Progress(len(todo), desc=f"capture {run_id}" + (f" [{k}/{n_shards}]" if n_shards > 1 else ""),
                            quiet=cfg.quiet)
        try:
            rows, tokens = cfg.batch.limits(cfg.model.device)
            step = 1 if capture_fn is not None else rows  # injected per-sample captures run one by one
            for start in range(0, len(todo), step):
                chunk = todo[start:start + step]
                _seed_everything(sample_seed(cfg.decoding.seed, chunk[0].sample_id))
                ts = time.perf_counter()
                if capture_fn is None and len(chunk) > 1:
                    outcomes = _capture_batch(bundle, chunk, cfg.decoding, cfg.saliency, run_id, rows=rows,
                                              tokens=tokens, on_redo=redo.add)
                else:
                    outcomes = [_outcome(sample_fn, bundle, s, cfg, run_id) for s in chunk]
                each = (time.perf_counter() - ts) / len(chunk)
                for sample, outcome in zip(chunk, outcomes, strict=True):
                    tables = _tables_of(outcome, sample, run_id, each, classes)
                    stats = getattr(outcome, "stats", None) or {}
                    diff = stats.get("verify_max_abs_diff")
                    if diff is not None:
                        verify_diff = max(float(diff), verify_diff or 0.0)
                    if "decayed_steps" in stats:
                        decayed[sample.sample_id] = list(stats["decayed_steps"])
                    status = tables["samples"].column("status")[0].as_py()
                    if status == "ok":
                        ok += 1
                    else:
                        err += 1
                        if sum(classes.values()) < err:  # the capture itself returned an error row
                            classes["error row"] += 1
                    writer.add(tables)
                    progress.update(1, ok=ok, error=err)
        finally:
            # Reached on success, Ctrl-C and crashes alike: complete samples are committed, never lost.
            writer.flush()
            if cfg.decoding.decay.active:
                from saliency_lab.pipeline.intervention import write_intervention

                write_intervention(run_dir, cfg.decoding.decay, decayed)
    finally:
        if progress is not None:
            progress.close()
        lock.release()
        if old_term is not None and old_term[0] is not None:
            signal.signal(signal.SIGTERM, old_term[0])
    return RunResult(
        run_dir=run_dir,
        run_id=run_id,
        shard=(k, n_shards),
        total=len(mine),
        ok=ok,
        error=err,
        skipped=skipped,
        seconds=time.perf_counter() - t0,
        verify_max_abs_diff=verify_diff,
        error_classes=dict(classes),
        batches_redone=redo.batches,
    )
