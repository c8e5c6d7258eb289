"""Dense(..., bias_trainable=False): a bias that takes part in forward and
backward but that no update changes, on every update path and optimizer.

The reference for "the weights train as before" is the same network with a
trainable bias that is put back after every update: the gradients of the
weights only read the bias's value, so the two must agree bit for bit.
"""

import json

import numpy as np
import pytest

import cbp
from cbp import _codes, optim

OPTIMIZERS = {
    "sgd": lambda: optim.SGD(0.1),
    "sgd_decay": lambda: optim.SGD(0.1, decay=0.01),
    "momentum": lambda: optim.SGD(0.05, momentum=0.9),
    "nesterov": lambda: optim.SGD(0.05, momentum=0.8, nesterov=True),
    "adagrad": lambda: optim.Adagrad(0.1),
    "rmsprop": lambda: optim.RMSprop(0.01),
    "adam": lambda: optim.Adam(0.01),
}


def make(backend, frozen, **kw):
    """3 -> 4 tanh -> 2 identity; the output layer's bias fixed if ``frozen``."""
    return cbp.Network(
        [
            cbp.Dense(3, 4, "tanh", seed=1),
            cbp.Dense(2 * 2, 2, "identity", seed=2, bias_trainable=not frozen),
        ],
        backend=backend,
        **kw,
    )


def data(n=12):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, 3))
    return X, np.c_[X[:, :1] - X[:, 1:2], X[:, 2:] ** 2]


