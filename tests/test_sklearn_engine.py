"""Engine.sklearn_epoch / Engine.sklearn_loss_grad: the native core against its
NumPy twin (cbp._reference), call by call, and their input checks and
divergence handling.  The twin's numbers are checked against scikit-learn
itself by tests/test_sklearn_estimators.py (backend="numpy") and here."""

import itertools

import numpy as np
import pytest

import cbp
from cbp import _codes
from cbp import _reference as ref
from cbp._errors import DivergenceError
from cbp.network import Dense, Network

pytestmark = pytest.mark.skipif(not cbp.native_available(), reason="no native core")

HIDDEN = ["identity", "logistic", "tanh", "relu"]
LOSSES = {
    _codes.LOSS_SK_SQUARED: "identity",
    _codes.LOSS_SK_LOG: "softmax",
    _codes.LOSS_SK_BINARY_LOG: "logistic",
    _codes.LOSS_SK_POISSON: "identity",
}
N, D, K = 37, 5, 3


def _targets(loss, rng, n=N):
    if loss == _codes.LOSS_SK_SQUARED:
        return rng.normal(size=(n, K))
    if loss == _codes.LOSS_SK_LOG:
        return np.eye(K)[rng.integers(0, K, n)]
    if loss == _codes.LOSS_SK_BINARY_LOG:
        return rng.integers(0, 2, (n, K)).astype(float)
    return rng.poisson(1.5, (n, K)).astype(float)  # zeros included: xlogy(0, .) = 0


def _engines(loss, hidden, rng, scale=0.5):
    """A native Engine and its twin over equal copies of one network (5-6-4-3)."""
    sizes = [D, 6, 4, K]
    layers = [
        Dense(
            a,
            b,
            hidden if i < 2 else LOSSES[loss],
            weights=rng.normal(0, scale, (a, b)),
            bias=rng.normal(0, scale, b),
        )
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
    ]
    net = Network(layers, loss="half_squared_error")
    meta, floats = net._layer_table()
    P = net.parameters.size
    pn, pr = net.parameters.copy(), net.parameters.copy()
    native = cbp._core.Engine(meta, floats, pn, np.zeros(P), _codes.LOSS_HALF_SE, _codes.RED_MEAN)
    twin = ref.Engine(meta, floats, pr, np.zeros(P), _codes.LOSS_HALF_SE, _codes.RED_MEAN)
    return native, twin, pn, pr


OPTIMIZERS = {  # name: (kind, hyper entries)
    "sgd": (_codes.OPT_SGD, {_codes.HYPER_LEARNING_RATE: 0.05}),
    "momentum": (_codes.OPT_SGD, {_codes.HYPER_LEARNING_RATE: 0.05, _codes.HYPER_MOMENTUM: 0.9}),
    "nesterov": (
        _codes.OPT_SGD,
        {_codes.HYPER_LEARNING_RATE: 0.05, _codes.HYPER_MOMENTUM: 0.9, _codes.HYPER_NESTEROV: 1.0},
    ),
    "adam": (
        _codes.OPT_ADAM_SK,
        {
            _codes.HYPER_LEARNING_RATE: 0.01,
            _codes.HYPER_BETA1: 0.9,
            _codes.HYPER_BETA2: 0.999,
            _codes.HYPER_EPSILON: 1e-8,
        },
    ),
}


def _hyper(name):
    kind, entries = OPTIMIZERS[name]
    h = np.zeros(_codes.N_OPTIMIZER_HYPER)
    for col, v in entries.items():
        h[col] = v
    return kind, h


def _close(a, b, rtol=1e-12):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-14)


