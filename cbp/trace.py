"""One forward and backward pass, every intermediate kept: what a learner
needs to see each partial derivative of a network.

:func:`trace` runs a batch through a network with the backend's own kernels
(``net._kernels``: ``cbp._core`` or its NumPy twin ``cbp._reference``),
layer by layer, and keeps every array the chain rule passes through.  It
works on copies of the parameters, so the network is left exactly as it was:
parameters, gradients, optimizer state, epoch count and the forward pass
cached for :meth:`Network.backward` are untouched.

Weights are named as in seed tutorial 001: the weights of the first dense
layer are ``w1, w2, ...`` row-major over ``W`` of shape (n_inputs,
n_neurons), so in a 2-2-1 network ``w1: x1->h1, w2: x1->h2, w3: x2->h1,
w4: x2->h2``, and the numbering continues into the next layer (``w5: h1->y,
w6: h2->y``).  Biases are numbered by unit across the layers: ``bias1,
bias2`` for the two hidden units, ``bias3`` for the output unit.  The same
order is the order of ``net.parameters``.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from . import _codes, _validation

__all__ = ["trace", "Trace", "LayerTrace", "weight_names"]


@dataclass(repr=False)
class LayerTrace:
    """The arrays of one layer in a :class:`Trace`, all float64 NumPy arrays
    of shape (batch, width) unless stated.

    Attributes
    ----------
    index : int
        Position of the layer in ``net.layers``.
    kind : {"Dense", "Dropout"}
    activation : str
        The activation's name (``"identity"`` for a dropout layer, which
        passes its input through outside ``fit``).
    inputs : the layer's input (the previous layer's ``a``, or X).
    z : the pre-activation ``inputs @ W + b`` (dropout: its input).
    a : the activation ``f(z)``, the layer's output.
    da : dL/da.
    derivative : f'(z) elementwise, or None for softmax (whose derivative is
        a Jacobian: ``dz`` is ``a * (da - sum(da * a))`` row by row).
    dz : dL/dz.  For the output layer of the fused pairs (softmax with
        categorical cross-entropy, sigmoid with binary cross-entropy) it is
        the fused ``(a - y) * s`` of the backend's ``output_delta``.
    dinputs : dL/d(inputs), shape (batch, n_inputs).
    weights, bias : the values the pass used, (n_inputs, n_neurons) and
        (n_neurons,); None for dropout (bias None without one).
    dweights, dbias : dL/dW and dL/db, penalty gradients included; what
        ``net.backward`` leaves in ``layer.dweights`` / ``layer.dbias``.
    updated_weights, updated_bias : after one plain gradient-descent step
        ``p - lr * dp`` when :func:`trace` was given ``lr`` (values of a
        frozen layer, or a bias with ``bias_trainable`` False, stay as they
        are); None without ``lr``.
    trainable, bias_trainable : bool
        Whether a step changes the weights, and the bias.
    weight_l1, weight_l2, bias_l1, bias_l2 : float
        The layer's penalties (0 for dropout).
    alpha : float
        The activation's slope or scale (leaky_relu, prelu, elu).
    rate : float or None
        A dropout layer's rate.
    """

    index: int
    kind: str
    activation: str
    inputs: np.ndarray
    z: np.ndarray
    a: np.ndarray
    da: np.ndarray | None = None
    derivative: np.ndarray | None = None
    dz: np.ndarray | None = None
    dinputs: np.ndarray | None = None
    weights: np.ndarray | None = None
    bias: np.ndarray | None = None
    dweights: np.ndarray | None = None
    dbias: np.ndarray | None = None
    updated_weights: np.ndarray | None = None
    updated_bias: np.ndarray | None = None
    trainable: bool = False
    bias_trainable: bool = False
    weight_l1: float = 0.0
    weight_l2: float = 0.0
    bias_l1: float = 0.0
    bias_l2: float = 0.0
    alpha: float = 0.0
    rate: float | None = None

    @property
    def n_inputs(self):
        return self.inputs.shape[1]

    @property
    def n_neurons(self):
        return self.a.shape[1]

    def __repr__(self):
        what = self.kind if self.kind == "Dropout" else f"Dense {self.activation}"
        return f"LayerTrace({self.index}: {what}, {self.n_inputs} -> {self.n_neurons})"


@dataclass(repr=False)
class Trace:
    """The result of :func:`trace`: one forward and backward pass, kept.

    Attributes
    ----------
    X : ndarray (batch, n_inputs)
    y : ndarray (batch, n_outputs)
        The targets as the loss saw them (integer labels become one-hot rows).
    output : ndarray (batch, n_outputs)
        The network's output (the last layer's ``a``).
    loss : float
        The loss, penalties included (what ``net.backward`` returns).
    data_loss, penalty : float
        The loss without penalties, and the penalties.
    layers : list of LayerTrace
        One a layer of the network, in order.
    lr : float or None
        The learning rate of the step in ``updated_weights``, if one was given.
    loss_name, reduction, backend : str
    network : str
        The network's repr.

    ``print(trace)`` writes :meth:`explain`'s text.
    """

    X: np.ndarray
    y: np.ndarray
    output: np.ndarray
    loss: float
    data_loss: float
    penalty: float
    layers: list[LayerTrace] = field(default_factory=list)
    lr: float | None = None
    loss_name: str = ""
    reduction: str = "mean"
    backend: str = ""
    network: str = ""

    @property
    def batch_size(self):
        return self.X.shape[0]

    @property
    def dense_layers(self):
        """The LayerTrace of every dense layer, in order."""
        return [lt for lt in self.layers if lt.kind == "Dense"]

    def _flat(self, wname, bname):
        parts = []
        for lt in self.dense_layers:
            parts.append(getattr(lt, wname).reshape(-1))
            b = getattr(lt, bname)
            if b is not None:
                parts.append(b)
        return np.concatenate(parts) if parts else np.empty(0)

    @property
    def gradients(self):
        """Every dweights and dbias, flat, in the order of ``net.parameters``."""
        return self._flat("dweights", "dbias")

    @property
    def parameters(self):
        """The parameters the pass used, flat, in the order of ``net.parameters``."""
        return self._flat("weights", "bias")

    @property
    def updated_parameters(self):
        """The parameters after the step, flat (None without ``lr``)."""
        if self.lr is None:
            return None
        return self._flat("updated_weights", "updated_bias")

    def explain(self, names=None, detail=None, ascii=False):
        """The chain rule written out with this pass's numbers.

        Parameters
        ----------
        names : dict, optional
            Display names for the default symbols: weights ``w1, w2, ...``,
            biases ``bias1, ...``, inputs ``x1, ...``, hidden units ``h1, ...``
            (``h1_1, ...`` with several hidden layers) and their
            pre-activations ``z_h1, ...``, outputs ``ŷ`` (one output) or
            ``o1, ...`` with ``z`` or ``z_o1, ...``, targets ``y`` or
            ``t1, ...``.  Example: seed 002 names ``w1`` ``"w13"``.
        detail : bool, optional
            True: every partial derivative (a batch of one sample only);
            False: a per-layer table of shapes and norms.  By default the
            detail is written for one sample and at most 12 weights.
        ascii : bool, default False
            Plain ASCII (``y_hat``, ``*``, ``<-``) instead of ``ŷ``, ``·``,
            ``←``.

        Returns
        -------
        str
        """
        from ._explain import explain

        return explain(self, names=names, detail=detail, ascii=ascii)

    def __str__(self):
        return self.explain()

    def __repr__(self):
        lr = "" if self.lr is None else f", lr={self.lr:g}"
        return (
            f"Trace(loss={self.loss:.9g}, batch={self.batch_size}, "
            f"layers={len(self.layers)}{lr}, backend={self.backend!r})"
        )


def weight_names(net):
    """The default names of the network's parameters, in the order of
    ``net.parameters``: ``w1, w2, ...`` row-major over each dense layer's
    weights, then its biases ``bias<unit>``, layer after layer."""
    out = []
    w, unit = 0, 0
    for layer in net.layers:
        if type(layer).__name__ != "Dense":
            continue
        n = layer.n_inputs * layer.n_neurons
        out.extend(f"w{w + k + 1}" for k in range(n))
        w += n
        if layer.use_bias:
            out.extend(f"bias{unit + j + 1}" for j in range(layer.n_neurons))
        unit += layer.n_neurons
    return out


# --------------------------------------------------------------------------
# The pass itself, on explicit parameter values (gradcheck reuses it)
# --------------------------------------------------------------------------
def _specs(net):
    """One dict a layer: what the pass needs to know about it."""
    out = []
    for i, layer in enumerate(net.layers):
        kind = type(layer).__name__
        if kind == "Dense":
            out.append(
                {
                    "index": i,
                    "kind": "Dense",
                    "activation": layer.activation,
                    "act": _codes.activation_code(layer.activation),
                    "alpha": float(layer.alpha),
                    "trainable": bool(layer.trainable),
                    "bias_trainable": bool(
                        layer.trainable
                        and layer.use_bias
                        and getattr(layer, "bias_trainable", True)
                    ),
                    "weight_l1": float(layer.weight_l1),
                    "weight_l2": float(layer.weight_l2),
                    "bias_l1": float(layer.bias_l1),
                    "bias_l2": float(layer.bias_l2),
                }
            )
        elif kind == "Dropout":
            out.append(
                {
                    "index": i,
                    "kind": "Dropout",
                    "activation": "identity",
                    "act": _codes.activation_code("identity"),
                    "alpha": 0.0,
                    "rate": float(layer.rate),
                }
            )
        else:
            raise TypeError(f"layer {i} is a {kind}, which trace does not know")
    return out


def _values(net):
    """Copies of every dense layer's (W, b), None for dropout layers."""
    out = []
    for layer in net.layers:
        if type(layer).__name__ == "Dense":
            W = np.array(layer.weights, dtype=np.float64, order="C")
            b = None if layer.bias is None else np.array(layer.bias, dtype=np.float64)
            out.append((W, b))
        else:
            out.append(None)
    return out


