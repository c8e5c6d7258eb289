"""fit() on the feature-major passes (`_forward_feature_major`, `_backward_feature_major`
  of src/_engine_passes.pxi).

fit() takes them for a network of dense layers only, every side at most
``cbp._core._feature_major_limits()`` (4 by default), on batches of 2 to 32
rows.  The kernels themselves are compared with their twins in
test_equivalence.py and, per SIMD table, in test_simd.py, which also trains
its networks on this path.  Here the
limits are raised to 64 units and any batch size (the fixture
``feature_major`` of tests/conftest.py), and whole runs are compared with
the NumPy twin over every activation, loss and batch shape.

The training tests of test_training.py that involve the native backend run
with the same limits too (their parameter "native-feature_major"), so that
their networks (sides up to 12, batches of 1 to 36 rows, which the defaults
leave on the row-major passes) take the feature-major passes, against the
same expected values: the NumPy twin or a loop of train_step calls, which
never take them.
"""

import numpy as np
import pytest

import cbp

#: every network without dropout trains feature-major in this module
pytestmark = pytest.mark.usefixtures("feature_major")


# ---------------------------------------------------------------------------
# Which networks take the path
# ---------------------------------------------------------------------------
def _engaged(net):
    return net._engine.ld > 0


def test_default_limits_and_what_stays_row_major(native):
    X, y = np.random.default_rng(0).standard_normal((40, 4)), np.zeros((40, 3))
    native._feature_major_limits(4, 2, 32)
    narrow = cbp.Network([cbp.Dense(4, 4, "relu", seed=0), cbp.Dense(4, 3, "identity", seed=1)])
    wide = cbp.Network([cbp.Dense(4, 5, "relu", seed=0), cbp.Dense(5, 3, "identity", seed=1)])
    hidden_softmax = cbp.Network(
        [cbp.Dense(4, 4, "softmax", seed=0), cbp.Dense(4, 3, "identity", seed=1)]
    )
    for net, want in ((narrow, True), (wide, False), (hidden_softmax, False)):
        net.fit(X, y, epochs=1, lr=0.01, batch_size=10)
        assert _engaged(net) == want
    for batch_size, want in ((1, False), (2, True), (32, True), (33, False), (None, False)):
        narrow.fit(X, y, epochs=1, lr=0.01, batch_size=batch_size)
        assert _engaged(narrow) == want, batch_size
    native._feature_major_limits(0, 2, 32)
    narrow.fit(X, y, epochs=1, lr=0.01, batch_size=10)
    assert not _engaged(narrow)


# ---------------------------------------------------------------------------
# Every activation, loss and batch shape, against the twin
# ---------------------------------------------------------------------------
HIDDEN = ["identity", "relu", "leaky_relu", "elu", "sigmoid", "tanh"]
OUTPUTS = {  # output activation -> loss
    "identity": "squared_error",
    "relu": "half_squared_error",
    "tanh": "squared_error",
    "leaky_relu": "squared_error",
    "sigmoid": "binary_crossentropy",
    "softmax": "categorical_crossentropy",
}


def _targets(rng, out, n, no):
    if out == "softmax":
        return rng.integers(0, no, n)
    if out == "sigmoid":
        return (rng.random((n, no)) < 0.5).astype(float)
    y = rng.standard_normal((n, no))
    return np.abs(y) if out == "relu" else y


def _run(backend, hidden, out, no, n, batch_size, shuffle, bias, epochs=30, **fit):
    rng = np.random.default_rng([len(hidden), len(out), no, n])
    X = rng.standard_normal((n, 3))
    y = _targets(rng, out, n, no)
    layers = [
        cbp.Dense(3, 5, hidden, use_bias=bias, seed=1),
        cbp.Dense(5, 7, hidden, use_bias=not bias, seed=2),
        cbp.Dense(7, no, out, use_bias=bias, seed=3),
    ]
    net = cbp.Network(layers, loss=OUTPUTS[out], backend=backend)
    hist = net.fit(
        X,
        y,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=4,
        optimizer=cbp.optim.SGD(0.05, momentum=0.5),
        **fit,
    )
    return net, hist


