"""cbp.examples: the worked examples, checked against the numbers their
authors printed.

Mazur's numbers are from "A Step by Step Backpropagation Example" (Matt
Mazur, 2015), printed to 8 or 9 decimals; each is matched to half a unit of
its last printed digit.
"""

import numpy as np
import pytest

import cbp
from cbp import examples
from cbp.trace import trace

MAZUR_NEW_WEIGHTS = {  # Mazur's name: printed value after one step at lr 0.5
    "w1": "0.149780716",
    "w2": "0.19956143",
    "w3": "0.24975114",
    "w4": "0.29950229",
    "w5": "0.35891648",
    "w6": "0.408666186",
    "w7": "0.511301270",
    "w8": "0.561370121",
}
#: Mazur's numbering in cbp's (n_inputs, n_neurons) weight matrices
MAZUR_POSITION = {
    "w1": (0, 0, 0),
    "w2": (0, 1, 0),
    "w3": (0, 0, 1),
    "w4": (0, 1, 1),
    "w5": (1, 0, 0),
    "w6": (1, 1, 0),
    "w7": (1, 0, 1),
    "w8": (1, 1, 1),
}


def half_unit(printed):
    """Half a unit of the last printed decimal."""
    return 0.5 * 10.0 ** -len(printed.split(".")[1])


def test_registry():
    assert list(examples.EXAMPLES) == ["000", "001", "002", "003", "004", "mazur"]
    for key, title in examples.titles().items():
        assert title and "\n" not in title
        net, X, y, lr = examples.get(key)
        assert isinstance(net, cbp.Network) and lr > 0
        assert X.shape[1] == net.n_inputs
        assert examples.names(key) == examples.EXAMPLES[key].names
    with pytest.raises(ValueError, match="unknown example 'nope'"):
        examples.get("nope")


def test_names_rename_existing_symbols_only():
    """Every name an example maps is a symbol its explanation really uses."""
    for key in examples.EXAMPLES:
        net, X, y, lr = examples.get(key)
        t = trace(net, X[:1], y[:1], lr)
        named = t.explain(names=examples.names(key), detail=True)  # unknown names raise
        for default, shown in examples.names(key).items():
            assert shown in named, (key, default, shown)


def test_mazur_forward_and_error(backend):
    net, X, y, lr = examples.get("mazur", backend)
    assert lr == 0.5
    t = trace(net, X, y, lr=lr)
    hidden, output = t.layers
    np.testing.assert_allclose(hidden.z, [[0.3775, 0.3925]], rtol=1e-12)
    np.testing.assert_allclose(hidden.a, [[0.593269992, 0.596884378]], rtol=0, atol=5e-10)
    np.testing.assert_allclose(output.a, [[0.75136507, 0.772928465]], rtol=0, atol=5e-9)
    assert t.loss == pytest.approx(0.298371109, abs=5e-10)  # E_total
    # dE/dw5 = 0.082167041 and dE/dw1 = 0.000438568, as printed
    assert output.dweights[0, 0] == pytest.approx(0.082167041, abs=5e-10)
    assert hidden.dweights[0, 0] == pytest.approx(0.000438568, abs=5e-10)


def test_mazur_one_step(backend):
    """The eight new weights to Mazur's printed digits."""
    net, X, y, lr = examples.get("mazur", backend)
    t = trace(net, X, y, lr=lr)
    dense = t.dense_layers
    for name, printed in MAZUR_NEW_WEIGHTS.items():
        layer, i, j = MAZUR_POSITION[name]
        got = dense[layer].updated_weights[i, j]
        assert abs(got - float(printed)) <= half_unit(printed), (name, got, printed)


