"""Decoding: `decode(bundle, prepared, cfg)`, the one generation path (greedy, sampling, SGRS; LocoRE and the
saliency decay as observers). See saliency_lab.decoding.engine and docs/interventions.md."""

from saliency_lab.decoding.engine import decode
from saliency_lab.decoding.result import DecodeResult

__all__ = ["DecodeResult", "decode"]