def _assert_agree(a, b):
    (na, ha), (nb, hb) = a, b
    assert set(ha) == set(hb)
    for key in ha:
        np.testing.assert_allclose(ha[key], hb[key], rtol=1e-9, err_msg=key)
    scale = np.abs(nb.parameters).max()
    np.testing.assert_allclose(na.parameters, nb.parameters, rtol=1e-9, atol=1e-12 * scale)


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("out", list(OUTPUTS))
def test_activations_and_losses_match_twin(native, hidden, out):
    # 2 outputs (1 for a single sigmoid unit is below); 13 samples in batches
    # of 5: lanes padded from 5 and 3 rows to 8 and 4
    no = 1 if out == "sigmoid" else (3 if out == "softmax" else 2)
    got = _run("native", hidden, out, no, 13, 5, True, True)
    assert _engaged(got[0])
    _assert_agree(got, _run("numpy", hidden, out, no, 13, 5, True, True))


@pytest.mark.parametrize(
    "n, batch_size",
    [
        (1, None),
        (2, None),
        (3, None),
        (4, None),
        (5, None),
        (9, None),
        (16, None),
        (11, 1),
        (11, 4),
        (11, 6),
    ],
)
@pytest.mark.parametrize(
    "out, no", [("identity", 1), ("sigmoid", 1), ("sigmoid", 3), ("softmax", 4), ("identity", 8)]
)
def test_batch_shapes_match_twin(native, n, batch_size, out, no):
    """Every padding of the lanes (n mod 4), one output unit (row-major as it
    is) and several (laid out row-major for the loss), full batches in order
    (the transposed inputs kept from epoch to epoch) and mini-batches."""
    got = _run("native", "tanh", out, no, n, batch_size, False, False)
    assert _engaged(got[0])
    _assert_agree(got, _run("numpy", "tanh", out, no, n, batch_size, False, False))


def test_inputs_are_read_again_by_every_fit_call(native):
    """The transposed inputs of an in-order full batch are kept only within
    one fit call: the next call with other data of the same shape trains on
    that data."""
    runs = []
    for backend in ("native", "numpy"):
        rng = np.random.default_rng(3)
        net = cbp.Network(
            [cbp.Dense(2, 4, "sigmoid", seed=0), cbp.Dense(4, 1, "sigmoid", seed=1)],
            loss="binary_crossentropy",
            backend=backend,
        )
        for _ in range(3):
            X = rng.standard_normal((6, 2))
            X[0] = 0.0  # in place of data the previous call saw
            net.fit(X, (rng.random((6, 1)) < 0.5) * 1.0, epochs=5, lr=0.5)
        runs.append(net.parameters)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-12, atol=1e-15)


def test_frozen_layer_penalties_and_validation(native):
    runs = []
    for backend in ("native", "numpy"):
        rng = np.random.default_rng(8)
        X, y = rng.standard_normal((21, 4)), rng.integers(0, 3, 21)
        net = cbp.Network(
            [
                cbp.Dense(4, 6, "relu", seed=0, weight_l1=1e-3, bias_l2=1e-3),
                cbp.Dense(6, 6, "sigmoid", seed=1, trainable=False),
                cbp.Dense(6, 3, "softmax", seed=2, weight_l2=1e-2),
            ],
            loss="categorical_crossentropy",
            backend=backend,
        )
        frozen = net.layers[1].weights.copy()
        hist = net.fit(
            X,
            y,
            epochs=40,
            batch_size=8,
            shuffle=True,
            seed=1,
            optimizer=cbp.optim.Adam(0.01),
            validation_data=(X[::2], y[::2]),
            early_stopping=cbp.EarlyStopping(patience=3),
        )
        np.testing.assert_array_equal(net.layers[1].weights, frozen)
        runs.append((net, hist))
    assert _engaged(runs[0][0])
    _assert_agree(*runs)


def test_sigmoid_out_of_exp_range_in_a_hidden_layer(native):
    """Pre-activations beyond exp's range go through libm in the kernel, and
    the run still matches the twin."""
    runs = []
    for backend in ("native", "numpy"):
        X = np.array([[0.0, 0.0], [1.0, 1.0], [800.0, -800.0]])
        net = cbp.Network(
            [
                cbp.Dense(2, 3, "sigmoid", weights=np.ones((2, 3)) * [[1], [-1]]),
                cbp.Dense(3, 1, "identity", seed=0),
            ],
            backend=backend,
        )
        net.fit(X, np.array([[0.0], [1.0], [0.5]]), epochs=10, lr=0.1)
        runs.append(net.parameters)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-12, atol=1e-15)
