"""The public API: :class:`Dense` and :class:`Dropout` layers, and the
:class:`Network` that trains them."""
import json
import math
import os
import tempfile
import threading
import time

import numpy as np

from . import _backend
from . import _codes as C
from . import _validation as V
from . import optim
from ._errors import DivergenceError, FormatError

__all__ = ["Dense", "Dropout", "EarlyStopping", "Network", "load", "FORMAT_VERSION"]

#: version of the ``.npz`` layout written by :meth:`Network.save`.
FORMAT_VERSION = 1

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
        self.seed = None if seed is None else V.seed(seed)
        self.weight_l1 = V.real(weight_l1, "weight_l1", minimum=0.0)
        self.weight_l2 = V.real(weight_l2, "weight_l2", minimum=0.0)
        self.bias_l1 = V.real(bias_l1, "bias_l1", minimum=0.0)
        self.bias_l2 = V.real(bias_l2, "bias_l2", minimum=0.0)
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
        return self._split(self._materialize())[0]

    @weights.setter
    def weights(self, value):
        W = self._checked(value, (self.n_inputs, self.n_neurons), "weights")
        self._split(self._settable())[0][...] = W

    @property
    def bias(self):
        return self._split(self._materialize())[1]

    @bias.setter
    def bias(self, value):
        if not self.use_bias:
            raise ValueError("this layer has no bias (use_bias=False)")
        b = self._checked(value, (self.n_neurons,), "bias")
        self._split(self._settable())[1][...] = b

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

    def get_config(self):
        """The constructor arguments (without initial values), as a dict."""
        return {
            "n_inputs": self.n_inputs,
            "n_neurons": self.n_neurons,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "trainable": self.trainable,
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
        meta = (C.KIND_DENSE, self.n_inputs, self.n_neurons, self._act, off,
                off + nw if self.use_bias else -1, int(self.trainable))
        hyper = (self.alpha, self.weight_l1, self.weight_l2, self.bias_l1, self.bias_l2, 0.0)
        return meta, hyper

    def __repr__(self):
        extra = "" if self.use_bias else ", use_bias=False"
        extra += "" if self.trainable else ", trainable=False"
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
        self.rate = V.real(rate, "rate", minimum=0.0)
        if self.rate >= 1.0:
            raise ValueError(f"rate must be < 1, got {self.rate}")
        self.network = None
        self.n_inputs = self.n_neurons = None  # set when the network is built

    def get_config(self):
        return {"rate": self.rate}

    def _row(self, off):
        n = self.n_inputs
        return (C.KIND_DROPOUT, n, n, C.ACT_IDENTITY, 0, -1, 0), (0.0, 0.0, 0.0, 0.0, 0.0, self.rate)

    def __repr__(self):
        return f"Dropout({self.rate})"


class EarlyStopping:
    """Stop :meth:`Network.fit` when the monitored loss stops improving.

    In the spirit of scikit-learn's ``n_iter_no_change``/``tol``: an epoch
    whose loss is not below ``best - tol`` counts as no improvement, and
    training stops after ``patience`` such epochs in a row.  The monitored
    loss is ``val_loss`` when validation data is given, else the training
    loss.  With ``restore_best`` the parameters of the best epoch are put
    back when training ends (stopped early or not).
    """

    def __init__(self, patience=10, tol=1e-4, restore_best=True):
        self.patience = V.positive_int(patience, "patience")
        self.tol = V.real(tol, "tol", minimum=0.0)
        self.restore_best = bool(restore_best)

    def __repr__(self):
        return f"EarlyStopping(patience={self.patience}, tol={self.tol}, restore_best={self.restore_best})"


_LAYER_TYPES = {"Dense": Dense, "Dropout": Dropout}


class Network:
    """A stack of layers trained by backpropagation.

    Parameters
    ----------
    layers : sequence of Dense and Dropout
        Consecutive layers must agree on their widths.  The network adopts
        them: their arrays become views into its flat buffers, so a layer
        belongs to one network only.  The last layer must be Dense.
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
        nor a seed of its own (layer ``i`` uses ``[seed, i]``), and is the
        default seed of :meth:`fit`'s shuffle and dropout.
    optimizer : cbp.optim.Optimizer, optional
        The network's optimizer, used by :meth:`step`, :meth:`train_step`
        and :meth:`fit` when they are given no ``lr``.

    Attributes
    ----------
    parameters, gradients : ndarray (n_params,)
        One contiguous float64 buffer each; every layer's arrays are views
        into them, weights before bias, layer after layer.
    epochs_trained : int
        Epochs run by :meth:`fit` so far.  Epochs are numbered across calls,
        so ``fit(epochs=10)`` twice shuffles like ``fit(epochs=20)`` once.

    Notes
    -----
    A network may be used from one thread at a time: a call made while
    another thread is inside a method of the same network (a whole ``fit``
    included, callbacks and all) raises ``RuntimeError`` instead of corrupting
    it.  A ``fit`` callback may read its network (``predict``, ``evaluate``,
    ``save``) but not train it.  Different networks train in parallel; the
    native core releases the GIL in its loops.
    """

    def __init__(self, layers, loss="squared_error", reduction="mean", backend=None, seed=None,
                 optimizer=None):
        layers = list(layers)
        if not layers:
            raise ValueError("a network needs at least one layer")
        width = None
        for i, layer in enumerate(layers):
            if not isinstance(layer, (Dense, Dropout)):
                raise TypeError(f"layer {i} is a {type(layer).__name__}, not a cbp layer")
            if layer.network is not None:
                raise ValueError(f"layer {i} ({layer!r}) already belongs to a network")
            if isinstance(layer, Dropout):
                if width is None:
                    raise ValueError("a Dropout layer cannot come first: its width is unknown")
                if i == len(layers) - 1:
                    raise ValueError("the output layer must be Dense, not Dropout")
                layer.n_inputs = layer.n_neurons = width
            elif width is not None and layer.n_inputs != width:
                raise ValueError(f"layer {i} takes {layer.n_inputs} inputs but layer {i - 1} gives {width}")
            width = layer.n_neurons
        if len(set(map(id, layers))) != len(layers):
            raise ValueError("the same layer appears twice in the network")
        self._loss = C.loss_code(loss)
        self.loss = loss.lower()
        self._reduction = C.reduction_code(reduction)
        self.reduction = reduction.lower()
        self._backend_request = backend
        self._kernels = _backend.module(backend)
        self.backend = "native" if self._kernels is _backend._core else "numpy"
        self.seed = None if seed is None else V.seed(seed)
        if optimizer is not None and not isinstance(optimizer, optim.Optimizer):
            raise TypeError(
                f"optimizer must be a cbp.optim optimizer, got {type(optimizer).__name__}")
        self.layers = tuple(layers)
        self.epochs_trained = 0
        self.history = None
        self._lock = threading.Lock()
        self._owner, self._depth = None, 0
        self._optimizer = None
        try:
            self._adopt()
            if optimizer is not None:
                self.optimizer = optimizer
        except BaseException:
            for layer in self.layers:  # a failed network adopts nothing
                if layer.network is self:
                    layer.network = None
            raise

    # -- construction -----------------------------------------------------
    def _adopt(self):
        dense = [layer for layer in self.layers if isinstance(layer, Dense)]
        total = sum(layer.size for layer in dense)
        self.parameters = np.zeros(total)
        self.gradients = np.zeros(total)
        meta = np.zeros((len(self.layers), C.N_LAYER_INTS), dtype=np.int64)
        hyper = np.zeros((len(self.layers), C.N_LAYER_FLOATS))
        off = 0
        for i, layer in enumerate(self.layers):
            meta[i], hyper[i] = layer._row(off)
            layer.network = self
            if isinstance(layer, Dropout):
                continue
            rng = None
            if layer._store is None and layer.seed is None and self.seed is not None:
                rng = np.random.default_rng([self.seed, i])
            n = layer.size
            self.parameters[off : off + n] = layer._materialize(rng)
            layer._store = self.parameters[off : off + n]
            layer._gstore = self.gradients[off : off + n]
            off += n
        self._engine = self._kernels.Engine(
            meta, hyper, self.parameters, self.gradients, self._loss, self._reduction
        )
        self._batch = None  # samples of the last forward()
        # plain SGD, reused by step(lr) / train_step(lr) without allocating
        self._sgd_hyper = np.zeros(C.N_OPTIMIZER_HYPER)
        self._no_state = np.empty(0)

    @property
    def n_inputs(self):
        return self.layers[0].n_inputs

    @property
    def n_outputs(self):
        return self.layers[-1].n_neurons

    @property
    def optimizer(self):
        """The network's optimizer (None until one is given)."""
        return self._optimizer

    @optimizer.setter
    def optimizer(self, opt):
        if opt is not None:
            if not isinstance(opt, optim.Optimizer):
                raise TypeError(f"optimizer must be a cbp.optim optimizer, got {type(opt).__name__}")
            opt._bind(self.parameters.shape[0])
        self._optimizer = opt

    def __repr__(self):
        inner = ", ".join(map(repr, self.layers))
        return f"Network([{inner}], loss={self.loss!r}, backend={self.backend!r})"

    # -- thread guard -----------------------------------------------------
    # One thread at a time owns the network.  The owner may re-enter for
    # read-only calls (a fit callback that predicts, evaluates or saves);
    # training calls are never nested.  Another thread is refused.
    def _enter(self, trains=False):
        me = threading.get_ident()
        if self._owner == me:
            if trains:
                raise RuntimeError(
                    "this Network is already training in this thread: a fit callback "
                    "may read the network (predict, evaluate, save) but not train it"
                )
            self._depth += 1
            return
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(
                "this Network is in use by another thread; a network may be used "
                "from one thread at a time (give each thread its own network)"
            )
        self._owner, self._depth = me, 1

    def _exit(self):
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()

    def _plain(self, lr, own):
        """(kind, hyper, state) for plain SGD with learning rate lr.

        ``own``: a new hyper-parameter array (for fit); otherwise the network's
        reusable one, which only a caller holding the guard may write.
        """
        h = np.zeros(C.N_OPTIMIZER_HYPER) if own else self._sgd_hyper
        h[C.HYPER_LEARNING_RATE] = V.real(lr, "lr", minimum=0.0, strict=True)
        return C.OPT_SGD, h, self._no_state

    def _resolve(self, lr, fallback_lr, own=False):
        """(kind, hyper, state, t, optimizer or None) for an update."""
        if lr is not None:
            return (*self._plain(lr, own), 0, None)
        opt = self._optimizer
        if opt is None:
            return (*self._plain(fallback_lr, own), 0, None)
        return opt.kind, opt._hyper(), opt._bind(self.parameters.shape[0]), opt.iterations, opt

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
        self._enter()
        try:
            out = np.array(self._engine.forward(X))
            self._batch = X.shape[0]
        finally:
            self._exit()
        return _finite(out, "forward")

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
        self._enter()
        try:
            value = float(self._engine.backward(Y))
        finally:
            self._exit()
        if not math.isfinite(value):
            raise FloatingPointError(
                f"the loss is {value}: the network's output or the loss overflowed")
        return value

    def step(self, lr=None):
        """Apply one update with the current gradients.

        With ``lr``, a plain gradient-descent step ``parameters -= lr *
        gradients``.  Without, one step of the network's optimizer (plain SGD
        with lr 0.1 if it has none).  Frozen layers are left alone.  Raises
        :class:`DivergenceError`, and changes nothing, if the update would
        make a parameter NaN or infinite.
        """
        if lr is not None:
            V.real(lr, "lr", minimum=0.0, strict=True)
        self._enter(trains=True)
        try:
            kind, h, state, t, opt = self._resolve(lr, 0.1)
            self._engine.step(kind, h, state, t)
        finally:
            self._exit()
        if opt is not None:
            opt.iterations += 1

    def train_step(self, X, y, lr=None):
        """:meth:`forward`, :meth:`backward` and :meth:`step` fused in one call.

        ``lr`` works as in :meth:`step` (default: the network's optimizer,
        else plain SGD with lr 0.1).

        Returns
        -------
        float
            The loss before the update.
        """
        if type(lr) is float:
            # Fast path: arrays that are already C-contiguous float64 of the
            # right shapes are checked (finite, in range) inside the engine
            # and trained on directly; anything else returns None untouched.
            if not self._lock.acquire(False):
                self._enter(trains=True)  # raises the right error (it never succeeds here
                self._exit()              # while the lock is held by anyone)
            try:
                value = self._engine.train_step_sgd(X, y, lr)
            except DivergenceError:
                self._batch = len(X)  # the engine cached this batch's forward pass
                raise
            finally:
                self._lock.release()
            if value is not None:
                self._batch = len(X)
                return value
        X = V.as_matrix(X, "X", self.n_inputs)
        Y = V.as_targets(y, X.shape[0], self.n_outputs, self._loss)
        if lr is not None:
            V.real(lr, "lr", minimum=0.0, strict=True)
        self._enter(trains=True)
        try:
            kind, h, state, t, opt = self._resolve(lr, 0.1)
            value = self._engine.train_step(X, Y, kind, h, state, t)
        finally:
            self._batch = X.shape[0]  # the engine cached this forward, even on error
            self._exit()
        if opt is not None:
            opt.iterations += 1
        return float(value)

    def predict(self, X):
        """The network's output for X, dropout off; touches no cached state.

        Returns
        -------
        ndarray (batch, n_outputs)
        """
        X = V.as_matrix(X, "X", self.n_inputs)
        self._enter()
        try:
            out = self._engine.predict(X)
        finally:
            self._exit()
        return _finite(out, "predict")

    @property
    def is_classifier(self):
        """True for the cross-entropy losses (which report accuracy)."""
        return self._loss in (C.LOSS_CCE, C.LOSS_BCE)

    def evaluate(self, X, y):
        """The loss (penalties included) on (X, y), and the accuracy for classifiers.

        Accuracy is the share of rows whose argmax matches the target's
        (categorical cross-entropy) or of outputs on the right side of 0.5
        (binary cross-entropy).

        Returns
        -------
        dict
            ``{"loss": float}``, plus ``"accuracy"`` for classifiers.
        """
        X = V.as_matrix(X, "X", self.n_inputs)
        Y = V.as_targets(y, X.shape[0], self.n_outputs, self._loss)
        self._enter()
        try:
            value, acc = self._engine.evaluate(X, Y)
        finally:
            self._exit()
        if not math.isfinite(value):
            raise FloatingPointError(
                f"the loss is {value}: the network's output or the loss overflowed")
        out = {"loss": float(value)}
        if self.is_classifier:
            out["accuracy"] = float(acc)
        return out

    # -- training ---------------------------------------------------------
    def fit(
        self,
        X,
        y,
        epochs=200,
        lr=None,
        batch_size=None,
        *,
        shuffle=False,
        seed=None,
        optimizer=None,
        validation_data=None,
        early_stopping=None,
        callback=None,
        callback_every=100,
        verbose=False,
    ):
        """Train; the whole loop runs in one native call with the GIL released.

        Parameters
        ----------
        X : array_like (n_samples, n_inputs)
        y : array_like
            Targets, as for :meth:`backward`.
        epochs : int, default 200
        lr : float, optional
            Plain gradient descent with this learning rate.  Give ``lr`` or
            ``optimizer``, not both; with neither, the network's optimizer is
            used, else plain SGD with lr 0.001.
        batch_size : int, optional
            None: one full-batch update an epoch (seed 004); 1: one update a
            sample (seed 000); k: batches of k samples, the last one partial.
        shuffle : bool, default False
            Shuffle the samples every epoch.  Off by default so that the
            seeds' per-example loops are reproduced in order.
        seed : int, optional
            Seed of the shuffle and of dropout (default: the network's seed,
            else 0).  The same seed gives the same run on both backends.
        optimizer : cbp.optim.Optimizer, optional
            Becomes the network's optimizer; its state carries over between
            calls.
        validation_data : (X_val, y_val), optional
            Evaluated after every epoch (dropout off).
        early_stopping : EarlyStopping or True, optional
            See :class:`EarlyStopping`.
        callback : callable, optional
            ``callback(epoch, logs)`` every ``callback_every`` epochs and after
            the last one, where ``epoch`` counts the epochs of this call and
            ``logs`` holds the latest epoch's values.  Returning ``False``
            (a bool, NumPy's included) stops training; any other return value
            is ignored.  The callback may use the network.  The native loop runs ``callback_every`` epochs
            between calls.
        callback_every : int, default 100
        verbose : bool, default False
            Show a progress bar (tqdm, if installed; else a line of text), updated
            every ``callback_every`` epochs.

        Returns
        -------
        dict of ndarray
            ``loss``: each epoch's mean of its batch losses, each taken before
            its update (penalties included); ``accuracy`` for classifiers (of
            those same batch outputs); ``val_loss`` and ``val_accuracy`` with
            validation data.  With early stopping, ``best_epoch`` (the index
            of the best epoch in these arrays) and ``stopped_epoch`` (the
            number of epochs run when it stopped training, else None).  Also
            kept as ``self.history``.

        Raises
        ------
        DivergenceError
            If a loss or parameter becomes NaN or infinite.  The error names
            the epoch, holds the history so far (``.history``), and the
            parameters are left at their values from the start of that epoch.
        """
        X = V.as_matrix(X, "X", self.n_inputs)
        Y = V.as_targets(y, X.shape[0], self.n_outputs, self._loss)
        epochs = V.positive_int(epochs, "epochs")
        n = X.shape[0]
        bs = n if batch_size is None else min(V.positive_int(batch_size, "batch_size"), n)
        if seed is None:
            seed = self.seed if self.seed is not None else 0
        seed = V.seed(seed)
        Xv = Yv = None
        if validation_data is not None:
            try:
                xv, yv = validation_data
            except (TypeError, ValueError):
                raise TypeError("validation_data must be a pair (X_val, y_val)") from None
            Xv = V.as_matrix(xv, "validation X", self.n_inputs)
            Yv = V.as_targets(yv, Xv.shape[0], self.n_outputs, self._loss, "validation y")
        if early_stopping is True:
            early_stopping = EarlyStopping()
        if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
            raise TypeError("early_stopping must be an EarlyStopping, True or None")
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable")
        every = V.positive_int(callback_every, "callback_every")
        if optimizer is not None and lr is not None:
            raise ValueError("give either lr or optimizer, not both")
        if optimizer is not None:
            if not isinstance(optimizer, optim.Optimizer):
                raise TypeError(
                    f"optimizer must be a cbp.optim optimizer, got {type(optimizer).__name__}")
            optimizer._bind(self.parameters.shape[0])  # checks it fits this network
            kind, h, state, t, opt = (optimizer.kind, optimizer._hyper(), optimizer.state,
                                      optimizer.iterations, optimizer)
        else:
            kind, h, state, t, opt = self._resolve(lr, 0.001, own=True)
        es = np.zeros(C.N_EARLY_STOP)
        es[C.EARLY_STOP_BEST_LOSS] = np.inf
        es[C.EARLY_STOP_BEST_EPOCH] = -1
        best = np.empty(0)
        if early_stopping is not None:
            es[C.EARLY_STOP_ENABLED] = 1.0
            es[C.EARLY_STOP_PATIENCE] = early_stopping.patience
            es[C.EARLY_STOP_TOLERANCE] = early_stopping.tol
            best = self.parameters.copy()
        else:
            best = np.empty(self.parameters.shape[0])
        # The native loop runs `chunk` epochs a call; the history grows chunk by
        # chunk, so a long run (or one a callback stops early) allocates only
        # what it uses.
        chunk = min(every if (callback is not None or verbose) else epochs, _MAX_CHUNK)
        bar = _progress(epochs) if verbose else None
        # one chunk buffer for the whole run; each chunk's columns are copied
        # out, so a long run touches its history memory once, not per chunk
        part_buf = np.empty((chunk, C.N_HISTORY))
        columns = self._history_columns(Xv is not None)
        cols = {name: [] for name in columns}

        self._enter(trains=True)
        try:
            if optimizer is not None:  # only once this call owns the network
                self._optimizer = optimizer
            done, status = 0, C.FIT_DONE
            epoch0 = self.epochs_trained
            while done < epochs:
                k = min(chunk, epochs - done)
                part = part_buf[:k]
                ran, steps, status = self._engine.fit(
                    X, Y, Xv, Yv, kind, h, state, t, epoch0 + done, k, bs, shuffle, seed,
                    es, best, part
                )
                for name, c in columns.items():
                    cols[name].append(part[:ran, c].copy())
                t += steps
                if opt is not None:
                    opt.iterations += steps
                done += ran
                self.epochs_trained += ran
                if status == C.FIT_DIVERGED:
                    break
                if bar is not None:
                    bar.update(ran, part[ran - 1])
                if callback is not None and (done % every == 0 or done == epochs or status):
                    # this thread keeps the network: the callback may read it
                    # (predict, evaluate, save), other threads stay refused
                    answer = callback(done, self._logs(part[ran - 1], Xv is not None))
                    if isinstance(answer, (bool, np.bool_)) and not answer:
                        break
                if status == C.FIT_STOPPED:
                    break
            self._batch = None
            result = {name: (parts[0] if len(parts) == 1 else
                             np.concatenate(parts) if parts else np.empty(0))
                      for name, parts in cols.items()}
            if early_stopping is not None:
                result["best_epoch"] = int(es[C.EARLY_STOP_BEST_EPOCH] - epoch0)
                result["stopped_epoch"] = done if status == C.FIT_STOPPED else None
                # after a divergence the parameters stay at the start of the
                # diverging epoch, as documented, rather than the best epoch
                if (early_stopping.restore_best and es[C.EARLY_STOP_BEST_EPOCH] >= 0
                        and status != C.FIT_DIVERGED):
                    np.copyto(self.parameters, best)
            self.history = result
        finally:
            self._exit()
            if bar is not None:
                bar.close()
        if status == C.FIT_DIVERGED:
            err = DivergenceError(
                f"training diverged in epoch {done + 1} of {epochs}: a loss or parameter "
                "became NaN or infinite; the parameters were left at their values from "
                "the start of that epoch (the last finite ones)"
            )
            err.epoch = done + 1
            err.history = result
            raise err
        return result

    def _history_columns(self, with_val):
        """The history's keys and their columns in the engine's rows."""
        out = {"loss": C.HISTORY_LOSS}
        if self.is_classifier:
            out["accuracy"] = C.HISTORY_ACCURACY
        if with_val:
            out["val_loss"] = C.HISTORY_VAL_LOSS
            if self.is_classifier:
                out["val_accuracy"] = C.HISTORY_VAL_ACCURACY
        return out

    def _logs(self, row, with_val):
        return {k: float(row[c]) for k, c in self._history_columns(with_val).items()}

    # -- persistence ------------------------------------------------------
    def get_config(self):
        """The architecture and settings (no parameters), JSON-ready."""
        return {
            "layers": [{"type": type(l).__name__, **l.get_config()} for l in self.layers],
            "loss": self.loss,
            "reduction": self.reduction,
            "seed": self.seed,
        }

    def _state(self):
        opt = self._optimizer
        return {
            "config": self.get_config(),
            "backend": self._backend_request,
            "epochs_trained": self.epochs_trained,
            "optimizer": None if opt is None else {
                "name": opt.name, "config": opt.get_config(), "iterations": opt.iterations},
        }

    @classmethod
    def _from_state(cls, state, parameters, opt_state, backend=None):
        cfg = state["config"]
        if parameters.ndim != 1:
            raise FormatError(f"the file's parameters must be 1-D, got shape {parameters.shape}")
        declared = 0
        for spec in cfg["layers"]:  # check the size before allocating anything
            if spec.get("type") not in _LAYER_TYPES:
                raise FormatError("unknown layer type in the file")
            if spec.get("type") == "Dense":
                ni = V.positive_int(spec["n_inputs"], "n_inputs")  # ValueError/TypeError:
                no = V.positive_int(spec["n_neurons"], "n_neurons")  # an invalid description
                declared += ni * no + (no if spec.get("use_bias", True) else 0)
        if declared != parameters.size:
            raise FormatError(
                f"the file holds {parameters.size} parameters, its architecture needs {declared}")
        layers = []
        for spec in cfg["layers"]:
            spec = dict(spec)
            kind = _LAYER_TYPES.get(spec.pop("type", None))
            if kind is None:
                raise FormatError("unknown layer type in the file")
            layers.append(kind(**spec))
        net = cls(layers, loss=cfg["loss"], reduction=cfg["reduction"], backend=backend,
                  seed=cfg["seed"])
        if parameters.ndim != 1:
            raise FormatError(f"the file's parameters must be 1-D, got shape {parameters.shape}")
        if parameters.shape != net.parameters.shape:
            raise FormatError(
                f"the file holds {parameters.size} parameters, its architecture needs "
                f"{net.parameters.size}")
        if not np.isfinite(parameters).all():
            raise FormatError("the file's parameters contain NaN or infinite values")
        np.copyto(net.parameters, parameters)
        net.epochs_trained = _count(state["epochs_trained"], "epochs_trained")
        o = state["optimizer"]
        if o is not None:
            opt = optim.get(o["name"], **o["config"])
            opt.iterations = _count(o["iterations"], "iterations")
            if opt_state.size:  # empty: a fresh (or reset) optimizer
                if opt_state.shape != (opt.slots * net.parameters.size,):
                    raise FormatError("the optimizer state does not fit the network")
                if not np.isfinite(opt_state).all():
                    raise FormatError("the optimizer state contains NaN or infinite values")
                if opt.slots and isinstance(opt, (optim.Adagrad, optim.RMSprop, optim.Adam)):
                    # accumulated squares (Adam's second slot) are never negative
                    squares = opt_state[(opt.slots - 1) * net.parameters.size :]
                    if (squares < 0).any():
                        raise FormatError("the optimizer state has negative squared-gradient sums")
                opt.state = np.array(opt_state, dtype=np.float64)
            net.optimizer = opt
        return net

    def __getstate__(self):
        self._enter()
        try:
            opt = self._optimizer
            return {
                "state": self._state(),
                "parameters": self.parameters.copy(),
                "optimizer_state": None if opt is None or opt.state is None else opt.state.copy(),
            }
        finally:
            self._exit()

    def __setstate__(self, d):
        opt_state = d["optimizer_state"]
        net = Network._from_state(
            d["state"], d["parameters"], opt_state if opt_state is not None else np.empty(0),
            backend=_pick_backend(d["state"]["backend"]))
        self.__dict__.update(net.__dict__)
        for layer in self.layers:
            layer.network = self

    def save(self, path):
        """Write the network to a portable ``.npz`` file, atomically.

        The file holds the architecture (JSON), the parameters, the optimizer
        and its state, and the epoch count, so that training can resume.  It
        is written to a temporary file in the same folder and then renamed,
        so a crash mid-save never destroys an earlier file at ``path``.
        """
        path = os.fspath(path)
        self._enter()  # a consistent snapshot: no other thread trains meanwhile
        try:
            opt = self._optimizer
            arrays = {
                "format": np.array([FORMAT_VERSION], dtype=np.int64),
                "meta": np.array(json.dumps(self._state())),
                "parameters": self.parameters.copy(),
                "optimizer_state": (opt.state.copy() if opt is not None and opt.state is not None
                                    else np.empty(0)),
            }
        finally:
            self._exit()
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".cbp-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _count(value, name):
    """A non-negative integer read from a file (below 2**62)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62:
        raise FormatError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _pick_backend(requested):
    """The saved backend request, or the default if that backend is missing here."""
    if requested == "native" and not _backend.native_available():
        return None
    return requested


def load(path, backend=None):
    """Read a network written by :meth:`Network.save`.

    Parameters
    ----------
    path : str or path-like
    backend : {"native", "numpy"}, optional
        Default: the backend the network was saved with, if available here.

    Raises
    ------
    FormatError
        If the file is truncated, corrupted, not a cbp file, or from a newer
        format version.
    """
    path = os.fspath(path)
    try:
        # open the file here so that it is closed even when numpy fails
        with open(path, "rb") as fh, _npz(np.load(fh, allow_pickle=False), path) as f:
            files = set(f.files)
            need = {"format", "meta", "parameters", "optimizer_state"}
            if not need <= files:
                raise FormatError(f"{path} is not a cbp network file (missing {sorted(need - files)})")
            version = f["format"]
            if version.shape != (1,) or version.dtype.kind not in "iu" or int(version[0]) < 1:
                raise FormatError(f"{path}: bad format field")
            if int(version[0]) > FORMAT_VERSION:
                raise FormatError(
                    f"{path} was written in format {int(version[0])} by a newer cbp; "
                    f"this cbp reads format {FORMAT_VERSION} and older")
            meta = str(f["meta"][()])
            parameters = np.asarray(f["parameters"], dtype=np.float64)
            opt_state = np.asarray(f["optimizer_state"], dtype=np.float64)
    except (FormatError, FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # zipfile, numpy's header parser, ... on a damaged file
        raise FormatError(
            f"{path} is not a readable cbp network file: {type(exc).__name__}: {exc}"
        ) from None
    try:
        state = json.loads(meta)
        if backend is None:
            backend = _pick_backend(state.get("backend"))
        return Network._from_state(state, parameters, opt_state, backend=backend)
    except FormatError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise FormatError(f"{path} holds an invalid network description: {exc}") from None


#: at most this many epochs run in one native call of fit()
_MAX_CHUNK = 1 << 16


def _finite(out, what):
    """The output, if finite; finite inputs can still overflow in the layers."""
    if not np.isfinite(out).all():
        raise FloatingPointError(
            f"{what}: the network's output overflowed to NaN or infinity for finite inputs")
    return out


def _npz(obj, path):
    """np.load's result, if it is an .npz archive (a context manager)."""
    if not isinstance(obj, np.lib.npyio.NpzFile):
        raise FormatError(f"{path} is a single .npy array, not a cbp network file")
    return obj


class _progress:
    """A progress bar over epochs: tqdm if installed, else plain lines."""

    #: seconds between two lines of the plain-text fallback
    INTERVAL = 1.0

    def __init__(self, total):
        self.total = total
        self.done = 0
        self.last = None
        try:
            from tqdm.auto import tqdm  # type: ignore[import-untyped]
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, unit="epoch")

    def update(self, n, row):
        self.done += n
        loss = row[C.HISTORY_LOSS]
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        else:  # at most a line a second, and the last epoch
            now = time.monotonic()
            if self.last is None or now - self.last >= self.INTERVAL or self.done >= self.total:
                self.last = now
                print(f"epoch {self.done}/{self.total}  loss {loss:.6g}", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
