"""The public API: :class:`Dense` layers and the :class:`Network` that trains them."""
import math

import numpy as np

from . import _backend
from . import _codes as C
from . import _validation as V

__all__ = ["Dense", "Network"]

INITS = ("glorot", "he", "nnfs", "uniform")


class Dense:
    """A fully connected layer: ``A = f(X @ W + b)``.

    Parameters
    ----------
    n_inputs, n_neurons : int
        The layer maps (batch, n_inputs) to (batch, n_neurons).
    activation : str, default "relu"
        One of ``identity`` (alias ``linear``), ``relu``, ``leaky_relu``,
        ``prelu``, ``elu``, ``sigmoid`` (alias ``logistic``), ``tanh``,
        ``softmax``.
    use_bias : bool, default True
        Without a bias, ``bias`` and ``dbias`` are None.
    trainable : bool, default True
        A frozen layer takes part in forward and backward (its gradients are
        filled) but updates never change it.
    alpha : float, optional
        The slope or scale of ``leaky_relu`` (default 0.01), ``prelu`` (0.25)
        and ``elu`` (1.0).
    init : {"glorot", "he", "nnfs", "uniform"}, default "glorot"
        How the initial weights are drawn (biases start at zero):
        ``glorot`` is scikit-learn's Glorot-uniform, U(-r, r) with
        r = sqrt(6 / (n_inputs + n_neurons)), or sqrt(2 / ...) before a
        sigmoid; ``he`` is N(0, 2 / n_inputs); ``nnfs`` is 0.01 * N(0, 1);
        ``uniform`` is U[0, 1), as in the XOR seed.
    weights, bias : array_like, optional
        Initial values, copied in.  Given values are never redrawn.
    seed : int, optional
        Seed of this layer's draw.  Without one, the network's seed decides
        (see :class:`Network`).

    Attributes
    ----------
    weights : ndarray (n_inputs, n_neurons)
    bias : ndarray (n_neurons,) or None
    dweights, dbias : ndarray
        Gradients of the loss, filled by :meth:`Network.backward`.

    Once the layer is part of a network, these arrays are views into the
    network's flat ``parameters`` and ``gradients`` buffers.  Assigning
    ``layer.weights = W`` copies W in, after checking its shape.
    """

    def __init__(
        self,
        n_inputs,
        n_neurons,
        activation="relu",
        use_bias=True,
        trainable=True,
        *,
        alpha=None,
        init="glorot",
        weights=None,
        bias=None,
        seed=None,
    ):
        self.n_inputs = V.positive_int(n_inputs, "n_inputs")
        self.n_neurons = V.positive_int(n_neurons, "n_neurons")
        self._act = C.activation_code(activation)
        self.activation = activation.lower()
        if alpha is None:
            alpha = C.DEFAULT_ALPHA.get(self.activation, 0.0)
        self.alpha = V.real(alpha, "alpha")
        self.use_bias = bool(use_bias)
        self.trainable = bool(trainable)
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; expected one of: {', '.join(INITS)}")
        self.init = init
        self.seed = seed
        self.network = None
        self._store = None  # params of this layer: weights then bias, flat
        self._gstore = np.zeros(self.size)
        if weights is not None:
            self.weights = weights
        if bias is not None:
            self.bias = bias

    # -- storage ------------------------------------------------------------
    @property
    def size(self):
        """Number of parameters: n_inputs * n_neurons (+ n_neurons with bias)."""
        return self.n_inputs * self.n_neurons + (self.n_neurons if self.use_bias else 0)

    def _draw(self, rng):
        """Draw initial values into a new flat array."""
        ni, no = self.n_inputs, self.n_neurons
        store = np.zeros(self.size)
        W = store[: ni * no].reshape(ni, no)
        if self.init == "glorot":
            factor = 2.0 if self._act == C.ACT_SIGMOID else 6.0
            bound = math.sqrt(factor / (ni + no))
            W[...] = rng.uniform(-bound, bound, (ni, no))
            if self.use_bias:
                store[ni * no :] = rng.uniform(-bound, bound, no)
        elif self.init == "he":
            W[...] = rng.standard_normal((ni, no)) * math.sqrt(2.0 / ni)
        elif self.init == "nnfs":
            W[...] = 0.01 * rng.standard_normal((ni, no))
        else:  # uniform
            W[...] = rng.uniform(0.0, 1.0, (ni, no))
        return store

    def _materialize(self, rng=None):
        if self._store is None:
            if rng is None:
                rng = np.random.default_rng(self.seed)
            self._store = self._draw(rng)
        return self._store

    def _split(self, store):
        n = self.n_inputs * self.n_neurons
        W = store[:n].reshape(self.n_inputs, self.n_neurons)
        b = store[n:] if self.use_bias else None
        return W, b

    @property
    def weights(self):
        return self._split(self._materialize())[0]

    @weights.setter
    def weights(self, value):
        W = self._checked(value, (self.n_inputs, self.n_neurons), "weights")
        self._materialize()
        self._split(self._store)[0][...] = W

    @property
    def bias(self):
        return self._split(self._materialize())[1]

    @bias.setter
    def bias(self, value):
        if not self.use_bias:
            raise ValueError("this layer has no bias (use_bias=False)")
        b = self._checked(value, (self.n_neurons,), "bias")
        self._materialize()
        self._split(self._store)[1][...] = b

    def _checked(self, value, shape, name):
        A = np.asarray(value)
        if A.dtype.kind not in "iuf":
            raise TypeError(f"{name} must hold real numbers, got dtype {A.dtype}")
        if A.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {A.shape}")
        if not np.isfinite(A).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return A

    @property
    def dweights(self):
        return self._split(self._gstore)[0]

    @property
    def dbias(self):
        return self._split(self._gstore)[1]

    def __repr__(self):
        extra = "" if self.use_bias else ", use_bias=False"
        extra += "" if self.trainable else ", trainable=False"
        return f"Dense({self.n_inputs}, {self.n_neurons}, {self.activation!r}{extra})"


