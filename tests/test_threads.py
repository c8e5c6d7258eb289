"""Threads: the GIL is released during fit, and a network used from two
threads at once is refused (RuntimeError naming "another thread") without
being damaged.

Timing is only ever used qualitatively: the machine is shared and noisy, so
no assertion compares two durations closely.  "The GIL is released" is shown
by a pure-Python counter thread that keeps ticking while another thread is
inside one long native fit call: a fit holding the GIL would freeze it for
the whole native loop.  The fits are calibrated to last about half a second
whatever the build (release, CBP_DEBUG, AddressSanitizer).

Synchronisation that must be exact uses events, never sleeps: a callback
that parks the fitting thread, or polling until the guard has been seen.
"""

import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import cbp
from cbp import optim

WIDTH = 64
TARGET_SECONDS = 0.5  # how long a "long" fit should take, whatever the build
JOIN = 120  # seconds: a generous bound on any join, so that a bug hangs nothing


def data(seed=0, n=128):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, WIDTH))
    y = np.tanh(X[:, :2] @ np.array([[0.5], [-0.25]]))
    return X, y


def wide_net(backend="native", seed=0, **kw):
    """A 64-64-1 network: each epoch is real work for the native core."""
    return cbp.Network(
        [
            cbp.Dense(WIDTH, WIDTH, "tanh", seed=seed),
            cbp.Dense(WIDTH, 1, "identity", seed=seed + 1),
        ],
        backend=backend,
        **kw,
    )


_calibrated = {}


def long_epochs(backend="native"):
    """Epochs for a full-batch fit of wide_net on data() lasting about
    TARGET_SECONDS on this build and machine (measured once)."""
    if backend not in _calibrated:
        X, y = data()
        net = wide_net(backend)
        epochs = 5
        while True:
            t = time.perf_counter()
            net.fit(X, y, epochs=epochs, lr=1e-3)
            dt = time.perf_counter() - t
            if dt > 0.05 or epochs > 10**6:
                break
            epochs *= 4
        _calibrated[backend] = max(10, int(epochs * TARGET_SECONDS / dt))
    return _calibrated[backend]


class Ticker:
    """A pure-Python thread that counts and stamps the time every 200 counts."""

    def __init__(self):
        self.count = 0
        self.stamps = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        stamps = self.stamps
        while not self._stop.is_set():
            self.count += 1
            if self.count % 200 == 0:
                stamps.append(time.perf_counter())

    def __enter__(self):
        self.thread.start()
        while not self.stamps:  # running for sure
            time.sleep(0.001)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join(JOIN)

    def longest_pause(self, t0, t1):
        """The longest stretch of [t0, t1] without a stamp."""
        inside = [t for t in list(self.stamps) if t0 <= t <= t1]
        edges = [t0] + inside + [t1]
        return max(b - a for a, b in zip(edges, edges[1:])), len(inside)


def attempts(n=3):
    """Retry a qualitative timing check a few times: a descheduled thread on
    a loaded machine can fail one attempt; a GIL held for the whole native
    loop fails every attempt."""
    return range(n)


# ---------------------------------------------------------------------------
# (a) fit releases the GIL
# ---------------------------------------------------------------------------
def test_fit_releases_the_gil(native):
    """A pure-Python thread keeps running while the main thread is inside
    one long native fit call."""
    X, y = data()
    epochs = long_epochs()
    for _attempt in attempts():
        net = wide_net()
        with Ticker() as ticker:
            c0 = ticker.count
            t0 = time.perf_counter()
            net.fit(X, y, epochs=epochs, lr=1e-3)
            t1 = time.perf_counter()
            c1 = ticker.count
        pause, stamps = ticker.longest_pause(t0, t1)
        print(
            f"fit of {epochs} epochs: {t1 - t0:.3f} s; the Python thread counted "
            f"{c1 - c0} meanwhile ({stamps} stamps), longest pause {pause:.3f} s"
        )
        if c1 > c0 and pause < 0.5 * (t1 - t0):
            break
    else:
        pytest.fail(
            f"the Python thread was frozen for {pause:.3f} s of a {t1 - t0:.3f} s fit: "
            "fit holds the GIL"
        )


