"""The twin Engine's scikit-learn arithmetic (the native one is
``src/_engine_sklearn.pxi``): one epoch of scikit-learn's mini-batch loop,
and the loss and gradient of one batch (lbfgs), on the engine's layers; and
the twins of that include's private kernels.

Functions of an engine ``e`` (a ``cbp._reference.Engine``, whose
``sklearn_epoch`` and ``sklearn_loss_grad`` call them).  A batch is
scikit-learn's own ``_backprop``, operation for operation
(``cbp._sklearn_epoch.backprop``); the updates are its SGD (momentum,
Nesterov) and Adam.

``sklearn_adam_update`` has the signature of the native
``cbp._core._sklearn_adam_update`` and computes what it computes, operation
for operation, so that the two agree bit for bit
(``tests/test_sklearn_kernels.py`` compares them).
"""

import math

import numpy as np

from . import _codes
from ._reference_passes import bias, diverged, weights

#: the hidden activations scikit-learn has, by activation code
HIDDEN = {
    _codes.ACT_IDENTITY: "identity",
    _codes.ACT_RELU: "relu",
    _codes.ACT_SIGMOID: "logistic",
    _codes.ACT_TANH: "tanh",
}
#: scikit-learn's loss and output activation, by loss code
LOSS = {
    _codes.LOSS_SK_SQUARED: ("squared_error", "identity"),
    _codes.LOSS_SK_LOG: ("log_loss", "softmax"),
    _codes.LOSS_SK_BINARY_LOG: ("binary_log_loss", "logistic"),
    _codes.LOSS_SK_POISSON: ("poisson", "exp"),
}


def check(e, X, Y, sw, loss):
    """The checked sample weights (None, or (n,) float64); ValueError for
    inputs or a network that scikit-learn's loop cannot run."""
    L = len(e.layer_ints)
    if not (
        isinstance(X, np.ndarray)
        and isinstance(Y, np.ndarray)
        and X.dtype == np.float64
        and Y.dtype == np.float64
        and X.ndim == 2
        and Y.ndim == 2
        and X.flags.c_contiguous
        and Y.flags.c_contiguous
    ):
        raise ValueError("sklearn_epoch: X and Y must be C-contiguous 2-D float64 arrays")
    n_in = e.layer_ints[0][_codes.LAYER_N_IN]
    n_out = e.layer_ints[-1][_codes.LAYER_N_OUT]
    if X.shape[1] != n_in or Y.shape[1] != n_out or X.shape[0] != Y.shape[0] or X.shape[0] < 1:
        raise ValueError(
            f"sklearn_epoch: X is {X.shape} and Y {Y.shape}; the network "
            f"takes {n_in} inputs and gives {n_out} outputs"
        )
    if loss not in LOSS:
        raise ValueError(f"sklearn_epoch: bad loss code {loss}")
    for l, m in enumerate(e.layer_ints):
        if m[_codes.LAYER_KIND] != _codes.KIND_DENSE or m[_codes.LAYER_BIAS_OFFSET] < 0:
            raise ValueError("sklearn_epoch: every layer must be dense with a bias")
        if l < L - 1 and m[_codes.LAYER_ACTIVATION] not in HIDDEN:
            raise ValueError(
                "sklearn_epoch: hidden activations are identity, relu, sigmoid or tanh"
            )
    if not np.isfinite(X).all() or not np.isfinite(Y).all():
        raise ValueError("sklearn_epoch: X and Y must be finite")
    if sw is not None:
        sw = np.ascontiguousarray(sw, dtype=np.float64)
        if sw.shape != (X.shape[0],) or not np.isfinite(sw).all() or (sw < 0).any():
            raise ValueError("sklearn_epoch: sample weights must be (n,) finite and >= 0")
    return sw


def batch(e, X, Y, sw, loss, alpha):
    """scikit-learn's loss of the batch (X, Y); its gradient into grads."""
    from . import _sklearn_epoch as E

    L = len(e.layer_ints)
    coefs = [weights(e, e.params, l) for l in range(L)]
    intercepts = [bias(e, e.params, l) for l in range(L)]
    hidden = HIDDEN[e.layer_ints[0][_codes.LAYER_ACTIVATION]] if L > 1 else "identity"
    name, out = LOSS[loss]
    value, cg, ig = E.backprop(coefs, intercepts, X, Y, sw, hidden, out, name, alpha)
    for l in range(L):
        weights(e, e.grads, l)[...] = cg[l]
        bias(e, e.grads, l)[...] = ig[l]
    return value


