"""One thread at a time: the ownership guard on every entry point and setter,
checked setters, and an optimizer shared by two networks.

The races run in a subprocess, so that a crash of the interpreter fails the
test instead of ending the run, and each is bounded to a few seconds.
Synchronisation that must be exact uses events: a fit callback that parks the
training thread inside fit while the probes run.
"""

import copy
import pickle
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import cbp
from cbp import optim

JOIN = 60  # seconds: a bound on every join, so that a bug hangs nothing


def small_net(backend, seed=0, **kw):
    return cbp.Network(
        [
            cbp.Dense(3, 5, "tanh", seed=seed),
            cbp.Dropout(0.2),
            cbp.Dense(5, 2, "identity", seed=seed + 1),
        ],
        backend=backend,
        **kw,
    )


def data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return X, np.tanh(X[:, :2])


class Parked:
    """net.fit running in a thread, parked in its callback after `epochs`
    epochs until release(); the guard is held meanwhile."""

    def __init__(self, net, X, y, epochs=3, **kw):
        self.box = {}
        self.parked = threading.Event()
        self.go = threading.Event()

        def park(epoch, logs):
            self.parked.set()
            self.go.wait(JOIN)

        def target():
            try:
                self.box["history"] = net.fit(
                    X, y, epochs=epochs, callback=park, callback_every=epochs, **kw
                )
            except BaseException as exc:  # reported by release()
                self.box["error"] = exc

        self.thread = threading.Thread(target=target)
        self.thread.start()
        assert self.parked.wait(JOIN), "the fit never reached its callback"

    def release(self):
        self.go.set()
        self.thread.join(JOIN)
        assert not self.thread.is_alive()
        if "error" in self.box:
            raise self.box["error"]
        return self.box["history"]


def setter_probes(net, opt, path):
    """Valid assignments to every setting of net, its layers and its optimizer."""
    dense, drop, out = net.layers
    return {
        "layer.weights": lambda: setattr(dense, "weights", np.ones((3, 5))),
        "layer.bias": lambda: setattr(dense, "bias", np.ones(5)),
        "layer.trainable": lambda: setattr(dense, "trainable", False),
        "layer.activation": lambda: setattr(dense, "activation", "relu"),
        "layer.alpha": lambda: setattr(dense, "alpha", 0.5),
        "layer.weight_l1": lambda: setattr(dense, "weight_l1", 0.1),
        "layer.weight_l2": lambda: setattr(dense, "weight_l2", 0.1),
        "layer.bias_l1": lambda: setattr(out, "bias_l1", 0.1),
        "layer.bias_l2": lambda: setattr(out, "bias_l2", 0.1),
        "dropout.rate": lambda: setattr(drop, "rate", 0.5),
        "net.parameters": lambda: setattr(net, "parameters", np.zeros(net.parameters.size)),
        "net.optimizer": lambda: setattr(net, "optimizer", optim.SGD(lr=0.5)),
        "net.epochs_trained": lambda: setattr(net, "epochs_trained", 0),
        "net.seed": lambda: setattr(net, "seed", 5),
        "optimizer.lr": lambda: setattr(opt, "lr", 9.0),
        "optimizer.beta_1": lambda: setattr(opt, "beta_1", 0.5),
        "optimizer.state": lambda: setattr(opt, "state", np.zeros_like(opt.state)),
        "optimizer.iterations": lambda: setattr(opt, "iterations", 0),
        "optimizer.reset": opt.reset,
        "save": lambda: net.save(path),
        "pickle": lambda: pickle.dumps(net),
    }


