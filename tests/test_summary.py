"""cbp.summary: the layer table."""

import cbp
from cbp.summary import Summary, summary


def rows(text):
    """The table's rows (between the two rules), split on runs of spaces."""
    lines = text.splitlines()
    rules = [i for i, line in enumerate(lines) if set(line) == {"-"}]
    assert len(rules) == 2
    return [line.split("  ") for line in lines[rules[0] + 1 : rules[1]]], lines


def cells(row):
    return [c.strip() for c in row if c.strip()]


def test_summary_table(backend):
    net = cbp.Network(
        [
            cbp.Dense(784, 256, "relu"),
            cbp.Dropout(0.2),
            cbp.Dense(256, 10, "leaky_relu", trainable=False, use_bias=False),
            cbp.Dense(10, 3, "softmax"),
        ],
        loss="categorical_crossentropy",
        backend=backend,
        seed=0,
        optimizer=cbp.optim.Adam(),
    )
    text = summary(net)
    assert isinstance(text, Summary) and isinstance(text, str)
    assert repr(text) == str(text)  # shown as the table at the prompt
    table, lines = rows(text)
    assert lines[0].split() == [
        "#",
        "layer",
        "activation",
        "input",
        "output",
        "weights",
        "bias",
        "trainable",
    ]
    assert [cells(r) for r in table] == [
        ["0", "Dense", "relu", "(batch, 784)", "(batch, 256)", "200704", "256", "yes"],
        ["1", "Dropout(0.2)", "-", "(batch, 256)", "(batch, 256)", "0", "-", "-"],
        ["2", "Dense", "leaky_relu (alpha 0.01)", "(batch, 256)", "(batch, 10)", "2560", "-", "no"],
        ["3", "Dense", "softmax", "(batch, 10)", "(batch, 3)", "30", "3", "yes"],
    ]
    total = 784 * 256 + 256 + 256 * 10 + 10 * 3 + 3
    assert total == net.parameters.size
    assert f"total parameters: {total}" in text
    assert f"trainable parameters: {total - 2560}" in text
    assert "non-trainable parameters: 2560" in text
    assert f"backend: {backend}" in text and "optimizer: Adam" in text
    assert "loss: categorical_crossentropy (mean)" in text


def test_summary_counts_a_frozen_bias(backend):
    net = cbp.Network(
        [cbp.Dense(2, 2, "sigmoid"), cbp.Dense(2, 1, "identity")], backend=backend, seed=1
    )
    net.layers[0].bias_trainable = False  # the flag Dense is getting
    text = summary(net)
    table, _ = rows(text)
    assert cells(table[0])[-1] == "weights only"
    assert cells(table[1])[-1] == "yes"
    assert "total parameters: 9" in text
    assert "trainable parameters: 7" in text
    assert "epochs trained: 0" in text
    net.fit([[0.0, 1.0]], [[1.0]], epochs=3, lr=0.1)
    assert "epochs trained: 3" in summary(net)


def test_summary_leaves_the_network_alone(backend):
    net = cbp.Network([cbp.Dense(3, 2, "tanh")], backend=backend, seed=2)
    before = net.parameters.copy()
    summary(net)
    assert (net.parameters == before).all() and net.epochs_trained == 0
