"""cbp.trace: one forward and backward pass with every intermediate kept.

Expected values come from the seed tutorials' printed numbers, from the
network's own forward/backward on a pickled copy, and from the other backend.
"""

import pickle
import re

import numpy as np
import pytest

import cbp
from cbp import examples
from cbp.trace import LayerTrace, Trace, trace, weight_names

TIGHT = 1e-12


def seed001(backend):
    hidden = cbp.Dense(2, 2, "relu", weights=[[1.0, 0.5], [1.0, -0.5]], bias=[0.5, 0.0])
    output = cbp.Dense(2, 1, "relu", weights=[[1.0], [1.0]], bias=[0.5])
    return cbp.Network([hidden, output], loss="squared_error", backend=backend)


def mixed_net(backend, loss="categorical_crossentropy", reduction="mean", seed=3):
    """Penalties everywhere, a dropout layer, a frozen layer, no-bias layer."""
    out_act = {"categorical_crossentropy": "softmax", "binary_crossentropy": "sigmoid"}.get(
        loss, "tanh"
    )
    layers = [
        cbp.Dense(3, 5, "elu", weight_l1=0.01, weight_l2=0.02, bias_l1=0.003, bias_l2=0.004),
        cbp.Dropout(0.4),
        cbp.Dense(5, 4, "leaky_relu", trainable=False, weight_l2=0.01),
        cbp.Dense(4, 3, out_act, use_bias=(loss != "binary_crossentropy"), weight_l1=0.005),
    ]
    return cbp.Network(layers, loss=loss, reduction=reduction, backend=backend, seed=seed)


