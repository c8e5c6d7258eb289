"""Resident memory stays flat over long runs of the native backend.

RSS is read from /proc/self/statm (Linux only), after a warm-up and a
garbage collection, and may grow by at most MARGIN.  The margins are
generous -- a leak of one small object per call still shows: 100,000
train_step calls leaking 24 bytes each would add 2.4 MB -- and there are no
timing assertions.  Skipped under AddressSanitizer and valgrind, whose
allocators hold on to freed memory (quarantine) by design.

Run with ``-s`` to see the figures (RSS before and after each loop).
"""

import gc
import os
import sys

import numpy as np
import pytest

import cbp
from cbp import optim

MB = 1 << 20
MARGIN = 2 * MB


def _instrumented():
    """True under AddressSanitizer or valgrind (their runtimes are mapped in)."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return False
    return "libasan" in maps or "vgpreload" in maps


pytestmark = [
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or not os.path.exists("/proc/self/statm"),
        reason="RSS is read from /proc/self/statm (Linux)",
    ),
    pytest.mark.skipif(_instrumented(), reason="sanitizer/valgrind allocators keep freed memory"),
    # every test here measures the native backend (conftest's native_core:
    # skipped without the core, failed under CBP_REQUIRE_NATIVE=1)
    pytest.mark.usefixtures("native_core"),
]

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss():
    """Resident set size in bytes, after a full collection."""
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def assert_flat(label, loop, warmup, repeat):
    """Run loop() warmup times, then two windows of repeat times each; RSS may
    grow < MARGIN in at least one window.

    A leak grows every window alike.  The allocator settling does not: glibc
    raises its mmap threshold as blocks near it are freed, so buffers of
    64-160 KB move from mmap onto the heap over the first few hundred calls
    and RSS steps up a few MB, then stays flat (measured: +6.4, +3.0, then
    0.0 MB per 100 save/load cycles with torch loaded).
    """
    for _ in range(warmup):
        loop()
    marks = [rss()]
    for _ in range(2):
        for _ in range(repeat):
            loop()
        marks.append(rss())
    growth = [b - a for a, b in zip(marks, marks[1:])]
    print(
        f"\n[memory] {label}: RSS {marks[0] / MB:.2f} MB -> {marks[1] / MB:.2f} MB -> "
        f"{marks[2] / MB:.2f} MB ({repeat} calls a window after {warmup} warm-up)"
    )
    assert min(growth) < MARGIN, (
        f"{label}: RSS grew by {growth[0] / MB:.2f} MB and then {growth[1] / MB:.2f} MB "
        f"over two windows of {repeat} calls"
    )


def seed000_net():
    """Seed 000's network: one ReLU hidden node, one linear output."""
    hidden = cbp.Dense(1, 1, "relu", weights=[[0.5]], bias=[0.2])
    output = cbp.Dense(1, 1, "identity", weights=[[0.3]], bias=[0.1])
    return cbp.Network([hidden, output], loss="half_squared_error", backend="native")


def test_train_step_does_not_leak():
    """100,000 train_step calls on seed 000's network, per example as the seed
    does (float64 arrays: the engine's fast path)."""
    net = seed000_net()
    samples = [(np.array([[x]]), np.array([[x]])) for x in (2.0, 3.0, 4.0)]
    i = [0]

    def loop():
        X, y = samples[i[0] % 3]
        i[0] += 1
        net.train_step(X, y, lr=0.01)

    assert_flat("train_step x 100000 (seed 000)", loop, warmup=10_000, repeat=100_000)
    assert np.isfinite(net.parameters).all()


def test_train_step_general_path_does_not_leak():
    """train_step through validation and an optimizer: lists, 1-D targets,
    Adam's state, and calls that are refused (bad input, divergence)."""
    net = seed000_net()
    net.optimizer = optim.Adam(0.01)
    i = [0]

    def loop():
        x = float(2 + i[0] % 3)
        i[0] += 1
        net.train_step([[x]], [x])  # lists and a 1-D y: the validating path
        net.predict([[x]])
        for bad in ([[np.nan]], [[1.0, 2.0]], "x"):
            try:
                net.train_step(bad, [x])
            except (ValueError, TypeError):
                pass
        try:
            net.train_step([[1e300]], [0.0], lr=1e300)
        except (cbp.DivergenceError, FloatingPointError):
            pass

    assert_flat(
        "train_step/predict, general path and failures x 20000", loop, warmup=2_000, repeat=20_000
    )


def test_fit_does_not_leak():
    """1,000 fit calls, a few epochs each, cycling through the features that
    allocate: shuffling, batches, optimizers, validation, early stopping,
    callbacks, dropout."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4))
    y = (X[:, :1] > 0).astype(float)
    Xv, yv = X[:16], y[:16]
    nets = [
        cbp.Network(
            [cbp.Dense(4, 8, "tanh", seed=0), cbp.Dense(8, 1, "sigmoid", seed=1)],
            loss="binary_crossentropy",
            backend="native",
        ),
        cbp.Network(
            [
                cbp.Dense(4, 8, "relu", seed=0),
                cbp.Dropout(0.25),
                cbp.Dense(8, 1, "identity", seed=1),
            ],
            backend="native",
            optimizer=optim.Adam(0.001),
        ),
    ]
    configs = [
        dict(epochs=3, lr=0.01),
        dict(epochs=3, lr=0.01, batch_size=8, shuffle=True),
        dict(epochs=3, batch_size=16, validation_data=(Xv, yv)),
        dict(
            epochs=4,
            lr=0.01,
            validation_data=(Xv, yv),
            early_stopping=cbp.EarlyStopping(patience=1, tol=0.0),
        ),
        dict(epochs=4, lr=0.01, callback=lambda epoch, logs: None, callback_every=1),
    ]
    i = [0]

    def loop():
        net = nets[i[0] % 2]
        kw = configs[i[0] % len(configs)]
        i[0] += 1
        net.fit(X, y, **kw)

    assert_flat("fit x 1000 (3-4 epochs each)", loop, warmup=100, repeat=1_000)


def test_save_load_does_not_leak(tmp_path):
    """100 save/load cycles of a ~10,000-parameter network (80 KB a copy: a
    leaked copy per cycle would add 8 MB)."""
    net = cbp.Network(
        [cbp.Dense(64, 128, "tanh", seed=0), cbp.Dense(128, 16, seed=1)],
        backend="native",
        optimizer=optim.Adam(0.01),
    )
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 64)), rng.standard_normal((8, 16))
    net.fit(X, y, epochs=2)
    path = tmp_path / "net.npz"

    def loop():
        net.save(path)
        loaded = cbp.load(path)
        assert loaded.parameters.size == net.parameters.size

    assert_flat("save+load x 100 (10,384 parameters, Adam state)", loop, warmup=10, repeat=100)