def test_every_setter_is_refused_from_another_thread(backend, tmp_path):
    """While a fit runs in one thread, every setting assigned from another
    raises the guard's RuntimeError and changes nothing: the fit's result and
    every setting equal those of the same fit run alone."""
    X, y = data()
    opt = optim.Adam(lr=0.01)
    net = small_net(backend, optimizer=opt)
    parked = Parked(net, X, y, epochs=3, batch_size=4, shuffle=True)
    refused, accepted = {}, []
    try:
        for name, call in setter_probes(net, opt, tmp_path / "probe.npz").items():
            try:
                call()
                accepted.append(name)
            except RuntimeError as exc:
                refused[name] = str(exc)
    finally:
        hist = parked.release()
    assert not accepted, f"accepted from another thread during fit: {accepted}"
    for name, msg in refused.items():
        assert "another thread" in msg, f"{name}: {msg}"
    assert not list(tmp_path.iterdir()), "save wrote a file past the guard"

    ref_opt = optim.Adam(lr=0.01)
    ref = small_net(backend, optimizer=ref_opt)
    ref_hist = ref.fit(X, y, epochs=3, batch_size=4, shuffle=True)
    assert net.parameters.tobytes() == ref.parameters.tobytes()
    np.testing.assert_array_equal(hist["loss"], ref_hist["loss"])
    assert opt.lr == 0.01 and opt.beta_1 == 0.9 and opt.iterations == ref_opt.iterations
    np.testing.assert_array_equal(opt.state, ref_opt.state)
    assert net.optimizer is opt and net.epochs_trained == 3 and net.seed is None
    dense, drop, out = net.layers
    assert (dense.trainable, dense.activation, dense.alpha, drop.rate) == (True, "tanh", 0.0, 0.2)
    assert dense.weight_l1 == dense.weight_l2 == out.bias_l1 == out.bias_l2 == 0.0


def test_a_callback_may_set_weights_but_not_reconfigure(backend):
    """The training thread itself (a callback) may assign weights, which the
    next epochs train from; changing the layer table mid-fit is refused."""
    X, y = data()
    net = small_net(backend)
    seen = {}

    def callback(epoch, logs):
        net.layers[0].weights = np.full((3, 5), 0.1)
        with pytest.raises(RuntimeError, match="already training"):
            net.layers[0].trainable = False
        with pytest.raises(RuntimeError, match="already training"):
            net.epochs_trained = 0
        seen["epoch"] = epoch

    net.fit(X, y, epochs=4, lr=0.01, callback=callback, callback_every=2)
    assert seen["epoch"] == 4
    assert net.layers[0].trainable

    # the same run, with the weights set by hand at epoch 2
    ref = small_net(backend)
    ref.fit(X, y, epochs=2, lr=0.01)
    ref.layers[0].weights = np.full((3, 5), 0.1)
    ref.fit(X, y, epochs=2, lr=0.01)
    ref.layers[0].weights = np.full((3, 5), 0.1)
    np.testing.assert_array_equal(net.parameters, ref.parameters)


def test_reconfigured_layers_reach_the_engine(backend):
    """trainable, activation, alpha, penalties and a dropout rate set on an
    adopted layer change what the network computes, exactly as a network
    built with those settings does."""
    X, y = data()

    def built(**changes):
        net = small_net(backend, seed=3)
        dense, drop, out = net.layers
        for key, value in changes.items():
            layer, attr = key.split("__")
            setattr({"dense": dense, "drop": drop, "out": out}[layer], attr, value)
        return net

    def fresh(dense_kw=None, rate=0.2, out_kw=None):
        return cbp.Network(
            [
                cbp.Dense(3, 5, **{"activation": "tanh", "seed": 3, **(dense_kw or {})}),
                cbp.Dropout(rate),
                cbp.Dense(5, 2, **{"activation": "identity", "seed": 4, **(out_kw or {})}),
            ],
            backend=backend,
        )

    cases = [
        ({"dense__trainable": False}, fresh({"trainable": False})),
        (
            {"dense__activation": "leaky_relu", "dense__alpha": 0.3},
            fresh({"activation": "leaky_relu", "alpha": 0.3}),
        ),
        (
            {"dense__weight_l2": 0.01, "out__bias_l1": 0.02},
            fresh({"weight_l2": 0.01}, out_kw={"bias_l1": 0.02}),
        ),
        ({"drop__rate": 0.5}, fresh(rate=0.5)),
    ]
    for changes, ref in cases:
        net = built(**changes)
        np.testing.assert_array_equal(net.parameters, ref.parameters)
        h = net.fit(X, y, epochs=3, lr=0.05, batch_size=4, shuffle=True)
        h_ref = ref.fit(X, y, epochs=3, lr=0.05, batch_size=4, shuffle=True)
        np.testing.assert_array_equal(h["loss"], h_ref["loss"], err_msg=str(changes))
        np.testing.assert_array_equal(net.parameters, ref.parameters, err_msg=str(changes))
    frozen = built(dense__trainable=False)
    before = frozen.layers[0].weights.copy()
    frozen.fit(X, y, epochs=2, lr=0.1)
    np.testing.assert_array_equal(frozen.layers[0].weights, before)


