"""cbp.fit_many: every network's result is its own fit's; the checks, the
guards, divergence and interrupts."""

import contextlib
import copy
import pickle
import threading

import numpy as np
import pytest

import cbp
from cbp import many

X_XOR = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y_XOR = np.array([0.0, 1.0, 1.0, 0.0])


def xor_net(seed, backend="native", act="sigmoid", loss="squared_error", **kw):
    return cbp.Network(
        [cbp.Dense(2, 4, activation=act), cbp.Dense(4, 1, activation="sigmoid")],
        loss=loss,
        seed=seed,
        backend=backend,
        **kw,
    )


def blobs(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(float)
    return X, y


def same_history(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if a[k] is None or isinstance(a[k], int):
            assert a[k] == b[k], k
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def check_own_fit(make, count, X, y, per_net, **kw):
    """fit_many on `count` networks equals each one's own fit, exactly."""
    nets = [make(i) for i in range(count)]
    refs = [make(i) for i in range(count)]
    out = cbp.fit_many(nets, X, y, **{**kw, **per_net})
    for i, (net, ref, hist) in enumerate(zip(nets, refs, out)):
        own = {k: (v[i] if isinstance(v, list) else v) for k, v in per_net.items()}
        if "optimizer" in own and not isinstance(own["optimizer"], str):
            own["optimizer"] = ref_opts[id(own["optimizer"])]
        ref_kw = {**kw, **own}
        if "schedule" in ref_kw:  # each network runs on a copy of it
            ref_kw["schedule"] = copy.deepcopy(ref_kw["schedule"])
        expected = ref.fit(X, y, **ref_kw)
        same_history(hist, expected)
        assert net.history is hist
        np.testing.assert_array_equal(net.parameters, ref.parameters)
        assert net.epochs_trained == ref.epochs_trained
        if ref.optimizer is not None:
            assert net.optimizer.iterations == ref.optimizer.iterations
            np.testing.assert_array_equal(net.optimizer.state, ref.optimizer.state)
    return nets


ref_opts = {}


@contextlib.contextmanager
def thread_limit(request, backend, threads):
    """The native core's thread limit set to ``threads`` (the twin: as is)."""
    if backend != "native":
        yield
        return
    core = request.getfixturevalue("openmp_core" if threads > 1 else "native_core")
    saved = core._thread_config(threads)
    try:
        yield
    finally:
        core._thread_config(*saved)


def opt_pair(make):
    """An optimizer for fit_many and an equal one for the reference fit."""
    a, b = make(), make()
    ref_opts[id(a)] = b
    return a


CONFIGS = {
    "lr-sequence": ({"lr": [0.5, 1.0, 2.0]}, {"epochs": 300}),
    "lr-scalar-seeds": (
        {"seed": [3, 4, 5]},
        {"epochs": 50, "lr": 0.3, "batch_size": 2, "shuffle": True},
    ),
    "adam-default": ({}, {"epochs": 40}),
    "optimizer-name": ({}, {"epochs": 40, "optimizer": "rmsprop", "batch_size": 3}),
    "schedule-validation": (
        {"lr": [0.1, 0.2, 0.4]},
        {
            "epochs": 60,
            "schedule": cbp.schedules.ReduceLROnPlateau(patience=2, factor=0.5),
            "validation_data": (X_XOR[::-1], Y_XOR[::-1]),
            "early_stopping": cbp.EarlyStopping(patience=5),
            "history_every": 7,
        },
    ),
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_equals_own_fit(backend, name, threads, request):
    if threads == 2 and backend != "native":
        pytest.skip("the twin trains one network after another")
    with thread_limit(request, backend, threads):
        per_net, kw = CONFIGS[name]
        before = dict(many._paths)
        check_own_fit(lambda i: xor_net(i, backend), 3, X_XOR, Y_XOR, per_net, **kw)
    ran = {k for k in many._paths if many._paths[k] != before[k]}
    if backend == "native" and name == "lr-sequence":  # full batch, plain SGD: SIMD lanes
        assert ran == {"lanes"}
    else:
        assert ran == {"threads" if threads == 2 else "sequential"}


def test_optimizer_sequence_and_callback(backend):
    X, y = blobs()
    seen = []
    opts = [
        opt_pair(lambda: cbp.optim.SGD(lr=0.05, momentum=0.9)),
        opt_pair(lambda: cbp.optim.Adam(lr=0.01)),
    ]

    def make(i):
        return cbp.Network(
            [cbp.Dense(3, 5, activation="tanh"), cbp.Dense(5, 1)], seed=i, backend=backend
        )

    check_own_fit(
        make,
        2,
        X,
        y,
        {"optimizer": opts},
        epochs=30,
        batch_size=8,
        callback=lambda e, logs: seen.append(e),
        callback_every=10,
    )
    assert seen == [10, 20, 30] * 4  # fit_many's two networks, then the two references


def test_one_network_and_a_tuple(backend):
    net, ref = xor_net(1, backend), xor_net(1, backend)
    (h,) = cbp.fit_many((net,), X_XOR, Y_XOR, epochs=20, lr=0.5)
    same_history(h, ref.fit(X_XOR, Y_XOR, epochs=20, lr=0.5))


# ----------------------------------------------------------------- checks --
def test_refuses_what_fit_many_cannot_train(backend):
    a, b = xor_net(0, backend), xor_net(1, backend)
    with pytest.raises(ValueError, match="empty"):
        cbp.fit_many([], X_XOR, Y_XOR)
    with pytest.raises(TypeError, match=r"networks\[1\] is a str"):
        cbp.fit_many([a, "b"], X_XOR, Y_XOR)
    with pytest.raises(TypeError, match="wrap it"):
        cbp.fit_many(a, X_XOR, Y_XOR)
    with pytest.raises(ValueError, match=r"networks\[2\] is the same network as networks\[0\]"):
        cbp.fit_many([a, b, a], X_XOR, Y_XOR)
    wide = cbp.Network([cbp.Dense(2, 5, activation="sigmoid"), cbp.Dense(5, 1)], backend=backend)
    with pytest.raises(ValueError, match=r"networks\[2\] differs .*layer 0 .*its width"):
        cbp.fit_many([a, b, wide], X_XOR, Y_XOR)
    relu = xor_net(2, backend, act="relu")
    with pytest.raises(ValueError, match=r"networks\[1\] differs .*layer 0 .*activation"):
        cbp.fit_many([a, relu], X_XOR, Y_XOR)
    bce = xor_net(2, backend, loss="binary_crossentropy")
    with pytest.raises(ValueError, match=r"networks\[1\] differs .*loss"):
        cbp.fit_many([a, bce], X_XOR, Y_XOR)
    with pytest.raises(ValueError, match="lr has 3 entries for 2 networks"):
        cbp.fit_many([a, b], X_XOR, Y_XOR, lr=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="seed has 1 entries for 2 networks"):
        cbp.fit_many([a, b], X_XOR, Y_XOR, lr=0.1, seed=[1])
    with pytest.raises(ValueError, match="lr must be"):
        cbp.fit_many([a, b], X_XOR, Y_XOR, lr=[0.1, -1.0])
    with pytest.raises(ValueError, match="either lr or optimizer"):
        cbp.fit_many([a, b], X_XOR, Y_XOR, lr=0.1, optimizer="adam")
    with pytest.raises(ValueError, match="one optimizer object cannot train 2 networks"):
        cbp.fit_many([a, b], X_XOR, Y_XOR, optimizer=cbp.optim.Adam())
    adam = cbp.optim.Adam()
    with pytest.raises(ValueError, match=r"networks\[0\] and networks\[1\] .*same optimizer"):
        cbp.fit_many([a, b], X_XOR, Y_XOR, optimizer=[adam, adam])
    with pytest.raises(ValueError, match="optimizer has 1 entries"):
        cbp.fit_many([a, b], X_XOR, Y_XOR, optimizer=[adam])
    with pytest.raises(ValueError, match="X has 3 columns"):
        cbp.fit_many([a, b], np.zeros((4, 3)), Y_XOR)
    with pytest.raises(ValueError, match="NaN"):
        cbp.fit_many([a, b], X_XOR * np.nan, Y_XOR)
    # nothing was trained, nothing is held
    assert a.epochs_trained == b.epochs_trained == 0
    assert not a._guard.held and not b._guard.held
    assert a.history is None


def test_a_layer_changed_after_construction_is_told_apart(backend):
    a, b = xor_net(0, backend), xor_net(1, backend)
    b.layers[0].activation = "relu"
    with pytest.raises(ValueError, match=r"networks\[1\] differs .*layer 0 .*activation"):
        cbp.fit_many([a, b], X_XOR, Y_XOR, lr=0.1, epochs=2)
    b.layers[0].activation = "sigmoid"  # alike again: it trains
    b.layers[1].trainable = False
    with pytest.raises(ValueError, match=r"networks\[1\] differs .*layer 1 .*trainable"):
        cbp.fit_many([a, b], X_XOR, Y_XOR, lr=0.1, epochs=2)
    b.layers[1].trainable = True
    c = pickle.loads(pickle.dumps(a))  # a copy is alike too
    cbp.fit_many([a, b, c], X_XOR, Y_XOR, lr=0.1, epochs=2)
    assert a.epochs_trained == b.epochs_trained == c.epochs_trained == 2


def test_backends_must_match(native_core):
    a, b = xor_net(0), xor_net(0, backend="numpy")
    with pytest.raises(ValueError, match=r"networks\[1\] differs .*backend"):
        cbp.fit_many([a, b], X_XOR, Y_XOR)


# ----------------------------------------------------------------- guards --
def test_a_busy_network_is_refused_and_nothing_trains(backend):
    a, b, c = xor_net(0, backend), xor_net(1, backend), xor_net(2, backend)
    taken, release = threading.Event(), threading.Event()

    def hold():
        with b._guard.training:
            taken.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    taken.wait(10)
    try:
        with pytest.raises(RuntimeError, match="in use by another thread"):
            cbp.fit_many([a, b, c], X_XOR, Y_XOR, epochs=5, lr=0.1)
    finally:
        release.set()
        t.join()
    assert not a._guard.held and not c._guard.held
    assert a.epochs_trained == 0
    cbp.fit_many([a, b, c], X_XOR, Y_XOR, epochs=5, lr=0.1)  # all free again
    assert not any(n._guard.held for n in (a, b, c))


def test_a_callback_may_read_but_not_train(backend):
    a, b = xor_net(0, backend), xor_net(1, backend)

    def cb(epoch, logs):
        a.predict(X_XOR)  # reading is allowed
        with pytest.raises(RuntimeError, match="already training in this thread"):
            b.fit(X_XOR, Y_XOR, epochs=1, lr=0.1)

    cbp.fit_many([a, b], X_XOR, Y_XOR, epochs=4, lr=0.1, callback=cb, callback_every=2)
    assert not a._guard.held and not b._guard.held


# ------------------------------------------------------------- divergence --
@pytest.mark.parametrize("threads", [1, 2])
def test_a_diverged_network_and_the_others(backend, threads, request):
    if threads == 2 and backend != "native":
        pytest.skip("the twin trains one network after another")
    X = np.array([[1.0, 2.0], [3.0, -1.0], [-2.0, 0.5]])
    y = np.array([1.0, 0.0, 2.0])
    lrs = [0.01, 0.01, 0.01, 1.0, 1.0, 0.01]  # networks 3 and 4 diverge in epochs 8, 7

    def make(i):
        return cbp.Network(
            [cbp.Dense(2, 3, activation="identity"), cbp.Dense(3, 1)], seed=i, backend=backend
        )

    nets = [make(i) for i in range(6)]
    with thread_limit(request, backend, threads):
        with pytest.raises(cbp.DivergenceError, match=r"2 of 6 networks \(indices \[3, 4\]\)") as e:
            cbp.fit_many(nets, X, y, epochs=100, lr=lrs)
    assert e.value.diverged == [3, 4]
    assert len(e.value.histories) == 6
    for i, net in enumerate(nets):
        ref = make(i)
        if i in (3, 4):
            with pytest.raises(cbp.DivergenceError) as own:
                ref.fit(X, y, epochs=100, lr=lrs[i])
            same_history(e.value.histories[i], own.value.history)
        else:
            same_history(e.value.histories[i], ref.fit(X, y, epochs=100, lr=lrs[i]))
        np.testing.assert_array_equal(net.parameters, ref.parameters)
        assert net.epochs_trained == ref.epochs_trained
        assert not net._guard.held


def test_one_network_takes_its_fits_fast_path(backend):
    X = np.array([[1.0, 2.0], [3.0, -1.0], [-2.0, 0.5]])
    y = np.array([1.0, 0.0, 2.0])

    def make():
        return cbp.Network(
            [cbp.Dense(2, 3, activation="identity"), cbp.Dense(3, 1)], seed=5, backend=backend
        )

    for kw in ({"lr": 0.01}, {"lr": 0.01, "batch_size": 2, "seed": 3}, {}):  # {}: Adam
        net, ref = make(), make()
        for _ in range(2):  # with {}, the first call makes the Adam (the general path)
            before = many._paths["fast"]
            (hist,) = cbp.fit_many([net], X, y, epochs=20, **kw)
            took = many._paths["fast"] - before
            same_history(hist, ref.fit(X, y, epochs=20, **kw))
            np.testing.assert_array_equal(net.parameters, ref.parameters)
            assert net.epochs_trained == ref.epochs_trained and net.history is hist
        assert took == 1, kw  # the second call took the fast path
    net, ref = make(), make()
    before = many._paths["fast"]
    with pytest.raises(cbp.DivergenceError, match=r"1 of 1 networks \(indices \[0\]\)") as e:
        cbp.fit_many([net], X, y, epochs=100, lr=1.0)
    assert many._paths["fast"] == before + 1  # it diverged on the fast path
    assert e.value.diverged == [0] and not net._guard.held
    with pytest.raises(cbp.DivergenceError) as own:
        ref.fit(X, y, epochs=100, lr=1.0)
    same_history(e.value.histories[0], own.value.history)
    np.testing.assert_array_equal(net.parameters, ref.parameters)
    before = dict(many._paths)  # anything fit's fast path does not take: the general path
    cbp.fit_many([make()], X, y, epochs=20, lr=[0.01], history_every=2)
    assert many._paths["fast"] == before["fast"]
    assert many._paths["sequential"] == before["sequential"] + 1


# -------------------------------------------------------------- interrupt --
def test_an_interrupt_leaves_every_counter_true(backend):
    nets = [xor_net(i, backend) for i in range(3)]

    def cb(epoch, logs):
        if nets[1].epochs_trained == 50:  # (the callback runs in the network's fit loop)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cbp.fit_many(nets, X_XOR, Y_XOR, epochs=100, lr=0.5, callback=cb, callback_every=10)
    assert [n.epochs_trained for n in nets] == [100, 50, 0]
    for net in nets:
        ref = xor_net(nets.index(net), backend)
        if net.epochs_trained:
            ref.fit(X_XOR, Y_XOR, epochs=net.epochs_trained, lr=0.5)
        np.testing.assert_array_equal(net.parameters, ref.parameters)
        assert not net._guard.held


@pytest.mark.parametrize("lr", [0.01, None])
def test_a_run_on_a_worker_thread_ends_when_its_stop_is_set(lr):
    """The run of a network on one of fit_many's threads reads its stop
    event at the native loop's time checks (many._STOP_SECONDS), with no
    callback: set from another thread, it ends the run within a bound,
    mid-chunk, the counters and the history those of the epochs run."""
    from cbp import _fit, optim
    from cbp.network import MAX_CHUNK

    def make():
        net = cbp.Network([cbp.Dense(3, 32, "tanh"), cbp.Dense(32, 1)], seed=3)
        if lr is None:
            net.optimizer = optim.Adam()
        return net

    X, y = blobs(200)
    Y = y.reshape(-1, 1)
    net, stop, out = make(), threading.Event(), {}
    opt = net.optimizer

    def work():
        out["history"] = _fit.run(
            net, X, Y, None, None, 10**9, lr, 32, False, 0, opt, None, None, 10**9, 1,
            False, None, MAX_CHUNK, many._STOP_SECONDS, owned=False, stop=stop,
        )  # fmt: skip

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        worker.join(0.3)
        assert worker.is_alive()  # (10**9 epochs: still training)
    finally:
        stop.set()
    worker.join(30)
    assert not worker.is_alive(), "the run did not read its stop event"
    ran = net.epochs_trained
    assert 0 < ran < 10**9 and len(out["history"]["loss"]) == ran
    ref = make()
    ref.fit(X, y, epochs=ran, lr=lr, batch_size=32, shuffle=False, seed=0)
    np.testing.assert_array_equal(net.parameters, ref.parameters)
    np.testing.assert_array_equal(out["history"]["loss"], ref.history["loss"])


def test_an_interrupt_on_threads(openmp_core):
    import _thread

    saved = openmp_core._thread_config(2)

    def make(i):
        return cbp.Network([cbp.Dense(2, 16, activation="tanh"), cbp.Dense(16, 1)], seed=i)

    nets = [make(i) for i in range(3)]
    X = np.random.default_rng(0).normal(size=(64, 2))
    y = X[:, 0] * X[:, 1]
    timer = threading.Timer(0.3, _thread.interrupt_main)
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            cbp.fit_many(nets, X, y, epochs=10**7, lr=0.01, batch_size=None)
        # the references train under the same thread setting (a chunked
        # step sums its gradients in another order)
        for i, net in enumerate(nets):
            assert not net._guard.held
            assert net.epochs_trained < 10**7
            ref = make(i)
            if net.epochs_trained:
                ref.fit(X, y, epochs=net.epochs_trained, lr=0.01, batch_size=None)
            np.testing.assert_array_equal(net.parameters, ref.parameters)
    finally:
        timer.cancel()
        openmp_core._thread_config(*saved)