def test_mazur_weights_do_not_depend_on_the_biases(backend):
    """One step's new weights are the same whether the biases are updated or
    not (Mazur never updates them), and equal net.step's."""
    net, X, y, lr = examples.get("mazur", backend)
    assert [layer.bias_trainable for layer in net.layers] == [False, False]
    t = trace(net, X, y, lr=lr)
    for layer in net.layers:
        layer.bias_trainable = True
    updated = trace(net, X, y, lr=lr)
    for a, b in zip(t.dense_layers, updated.dense_layers):
        np.testing.assert_array_equal(a.updated_weights, b.updated_weights)
        np.testing.assert_array_equal(a.updated_bias, a.bias)
        assert not np.array_equal(b.updated_bias, b.bias)
    net2, X, y, lr = examples.get("mazur", backend)
    net2.train_step(X, y, lr=lr)
    for layer, lt in zip(net2.layers, t.dense_layers):
        np.testing.assert_allclose(layer.weights, lt.updated_weights, rtol=1e-12)
        np.testing.assert_array_equal(layer.bias, lt.bias)  # the network keeps them too


def test_mazur_explain_prints_no_bias_update(backend):
    """Mazur's biases stay fixed: explain says so and writes no update for them."""
    text = examples.explain("mazur", backend)
    for name, value in (("b1_h1", "0.35"), ("b1_h2", "0.35"), ("b2_o1", "0.6"), ("b2_o2", "0.6")):
        assert not [l for l in text.splitlines() if l.strip().startswith(f"{name} ←")], name
        assert f"{name} stays {value} (not trainable)" in text


def test_mazur_explain_uses_his_numbering(backend):
    text = examples.explain("mazur", backend)
    assert text.startswith(examples.titles()["mazur"])
    assert "net_h1 = i1·w1 + i2·w2 + b1_h1 = 0.05·0.15 + 0.1·0.2 + 0.35 = 0.3775" in text
    assert "net_h2 = i1·w3 + i2·w4 + b1_h2 = 0.05·0.25 + 0.1·0.3 + 0.35 = 0.3925" in text
    assert "net_o1 = out_h1·w5 + out_h2·w6 + b2_o1" in text
    assert "net_o2 = out_h1·w7 + out_h2·w8 + b2_o2" in text
    assert "= 0.298371109" in text
    assert (
        "dE/dw5 = dE/dout_o1 · dout_o1/dnet_o1 · dnet_o1/dw5 = (0.75136507 − 0.01) · "
        "0.186815602 · 0.593269992 = 0.0821670406"
    ) in text
    assert "dE/dout_h1 = dE/dnet_o1 · w5 + dE/dnet_o2 · w7" in text
    for name, printed in MAZUR_NEW_WEIGHTS.items():
        line = [l for l in text.splitlines() if l.strip().startswith(f"{name} ←")]
        assert len(line) == 1, name
        value = float(line[0].rsplit("=", 1)[1])
        assert abs(value - float(printed)) <= half_unit(printed) + 5e-10, (name, line)


def test_seed_examples_match_the_seeds(backend):
    """Each seed example gives the seed's own first step (its printed numbers)."""
    t = trace(*examples.get("000", backend))
    w, b = t.layers[0].updated_weights[0, 0], t.layers[0].updated_bias[0]
    v, c = t.layers[1].updated_weights[0, 0], t.layers[1].updated_bias[0]
    np.testing.assert_allclose([w, b, v, c], [0.5924, 0.2462, 0.4848, 0.254], rtol=1e-12)

    t = trace(*examples.get("001", backend))
    np.testing.assert_allclose(t.layers[1].updated_weights[:, 0], [0.985, 0.995], rtol=1e-12)

    t = trace(*examples.get("002", backend))
    np.testing.assert_allclose(
        t.updated_parameters, [0.0, 1.0, -1.0, 4.0, -3.0, -1.0], rtol=0, atol=1e-12
    )

    t = trace(*examples.get("003", backend))
    assert t.loss == 36.0  # "Iteration 1, Loss: 36.0"
    np.testing.assert_allclose(t.layers[0].dweights[:, 0], [12.0, -24.0, 36.0], rtol=1e-12)

    net, X, y, lr = examples.get("004", backend)
    t = trace(net, X, y, lr)
    # seed 004's update: w2 += layer1_output.T.dot(error * output * (1 - output)) * lr
    h, o = t.layers[0].a, t.layers[1].a
    W2 = net.layers[1].weights
    expected = W2 + h.T.dot((y - o) * o * (1 - o)) * lr
    np.testing.assert_allclose(t.layers[1].updated_weights, expected, rtol=1e-12)
