"""The seed tutorials (/work/shared/seeds/) as executable specifications.

Every expected number comes either from the seed text itself (its printed
output or its hand-worked solution) or from the seed's own loop re-typed here
in plain float64 NumPy as an independent reference.  cbp is driven through the
public API only.
"""

import numpy as np
import pytest

import cbp

TIGHT = 1e-12


def assert_close(actual, expected, rtol=TIGHT, atol=0.0):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------
# Seed 000: one ReLU hidden node, one linear output, per-example updates
# ---------------------------------------------------------------------------
SEED000_DATA = [(2.0, 2.0), (3.0, 3.0), (4.0, 4.0)]


def seed000_step(w, b, v, c, x, y_target, learning_rate):
    """One update exactly as seed 000 writes it; returns (w, b, v, c, cost)."""
    z = w * x + b
    h = np.maximum(0, z)
    y = v * h + c
    cost = 0.5 * (y - y_target) ** 2
    dJ_dy = y - y_target
    dJ_dv = dJ_dy * h
    dJ_dc = dJ_dy
    dJ_dh = dJ_dy * v
    dJ_dz = dJ_dh if z > 0 else 0
    dJ_dw = dJ_dz * x
    dJ_db = dJ_dz
    v -= learning_rate * dJ_dv
    c -= learning_rate * dJ_dc
    w -= learning_rate * dJ_dw
    b -= learning_rate * dJ_db
    return float(w), float(b), float(v), float(c), float(cost)


def seed000_net(backend):
    hidden = cbp.Dense(1, 1, "relu", weights=[[0.5]], bias=[0.2])
    output = cbp.Dense(1, 1, "identity", weights=[[0.3]], bias=[0.1])
    net = cbp.Network([hidden, output], loss="half_squared_error", backend=backend)
    return net, hidden, output


def seed000_params(hidden, output):
    return (
        hidden.weights[0, 0],
        hidden.bias[0],
        output.weights[0, 0],
        output.bias[0],
    )


def test_seed000_one_train_step(backend):
    """One train_step on (2, 2) gives the seed's printed parameters."""
    net, hidden, output = seed000_net(backend)
    loss = net.train_step([[2.0]], [[2.0]], lr=0.1)
    w, b, v, c = seed000_params(hidden, output)

    # printed by the seed (these are Python reprs, i.e. the full float)
    assert w == pytest.approx(0.5924, abs=TIGHT)
    assert b == pytest.approx(0.2462, abs=TIGHT)
    assert v == pytest.approx(0.4848, abs=TIGHT)
    assert c == pytest.approx(0.254, abs=TIGHT)

    # the seed's own loop, recomputed
    rw, rb, rv, rc, rcost = seed000_step(0.5, 0.2, 0.3, 0.1, 2.0, 2.0, 0.1)
    assert_close([w, b, v, c], [rw, rb, rv, rc])
    assert loss == pytest.approx(rcost, rel=TIGHT)


def test_seed000_per_example_training_matches_seed_loop(backend):
    """fit(batch_size=1) is the seed's per-example loop, epoch after epoch."""
    epochs, lr = 20, 0.1
    net, hidden, output = seed000_net(backend)
    X = np.array([[x] for x, _ in SEED000_DATA])
    y = np.array([[t] for _, t in SEED000_DATA])
    hist = net.fit(X, y, epochs=epochs, lr=lr, batch_size=1)

    w, b, v, c = 0.5, 0.2, 0.3, 0.1
    epoch_losses = []
    for _ in range(epochs):
        costs = []
        for x, y_target in SEED000_DATA:
            w, b, v, c, cost = seed000_step(w, b, v, c, x, y_target, lr)
            costs.append(cost)
        epoch_losses.append(np.mean(costs))

    assert hist["loss"].shape == (epochs,)
    assert hist["loss"].dtype == np.float64
    assert_close(hist["loss"], epoch_losses)
    assert_close(seed000_params(hidden, output), [w, b, v, c])


