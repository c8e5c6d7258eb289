"""fit's fast path (cbp._fit.fast, Engine.fit_fast) against its general
path (cbp._fit.run, Engine.fit), forced with cbp.network._fit_fast_path:
the same histories (keys, dtypes, values), parameters, optimizer state,
counters, errors (type and message) and guard refusals, on both backends,
and the fast path taken where it is meant to be, and only there.
"""

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import cbp
from cbp import network

X_XOR = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
Y_XOR = np.array([[0], [1], [1], [0]], float)


class Spy:
    """The network's engine, with the names of the entry points called."""

    def __init__(self, engine):
        self.engine = engine
        self.calls = []

    def __getattr__(self, name):
        self.calls.append(name)
        return getattr(self.engine, name)


@pytest.fixture
def paths():
    """Runs a function with the fast path on, then off; restores the switch."""
    saved = network._fit_fast_path()

    def run(fn):
        out = []
        for fast in (True, False):
            network._fit_fast_path(fast)
            out.append(fn())
        network._fit_fast_path(saved)
        return out

    yield run
    network._fit_fast_path(saved)


def _xor(backend, optimizer=None, loss="squared_error", out="sigmoid", seed=0):
    return cbp.Network(
        [cbp.Dense(2, 4, "sigmoid"), cbp.Dense(4, 1, out)],
        loss=loss,
        backend=backend,
        seed=seed,
        optimizer=optimizer,
    )


def _spied(net):
    net._engine = Spy(net._engine)
    return net


def _state(net):
    """Everything a fit may change, as comparable values."""
    opt = net.optimizer
    return {
        "parameters": net.parameters.tobytes(),
        "epochs_trained": net.epochs_trained,
        "history": _hist(net.history),
        "optimizer": None
        if opt is None
        else (opt.iterations, None if opt.state is None else opt.state.tobytes()),
        "cached_rows": net._engine.cached_rows,
    }


def _hist(h):
    if h is None:
        return None
    return {
        k: (v.dtype.str, v.shape, v.tobytes()) if isinstance(v, np.ndarray) else v
        for k, v in h.items()
    }


def _outcome(fn):
    try:
        return ("ok", _hist(fn()))
    except Exception as exc:
        return (type(exc), str(exc), _hist(getattr(exc, "history", None)))


# the calls of each case: (make the network, [fit keyword arguments of each call])
CASES = {
    "lr full batch": (lambda b: _xor(b), [dict(epochs=1, lr=0.5)] * 3 + [dict(epochs=7, lr=0.25)]),
    "lr batch past C sizes": (lambda b: _xor(b), [dict(epochs=2, lr=0.5, batch_size=2**64)]),
    "lr batches shuffled": (
        lambda b: _xor(b),
        [dict(epochs=3, lr=0.5, batch_size=3, shuffle=True, seed=5)] * 2,
    ),
    "lr per sample (fused)": (
        lambda b: _xor(b),
        [dict(epochs=4, lr=0.5, batch_size=1)] * 2 + [dict(epochs=2, lr=0.1, batch_size=1)],
    ),
    "adam default": (lambda b: _xor(b, "adam"), [dict(epochs=1)] * 3 + [dict(epochs=5, seed=2)]),
    "adam no shuffle, batch None": (
        lambda b: _xor(b, cbp.optim.Adam(lr=0.01)),
        [dict(epochs=3, batch_size=None, shuffle=False)] * 2,
    ),
    "sgd momentum": (
        lambda b: _xor(b, cbp.optim.SGD(lr=0.3, momentum=0.9, nesterov=True, decay=0.01)),
        [dict(epochs=3, batch_size=2)] * 2,
    ),
    "rmsprop": (lambda b: _xor(b, cbp.optim.RMSprop(lr=0.01)), [dict(epochs=4)] * 2),
    "adagrad": (lambda b: _xor(b, cbp.optim.Adagrad(lr=0.1)), [dict(epochs=4, batch_size=1)]),
    "bce accuracy": (
        lambda b: _xor(b, loss="binary_crossentropy"),
        [dict(epochs=3, lr=1.0)] * 2 + [dict(epochs=2, lr=1.0, batch_size=1, shuffle=True)],
    ),
    "1-D targets": (lambda b: _xor(b), [dict(epochs=2, lr=0.5, y=Y_XOR.ravel())] * 2),
    "cce one-hot rows": (
        lambda b: cbp.Network(
            [cbp.Dense(2, 5, "tanh"), cbp.Dense(5, 2, "softmax")],
            loss="categorical_crossentropy",
            backend=b,
            seed=1,
        ),
        [dict(epochs=3, lr=0.5, y=np.eye(2)[[0, 1, 1, 0]])] * 2,
    ),
    "wider, threads' sizes": (
        lambda b: cbp.Network(
            [cbp.Dense(6, 24, "relu"), cbp.Dropout(0.2), cbp.Dense(24, 3, "identity")],
            backend=b,
            seed=3,
            optimizer="adam",
        ),
        [dict(epochs=2, batch_size=64, X="wide", y="wide")] * 2,
    ),
}

