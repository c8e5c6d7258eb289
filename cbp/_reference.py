"""The NumPy twin of the native core.

Every function and class here has the same signature as its counterpart in
the compiled module ``cbp._core``.  They are written the way the seed
tutorials write backprop, with NumPy array operations, and they are the
specification the native kernels are tested against (``cbp._registry``).

The twin is split as the core is::

    cbp/_reference.py            Engine: its state and entry points   (src/_engine.pxi)
      _reference_passes.py       views, forward/backward passes,      (_engine_passes.pxi,
                                 penalties, the optimizer step         _engine_update.pxi)
      _reference_schedule.py     fit's learning-rate schedules        (_engine_schedule.pxi)
      _reference_sklearn.py      scikit-learn's epoch and loss/grad   (_engine_sklearn.pxi)
    cbp/_reference_kernels.py    the kernels' twins                   (_kernels.pxd, _wrappers.pxi)
    cbp/_reference_random.py     the counter-based generator          (_random.pxi)

This module re-exports every twin of ``cbp._registry`` (``__all__``).

All arrays are float64.  Kernels write into the ``out`` arrays they are given
and return them; they never modify their inputs.  Callers (``cbp.network``)
validate shapes, dtypes and finiteness before calling.
"""

import functools
import math
import time

import numpy as np

from . import _codes
from . import _reference_passes as _passes
from . import _reference_sklearn as _sk
from ._reference_kernels import (
    activation_backward,
    activation_forward,
    add_penalty_gradient,
    dense_backward,
    dense_backward_feature_major,
    dense_forward,
    dense_forward_feature_major,
    loss_gradient,
    loss_value,
    optimizer_update,
    output_delta,
    penalty,
    sgd_update,
)
from ._reference_random import dropout_mask, random_bits, shuffle_order
from ._reference_schedule import check_schedule, schedule_end_epoch, schedule_rate

__all__ = [
    "dense_forward",
    "activation_forward",
    "activation_backward",
    "loss_value",
    "loss_gradient",
    "output_delta",
    "dense_backward",
    "dense_forward_feature_major",
    "dense_backward_feature_major",
    "penalty",
    "add_penalty_gradient",
    "sgd_update",
    "optimizer_update",
    "random_bits",
    "shuffle_order",
    "dropout_mask",
    "Engine",
]


# --------------------------------------------------------------------------
# The network engine
# --------------------------------------------------------------------------
def _quiet(method):
    """Run an engine method with NumPy's floating-point warnings off.

    Overflow to inf or NaN is detected explicitly (DivergenceError), the
    same way on both backends, so NumPy's warnings would only be noise.
    """

    @functools.wraps(method)  # keeps the name, the docstring and the signature
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return method(*args, **kwargs)

    return wrapper


