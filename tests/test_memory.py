"""Memory does not grow over long runs (resident set size, Linux only).

Generous margins: the allocator keeps freed pages, so only growth well past
warm-up counts.  No timing is asserted.
"""
import gc
import os
import sys

import numpy as np
import pytest

import cbp

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self/statm"
)

MARGIN = 4 * 1024 * 1024  # bytes of growth tolerated after warm-up


def rss():
    """Resident set size of this process, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def growth(work, warmup, repeat):
    """RSS growth over `repeat` calls of work(), after `warmup` calls."""
    for _ in range(warmup):
        work()
    gc.collect()
    before = rss()
    for _ in range(repeat):
        work()
    gc.collect()
    return rss() - before, before


def seed000(backend="native"):
    return cbp.Network(
        [cbp.Dense(1, 1, "relu", weights=[[0.5]], bias=[0.2]),
         cbp.Dense(1, 1, "identity", weights=[[0.3]], bias=[0.1])],
        loss="half_squared_error", backend=backend,
    )


def test_train_step_100k_calls(native_core):
    net = seed000()
    X, y = np.array([[2.0]]), np.array([[2.0]])
    grew, before = growth(lambda: net.train_step(X, y, lr=1e-4), 10_000, 100_000)
    print(f"\ntrain_step x100000: RSS {before / 2**20:.1f} MiB, grew {grew / 1024:.0f} KiB")
    assert grew < MARGIN
    # the slow path (lists, converted at the boundary) too
    grew, _ = growth(lambda: net.train_step([[2.0]], [2.0], lr=1e-4), 2_000, 20_000)
    assert grew < MARGIN


def test_fit_1000_calls(native_core):
    X, y = cbp.datasets.spiral_data(20, 3)
    net = cbp.Network([cbp.Dense(2, 16, "relu", seed=0), cbp.Dropout(0.1),
                       cbp.Dense(16, 3, "softmax", seed=1)],
                      loss="categorical_crossentropy", optimizer=cbp.optim.Adam(1e-3))

    def work():
        net.fit(X, y, epochs=3, batch_size=16, shuffle=True, validation_data=(X[:10], y[:10]),
                early_stopping=cbp.EarlyStopping(patience=50))

    grew, before = growth(work, 100, 1_000)
    print(f"\nfit x1000: RSS {before / 2**20:.1f} MiB, grew {grew / 1024:.0f} KiB")
    assert grew < MARGIN


def test_save_load_100_cycles(tmp_path):
    net = seed000("numpy" if not cbp.native_available() else "native")
    path = tmp_path / "net.npz"

    def work():
        net.save(path)
        cbp.load(path)

    grew, _ = growth(work, 10, 100)
    assert grew < MARGIN


def test_failed_calls_do_not_leak(native_core):
    """Rejected input and divergence free what they allocated."""
    net = seed000()

    def work():
        for bad in ([[np.nan]], [[1.0, 2.0]], "x"):
            with pytest.raises((ValueError, TypeError)):
                net.train_step(bad, [2.0], lr=0.1)
        with pytest.raises(cbp.DivergenceError):
            net.train_step([[1e200]], [0.0], lr=1e200)

    grew, _ = growth(work, 500, 5_000)
    assert grew < MARGIN
