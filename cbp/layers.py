"""The layers a :class:`~cbp.Network` is built from, and how their initial
values are drawn.

A layer holds its settings and, once a network adopts it, views into the
network's flat ``parameters`` and ``gradients`` buffers.  Settings that the
engine's layer table holds (activation, penalties, ``trainable``,
``bias_trainable``, a dropout rate) may be changed on an adopted layer: the
network rebuilds its table.
Sizes are fixed when the layer is made.
"""

import math

import numpy as np

from . import _codes, _validation

__all__ = ["Dense", "Dropout", "INITS", "LAYER_TYPES"]

#: the ways :class:`Dense` draws its initial values
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
    bias_trainable : bool, default True
        False: the bias stays fixed, as in Mazur's worked example.  It takes
        part in forward and backward (``dbias`` is filled) but no update
        changes it (``step``, ``train_step``, ``fit``, every optimizer); the
        weights still train if ``trainable``.
    alpha : float, optional
        The slope or scale of ``leaky_relu`` (default 0.01), ``prelu`` (0.25)
        and ``elu`` (1.0).
    init : {"glorot", "he", "nnfs", "uniform"}, default "glorot"
        How the initial values are drawn.  ``glorot`` is scikit-learn's
        Glorot-uniform: weights and biases from U(-r, r) with
        r = sqrt(6 / (n_inputs + n_neurons)), or sqrt(2 / ...) before a
        sigmoid.  The others start biases at zero: ``he`` draws weights from
        N(0, 2 / n_inputs), ``nnfs`` from 0.01 * N(0, 1), ``uniform`` from
        U[0, 1) as in the XOR seed.
    weights, bias : array_like, optional
        Initial values, copied in.  A layer given either is never drawn:
        what is not given starts at zero.
    seed : int, optional
        Seed of this layer's draw.  Without one, the network's seed decides
        (see :class:`Network`).
    weight_l1, weight_l2, bias_l1, bias_l2 : float, default 0
        Penalties with nnfs semantics: the loss gains ``l1 * sum|w|`` and
        ``l2 * sum(w**2)``, the gradients ``l1 * sign(w)`` and ``2 * l2 * w``.

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
        bias_trainable=True,
        alpha=None,
        init="glorot",
        weights=None,
        bias=None,
        seed=None,
        weight_l1=0.0,
        weight_l2=0.0,
        bias_l1=0.0,
        bias_l2=0.0,
    ):
        self._n_inputs = _validation.positive_int(n_inputs, "n_inputs")
        self._n_neurons = _validation.positive_int(n_neurons, "n_neurons")
        self._use_bias = bool(use_bias)
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; expected one of: {', '.join(INITS)}")
        self._init = init
        self._seed = None if seed is None else _validation.seed(seed)
        self._network = None
        self._set_activation(activation, alpha)
        self._trainable = bool(trainable)
        self._bias_trainable = _flag(bias_trainable, "bias_trainable")
        self._weight_l1 = _validation.real(weight_l1, "weight_l1", minimum=0.0)
        self._weight_l2 = _validation.real(weight_l2, "weight_l2", minimum=0.0)
        self._bias_l1 = _validation.real(bias_l1, "bias_l1", minimum=0.0)
        self._bias_l2 = _validation.real(bias_l2, "bias_l2", minimum=0.0)
        self._store = None  # params of this layer: weights then bias, flat
        self._gstore = np.zeros(self.size)
        if weights is not None:
            self.weights = weights
        if bias is not None:
            self.bias = bias

    # -- settings -----------------------------------------------------------
    # Sizes and the initial draw are fixed; the settings the engine's layer
    # table holds may change, and an adopting network then rebuilds its table
    # (refused while the network trains, and from other threads).
    network = property(
        lambda self: self._network, doc="The network that adopted the layer, or None."
    )
    n_inputs = property(lambda self: self._n_inputs, doc="Width of the layer's input.")
    n_neurons = property(lambda self: self._n_neurons, doc="Width of the layer's output.")
    use_bias = property(lambda self: self._use_bias, doc="Whether the layer has a bias.")
    init = property(lambda self: self._init, doc="How the initial values are drawn.")
    seed = property(lambda self: self._seed, doc="Seed of the initial draw (None: the network's).")

    def _set_activation(self, activation, alpha):
        code = _codes.activation_code(activation)
        name = activation.lower()
        if alpha is None:
            alpha = _codes.DEFAULT_ALPHA.get(name, 0.0)
        alpha = _validation.real(alpha, "alpha")
        self._act, self._activation, self._alpha = code, name, alpha

    def _reconfigure(self, change):
        """Apply ``change()`` and let the network rebuild its layer table."""
        if self.network is None:
            change()
        else:
            self.network._reconfigure(change)

    @property
    def activation(self):
        """The activation's name; setting it keeps ``alpha`` unless the new
        activation takes a different default."""
        return self._activation

    @activation.setter
    def activation(self, name):
        _codes.activation_code(name)  # check before anything changes
        net = self.network
        if net is not None and net.layers[-1] is self and net._check_output:
            _validation.check_output_activation(net.loss, name)
        keep = self._alpha if name.lower() == self._activation else None
        self._reconfigure(lambda: self._set_activation(name, keep))

    @property
    def alpha(self):
        """Slope or scale of ``leaky_relu``, ``prelu`` and ``elu``."""
        return self._alpha

    @alpha.setter
    def alpha(self, value):
        value = _validation.real(value, "alpha")
        self._reconfigure(lambda: setattr(self, "_alpha", value))

    @property
    def trainable(self):
        """Whether updates change this layer (its gradients are filled either way)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        value = bool(value)
        self._reconfigure(lambda: setattr(self, "_trainable", value))

    @property
    def bias_trainable(self):
        """Whether updates change the bias (of a trainable layer); ``dbias``
        is filled either way."""
        return self._bias_trainable

    @bias_trainable.setter
    def bias_trainable(self, value):
        value = _flag(value, "bias_trainable")
        self._reconfigure(lambda: setattr(self, "_bias_trainable", value))

    def _penalty_property(attr, doc):
        def get(self):
            return getattr(self, attr)

        def put(self, value):
            value = _validation.real(value, attr[1:], minimum=0.0)
            self._reconfigure(lambda: setattr(self, attr, value))

        return property(get, put, doc=doc)

    weight_l1 = _penalty_property("_weight_l1", "L1 penalty of the weights.")
    weight_l2 = _penalty_property("_weight_l2", "L2 penalty of the weights.")
    bias_l1 = _penalty_property("_bias_l1", "L1 penalty of the bias.")
    bias_l2 = _penalty_property("_bias_l2", "L2 penalty of the bias.")
    del _penalty_property

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
            factor = 2.0 if self._act == _codes.ACT_SIGMOID else 6.0
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
        """The layer's values, drawn on first need (see ``init`` and ``seed``)."""
        if self._store is None:
            if rng is None:
                rng = np.random.default_rng(self.seed)
            self._store = self._draw(rng)
        return self._store

    def _settable(self):
        """The store to write given values into: zeros if nothing was drawn yet."""
        if self._store is None:
            self._store = np.zeros(self.size)
        return self._store

    def _split(self, store):
        n = self.n_inputs * self.n_neurons
        W = store[:n].reshape(self.n_inputs, self.n_neurons)
        b = store[n:] if self.use_bias else None
        return W, b

    @property
    def weights(self):
        """The weights, (n_inputs, n_neurons); assigning copies values in."""
        return self._split(self._materialize())[0]

    @weights.setter
    def weights(self, value):
        W = self._checked(value, (self.n_inputs, self.n_neurons), "weights")
        self._write(0, W)

    @property
    def bias(self):
        """The bias, (n_neurons,), or None; assigning copies values in."""
        return self._split(self._materialize())[1]

    @bias.setter
    def bias(self, value):
        if not self.use_bias:
            raise ValueError("this layer has no bias (use_bias=False)")
        b = self._checked(value, (self.n_neurons,), "bias")
        self._write(1, b)

    def _write(self, part, value):
        """Copy checked values into the weights (part 0) or the bias (1)."""
        if self.network is None:
            self._split(self._settable())[part][...] = value
        else:
            with self.network._guard.using:  # refused while another thread owns it
                self._split(self._store)[part][...] = value

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
        """dL/dweights of the last backward pass (a view into the gradients)."""
        return self._split(self._gstore)[0]

    @property
    def dbias(self):
        """dL/dbias of the last backward pass, or None without a bias."""
        return self._split(self._gstore)[1]

    def get_config(self):
        """The constructor arguments (without initial values), as a dict."""
        return {
            "n_inputs": self.n_inputs,
            "n_neurons": self.n_neurons,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "trainable": self.trainable,
            "bias_trainable": self.bias_trainable,
            "alpha": self.alpha,
            "init": self.init,
            "seed": self.seed,
            "weight_l1": self.weight_l1,
            "weight_l2": self.weight_l2,
            "bias_l1": self.bias_l1,
            "bias_l2": self.bias_l2,
        }

    def _row(self, off):
        """This layer's rows of the engine's layer table."""
        nw = self.n_inputs * self.n_neurons
        layer_ints = (
            _codes.KIND_DENSE,
            self.n_inputs,
            self.n_neurons,
            self._act,
            off,
            off + nw if self.use_bias else -1,
            int(self.trainable),
            int(self.bias_trainable),
        )
        layer_floats = (self.alpha, self.weight_l1, self.weight_l2, self.bias_l1, self.bias_l2, 0.0)
        return layer_ints, layer_floats

    def __repr__(self):
        extra = "" if self.use_bias else ", use_bias=False"
        extra += "" if self.trainable else ", trainable=False"
        extra += "" if self.bias_trainable else ", bias_trainable=False"
        return f"Dense({self.n_inputs}, {self.n_neurons}, {self.activation!r}{extra})"


