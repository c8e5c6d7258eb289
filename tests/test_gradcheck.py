"""cbp.gradcheck: analytic gradients against central finite differences.

The networks keep away from kinks: inputs in [0.5, 1.5], each hidden unit's
weights all of one sign (at least 0.2 in size) with a bias of that sign, so
relu-like units are clearly on or clearly off; every weight and bias is at
least 0.05 from 0 for the L1 penalties.
"""

import pickle

import numpy as np
import pytest

import cbp
from cbp.gradcheck import GradcheckResult, gradcheck
from cbp.trace import trace, weight_names

HIDDEN = ["identity", "relu", "leaky_relu", "prelu", "elu", "sigmoid", "tanh"]
#: (loss, output activation, labels)
PAIRS = [
    ("squared_error", "identity", None),
    ("half_squared_error", "tanh", None),
    ("categorical_crossentropy", "softmax", "one-hot"),
    ("categorical_crossentropy", "softmax", "integer"),
    ("categorical_crossentropy", "sigmoid", "one-hot"),
    ("binary_crossentropy", "sigmoid", None),
    ("squared_error", "softmax", None),
]
PENALTIES = dict(weight_l1=0.01, weight_l2=0.02, bias_l1=0.005, bias_l2=0.01)


def away_from_kinks(rng, n_in, n_out):
    """Weights of one sign per column, |w| in [0.2, 0.8]; biases ±0.05."""
    sign = np.where(np.arange(n_out) % 2 == 0, 1.0, -1.0)
    W = rng.uniform(0.2, 0.8, (n_in, n_out)) * sign
    return W, 0.05 * sign


def make(backend, hidden, loss, out_act, reduction, seed=0, n=5):
    rng = np.random.default_rng(seed)
    W1, b1 = away_from_kinks(rng, 3, 4)
    W2 = rng.uniform(0.2, 0.8, (4, 3)) * rng.choice([-1.0, 1.0], (4, 3))
    b2 = np.array([0.1, -0.2, 0.15])
    net = cbp.Network(
        [
            cbp.Dense(3, 4, hidden, weights=W1, bias=b1, **PENALTIES),
            cbp.Dense(4, 3, out_act, weights=W2, bias=b2, **PENALTIES),
        ],
        loss=loss,
        reduction=reduction,
        backend=backend,
        check_output=False,
    )  # every output with every loss
    X = rng.uniform(0.5, 1.5, (n, 3))
    return net, X, rng


def targets(rng, loss, labels, n=5):
    if loss == "categorical_crossentropy":
        k = rng.integers(0, 3, n)
        return k if labels == "integer" else np.eye(3)[k]
    if loss == "binary_crossentropy":
        return rng.uniform(0.05, 0.95, (n, 3))
    return rng.normal(size=(n, 3))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss,out_act,labels", PAIRS, ids=lambda v: str(v))
@pytest.mark.parametrize("hidden", HIDDEN)
def test_every_activation_loss_and_reduction(backend, hidden, loss, out_act, labels, reduction):
    net, X, rng = make(backend, hidden, loss, out_act, reduction)
    y = targets(rng, loss, labels)
    result = gradcheck(net, X, y)
    assert result.max_rel_error < 1e-6, str(result)
    assert result.ok and result.passed(1e-6)
    assert len(result.checks) == 4  # weights and bias of both layers
    # the check is not vacuous: the gradients are there and sizeable
    assert max(np.abs(c.analytic).max() for c in result.checks) > 1e-3


@pytest.mark.parametrize("out_act", HIDDEN + ["softmax"])
def test_every_output_activation(backend, out_act):
    net, X, rng = make(backend, "tanh", "squared_error", out_act, "mean", seed=1)
    result = gradcheck(net, X, rng.normal(size=(5, 3)))
    assert result.max_rel_error < 1e-6, str(result)


def test_dropout_frozen_and_biasless_layers(backend):
    rng = np.random.default_rng(2)
    W1, b1 = away_from_kinks(rng, 3, 4)
    net = cbp.Network(
        [
            cbp.Dense(3, 4, "relu", weights=W1, bias=b1, weight_l1=0.01),
            cbp.Dropout(0.5),
            cbp.Dense(
                4,
                2,
                "sigmoid",
                use_bias=False,
                trainable=False,
                weights=rng.uniform(0.2, 0.8, (4, 2)),
                weight_l2=0.1,
            ),
        ],
        loss="binary_crossentropy",
        backend=backend,
    )
    result = gradcheck(net, rng.uniform(0.5, 1.5, (4, 3)), rng.uniform(0.1, 0.9, (4, 2)))
    assert result.max_rel_error < 1e-6, str(result)
    assert [(c.layer, c.name) for c in result.checks] == [
        (0, "weights"),
        (0, "bias"),
        (2, "weights"),
    ]
    with pytest.raises(KeyError):
        result.layer(2, "bias")


