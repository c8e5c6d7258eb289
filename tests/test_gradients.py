"""Backpropagation against central finite differences, through the public API.

For every hidden activation x every output activation x every loss x both
reductions, on both backends, ``net.gradients`` after ``net.forward(X);
net.backward(y)`` must match the numerical derivative of the loss as a
function of the flat parameter vector.  The loss is written out again here
from its documented definition, so the check does not lean on cbp's own loss
code.
"""

import numpy as np
import pytest

import cbp
from cbp import _backend, _codes
from cbp import _reference as ref

H = 1e-6  # finite-difference step
RTOL = 1e-5
MARGIN = 1e-3  # smallest |pre-activation| allowed: far beyond what a step of H moves
N_IN, N_HIDDEN, N_OUT, BATCH = 3, 4, 3, 6

# One name per (code, default alpha): the aliases "linear" and "logistic" are
# the same functions as "identity" and "sigmoid"; "prelu" is leaky_relu with
# another default slope, so it stays.
ACTIVATIONS = ["identity", "relu", "leaky_relu", "prelu", "elu", "sigmoid", "tanh", "softmax"]
LOSSES = list(_codes.LOSSES)
REDUCTIONS = list(_codes.REDUCTIONS)
CROSS_ENTROPIES = ("categorical_crossentropy", "binary_crossentropy")


def activate(name, Z):
    """f(Z) with the default alpha, from the NumPy twin (only to place the data)."""
    out = np.empty_like(Z)
    return ref.activation_forward(
        _codes.ACTIVATIONS[name], Z, out, _codes.DEFAULT_ALPHA.get(name, 0.0)
    )


def loss_of(P, Y, loss, reduction):
    """The loss of predictions P against Y, as cbp.Network documents it: summed,
    or averaged over the elements (over the samples for categorical CE)."""
    if loss == "squared_error":
        per = (P - Y) ** 2
    elif loss == "half_squared_error":
        per = 0.5 * (P - Y) ** 2
    elif loss == "categorical_crossentropy":
        per = -np.sum(Y * np.log(P), axis=1)  # -log(p_true) for one-hot rows
    else:
        per = -(Y * np.log(P) + (1.0 - Y) * np.log(1.0 - P))
    return float(per.sum() if reduction == "sum" else per.mean())


def targets(rng, loss, soft=False):
    """Regression values, one-hot rows (probability rows with ``soft``) or
    soft and hard labels in [0, 1]."""
    if loss == "categorical_crossentropy":
        if soft:
            return rng.dirichlet(np.ones(N_OUT), BATCH)
        return np.eye(N_OUT)[rng.integers(0, N_OUT, BATCH)]
    if loss == "binary_crossentropy":
        Y = rng.random((BATCH, N_OUT))
        Y[0], Y[1] = 0.0, 1.0
        return Y
    return rng.normal(size=(BATCH, N_OUT))


def problem(hidden, output, loss, seed=0, soft=False):
    """X, Y and the layer values of a 2-layer network, drawn until no
    pre-activation is within MARGIN of 0 (the ReLU family's kink).

    The cross-entropies need predictions inside (0, 1), away from the 1e-7
    clipping.  Softmax and sigmoid give that by themselves; for the other
    output activations the output layer is squashed instead: b2 = 0.5 and
    |A1 @ W2| <= 0.25, so that Z2 lies in [0.25, 0.75], where identity, the
    ReLU family, ELU and tanh all map into (0.2, 0.8).  The same squashing is
    used for every output activation, so no pair has to be skipped.
    """
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        X = rng.normal(size=(BATCH, N_IN))
        W1, b1 = rng.normal(0.0, 0.8, (N_IN, N_HIDDEN)), rng.normal(0.0, 0.3, N_HIDDEN)
        Z1 = X @ W1 + b1
        A1 = activate(hidden, Z1)
        W2 = rng.normal(0.0, 0.8, (N_HIDDEN, N_OUT))
        if loss in CROSS_ENTROPIES:
            W2 *= 0.25 / (np.abs(A1) @ np.abs(W2)).max()
            b2 = np.full(N_OUT, 0.5)
        else:
            b2 = rng.normal(0.0, 0.3, N_OUT)
        Z2 = A1 @ W2 + b2
        if min(np.abs(Z1).min(), np.abs(Z2).min()) > MARGIN:
            P = activate(output, Z2)
            if loss in CROSS_ENTROPIES:
                assert ((P > 1e-4) & (P < 1 - 1e-4)).all(), "clipping would be active"
            return X, targets(rng, loss, soft), (W1, b1, W2, b2)
    raise AssertionError("no sample away from the kinks")  # pragma: no cover


def network(backend, hidden, output, loss, reduction, values, **penalties):
    W1, b1, W2, b2 = values
    layers = [
        cbp.Dense(N_IN, N_HIDDEN, hidden, weights=W1, bias=b1, **penalties),
        cbp.Dense(N_HIDDEN, N_OUT, output, weights=W2, bias=b2, **penalties),
    ]
    # every output with every loss: the unfused cross-entropy gradients too
    return cbp.Network(layers, loss=loss, reduction=reduction, backend=backend, check_output=False)