def test_bad_settings_are_refused_and_change_nothing(backend):
    net = small_net(backend)
    dense, drop, out = net.layers
    before = net.parameters.copy()
    with pytest.raises(ValueError, match="unknown activation"):
        dense.activation = "swish"
    with pytest.raises(ValueError, match="weight_l2"):
        dense.weight_l2 = -1.0
    with pytest.raises(ValueError, match="rate"):
        drop.rate = 1.0
    with pytest.raises(TypeError, match="alpha"):
        dense.alpha = "big"
    for attr in ("n_inputs", "n_neurons", "use_bias", "init", "seed", "network"):
        with pytest.raises(AttributeError):
            setattr(dense, attr, 1)
    for attr in ("loss", "reduction", "backend", "layers", "gradients", "history"):
        with pytest.raises(AttributeError):
            setattr(net, attr, None)
    with pytest.raises(ValueError, match="epochs_trained"):
        net.epochs_trained = -1
    assert dense.activation == "tanh" and dense.weight_l2 == 0.0 and drop.rate == 0.2
    np.testing.assert_array_equal(net.parameters, before)


def test_parameters_assignment_copies_into_the_buffers(backend, tmp_path):
    """net.parameters = values writes into the buffer every layer views, so
    predict and save see the new values; a wrong shape or NaN is refused."""
    X, _ = data()
    net = small_net(backend)
    buffer = net.parameters
    net.parameters = np.zeros(buffer.size)
    assert net.parameters is buffer and not buffer.any()
    np.testing.assert_array_equal(net.predict(X), np.zeros((len(X), 2)))
    assert not cbp.load(net.save(tmp_path / "zeros.npz")).parameters.any()
    values = np.arange(buffer.size, dtype=np.float64) / buffer.size
    net.parameters = values.tolist()
    np.testing.assert_array_equal(net.layers[0].weights.ravel(), values[:15])
    with pytest.raises(ValueError, match="shape"):
        net.parameters = np.zeros(buffer.size + 1)
    with pytest.raises(ValueError, match="NaN"):
        net.parameters = np.full(buffer.size, np.nan)
    with pytest.raises(TypeError, match="real numbers"):
        net.parameters = np.array(["1"] * buffer.size)
    np.testing.assert_array_equal(net.parameters, values)


def test_an_optimizer_trains_one_network_at_a_time(backend):
    """Two networks sharing one optimizer cannot train at the same time: the
    second is refused, and the first one's run is intact."""
    X, y = data()
    opt = optim.Adam(lr=0.01)
    a, b = small_net(backend, optimizer=opt), small_net(backend, seed=7)
    parked = Parked(a, X, y, epochs=2)
    try:
        with pytest.raises(RuntimeError, match="another thread"):
            b.fit(X, y, epochs=1, optimizer=opt)
        with pytest.raises(RuntimeError, match="another thread"):
            b.optimizer = opt
    finally:
        parked.release()
    ref_opt = optim.Adam(lr=0.01)
    ref = small_net(backend, optimizer=ref_opt)
    ref.fit(X, y, epochs=2)
    np.testing.assert_array_equal(a.parameters, ref.parameters)
    np.testing.assert_array_equal(opt.state, ref_opt.state)
    assert b.optimizer is None
    b.fit(X, y, epochs=1, optimizer=optim.Adam(lr=0.01))  # b itself is fine