class Dropout:
    """Inverted dropout: during :meth:`Network.fit` each input is zeroed with
    probability ``rate`` and the survivors are scaled by ``1 / (1 - rate)``.

    Everywhere else (``forward``, ``train_step``, ``predict``, ``evaluate``,
    validation) it passes its input through unchanged.  The masks come from
    the same seeded counter-based generator as the shuffle, so both backends
    drop the same units.  A dropout layer takes the width of the layer before
    it; it cannot be the output layer.
    """

    use_bias = False
    trainable = False
    size = 0

    def __init__(self, rate):
        self._rate = self._checked_rate(rate)
        self._network = None
        self._width = None  # set when the network is built

    @staticmethod
    def _checked_rate(rate):
        rate = _validation.real(rate, "rate", minimum=0.0)
        if rate >= 1.0:
            raise ValueError(f"rate must be < 1, got {rate}")
        return rate

    network = property(
        lambda self: self._network, doc="The network that adopted the layer, or None."
    )
    n_inputs = property(lambda self: self._width, doc="Width (that of the layer before).")
    n_neurons = n_inputs

    @property
    def rate(self):
        """The probability that an input is zeroed during fit."""
        return self._rate

    @rate.setter
    def rate(self, value):
        value = self._checked_rate(value)

        def change():
            self._rate = value

        if self.network is None:
            change()
        else:
            self.network._reconfigure(change)

    def get_config(self):
        """The constructor arguments, as a dict."""
        return {"rate": self.rate}

    def _row(self, off):
        n = self.n_inputs
        return (_codes.KIND_DROPOUT, n, n, _codes.ACT_IDENTITY, 0, -1, 0, 0), (
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            self.rate,
        )

    def __repr__(self):
        return f"Dropout({self.rate})"


def _flag(value, name):
    """A bool setting, checked (NumPy's bool included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


#: class name -> layer class, for files and configs
LAYER_TYPES = {"Dense": Dense, "Dropout": Dropout}
