"""fit()'s blocked whole-epoch run on the row-major path
(src/_blk_epochs_body.h, src/_engine_blk.pxi).

A full batch in order with plain SGD on two dense layers (at most 4 inputs
and 4 outputs, the hidden layer ReLU or sigmoid, the output softmax under
categorical cross-entropy or the identity under a squared error) runs its
epochs there, its rows a block at a time; ``cbp._core._blk_epochs_path``
turns it off.  Its gradients are summed over the rows in another order than
the general passes sum them, so every run here is compared with the same
run on the general passes to rounding (rtol 1e-12 over a few epochs), and
over long runs with the general passes and the NumPy twin to 1e-9.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cbp
from cbp._errors import DivergenceError

SPIRAL = cbp.datasets.spiral_data(100, 3)


@pytest.fixture
def core(native_core):
    """The compiled module, the blocked run on, the SIMD table restored after."""
    saved, saved_simd = native_core._blk_epochs_path(True), native_core._simd()
    yield native_core
    native_core._blk_epochs_path(saved)
    native_core._simd(saved_simd)


def _net(
    ni,
    nh,
    no,
    hidden="relu",
    out="softmax",
    loss=None,
    bias=True,
    backend="native",
    reduction="mean",
):
    loss = loss or ("categorical_crossentropy" if out == "softmax" else "squared_error")
    return cbp.Network(
        [
            cbp.Dense(ni, nh, hidden, seed=1, use_bias=bias),
            cbp.Dense(nh, no, out, seed=2, use_bias=bias),
        ],
        loss=loss,
        backend=backend,
        reduction=reduction,
    )


def _data(ni, no, n, out, seed=0):
    rng = np.random.default_rng([seed, ni, no, n])
    X = rng.standard_normal((n, ni))
    if out == "softmax":
        return X, rng.integers(0, no, n)
    return X, rng.standard_normal((n, no))


def _fit(core, on, net, X, y, epochs=5, lr=0.1, **kw):
    if core is not None:
        core._blk_epochs_path(on)
    hist = net.fit(X, y, epochs=epochs, lr=lr, batch_size=None, **kw)
    return net, hist


def _tables(core):
    return core._simd_levels()


def _close(got, ref, rtol=1e-12):
    (ng, hg), (nr, hr) = got, ref
    assert set(hg) == set(hr)
    for key in hg:
        np.testing.assert_allclose(hg[key], hr[key], rtol=rtol, atol=0, err_msg=key)
    np.testing.assert_allclose(ng.parameters, nr.parameters, rtol=rtol, atol=1e-15)
    np.testing.assert_allclose(ng.gradients, nr.gradients, rtol=1e-9, atol=1e-15)
    assert ng.epochs_trained == nr.epochs_trained


# ---------------------------------------------------------------------------
# Which fits take the run
# ---------------------------------------------------------------------------
def test_spiral_takes_the_run(core):
    net, hist = _fit(core, True, _net(2, 64, 3), *SPIRAL, epochs=7)
    assert net._engine.blk_epochs == 7 and net._engine.threads_used == 1
    assert np.isfinite(hist["accuracy"]).all()
    net, _ = _fit(core, False, _net(2, 64, 3), *SPIRAL, epochs=7)
    assert net._engine.blk_epochs == 0


@pytest.mark.parametrize(
    "make, kw",
    [
        (lambda: _net(2, 64, 3), dict(shuffle=True)),
        (lambda: _net(2, 64, 3), dict(batch_size=100)),
        (lambda: _net(2, 64, 3), dict(validation_data=(SPIRAL[0][:10], SPIRAL[1][:10]))),
        (lambda: _net(2, 64, 3), dict(schedule=cbp.schedules.StepLR(2, 0.5))),
        (lambda: _net(5, 8, 3), {}),  # more inputs than the run takes
        (lambda: _net(2, 8, 5), {}),  # more outputs
        (lambda: _net(2, 8, 3, hidden="tanh"), {}),
        (lambda: _net(2, 8, 3, out="softmax", loss="squared_error"), {}),
        (lambda: _net(2, 8, 1, out="sigmoid", loss="binary_crossentropy"), {}),
        (
            lambda: cbp.Network(
                [cbp.Dense(2, 8, "relu"), cbp.Dense(8, 8, "relu"), cbp.Dense(8, 3, "softmax")],
                loss="categorical_crossentropy",
            ),
            {},
        ),
    ],
)
def test_which_fits_do_not(core, make, kw):
    core._blk_epochs_path(True)
    X, y = SPIRAL
    if make().layers[0].n_inputs != 2:
        X = np.random.default_rng(0).standard_normal((300, make().layers[0].n_inputs))
    if make().loss == "binary_crossentropy":
        y = (y == 1).astype(float)
    elif make().layers[-1].n_neurons != 3:
        y = y % make().layers[-1].n_neurons
    elif make().loss == "squared_error":
        y = np.eye(3)[y]
    net = make()
    net.fit(X, y, epochs=2, lr=0.05, batch_size=kw.pop("batch_size", None), **kw)
    assert net._engine.blk_epochs == 0


def test_a_frozen_layer_or_an_optimizer_is_not_taken(core):
    net = _net(2, 16, 3)
    net.layers[0].trainable = False
    _fit(core, True, net, *SPIRAL, epochs=2)
    assert net._engine.blk_epochs == 0
    net = _net(2, 16, 3)
    net.fit(*SPIRAL, epochs=2, optimizer=cbp.optim.Adam(lr=0.01), batch_size=None)
    assert net._engine.blk_epochs == 0


def test_too_few_rows_are_not_taken(core):
    X, y = _data(2, 3, 15, "softmax")
    net, _ = _fit(core, True, _net(2, 8, 3), X, y)
    assert net._engine.blk_epochs == 0
    X, y = _data(2, 3, 16, "softmax")
    net, _ = _fit(core, True, _net(2, 8, 3), X, y)
    assert net._engine.blk_epochs == 5


# ---------------------------------------------------------------------------
# The numbers
# ---------------------------------------------------------------------------
OUTPUTS = [
    ("softmax", "categorical_crossentropy"),
    ("identity", "squared_error"),
    ("identity", "half_squared_error"),
]
SIDES = [(2, 64, 3), (1, 7, 1), (3, 9, 4), (4, 1, 2), (2, 33, 2)]


@pytest.mark.parametrize("hidden", ["relu", "sigmoid"])
@pytest.mark.parametrize(
    "out, loss, ni, nh, no",
    [(*o, *w) for o in OUTPUTS for w in SIDES if not (o[0] == "softmax" and w[2] == 1)],
)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_matches_the_general_passes(core, hidden, out, loss, ni, nh, no, bias):
    X, y = _data(ni, no, 37, out)
    for table in _tables(core):
        core._simd(table)
        got = _fit(core, True, _net(ni, nh, no, hidden, out, loss, bias), X, y)
        ref = _fit(core, False, _net(ni, nh, no, hidden, out, loss, bias), X, y)
        assert got[0]._engine.blk_epochs == 5 and ref[0]._engine.blk_epochs == 0
        _close(got, ref)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("n", [16, 17, 31, 300])
def test_rows_and_reductions(core, reduction, n):
    X, y = SPIRAL[0][:n], SPIRAL[1][:n]
    got = _fit(core, True, _net(2, 64, 3, reduction=reduction), X, y, lr=0.01)
    ref = _fit(core, False, _net(2, 64, 3, reduction=reduction), X, y, lr=0.01)
    assert got[0]._engine.blk_epochs == 5
    _close(got, ref)


def test_soft_labels(core):
    # rows of Y that are not one-hot: the log of every class's probability
    X = SPIRAL[0]
    Y = np.random.default_rng(3).dirichlet([1.0, 1.0, 1.0], len(X))
    got = _fit(core, True, _net(2, 16, 3), X, Y)
    ref = _fit(core, False, _net(2, 16, 3), X, Y)
    assert got[0]._engine.blk_epochs == 5
    _close(got, ref)


def test_spiral_long_run_matches_the_general_passes_and_the_twin(core):
    # tutorial 003's network and data, 300 epochs at lr 0.5
    got = _fit(core, True, _net(2, 64, 3), *SPIRAL, epochs=300, lr=0.5)
    ref = _fit(core, False, _net(2, 64, 3), *SPIRAL, epochs=300, lr=0.5)
    twin = _fit(None, None, _net(2, 64, 3, backend="numpy"), *SPIRAL, epochs=300, lr=0.5)
    assert got[0]._engine.blk_epochs == 300
    for other in (ref, twin):
        np.testing.assert_allclose(got[1]["loss"], other[1]["loss"], rtol=1e-9)
        np.testing.assert_allclose(got[1]["accuracy"], other[1]["accuracy"], rtol=0)
        np.testing.assert_allclose(got[0].parameters, other[0].parameters, rtol=1e-9, atol=1e-12)
    assert got[1]["loss"][-1] < got[1]["loss"][0]


@settings(max_examples=25, deadline=None)
@given(
    ni=st.integers(1, 4),
    nh=st.integers(1, 20),
    no=st.integers(1, 4),
    n=st.integers(33, 90),  # (32 rows or fewer of widths up to 4: the feature-major passes)
    hidden=st.sampled_from(["relu", "sigmoid"]),
    kind=st.sampled_from(["softmax", "identity"]),
    bias=st.booleans(),
)
def test_property_any_thin_network(native_core, ni, nh, no, n, hidden, kind, bias):
    if kind == "softmax" and no == 1:
        no = 2
    X, y = _data(ni, no, n, kind, seed=n)
    saved = native_core._blk_epochs_path()
    try:
        got = _fit(native_core, True, _net(ni, nh, no, hidden, kind, bias=bias), X, y, epochs=3)
        ref = _fit(native_core, False, _net(ni, nh, no, hidden, kind, bias=bias), X, y, epochs=3)
    finally:
        native_core._blk_epochs_path(saved)
    assert got[0]._engine.blk_epochs == 3
    _close(got, ref)


def test_sigmoids_past_exp_range(core):
    # hidden pre-activations past -708 and 709: libm's exp for those lanes
    X = np.tile(np.array([[800.0], [-800.0], [0.3], [-0.2]]), (10, 1))
    y = np.arange(40) % 2
    got = _fit(core, True, _net(1, 3, 2, "sigmoid"), X, y, lr=1e-3)
    ref = _fit(core, False, _net(1, 3, 2, "sigmoid"), X, y, lr=1e-3)
    assert got[0]._engine.blk_epochs == 5
    _close(got, ref)


def test_the_log_is_within_one_ulp_of_libm(core):
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            np.exp(rng.uniform(np.log(1e-7), 0.0, 100_000)),
            [1e-7, 1 - 1e-7, 0.5, np.sqrt(0.5), np.nextafter(np.sqrt(0.5), 1.0), 0.25],
            [1e-9, 0.0, 1.0, 2.0, 1e300],  # clipped to [1e-7, 1 - 1e-7]
        ]
    )
    ref = np.log(np.clip(x, 1e-7, 1 - 1e-7))
    for table in _tables(core):
        core._simd(table)
        for k in (len(x), 7, 1):  # (and the tails)
            got = core._blk_log(x[:k], np.empty(k))
            ulp = np.abs(got - ref[:k]) / np.spacing(np.abs(ref[:k]))
            assert ulp.max() <= 1.0, table


# ---------------------------------------------------------------------------
# Divergence, the clock, Ctrl-C
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("lr", [50.0, 1e6, 1e300])
def test_divergence_matches_the_general_passes(core, lr):
    X, y = _data(2, 1, 40, "identity")
    X = X * 30.0
    runs = []
    for on in (True, False):
        core._blk_epochs_path(on)
        net = _net(2, 8, 1, "relu", "identity")
        with pytest.raises(DivergenceError) as info:
            net.fit(X, y, epochs=50, lr=lr, batch_size=None)
        runs.append((net, info.value))
    (a, ea), (b, eb) = runs
    assert a.epochs_trained == b.epochs_trained == ea.epoch - 1 == eb.epoch - 1
    np.testing.assert_allclose(a.parameters, b.parameters, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(ea.history["loss"], eb.history["loss"], rtol=1e-12)


def test_results_do_not_depend_on_how_the_clock_splits_the_run(core, native_core):
    ref = _fit(core, True, _net(2, 64, 3), *SPIRAL, epochs=40)
    saved = native_core._max_stride(1)  # a native call an epoch
    try:
        got = _fit(core, True, _net(2, 64, 3), *SPIRAL, epochs=40)
    finally:
        native_core._max_stride(saved)
    assert got[0]._engine.blk_epochs == 40
    assert got[0].parameters.tobytes() == ref[0].parameters.tobytes()
    for key in ref[1]:
        assert got[1][key].tobytes() == ref[1][key].tobytes(), key


def test_ctrl_c_leaves_the_last_completed_epoch(interrupted_fit):
    setup = """
        X, y = cbp.datasets.spiral_data(100, 3)

        def make():
            return cbp.Network(
                [cbp.Dense(2, 64, "relu", seed=1), cbp.Dense(64, 3, "softmax", seed=2)],
                loss="categorical_crossentropy",
            )
    """
    interrupted_fit(setup, "dict(lr=0.05, batch_size=None)", "blk_epochs")
