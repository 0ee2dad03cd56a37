"""The one definition of a sample's randomness: stable hashes of sample ids, for seeds and shard assignment.

Python's hash() is salted per process, so it can neither seed nor shard; a sha256 prefix is the same in every
process, Python version and machine. Everything random about one sample (the global RNGs the run seeds before
it, `generate`'s sampling, the torch.Generator of our decoding loop and SGRS) derives from `sample_seed`, so a
sample decodes the same whether it runs first, after a resume, or in another shard.
"""

from __future__ import annotations

import hashlib

SEED_MODULUS = 2**63  # torch and numpy seeds must fit a signed 64-bit integer


def stable_hash(sample_id: str) -> int:
    """First 8 bytes of sha256(sample_id), unsigned big-endian."""
    return int.from_bytes(hashlib.sha256(sample_id.encode("utf-8")).digest()[:8], "big")


def sample_seed(seed: int, sample_id: str) -> int:
    """Per-sample seed: (run seed + stable_hash(sample_id)) mod 2**63."""
    return (int(seed) + stable_hash(sample_id)) % SEED_MODULUS