# ---------------------------------------------------------------------------
# Seed 001: 2-2-1 ReLU network, squared error, LR 0.01
# ---------------------------------------------------------------------------
# node1 = relu(input1*w1 + input2*w3 + bias1), node2 = relu(input1*w2 + input2*w4
# + bias2), node3 = relu(node1*w5 + node2*w6 + bias3).  With W of shape
# (n_inputs, n_neurons), W[i, j] links input i to neuron j, so W1 = [[w1, w2],
# [w3, w4]] and W2 = [[w5], [w6]].
W1, W2, W3, W4, W5, W6 = 1.0, 0.5, 1.0, -0.5, 1.0, 1.0
BIAS1, BIAS2, BIAS3 = 0.5, 0.0, 0.5
SEED001_W1 = [[W1, W2], [W3, W4]]
SEED001_W2 = [[W5], [W6]]
SEED001_X = [[1.0, 0.0]]  # input1 = 1, input2 = 0
SEED001_Y = [[2.0]]  # true_value


def seed001_net(backend):
    hidden = cbp.Dense(2, 2, "relu", weights=SEED001_W1, bias=[BIAS1, BIAS2])
    output = cbp.Dense(2, 1, "relu", weights=SEED001_W2, bias=[BIAS3])
    return cbp.Network([hidden, output], loss="squared_error", backend=backend)


def test_seed001_forward_and_loss(backend):
    """Node outputs 1.5, 0.5, 2.5 and loss 0.25, as printed."""
    first = cbp.Network(
        [cbp.Dense(2, 2, "relu", weights=SEED001_W1, bias=[BIAS1, BIAS2])], backend=backend
    )
    np.testing.assert_array_equal(first.forward(SEED001_X), [[1.5, 0.5]])

    net = seed001_net(backend)
    np.testing.assert_array_equal(net.forward(SEED001_X), [[2.5]])
    assert net.backward(SEED001_Y) == pytest.approx(0.25, abs=TIGHT)


def test_seed001_gradients_and_one_step(backend):
    """Output-layer gradients [1.5, 0.5], 1.0 and the updated weights."""
    net = seed001_net(backend)
    hidden, output = net.layers
    net.forward(SEED001_X)
    net.backward(SEED001_Y)
    assert_close(output.dweights, [[1.5], [0.5]])  # deriv_L_w5, deriv_L_w6
    assert_close(output.dbias, [1.0])  # deriv_L_b3
    net.step(0.01)

    # printed by the seed
    assert output.weights[0, 0] == pytest.approx(0.985, abs=TIGHT)  # w5
    assert output.weights[1, 0] == pytest.approx(0.995, abs=TIGHT)  # w6
    assert output.bias[0] == pytest.approx(0.49, abs=TIGHT)  # bias3
    assert hidden.weights[0, 0] == pytest.approx(0.99, abs=TIGHT)  # w1
    assert hidden.weights[0, 1] == pytest.approx(0.49, abs=TIGHT)  # w2
    assert hidden.weights[1, 0] == pytest.approx(1.0, abs=TIGHT)  # w3
    # Not printed; by the seed's rules, with err = 2 * (2.5 - 2) = 1:
    #   dL/dw4    = err * w6 * relu'(0.5) * input2 = 0        -> w4 stays -0.5
    #   dL/dbias1 = err * w5 * relu'(1.5) * 1      = 1        -> 0.5 - 0.01 = 0.49
    #   dL/dbias2 = err * w6 * relu'(0.5) * 1      = 1        -> 0 - 0.01 = -0.01
    assert hidden.weights[1, 1] == pytest.approx(-0.5, abs=TIGHT)  # w4
    assert hidden.bias[0] == pytest.approx(0.49, abs=TIGHT)  # bias1
    assert hidden.bias[1] == pytest.approx(-0.01, abs=TIGHT)  # bias2