def batch(loss, n=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    if loss == "categorical_crossentropy":
        y = rng.integers(0, 3, n)
    elif loss == "binary_crossentropy":
        y = rng.uniform(0, 1, (n, 3))
    else:
        y = rng.normal(size=(n, 3))
    return X, y


def snapshot(net):
    opt = net.optimizer
    return (
        net.parameters.copy(),
        net.gradients.copy(),
        net.epochs_trained,
        None if opt is None or opt.state is None else opt.state.copy(),
        None if opt is None else opt.iterations,
    )


def assert_same_state(net, before):
    after = snapshot(net)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert after[2] == before[2]
    if before[3] is None:
        assert after[3] is None
    else:
        np.testing.assert_array_equal(after[3], before[3])
    assert after[4] == before[4]


# ---------------------------------------------------------------------------
# the numbers of seed 001
# ---------------------------------------------------------------------------
def test_seed001_trace_arrays(backend):
    """Forward 1.5, 0.5, 2.5; loss 0.25; dL/dw5, dw6 = 1.5, 0.5; dL/db3 = 1;
    and the updated weights the seed prints."""
    t = trace(seed001(backend), [[1.0, 0.0]], [[2.0]], lr=0.01)
    assert isinstance(t, Trace) and all(isinstance(lt, LayerTrace) for lt in t.layers)
    hidden, output = t.layers
    np.testing.assert_array_equal(hidden.inputs, [[1.0, 0.0]])
    np.testing.assert_array_equal(hidden.z, [[1.5, 0.5]])
    np.testing.assert_array_equal(hidden.a, [[1.5, 0.5]])
    np.testing.assert_array_equal(output.a, [[2.5]])
    np.testing.assert_array_equal(t.output, [[2.5]])
    assert t.loss == 0.25 and t.data_loss == 0.25 and t.penalty == 0.0
    np.testing.assert_array_equal(output.da, [[1.0]])  # 2 (2.5 - 2)
    np.testing.assert_array_equal(output.dz, [[1.0]])
    np.testing.assert_array_equal(output.dweights, [[1.5], [0.5]])
    np.testing.assert_array_equal(output.dbias, [1.0])
    np.testing.assert_array_equal(output.dinputs, [[1.0, 1.0]])  # dz * (w5, w6)
    np.testing.assert_array_equal(hidden.dz, [[1.0, 1.0]])
    np.testing.assert_array_equal(hidden.dweights, [[1.0, 1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(hidden.dbias, [1.0, 1.0])
    np.testing.assert_allclose(output.updated_weights, [[0.985], [0.995]], rtol=TIGHT)
    np.testing.assert_allclose(output.updated_bias, [0.49], rtol=TIGHT)
    np.testing.assert_allclose(hidden.updated_weights, [[0.99, 0.49], [1.0, -0.5]], rtol=TIGHT)
    np.testing.assert_allclose(hidden.updated_bias, [0.49, -0.01], rtol=TIGHT)
    assert t.lr == 0.01
    assert weight_names(seed001(backend)) == [
        "w1",
        "w2",
        "w3",
        "w4",
        "bias1",
        "bias2",
        "w5",
        "w6",
        "bias3",
    ]


def test_no_lr_means_no_update(backend):
    t = trace(seed001(backend), [[1.0, 0.0]], [[2.0]])
    assert t.lr is None and t.updated_parameters is None
    assert all(lt.updated_weights is None and lt.updated_bias is None for lt in t.layers)


# ---------------------------------------------------------------------------
# agreement with the network's own backward, and between backends
# ---------------------------------------------------------------------------
LOSSES = ["squared_error", "half_squared_error", "categorical_crossentropy", "binary_crossentropy"]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss", LOSSES)
def test_gradients_equal_network_backward(backend, loss, reduction):
    """dweights/dbias and the loss equal forward + backward on a copy,
    penalties and dropout (identity outside fit) included."""
    net = mixed_net(backend, loss, reduction)
    X, y = batch(loss)
    t = trace(net, X, y)
    copy = pickle.loads(pickle.dumps(net))
    np.testing.assert_allclose(copy.forward(X), t.output, rtol=TIGHT, atol=1e-15)
    value = copy.backward(y)
    assert t.loss == pytest.approx(value, rel=TIGHT)
    assert t.penalty > 0
    assert t.loss == pytest.approx(t.data_loss + t.penalty, rel=TIGHT)
    dense = [l for l in copy.layers if isinstance(l, cbp.Dense)]
    assert len(dense) == len(t.dense_layers) == 3
    for layer, lt in zip(dense, t.dense_layers):
        np.testing.assert_allclose(lt.dweights, layer.dweights, rtol=TIGHT, atol=1e-15)
        if layer.use_bias:
            np.testing.assert_allclose(lt.dbias, layer.dbias, rtol=TIGHT, atol=1e-15)
        else:
            assert lt.dbias is None and lt.bias is None
    np.testing.assert_allclose(t.gradients, copy.gradients, rtol=TIGHT, atol=1e-15)
    np.testing.assert_array_equal(t.parameters, net.parameters)


@pytest.mark.parametrize("loss", LOSSES)
def test_native_and_numpy_traces_agree(native_core, loss):
    """Every array of the trace agrees across the backends to 1e-12."""
    X, y = batch(loss, n=5, seed=4)
    a = trace(mixed_net("native", loss), X, y, lr=0.05)
    b = trace(mixed_net("numpy", loss), X, y, lr=0.05)
    assert (a.backend, b.backend) == ("native", "numpy")
    assert a.loss == pytest.approx(b.loss, rel=TIGHT)
    for la, lb in zip(a.layers, b.layers):
        for name in (
            "inputs",
            "z",
            "a",
            "da",
            "derivative",
            "dz",
            "dinputs",
            "weights",
            "bias",
            "dweights",
            "dbias",
            "updated_weights",
            "updated_bias",
        ):
            va, vb = getattr(la, name), getattr(lb, name)
            assert (va is None) == (vb is None), name
            if va is not None:
                np.testing.assert_allclose(va, vb, rtol=TIGHT, atol=1e-15, err_msg=name)


def test_update_equals_network_step(backend):
    """updated_weights is what net.step(lr) makes of the copy's gradients,
    frozen layers staying where they are."""
    net = mixed_net(backend, "squared_error")
    X, y = batch("squared_error")
    t = trace(net, X, y, lr=0.1)
    copy = pickle.loads(pickle.dumps(net))
    copy.forward(X)
    copy.backward(y)
    copy.step(0.1)
    np.testing.assert_allclose(t.updated_parameters, copy.parameters, rtol=TIGHT, atol=1e-15)
    frozen = t.layers[2]
    assert not frozen.trainable
    np.testing.assert_array_equal(frozen.updated_weights, frozen.weights)
    np.testing.assert_array_equal(frozen.updated_bias, frozen.bias)
    assert np.any(frozen.dweights != 0)
    assert not np.array_equal(t.layers[0].updated_weights, t.layers[0].weights)


def test_bias_trainable_flag_is_respected(backend):
    """A layer whose bias_trainable is False keeps its bias in the step."""
    net = seed001(backend)
    net.layers[1].bias_trainable = False
    t = trace(net, [[1.0, 0.0]], [[2.0]], lr=0.01)
    np.testing.assert_array_equal(t.layers[1].updated_bias, [0.5])
    np.testing.assert_array_equal(t.layers[1].dbias, [1.0])  # its gradient is still there
    np.testing.assert_allclose(t.layers[1].updated_weights, [[0.985], [0.995]], rtol=TIGHT)
    np.testing.assert_allclose(t.layers[0].updated_bias, [0.49, -0.01], rtol=TIGHT)
    assert t.layers[1].bias_trainable is False and t.layers[0].bias_trainable is True


def test_dropout_layer_is_identity_in_the_trace(backend):
    net = mixed_net(backend)
    X, y = batch("categorical_crossentropy")
    t = trace(net, X, y)
    drop = t.layers[1]
    assert drop.kind == "Dropout" and drop.rate == 0.4
    np.testing.assert_array_equal(drop.a, t.layers[0].a)
    np.testing.assert_array_equal(drop.dinputs, drop.da)
    np.testing.assert_array_equal(t.layers[0].da, drop.dinputs)
    assert drop.dweights is None and drop.weights is None


def test_integer_labels_and_one_hot_give_one_trace(backend):
    net = mixed_net(backend)
    X, y = batch("categorical_crossentropy")
    a = trace(net, X, y)
    b = trace(net, X, np.eye(3)[y])
    np.testing.assert_array_equal(a.y, np.eye(3)[y])
    np.testing.assert_array_equal(a.gradients, b.gradients)
    assert a.loss == b.loss


# ---------------------------------------------------------------------------
# the network is left alone
# ---------------------------------------------------------------------------
def test_network_is_unchanged(backend):
    """Parameters, gradients, optimizer state and iterations, epochs_trained
    and the cached forward pass are all as they were."""
    net = mixed_net(backend, "squared_error")
    X, y = batch("squared_error")
    opt = cbp.optim.Adam(lr=0.01)
    net.fit(X, y, epochs=3, optimizer=opt)
    X2, y2 = batch("squared_error", seed=9)
    net.forward(X2)  # the cached forward pass that a backward(y2) will use
    before = snapshot(net)
    copy = pickle.loads(pickle.dumps(net))
    copy.forward(X2)
    expected_loss = copy.backward(y2)
    expected = copy.gradients.copy()

    Xt = X.copy()
    t = trace(net, Xt, y, lr=0.5)
    assert_same_state(net, before)
    np.testing.assert_array_equal(Xt, X)  # the input is not modified
    Xt[0, 0] = 99.0  # and the trace owns its copy
    assert t.X[0, 0] != 99.0
    assert net.backward(y2) == expected_loss  # the cached forward is still X2's
    np.testing.assert_array_equal(net.gradients, expected)


def test_trace_arrays_are_not_views_of_the_network(backend):
    net = seed001(backend)
    t = trace(net, [[1.0, 0.0]], [[2.0]], lr=0.01)
    t.layers[0].weights[0, 0] = 42.0
    t.layers[1].dweights[0, 0] = 42.0
    assert net.layers[0].weights[0, 0] == 1.0
    assert not np.any(net.gradients == 42.0)


def test_bad_input_is_refused(backend):
    net = seed001(backend)
    with pytest.raises(ValueError, match="columns"):
        trace(net, [[1.0, 0.0, 3.0]], [[2.0]])
    with pytest.raises(ValueError, match="NaN"):
        trace(net, [[np.nan, 0.0]], [[2.0]])
    with pytest.raises(ValueError, match="samples"):
        trace(net, [[1.0, 0.0]], [[2.0], [1.0]])
    with pytest.raises(ValueError, match="lr"):
        trace(net, [[1.0, 0.0]], [[2.0]], lr=-1.0)
    with pytest.raises(TypeError, match="lr"):
        trace(net, [[1.0, 0.0]], [[2.0]], lr="fast")


# ---------------------------------------------------------------------------
# explain(): the chain rule with the numbers filled in
# ---------------------------------------------------------------------------
_NUM = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?$")


def value_of(text, start):
    """The number after the last '=' of the line that starts with ``start``
    (after the indentation)."""
    hits = [line.strip() for line in text.splitlines() if line.strip().startswith(start)]
    assert hits, f"no line starts with {start!r} in:\n{text}"
    assert len(hits) == 1, hits
    tail = hits[0].rsplit("=", 1)[1].strip()
    assert _NUM.match(tail), hits[0]
    return float(tail)


def loss_of(text):
    """The last number of the Loss section (the loss, penalties included)."""
    section = text.split("\nLoss\n", 1)[1].split("\n\n", 1)[0]
    tail = section.strip().splitlines()[-1].rsplit("=", 1)[1].strip()
    assert _NUM.match(tail), section
    return float(tail)


def test_explain_seed001(backend):
    """The text holds every number seed 001 prints, in its numbering."""
    text = trace(seed001(backend), [[1.0, 0.0]], [[2.0]], lr=0.01).explain()
    assert str(trace(seed001(backend), [[1.0, 0.0]], [[2.0]], lr=0.01)) == text
    # forward: node outputs 1.5, 0.5, 2.5
    assert value_of(text, "h1 = relu(") == 1.5
    assert value_of(text, "h2 = relu(") == 0.5
    assert value_of(text, "ŷ = relu(") == 2.5
    assert "z_h1 = x1·w1 + x2·w3 + bias1 = 1·1 + 0·1 + 0.5 = 1.5" in text
    assert loss_of(text) == 0.25
    # the chain rule of the tutorial, numbers substituted
    assert "dL/dw5 = dL/dŷ · dŷ/dz · dz/dw5 = 2(2.5 − 2) · 1 · 1.5 = 1.5" in text
    assert value_of(text, "dL/dw6 =") == 0.5
    assert value_of(text, "dL/dbias3 =") == 1.0
    # the updates the tutorial prints
    assert "w5 ← 1 − 0.01 · 1.5 = 0.985" in text
    assert value_of(text, "w6 ←") == 0.995
    assert value_of(text, "bias3 ←") == 0.49
    assert value_of(text, "w1 ←") == 0.99
    assert value_of(text, "w2 ←") == 0.49
    assert value_of(text, "w3 ←") == 1.0
    assert value_of(text, "w4 ←") == -0.5
    assert value_of(text, "bias2 ←") == -0.01


def test_explain_seed002_in_its_names(backend):
    """Loss 50, dL/dw35 = 50, dL/dw13 = 20, dL/dw23 = -20 and the new weights
    w13 0, w23 -1, w35 -3, w45 -1 at eta 0.1, in the exercise's names."""
    net, X, y, lr = examples.get("002", backend)
    assert lr == 0.1
    text = trace(net, X, y, lr).explain(names=examples.names("002"))
    assert value_of(text, "y5 = relu(") == 10.0
    assert loss_of(text) == 50.0
    assert value_of(text, "dL/dw35 =") == 50.0
    assert value_of(text, "dL/dw45 =") == 0.0
    assert value_of(text, "dL/dw13 =") == 20.0
    assert value_of(text, "dL/dw23 =") == -20.0
    assert value_of(text, "dL/dw14 =") == 0.0
    assert value_of(text, "dL/dw24 =") == 0.0
    assert "dL/dw13 = dL/dy3 · dy3/dx3 · dx3/dw13 = 20 · 1 · 1 = 20" in text
    assert value_of(text, "w13 ←") == 0.0
    assert value_of(text, "w23 ←") == -1.0
    assert value_of(text, "w35 ←") == -3.0
    assert value_of(text, "w45 ←") == -1.0
    assert "dL/dbias" not in text  # the exercise has none


def test_explain_seed000_first_example(backend):
    """x = 2, target 2: the printed w 0.5924, b 0.2462, v 0.4848, c 0.254."""
    net, X, y, lr = examples.get("000", backend)
    text = trace(net, X, y, lr).explain(names=examples.names("000"))
    assert value_of(text, "h = relu(") == 1.2  # relu(0.5 * 2 + 0.2)
    assert value_of(text, "y = z_out") == 0.46  # 0.3 * 1.2 + 0.1
    assert loss_of(text) == pytest.approx(0.5 * 1.54**2, rel=TIGHT)
    assert value_of(text, "dJ/dv =") == pytest.approx(-1.54 * 1.2, rel=1e-9)
    assert value_of(text, "w ←") == 0.5924
    assert value_of(text, "b ←") == 0.2462
    assert value_of(text, "v ←") == 0.4848
    assert value_of(text, "c ←") == 0.254


def test_explain_numbers_are_compact():
    """0.985, not 0.98499999999; integers without a decimal point."""
    from cbp._explain import fmt

    assert 1 - 0.01 * 1.5 != 0.985 or fmt(1 - 0.01 * 1.5) == "0.985"
    assert fmt(0.1 + 0.2) == "0.3"
    assert fmt(0.98499999999) == "0.985"
    assert fmt(2.0) == "2" and fmt(-20.0) == "-20" and fmt(-0.0) == "0"
    assert fmt(1.5e-12) == "1.5e-12"
    assert fmt(0.35891647971788465) == "0.35891648"


def test_explain_penalties_frozen_and_fused(backend):
    """A one-sample softmax + cross-entropy network with penalties and a
    frozen layer: the fused delta, the penalty terms, frozen weights stay."""
    layers = [
        cbp.Dense(
            2,
            2,
            "tanh",
            trainable=False,
            weight_l2=0.1,
            weights=[[0.5, -0.4], [0.3, 0.8]],
            bias=[0.1, -0.2],
        ),
        cbp.Dense(
            2, 2, "softmax", bias_l1=0.05, weights=[[1.0, -1.0], [0.5, 0.25]], bias=[0.2, -0.3]
        ),
    ]
    net = cbp.Network(layers, loss="categorical_crossentropy", backend=backend)
    t = trace(net, [[1.0, 2.0]], [1], lr=0.5)
    text = t.explain()
    assert "(softmax with categorical cross-entropy: the fused dL/dz = output − target)" in text
    p = t.layers[1].a[0]
    assert value_of(text, "dL/dz_o1 =") == pytest.approx(p[0], rel=1e-8)
    assert value_of(text, "dL/dz_o2 =") == pytest.approx(p[1] - 1.0, rel=1e-8)
    assert "+ 2λ₂·w1" in text and "+ λ₁·sign(bias3)" in text
    assert "w1 stays 0.5 (not trainable)" in text
    assert loss_of(text) == pytest.approx(t.loss, rel=1e-8)
    for name, grad in zip(weight_names(net), t.gradients):
        assert value_of(text, f"dL/d{name} =") == pytest.approx(grad, rel=1e-8, abs=1e-12)


def test_explain_every_activation_and_loss_matches_the_arrays(backend):
    """Whatever the pair, each dL/dw line ends on the traced gradient, and
    each unit line on the traced activation."""
    for act in ["identity", "relu", "leaky_relu", "prelu", "elu", "sigmoid", "tanh", "softmax"]:
        for loss, out_act in [
            ("squared_error", "identity"),
            ("half_squared_error", "softmax"),
            ("binary_crossentropy", "sigmoid"),
            ("binary_crossentropy", "tanh"),
            ("categorical_crossentropy", "sigmoid"),
        ]:
            layers = [
                cbp.Dense(2, 2, act, weights=[[0.5, -0.4], [0.3, 0.8]], bias=[0.1, -0.2]),
                cbp.Dense(2, 2, out_act, weights=[[0.7, -0.2], [0.5, 0.25]]),
            ]
            net = cbp.Network(
                layers, loss=loss, reduction="mean", backend=backend, check_output=False
            )  # the unfused pairs too
            y = [[0.0, 1.0]] if loss != "binary_crossentropy" else [[0.2, 0.9]]
            if out_act == "tanh":
                net.layers[1].weights = [[0.2, 0.1], [0.1, 0.2]]
            t = trace(net, [[1.0, 2.0]], y)
            text = t.explain()
            for name, grad in zip(weight_names(net), t.gradients):
                assert value_of(text, f"dL/d{name} =") == pytest.approx(
                    grad, rel=1e-8, abs=1e-12
                ), (act, loss, out_act, name)
            for j, u in enumerate(["h1", "h2"]):
                assert value_of(text, f"{u} = ") == pytest.approx(
                    t.layers[0].a[0, j], rel=1e-8, abs=1e-12
                )
            assert loss_of(text) == pytest.approx(t.loss, rel=1e-8)


def test_explain_falls_back_to_a_table(backend):
    """A batch (or more than 12 weights) gets one row a layer: shapes, norms."""
    net, X, y, lr = examples.get("004", backend)
    t = trace(net, X, y, lr)
    text = t.explain()
    assert "dL/dw1" not in text
    assert "4 samples" in text and "(4, 2)" in text and "(4, 4)" in text
    assert f"loss L = {float(f'{t.loss:.9g}'):.9g}" in text
    norm = float(f"{np.linalg.norm(t.layers[1].dweights):.9g}")
    assert f"{norm:.9g}" in text
    with pytest.raises(ValueError, match="one sample"):
        t.explain(detail=True)
    one = trace(net, X[1:2], y[1:2], lr)
    assert "dL/dw12 =" in one.explain()  # one sample, 12 weights: every derivative
    wide = cbp.Network(
        [cbp.Dense(3, 4, "relu"), cbp.Dense(4, 1, "identity")], seed=0, backend=backend
    )
    w = trace(wide, [[1.0, 2.0, 3.0]], [[1.0]])
    assert "dL/dw1" not in w.explain()  # 16 weights
    assert "dL/dw16 =" in w.explain(detail=True)


def test_explain_ascii(backend):
    text = trace(seed001(backend), [[1.0, 0.0]], [[2.0]], lr=0.01).explain(ascii=True)
    text.encode("ascii")
    assert "dL/dw5 = dL/dy_hat * dy_hat/dz * dz/dw5 = 2(2.5 - 2) * 1 * 1.5 = 1.5" in text
    assert "w5 <- 1 - 0.01 * 1.5 = 0.985" in text


def test_explain_deeper_network_with_dropout(backend):
    """Two hidden layers (h1_1 ..., h2_1 ...) and a dropout layer between them."""
    rng = np.random.default_rng(5)
    layers = [
        cbp.Dense(2, 2, "tanh", weights=rng.uniform(-1, 1, (2, 2)), bias=[0.1, -0.1]),
        cbp.Dropout(0.5),
        cbp.Dense(2, 2, "sigmoid", weights=rng.uniform(-1, 1, (2, 2)), bias=[0.2, 0.0]),
        cbp.Dense(2, 1, "identity", weights=[[0.7], [-0.6]], bias=[0.05]),
    ]
    net = cbp.Network(layers, loss="half_squared_error", backend=backend)
    t = trace(net, [[0.3, -0.8]], [[0.5]], lr=0.1)
    text = t.explain()
    assert "Dropout(0.5) is off outside fit: h1_1, h1_2 pass through unchanged" in text
    assert "z_h2_1 = h1_1·w5 + h1_2·w7 + bias3" in text
    assert "z = h2_1·w9 + h2_2·w10 + bias5" in text
    for name, grad in zip(weight_names(net), t.gradients):
        assert value_of(text, f"dL/d{name} =") == pytest.approx(grad, rel=1e-8, abs=1e-12)
    for name, new in zip(weight_names(net), t.updated_parameters):
        assert value_of(text, f"{name} ←") == pytest.approx(new, rel=1e-8, abs=1e-12)
    assert value_of(text, "dL/dh1_1 =") == pytest.approx(t.layers[0].da[0, 0], rel=1e-8)


def test_explain_refuses_unknown_names(backend):
    t = trace(seed001(backend), [[1.0, 0.0]], [[2.0]])
    assert "dL/dw13 =" in t.explain(names={"w3": "w13"})
    with pytest.raises(ValueError, match="'w7' is not a symbol"):
        t.explain(names={"w7": "w13"})