_RNG = np.random.default_rng(7)
WIDE_X = _RNG.standard_normal((300, 6))
WIDE_Y = _RNG.standard_normal((300, 3))


def _run_case(backend, name):
    make, calls = CASES[name]
    net = _spied(make(backend))
    states = []
    for kw in calls:
        kw = dict(kw)
        X = kw.pop("X", X_XOR)
        y = kw.pop("y", Y_XOR)
        if isinstance(X, str):
            X, y = WIDE_X, WIDE_Y
        hist = net.fit(X, y, **kw)
        assert hist is net.history
        states.append(_state(net))
    return states, net._engine.calls


@pytest.mark.parametrize("name", list(CASES))
def test_fast_path_equals_the_general_path(backend, paths, name):
    (fast, fast_calls), (slow, slow_calls) = paths(lambda: _run_case(backend, name))
    assert fast == slow
    n = len(CASES[name][1])
    assert fast_calls.count("fit_fast") == n and "fit" not in fast_calls
    assert slow_calls.count("fit") == n and "fit_fast" not in slow_calls


@pytest.mark.parametrize(
    "opt, changes",
    [
        ("adam", [("lr", 0.05), ("beta_1", 0.5), ("epsilon", 1e-3), ("decay", 0.1)]),
        ("sgd", [("lr", 0.2), ("decay", 0.5)]),
        (cbp.optim.SGD(momentum=0.5), [("momentum", 0.9), ("nesterov", True), ("lr", 0.2)]),
        ("rmsprop", [("rho", 0.5), ("epsilon", 0.1)]),
    ],
)
def test_a_hyper_parameter_set_between_fits_takes_effect(backend, paths, opt, changes):
    """The fast path keeps the optimizer's hyper-parameter vector between
    calls; setting any hyper-parameter must reach the next fit."""

    def run():
        o = cbp.optim.get(opt) if isinstance(opt, str) else cbp.optim.SGD(**opt.get_config())
        net = _xor(backend, o)
        out = [_state(net)]
        net.fit(X_XOR, Y_XOR, epochs=2)
        for name, value in changes:
            setattr(net.optimizer, name, value)
            net.fit(X_XOR, Y_XOR, epochs=2)
            out.append(_state(net))
        return out

    fast, slow = paths(run)
    assert fast == slow
    assert len({s["parameters"] for s in fast}) == len(fast)


def test_a_pickled_optimizer_keeps_no_cached_vector():
    import pickle

    opt = cbp.optim.Adam(lr=0.01)
    net = _xor("native" if cbp.native_available() else "numpy", opt)
    net.fit(X_XOR, Y_XOR, epochs=1)
    assert "_hyper_cache" not in opt.__getstate__()
    clone = pickle.loads(pickle.dumps(opt))
    clone.beta_1 = 0.5
    assert clone._hyper_vector()[cbp._codes.HYPER_BETA1] == 0.5


def test_the_first_fit_without_an_optimizer_makes_its_adam(backend, paths):
    def run():
        net = _spied(_xor(backend))
        states = [(_state(net), type(net.optimizer))]
        for _ in range(3):
            net.fit(X_XOR, Y_XOR, epochs=2)
            states.append((_state(net), type(net.optimizer)))
        return states, net._engine.calls

    (fast, fast_calls), (slow, slow_calls) = paths(run)
    assert fast == slow
    assert fast[-1][1] is cbp.optim.Adam
    assert fast_calls.count("fit") == 1 and fast_calls.count("fit_fast") == 2
    assert slow_calls.count("fit") == 3 and "fit_fast" not in slow_calls