def _forward(K, specs, values, X):
    """[(inputs, z, a)] of every layer, computed with the kernels of K.
    Dropout is the identity (it is off outside fit)."""
    rows = []
    A = X
    for spec, wb in zip(specs, values):
        if spec["kind"] == "Dropout":
            rows.append((A, A.copy(), A.copy()))
            A = rows[-1][2]
            continue
        W, b = wb
        Z = np.empty((A.shape[0], W.shape[1]))
        K.dense_forward(A, W, b, Z)
        An = np.empty_like(Z)
        K.activation_forward(spec["act"], Z, An, spec["alpha"])
        rows.append((A, Z, An))
        A = An
    return rows


def _penalty(K, specs, values):
    """The summed L1/L2 penalties, with the backend's kernel."""
    total = 0.0
    for spec, wb in zip(specs, values):
        if spec["kind"] != "Dense":
            continue
        W, b = wb
        total += K.penalty(W.reshape(-1), spec["weight_l1"], spec["weight_l2"])
        if b is not None:
            total += K.penalty(b, spec["bias_l1"], spec["bias_l2"])
    return float(total)


def _loss(K, specs, values, X, Y, loss, reduction):
    """(loss with penalties, data loss) of explicit parameter values."""
    rows = _forward(K, specs, values, X)
    data = float(K.loss_value(loss, rows[-1][2], Y, reduction))
    return data + _penalty(K, specs, values), data


