"""The NumPy twin of the native counter-based generator (``src/_random.pxi``):
splitmix64 draws, the epoch's sample order and the dropout masks.

Integer arithmetic wraps modulo 2**64 on both sides, so the native loop and
this twin draw the same numbers from the same (seed, stream, counter).
"""

import numpy as np

__all__ = ["random_bits", "shuffle_order", "dropout_mask"]

_U = np.uint64
_GOLDEN = _U(0x9E3779B97F4A7C15)
_M1, _M2 = _U(0xBF58476D1CE4E5B9), _U(0x94D049BB133111EB)


def _mix(z):
    z = (z ^ (z >> _U(30))) * _M1
    z = (z ^ (z >> _U(27))) * _M2
    return z ^ (z >> _U(31))


def random_bits(seed, stream, start, n):
    """uint64 draws number start .. start + n - 1 of stream ``stream``."""
    base = _mix(np.array([seed], dtype=np.uint64) ^ (np.array([stream], dtype=np.uint64) * _GOLDEN))
    counters = np.arange(start, start + n, dtype=np.uint64) + _U(1)
    return _mix(base + counters * _GOLDEN)


def shuffle_order(seed, epoch, n):
    """The sample order of an epoch: argsort of hashed keys, ties by index."""
    return np.argsort(random_bits(seed, 2 * epoch, 0, n), kind="stable").astype(np.int64)


def dropout_mask(seed, stream, start, rate, out):
    """out := 1 / (1 - rate) where a uniform draw >= rate, else 0 (inverted dropout)."""
    bits = random_bits(seed, stream, start, out.size)
    u = (bits >> _U(11)).astype(np.float64) * 2.0**-53
    np.copyto(out.reshape(-1), np.where(u >= rate, 1.0 / (1.0 - rate), 0.0))
    return out
