"""Training steps on several threads (``Engine._fwd_bwd``, ``src/_threads.h``).

A step whose layers are all below the dgemm crossover, with enough rows and
multiply-adds (``cbp._core._thread_config``), runs its forward and backward
passes over one chunk of rows per thread when the core was built with
OpenMP.  Here the thresholds are forced down so that every batch of two rows
or more takes that path, and:

* runs on 1, 2, 3 and 5 threads agree to the rounding of the sums over the
  chunks, and a run's result depends on the thread limit only, not on how
  many threads were free to run its chunks;
* the thread budget, the fork guard and threadpoolctl's limit are checked.

The training tests of test_training.py that involve the native backend run
on this path too, against the same expected values (their parameter
"native-two_threads", the fixture ``two_threads`` of tests/conftest.py).

Without OpenMP in the build these tests are skipped (CBP_REQUIRE_OPENMP=1
makes that a failure, as CI sets it on Linux).
"""

import os
import threading
import time
import warnings

import numpy as np
import pytest

import cbp

#: the compiled-in (min_rows, min_work), read before any fixture changes them
DEFAULTS = cbp._backend._core._thread_config()[1:] if cbp.native_available() else None

#: every step of two rows or more runs on 2 threads in this module, unless a
#: test sets another configuration (restored after each test)
pytestmark = pytest.mark.usefixtures("two_threads")


def _spiral(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 2)), rng.integers(0, 3, n)


def _net(backend="native", dropout=0.0, seed=3):
    layers = [cbp.Dense(2, 16, "relu")]
    if dropout:
        layers.append(cbp.Dropout(dropout))
    layers += [cbp.Dense(16, 8, "tanh"), cbp.Dense(8, 3, "softmax")]
    return cbp.Network(layers, loss="categorical_crossentropy", backend=backend, seed=seed)


# ---------------------------------------------------------------------------
# which steps take the path
# ---------------------------------------------------------------------------
def test_openmp_available_says_so(openmp_core):
    assert cbp.openmp_available() is True
    assert "openmp_available" in cbp.__all__


def test_default_thresholds(openmp_core):
    """With the defaults: a spiral-sized step (300 rows of 2-64-3) runs on two
    threads, a small one or one with a dgemm layer on one."""
    openmp_core._thread_config(2, *DEFAULTS)
    X, y = cbp.datasets.spiral_data(100, 3)
    big = cbp.Network(
        [cbp.Dense(2, 64, "relu"), cbp.Dense(64, 3, "softmax")],
        loss="categorical_crossentropy",
        seed=0,
    )
    big.fit(X, y, epochs=1, batch_size=None)
    assert big._engine.threads_used == 2
    big.fit(X[:40], y[:40], epochs=1, batch_size=None)  # 40 rows
    assert big._engine.threads_used == 1
    wide = cbp.Network(
        [cbp.Dense(64, 64, "relu"), cbp.Dense(64, 64, "softmax")],
        loss="categorical_crossentropy",
        seed=0,
    )
    rng = np.random.default_rng(0)
    wide.fit(
        rng.standard_normal((300, 64)), rng.integers(0, 64, 300), epochs=1, batch_size=None
    )  # dgemm
    assert wide._engine.threads_used == 1


# ---------------------------------------------------------------------------
# results on any number of threads
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [None, 7, 13])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_team_sizes_agree(openmp_core, batch_size, dropout):
    """1, 2, 3 and 5 threads (uneven chunks, a thread of 1 row) give the same
    run as the NumPy twin, to the rounding of the per-chunk sums."""
    X, y = _spiral()
    runs = {}
    for threads in (1, 2, 3, 5):
        openmp_core._thread_config(threads)
        net = _net(dropout=dropout)
        hist = net.fit(
            X,
            y,
            epochs=30,
            batch_size=batch_size,
            shuffle=True,
            seed=4,
            optimizer=cbp.optim.Adam(0.01),
            validation_data=(X[:9], y[:9]),
        )
        assert net._engine.threads_used == (threads if batch_size != 7 else min(threads, 4))
        runs[threads] = (net.parameters.copy(), hist)
    twin = _net("numpy", dropout=dropout)
    want = twin.fit(
        X,
        y,
        epochs=30,
        batch_size=batch_size,
        shuffle=True,
        seed=4,
        optimizer=cbp.optim.Adam(0.01),
        validation_data=(X[:9], y[:9]),
    )
    scale = np.abs(twin.parameters).max()
    for threads, (params, hist) in runs.items():
        np.testing.assert_allclose(
            params, twin.parameters, rtol=1e-9, atol=1e-9 * scale, err_msg=f"{threads} threads"
        )
        for key in want:
            np.testing.assert_allclose(hist[key], want[key], rtol=1e-9, err_msg=key)