@pytest.mark.parametrize("loss,hidden,opt", list(itertools.product(LOSSES, HIDDEN, OPTIMIZERS)))
def test_epoch_native_matches_twin(loss, hidden, opt):
    seed = 100 * loss + 10 * HIDDEN.index(hidden) + list(OPTIMIZERS).index(opt)
    rng = np.random.default_rng(seed)
    native, twin, pn, pr = _engines(loss, hidden, rng)
    X = rng.normal(size=(N, D))
    Y = _targets(loss, rng)
    # weights and order on, off or mixed, varied over the cases
    sw = rng.uniform(0, 2, N) if seed % 2 else None
    order = rng.permutation(N) if seed % 3 else None
    kind, h = _hyper(opt)
    if loss == _codes.LOSS_SK_POISSON:  # exp outputs: a rate that keeps them finite
        h[_codes.HYPER_LEARNING_RATE] *= 0.1
    slots = 1 if kind == _codes.OPT_SGD else 2
    sn, sr = np.zeros(slots * pn.size), np.zeros(slots * pn.size)
    tn = tr = 3.0  # batches taken before: Adam's bias correction continues from t
    for epoch in range(2):  # the state carries over
        total_n, tn = native.sklearn_epoch(X, Y, sw, order, 8, loss, 1e-3, kind, h, sn, tn)
        total_r, tr = twin.sklearn_epoch(X, Y, sw, order, 8, loss, 1e-3, kind, h, sr, tr)
        _close(total_n, total_r)
        assert tn == tr == 3.0 + 5 * (epoch + 1)  # 37 rows in batches of 8: 5 batches
        _close(pn, pr)
        _close(sn, sr)
    assert not np.array_equal(pn, _engines(loss, hidden, np.random.default_rng(seed))[2])


def _loss_grad_pair(loss, hidden, seed, weighted, alpha=0.1):
    rng = np.random.default_rng(seed)
    sizes = [D, 6, 4, K]
    spec = [
        (a, b, hidden if i < 2 else LOSSES[loss], rng.normal(0, 0.5, (a, b)), rng.normal(0, 0.5, b))
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
    ]
    X = rng.normal(size=(N, D))
    Y = _targets(loss, rng)
    sw = rng.uniform(0, 2, N) if weighted else None
    out = []
    for backend in ("native", "numpy"):
        net = Network(
            [Dense(a, b, act, weights=W, bias=c) for a, b, act, W, c in spec],
            loss="half_squared_error",
            backend=backend,
        )
        value = net._engine.sklearn_loss_grad(X, Y, sw, loss, alpha)
        out.append((value, net.gradients.copy(), net))
    return out, X, Y, sw


@pytest.mark.parametrize("loss,hidden", list(itertools.product(LOSSES, HIDDEN)))
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_grad_fills_the_gradient_buffer(loss, hidden, weighted):
    (native, twin), X, Y, sw = _loss_grad_pair(loss, hidden, 3 * loss + 1, weighted)
    _close(native[0], twin[0])
    _close(native[1], twin[1])
    assert np.abs(native[1]).sum() > 0


def test_loss_grad_against_sklearn_backprop():
    """The gradient and loss of scikit-learn's own MLP _backprop (tanh, log loss, weighted)."""
    sknn = pytest.importorskip("sklearn.neural_network")
    (native, _), X, Y, sw = _loss_grad_pair(_codes.LOSS_SK_LOG, "tanh", 11, True, alpha=0.3)
    net = native[2]
    mlp = sknn.MLPClassifier(hidden_layer_sizes=(6, 4), activation="tanh", alpha=0.3)
    mlp.out_activation_ = "softmax"
    mlp.n_layers_ = 4
    coefs = [layer.weights.copy() for layer in net.layers]
    intercepts = [layer.bias.copy() for layer in net.layers]
    acts = [X] + [np.empty((N, c.shape[1])) for c in coefs]
    deltas = [np.empty_like(a) for a in acts[1:]]
    cg = [np.empty_like(c) for c in coefs]
    ig = [np.empty_like(b) for b in intercepts]
    mlp.coefs_, mlp.intercepts_ = coefs, intercepts
    value, cg, ig = mlp._backprop(X, Y, sw, acts, deltas, cg, ig)
    _close(native[0], value, rtol=1e-12)
    grads = net.gradients
    expected = np.concatenate([np.concatenate([g.ravel(), gb]) for g, gb in zip(cg, ig)])
    _close(grads, expected, rtol=1e-11)


def _setup(loss=_codes.LOSS_SK_SQUARED, seed=0):
    rng = np.random.default_rng(seed)
    native, twin, pn, pr = _engines(loss, "relu", rng)
    X = rng.normal(size=(N, D))
    Y = _targets(loss, rng)
    return native, twin, pn, pr, X, Y