# ---------------------------------------------------------------------------
# Seed 002: the worked exercise, no biases, ReLU everywhere, half squared error
# ---------------------------------------------------------------------------
# x3 = x1*w13 + x2*w23, x4 = x1*w14 + x2*w24, x5 = y3*w35 + y4*w45, so
# W1 = [[w13, w14], [w23, w24]] and W2 = [[w35], [w45]].
def seed002_net(backend):
    hidden = cbp.Dense(2, 2, "relu", use_bias=False, weights=[[2.0, 1.0], [-3.0, 4.0]])
    output = cbp.Dense(2, 1, "relu", use_bias=False, weights=[[2.0], [-1.0]])
    return cbp.Network([hidden, output], loss="half_squared_error", backend=backend)


def test_seed002_exercise(backend):
    """Output 10, loss 50, gradients 50, 0, 20, -20, 0, 0, and the new weights."""
    net = seed002_net(backend)
    hidden, output = net.layers
    X, y = [[1.0, -1.0]], [[0.0]]
    np.testing.assert_array_equal(net.forward(X), [[10.0]])
    assert net.backward(y) == 50.0

    # dLoss/dw35 = 50, dw45 = 0, dw13 = 20, dw23 = -20, dw14 = 0, dw24 = 0
    np.testing.assert_array_equal(output.dweights, [[50.0], [0.0]])
    np.testing.assert_array_equal(hidden.dweights, [[20.0, 0.0], [-20.0, 0.0]])

    net.step(0.1)
    w13, w14 = hidden.weights[0]
    w23, w24 = hidden.weights[1]
    w35, w45 = output.weights[:, 0]
    assert w13 == pytest.approx(0.0, abs=TIGHT)
    assert w23 == pytest.approx(-1.0, abs=TIGHT)
    assert w14 == pytest.approx(1.0, abs=TIGHT)
    assert w24 == pytest.approx(4.0, abs=TIGHT)
    assert w35 == pytest.approx(-3.0, abs=TIGHT)
    assert w45 == pytest.approx(-1.0, abs=TIGHT)


def test_seed002_train_step_returns_loss_before_update(backend):
    """train_step is forward + backward + step and returns the loss 50."""
    net = seed002_net(backend)
    assert net.train_step([[1.0, -1.0]], [[0.0]], lr=0.1) == 50.0
    assert_close(net.parameters, [0.0, 1.0, -1.0, 4.0, -3.0, -1.0], atol=TIGHT)


# ---------------------------------------------------------------------------
# Seed 003, part 1: a single ReLU neuron, loss = output**2
# ---------------------------------------------------------------------------
# The notebook ran after nnfs.init(), which makes np.dot round its result to
# float32; only the digits that survive that rounding are matched against
# its printed output.  The float64 trajectory is checked against the loop
# below instead.
NEURON_W = np.array([-3.0, -1.0, 2.0])
NEURON_B = 1.0
NEURON_X = np.array([1.0, -2.0, 3.0])


def seed003_neuron_reference(iterations=200, learning_rate=0.001):
    """The notebook's single-neuron loop in float64; per-iteration history."""
    weights = NEURON_W.copy()
    bias = NEURON_B
    inputs = NEURON_X.copy()
    target_output = 0.0

    def relu(x):
        return np.maximum(0, x)

    def relu_derivative(x):
        return np.where(x > 0, 1.0, 0.0)

    losses, ws, bs = [], [], []
    for _ in range(iterations):
        linear_output = np.dot(weights, inputs) + bias
        output = relu(linear_output)
        loss = (output - target_output) ** 2
        dloss_doutput = 2 * (output - target_output)
        doutput_dlinear = relu_derivative(linear_output)
        dloss_dlinear = dloss_doutput * doutput_dlinear
        dloss_dweights = dloss_dlinear * inputs
        dloss_dbias = dloss_dlinear * 1.0
        weights -= learning_rate * dloss_dweights
        bias -= learning_rate * dloss_dbias
        losses.append(float(loss))
        ws.append(weights.copy())
        bs.append(float(bias))
    return np.array(losses), np.array(ws), np.array(bs)