def _fallbacks():
    """Calls the fast path hands back to the general one: (X, y, kwargs)."""
    yield X_XOR.tolist(), Y_XOR, dict(epochs=2, lr=0.5)
    yield X_XOR.astype(np.float32), Y_XOR, dict(epochs=2, lr=0.5)
    yield np.asfortranarray(np.hstack([X_XOR, X_XOR]))[:, :2], Y_XOR, dict(epochs=2, lr=0.5)
    yield X_XOR, Y_XOR.astype(int), dict(epochs=2, lr=0.5)
    yield X_XOR, Y_XOR, dict(epochs=2, lr=np.float64(0.5))
    yield X_XOR, Y_XOR, dict(epochs=2, lr=1)
    yield X_XOR, Y_XOR, dict(epochs=np.int64(2), lr=0.5)
    yield X_XOR, Y_XOR, dict(epochs=2, lr=0.5, batch_size=np.int64(2))
    yield X_XOR, Y_XOR, dict(epochs=2, lr=0.5, shuffle=np.bool_(True))
    yield X_XOR, Y_XOR, dict(epochs=2, lr=0.5, seed=np.uint64(3))
    yield X_XOR, Y_XOR, dict(epochs=2, lr=0.5, history_every=2)
    yield X_XOR, Y_XOR, dict(epochs=2, lr=0.5, validation_data=(X_XOR, Y_XOR))
    yield X_XOR, Y_XOR, dict(epochs=2, lr=0.5, early_stopping=True)
    yield X_XOR, Y_XOR, dict(epochs=2, lr=0.5, callback=lambda e, logs: None)
    yield X_XOR, Y_XOR, dict(epochs=2, lr=0.5, schedule=cbp.schedules.ExponentialLR(0.9))
    yield X_XOR, Y_XOR, dict(epochs=2, optimizer="adam")


@pytest.mark.parametrize("case", range(len(list(_fallbacks()))))
def test_fallbacks_equal_the_general_path(backend, paths, case):
    X, y, kw = list(_fallbacks())[case]

    def run():
        net = _spied(_xor(backend, "sgd"))
        hist = net.fit(X, y, **kw)
        return _hist(hist), _state(net), net._engine.calls

    (fast, fast_state, calls), (slow, slow_state, _) = paths(run)
    assert (fast, fast_state) == (slow, slow_state)
    assert "fit" in calls  # the general path trained


def test_chunks_of_the_general_path_equal_one_fast_call(backend, paths, monkeypatch):
    """Over MAX_CHUNK epochs fit takes the general path, which runs them in
    several engine calls: the same run as one fast call."""

    def run(chunk):
        monkeypatch.setattr(network, "MAX_CHUNK", chunk)
        net = _spied(_xor(backend, "adam"))
        net.fit(X_XOR, Y_XOR, epochs=10)
        return _state(net), net._engine.calls

    network._fit_fast_path(True)
    one, calls_one = run(1 << 16)
    chunked, calls_chunked = run(3)
    assert one == chunked
    assert calls_one.count("fit_fast") == 1
    assert calls_chunked.count("fit") == 4 and "fit_fast" not in calls_chunked