@pytest.mark.parametrize("path", ["step", "train_step"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_leaves_the_bias_and_trains_the_weights(backend, name, path):
    X, y = data()
    a, b = make(backend, True), make(backend, False)
    a.optimizer, b.optimizer = OPTIMIZERS[name](), OPTIMIZERS[name]()
    fixed = a.layers[1].bias.copy()
    for _ in range(5):
        for net in (a, b):
            if path == "step":
                net.forward(X)
                net.backward(y)
                net.step()
            else:
                net.train_step(X, y)
        b.layers[1].bias = fixed
        assert np.array_equal(a.layers[1].bias, fixed)
        assert np.any(a.layers[1].dbias != 0)  # its gradient is still computed
        np.testing.assert_array_equal(a.parameters, b.parameters)
    assert not np.array_equal(a.layers[1].weights, make(backend, True).layers[1].weights)


@pytest.mark.parametrize("path", ["step", "train_step", "train_step_fast"])
def test_plain_sgd_paths(backend, path):
    """step(lr), train_step(X, y, lr) and its float-lr fast path (C-contiguous
    float64 arrays go straight to the engine)."""
    X, y = data()
    a, b = make(backend, True), make(backend, False)
    fixed = a.layers[1].bias.copy()
    for _ in range(4):
        for net in (a, b):
            if path == "step":
                net.forward(X)
                net.backward(y)
                net.step(lr=0.1)
            elif path == "train_step":
                net.train_step(X.tolist(), y.tolist(), lr=0.1)  # lists: the checked path
            else:
                net.train_step(X, y, 0.1)
        b.layers[1].bias = fixed
        assert np.array_equal(a.layers[1].bias, fixed)
        np.testing.assert_array_equal(a.parameters, b.parameters)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fit_leaves_the_bias(backend, name):
    """fit (shuffled mini-batches) against one-epoch fits of a trainable bias
    put back after each: with full batches, one update an epoch."""
    X, y = data()
    a, b = make(backend, True), make(backend, False)
    fixed = a.layers[1].bias.copy()
    a.fit(X, y, epochs=6, batch_size=None, optimizer=OPTIMIZERS[name]())
    b.optimizer = OPTIMIZERS[name]()
    for _ in range(6):
        b.fit(X, y, epochs=1, batch_size=None)
        b.layers[1].bias = fixed
    assert np.array_equal(a.layers[1].bias, fixed)
    np.testing.assert_array_equal(a.parameters, b.parameters)
    a.fit(X, y, epochs=3, batch_size=4, shuffle=True, optimizer="adam")  # mini-batches too
    assert np.array_equal(a.layers[1].bias, fixed)


def test_native_equals_twin(native_core):
    X, y = data(40)
    runs = {}
    for backend in ("native", "numpy"):
        net = make(backend, True)
        net.layers[0].bias_trainable = False
        hist = net.fit(X, y, epochs=20, batch_size=8, optimizer=optim.Adam(0.01))
        runs[backend] = net.parameters.copy(), hist["loss"]
    np.testing.assert_allclose(runs["native"][0], runs["numpy"][0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(runs["native"][1], runs["numpy"][1], rtol=1e-9)


def test_rollback_keeps_the_bias(backend):
    """An update that diverges is undone, the fixed bias included."""
    X, y = data()
    net = make(backend, True)
    net.layers[0].bias_trainable = False
    before = net.parameters.copy()
    y = y * 100.0  # gradients over 2: a step of lr 1e308 overflows
    with pytest.raises(cbp.DivergenceError):
        net.train_step(X, y, 1e308)
    np.testing.assert_array_equal(net.parameters, before)
    with pytest.raises(cbp.DivergenceError):
        net.fit(X, y, epochs=2, lr=1e308)
    np.testing.assert_array_equal(net.parameters, before)
    with pytest.raises(cbp.DivergenceError):
        net.fit(X, y, epochs=2, optimizer=optim.SGD(1e308, momentum=0.5))
    np.testing.assert_array_equal(net.parameters, before)


def test_the_flag_on_a_frozen_or_bias_free_layer(backend):
    """A frozen layer stays frozen whatever the flag; without a bias the flag
    changes nothing."""
    X, y = data()
    net = cbp.Network(
        [
            cbp.Dense(3, 4, "tanh", seed=1, trainable=False, bias_trainable=True),
            cbp.Dense(4, 2, "identity", seed=2, use_bias=False, bias_trainable=False),
        ],
        backend=backend,
    )
    first = net.layers[0].weights.copy(), net.layers[0].bias.copy()
    w = net.layers[1].weights.copy()
    net.train_step(X, y, lr=0.1)
    np.testing.assert_array_equal(net.layers[0].weights, first[0])
    np.testing.assert_array_equal(net.layers[0].bias, first[1])
    assert not np.array_equal(net.layers[1].weights, w)


def test_the_setting_rebuilds_the_layer_table(backend):
    X, y = data()
    net = make(backend, False)
    layer = net.layers[1]
    assert layer.bias_trainable is True
    layer.bias_trainable = False
    assert net._layer_table()[0][1, _codes.LAYER_BIAS_TRAINABLE] == 0
    fixed = layer.bias.copy()
    net.train_step(X, y, lr=0.1)
    np.testing.assert_array_equal(layer.bias, fixed)
    layer.bias_trainable = True
    net.train_step(X, y, lr=0.1)
    assert not np.array_equal(layer.bias, fixed)
    with pytest.raises(TypeError, match="bias_trainable must be a bool"):
        layer.bias_trainable = 0
    with pytest.raises(TypeError, match="bias_trainable must be a bool"):
        cbp.Dense(2, 2, bias_trainable="no")
    assert layer.bias_trainable is True


def test_config_repr_and_files(backend, tmp_path):
    net = make(backend, True)
    layer = net.layers[1]
    assert layer.get_config()["bias_trainable"] is False
    assert net.layers[0].get_config()["bias_trainable"] is True
    assert repr(layer) == "Dense(4, 2, 'identity', bias_trainable=False)"
    assert repr(net.layers[0]) == "Dense(3, 4, 'tanh')"
    path = net.save(tmp_path / "frozen")
    back = cbp.load(path)
    assert back.layers[1].bias_trainable is False and back.layers[0].bias_trainable is True
    np.testing.assert_array_equal(back.parameters, net.parameters)
    # a file written before the flag existed: no key, a trainable bias
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"][()]))
    for spec in meta["config"]["layers"]:
        del spec["bias_trainable"]
    arrays["meta"] = np.array(json.dumps(meta))
    old = tmp_path / "old.npz"
    with open(old, "wb") as fh:
        np.savez(fh, **arrays)
    assert all(l.bias_trainable is True for l in cbp.load(old).layers)
