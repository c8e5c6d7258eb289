"""The buffers the kernels read start on a cache line (64 bytes).

A vector of the AVX-512 table that straddles two cache lines loads at about
half the rate, and NumPy aligns its allocations to 16 bytes only, so
cbp._memory allocates the network's parameters and gradients, and the
engine lays out its workspace, on 64-byte boundaries.  These are checks of
addresses, not of timings.
"""

import numpy as np
import pytest

import cbp
from cbp._memory import aligned_empty, aligned_zeros


@pytest.mark.parametrize("n", [1, 3, 8, 13, 1000, 100_003])
def test_aligned_buffers_start_on_a_cache_line(n):
    for make in (aligned_empty, aligned_zeros):
        a = make(n)
        assert a.shape == (n,) and a.dtype == np.float64 and a.flags.c_contiguous
        assert a.ctypes.data % 64 == 0
    assert not aligned_zeros(n).any()


def test_parameters_and_gradients_are_aligned(backend):
    for sizes in [(2, 64, 3), (3, 5, 1), (784, 10)]:
        layers = [cbp.Dense(a, b, "relu") for a, b in zip(sizes, sizes[1:])]
        net = cbp.Network(layers, loss="squared_error", backend=backend, seed=0)
        assert net.parameters.ctypes.data % 64 == 0
        assert net.gradients.ctypes.data % 64 == 0
        before = net.parameters.ctypes.data
        net.parameters = np.ones(net.parameters.size)
        assert net.parameters.ctypes.data == before  # (the buffer is kept)


@pytest.mark.parametrize("rows", [1, 3, 4, 7, 8, 300])
@pytest.mark.parametrize("sizes", [(2, 64, 3), (3, 5, 7, 1), (1, 1, 1), (5, 16, 8)])
def test_the_native_workspace_blocks_are_aligned(native_core, rows, sizes):
    """The engine's forward() returns a view of its workspace: the output
    layer's block, which starts on a cache line whatever the widths."""
    layers = [cbp.Dense(a, b, "relu") for a, b in zip(sizes, sizes[1:])]
    net = cbp.Network(layers, loss="squared_error", seed=0)
    X = np.random.default_rng(0).random((rows, sizes[0]))
    out = net._engine.forward(X)
    assert out.ctypes.data % 64 == 0
    np.testing.assert_allclose(out, net.predict(X), rtol=1e-12)