BAD = {
    "X nan": (np.array([[0, np.nan], [0, 1], [1, 0], [1, 1]]), Y_XOR, {}),
    "X inf": (np.array([[0, np.inf], [0, 1], [1, 0], [1, 1]]), Y_XOR, {}),
    "y nan": (X_XOR, np.array([[0], [np.nan], [1], [0]]), {}),
    "X columns": (np.ones((4, 3)), Y_XOR, {}),
    "X 1-D": (np.ones(4), Y_XOR, {}),
    "X empty": (np.ones((0, 2)), np.ones((0, 1)), {}),
    "y rows": (X_XOR, Y_XOR[:3], {}),
    "y columns": (X_XOR, np.ones((4, 2)), {}),
    "y 3-D": (X_XOR, np.ones((4, 1, 1)), {}),
    "epochs 0": (X_XOR, Y_XOR, dict(epochs=0)),
    "epochs bool": (X_XOR, Y_XOR, dict(epochs=True)),
    "lr negative": (X_XOR, Y_XOR, dict(lr=-1.0)),
    "lr zero": (X_XOR, Y_XOR, dict(lr=0.0)),
    "lr nan": (X_XOR, Y_XOR, dict(lr=float("nan"))),
    "lr inf": (X_XOR, Y_XOR, dict(lr=float("inf"))),
    "batch 0": (X_XOR, Y_XOR, dict(batch_size=0)),
    "batch str": (X_XOR, Y_XOR, dict(batch_size="all")),
    "shuffle str": (X_XOR, Y_XOR, dict(shuffle="yes")),
    "seed negative": (X_XOR, Y_XOR, dict(seed=-1)),
    "seed 2**64": (X_XOR, Y_XOR, dict(seed=2**64)),
    "callback_every 0": (X_XOR, Y_XOR, dict(callback_every=0)),
    "history_every 0": (X_XOR, Y_XOR, dict(history_every=0)),
    "X nan and lr bad": (np.array([[np.nan, 0]] * 4), Y_XOR, dict(lr=-1.0)),
}


@pytest.mark.parametrize("name", list(BAD))
@pytest.mark.parametrize("opt", [None, "adam"])
def test_errors_are_the_general_paths(backend, paths, name, opt):
    X, y, kw = BAD[name]
    kw = {"lr": 0.5, "epochs": 2, **kw} if opt is None else {"epochs": 2, **kw}

    def run():
        net = _xor(backend, opt)
        return _outcome(lambda: net.fit(X, y, **kw)), _state(net)

    fast, slow = paths(run)
    assert fast == slow
    assert fast[0][0] in (ValueError, TypeError)


@pytest.mark.parametrize("loss", ["binary_crossentropy", "categorical_crossentropy"])
def test_targets_outside_0_1_are_refused_as_before(backend, paths, loss):
    out = "sigmoid" if loss == "binary_crossentropy" else "softmax"
    width = 1 if out == "sigmoid" else 2
    y = np.full((4, width), 1.5)

    def run():
        net = cbp.Network(
            [cbp.Dense(2, 3, "tanh"), cbp.Dense(3, width, out)], loss=loss, backend=backend, seed=0
        )
        return _outcome(lambda: net.fit(X_XOR, y, epochs=1, lr=0.5)), _state(net)

    fast, slow = paths(run)
    assert fast == slow and fast[0][0] is ValueError


@pytest.mark.parametrize("opt", [None, "adam"])
@pytest.mark.parametrize("batch_size", [None, 1])
def test_divergence_is_the_general_paths(backend, paths, opt, batch_size):
    X = np.array([[1e154, -1e154], [1.0, 2.0], [3.0, 1e150]])
    y = np.array([[1.0], [0.0], [1e150]])

    def run():
        net = cbp.Network(
            [cbp.Dense(2, 3, "identity"), cbp.Dense(3, 1, "identity")],
            backend=backend,
            seed=0,
            optimizer=None if opt is None else cbp.optim.Adam(lr=1e3),
        )
        kw = dict(lr=1e3) if opt is None else {}
        first = _outcome(lambda: net.fit(X[1:2], y[1:2], epochs=2, batch_size=1, **kw))
        second = _outcome(lambda: net.fit(X, y, epochs=4, batch_size=batch_size, **kw))
        return first, second, _state(net)

    fast, slow = paths(run)
    assert fast == slow
    assert fast[1][0] is cbp.DivergenceError