def seed003_neuron_net(backend):
    neuron = cbp.Dense(3, 1, "relu", weights=NEURON_W.reshape(3, 1), bias=[NEURON_B])
    return cbp.Network([neuron], loss="squared_error", backend=backend)


def test_seed003_neuron_printed_values(backend):
    """fit for 200 iterations reproduces the notebook's printed numbers."""
    net = seed003_neuron_net(backend)
    hist = net.fit(NEURON_X.reshape(1, 3), [[0.0]], epochs=200, lr=0.001)
    neuron = net.layers[0]
    assert hist["loss"][0] == 36.0
    # printed 33.872397424621624 (float32 dot); float64 gives 33.8724 to 1e-14
    assert hist["loss"][1] == pytest.approx(33.8724, abs=1e-12)
    assert hist["loss"][1] == pytest.approx(33.872397424621624, rel=1e-6)
    assert hist["loss"][-1] == pytest.approx(0.00019563773612380077, rel=1e-6)
    # printed with 8 decimals: [-3.3990955 -0.20180899 0.80271349]
    assert_close(neuron.weights[:, 0], [-3.3990955, -0.20180899, 0.80271349], rtol=0, atol=5e-9)
    # printed 0.6009044964517248 (float32 dot); float64 agrees to 1e-10
    assert neuron.bias[0] == pytest.approx(0.6009044964517248, abs=1e-10)


def test_seed003_neuron_trajectory_matches_float64_loop(backend):
    """Every step's loss, weights and bias equal the float64 loop to 1e-12."""
    ref_losses, ref_w, ref_b = seed003_neuron_reference()
    net = seed003_neuron_net(backend)
    neuron = net.layers[0]
    X, y = NEURON_X.reshape(1, 3), np.array([[0.0]])
    losses, ws, bs = [], [], []
    for _ in range(200):
        losses.append(net.train_step(X, y, lr=0.001))
        ws.append(neuron.weights[:, 0].copy())
        bs.append(neuron.bias[0])
    assert_close(losses, ref_losses)
    assert_close(ws, ref_w)
    assert_close(bs, ref_b)

    fitted = seed003_neuron_net(backend)
    hist = fitted.fit(X, y, epochs=200, lr=0.001)
    assert_close(hist["loss"], ref_losses)
    assert_close(fitted.parameters, net.parameters)


def test_seed003_neuron_manual_steps_equal_fit(backend):
    """forward / backward / step by hand gives exactly what fit's general
    path gives.  A one-sample fit of this neuron is one the fused per-sample
    step takes (src/_tiny.h), which computes the same formulas in its own
    loop: it agrees to rounding (bit for bit in a release build; a build
    whose compiler contracts products differently may differ in the last
    bits), checked at rtol 1e-12."""
    X, y = NEURON_X.reshape(1, 3), np.array([[0.0]])
    manual = seed003_neuron_net(backend)
    losses = []
    for _ in range(200):
        manual.forward(X)
        losses.append(manual.backward(y))
        manual.step(0.001)

    core = cbp._backend._core if backend == "native" else None
    saved = core._tiny_path(False) if core is not None else None
    try:
        fitted = seed003_neuron_net(backend)
        hist = fitted.fit(X, y, epochs=200, lr=0.001)
    finally:
        if core is not None:
            core._tiny_path(saved)
    np.testing.assert_array_equal(losses, hist["loss"])
    np.testing.assert_array_equal(manual.parameters, fitted.parameters)

    if core is not None:  # the fused path, on by default
        fused = seed003_neuron_net(backend)
        hist = fused.fit(X, y, epochs=200, lr=0.001)
        assert fused._engine.tiny_steps == 200
        np.testing.assert_allclose(hist["loss"], losses, rtol=1e-12, atol=0)
        np.testing.assert_allclose(fused.parameters, manual.parameters, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------
# Seed 003, part 2: a layer of 3 ReLU neurons, loss = (sum of outputs)**2
# ---------------------------------------------------------------------------
# The notebook's W is (neurons, inputs); cbp's is (inputs, neurons).  The sum
# is a frozen all-ones identity layer, and squared error against 0 squares it.
LAYER_X = np.array([1.0, 2.0, 3.0, 4.0])
LAYER_W = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8], [0.9, 1.0, 1.1, 1.2]])
LAYER_B = np.array([0.1, 0.2, 0.3])
LOSS_ATOL = 1e-16


