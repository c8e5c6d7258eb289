"""The public API: layer views, copies, frozen layers, caches, input handling,
validation messages and divergence."""

import math

import numpy as np
import pytest

import cbp


def small_net(backend, loss="squared_error", out_act="identity", n_out=2, **kw):
    """A seeded 3-4-n_out network with biases."""
    layers = [cbp.Dense(3, 4, "tanh", seed=1), cbp.Dense(4, n_out, out_act, seed=2)]
    return cbp.Network(layers, loss=loss, backend=backend, **kw)


def data(n=5, n_out=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)), rng.standard_normal((n, n_out))


# ---------------------------------------------------------------------------
# Layer arrays are views into the network's buffers
# ---------------------------------------------------------------------------
def test_layer_arrays_are_views_into_flat_buffers(backend):
    """weights, bias, dweights, dbias share memory with parameters / gradients."""
    net = small_net(backend)
    first, second = net.layers
    for layer in net.layers:
        assert np.shares_memory(layer.weights, net.parameters)
        assert np.shares_memory(layer.bias, net.parameters)
        assert np.shares_memory(layer.dweights, net.gradients)
        assert np.shares_memory(layer.dbias, net.gradients)
    # documented layout: weights before bias, layer after layer
    flat = np.concatenate([first.weights.ravel(), first.bias, second.weights.ravel(), second.bias])
    np.testing.assert_array_equal(net.parameters, flat)
    assert net.parameters.dtype == np.float64 and net.parameters.flags.c_contiguous


def test_writes_are_seen_both_ways(backend):
    """Writing through a layer array shows in the flat buffer and vice versa."""
    net = small_net(backend)
    first, second = net.layers
    net.parameters[0] = 42.0
    assert first.weights[0, 0] == 42.0
    second.bias[1] = -7.0
    assert net.parameters[-1] == -7.0
    net.gradients[:] = 3.0
    assert np.all(first.dweights == 3.0) and np.all(second.dbias == 3.0)
    first.dbias[0] = 5.0
    assert net.gradients[first.weights.size] == 5.0


def test_forward_uses_values_written_through_views(backend):
    """The engine reads the shared buffer: a write changes the next forward."""
    layer = cbp.Dense(2, 1, "identity", weights=[[1.0], [2.0]], bias=[0.0])
    net = cbp.Network([layer], backend=backend)
    np.testing.assert_array_equal(net.forward([[1.0, 1.0]]), [[3.0]])
    net.layers[0].weights[1, 0] = 10.0
    np.testing.assert_array_equal(net.forward([[1.0, 1.0]]), [[11.0]])
    net.parameters[-1] = 0.5  # the bias
    np.testing.assert_array_equal(net.predict([[1.0, 1.0]]), [[11.5]])


def test_gradients_fill_layer_views(backend):
    """backward writes dweights/dbias through the gradients buffer."""
    net = cbp.Network(
        [cbp.Dense(2, 1, "identity", weights=[[1.0], [2.0]], bias=[0.5])],
        loss="half_squared_error",
        backend=backend,
    )
    net.forward([[1.0, 3.0]])  # output 7.5
    assert net.backward([[0.5]]) == pytest.approx(0.5 * 7.0**2)
    # dL/dW = x * (out - y), dL/db = out - y
    np.testing.assert_array_equal(net.layers[0].dweights, [[7.0], [21.0]])
    np.testing.assert_array_equal(net.layers[0].dbias, [7.0])
    np.testing.assert_array_equal(net.gradients, [7.0, 21.0, 7.0])


# ---------------------------------------------------------------------------
# Assigning weights
# ---------------------------------------------------------------------------
def test_weight_assignment_copies_and_keeps_the_view(backend):
    """layer.weights = W copies W in; the layer stays a view of parameters."""
    net = small_net(backend)
    layer = net.layers[0]
    W = np.arange(12.0).reshape(3, 4)
    layer.weights = W
    np.testing.assert_array_equal(layer.weights, W)
    assert not np.shares_memory(layer.weights, W)
    assert np.shares_memory(layer.weights, net.parameters)
    np.testing.assert_array_equal(net.parameters[:12], W.ravel())
    W[0, 0] = 99.0
    assert layer.weights[0, 0] == 0.0

    layer.bias = [1, 2, 3, 4]  # ints and lists are fine
    np.testing.assert_array_equal(net.parameters[12:16], [1.0, 2.0, 3.0, 4.0])