def test_another_threads_guard_is_refused_as_before(backend, paths):
    """A network, or an optimizer, held by another thread: RuntimeError (after
    the checks of the arguments), nothing changed."""

    def holding(guard, fn):
        taken, done = threading.Event(), threading.Event()

        def hold():
            with guard.using:
                taken.set()
                done.wait(30)

        t = threading.Thread(target=hold)
        t.start()
        taken.wait(30)
        try:
            return fn()
        finally:
            done.set()
            t.join()

    def run():
        out = []
        net = _xor(backend, "adam")
        for guard in (net._guard, net.optimizer._guard):
            for X in (X_XOR, X_XOR[:, :1]):
                for kw in (dict(epochs=1), dict(epochs=1, lr=0.5)):
                    out.append(holding(guard, lambda: _outcome(lambda: net.fit(X, Y_XOR, **kw))))
        out.append(_state(net))
        return out

    fast, slow = paths(run)
    assert fast == slow
    assert [o[0] for o in fast[:-1]] == [
        RuntimeError, RuntimeError, ValueError, ValueError,  # the network held
        RuntimeError, "ok", ValueError, ValueError,  # its optimizer held (lr: not used)
    ]  # fmt: skip


def test_a_callback_cannot_train_its_network_on_either_path(backend, paths):
    def run():
        net = _xor(backend, "adam")
        seen = []

        def callback(epoch, logs):
            seen.append(_outcome(lambda: net.fit(X_XOR, Y_XOR, epochs=1)))
            seen.append(_outcome(lambda: net.fit(X_XOR, Y_XOR, epochs=1, lr=0.5)))

        net.fit(X_XOR, Y_XOR, epochs=2, callback=callback, callback_every=1)
        return seen, _state(net)

    fast, slow = paths(run)
    assert fast == slow
    assert {s[0] for s in fast[0]} == {RuntimeError}
    assert "already training in this thread" in fast[0][0][1]


def test_an_optimizer_without_state_takes_the_general_path(backend, paths):
    def run():
        net = _spied(_xor(backend, "adam"))
        net.fit(X_XOR, Y_XOR, epochs=2)
        net.optimizer.reset()
        net.fit(X_XOR, Y_XOR, epochs=2)
        net.fit(X_XOR, Y_XOR, epochs=2)
        return _state(net), net._engine.calls

    (fast, calls), (slow, _) = paths(run)
    assert fast == slow
    assert calls.count("fit_fast") == 2  # not after the reset: state None
    assert calls.count("fit") == 1


def test_fit_fast_refuses_what_it_does_not_take(backend):
    """Engine.fit_fast: None, the network untouched, for what it does not take."""
    net = _xor(backend)
    eng = net._engine
    before = net.parameters.copy()
    h = np.zeros(cbp._codes.N_OPTIMIZER_HYPER)
    h[cbp._codes.HYPER_LEARNING_RATE] = 0.5
    no_state = np.empty(0)
    for X, Y, n in [
        (X_XOR.tolist(), Y_XOR, 1),
        (X_XOR, Y_XOR.tolist(), 1),
        (X_XOR.astype(np.float32), Y_XOR, 1),
        (X_XOR, Y_XOR.astype(np.int64), 1),
        (X_XOR[::-1][:, ::-1], Y_XOR, 1),
        (X_XOR, Y_XOR[:3], 1),
        (X_XOR, Y_XOR, 0),
        (X_XOR[:, :1], Y_XOR, 1),
        (np.where(X_XOR == 1, np.inf, 0), Y_XOR, 1),
        (X_XOR, np.full((4, 1), np.nan), 1),
    ]:
        assert eng.fit_fast(X, Y, cbp._codes.OPT_SGD, h, no_state, 0, 0, n, 4, False, 0) is None
    assert net.parameters.tobytes() == before.tobytes()
    loss, acc, epochs, steps, status, error = eng.fit_fast(
        X_XOR, Y_XOR, cbp._codes.OPT_SGD, h, no_state, 0, 0, 3, 2, False, 0
    )
    assert loss.dtype == np.float64 and loss.shape == (3,) and acc is None
    assert (epochs, steps, status, error) == (3, 6, cbp._codes.FIT_DONE, None)