class Network:
    """A stack of layers trained by backpropagation.

    Parameters
    ----------
    layers : sequence of Dense
        Consecutive layers must agree on their widths.  The network adopts
        them: their arrays become views into its flat buffers, so a layer
        belongs to one network only.
    loss : str, default "squared_error"
        ``squared_error`` ((out - y)^2), ``half_squared_error`` (half that),
        ``categorical_crossentropy`` or ``binary_crossentropy``.
    reduction : {"mean", "sum"}, default "mean"
        How the per-element (per-sample for categorical cross-entropy)
        losses are combined over the batch.
    backend : {"native", "numpy"}, optional
        The compiled core (the default when it is built) or its NumPy twin.
        ``"native"`` raises :class:`NativeUnavailableError` if the core is
        not loaded; nothing falls back silently.
    seed : int, optional
        Seeds the initial draw of every layer that has neither given values
        nor a seed of its own; layer ``i`` uses ``[seed, i]``.

    Attributes
    ----------
    parameters, gradients : ndarray (n_params,)
        One contiguous float64 buffer each; every layer's arrays are views
        into them, weights before bias, layer after layer.
    """

    def __init__(self, layers, loss="squared_error", reduction="mean", backend=None, seed=None):
        layers = list(layers)
        if not layers:
            raise ValueError("a network needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Dense):
                raise TypeError(f"layer {i} is a {type(layer).__name__}, not a cbp layer")
            if layer.network is not None:
                raise ValueError(f"layer {i} ({layer!r}) already belongs to a network")
            if i and layer.n_inputs != layers[i - 1].n_neurons:
                raise ValueError(
                    f"layer {i} takes {layer.n_inputs} inputs but layer {i - 1} "
                    f"gives {layers[i - 1].n_neurons}"
                )
        if len(set(map(id, layers))) != len(layers):
            raise ValueError("the same layer appears twice in the network")
        self._loss = C.loss_code(loss)
        self.loss = loss.lower()
        self._reduction = C.reduction_code(reduction)
        self.reduction = reduction.lower()
        self._kernels = _backend.module(backend)
        self.backend = "native" if self._kernels is _backend._core else "numpy"
        self.seed = seed
        self.layers = tuple(layers)
        self._adopt()

    # -- construction -----------------------------------------------------
    def _adopt(self):
        sizes = [layer.size for layer in self.layers]
        self.parameters = np.zeros(sum(sizes))
        self.gradients = np.zeros(sum(sizes))
        meta = np.zeros((len(self.layers), C.N_META), dtype=np.int64)
        hyper = np.zeros((len(self.layers), C.N_HYPER))
        off = 0
        for i, layer in enumerate(self.layers):
            rng = None
            if layer._store is None and layer.seed is None and self.seed is not None:
                rng = np.random.default_rng([self.seed, i])
            n = layer.size
            self.parameters[off : off + n] = layer._materialize(rng)
            layer._store = self.parameters[off : off + n]
            layer._gstore = self.gradients[off : off + n]
            layer.network = self
            nw = layer.n_inputs * layer.n_neurons
            meta[i] = (
                C.KIND_DENSE,
                layer.n_inputs,
                layer.n_neurons,
                layer._act,
                off,
                off + nw if layer.use_bias else -1,
                int(layer.trainable),
            )
            hyper[i, C.H_ALPHA] = layer.alpha
            off += n
        self._meta, self._hyper = meta, hyper
        self._engine = self._kernels.Engine(
            meta, hyper, self.parameters, self.gradients, self._loss, self._reduction
        )
        self._batch = None  # samples of the last forward()

    @property
    def n_inputs(self):
        return self.layers[0].n_inputs

    @property
    def n_outputs(self):
        return self.layers[-1].n_neurons

    def __repr__(self):
        inner = ", ".join(map(repr, self.layers))
        return f"Network([{inner}], loss={self.loss!r}, backend={self.backend!r})"

    # -- the steps a learner inspects -------------------------------------
    def forward(self, X):
        """Run a batch through the network and keep what :meth:`backward` needs.

        Parameters
        ----------
        X : array_like (batch, n_inputs)

        Returns
        -------
        ndarray (batch, n_outputs)
            A new array: the network's output.
        """
        X = V.as_matrix(X, "X", self.n_inputs)
        out = self._engine.forward(X)
        self._batch = X.shape[0]
        return np.array(out)

    def backward(self, y):
        """Backpropagate the loss of the last :meth:`forward` output against y.

        Fills every layer's ``dweights``/``dbias`` (the ``gradients`` buffer).

        Parameters
        ----------
        y : array_like
            (batch, n_outputs), or (batch,) for one output or for integer class
            labels with categorical cross-entropy.

        Returns
        -------
        float
            The loss, penalties included.
        """
        if self._batch is None:
            raise RuntimeError("call forward(X) before backward(y)")
        Y = V.as_targets(y, self._batch, self.n_outputs, self._loss)
        return float(self._engine.backward(Y))

    def step(self, lr=0.1):
        """Apply one gradient-descent update: parameters -= lr * gradients.

        Frozen layers are left alone.  Raises :class:`DivergenceError` (and
        changes nothing) if the update would make a parameter NaN or infinite.
        """
        self._engine.sgd_step(V.real(lr, "lr", minimum=0.0, strict=True))

    def train_step(self, X, y, lr=0.1):
        """forward, backward and step fused in one call.

        Returns
        -------
        float
            The loss before the update.
        """
        X = V.as_matrix(X, "X", self.n_inputs)
        Y = V.as_targets(y, X.shape[0], self.n_outputs, self._loss)
        lr = V.real(lr, "lr", minimum=0.0, strict=True)
        self._batch = X.shape[0]
        return float(self._engine.train_step(X, Y, lr))

    def predict(self, X):
        """The network's output for X; touches no cached state.

        Returns
        -------
        ndarray (batch, n_outputs)
        """
        X = V.as_matrix(X, "X", self.n_inputs)
        return self._engine.predict(X)

    def fit(self, X, y, epochs=200, lr=0.001, batch_size=None):
        """Train by gradient descent.

        Parameters
        ----------
        X : array_like (n_samples, n_inputs)
        y : array_like
            Targets, as for :meth:`backward`.
        epochs : int
        lr : float
        batch_size : int, optional
            None: one full-batch update an epoch; 1: one update a sample, in
            order (seed 000); k: batches of k samples, the last one partial.

        Returns
        -------
        dict
            ``loss``: float64 array (epochs,), each epoch's mean of its batch
            losses, each taken before its update.
        """
        X = V.as_matrix(X, "X", self.n_inputs)
        Y = V.as_targets(y, X.shape[0], self.n_outputs, self._loss)
        epochs = V.positive_int(epochs, "epochs")
        lr = V.real(lr, "lr", minimum=0.0, strict=True)
        n = X.shape[0]
        bs = n if batch_size is None else min(V.positive_int(batch_size, "batch_size"), n)
        losses = np.empty(epochs)
        starts = range(0, n, bs)
        for e in range(epochs):
            total = 0.0
            for s in starts:
                total += self._engine.train_step(X[s : s + bs], Y[s : s + bs], lr)
            losses[e] = total / len(starts)
        self._batch = None
        return {"loss": losses}