def test_two_networks_train_at_the_same_time(native):
    """Two threads, each training its own network: their fits overlap in
    time, a third (pure-Python) thread keeps running throughout, and each
    result is bit for bit what the same fit gives alone."""
    X, y = data()
    epochs = long_epochs()
    # the reference results, one fit at a time; long_epochs calibrates a
    # full-batch fit, so these minibatch fits are timed too, and lengthened
    # to 0.1 s where they are shorter than 0.05 s (fits of a few ms can run
    # one after the other on a loaded machine however the GIL is held)
    for _ in range(3):
        expected = []
        t0 = time.perf_counter()
        for seed in (0, 10):
            net = wide_net(seed=seed)
            h = net.fit(X, y, epochs=epochs, lr=1e-3, batch_size=32, shuffle=True, seed=seed)
            expected.append((net.parameters.copy(), h["loss"].copy()))
        took = (time.perf_counter() - t0) / 2
        if took >= 0.05:
            break
        epochs = int(epochs * 0.1 / max(took, 1e-4)) + 1

    for _attempt in attempts():
        nets = [wide_net(seed=0), wide_net(seed=10)]
        spans, results, errors = [None, None], [None, None], []
        barrier = threading.Barrier(2)

        def train(i):
            try:
                barrier.wait(JOIN)
                t0 = time.perf_counter()
                h = nets[i].fit(
                    X, y, epochs=epochs, lr=1e-3, batch_size=32, shuffle=True, seed=10 * i
                )
                spans[i] = (t0, time.perf_counter())
                results[i] = h["loss"]
            except BaseException as exc:  # reported below
                errors.append(exc)

        with Ticker() as ticker:
            threads = [threading.Thread(target=train, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(JOIN)
        assert not errors, errors
        assert not any(t.is_alive() for t in threads)
        for i in range(2):
            assert nets[i].parameters.tobytes() == expected[i][0].tobytes(), (
                f"network {i} trained in parallel differs from the same training alone"
            )
            np.testing.assert_array_equal(results[i], expected[i][1])
        (a0, a1), (b0, b1) = spans
        overlap = min(a1, b1) - max(a0, b0)
        both = (min(a0, b0), max(a1, b1))
        pause, stamps = ticker.longest_pause(*both)
        print(
            f"fits {a1 - a0:.3f} s and {b1 - b0:.3f} s overlapping {overlap:.3f} s; "
            f"Python thread: {stamps} stamps, longest pause {pause:.3f} s"
        )
        if overlap > 0.5 * min(a1 - a0, b1 - b0) and pause < 0.5 * (both[1] - both[0]):
            break
    else:
        pytest.fail(
            f"no real overlap: fits {spans}, longest pause of a Python thread {pause:.3f} s"
        )


# ---------------------------------------------------------------------------
# (b) one network, two threads
# ---------------------------------------------------------------------------
def _probes(net, X, y):
    """Valid calls of every method; each must be refused while another thread
    is inside a method of net."""
    return {
        "forward": lambda: net.forward(X[:2]),
        "backward": lambda: net.backward(y[:2]),  # net.forward ran before the fit
        "step": lambda: net.step(0.1),
        "train_step": lambda: net.train_step(X[:2], y[:2], lr=0.1),
        "train_step_list": lambda: net.train_step(X[:2].tolist(), y[:2].tolist()),
        "fit": lambda: net.fit(X[:4], y[:4], epochs=1, lr=0.1),
        "predict": lambda: net.predict(X[:2]),
        "evaluate": lambda: net.evaluate(X[:2], y[:2]),
    }


def _fit_in_thread(net, X, y, epochs, hold=None, **kw):
    """Start net.fit in a thread; returns (thread, box with the result or the
    error) once the fit holds the network's guard.

    hold: an Event; if given, the fit's callback parks the thread after the
    last epoch, still inside fit, until it is set -- so that every call made
    before setting it is made during the fit, with no race at its end.
    """
    box = {}
    started = threading.Event()
    if hold is not None:

        def park(epoch, logs):
            box["parked_at"] = time.perf_counter()
            hold.wait(JOIN)

        kw.update(callback=park, callback_every=epochs)

    def target():
        started.set()
        try:
            box["history"] = net.fit(X, y, epochs=epochs, lr=1e-3, **kw)
        except BaseException as exc:  # reported by the caller
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    started.wait(JOIN)
    # "started" is set just before fit is called: wait until fit holds the
    # network's guard, so that every probe after this returns is made during fit
    deadline = time.monotonic() + JOIN
    while not net._guard.held and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.0005)
    return thread, box


def test_concurrent_use_is_refused_and_harmless(native):
    """While one thread is inside a long fit, every method called from another
    thread raises RuntimeError naming "another thread"; afterwards the network
    holds exactly what the fit alone gives."""
    X, y = data()
    epochs = long_epochs()
    for _attempt in range(3):
        net = wide_net()
        net.forward(X[:2])  # so that backward gets as far as the guard
        hold = threading.Event()
        thread, box = _fit_in_thread(net, X, y, epochs, hold=hold)
        refused, accepted = {}, []
        try:
            for name, call in _probes(net, X, y).items():
                try:
                    call()
                    accepted.append(name)
                except RuntimeError as exc:
                    refused[name] = str(exc)
            probed_at = time.perf_counter()
        finally:
            hold.set()  # the fit was parked after its last epoch, or will be
            thread.join(JOIN)
        assert not thread.is_alive()
        assert "error" not in box, box.get("error")
        assert not accepted, f"accepted from another thread during fit: {accepted}"
        for name, msg in refused.items():
            assert "another thread" in msg, f"{name}: {msg}"
        if probed_at < box["parked_at"]:
            break  # every call was made during the native loop (GIL released)
        epochs *= 4  # the loop ended first (a loaded machine): make it longer
    else:
        pytest.fail("the native loop always ended before a few calls could be made")

    # intact: the same as the fit alone, from the same start
    ref = wide_net()
    ref.forward(X[:2])
    h = ref.fit(X, y, epochs=epochs, lr=1e-3)
    assert net.parameters.tobytes() == ref.parameters.tobytes()
    np.testing.assert_array_equal(box["history"]["loss"], h["loss"])
    assert net.epochs_trained == ref.epochs_trained == epochs
    assert net.optimizer is None
    with pytest.raises(RuntimeError, match="forward"):
        net.backward(y[:2])  # fit leaves no forward cache, as alone
    # and it trains on, as the reference does
    assert net.train_step(X[:8], y[:8], lr=0.01) == ref.train_step(X[:8], y[:8], lr=0.01)
    assert net.parameters.tobytes() == ref.parameters.tobytes()


def test_sequential_use_from_different_threads(native):
    """One network used by several threads in turn (never at once) behaves as
    if one thread had made all the calls."""
    X, y = data(n=32)

    def script(net, run):
        run(lambda: net.train_step(X[:8], y[:8], lr=0.01))
        run(lambda: net.forward(X[:4]))
        run(lambda: net.backward(y[:4]))
        run(lambda: net.step())
        run(lambda: net.fit(X, y, epochs=3, batch_size=8, shuffle=True))
        run(lambda: net.evaluate(X, y))
        return run(lambda: net.predict(X))

    def in_new_thread(fn):
        box = {}
        t = threading.Thread(target=lambda: box.setdefault("v", fn()))
        t.start()
        t.join(JOIN)
        assert not t.is_alive() and "v" in box
        return box["v"]

    a = wide_net(optimizer=optim.Adam(0.01))
    b = wide_net(optimizer=optim.Adam(0.01))
    out_threads = script(a, in_new_thread)
    out_alone = script(b, lambda fn: fn())
    np.testing.assert_array_equal(out_threads, out_alone)
    assert a.parameters.tobytes() == b.parameters.tobytes()
    assert a.optimizer.state.tobytes() == b.optimizer.state.tobytes()
    assert a.optimizer.iterations == b.optimizer.iterations


def test_callback_may_use_its_own_network(native):
    """A fit callback runs in the fitting thread and may call predict and
    evaluate on the network being trained."""
    X, y = data(n=32)
    net = wide_net()
    seen = []

    def callback(epoch, logs):
        seen.append((epoch, net.predict(X[:2]).shape, net.evaluate(X, y)["loss"]))

    net.fit(X, y, epochs=4, lr=1e-3, callback=callback, callback_every=2)
    assert [e for e, _, _ in seen] == [2, 4]
    assert all(shape == (2, 1) and np.isfinite(loss) for _, shape, loss in seen)


# ---------------------------------------------------------------------------
# Other threads while a fit is parked in its callback
# ---------------------------------------------------------------------------
def _park_in_callback(net, X, y, epochs=3):
    """Run net.fit in a thread whose callback parks it (after epoch 1) until
    released.  Returns (thread, box, inside event, release event)."""
    inside, release = threading.Event(), threading.Event()

    def callback(epoch, logs):
        if epoch == 1:
            inside.set()
            release.wait(JOIN)

    box = {}

    def target():
        try:
            box["history"] = net.fit(
                X, y, epochs=epochs, lr=1e-3, callback=callback, callback_every=1
            )
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    assert inside.wait(JOIN), "the callback never ran"
    return thread, box, release


def test_other_threads_are_refused_while_a_callback_runs(native):
    X, y = data(n=32)
    net = wide_net()
    thread, box, release = _park_in_callback(net, X, y)
    try:
        with pytest.raises(RuntimeError, match="another thread"):
            net.predict(X[:2])
    finally:
        release.set()
        thread.join(JOIN)
    assert "error" not in box, box.get("error")


def test_guard_survives_a_thread_starting_fit_during_a_callback(native):
    X, y = data(n=64)
    net = wide_net()
    thread_a, box_a, release = _park_in_callback(net, X, y)
    thread_b, box_b = _fit_in_thread(net, X, y, 4 * long_epochs())
    time.sleep(0.05)  # let B reach the guard (if it can)
    release.set()
    thread_a.join(JOIN)
    third = "refused"
    if thread_b.is_alive():
        try:
            net.predict(X[:2])  # read-only: no crash even if it gets in
            third = "accepted"
        except RuntimeError:
            pass
    thread_b.join(JOIN)
    assert "error" not in box_a, f"thread A's fit failed: {box_a.get('error')!r}"
    assert isinstance(box_b.get("error"), RuntimeError) and "another thread" in str(
        box_b["error"]
    ), f"thread B: {box_b!r}"
    assert third == "refused"


CRASH_SCRIPT = textwrap.dedent("""
    # Thread A parks in a fit callback; thread B starts a long fit (batch 4);
    # once A resumes, the main thread calls train_step with 1000+ rows in a loop.
    import sys, threading, time
    import numpy as np
    import cbp
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 64)); y = X[:, :1].copy()
    Xb = rng.standard_normal((4000, 64)); yb = Xb[:, :1].copy()
    net = cbp.Network([cbp.Dense(64, 64, "tanh", seed=0), cbp.Dense(64, 1, seed=1)],
                      backend="native")
    inside, go = threading.Event(), threading.Event()
    def cb(epoch, logs):
        if epoch == 1:
            inside.set(); go.wait(30)
    def a():
        try: net.fit(X, y, epochs=3, lr=1e-3, callback=cb, callback_every=1)
        except RuntimeError: pass
    def b():
        try: net.fit(X, y, epochs=3000, lr=1e-4, batch_size=4)
        except RuntimeError: pass
    ta = threading.Thread(target=a); ta.start(); inside.wait(30)
    tb = threading.Thread(target=b); tb.start(); time.sleep(0.05)
    go.set(); ta.join()
    accepted, t0 = 0, time.time()
    while tb.is_alive() and time.time() - t0 < 10:
        try:
            net.train_step(Xb[:1000 + accepted % 3000], yb[:1000 + accepted % 3000], lr=1e-6)
            accepted += 1
        except RuntimeError:
            time.sleep(0.001)
    tb.join()
    print("accepted", accepted, "cbp from", cbp.__file__)
    sys.exit(1 if accepted else 0)
""")


def test_concurrent_misuse_cannot_crash_the_interpreter(native, tmp_path):
    """In a child process, so that a crash fails this test only."""
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    # the child must import the cbp under test (a scratch build, say), not
    # whichever one its script's folder would lead to
    here = os.path.dirname(os.path.dirname(os.path.abspath(cbp.__file__)))
    env = dict(
        os.environ,
        PYTHONFAULTHANDLER="1",
        PYTHONPATH=os.pathsep.join([here] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=JOIN,
        env=env,
        cwd=os.getcwd(),
    )
    assert proc.returncode == 0, (
        f"child exited with {proc.returncode} (-11: SIGSEGV); stdout={proc.stdout[-500:]!r} "
        f"stderr={proc.stderr[-1500:]!r}"
    )


def test_refused_fit_leaves_the_optimizer_alone(native):
    X, y = data()
    adam = optim.Adam(1e-3)
    net = wide_net(optimizer=adam)
    hold = threading.Event()
    thread, box = _fit_in_thread(net, X, y, long_epochs(), hold=hold)
    try:
        with pytest.raises(RuntimeError, match="another thread"):
            net.fit(X[:4], y[:4], epochs=1, optimizer=optim.SGD(0.1))
    finally:
        hold.set()
        thread.join(JOIN)
    assert "error" not in box, box.get("error")
    assert net.optimizer is adam


def test_save_and_pickle_are_refused_during_fit(native, tmp_path):
    X, y = data()
    net = wide_net()
    hold = threading.Event()
    thread, box = _fit_in_thread(net, X, y, long_epochs(), hold=hold)
    outcomes = {}
    try:
        for name, call in (
            ("save", lambda: net.save(tmp_path / "mid.npz")),
            ("pickle", lambda: pickle.dumps(net)),
        ):
            try:
                call()
                outcomes[name] = "accepted"
            except RuntimeError:
                outcomes[name] = "refused"
    finally:
        hold.set()
        thread.join(JOIN)
    assert "error" not in box, box.get("error")
    assert outcomes == {"save": "refused", "pickle": "refused"}, outcomes
    assert not (tmp_path / "mid.npz").exists()