CHILD = textwrap.dedent("""
    import os, signal, sys, threading, time
    import numpy as np
    import cbp
    from cbp import network

    backend, opt = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4000, 32))
    y = np.tanh(X[:, :2] @ np.array([[0.5], [-0.3]]))

    def make():
        return cbp.Network([cbp.Dense(32, 64, "tanh", seed=1), cbp.Dense(64, 1, seed=2)],
                           backend=backend,
                           optimizer=cbp.optim.Adam(lr=1e-3) if opt == "adam" else None)

    kw = dict(batch_size=50, shuffle=True, seed=3)
    if opt == "sgd":
        kw["lr"] = 0.01
    net = make()
    calls = []
    engine = net._engine

    class Spy:
        def __getattr__(self, name):
            calls.append(name)
            return getattr(engine, name)

    net._engine = Spy()
    sent = {}

    def interrupt():
        time.sleep(0.4)
        sent["at"] = time.perf_counter()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    try:
        net.fit(X, y, epochs=1 << 16, **kw)  # minutes or more, without the interrupt
    except KeyboardInterrupt:
        pass
    else:
        raise SystemExit("fit ended without the interrupt")
    assert calls == ["fit_fast"], calls
    done = net.epochs_trained
    assert done > 0, "no epoch completed before the interrupt"
    if opt == "adam":
        assert net.optimizer.iterations == done * 80, (net.optimizer.iterations, done)
    assert len(net.history["loss"]) == done
    assert net.history["loss"].dtype == np.float64
    assert not net._guard.held and (net.optimizer is None or not net.optimizer._guard.held)

    # the same epochs on the general path, uninterrupted: the same run
    network._fit_fast_path(False)
    ref = make()
    ref_hist = ref.fit(X, y, epochs=done, **kw)
    assert net.parameters.tobytes() == ref.parameters.tobytes()
    if opt == "adam":
        assert net.optimizer.state.tobytes() == ref.optimizer.state.tobytes()
    assert net.history["loss"].tobytes() == ref_hist["loss"].tobytes()
    print(done)
""")


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_ctrl_c_on_the_fast_path_leaves_the_completed_epochs(backend, opt):
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, backend, opt], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split()[-1]) > 0


# ---------------------------------------------------------------------------
# A Ctrl-C that lands after the engine returned, in fit's own commit
# ---------------------------------------------------------------------------
class _Late:
    """The network's engine, whose fit_fast returns and then has a Ctrl-C
    land: Python raises KeyboardInterrupt as the call returns."""

    def __init__(self, engine):
        object.__setattr__(self, "engine", engine)

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def __setattr__(self, name, value):
        setattr(self.engine, name, value)

    def fit_fast(self, *args):
        self.engine.fit_fast(*args)
        raise KeyboardInterrupt


def _consistent(net, backend, epochs, **kw):
    ref = _xor(backend)
    ref.fit(X_XOR, Y_XOR, epochs=epochs, **kw)
    assert net.epochs_trained == epochs and len(net.history["loss"]) == epochs
    assert net.parameters.tobytes() == ref.parameters.tobytes()
    assert net.history["loss"].tobytes() == ref.history["loss"].tobytes()


def test_a_ctrl_c_as_fit_fast_returns_keeps_its_epochs(backend, paths):
    net = _xor(backend)
    net._engine = _Late(net._engine)
    with pytest.raises(KeyboardInterrupt):
        net.fit(X_XOR, Y_XOR, epochs=9, lr=0.5)
    net._engine = net._engine.engine
    _consistent(net, backend, 9, lr=0.5)


@pytest.mark.parametrize("where", ["keep_rows", "finish"])
def test_a_ctrl_c_in_the_general_paths_commit_is_committed_first(backend, monkeypatch, where):
    """KeyboardInterrupt raised once inside the commit after a chunk (or in
    the history's assembly): the commit runs again in full, the interrupt
    comes after."""
    from cbp import _fit

    real = getattr(_fit, where)
    calls, trigger = [], 2 if where == "keep_rows" else 1

    def late(*args, **kw):
        calls.append(1)
        if len(calls) == trigger:  # (keep_rows: the second chunk's, its counters set)
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(_fit, where, late)
    net = _xor(backend)
    saved = network._fit_fast_path(False)
    try:
        with pytest.raises(KeyboardInterrupt):
            net.fit(X_XOR, Y_XOR, epochs=30, lr=0.5, callback=lambda e, logs: None,
                    callback_every=10)  # fmt: skip
    finally:
        network._fit_fast_path(saved)
    monkeypatch.setattr(_fit, where, real)
    done = net.epochs_trained
    assert done == (20 if where == "keep_rows" else 30)
    _consistent(net, backend, done, lr=0.5)
