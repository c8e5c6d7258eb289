"""cbp.plot: figures rendered headless (Agg) to PNG, and their structure."""

import io
import subprocess
import sys
import types

import numpy as np
import pytest

import cbp

PNG = b"\x89PNG\r\n\x1a\n"


def test_import_cbp_never_imports_matplotlib():
    code = "import sys, cbp, cbp.cli; print('matplotlib' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout) == (0, "False\n"), p.stderr


def test_cbp_plot_without_matplotlib_names_the_extra():
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"
        "import cbp\n"
        "try:\n"
        "    import cbp.plot\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("cbp.plot needs matplotlib")
    assert 'pip install "cbp[plot]"' in p.stdout


try:
    from cbp import plot
except ImportError:  # matplotlib is not installed
    plot = None
needs_matplotlib = pytest.mark.skipif(plot is None, reason="matplotlib is not installed")


def render(fig, dpi=50):
    """PNG bytes of a figure, and the (width, height) its header gives."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    data = buf.getvalue()
    assert data[:8] == PNG
    size = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    expect = tuple(int(round(v * dpi)) for v in fig.get_size_inches())
    assert all(abs(a - b) <= 1 for a, b in zip(size, expect)), (size, expect)
    return data, size


# -- history -------------------------------------------------------------------
@needs_matplotlib
def test_history_of_a_classifier_with_validation_and_early_stopping():
    X, y = cbp.datasets.spiral_data(30, 3, seed=0)
    net = cbp.Network(
        [cbp.Dense(2, 16, "relu"), cbp.Dense(16, 3, "softmax")],
        loss="categorical_crossentropy",
        seed=0,
    )
    hist = net.fit(
        X[::2],
        y[::2],
        epochs=60,
        batch_size=16,
        optimizer=cbp.optim.Adam(lr=0.01),
        validation_data=(X[1::2], y[1::2]),
        early_stopping=cbp.EarlyStopping(patience=1000),
    )
    fig = plot.history(hist)
    loss_ax, acc_ax = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    for ax, key in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        lines = ax.get_lines()
        assert len(lines) == 3  # training, validation, best epoch
        np.testing.assert_array_equal(lines[0].get_ydata(), hist[key])
        np.testing.assert_array_equal(lines[1].get_ydata(), hist[f"val_{key}"])
        np.testing.assert_array_equal(lines[0].get_xdata(), np.arange(1, 61))
        assert list(lines[2].get_xdata()) == [hist["best_epoch"] + 1] * 2
    assert acc_ax.get_ylim() == (-0.02, 1.02)
    data, (w, h) = render(fig)
    assert len(data) > 5000 and w > h


@needs_matplotlib
def test_history_loss_is_logarithmic_when_it_spans_decades():
    fig = plot.history({"loss": np.array([10.0, 1.0, 0.05])})
    assert len(fig.axes) == 1 and fig.axes[0].get_yscale() == "log"
    assert len(fig.axes[0].get_lines()) == 1
    fig = plot.history({"loss": np.array([1.0, 0.5, 0.2])})
    assert fig.axes[0].get_yscale() == "linear"
    # a regression network's own history
    net = cbp.Network([cbp.Dense(1, 1, "identity", seed=0)])
    net.fit(np.ones((4, 1)), np.full((4, 1), 2.0), epochs=5, lr=0.1)
    fig = plot.history(net)
    np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_ydata(), net.history["loss"])
    render(fig)


@needs_matplotlib
@pytest.mark.parametrize("bad", [{}, {"loss": []}, None, "loss"])
def test_history_rejects_what_fit_does_not_return(bad):
    with pytest.raises(ValueError, match="history"):
        plot.history(bad)


# -- decision_boundary -----------------------------------------------------------
@needs_matplotlib
def test_decision_boundary_of_the_spiral():
    X, y = cbp.datasets.spiral_data(40, 3, seed=0)
    net = cbp.Network(
        [cbp.Dense(2, 32, "relu"), cbp.Dense(32, 3, "softmax")],
        loss="categorical_crossentropy",
        seed=0,
    )
    net.fit(X, y, epochs=200, batch_size=30, shuffle=True, optimizer=cbp.optim.Adam(lr=0.02))
    fig = plot.decision_boundary(net, X, y, resolution=80, class_names=["a", "b", "c"])
    (ax,) = fig.axes
    points = [c for c in ax.collections if len(c.get_offsets()) and c.get_label() in "abc"]
    assert [c.get_label() for c in points] == ["a", "b", "c"]
    for k, c in enumerate(points):
        np.testing.assert_array_equal(c.get_offsets(), X[y == k])
    accuracy = np.mean(np.argmax(net.predict(X), axis=1) == y)
    assert ax.get_title() == f"decision regions (accuracy {accuracy:.1%})"
    # the grid covers the points with a margin
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 < X[:, 0].min() and x1 > X[:, 0].max() and y0 < X[:, 1].min() and y1 > X[:, 1].max()
    data, _ = render(fig)
    assert len(data) > 10000


@needs_matplotlib
def test_decision_boundary_of_xor_with_one_sigmoid_output():
    X, labels = cbp.datasets.xor()
    net = cbp.Network(
        [cbp.Dense(2, 4, "tanh", seed=3), cbp.Dense(4, 1, "sigmoid", seed=4)],
        loss="binary_crossentropy",
    )
    net.fit(X, labels.reshape(-1, 1).astype(float), epochs=3000, lr=0.5)
    fig = plot.decision_boundary(net, X, labels.reshape(-1, 1).astype(float), resolution=50)
    (ax,) = fig.axes
    accuracy = np.mean((net.predict(X)[:, 0] > 0.5) == labels)
    assert accuracy == 1.0
    assert ax.get_title() == "decision regions (accuracy 100.0%)"
    names = [c.get_label() for c in ax.collections if c.get_label().startswith("class")]
    assert names == ["class 0", "class 1"]
    render(fig)


@needs_matplotlib
def test_decision_boundary_needs_two_inputs():
    net = cbp.Network([cbp.Dense(3, 2, "softmax")], loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="2 inputs"):
        plot.decision_boundary(net, np.zeros((4, 3)), np.zeros(4, dtype=int))
    net2 = cbp.Network([cbp.Dense(2, 2, "softmax")], loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="one label per row"):
        plot.decision_boundary(net2, np.zeros((4, 2)), np.zeros(3, dtype=int))


# -- network -------------------------------------------------------------------
def seed001():
    hidden = cbp.Dense(2, 2, "relu", weights=[[1.0, 0.5], [1.0, -0.5]], bias=[0.5, 0.0])
    output = cbp.Dense(2, 1, "relu", weights=[[1.0], [1.0]], bias=[0.5])
    return cbp.Network([hidden, output], loss="squared_error")


def texts(fig):
    return [t.get_text() for t in fig.axes[0].texts]


@needs_matplotlib
def test_network_draws_every_weight_and_bias_of_seed_001():
    net = seed001()
    fig = plot.network(net)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 6  # 2*2 + 2*1 edges
    words = texts(fig)
    units = {"1.1", "1.2", "2.1"}
    weight_texts = [w for w in words if w.lstrip("-").replace(".", "").isdigit() and w not in units]
    assert sorted(weight_texts) == sorted(["1", "1", "0.5", "-0.5", "1", "1"])
    assert sorted(w for w in words if w.startswith("b ")) == ["b 0", "b 0.5", "b 0.5"]
    assert {"x1", "x2", "1.1", "1.2", "2.1"} <= set(words)
    assert sum("relu" in w for w in words) == 2 and any(w.startswith("input") for w in words)
    assert not any(w.startswith("∂") for w in words)
    # colour by sign, width by magnitude: the -0.5 edge is red and thinner than a 1
    negative = [ln for ln in lines if ln.get_color() == plot._NEGATIVE]
    assert len(negative) == 1
    assert negative[0].get_linewidth() < max(ln.get_linewidth() for ln in lines)
    data, _ = render(fig)
    assert len(data) > 3000


@needs_matplotlib
def test_network_shows_the_gradients_of_a_trace():
    net = seed001()
    net.forward([[1.0, 0.0]])
    net.backward([2.0])
    # seed 001: dL/dw5, dL/dw6 = 1.5, 0.5 and dL/db3 = 1; the hidden layer's
    # gradients are dL/dout (1) times each weight, masked by the ReLU, times x
    trace = types.SimpleNamespace(
        layers=[
            types.SimpleNamespace(
                dweights=np.array([[1.0, 1.0], [0.0, 0.0]]), dbias=np.array([1.0, 1.0])
            ),
            types.SimpleNamespace(dweights=np.array([[1.5], [0.5]]), dbias=np.array([1.0])),
        ]
    )
    np.testing.assert_allclose(net.layers[1].dweights, trace.layers[1].dweights, rtol=1e-12)
    np.testing.assert_allclose(net.layers[0].dweights, trace.layers[0].dweights, rtol=1e-12)
    fig = plot.network(net, trace=trace)
    grads = [w for w in texts(fig) if w.startswith("∂")]
    assert sorted(grads) == sorted(
        [
            "∂1",
            "∂1",
            "∂0",
            "∂0",
            "∂1.5",
            "∂0.5",  # edges
            "∂1",
            "∂1",
            "∂1",
        ]
    )  # biases
    render(fig)
    # a trace that lists the Dropout layers as well as the Dense ones
    net2 = cbp.Network([cbp.Dense(2, 3, seed=0), cbp.Dropout(0.5), cbp.Dense(3, 1, seed=1)])
    per_layer = [
        types.SimpleNamespace(dweights=np.full((2, 3), 0.25), dbias=np.zeros(3)),
        types.SimpleNamespace(dweights=None, dbias=None),
        types.SimpleNamespace(dweights=np.full((3, 1), -4.0), dbias=np.zeros(1)),
    ]
    words = texts(plot.network(net2, trace=types.SimpleNamespace(layers=per_layer)))
    assert words.count("∂0.25") == 6 and words.count("∂-4") == 3
    assert any("after dropout 0.5" in w for w in words)
    with pytest.raises(ValueError, match="the trace has 1 layers"):
        plot.network(net2, trace=types.SimpleNamespace(layers=per_layer[:1]))


@needs_matplotlib
def test_network_width_limit():
    wide = cbp.Network([cbp.Dense(2, 9, seed=0), cbp.Dense(9, 1, seed=1)])
    with pytest.raises(ValueError, match="at most 8 units a layer.*max_units=9"):
        plot.network(wide)
    fig = plot.network(wide, max_units=9, input_names=["age", "height"])
    assert len(fig.axes[0].get_lines()) == 2 * 9 + 9
    assert {"age", "height"} <= set(texts(fig))
    eight = cbp.Network([cbp.Dense(8, 8, "tanh", seed=0), cbp.Dense(8, 3, "softmax", seed=1)])
    fig = plot.network(eight)
    W = eight.layers[0].weights
    words = texts(fig)
    for value in (W[0, 0], W[7, 7], W[3, 5]):
        assert f"{value:.3g}" in words
    _, (w, h) = render(fig)
    assert w > h