def test_weight_assignment_in_place(backend):
    """layer.weights[...] = W writes into the network's buffer."""
    net = small_net(backend)
    layer = net.layers[1]
    W = np.full((4, 2), 0.25)
    layer.weights[...] = W
    np.testing.assert_array_equal(layer.weights, W)
    np.testing.assert_array_equal(net.parameters[16:24], 0.25)


def test_weight_assignment_is_shape_checked(backend):
    """A wrong shape raises ValueError naming it, and changes nothing."""
    net = small_net(backend)
    layer = net.layers[0]
    before = net.parameters.copy()
    with pytest.raises(ValueError, match=r"weights must have shape \(3, 4\), got \(4, 3\)"):
        layer.weights = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\), got \(3,\)"):
        layer.bias = np.ones(3)
    with pytest.raises(TypeError, match="weights must hold real numbers"):
        layer.weights = np.full((3, 4), "a")
    with pytest.raises(ValueError, match="NaN or infinite"):
        layer.weights = np.full((3, 4), np.nan)
    np.testing.assert_array_equal(net.parameters, before)


def test_no_bias_without_use_bias(backend):
    """use_bias=False gives bias and dbias None and refuses a bias."""
    layer = cbp.Dense(2, 3, use_bias=False)
    assert layer.bias is None and layer.dbias is None
    with pytest.raises(ValueError, match="no bias"):
        layer.bias = [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="no bias"):
        cbp.Dense(2, 3, use_bias=False, bias=[0.0, 0.0, 0.0])
    net = cbp.Network([layer], backend=backend)
    assert layer.bias is None and layer.dbias is None
    assert net.parameters.shape == (6,)


# ---------------------------------------------------------------------------
# Frozen layers
# ---------------------------------------------------------------------------
def test_frozen_layer_is_never_updated(backend):
    """step, train_step and fit leave a trainable=False layer alone."""
    frozen = cbp.Dense(3, 4, "tanh", trainable=False, seed=1)
    head = cbp.Dense(4, 2, "identity", seed=2)
    net = cbp.Network([frozen, head], backend=backend)
    W0, b0, head0 = frozen.weights.copy(), frozen.bias.copy(), head.weights.copy()
    X, y = data()

    net.forward(X)
    net.backward(y)
    assert np.any(frozen.dweights != 0.0) and np.any(frozen.dbias != 0.0)
    net.step(0.1)
    net.train_step(X, y, lr=0.1)
    net.fit(X, y, epochs=5, lr=0.1, batch_size=2)

    np.testing.assert_array_equal(frozen.weights, W0)
    np.testing.assert_array_equal(frozen.bias, b0)
    assert not np.array_equal(head.weights, head0)


# ---------------------------------------------------------------------------
# predict and the forward cache
# ---------------------------------------------------------------------------
def test_predict_does_not_disturb_forward_cache(backend):
    """forward, predict(other), backward equals forward, backward."""
    X, y = data(5)
    X_other = data(7, seed=9)[0]

    plain = small_net(backend)
    plain.forward(X)
    loss_plain = plain.backward(y)

    mixed = small_net(backend)
    out = mixed.forward(X)
    prediction = mixed.predict(X_other)
    loss_mixed = mixed.backward(y)

    assert prediction.shape == (7, 2)
    assert loss_mixed == loss_plain
    np.testing.assert_array_equal(mixed.gradients, plain.gradients)
    np.testing.assert_array_equal(mixed.predict(X), out)


def test_forward_returns_a_new_array(backend):
    """The returned output is not overwritten by later passes."""
    net = small_net(backend)
    X, _ = data(5)
    out = net.forward(X)
    kept = out.copy()
    net.forward(X + 1.0)
    net.predict(X - 1.0)
    np.testing.assert_array_equal(out, kept)