def numerical_gradient(f, params):
    """Central differences of f() with respect to the buffer params, in place."""
    grad = np.empty_like(params)
    for k in range(params.size):
        saved = params[k]
        params[k] = saved + H
        up = f()
        params[k] = saved - H
        down = f()
        params[k] = saved
        grad[k] = (up - down) / (2.0 * H)
    return grad


def assert_gradient(net, X, Y, loss_fn):
    """backward's loss equals loss_fn(predict(X)); its gradients equal the numerical ones."""
    net.forward(X)
    value = net.backward(Y)
    analytic = net.gradients.copy()
    assert value == pytest.approx(loss_fn(net.predict(X)), rel=1e-12, abs=1e-14)
    numeric = numerical_gradient(lambda: loss_fn(net.predict(X)), net.parameters)
    # Rounding in f(p +- H) costs about eps * |L| / H in the difference quotient.
    atol = 1e-8 * max(1.0, abs(value))
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=atol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("output", ACTIVATIONS)
@pytest.mark.parametrize("hidden", ACTIVATIONS)
def test_gradient_matches_finite_differences(backend, hidden, output, loss, reduction):
    """Every hidden x output activation x loss x reduction; L1/L2 off."""
    X, Y, values = problem(hidden, output, loss)
    net = network(backend, hidden, output, loss, reduction, values)
    assert_gradient(net, X, Y, lambda P: loss_of(P, Y, loss, reduction))


@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_soft_categorical_targets(backend, output):
    """Rows of probabilities are documented targets of categorical cross-entropy:
    the gradient must be that of the loss backward reports."""
    loss = "categorical_crossentropy"
    X, Y, values = problem("tanh", output, loss, soft=True)
    net = network(backend, "tanh", output, loss, "mean", values)
    net.forward(X)
    value = net.backward(Y)
    analytic = net.gradients.copy()
    numeric = numerical_gradient(lambda: net.evaluate(X, Y)["loss"], net.parameters)
    assert value == pytest.approx(net.evaluate(X, Y)["loss"], rel=1e-12)
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=1e-8)


PENALTIES = dict(weight_l1=0.03, weight_l2=0.02, bias_l1=0.01, bias_l2=0.04)


@pytest.mark.parametrize("loss", LOSSES)
def test_penalised_gradient_matches_finite_differences(backend, loss):
    """L1/L2 penalties on weights and biases add to the loss and its gradient
    (no parameter sits at 0, the L1 kink)."""
    X, Y, values = problem("tanh", "sigmoid", loss, seed=1)
    assert min(np.abs(v).min() for v in values) > MARGIN
    net = network(backend, "tanh", "sigmoid", loss, "mean", values, **PENALTIES)

    def penalised(P):
        W1, b1, W2, b2 = (a for layer in net.layers for a in (layer.weights, layer.bias))
        value = loss_of(P, Y, loss, "mean")
        for W, b in ((W1, b1), (W2, b2)):
            value += (
                PENALTIES["weight_l1"] * np.abs(W).sum() + PENALTIES["weight_l2"] * (W**2).sum()
            )
            value += PENALTIES["bias_l1"] * np.abs(b).sum() + PENALTIES["bias_l2"] * (b**2).sum()
        return value

    assert_gradient(net, X, Y, penalised)


FUSED = [("softmax", "categorical_crossentropy"), ("sigmoid", "binary_crossentropy")]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("act, loss", FUSED, ids=["softmax-cce", "sigmoid-bce"])
def test_fused_delta_equals_chained(backend, act, loss, reduction):
    """output_delta's fused formula equals loss_gradient followed by
    activation_backward, for one-hot targets with no clipping active."""
    kernels = _backend.module(backend)
    code, lcode, red = _codes.ACTIVATIONS[act], _codes.LOSSES[loss], _codes.REDUCTIONS[reduction]
    rng = np.random.default_rng(11)
    n, j = 9, 5
    Z = rng.normal(0.0, 2.0, (n, j))
    A = kernels.activation_forward(code, Z, np.empty((n, j)))
    assert ((A > _codes.CLIP_EPS) & (A < 1.0 - _codes.CLIP_EPS)).all(), "clipping would be active"
    Y = np.eye(j)[rng.integers(0, j, n)]

    fused = np.empty((n, j))
    value_fused = kernels.output_delta(code, lcode, Z, A, Y, fused, red)
    dA, chained = np.empty((n, j)), np.empty((n, j))
    value_chained = kernels.loss_gradient(lcode, A, Y, dA, red)
    kernels.activation_backward(code, Z, A, dA, chained)

    assert value_fused == pytest.approx(value_chained, rel=1e-14)
    # The chained softmax computes A_k * (-s / A_k + s) for the true class:
    # s * (A_k - 1) up to a few eps * s.
    s = 1.0 if reduction == "sum" else (1.0 / n if act == "softmax" else 1.0 / (n * j))
    np.testing.assert_allclose(fused, chained, rtol=1e-10, atol=8 * np.finfo(float).eps * s)