def loss_grad(e, X, Y, sw, loss, alpha):
    """scikit-learn's loss of all rows; its gradient into grads."""
    sw = check(e, X, Y, sw, loss)
    return batch(e, X, Y, sw, loss, alpha)


def epoch(e, X, Y, sw, order, batch_size, loss, alpha, kind, hyper, state, t):
    """One epoch of scikit-learn's mini-batch loop (see ``Engine.sklearn_epoch``);
    (sum over batches of batch loss * batch rows, t)."""
    sw = check(e, X, Y, sw, loss)
    n = X.shape[0]
    P = e.params.shape[0]
    if kind not in (_codes.OPT_SGD, _codes.OPT_ADAM_SK):
        raise ValueError("sklearn_epoch: the optimizer is OPT_SGD or OPT_ADAM_SK")
    if batch_size < 1:
        raise ValueError("sklearn_epoch: batch_size must be >= 1")
    slots = 1 if kind == _codes.OPT_SGD else 2
    hyper = np.ascontiguousarray(hyper, dtype=np.float64)
    if hyper.shape != (_codes.N_OPTIMIZER_HYPER,) or not np.isfinite(hyper).all():
        raise ValueError("sklearn_epoch: hyper must be (N_OPTIMIZER_HYPER,) finite float64")
    if not (
        isinstance(state, np.ndarray)
        and state.dtype == np.float64
        and state.flags.c_contiguous
        and state.shape == (slots * P,)
    ):
        raise ValueError(
            f"sklearn_epoch: state must be a C-contiguous float64 array of {slots * P}"
        )
    if order is not None:
        order = np.ascontiguousarray(order, dtype=np.int64)
        if order.shape != (n,) or order.min() < 0 or order.max() >= n:
            raise ValueError("sklearn_epoch: order must be (n,) indices in range(n)")
    else:
        order = np.arange(n, dtype=np.int64)
    batch_size = min(batch_size, n)
    lr = hyper[_codes.HYPER_LEARNING_RATE]
    total = 0.0
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        value = batch(e, X[idx], Y[idx], None if sw is None else sw[idx], loss, alpha)
        if not math.isfinite(value):
            diverged(
                f"a batch loss was NaN or infinite (rows {start} to "
                f"{start + len(idx)} of the epoch)"
            )
        saved = e.params.copy(), state.copy()
        g = e.grads
        t += 1.0
        if kind == _codes.OPT_SGD:
            mu = hyper[_codes.HYPER_MOMENTUM]
            u = mu * state - lr * g
            state[...] = u
            if hyper[_codes.HYPER_NESTEROV] != 0.0:
                u = mu * u - lr * g
            e.params += u
        else:
            b1, b2, eps = (
                hyper[_codes.HYPER_BETA1],
                hyper[_codes.HYPER_BETA2],
                hyper[_codes.HYPER_EPSILON],
            )
            ms, vs = state[:P], state[P:]
            ms[...] = b1 * ms + (1 - b1) * g
            vs[...] = b2 * vs + (1 - b2) * (g * g)
            lr_t = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
            e.params += -lr_t * ms / (np.sqrt(vs) + eps)
        if not (np.isfinite(e.params).all() and np.isfinite(state).all()):
            np.copyto(e.params, saved[0])
            np.copyto(state, saved[1])
            diverged("the update made a parameter NaN or infinite")
        total += value * len(idx)
    return total, t


# -- the twins of the private kernels ---------------------------------------
def sklearn_adam_update(params, grads, m, v, lr_t, beta_1, beta_2, epsilon):
    """scikit-learn's Adam step in place: m := b1 m + (1 - b1) g, v := b2 v +
    (1 - b2) g**2, params += -lr_t m / (sqrt(v) + epsilon); True if all stay finite."""
    with np.errstate(all="ignore"):  # a non-finite step is reported, not warned about
        m[...] = beta_1 * m + (1 - beta_1) * grads
        v[...] = beta_2 * v + (1 - beta_2) * (grads * grads)
        params += -lr_t * m / (np.sqrt(v) + epsilon)
    return bool(np.isfinite(params).all() and np.isfinite(m).all() and np.isfinite(v).all())