# ---------------------------------------------------------------------------
# Inputs are never modified
# ---------------------------------------------------------------------------
def test_inputs_are_never_modified(backend):
    """No entry point writes to X, y, or the arrays given to Dense."""
    rng = np.random.default_rng(3)
    W1, b1 = rng.standard_normal((3, 4)), rng.standard_normal(4)
    W2, b2 = rng.standard_normal((4, 2)), rng.standard_normal(2)
    X, y = data(6)  # C-contiguous float64: the path that copies nothing
    originals = [A.copy() for A in (W1, b1, W2, b2, X, y)]

    layers = [
        cbp.Dense(3, 4, "relu", weights=W1, bias=b1),
        cbp.Dense(4, 2, "identity", weights=W2, bias=b2),
    ]
    net = cbp.Network(layers, backend=backend)
    net.forward(X)
    net.backward(y)
    net.step(0.01)
    net.train_step(X, y, lr=0.01)
    net.fit(X, y, epochs=3, lr=0.01, batch_size=4)
    net.fit(X, y, epochs=3, lr=0.01)
    net.predict(X)

    for A, A0 in zip((W1, b1, W2, b2, X, y), originals):
        np.testing.assert_array_equal(A, A0)
    assert not np.shares_memory(net.parameters, W1)


def test_read_only_inputs_are_accepted(backend):
    """Read-only X and y work everywhere (so nothing tries to write them)."""
    X, y = data(4)
    X.flags.writeable = False
    y.flags.writeable = False
    net = small_net(backend)
    net.forward(X)
    net.backward(y)
    net.train_step(X, y, lr=0.01)
    net.fit(X, y, epochs=2, lr=0.01, batch_size=3)
    net.predict(X)


def test_class_labels_are_not_modified(backend):
    """Integer labels for categorical cross-entropy stay as given."""
    net = small_net(backend, loss="categorical_crossentropy", out_act="softmax", n_out=3)
    X = data(4)[0]
    labels = np.array([0, 2, 1, 2])
    net.train_step(X, labels, lr=0.1)
    net.fit(X, labels, epochs=2, lr=0.1)
    np.testing.assert_array_equal(labels, [0, 2, 1, 2])


# ---------------------------------------------------------------------------
# Memory layouts and dtypes
# ---------------------------------------------------------------------------
def run_everything(backend, X, y):
    """Outputs of every entry point on a fresh network, for comparison."""
    net = small_net(backend)
    out = net.forward(X)
    loss = net.backward(y)
    grads = net.gradients.copy()
    step_loss = net.train_step(X, y, lr=0.05)
    hist = net.fit(X, y, epochs=3, lr=0.05, batch_size=2)
    return out, loss, grads, step_loss, hist["loss"], net.predict(X), net.parameters.copy()


def test_memory_layouts_give_identical_results(backend):
    """C-order, F-order and strided inputs give bit-identical results."""
    X, y = data(6)
    big_X = np.zeros((12, 6))
    big_X[::2, ::2] = X
    big_y = np.zeros((6, 4))
    big_y[:, 1::2] = y
    variants = [
        (X, y),
        (np.asfortranarray(X), np.asfortranarray(y)),
        (big_X[::2, ::2], big_y[:, 1::2]),
    ]
    assert not variants[1][0].flags.c_contiguous
    assert not variants[2][0].flags.c_contiguous and not variants[2][1].flags.c_contiguous
    expected = run_everything(backend, *variants[0])
    for Xv, yv in variants[1:]:
        for got, want in zip(run_everything(backend, Xv, yv), expected):
            np.testing.assert_array_equal(got, want)


def test_integer_inputs_are_accepted(backend):
    """Integer X (and y) give the same results as their float64 versions."""
    rng = np.random.default_rng(5)
    X_int = rng.integers(-3, 4, size=(6, 3))
    y_int = rng.integers(-2, 3, size=(6, 2))
    as_int = run_everything(backend, X_int, y_int)
    as_float = run_everything(backend, X_int.astype(np.float64), y_int.astype(np.float64))
    for got, want in zip(as_int, as_float):
        np.testing.assert_array_equal(got, want)
    small_net(backend).forward(X_int.astype(np.int32).tolist())  # plain lists too


