"""Buffers aligned to a cache line.

The native core's products load whole vectors of 8 doubles (64 bytes)
under its AVX-512 table.  One that straddles two cache lines loads at
about half the rate, and NumPy aligns its allocations to 16 bytes only, so
the network's flat parameter and gradient buffers and the core's
workspaces are allocated here, starting on a 64-byte boundary.
"""

import numpy as np

LINE = 64  # bytes


def aligned_empty(n):
    """An uninitialised float64 array of ``n`` entries whose data start on a
    64-byte boundary (a view of a slightly larger array)."""
    raw = np.empty(n + LINE // 8, dtype=np.float64)
    shift = (-raw.ctypes.data % LINE) // 8
    return raw[shift : shift + n]


def aligned_zeros(n):
    """:func:`aligned_empty`, filled with zeros."""
    out = aligned_empty(n)
    out.fill(0.0)
    return out