class Engine:
    """Forward, backward, optimizer steps and whole training runs over a flat
    parameter buffer.

    Parameters
    ----------
    layer_ints : int64 array (n_layers, N_LAYER_INTS)
        One row a layer, columns ``LAYER_KIND`` (dense or dropout),
        ``LAYER_N_IN``, ``LAYER_N_OUT``, ``LAYER_ACTIVATION`` (code),
        ``LAYER_WEIGHT_OFFSET``, ``LAYER_BIAS_OFFSET`` (-1: no bias),
        ``LAYER_TRAINABLE`` and ``LAYER_BIAS_TRAINABLE`` (0: updates leave
        the bias of a trainable layer alone) of ``cbp._codes``.
    layer_floats : float64 array (n_layers, N_LAYER_FLOATS)
        One row a layer, columns ``LAYER_ALPHA`` (of the activation),
        ``LAYER_WEIGHT_L1``, ``LAYER_WEIGHT_L2``, ``LAYER_BIAS_L1``,
        ``LAYER_BIAS_L2`` and ``LAYER_DROPOUT_RATE``.
    params, grads : float64 arrays (n_params,)
        The network's flat parameter and gradient buffers, shared (not
        copied): the engine reads and writes them in place.
    loss, reduction : int
        Codes from ``cbp._codes``.

    Optimizer arguments, wherever they appear: ``kind`` (code), ``hyper``
    float64 (N_OPTIMIZER_HYPER,) indexed by the ``HYPER_*`` columns,
    ``state`` float64 (slots * n_params,) and ``t`` (steps taken so far).  A
    step that would leave a NaN or infinite parameter, state or loss raises
    DivergenceError and restores the values from before the step.
    """

    def __init__(self, layer_ints, layer_floats, params, grads, loss, reduction):
        self.layer_ints = np.array(layer_ints, dtype=np.int64)
        self.layer_floats = np.array(layer_floats, dtype=np.float64)
        self.params = params
        self.grads = grads
        self.loss = int(loss)
        self.reduction = int(reduction)
        self._cache = None
        self.fast_out = None  # fit_fast's last result
        self._masks = {}  # dropout layer -> mask of the current batch
        self._training = False
        # trainable parameter ranges, merged where adjacent
        segs = []
        for m in self.layer_ints:
            if m[_codes.LAYER_KIND] != _codes.KIND_DENSE or not m[_codes.LAYER_TRAINABLE]:
                continue
            lo = m[_codes.LAYER_WEIGHT_OFFSET]
            hi = lo + m[_codes.LAYER_N_IN] * m[_codes.LAYER_N_OUT]  # the weights, and the bias
            if m[_codes.LAYER_BIAS_OFFSET] >= 0 and m[_codes.LAYER_BIAS_TRAINABLE]:  # unless fixed
                hi += m[_codes.LAYER_N_OUT]
            if segs and segs[-1][1] == lo:
                segs[-1][1] = hi
            else:
                segs.append([lo, hi])
        self.segments = [tuple(s) for s in segs]

    # -- passes -----------------------------------------------------------
    @_quiet
    def forward(self, X):
        """Run X (n, n_in) through the network; keep what backward needs."""
        self._cache = _passes.forward(self, X)
        return self._cache[-1][2]

    @_quiet
    def predict(self, X):
        """The output for X as a new array; the backward cache is untouched."""
        return _passes.forward(self, X, keep=False)[-1][2].copy()

    @property
    def cached_rows(self):
        """Rows of the cached forward pass; 0 when there is none."""
        return 0 if self._cache is None else self._cache[-1][2].shape[0]

    @_quiet
    def backward(self, Y):
        """Fill the gradient buffer for target Y (n, n_out); return the loss.

        The loss includes every layer's L1/L2 penalty.
        """
        if self._cache is None:
            raise RuntimeError("backward() needs a forward() first")
        return _passes.backward(self, Y)

    # -- updates ----------------------------------------------------------
    @_quiet
    def step(self, kind, hyper, state, t):
        """Apply one optimizer step with the current gradients."""
        saved = self.params.copy(), state.copy()
        if not _passes.update(self, kind, hyper, state, t):
            np.copyto(self.params, saved[0])
            np.copyto(state, saved[1])
            _passes.diverged("the update made a parameter NaN or infinite")

    @_quiet
    def train_step(self, X, Y, kind, hyper, state, t):
        """forward, backward and one optimizer step; the loss before the update."""
        self._cache = _passes.forward(self, X)
        value = _passes.backward(self, Y)
        if not math.isfinite(value):
            _passes.diverged(f"the loss is {value}")
        self.step(kind, hyper, state, t)
        return value

    def train_step_sgd(self, X, Y, lr):
        """Fast path of ``train_step`` with plain SGD.

        Takes X and Y only when they are already C-contiguous float64
        ndarrays of the right shapes (Y (n, n_out), or (n,) with one output
        but for categorical cross-entropy), finite (and within [0, 1] for
        the cross-entropies), or, for categorical cross-entropy, Y int64
        class labels in range, with lr finite and > 0.  Otherwise returns
        None having touched nothing, and the caller validates and converts;
        but an X that is not finite, with everything else in order, also
        drops the cached forward pass (the native engine checks X as it
        copies it over that pass's input).
        """
        if (
            type(X) is not np.ndarray
            or type(Y) is not np.ndarray
            or not (lr > 0.0 and math.isfinite(lr))
        ):
            return None
        n_in, n_out = self.layer_ints[0, _codes.LAYER_N_IN], self.layer_ints[-1, _codes.LAYER_N_OUT]
        if X.dtype != np.float64 or not X.flags.c_contiguous or X.ndim != 2:
            return None
        if X.shape[1] != n_in or X.shape[0] < 1:
            return None
        if (
            self.loss == _codes.LOSS_CCE
            and Y.ndim == 1
            and Y.dtype == np.int64
            and Y.shape[0] == X.shape[0]
            and ((Y >= 0) & (Y < n_out)).all()
        ):
            Y = np.eye(n_out)[Y]  # class labels: one-hot rows
        elif Y.ndim == 1 and n_out == 1 and self.loss != _codes.LOSS_CCE:
            Y = Y.reshape(-1, 1)  # one output's targets as a column (a view)
        if Y.dtype != np.float64 or not Y.flags.c_contiguous or Y.ndim != 2:
            return None
        if Y.shape[1] != n_out or Y.shape[0] != X.shape[0]:
            return None
        if self.loss in (_codes.LOSS_CCE, _codes.LOSS_BCE):
            if not ((Y >= 0.0) & (Y <= 1.0)).all():
                return None
        elif not np.isfinite(Y).all():
            return None
        if not np.isfinite(X).all():
            self._cache = None
            return None
        hyper = np.zeros(_codes.N_OPTIMIZER_HYPER)
        hyper[_codes.HYPER_LEARNING_RATE] = lr
        return self.train_step(X, Y, _codes.OPT_SGD, hyper, np.empty(0), 0)

    def sgd_step(self, lr):
        """params -= lr * grads over the trainable layers (plain SGD)."""
        hyper = np.zeros(_codes.N_OPTIMIZER_HYPER)
        hyper[_codes.HYPER_LEARNING_RATE] = lr
        self.step(_codes.OPT_SGD, hyper, np.empty(0), 0)

    # -- scikit-learn's arithmetic (_reference_sklearn.py) ----------------
    @_quiet
    def sklearn_loss_grad(self, X, Y, sw, loss, alpha):
        """scikit-learn's loss of all rows; its gradient into grads."""
        return _sk.loss_grad(self, X, Y, sw, loss, alpha)

    @_quiet
    def sklearn_epoch(self, X, Y, sw, order, batch_size, loss, alpha, kind, hyper, state, t):
        """One epoch of scikit-learn's mini-batch loop.

        Batches are the rows ``order[j*batch_size:(j+1)*batch_size]`` (None:
        rows in order; the last batch short), their weights ``sw[order]``.
        ``kind`` is OPT_SGD (scikit-learn's momentum/Nesterov, state: the
        velocities) or OPT_ADAM_SK (state: m then v), ``t`` the batches
        (optimizer steps) so far.  Returns (sum over batches of batch loss * batch rows, t).
        A NaN or infinite loss or update raises DivergenceError, the
        parameters and state left at their values before that batch.
        """
        return _sk.epoch(self, X, Y, sw, order, batch_size, loss, alpha, kind, hyper, state, t)

    # -- whole runs -------------------------------------------------------
    @_quiet
    def evaluate(self, X, Y):
        """(loss, accuracy) on (X, Y), dropout off; accuracy is NaN for regression."""
        return _passes.evaluate(self, X, Y)

    @_quiet
    def fit(
        self,
        X,
        Y,
        Xv,
        Yv,
        kind,
        hyper,
        state,
        t,
        epoch0,
        n_epochs,
        batch_size,
        shuffle,
        seed,
        early_stop,
        best,
        history,
        progress,
        report_seconds,
        schedule,
    ):
        """Train for up to ``n_epochs`` epochs, numbered from ``epoch0``.

        Each epoch visits the rows of X once, in batches of ``batch_size``
        (the last one shorter), and takes one optimizer step a batch.

        Parameters
        ----------
        X : float64 array (n, n_in)
            The training inputs, C-contiguous, n >= 1.
        Y : float64 array (n, n_out)
            The training targets (one-hot rows for categorical
            cross-entropy).
        Xv, Yv : float64 arrays (n_val, n_in) and (n_val, n_out), or None
            Validation data, evaluated after every epoch with dropout off;
            both None for none.
        kind : int
            Optimizer code (``OPT_SGD``, ``OPT_ADAGRAD``, ``OPT_RMSPROP``,
            ``OPT_ADAM``).
        hyper : float64 array (N_OPTIMIZER_HYPER,)
            The optimizer's hyper-parameters, indexed by the ``HYPER_*``
            columns of ``cbp._codes``.
        state : float64 array (slots * n_params,)
            The optimizer's state (momentum, caches), updated in place.
        t : float
            Optimizer steps taken before this call (the learning-rate decay
            and Adam's bias correction count from it).
        epoch0 : int
            The number of the first epoch; the shuffle and the dropout
            masks of epoch e are drawn from streams keyed by e.
        n_epochs : int
            Epochs to run at most.
        batch_size : int
            Rows a batch (more than n: one batch of n rows).
        shuffle : bool
            Visit the rows in the order ``shuffle_order(seed, epoch, n)``
            instead of in order.
        seed : int
            Seed of the shuffle and of the dropout masks.
        early_stop : float64 array (N_EARLY_STOP,)
            Early-stopping state, indexed by the ``EARLY_STOP_*`` columns and
            updated in place: with ``EARLY_STOP_ENABLED`` nonzero, the
            monitored loss (the validation loss with validation data, else
            the training loss) of each epoch is compared with
            ``EARLY_STOP_BEST_LOSS`` minus ``EARLY_STOP_TOLERANCE``; the run
            stops when ``EARLY_STOP_WAIT`` epochs without improvement reach
            ``EARLY_STOP_PATIENCE``.
        best : float64 array (n_params,)
            Receives the parameters at the end of the best epoch (when early
            stopping is on).
        history : float64 array (>= n_epochs, N_HISTORY)
            Row k receives epoch k's ``HISTORY_LOSS``, ``HISTORY_ACCURACY``,
            ``HISTORY_VAL_LOSS`` and ``HISTORY_VAL_ACCURACY`` (NaN where
            they do not apply), and ``HISTORY_LR``, the rate it ran at.
        progress : int64 array (2,)
            Set after every completed epoch to the epochs completed and the
            optimizer steps they took, so that a caller that is interrupted
            at any moment knows what the parameters hold.
        report_seconds : float
            If > 0, return after the first epoch that ends this many seconds
            or more after the call started (for a progress display).
        schedule : float64 array (N_SCHEDULE,)
            The learning-rate schedule, indexed by the ``SCHEDULE_*``
            columns: epoch e runs with ``hyper[HYPER_LEARNING_RATE]``
            replaced by ``schedule_rate(schedule, lr, e)`` (decay then
            applies per step on top of it).  A plateau schedule's state
            (``SCHEDULE_SCALE``, ``SCHEDULE_BEST``, ``SCHEDULE_BAD_EPOCHS``,
            ``SCHEDULE_COOLDOWN_LEFT``) is updated in place after each
            completed epoch, from the loss early stopping monitors.

        An exception raised inside an epoch (KeyboardInterrupt for Ctrl-C)
        rolls the epoch back to its start and propagates: the parameters,
        the optimizer state, ``early_stop``, ``best``, ``schedule`` and
        ``progress`` then describe the last completed epoch.

        Returns
        -------
        (epochs, steps, status) : (int, int, int)
            Epochs completed, optimizer steps taken, and ``FIT_DONE``,
            ``FIT_STOPPED`` (early stopping) or ``FIT_DIVERGED`` (a loss or a
            parameter stopped being finite: the diverging epoch was rolled
            back to its start, and is not counted).
        """
        check_schedule(schedule)
        base_lr = float(hyper[_codes.HYPER_LEARNING_RATE])
        hyper = np.array(hyper, dtype=np.float64)  # with each epoch's rate
        progress[0] = progress[1] = 0
        start = time.monotonic()
        n = X.shape[0]
        bs = min(batch_size, n)
        steps = 0
        for k in range(n_epochs):
            epoch = epoch0 + k
            hyper[_codes.HYPER_LEARNING_RATE] = schedule_rate(schedule, base_lr, epoch)
            saved = self.params.copy(), state.copy(), steps, early_stop.copy(), schedule.copy()
            try:
                status, steps = self._fit_epoch(
                    X,
                    Y,
                    Xv,
                    Yv,
                    kind,
                    hyper,
                    state,
                    t,
                    epoch,
                    n,
                    bs,
                    shuffle,
                    seed,
                    early_stop,
                    best,
                    history[k],
                    steps,
                    schedule,
                    base_lr,
                )
            except BaseException:
                np.copyto(self.params, saved[0])
                np.copyto(state, saved[1])
                np.copyto(early_stop, saved[3])
                np.copyto(schedule, saved[4])
                self._cache = None
                raise
            if status == _codes.FIT_DIVERGED:
                np.copyto(self.params, saved[0])
                np.copyto(state, saved[1])
                np.copyto(schedule, saved[4])
                self._cache = None  # fit leaves no forward pass, however it ends
                return k, saved[2], _codes.FIT_DIVERGED
            progress[0], progress[1] = k + 1, steps
            if status == _codes.FIT_STOPPED:
                self._cache = None
                return k + 1, steps, _codes.FIT_STOPPED
            if report_seconds > 0 and time.monotonic() - start >= report_seconds:
                self._cache = None
                return k + 1, steps, _codes.FIT_DONE
        self._cache = None
        return n_epochs, steps, _codes.FIT_DONE

    def fit_fast(self, X, Y, kind, hyper, state, t, epoch0, n_epochs, batch_size, shuffle, seed):
        """Fast path of ``fit``: no validation data, early stopping off, no
        schedule, no report; returns the history instead of filling buffers.

        Takes X and Y only when they are already C-contiguous float64
        ndarrays, X (n, n_in) and Y (n, n_out) (or (n,) for one output,
        except with categorical cross-entropy), both finite and Y within
        [0, 1] for the cross-entropies; otherwise returns None having
        touched nothing, and the caller validates and converts.  The other
        arguments are ``fit``'s, n_epochs >= 1.

        Returns
        -------
        (loss, accuracy, epochs, steps, status, error)
            ``loss``: a new float64 array of the completed epochs' losses;
            ``accuracy`` one of their accuracies for the cross-entropy
            losses, else None; epochs, steps and status as ``fit`` returns
            them; ``error`` the exception a signal handler raised
            (KeyboardInterrupt for Ctrl-C), returned rather than raised so
            that the caller commits the completed epochs first, else None.
        """
        if type(X) is not np.ndarray or type(Y) is not np.ndarray or n_epochs < 1:
            return None
        n_in, n_out = self.layer_ints[0, _codes.LAYER_N_IN], self.layer_ints[-1, _codes.LAYER_N_OUT]
        if X.dtype != np.float64 or not X.flags.c_contiguous or X.ndim != 2:
            return None
        n = X.shape[0]
        if X.shape[1] != n_in or n < 1:
            return None
        if Y.dtype != np.float64 or not Y.flags.c_contiguous:
            return None
        if Y.ndim == 1 and n_out == 1 and self.loss != _codes.LOSS_CCE:
            Y = Y.reshape(-1, 1)
        if Y.ndim != 2 or Y.shape != (n, n_out):
            return None
        unit = self.loss in (_codes.LOSS_CCE, _codes.LOSS_BCE)
        if not np.isfinite(Y).all() or (unit and not ((Y >= 0.0) & (Y <= 1.0)).all()):
            return None
        if not np.isfinite(X).all():
            return None
        early_stop = np.zeros(_codes.N_EARLY_STOP)  # off, as _fit.run sets it up
        early_stop[_codes.EARLY_STOP_BEST_LOSS] = np.inf
        early_stop[_codes.EARLY_STOP_BEST_EPOCH] = -1
        schedule = np.zeros(_codes.N_SCHEDULE)
        schedule[_codes.SCHEDULE_KIND] = _codes.SCHEDULE_NONE
        history = np.empty((n_epochs, _codes.N_HISTORY))
        progress = np.zeros(2, dtype=np.int64)
        args = (kind, hyper, state, t, epoch0, n_epochs, batch_size, shuffle, seed, early_stop)
        error = None
        try:
            best = np.empty(self.params.shape[0])
            epochs, steps, status = self.fit(
                X, Y, None, None, *args, best, history, progress, 0.0, schedule
            )
        except BaseException as exc:  # (KeyboardInterrupt): the completed epochs stand
            error = exc
            epochs, steps, status = int(progress[0]), int(progress[1]), _codes.FIT_DONE
        loss = history[:epochs, _codes.HISTORY_LOSS].copy()
        accuracy = history[:epochs, _codes.HISTORY_ACCURACY].copy() if unit else None
        self.fast_out = loss, accuracy, epochs, steps, status, error
        return self.fast_out

    def _fit_epoch(
        self,
        X,
        Y,
        Xv,
        Yv,
        kind,
        hyper,
        state,
        t,
        epoch,
        n,
        bs,
        shuffle,
        seed,
        early_stop,
        best,
        row,
        steps,
        schedule,
        base_lr,
    ):
        """One epoch of :meth:`fit`: (status, steps so far); FIT_DIVERGED leaves
        the rollback to the caller."""
        order = shuffle_order(seed, epoch, n) if shuffle else np.arange(n)
        total, hit, seen, batches = 0.0, 0, 0, 0
        for first in range(0, n, bs):
            idx = order[first : first + bs]
            self._cache = _passes.forward(self, X[idx], train=(seed, epoch, first))
            value = _passes.backward(self, Y[idx])
            h, s = _passes.accuracy(self, self._cache[-1][2], Y[idx])
            if not math.isfinite(value) or not _passes.update(self, kind, hyper, state, t + steps):
                return _codes.FIT_DIVERGED, steps
            steps += 1
            total += value
            hit, seen, batches = hit + h, seen + s, batches + 1
        row[_codes.HISTORY_LOSS] = total / batches
        row[_codes.HISTORY_LR] = hyper[_codes.HYPER_LEARNING_RATE]
        row[_codes.HISTORY_ACCURACY] = hit / seen if seen else math.nan
        if Xv is not None:
            row[_codes.HISTORY_VAL_LOSS], row[_codes.HISTORY_VAL_ACCURACY] = _passes.evaluate(
                self, Xv, Yv
            )
            if not math.isfinite(row[_codes.HISTORY_VAL_LOSS]):  # a loss became infinite
                return _codes.FIT_DIVERGED, steps
        else:
            row[_codes.HISTORY_VAL_LOSS] = row[_codes.HISTORY_VAL_ACCURACY] = math.nan
        cur = row[_codes.HISTORY_VAL_LOSS] if Xv is not None else row[_codes.HISTORY_LOSS]
        schedule_end_epoch(schedule, cur, base_lr, hyper[_codes.HYPER_LEARNING_RATE])
        if early_stop[_codes.EARLY_STOP_ENABLED] != 0.0:
            # an improvement is a loss below best - tolerance
            if cur >= (
                early_stop[_codes.EARLY_STOP_BEST_LOSS] - early_stop[_codes.EARLY_STOP_TOLERANCE]
            ):
                early_stop[_codes.EARLY_STOP_WAIT] += 1.0
            else:
                early_stop[_codes.EARLY_STOP_WAIT] = 0.0
            if cur < early_stop[_codes.EARLY_STOP_BEST_LOSS]:
                early_stop[_codes.EARLY_STOP_BEST_LOSS] = cur
                early_stop[_codes.EARLY_STOP_BEST_EPOCH] = epoch
                np.copyto(best, self.params)
            if early_stop[_codes.EARLY_STOP_WAIT] >= early_stop[_codes.EARLY_STOP_PATIENCE]:
                return _codes.FIT_STOPPED, steps
        return _codes.FIT_DONE, steps