# ---------------------------------------------------------------------------
# Bad inputs are rejected with a message that names the problem
# ---------------------------------------------------------------------------
def test_mismatched_shapes(backend):
    """Wrong X width, y rows, y columns and 1-D y for several outputs."""
    net = small_net(backend)
    X, y = data(4)
    with pytest.raises(ValueError, match="X has 2 columns, the network expects 3"):
        net.forward(X[:, :2])
    with pytest.raises(ValueError, match="X has 4 columns, the network expects 3"):
        net.train_step(np.ones((4, 4)), y)
    with pytest.raises(ValueError, match="X has 2 columns"):
        net.predict(X[:, :2])
    with pytest.raises(ValueError, match="X must be 2-D"):
        net.forward(X[0])
    net.forward(X)
    with pytest.raises(ValueError, match="y has 3 samples but X has 4"):
        net.backward(y[:3])
    with pytest.raises(ValueError, match="y has 3 columns but the network has 2 outputs"):
        net.backward(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"y has shape \(4,\) but the network has 2 outputs"):
        net.backward(np.ones(4))
    with pytest.raises(ValueError, match="y has 5 samples but X has 4"):
        net.fit(X, np.ones((5, 2)), epochs=1)
    with pytest.raises(ValueError, match="y has 3 samples but X has 4"):
        net.train_step(X, y[:3])


@pytest.mark.parametrize(
    "bad",
    [np.array([["a", "b", "c"]]), np.array([[1, None, 2]], dtype=object), np.ones((1, 3)) * 1j],
    ids=["str", "object", "complex"],
)
def test_non_numeric_dtypes(backend, bad):
    """Strings, objects and complex numbers are refused for X and y."""
    net = small_net(backend)
    X, y = data(1)
    with pytest.raises(TypeError, match="X must hold real numbers"):
        net.forward(bad)
    with pytest.raises(TypeError, match="X must hold real numbers"):
        net.predict(bad)
    with pytest.raises(TypeError, match="X must hold real numbers"):
        net.fit(bad, y, epochs=1)
    bad_y = np.resize(bad, (1, 2))
    with pytest.raises(TypeError, match="y must hold real numbers"):
        net.train_step(X, bad_y)
    net.forward(X)
    with pytest.raises(TypeError, match="y must hold real numbers"):
        net.backward(bad_y)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_inf(backend, value):
    """NaN or infinity in X or y is refused, naming the array."""
    net = small_net(backend)
    X, y = data(3)
    bad_X, bad_y = X.copy(), y.copy()
    bad_X[1, 2] = value
    bad_y[2, 0] = value
    for call in (net.forward, net.predict):
        with pytest.raises(ValueError, match="X contains NaN or infinite values"):
            call(bad_X)
    with pytest.raises(ValueError, match="X contains NaN or infinite values"):
        net.train_step(bad_X, y)
    with pytest.raises(ValueError, match="y contains NaN or infinite values"):
        net.train_step(X, bad_y)
    with pytest.raises(ValueError, match="y contains NaN or infinite values"):
        net.fit(X, bad_y, epochs=1)
    net.forward(X)
    with pytest.raises(ValueError, match="y contains NaN or infinite values"):
        net.backward(bad_y)


@pytest.mark.parametrize(
    "labels, message",
    [
        ([0, 1, 3], r"label 3, outside \[0, 3\)"),
        ([0, -1, 2], r"label -1, outside \[0, 3\)"),
        ([0.0, 1.5, 2.0], "whole numbers"),
        (np.eye(3) * -1.0, r"must lie in \[0, 1\]"),
    ],
    ids=["too-large", "negative", "non-integral", "negative-one-hot"],
)
def test_bad_class_labels(backend, labels, message):
    """Categorical cross-entropy labels must be whole numbers in range."""
    net = small_net(backend, loss="categorical_crossentropy", out_act="softmax", n_out=3)
    X = data(3)[0]
    with pytest.raises(ValueError, match=message):
        net.train_step(X, labels)
    with pytest.raises(ValueError, match=message):
        net.fit(X, labels, epochs=1)
    net.forward(X)
    with pytest.raises(ValueError, match=message):
        net.backward(labels)