def _inputs(net, X, y):
    loss = _codes.loss_code(net.loss)
    X = _validation.as_matrix(X, "X", net.n_inputs)
    Y = _validation.as_targets(y, X.shape[0], net.n_outputs, loss)
    return X, Y, loss, _codes.reduction_code(net.reduction)


def trace(net, X, y, lr=None):
    """Run one forward and backward pass of ``net`` on (X, y) and keep every
    intermediate array; the network is left unchanged.

    Parameters
    ----------
    net : cbp.Network
    X : array_like (batch, n_inputs)
    y : array_like
        Targets, as for :meth:`Network.backward` (integer labels for
        categorical cross-entropy become one-hot rows).
    lr : float, optional
        Also compute the weights and biases after one plain gradient-descent
        step ``p - lr * dp`` (``updated_weights``, ``updated_bias``), for the
        trainable layers and biases only.

    Returns
    -------
    Trace
        The loss, the output and one :class:`LayerTrace` a layer.  Its
        ``dweights`` and ``dbias`` equal what ``net.forward(X);
        net.backward(y)`` would leave in each layer, penalties included.

    Notes
    -----
    The pass calls the backend's registry kernels one by one
    (``dense_forward``, ``activation_forward``, ``loss_gradient``,
    ``output_delta``, ``activation_backward``, ``dense_backward``,
    ``penalty``, ``add_penalty_gradient``, ``sgd_update``), so a native and
    a NumPy network give the same trace to rounding.  Dropout layers are the
    identity, as everywhere outside ``fit``.
    """
    X, Y, loss, reduction = _inputs(net, X, y)
    X, Y = X.copy(), Y.copy()  # the trace owns its arrays
    if lr is not None:
        lr = _validation.real(lr, "lr", minimum=0.0, strict=True)
    K = net._kernels
    with net._guard.using:  # a consistent copy: no other thread trains meanwhile
        specs = _specs(net)
        values = _values(net)
    with np.errstate(all="ignore"):  # overflow is reported below, as the network does
        rows = _forward(K, specs, values, X)
        layers = []
        for spec, wb, (Ain, Z, A) in zip(specs, values, rows):
            lt = LayerTrace(
                index=spec["index"],
                kind=spec["kind"],
                activation=spec["activation"],
                inputs=Ain,
                z=Z,
                a=A,
                alpha=spec["alpha"],
            )
            if spec["kind"] == "Dense":
                lt.weights, lt.bias = wb
                lt.trainable, lt.bias_trainable = spec["trainable"], spec["bias_trainable"]
                for key in ("weight_l1", "weight_l2", "bias_l1", "bias_l2"):
                    setattr(lt, key, spec[key])
            else:
                lt.rate = spec["rate"]
            if spec["activation"] != "softmax":
                ones = np.ones_like(Z)
                lt.derivative = np.empty_like(Z)
                K.activation_backward(spec["act"], Z, A, ones, lt.derivative, spec["alpha"])
            layers.append(lt)

        # the output layer: dL/da from the loss, dL/dz from the (fused) delta
        out = layers[-1]
        out.da = np.empty_like(out.a)
        K.loss_gradient(loss, out.a, Y, out.da, reduction)
        out.dz = np.empty_like(out.z)
        data_loss = float(
            K.output_delta(
                specs[-1]["act"], loss, out.z, out.a, Y, out.dz, reduction, specs[-1]["alpha"]
            )
        )
        for l in range(len(layers) - 1, -1, -1):
            lt, spec = layers[l], specs[l]
            if l < len(layers) - 1:
                lt.da = layers[l + 1].dinputs
                lt.dz = np.empty_like(lt.z)
                K.activation_backward(spec["act"], lt.z, lt.a, lt.da, lt.dz, spec["alpha"])
            if spec["kind"] == "Dropout":
                lt.dinputs = lt.dz.copy()
                continue
            lt.dweights = np.empty_like(lt.weights)
            lt.dbias = None if lt.bias is None else np.empty_like(lt.bias)
            lt.dinputs = np.empty_like(lt.inputs)
            K.dense_backward(lt.inputs, lt.weights, lt.dz, lt.dweights, lt.dbias, lt.dinputs)
        for lt in layers:  # L1/L2 penalties (nnfs semantics), as the engine adds them
            if lt.kind != "Dense":
                continue
            K.add_penalty_gradient(
                lt.weights.reshape(-1), lt.dweights.reshape(-1), lt.weight_l1, lt.weight_l2
            )
            if lt.bias is not None:
                K.add_penalty_gradient(lt.bias, lt.dbias, lt.bias_l1, lt.bias_l2)
        pen = _penalty(K, specs, values)
        if lr is not None:
            for lt in layers:
                if lt.kind != "Dense":
                    continue
                lt.updated_weights = lt.weights.copy()
                if lt.trainable:
                    K.sgd_update(lt.updated_weights.reshape(-1), lt.dweights.reshape(-1), lr)
                if lt.bias is not None:
                    lt.updated_bias = lt.bias.copy()
                    if lt.bias_trainable:
                        K.sgd_update(lt.updated_bias, lt.dbias, lr)
    total = data_loss + pen
    if not math.isfinite(total) or not np.isfinite(out.a).all():
        raise FloatingPointError(
            f"the loss is {total}: the network's output or the loss overflowed"
        )
    return Trace(
        X=X,
        y=Y,
        output=out.a,
        loss=total,
        data_loss=data_loss,
        penalty=pen,
        layers=layers,
        lr=lr,
        loss_name=net.loss,
        reduction=net.reduction,
        backend=net.backend,
        network=repr(net),
    )