BAD = {
    "order out of range": dict(order=np.arange(1, N + 1)),
    "negative order": dict(order=np.arange(N) - 1),
    "short order": dict(order=np.arange(N - 1)),
    "negative weight": dict(sw=np.r_[-1.0, np.ones(N - 1)]),
    "NaN weight": dict(sw=np.r_[np.nan, np.ones(N - 1)]),
    "short weights": dict(sw=np.ones(N - 1)),
    "X columns": dict(X=np.zeros((N, D + 1))),
    "Y rows": dict(Y=np.zeros((N - 1, K))),
    "X not contiguous": dict(X=np.zeros((D, N)).T),
    "X float32": dict(X=np.zeros((N, D), dtype=np.float32)),
    "X NaN": dict(X=np.full((N, D), np.nan)),
    "bad loss": dict(loss=_codes.LOSS_SE),
    "bad kind": dict(kind=_codes.OPT_ADAM),
    "state size": dict(state=np.zeros(3)),
    "batch_size 0": dict(batch_size=0),
    "hyper NaN": dict(hyper=np.full(_codes.N_OPTIMIZER_HYPER, np.nan)),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("which", ["native", "twin"])
def test_bad_input_is_refused_before_the_native_call(case, which):
    native, twin, pn, pr, X, Y = _setup()
    engine, params = (native, pn) if which == "native" else (twin, pr)
    kind, h = _hyper("sgd")
    args = dict(
        X=X,
        Y=Y,
        sw=None,
        order=None,
        batch_size=8,
        loss=_codes.LOSS_SK_SQUARED,
        alpha=0.0,
        kind=kind,
        hyper=h,
        state=np.zeros(params.size),
        t=0.0,
    )
    args.update(BAD[case])
    before = params.copy()
    with pytest.raises(ValueError, match="sklearn_epoch"):
        engine.sklearn_epoch(**args)
    np.testing.assert_array_equal(params, before)


@pytest.mark.parametrize("which", ["native", "twin"])
@pytest.mark.parametrize("what", ["loss", "update"])
def test_divergence_leaves_the_last_finite_values(which, what):
    native, twin, pn, pr, X, Y = _setup()
    engine, params = (native, pn) if which == "native" else (twin, pr)
    kind, h = _hyper("adam")
    state = np.zeros(2 * params.size)
    # one good epoch first, so "the last finite values" are not the initial ones
    engine.sklearn_epoch(X, Y, None, None, 8, _codes.LOSS_SK_SQUARED, 0.0, kind, h, state, 0.0)
    before, state_before = params.copy(), state.copy()
    if what == "loss":  # (y - p)**2 overflows on the first batch
        Y = np.full_like(Y, 1e200)
    else:  # at t = 1, lr sqrt(1 - b2) / (1 - b1) overflows: the step is infinite
        h[_codes.HYPER_LEARNING_RATE] = 1e308
    with pytest.raises(DivergenceError, match="last finite values"):
        engine.sklearn_epoch(X, Y, None, None, 8, _codes.LOSS_SK_SQUARED, 0.0, kind, h, state, 0.0)
    np.testing.assert_array_equal(params, before)
    np.testing.assert_array_equal(state, state_before)


def test_estimator_divergence_is_sklearns_value_error():
    pytest.importorskip("sklearn")
    X = np.random.default_rng(0).normal(size=(40, 3))
    y = X.sum(axis=1)
    reg = cbp.MLPRegressor(
        hidden_layer_sizes=(4,), learning_rate_init=1e308, max_iter=3, random_state=0
    )
    with pytest.raises(ValueError, match="non-finite parameter weights"):
        reg.fit(X, y)
    assert all(np.isfinite(w).all() for w in reg.coefs_ + reg.intercepts_)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_whole_runs_native_equal_numpy_backend(solver):
    """Ten epochs through Engine.sklearn_epoch and its twin give the same fit."""
    pytest.importorskip("sklearn")
    import warnings

    from sklearn.datasets import load_iris
    from sklearn.exceptions import ConvergenceWarning

    X, y = load_iris(return_X_y=True)
    fits = []
    for backend in ("native", "numpy"):
        clf = cbp.MLPClassifier(
            (8, 5),
            solver=solver,
            activation="tanh",
            batch_size=16,
            max_iter=10,
            momentum=0.8,
            random_state=1,
            backend=backend,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits.append(clf.fit(X, y))
    a, b = fits
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-9)
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-12)