def test_good_class_labels_equal_one_hot(backend):
    """Integer labels and their one-hot rows give the same loss and gradients."""
    X = data(3)[0]
    a = small_net(backend, loss="categorical_crossentropy", out_act="softmax", n_out=3)
    b = small_net(backend, loss="categorical_crossentropy", out_act="softmax", n_out=3)
    a.forward(X)
    b.forward(X)
    assert a.backward([2, 0, 1]) == b.backward(np.eye(3)[[2, 0, 1]])
    np.testing.assert_array_equal(a.gradients, b.gradients)


def test_empty_batch(backend):
    """A batch with no samples is refused."""
    net = small_net(backend)
    empty = np.empty((0, 3))
    for call in (net.forward, net.predict):
        with pytest.raises(ValueError, match="X is empty"):
            call(empty)
    with pytest.raises(ValueError, match="X is empty"):
        net.train_step(empty, np.empty((0, 2)))
    with pytest.raises(ValueError, match="X is empty"):
        net.fit(empty, np.empty((0, 2)), epochs=1)


def test_unknown_names(backend):
    """Unknown activation, loss and reduction names list the known ones."""
    with pytest.raises(ValueError, match="unknown activation 'relux'.*relu"):
        cbp.Dense(2, 2, "relux")
    with pytest.raises(ValueError, match="unknown loss 'mse'.*squared_error"):
        cbp.Network([cbp.Dense(2, 2)], loss="mse", backend=backend)
    with pytest.raises(ValueError, match="unknown reduction 'avg'.*mean"):
        cbp.Network([cbp.Dense(2, 2)], reduction="avg", backend=backend)
    with pytest.raises(TypeError, match="activation must be a string"):
        cbp.Dense(2, 2, None)


def test_dense_rejects_wrong_weight_shape():
    """Dense(weights=..., bias=...) checks shapes up front."""
    with pytest.raises(ValueError, match=r"weights must have shape \(2, 3\), got \(3, 2\)"):
        cbp.Dense(2, 3, weights=np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\), got \(2,\)"):
        cbp.Dense(2, 3, weights=np.ones((2, 3)), bias=np.ones(2))
    with pytest.raises(ValueError, match=r"weights must have shape \(2, 3\), got \(6,\)"):
        cbp.Dense(2, 3, weights=np.ones(6))


@pytest.mark.parametrize("lr", [0.0, -0.1])
def test_learning_rate_must_be_positive(backend, lr):
    """step, train_step and fit refuse a zero or negative learning rate."""
    net = small_net(backend)
    X, y = data(3)
    before = net.parameters.copy()
    net.forward(X)
    net.backward(y)
    with pytest.raises(ValueError, match="lr must be > 0"):
        net.step(lr)
    with pytest.raises(ValueError, match="lr must be > 0"):
        net.train_step(X, y, lr=lr)
    with pytest.raises(ValueError, match="lr must be > 0"):
        net.fit(X, y, epochs=1, lr=lr)
    np.testing.assert_array_equal(net.parameters, before)


def test_epochs_must_be_positive(backend):
    """fit refuses zero or negative epochs and a non-integer count."""
    net = small_net(backend)
    X, y = data(3)
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        net.fit(X, y, epochs=0)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        net.fit(X, y, epochs=-2)
    with pytest.raises(TypeError, match="epochs must be an integer"):
        net.fit(X, y, epochs=2.5)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        net.fit(X, y, epochs=1, batch_size=0)


# ---------------------------------------------------------------------------
# Call order and network construction
# ---------------------------------------------------------------------------
def test_backward_before_forward_raises(backend):
    """backward needs a forward first, also after fit."""
    net = small_net(backend)
    X, y = data(3)
    with pytest.raises(RuntimeError, match="forward"):
        net.backward(y)
    net.predict(X)  # predict leaves no cache behind
    with pytest.raises(RuntimeError, match="forward"):
        net.backward(y)


