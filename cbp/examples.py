"""Worked examples: the seed tutorials' networks, and Matt Mazur's 2-2-2
sigmoid network, each built with its own settings.

Every example is a function ``(backend=None) -> (net, X, y, lr)``, with a
one-line title and the names its text gives the weights, so that
:meth:`cbp.trace.Trace.explain` can write the chain rule in the tutorial's
own notation::

    from cbp import examples
    from cbp.trace import trace

    net, X, y, lr = examples.get("001")
    print(trace(net, X, y, lr).explain(names=examples.names("001")))
    print(examples.explain("mazur"))      # the same, in one call

``examples.EXAMPLES`` maps each key ("000", "001", "002", "003", "004",
"mazur") to its :class:`Example`.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .network import Dense, Network

__all__ = ["Example", "EXAMPLES", "NAMES", "get", "names", "explain", "titles"]


@dataclass(frozen=True)
class Example:
    """A named worked example: ``build(backend)`` returns (net, X, y, lr)."""

    key: str
    title: str
    build: Callable
    names: dict[str, str] = field(default_factory=dict)

    def __call__(self, backend=None):
        return self.build(backend)


def _seed000(backend=None):
    """Tutorial 000: 1-1-1, ReLU hidden node, linear output, J = ½(y − y_target)²,
    the first training pair (2, 2) and learning rate 0.1."""
    hidden = Dense(1, 1, "relu", weights=[[0.5]], bias=[0.2])  # w, b
    output = Dense(1, 1, "identity", weights=[[0.3]], bias=[0.1])  # v, c
    net = Network([hidden, output], loss="half_squared_error", backend=backend)
    return net, np.array([[2.0]]), np.array([[2.0]]), 0.1


def _seed001(backend=None):
    """Tutorial 001: 2-2-1 ReLU, loss (pred − true)², input (1, 0), true value 2,
    LR 0.01.  node1 = relu(input1·w1 + input2·w3 + bias1), node2 =
    relu(input1·w2 + input2·w4 + bias2): W1 = [[w1, w2], [w3, w4]]."""
    hidden = Dense(2, 2, "relu", weights=[[1.0, 0.5], [1.0, -0.5]], bias=[0.5, 0.0])
    output = Dense(2, 1, "relu", weights=[[1.0], [1.0]], bias=[0.5])
    net = Network([hidden, output], loss="squared_error", backend=backend)
    return net, np.array([[1.0, 0.0]]), np.array([[2.0]]), 0.01


def _seed002(backend=None):
    """Tutorial 002: the exercise, 2-2-1 ReLU without biases, Loss = ½(y − y_actual)²,
    x = (1, −1), y_actual = 0, η = 0.1.  x3 = x1·w13 + x2·w23, x4 = x1·w14 +
    x2·w24: W1 = [[w13, w14], [w23, w24]], W2 = [[w35], [w45]]."""
    hidden = Dense(2, 2, "relu", use_bias=False, weights=[[2.0, 1.0], [-3.0, 4.0]])
    output = Dense(2, 1, "relu", use_bias=False, weights=[[2.0], [-1.0]])
    net = Network([hidden, output], loss="half_squared_error", backend=backend)
    return net, np.array([[1.0, -1.0]]), np.array([[0.0]]), 0.1


def _seed003(backend=None):
    """Tutorial 003's single neuron: 3 inputs, ReLU, Loss = ReLU(...)², weights
    (−3, −1, 2), bias 1, inputs (1, −2, 3), target 0, learning rate 0.001."""
    neuron = Dense(3, 1, "relu", weights=[[-3.0], [-1.0], [2.0]], bias=[1.0])
    net = Network([neuron], loss="squared_error", backend=backend)
    return net, np.array([[1.0, -2.0, 3.0]]), np.array([[0.0]]), 0.001


def _seed004(backend=None):
    """Tutorial 004: XOR, 2-4-1 sigmoid without biases, full batch, the update of
    ½Σ(y − output)², learning rate 0.1; the weights are U[0, 1) draws (the
    seed's np.random.uniform), here from np.random.default_rng(0)."""
    rng = np.random.default_rng(0)
    w1 = rng.uniform(size=(2, 4))
    w2 = rng.uniform(size=(4, 1))
    hidden = Dense(2, 4, "sigmoid", use_bias=False, weights=w1)
    output = Dense(4, 1, "sigmoid", use_bias=False, weights=w2)
    net = Network([hidden, output], loss="half_squared_error", reduction="sum", backend=backend)
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    return net, X, np.array([[0.0], [1.0], [1.0], [0.0]]), 0.1


def _mazur(backend=None):
    """Matt Mazur's "A Step by Step Backpropagation Example": 2-2-2 sigmoid,
    inputs (0.05, 0.10), targets (0.01, 0.99), E = Σ ½(target − out)²,
    learning rate 0.5.  Mazur numbers w1: i1->h1, w2: i2->h1, w3: i1->h2,
    w4: i2->h2, so W1 = [[w1, w3], [w2, w4]] = [[.15, .25], [.20, .30]], and
    likewise W2 = [[w5, w7], [w6, w8]]; b1 = .35 feeds both hidden units and
    b2 = .60 both outputs.  Mazur never updates the biases, so they stay
    fixed (``bias_trainable=False``); one step's new weights do not depend on
    that either way."""
    hidden = Dense(
        2,
        2,
        "sigmoid",
        weights=[[0.15, 0.25], [0.20, 0.30]],
        bias=[0.35, 0.35],
        bias_trainable=False,
    )
    output = Dense(
        2,
        2,
        "sigmoid",
        weights=[[0.40, 0.50], [0.45, 0.55]],
        bias=[0.60, 0.60],
        bias_trainable=False,
    )
    net = Network([hidden, output], loss="half_squared_error", reduction="sum", backend=backend)
    return net, np.array([[0.05, 0.10]]), np.array([[0.01, 0.99]]), 0.5


EXAMPLES = {
    "000": Example(
        "000",
        "Tutorial 000: 1-1-1 ReLU regression, one per-example step on (2, 2)",
        _seed000,
        {
            "x1": "x",
            "w1": "w",
            "bias1": "b",
            "z_h1": "z",
            "h1": "h",
            "w2": "v",
            "bias2": "c",
            "z": "z_out",
            "ŷ": "y",
            "y": "y_target",
            "L": "J",
        },
    ),
    "001": Example(
        "001", "Tutorial 001: a 2-2-1 ReLU network worked by hand (dL/dw5 = 1.5)", _seed001
    ),
    "002": Example(
        "002",
        "Tutorial 002: the 2-2-1 ReLU exercise without biases (w13 .. w45)",
        _seed002,
        {
            "w1": "w13",
            "w2": "w14",
            "w3": "w23",
            "w4": "w24",
            "w5": "w35",
            "w6": "w45",
            "z_h1": "x3",
            "z_h2": "x4",
            "h1": "y3",
            "h2": "y4",
            "z": "x5",
            "ŷ": "y5",
            "y": "y_actual",
        },
    ),
    "003": Example(
        "003",
        "Tutorial 003: nnfs's single ReLU neuron, loss = output²",
        _seed003,
        {"x1": "x0", "x2": "x1", "x3": "x2", "w1": "w0", "w2": "w1", "w3": "w2", "bias1": "b0"},
    ),
    "004": Example(
        "004", "Tutorial 004: XOR with a 2-4-1 sigmoid network, one full-batch step", _seed004
    ),
    "mazur": Example(
        "mazur",
        "Mazur's step-by-step example: 2-2-2 sigmoid, E = Σ ½(t − o)², lr 0.5",
        _mazur,
        {
            "x1": "i1",
            "x2": "i2",
            "w1": "w1",
            "w2": "w3",
            "w3": "w2",
            "w4": "w4",
            "w5": "w5",
            "w6": "w7",
            "w7": "w6",
            "w8": "w8",
            "bias1": "b1_h1",
            "bias2": "b1_h2",
            "bias3": "b2_o1",
            "bias4": "b2_o2",
            "z_h1": "net_h1",
            "z_h2": "net_h2",
            "h1": "out_h1",
            "h2": "out_h2",
            "z_o1": "net_o1",
            "z_o2": "net_o2",
            "o1": "out_o1",
            "o2": "out_o2",
            "t1": "target_o1",
            "t2": "target_o2",
            "L": "E",
        },
    ),
}


#: the examples' keys, in order
NAMES = tuple(EXAMPLES)


def _example(key):
    try:
        return EXAMPLES[key]
    except KeyError:
        raise ValueError(
            f"unknown example {key!r}; expected one of: {', '.join(EXAMPLES)}"
        ) from None


def get(key, backend=None):
    """Build example ``key``: returns (net, X, y, lr)."""
    return _example(key)(backend)


def names(key):
    """The example's names for :meth:`Trace.explain` (a new dict)."""
    return dict(_example(key).names)


def titles():
    """{key: one-line title} of every example."""
    return {k: e.title for k, e in EXAMPLES.items()}


def explain(key, backend=None, **kwargs):
    """Build example ``key``, trace one step of it and return the explanation
    in the example's own names (keyword arguments go to ``explain``)."""
    from .trace import trace

    net, X, y, lr = get(key, backend)
    kwargs.setdefault("names", names(key))
    return f"{_example(key).title}\n\n" + trace(net, X, y, lr=lr).explain(**kwargs)