def test_one_step_matches_one_thread_to_rounding(openmp_core):
    """One train_step: loss, gradients and parameters within 1e-12 of one thread's."""
    X, y = _spiral(101)
    out = {}
    for threads in (1, 2, 3):
        openmp_core._thread_config(threads)
        net = _net()
        loss = net.train_step(X, y, lr=0.5)
        out[threads] = (loss, net.gradients.copy(), net.parameters.copy())
    for threads in (2, 3):
        assert out[threads][0] == pytest.approx(out[1][0], rel=1e-12)
        scale = np.abs(out[1][1]).max()
        np.testing.assert_allclose(out[threads][1], out[1][1], rtol=1e-12, atol=1e-13 * scale)
        np.testing.assert_allclose(out[threads][2], out[1][2], rtol=1e-12, atol=1e-14)


def test_frozen_layer_and_no_bias_on_threads(openmp_core):
    """Gradients of a frozen layer are still filled; a layer without bias has
    none; parameters of the frozen layer stay put."""
    X, y = _spiral(40)
    nets = {}
    for threads in (1, 2):
        openmp_core._thread_config(threads)
        net = cbp.Network(
            [
                cbp.Dense(2, 6, "relu", trainable=False, seed=1),
                cbp.Dense(6, 3, "softmax", use_bias=False, seed=2),
            ],
            loss="categorical_crossentropy",
        )
        frozen = net.layers[0].weights.copy()
        net.fit(X, y, epochs=5, lr=0.1)
        np.testing.assert_array_equal(net.layers[0].weights, frozen)
        assert np.abs(net.layers[0].dweights).max() > 0
        nets[threads] = net
    np.testing.assert_allclose(nets[2].gradients, nets[1].gradients, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(nets[2].parameters, nets[1].parameters, rtol=1e-12)


def test_divergence_on_threads_rolls_back(openmp_core):
    """A run that overflows on two threads raises, and is left where the same
    run on one thread is left: at the start of the diverging epoch."""
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((40, 2)), rng.standard_normal((40, 3))
    left = {}
    for threads in (1, 2):
        openmp_core._thread_config(threads)
        net = cbp.Network(
            [cbp.Dense(2, 16, "identity", seed=1), cbp.Dense(16, 3, "identity", seed=2)]
        )
        with pytest.raises(cbp.DivergenceError):
            net.fit(X * 1e100, Y, epochs=5, lr=10.0)
        assert np.isfinite(net.parameters).all()
        assert net._engine.threads_used == threads
        left[threads] = net.parameters.copy()
    np.testing.assert_allclose(left[2], left[1], rtol=1e-12)  # 2 chunks against 1


# ---------------------------------------------------------------------------
# the budget (src/_threads.h)
# ---------------------------------------------------------------------------
def test_budget_counts_callers_and_helpers(openmp_core):
    state = openmp_core._thread_state()
    assert state["callers"] == 0 and state["extra"] == 0
    assert openmp_core._thread_reserve(3, 4) == 3  # 4 threads, nobody training: 3 helpers
    assert openmp_core._thread_reserve(3, 4) == 1  # only one left
    assert openmp_core._thread_reserve(1, 4) == 0
    openmp_core._thread_release(4)
    openmp_core._thread_enter()
    openmp_core._thread_enter()  # two callers of a limit of 4: two helpers at most
    try:
        assert openmp_core._thread_reserve(8, 4) == 2
        openmp_core._thread_release(2)
        assert openmp_core._thread_reserve(1, 2) == 0
    finally:
        openmp_core._thread_leave()
        openmp_core._thread_leave()
    assert openmp_core._thread_state() | {"limit": 0} == {
        "built": True,
        "limit": 0,
        "callers": 0,
        "extra": 0,
        "off": False,
    }


def test_another_training_thread_takes_the_helper(openmp_core):
    """While another thread is inside a cbp training call, a step of a
    2-thread limit runs its two chunks alone, to the same bits; after, it
    gets its helper back."""
    X, y = _spiral(40)
    nets = [_net(), _net()]
    openmp_core._thread_enter()  # as a fit running on another thread would
    try:
        nets[0].fit(X, y, epochs=2, lr=0.1)
        assert nets[0]._engine.threads_used == 1
        nets[0].train_step(X, y, lr=0.1)
        assert nets[0]._engine.threads_used == 1
    finally:
        openmp_core._thread_leave()
    nets[1].fit(X, y, epochs=2, lr=0.1)
    assert nets[1]._engine.threads_used == 2
    nets[1].train_step(X, y, lr=0.1)
    assert nets[1]._engine.threads_used == 2
    np.testing.assert_array_equal(nets[0].parameters, nets[1].parameters)
    state = openmp_core._thread_state()
    assert state["callers"] == 0 and state["extra"] == 0


def test_the_thread_limit_decides_the_chunks(openmp_core):
    """A limit of 1 computes a step unchunked, as a build without OpenMP
    does; a limit of 2 or more in min(limit, rows // min_rows) chunks."""
    X, y = _spiral(40)
    out = {}
    for threads in (1, 2, 3):
        openmp_core._thread_config(threads, 8)  # chunks of 8 rows or more: at most 5
        net = _net()
        net.train_step(X, y, lr=0.5)
        out[threads] = (net._engine.threads_used, net.parameters.copy())
    assert [out[t][0] for t in (1, 2, 3)] == [1, 2, 3]
    assert not np.array_equal(out[2][1], out[1][1])  # rounding apart, not equal
    np.testing.assert_allclose(out[2][1], out[1][1], rtol=1e-12, atol=1e-15)


def test_concurrent_fits_stay_within_the_budget(openmp_core):
    """Two Python threads train at once on a 2-thread limit: each run is bit
    for bit the same run trained alone (the chunks do not depend on the
    team), and while both train, neither gets a helper thread: the helpers
    running never exceed the one a single training may have."""
    X, y = _spiral(200)
    alone = _net()
    for _ in range(4):
        alone.fit(X, y, epochs=100, lr=0.1)
    for _attempt in range(5):
        nets = [_net(), _net()]
        peak = {"callers": 0, "extra": 0}
        done = threading.Event()
        start = threading.Barrier(3)

        def watch():
            start.wait()
            while not done.is_set():
                s = openmp_core._thread_state()
                for key in peak:
                    peak[key] = max(peak[key], s[key])

        def train(net):
            start.wait()
            for _ in range(4):
                net.fit(X, y, epochs=100, lr=0.1)

        threads = [threading.Thread(target=watch)]
        threads += [threading.Thread(target=train, args=(n,)) for n in nets]
        for t in threads:
            t.start()
        for t in threads[1:]:
            t.join()
        done.set()
        threads[0].join()
        for net in nets:
            np.testing.assert_array_equal(net.parameters, alone.parameters)
        assert peak["extra"] <= 1
        if peak["callers"] == 2:  # the two trainings were seen overlapping
            break
    else:
        pytest.fail("the two trainings never overlapped")
    state = openmp_core._thread_state()
    assert state["callers"] == 0 and state["extra"] == 0


def test_threadpoolctl_limits_the_threads(openmp_core):
    """threadpoolctl's OpenMP limit is the default limit (threads=0)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    openmp_core._thread_config(0)
    X, y = _spiral(40)
    net = _net()
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert openmp_core._thread_state()["limit"] == 1
        net.fit(X, y, epochs=1, lr=0.1)
        assert net._engine.threads_used == 1
    with threadpoolctl.threadpool_limits(2, user_api="openmp"):
        net.fit(X, y, epochs=1, lr=0.1)
        assert net._engine.threads_used == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_a_forked_child_trains_on_one_thread(openmp_core):
    """GNU libgomp cannot start a team in the child of a process that had one:
    a forked child trains on one thread instead of hanging."""
    X, y = _spiral(40)
    net = _net()
    net.fit(X, y, epochs=1, lr=0.1)
    assert net._engine.threads_used == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() of a threaded process
        pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the fit ran, on one thread
        code = 1
        try:
            net.fit(X, y, epochs=2, lr=0.1)
            code = (
                0 if (net._engine.threads_used == 1 and openmp_core._thread_state()["off"]) else 2
            )
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in fit()")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not openmp_core._thread_state()["off"]  # the parent still trains on threads