def test_layer_cannot_join_two_networks(backend):
    """A layer adopted by one network is refused by another."""
    layer = cbp.Dense(2, 2)
    cbp.Network([layer], backend=backend)
    with pytest.raises(ValueError, match="already belongs to a network"):
        cbp.Network([layer], backend=backend)
    shared = cbp.Dense(2, 2)
    with pytest.raises(ValueError, match="appears twice"):
        cbp.Network([shared, shared], backend=backend)


def test_rejected_network_does_not_adopt_its_layers(backend):
    """A network that fails to build leaves its layers free to join another."""
    a, b = cbp.Dense(2, 3), cbp.Dense(4, 1)
    with pytest.raises(ValueError):
        cbp.Network([a, b], backend=backend)
    with pytest.raises(ValueError):
        cbp.Network([a], loss="nope", backend=backend)
    cbp.Network([a], backend=backend)


def test_adjacent_widths_must_agree(backend):
    """Layer i's inputs must equal layer i-1's neurons."""
    with pytest.raises(ValueError, match="layer 1 takes 4 inputs but layer 0 gives 3"):
        cbp.Network([cbp.Dense(2, 3), cbp.Dense(4, 1)], backend=backend)
    with pytest.raises(ValueError, match="at least one layer"):
        cbp.Network([], backend=backend)
    with pytest.raises(TypeError, match="not a cbp layer"):
        cbp.Network([cbp.Dense(2, 2), "dense"], backend=backend)


def test_train_step_with_a_non_finite_X_drops_the_cached_forward(backend):
    """The fast path checks X as it copies it over the cached forward's input:
    a NaN in X is a ValueError that changes no parameter, and backward() then
    asks for a new forward() (on the network, not deep in the engine).  Found
    by test_fuzz_sequences in CI."""
    net = small_net(backend)
    X, y = data(4)
    net.forward(X)
    before = net.parameters.copy()
    bad = X.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="X"):
        net.train_step(bad, y, lr=0.01)
    np.testing.assert_array_equal(net.parameters, before)
    with pytest.raises(RuntimeError, match=r"call forward\(X\) before backward"):
        net.backward(y)
    net.forward(X)
    assert math.isfinite(net.backward(y))  # usable again


# ---------------------------------------------------------------------------
# Divergence
# ---------------------------------------------------------------------------
HUGE_LR = 1e300  # with targets ~1e10, lr * gradient overflows float64


def test_divergence_in_train_step_leaves_parameters_unchanged(backend):
    """An overflowing update raises DivergenceError and changes nothing."""
    net = small_net(backend)
    X, y = data(4)
    net.train_step(X, y, lr=0.01)  # an ordinary step first
    before = net.parameters.copy()
    with pytest.raises(cbp.DivergenceError):
        net.train_step(X, 1e10 * y, lr=HUGE_LR)
    assert np.all(np.isfinite(net.parameters))
    np.testing.assert_array_equal(net.parameters, before)
    assert issubclass(cbp.DivergenceError, ArithmeticError)


def test_divergence_in_step_and_fit(backend):
    """step and fit raise too; parameters stay finite."""
    net = small_net(backend)
    X, y = data(4)
    y = 1e10 * y
    net.forward(X)
    net.backward(y)
    before = net.parameters.copy()
    with pytest.raises(cbp.DivergenceError):
        net.step(HUGE_LR)
    np.testing.assert_array_equal(net.parameters, before)
    with pytest.raises(cbp.DivergenceError):
        net.fit(X, y, epochs=3, lr=HUGE_LR)  # the very first update overflows
    assert np.all(np.isfinite(net.parameters))
    np.testing.assert_array_equal(net.parameters, before)
    net.train_step(X, y, lr=1e-12)  # the network is still usable


def test_overflowing_loss_raises(backend):
    """A loss that overflows to infinity is divergence too."""
    net = cbp.Network([cbp.Dense(1, 1, "identity", weights=[[1.0]], bias=[0.0])], backend=backend)
    before = net.parameters.copy()
    with pytest.raises(cbp.DivergenceError):
        net.train_step([[1e200]], [[0.0]], lr=0.1)
    np.testing.assert_array_equal(net.parameters, before)
