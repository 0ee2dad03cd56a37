"""Decoding: `decode(bundle, prepared, cfg)`, the one generation path (greedy, sampling, SGRS; LocoRE and the
saliency decay as observers), and `decode_batch` for several samples at once. See saliency_lab.decoding.engine,
saliency_lab.decoding.batch and docs/interventions.md."""

from saliency_lab.decoding.batch import decode_batch
from saliency_lab.decoding.engine import decode
from saliency_lab.decoding.result import DecodeResult

__all__ = ["DecodeResult", "decode", "decode_batch"]
