"""The :class:`Network`: a stack of layers, the steps a learner inspects
(``forward``, ``backward``, ``step``), and the native training loop ``fit``.

The data path is: this module (the API) -> ``_validation`` (every input is
checked and converted here) -> the engine of the chosen backend (``cbp._core``
or its NumPy twin ``cbp._reference``) -> the kernels.  ``fit`` checks its
arguments here and runs its loop of engine calls in ``_fit``.
"""

import math

import numpy as np

from . import _backend, _codes, _fit, _validation, optim, persistence, schedules
from ._guard import Guard, training_with
from ._memory import aligned_zeros
from ._validation import OUTPUT_ACTIVATION as OUTPUT_ACTIVATION
from ._validation import check_output_activation
from .callbacks import EarlyStopping
from .layers import Dense, Dropout

__all__ = ["Network"]

#: at most this many epochs run in one native call of fit()
MAX_CHUNK = 1 << 16
#: fit's batch size when neither lr nor batch_size is given
DEFAULT_BATCH_SIZE = _fit.DEFAULT_BATCH_SIZE
#: with verbose=True, the native loop returns to Python this often (seconds)
REPORT_SECONDS = 0.5
#: fit's fast path on (True) or off: _fit_fast_path()
_fast_fit = True


def _fit_fast_path(on=None):
    """Read, and optionally set, whether :meth:`Network.fit` takes its fast
    path where it applies.  Returns the setting in force before the call.
    Private: for the benchmark and for tests that compare the two paths.
    """
    global _fast_fit
    old = _fast_fit
    if on is not None:
        _fast_fit = bool(on)
    return old


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
    check_output : bool, default True
        Refuse a cross-entropy loss on an output layer that does not give
        probabilities: categorical cross-entropy needs a softmax output,
        binary cross-entropy a sigmoid one.  ``False`` allows any pair (the
        engine then applies the loss's gradient through the output's
        derivative, unfused), as in a gradient study of the chain rule.
    optimizer : cbp.optim.Optimizer or str, optional
        The network's optimizer, used by :meth:`step`, :meth:`train_step`
        and :meth:`fit` when they are given no ``lr``.  A name (``"sgd"``,
        ``"adam"``, ``"rmsprop"``, ``"adagrad"``) makes one with its defaults.

    Attributes
    ----------
    parameters, gradients : ndarray (n_params,)
        One contiguous float64 buffer each; every layer's arrays are views
        into them, weights before bias, layer after layer.  Assigning
        ``net.parameters = values`` copies the values in (checked);
        ``gradients`` cannot be assigned.
    epochs_trained : int
        Epochs run by :meth:`fit` so far.  Epochs are numbered across calls,
        so ``fit(epochs=10)`` twice shuffles like ``fit(epochs=20)`` once.
    history : dict or None
        What the last :meth:`fit` returned.
    metadata : dict or None
        Free for the caller (None by default): a JSON-serialisable dict that
        :meth:`save`, :func:`load` and pickling keep with the network.

    Notes
    -----
    A network may be used from one thread at a time: a call made while
    another thread is inside a method of the same network (a whole ``fit``
    included, callbacks and all), setters included, raises ``RuntimeError``
    instead of corrupting it.  A ``fit`` callback may read its network
    (``predict``, ``evaluate``, ``save``) and set weights, but not train it.
    Different networks train in parallel; the native core releases the GIL
    in its loops.
    """

    def __init__(
        self,
        layers,
        loss="squared_error",
        reduction="mean",
        backend=None,
        seed=None,
        optimizer=None,
        check_output=True,
    ):
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
            elif width is not None and layer.n_inputs != width:
                raise ValueError(
                    f"layer {i} takes {layer.n_inputs} inputs but layer {i - 1} gives {width}"
                )
            else:
                width = layer.n_neurons
        if len(set(map(id, layers))) != len(layers):
            raise ValueError("the same layer appears twice in the network")
        self._loss = _codes.loss_code(loss)
        self._loss_name = loss.lower()
        if not isinstance(check_output, (bool, np.bool_)):
            raise TypeError(f"check_output must be a bool, got {type(check_output).__name__}")
        self._check_output = bool(check_output)
        if self._check_output:
            check_output_activation(self._loss_name, layers[-1].activation)
        self._reduction = _codes.reduction_code(reduction)
        self._reduction_name = reduction.lower()
        self._backend_request = backend
        self._kernels = _backend.module(backend)
        self._backend_name = "native" if self._kernels is _backend._core else "numpy"
        self._seed = None if seed is None else _validation.seed(seed)
        optimizer = optim.resolve(optimizer)
        self._layers = tuple(layers)
        self._epochs_trained = 0
        self._history = None
        self.metadata = None  # a JSON-ready dict of the caller's, kept by save/load and pickle
        self._guard = Guard("Network")
        self._optimizer = None
        try:
            self._adopt()
            if optimizer is not None:
                self.optimizer = optimizer
        except BaseException:
            for layer in self._layers:  # a failed network adopts nothing
                if layer.network is self:
                    layer._network = None
            raise

    # -- construction -----------------------------------------------------
    def _adopt(self):
        dense = [layer for layer in self._layers if isinstance(layer, Dense)]
        total = sum(layer.size for layer in dense)
        self._parameters = aligned_zeros(total)  # whole vectors for the core
        self._gradients = aligned_zeros(total)
        off, width = 0, None
        for i, layer in enumerate(self._layers):
            layer._network = self
            if isinstance(layer, Dropout):
                layer._width = width
                continue
            width = layer.n_neurons
            rng = None
            if layer._store is None and layer.seed is None and self._seed is not None:
                rng = np.random.default_rng([self._seed, i])
            n = layer.size
            self._parameters[off : off + n] = layer._materialize(rng)
            layer._store = self._parameters[off : off + n]
            layer._gstore = self._gradients[off : off + n]
            off += n
        self._build_engine()
        # plain SGD, reused by step(lr) / train_step(lr) without allocating
        self._sgd_hyper = np.zeros(_codes.N_OPTIMIZER_HYPER)
        self._no_state = np.empty(0)

    def _layer_table(self):
        """The engine's layer table: an int64 and a float64 row per layer."""
        layer_ints = np.zeros((len(self._layers), _codes.N_LAYER_INTS), dtype=np.int64)
        layer_floats = np.zeros((len(self._layers), _codes.N_LAYER_FLOATS))
        off = 0
        for i, layer in enumerate(self._layers):
            layer_ints[i], layer_floats[i] = layer._row(off)
            off += layer.size
        return layer_ints, layer_floats

    def _build_engine(self):
        layer_ints, layer_floats = self._layer_table()
        # equal for networks that train alike (fit_many compares them)
        self._table_key = (
            self._backend_name,
            self._loss_name,
            self._reduction_name,
            layer_ints.tobytes(),
            layer_floats.tobytes(),
        )
        self._engine = self._kernels.Engine(
            layer_ints, layer_floats, self._parameters, self._gradients, self._loss, self._reduction
        )

    def _reconfigure(self, change):
        """Apply a layer's ``change()`` and rebuild the layer table.

        Refused (``RuntimeError``) while the network trains, in this thread
        (a callback) or another.
        """
        with self._guard.training:
            change()
            self._build_engine()

    # -- attributes -------------------------------------------------------
    layers = property(lambda self: self._layers, doc="The layers, in order (a tuple).")
    loss = property(lambda self: self._loss_name, doc="The loss's name.")
    reduction = property(lambda self: self._reduction_name, doc="``mean`` or ``sum``.")
    backend = property(lambda self: self._backend_name, doc="``native`` or ``numpy``.")
    gradients = property(
        lambda self: self._gradients,
        doc="The flat gradient buffer (n_params,), filled by backward.",
    )
    history = property(lambda self: self._history, doc="What the last fit returned, or None.")

    @property
    def n_inputs(self):
        """Width of the network's input (columns of X)."""
        return self._layers[0].n_inputs

    @property
    def n_outputs(self):
        """Width of the network's output (columns of its predictions)."""
        return self._layers[-1].n_neurons

    @property
    def parameters(self):
        """The flat parameter buffer (n_params,); the layers' arrays are views of it."""
        return self._parameters

    @parameters.setter
    def parameters(self, values):
        P = np.asarray(values)
        if P.dtype.kind not in "iuf":
            raise TypeError(f"parameters must hold real numbers, got dtype {P.dtype}")
        if P.shape != self._parameters.shape:
            raise ValueError(f"parameters must have shape {self._parameters.shape}, got {P.shape}")
        if not np.isfinite(P).all():
            raise ValueError("parameters contain NaN or infinite values")
        with self._guard.using:
            np.copyto(self._parameters, P)

    @property
    def epochs_trained(self):
        """Epochs run by :meth:`fit` so far (they number the shuffles and dropout masks)."""
        return self._epochs_trained

    @epochs_trained.setter
    def epochs_trained(self, value):
        value = _validation.positive_int(value, "epochs_trained", minimum=0)
        with self._guard.training:
            self._epochs_trained = value

    @property
    def seed(self):
        """The default seed of :meth:`fit` (None: 0)."""
        return self._seed

    @seed.setter
    def seed(self, value):
        value = None if value is None else _validation.seed(value)
        with self._guard.using:
            self._seed = value

    @property
    def optimizer(self):
        """The network's optimizer (None until one is given)."""
        return self._optimizer

    @optimizer.setter
    def optimizer(self, opt):
        opt = optim.resolve(opt)
        with self._guard.training, training_with(opt):  # opt may train another network
            if opt is not None:
                opt._bind(self._parameters.shape[0])
            self._optimizer = opt

    def __repr__(self):
        inner = ", ".join(map(repr, self._layers))
        return f"Network([{inner}], loss={self.loss!r}, backend={self.backend!r})"

    # -- updates ----------------------------------------------------------
    def _plain(self, lr, own):
        """(kind, hyper, state) for plain SGD with learning rate lr.

        ``own``: a new hyper-parameter array (for fit); otherwise the network's
        reusable one, which only a caller holding the guard may write.
        """
        h = np.zeros(_codes.N_OPTIMIZER_HYPER) if own else self._sgd_hyper
        h[_codes.HYPER_LEARNING_RATE] = _validation.real(lr, "lr", minimum=0.0, strict=True)
        return _codes.OPT_SGD, h, self._no_state

    def _resolve(self, lr, fallback_lr, own=False):
        """(kind, hyper, state, t, optimizer or None) for an update."""
        if lr is not None:
            return (*self._plain(lr, own), 0, None)
        opt = self._optimizer
        if opt is None:
            return (*self._plain(fallback_lr, own), 0, None)
        return opt.kind, opt._hyper(), opt._bind(self._parameters.shape[0]), opt.iterations, opt

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
        X = _validation.as_matrix(X, "X", self.n_inputs)
        with self._guard.using:
            out = np.array(self._engine.forward(X))
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

        Raises
        ------
        FloatingPointError
            If the loss overflowed.  The gradient buffer still holds what
            this pass computed, so that it can be inspected.
        """
        with self._guard.using:  # (another thread's fit would own the cache)
            rows = self._engine.cached_rows  # of the forward pass the engine keeps
            if rows == 0:
                raise RuntimeError("call forward(X) before backward(y)")
            Y = _validation.as_targets(y, rows, self.n_outputs, self._loss)
            value = float(self._engine.backward(Y))
        if not math.isfinite(value):
            raise FloatingPointError(
                f"the loss is {value}: the network's output or the loss overflowed"
            )
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
            _validation.real(lr, "lr", minimum=0.0, strict=True)
        with self._guard.training:
            opt = None if lr is not None else self._optimizer
            with training_with(opt):
                kind, h, state, t, opt = self._resolve(lr, 0.1)
                self._engine.step(kind, h, state, t)
                if opt is not None:
                    opt.iterations += 1

    def train_step(self, X, y, lr=None):
        """:meth:`forward`, :meth:`backward` and :meth:`step` fused in one call.

        ``lr`` works as in :meth:`step` (default: the network's optimizer,
        else plain SGD with lr 0.1).

        An X that is not finite raises ValueError, and may also drop the
        cached forward pass (its input buffer was being overwritten): call
        :meth:`forward` again before a :meth:`backward`.

        Returns
        -------
        float
            The loss before the update.
        """
        if type(lr) is float:
            # Fast path: arrays that are already C-contiguous float64 of the
            # right shapes are checked (finite, in range) inside the engine
            # and trained on directly; anything else returns None untouched.
            # It takes the guard's lock itself, the same atomic acquire as
            # Guard.enter: no user code runs while it is held.
            lock = self._guard.lock
            if not lock.acquire(False):
                self._guard.refuse()
            try:
                value = self._engine.train_step_sgd(X, y, lr)
            finally:
                lock.release()
            if value is not None:
                return value
        X = _validation.as_matrix(X, "X", self.n_inputs)
        Y = _validation.as_targets(y, X.shape[0], self.n_outputs, self._loss)
        if lr is not None:
            _validation.real(lr, "lr", minimum=0.0, strict=True)
        with self._guard.training:
            opt = None if lr is not None else self._optimizer
            with training_with(opt):
                kind, h, state, t, opt = self._resolve(lr, 0.1)
                value = self._engine.train_step(X, Y, kind, h, state, t)
                if opt is not None:
                    opt.iterations += 1
        return float(value)

    def predict(self, X):
        """The network's output for X, dropout off; touches no cached state.

        Returns
        -------
        ndarray (batch, n_outputs)
        """
        X = _validation.as_matrix(X, "X", self.n_inputs)
        with self._guard.using:
            out = self._engine.predict(X)
        return _finite(out, "predict")

    @property
    def is_classifier(self):
        """True for the cross-entropy losses (which report accuracy)."""
        return self._loss in (_codes.LOSS_CCE, _codes.LOSS_BCE)

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
        X = _validation.as_matrix(X, "X", self.n_inputs)
        Y = _validation.as_targets(y, X.shape[0], self.n_outputs, self._loss)
        with self._guard.using:
            value, acc = self._engine.evaluate(X, Y)
        if not math.isfinite(value):
            raise FloatingPointError(
                f"the loss is {value}: the network's output or the loss overflowed"
            )
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
        batch_size="auto",
        *,
        shuffle="auto",
        seed=None,
        optimizer=None,
        validation_data=None,
        early_stopping=None,
        callback=None,
        callback_every=100,
        verbose=False,
        history_every=1,
        schedule=None,
    ):
        """Train; the whole loop runs in one native call with the GIL released.

        Parameters
        ----------
        X : array_like (n_samples, n_inputs)
        y : array_like
            Targets, as for :meth:`backward`.
        epochs : int, default 200
        lr : float, optional
            Plain gradient descent with this learning rate, as the tutorials
            write it.  Give ``lr`` or ``optimizer``, not both; with neither,
            the network's optimizer is used, and a network without one gets
            ``Adam(lr=0.001)`` (which then stays its optimizer), as Keras does.
        batch_size : int, None or "auto", default "auto"
            None: one full-batch update an epoch (tutorial 004); 1: one update
            a sample (tutorial 000); k: batches of k samples, the last one
            partial.  "auto": 32, or the full batch when ``lr`` is given
            (plain gradient descent, as the tutorials run it).
        shuffle : bool or "auto", default "auto"
            Shuffle the samples every epoch.  "auto" (or None): shuffle,
            except when ``lr`` is given (the tutorials' loops visit the
            samples in order).
        seed : int, optional
            Seed of the shuffle and of dropout (default: the network's seed,
            else 0).  The same seed gives the same run on both backends.
        optimizer : cbp.optim.Optimizer or str, optional
            Becomes the network's optimizer; its state carries over between
            calls.  A name makes one with its defaults.
        validation_data : (X_val, y_val), optional
            Evaluated after every epoch (dropout off).
        early_stopping : EarlyStopping or True, optional
            See :class:`EarlyStopping`.
        callback : callable, optional
            ``callback(epoch, logs)`` every ``callback_every`` epochs and after
            the last one, where ``epoch`` counts the epochs of this call and
            ``logs`` holds the latest epoch's values.  Returning ``False``
            (a bool, NumPy's included) stops training; any other return value
            is ignored.  The callback may read the network (``predict``,
            ``evaluate``, ``save``) but not train it.  The native loop runs
            ``callback_every`` epochs between calls.
        callback_every : int, default 100
        verbose : bool, default False
            Show a progress bar (tqdm, if installed; else a line of text) with
            the loss, and the accuracy and validation figures where they
            apply, refreshed at least every half second (and at every
            callback).
        history_every : int, default 1
            Keep every ``history_every``-th epoch's row of the history (and the
            last epoch's), so that a very long run keeps a bounded history: a
            row costs 32 bytes (40 with a schedule), and at ``history_every=1``
            a run of 10**9 epochs keeps 32 GB.
        schedule : cbp.schedules.Schedule, optional
            A learning-rate schedule (``StepLR``, ``ExponentialLR``,
            ``CosineLR``, ``ReduceLROnPlateau``), applied in the native loop:
            epoch e runs at the schedule's rate for e, computed from the base
            rate (``lr``, or the optimizer's ``lr``, which a callback may
            change: it applies from the next epoch, the schedule going on
            from it), with ``decay`` on top.  Epochs are numbered by
            ``epochs_trained``.  See :mod:`cbp.schedules`.

        Returns
        -------
        dict of ndarray
            ``loss``: each epoch's mean of its batch losses, each taken before
            its update (penalties included); ``accuracy`` for classifiers (of
            those same batch outputs); ``val_loss`` and ``val_accuracy`` with
            validation data; ``lr`` with a schedule (each epoch's rate,
            before ``decay``).  With early stopping, ``best_epoch`` (the best
            epoch of this call, counted from 0: its index in these arrays when
            ``history_every`` is 1) and ``stopped_epoch`` (the number of
            epochs run when it stopped training, else None).  Also kept as
            ``self.history``.

        Raises
        ------
        DivergenceError
            If a loss or parameter becomes NaN or infinite.  The error names
            the epoch, holds the history so far (``.history``), and the
            parameters are left at their values from the start of that epoch.
        """
        if _fast_applies(
            epochs,
            optimizer,
            validation_data,
            early_stopping,
            callback,
            callback_every,
            verbose,
            history_every,
            schedule,
        ):
            result = _fit.fast(self, X, y, epochs, lr, batch_size, shuffle, seed)
            if result is not None:
                return result
        X, Y, epochs, bs, shuffle, Xv, Yv, early_stopping, every, keep_every = fit_settings(
            self,
            X,
            y,
            epochs,
            lr is not None,
            batch_size,
            shuffle,
            validation_data,
            early_stopping,
            callback,
            callback_every,
            history_every,
        )
        if seed is None:
            seed = self._seed if self._seed is not None else 0
        seed = _validation.seed(seed)
        if optimizer is not None and lr is not None:
            raise ValueError("give either lr or optimizer, not both")
        optimizer = optim.resolve(optimizer)
        if lr is not None:
            _validation.real(lr, "lr", minimum=0.0, strict=True)
        elif optimizer is None and self._optimizer is None:
            optimizer = optim.Adam()  # the default, kept as the network's optimizer
        schedule = schedules.resolve(schedule)
        return _fit.run(
            self,
            X,
            Y,
            Xv,
            Yv,
            epochs,
            lr,
            bs,
            shuffle,
            seed,
            optimizer,
            early_stopping,
            callback,
            every,
            keep_every,
            verbose,
            schedule,
            MAX_CHUNK,
            REPORT_SECONDS,
        )

    # -- for learners -----------------------------------------------------
    def trace(self, X, y, lr=None):
        """One forward and backward pass with every intermediate array kept,
        the network unchanged; ``print`` it for the chain rule with numbers.
        See :func:`cbp.trace`."""
        from .trace import trace

        return trace(self, X, y, lr)

    def summary(self):
        """A table of the layers: shapes, activations, parameter counts, what
        is trainable (a ``str``).  See :func:`cbp.summary.summary`."""
        from .summary import summary

        return summary(self)

    # -- persistence ------------------------------------------------------
    def get_config(self):
        """The architecture and settings (no parameters), JSON-ready."""
        return {
            "layers": [{"type": type(l).__name__, **l.get_config()} for l in self._layers],
            "loss": self.loss,
            "reduction": self.reduction,
            "seed": self._seed,
            **({} if self._check_output else {"check_output": False}),
        }

    def save(self, path):
        """Write the network to a portable ``.npz`` file; see :func:`cbp.save`."""
        return persistence.save(self, path)

    def __getstate__(self):
        state, parameters, opt_state = persistence.snapshot(self)
        return {
            "state": state,
            "parameters": parameters,
            "optimizer_state": opt_state if opt_state.size else None,
        }

    def __setstate__(self, d):
        opt_state = d["optimizer_state"]
        net = persistence.from_state(
            d["state"],
            d["parameters"],
            opt_state if opt_state is not None else np.empty(0),
            backend=persistence._pick_backend(d["state"]["backend"]),
        )
        self.__dict__.update(net.__dict__)
        for layer in self._layers:
            layer._network = self


def _fast_applies(
    epochs,
    optimizer,
    validation_data,
    early_stopping,
    callback,
    callback_every,
    verbose,
    history_every,
    schedule,
):
    """Whether a fit with these arguments may try its fast path
    (``_fit.fast``, which checks the rest)."""
    return (
        _fast_fit
        and optimizer is None
        and validation_data is None
        and early_stopping is None
        and callback is None
        and verbose is False
        and schedule is None
        and type(epochs) is int
        and 0 < epochs <= MAX_CHUNK
        and type(callback_every) is int
        and callback_every >= 1
        and type(history_every) is int
        and history_every == 1
    )


def fit_settings(
    net,
    X,
    y,
    epochs,
    plain_sgd,
    batch_size,
    shuffle,
    validation_data,
    early_stopping,
    callback,
    callback_every,
    history_every,
):
    """Fit's data and settings for ``net``, checked and converted, as
    :meth:`Network.fit` and :func:`cbp.fit_many` take them (``plain_sgd``:
    ``lr`` was given).  Returns (X, Y, epochs, batch size, shuffle, X_val,
    Y_val, early_stopping, callback_every, history_every)."""
    X = _validation.as_matrix(X, "X", net.n_inputs)
    Y = _validation.as_targets(y, X.shape[0], net.n_outputs, net._loss)
    epochs = _validation.positive_int(epochs, "epochs")
    n = X.shape[0]
    if isinstance(batch_size, str) and batch_size == "auto":
        batch_size = None if plain_sgd else DEFAULT_BATCH_SIZE
    bs = n if batch_size is None else min(_validation.positive_int(batch_size, "batch_size"), n)
    if shuffle is None or (isinstance(shuffle, str) and shuffle == "auto"):
        shuffle = not plain_sgd
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be True, False or 'auto', got {shuffle!r}")
    Xv = Yv = None
    if validation_data is not None:
        try:
            xv, yv = validation_data
        except (TypeError, ValueError):
            raise TypeError("validation_data must be a pair (X_val, y_val)") from None
        Xv = _validation.as_matrix(xv, "validation X", net.n_inputs)
        Yv = _validation.as_targets(yv, Xv.shape[0], net.n_outputs, net._loss, "validation y")
    if early_stopping is True:
        early_stopping = EarlyStopping()
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise TypeError("early_stopping must be an EarlyStopping, True or None")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable")
    every = _validation.positive_int(callback_every, "callback_every")
    keep_every = _validation.positive_int(history_every, "history_every")
    return X, Y, epochs, bs, bool(shuffle), Xv, Yv, early_stopping, every, keep_every


def _finite(out, what):
    """The output, if finite; finite inputs can still overflow in the layers."""
    if not np.isfinite(out).all():
        raise FloatingPointError(
            f"{what}: the network's output overflowed to NaN or infinity for finite inputs"
        )
    return out