def seed003_layer_reference(num_iterations=200, learning_rate=0.001):
    """The notebook's 'new notation' layer loop in float64; per-iteration history."""
    X = np.array([1, 2, 3, 4])
    W = LAYER_W.copy()
    B = LAYER_B.copy()
    losses, Ws, Bs = [], [], []
    for _ in range(num_iterations):
        Z = np.dot(W, X) + B
        A = np.maximum(0, Z)
        y = np.sum(A)
        l = y**2
        dL_dy = 2 * y
        dy_dA = np.ones_like(A)
        dA_dZ = np.where(Z > 0, 1, 0)
        dl_dZ = dL_dy * dy_dA * dA_dZ
        dL_dW = np.outer(X.T, dl_dZ)
        dL_dB = dl_dZ
        W -= learning_rate * dL_dW.T
        B -= learning_rate * dL_dB
        losses.append(float(l))
        Ws.append(W.copy())
        Bs.append(B.copy())
    return np.array(losses), np.array(Ws), np.array(Bs)


def seed003_layer_net(backend):
    layer = cbp.Dense(4, 3, "relu", weights=LAYER_W.T, bias=LAYER_B)
    total = cbp.Dense(3, 1, "identity", use_bias=False, trainable=False, weights=np.ones((3, 1)))
    return cbp.Network([layer, total], loss="squared_error", backend=backend)


# printed by the notebook's second run of the layer loop (every 20 iterations)
SEED003_LAYER_PRINTED_LOSSES = [
    466.56000000000006,
    5.32959636083938,
    0.41191523404899866,
    0.031836212079467595,
    0.002460565465389601,
    0.000190172825660145,
    1.4698126966451542e-05,
    1.1359926717815175e-06,
    8.779889800154524e-08,
    6.7858241357822796e-09,
]
SEED003_LAYER_PRINTED_W = [
    [-0.00698895, -0.01397789, -0.02096684, -0.02795579],
    [0.25975286, 0.11950572, -0.02074143, -0.16098857],
    [0.53548461, 0.27096922, 0.00645383, -0.25806156],
]
SEED003_LAYER_PRINTED_B = [-0.00698895, -0.04024714, -0.06451539]


def test_seed003_layer_printed_values(backend):
    """Loss 466.56 first, the printed losses and final weights and biases."""
    net = seed003_layer_net(backend)
    layer = net.layers[0]
    hist = net.fit(LAYER_X.reshape(1, 4), [[0.0]], epochs=200, lr=0.001)
    assert hist["loss"][0] == pytest.approx(466.56, abs=1e-10)
    assert_close(hist["loss"][::20], SEED003_LAYER_PRINTED_LOSSES, rtol=1e-9)
    assert_close(layer.weights.T, SEED003_LAYER_PRINTED_W, rtol=0, atol=5e-9)
    assert_close(layer.bias, SEED003_LAYER_PRINTED_B, rtol=0, atol=5e-9)


def test_seed003_layer_trajectory_matches_float64_loop(backend):
    """Every step's loss, weights and biases equal the float64 loop to 1e-12."""
    ref_losses, ref_W, ref_B = seed003_layer_reference()
    net = seed003_layer_net(backend)
    layer = net.layers[0]
    X, y = LAYER_X.reshape(1, 4), np.array([[0.0]])
    losses, Ws, Bs = [], [], []
    for _ in range(200):
        losses.append(net.train_step(X, y, lr=0.001))
        Ws.append(layer.weights.T.copy())
        Bs.append(layer.bias.copy())
    # Late losses (down to ~1e-9) are squares of a sum that cancels to nearly
    # zero from terms of size ~1, so their last digits carry the rounding of
    # those terms: they agree to 1e-12 relative or 1e-16 absolute.
    assert_close(losses, ref_losses, atol=LOSS_ATOL)
    assert_close(Ws, ref_W)
    assert_close(Bs, ref_B)

    fitted = seed003_layer_net(backend)
    hist = fitted.fit(X, y, epochs=200, lr=0.001)
    assert_close(hist["loss"], ref_losses, atol=LOSS_ATOL)
    assert_close(fitted.parameters, net.parameters)