def test_optimizer_attributes_are_checked():
    opt = optim.Adam()
    for attr, bad, err in [
        ("lr", 0.0, ValueError),
        ("lr", float("nan"), ValueError),
        ("beta_1", 1.0, ValueError),
        ("beta_2", -0.1, ValueError),
        ("epsilon", 0.0, ValueError),
        ("decay", "x", TypeError),
        ("iterations", -1, ValueError),
        ("iterations", 1.5, TypeError),
        ("state", np.zeros((2, 2)), ValueError),
        ("state", ["a", "b"], TypeError),
        ("state", [1.0, np.inf], ValueError),
    ]:
        with pytest.raises(err):
            setattr(opt, attr, bad)
    assert (opt.lr, opt.beta_1, opt.beta_2, opt.iterations, opt.state) == (
        0.001,
        0.9,
        0.999,
        0,
        None,
    )
    sgd = optim.SGD(lr=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        sgd.nesterov = True
    sgd.momentum = 0.9
    sgd.nesterov = True
    with pytest.raises(ValueError, match="nesterov"):
        sgd.momentum = 0.0
    opt.state = [0.0, 1.0]
    assert opt.state.dtype == np.float64 and opt.state.flags.c_contiguous


def test_optimizers_copy_and_pickle(backend):
    X, y = data()
    opt = optim.RMSprop(lr=0.01)
    net = small_net(backend, optimizer=opt)
    net.fit(X, y, epochs=2)
    for twin in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert twin.get_config() == opt.get_config() and twin.iterations == opt.iterations
        np.testing.assert_array_equal(twin.state, opt.state)
        assert twin.state is not opt.state
        twin.lr = 0.5  # its own guard
        assert opt.lr == 0.01


RACE = textwrap.dedent("""
    import sys, threading, time
    import numpy as np
    import cbp

    sys.setswitchinterval(1e-6)
    backend, seconds, n_threads = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    net = cbp.Network([cbp.Dense(2, 256, "relu", seed=0), cbp.Dense(256, 256, "relu", seed=1),
                       cbp.Dense(256, 1, "identity", seed=2)], backend=backend)
    rng = np.random.default_rng(0)
    counts = {"ok": 0, "refused": 0}
    errors = []
    stop = time.monotonic() + seconds

    def worker(k):
        n = 1
        while time.monotonic() < stop:
            n = n % 200 + 1 + k  # growing batches: the engine re-lays its workspace
            X = rng.standard_normal((n, 2))
            y = rng.standard_normal((n, 1))
            try:
                if k == 5:
                    net.fit(X, y, epochs=2, lr=1e-4)
                elif k == 4:
                    net.predict(X)
                else:
                    value = net.train_step(X, y, 1e-4)
                    assert np.isfinite(value)
                counts["ok"] += 1
            except RuntimeError as exc:
                if "another thread" not in str(exc):
                    errors.append(repr(exc))
                counts["refused"] += 1
            except BaseException as exc:
                errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    assert not net._guard.held
    assert np.isfinite(net.parameters).all()
    net.train_step(np.ones((3, 2)), np.ones((3, 1)), 1e-4)  # the guard works after the race
    print(counts["ok"], counts["refused"])
""")


@pytest.mark.parametrize("seconds,n_threads", [(4, 4), (2, 6)], ids=["train_step", "mixed"])
def test_race_on_one_network_never_crashes(backend, seconds, n_threads):
    """Threads hammering one network with growing batches under a 1 us switch
    interval -- four on train_step's fast path with a float lr, then a mix
    that adds predict and fit: every call either runs alone or is refused
    with the guard's RuntimeError, and the interpreter survives."""
    proc = subprocess.run(
        [sys.executable, "-c", RACE, backend, str(seconds), str(n_threads)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    ok, refused = map(int, proc.stdout.split())
    assert ok > 0 and refused > 0, (ok, refused)
