"""A model-free stand-in for the capture core, for the writer/run unit tests.

`fake_capture` builds the tables of one sample the way the real capture does (schema module, one `samples`
row, n_output tokens whose char spans tile output_text, n_output x n_layers saliency rows), with values drawn
from an RNG seeded by the sample id, so a resumed or sharded run must reproduce them exactly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from saliency_lab.errors import SampleError
from saliency_lab.store.schema import table_from_columns

WORDS = ["a", " cat", " dog", " on", " the", " table", ".", " red", " ball", "</s>"]


@dataclass
class FakeBundle:
    n_layers: int = 3
    n_heads: int = 2
    max_context: int = 64

    def info(self) -> dict:
        return {"id": "fake", "architecture": "FakeForCausalLM", "n_layers": self.n_layers,
                "n_heads": self.n_heads, "dtype": "float32", "device": "cpu"}


@dataclass
class FakeResult:
    tables: dict[str, pa.Table]
    seconds: float


def fake_load(model_cfg) -> FakeBundle:
    return FakeBundle()


def _rng(sample_id: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(sample_id.encode()).digest()[:8], "big"))


def fake_capture(bundle: FakeBundle, sample, decoding, sal, run_id: str) -> FakeResult:
    if sample.image is not None and not Path(sample.image).exists():
        raise SampleError(f"image {sample.image}: file not found; fix the path in the manifest")
    if len(sample.prompt) > bundle.max_context:
        raise SampleError(f"prompt of {len(sample.prompt)} tokens exceeds the model context {bundle.max_context}")
    rng = _rng(sample.sample_id)
    n_in = 5 + len(sample.prompt) // 4
    n_out = int(min(decoding.max_new_tokens, rng.integers(1, 12)))
    ids = rng.integers(0, len(WORDS) - 1, size=n_out)
    ids[-1] = len(WORDS) - 1 if n_out < decoding.max_new_tokens else ids[-1]
    texts = ["" if WORDS[i] == "</s>" else WORDS[i] for i in ids]
    starts = np.cumsum([0] + [len(t) for t in texts])[:-1]
    output_text = "".join(texts)
    L = bundle.n_layers
    steps = np.repeat(np.arange(n_out), L)
    layers = np.tile(np.arange(L), n_out)
    vals = rng.random((7, n_out * L)).astype(np.float32)
    prev = vals[4].tolist()
    for i in range(L):  # no previous token at step 0
        prev[i] = None
    tables = {
        "samples": table_from_columns("samples", {
            "run_id": [run_id], "sample_id": [sample.sample_id], "image_id": [sample.image_id],
            "image_path": [sample.image], "system": [sample.system], "prompt": [sample.prompt],
            "output_text": [output_text], "input_ids": [list(range(n_in))], "n_input": [n_in],
            "n_output": [n_out], "seg_system": [[0, 2]], "seg_image": [[2, 2]], "seg_prompt": [[2, n_in]],
            "status": ["ok"], "seconds": [0.01],
            "meta": [None if sample.meta is None else json.dumps(sample.meta, sort_keys=True)],
        }),
        "tokens": table_from_columns("tokens", {
            "run_id": [run_id] * n_out, "sample_id": [sample.sample_id] * n_out,
            "step": list(range(n_out)), "position": [n_in + i for i in range(n_out)],
            "token_id": ids.tolist(), "token_text": texts, "char_start": starts.tolist(),
            "char_end": (starts + [len(t) for t in texts]).tolist(),
            "logprob": (-rng.random(n_out)).astype(np.float32), "entropy": rng.random(n_out).astype(np.float32),
            "topk_ids": [[int(i), 0] for i in ids], "topk_probs": [[0.6, 0.2]] * n_out,
        }),
        "saliency": table_from_columns("saliency", {
            "run_id": [run_id] * (n_out * L), "sample_id": [sample.sample_id] * (n_out * L),
            "step": steps, "layer": layers, "sys_sum": vals[0], "img_sum": vals[1], "prompt_sum": vals[2],
            "out_sum": vals[3], "prev": prev, "row_l2": vals[5], "attn_out_sum": vals[6],
        }),
    }
    if sal.candidates:
        K = sal.candidates
        n = n_out * K * L
        tables["candidates"] = table_from_columns("candidates", {
            "run_id": [run_id] * n, "sample_id": [sample.sample_id] * n,
            "step": np.repeat(np.arange(n_out), K * L), "rank": np.tile(np.repeat(np.arange(K), L), n_out),
            "token_id": np.zeros(n, dtype=np.int32), "prob": rng.random(n).astype(np.float32),
            "layer": np.tile(np.arange(L), n_out * K), "out_sum": rng.random(n).astype(np.float32),
            "prompt_sum": rng.random(n).astype(np.float32), "row_l2": rng.random(n).astype(np.float32),
        })
    return FakeResult(tables=tables, seconds=0.01)


def write_manifest(path: Path, n: int) -> Path:
    lines = [json.dumps({"sample_id": f"s{i:03d}", "prompt": f"Describe picture {i}.", "meta": {"i": i}})
             for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path