def test_numeric_gradient_matches_an_independent_difference(backend):
    """The numeric side is a real central difference: recompute one entry
    through the public API (predict + evaluate on a modified copy)."""
    net, X, rng = make(backend, "sigmoid", "squared_error", "identity", "mean")
    y = rng.normal(size=(5, 3))
    result = gradcheck(net, X, y)
    eps = 1e-6
    copy = pickle.loads(pickle.dumps(net))
    w = copy.layers[1].weights
    old = w[2, 1]
    w[2, 1] = old + eps
    up = copy.evaluate(X, y)["loss"]
    w[2, 1] = old - eps
    down = copy.evaluate(X, y)["loss"]
    expected = (up - down) / (2 * eps)
    assert result.layer(1, "weights").numeric[2, 1] == pytest.approx(expected, rel=1e-7)


def test_network_is_unchanged(backend):
    net, X, rng = make(backend, "elu", "categorical_crossentropy", "softmax", "mean")
    y = targets(rng, "categorical_crossentropy", "integer")
    net.fit(X, y, epochs=2, optimizer=cbp.optim.Adam(lr=0.01))
    net.forward(X[:2])
    before = (
        net.parameters.copy(),
        net.gradients.copy(),
        net.optimizer.state.copy(),
        net.optimizer.iterations,
        net.epochs_trained,
    )
    copy = pickle.loads(pickle.dumps(net))
    copy.forward(X[:2])
    expected = copy.backward(y[:2])
    gradcheck(net, X, y)
    np.testing.assert_array_equal(net.parameters, before[0])
    np.testing.assert_array_equal(net.gradients, before[1])
    np.testing.assert_array_equal(net.optimizer.state, before[2])
    assert (net.optimizer.iterations, net.epochs_trained) == before[3:]
    assert net.backward(y[:2]) == expected  # the cached forward is intact


# ---------------------------------------------------------------------------
# it can fail
# ---------------------------------------------------------------------------
def test_detects_a_perturbed_gradient(backend):
    net, X, rng = make(backend, "tanh", "half_squared_error", "identity", "sum")
    y = rng.normal(size=(5, 3))
    good = trace(net, X, y).gradients
    assert gradcheck(net, X, y, gradients=good).ok
    bad = good.copy()
    k = 20  # the 21st parameter: layer 1's fifth weight (after 12 + 4 of layer 0)
    bad[k] *= 1.001
    result = gradcheck(net, X, y, gradients=bad)
    assert not result.ok
    assert result.max_rel_error == pytest.approx(1e-3 / 1.001, rel=1e-3)
    assert weight_names(net)[k] == "w17"
    worst = max(result.checks, key=lambda c: c.max_rel_error)
    assert (worst.layer, worst.name, worst.worst) == (1, "weights", "w17")
    assert "MISMATCH" in str(result)


def test_detects_a_wrong_kernel(backend, monkeypatch):
    """A backend whose activation derivative is off by 1% fails the check."""
    net, X, rng = make(backend, "sigmoid", "squared_error", "identity", "mean")
    y = rng.normal(size=(5, 3))
    assert gradcheck(net, X, y).ok
    K = net._kernels
    right = K.activation_backward

    def wrong(act, Z, A, dA, out, alpha=0.0):
        right(act, Z, A, dA, out, alpha)
        out *= 1.01
        return out

    monkeypatch.setattr(K, "activation_backward", wrong)
    result = gradcheck(net, X, y)
    assert not result.ok
    assert result.layer(0, "weights").max_rel_error > 1e-3
    monkeypatch.undo()
    assert gradcheck(net, X, y).ok


def test_result_text_and_bad_arguments(backend):
    net, X, rng = make(backend, "tanh", "squared_error", "identity", "mean")
    y = rng.normal(size=(5, 3))
    result = gradcheck(net, X, y, eps=1e-5)
    assert isinstance(result, GradcheckResult)
    text = str(result)
    assert "eps 1e-05" in text and ": OK" in text
    kinds = [line.split()[1] for line in text.splitlines()[3:7]]
    assert kinds == ["weights", "bias", "weights", "bias"]
    assert repr(result).startswith("GradcheckResult(max_rel_error=")
    with pytest.raises(ValueError, match="gradients must have shape"):
        gradcheck(net, X, y, gradients=np.zeros(3))
    with pytest.raises(ValueError, match="eps"):
        gradcheck(net, X, y, eps=0.0)
    with pytest.raises(ValueError, match="columns"):
        gradcheck(net, X[:, :2], y)