def test_seed003_layer_frozen_sum_is_unchanged_but_has_gradients(backend):
    """The frozen all-ones layer keeps its weights, yet its dweights are filled."""
    net = seed003_layer_net(backend)
    total = net.layers[1]
    X, y = LAYER_X.reshape(1, 4), [[0.0]]
    # First iteration, from the notebook's numbers: Z = W @ X + B =
    # [3.1, 7.2, 11.3] (all > 0), sum y = 21.6, loss 466.56, and
    # dL/d(total weights) = 2 * y * relu(Z).
    assert net.train_step(X, y, lr=0.001) == pytest.approx(466.56, abs=1e-10)
    assert_close(total.dweights[:, 0], 2 * 21.6 * np.array([3.1, 7.2, 11.3]))
    np.testing.assert_array_equal(total.weights, np.ones((3, 1)))

    net.fit(X, y, epochs=199, lr=0.001)
    np.testing.assert_array_equal(total.weights, np.ones((3, 1)))
    assert np.any(total.dweights != 0.0)


# ---------------------------------------------------------------------------
# Seed 004: XOR, 2-4-1 sigmoid, no biases, full batch
# ---------------------------------------------------------------------------
XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
XOR_Y = np.array([[0], [1], [1], [0]])
XOR_RNG_SEED = 0  # the seed's own loop learns XOR from this draw


def seed004_reference(w1, w2, epochs=10000, learning_rate=0.1):
    """The seed's training loop, verbatim, in float64; returns (w1, w2, output)."""
    w1 = w1.copy()
    w2 = w2.copy()

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    def sigmoid_derivative(x):
        return x * (1 - x)

    X, y = XOR_X, XOR_Y
    for _ in range(epochs):
        layer1_output = sigmoid(np.dot(X, w1))
        output = sigmoid(np.dot(layer1_output, w2))
        error = y - output
        output_delta = error * sigmoid_derivative(output)
        layer1_error = output_delta.dot(w2.T)
        layer1_delta = layer1_error * sigmoid_derivative(layer1_output)
        w2 += layer1_output.T.dot(output_delta) * learning_rate
        w1 += X.T.dot(layer1_delta) * learning_rate
    test_output = sigmoid(np.dot(sigmoid(np.dot(X, w1)), w2))
    return w1, w2, test_output


def test_seed004_xor_matches_seed_loop(backend):
    """10,000 full-batch epochs land on the seed loop's weights and learn XOR."""
    rng = np.random.default_rng(XOR_RNG_SEED)
    w1 = rng.uniform(size=(2, 4))
    w2 = rng.uniform(size=(4, 1))
    ref_w1, ref_w2, ref_out = seed004_reference(w1, w2)
    np.testing.assert_array_equal(np.round(ref_out), XOR_Y)  # the seed itself learns XOR

    hidden = cbp.Dense(2, 4, "sigmoid", use_bias=False, weights=w1)
    output = cbp.Dense(4, 1, "sigmoid", use_bias=False, weights=w2)
    net = cbp.Network([hidden, output], loss="half_squared_error", reduction="sum", backend=backend)
    hist = net.fit(XOR_X, XOR_Y, epochs=10000, lr=0.1, batch_size=None)

    for got, ref in ((hidden.weights, ref_w1), (output.weights, ref_w2)):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=0)
        assert np.max(np.abs(got - ref)) <= 1e-10
    pred = net.predict(XOR_X)
    np.testing.assert_allclose(pred, ref_out, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(np.round(pred), XOR_Y)
    assert hist["loss"][-1] < hist["loss"][0]
