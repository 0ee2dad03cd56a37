"""saliency-lab: token-level hallucination analysis with LVLMs-Saliency.

The public API mirrors the command line; see README.md. Heavy imports (torch, transformers) happen lazily
so `import saliency_lab` stays fast.
"""

from __future__ import annotations

from saliency_lab.errors import SaliencyLabError, SampleError
from saliency_lab.version import __version__

__all__ = ["__version__", "SaliencyLabError", "SampleError", "capture"]


def capture(*args, **kwargs):
    """Run a capture over a manifest (see `saliency_lab.run.capture`)."""
    from saliency_lab.run import capture as _capture

    return _capture(*args, **kwargs)
