"""scikit-learn's MLP arithmetic in NumPy, for the estimators of ``cbp.sklearn``.

The estimators run Python once per epoch (shuffle, early stopping, schedules,
the loss curve); the mini-batches of an epoch are one call of
``Engine.sklearn_epoch`` (``src/_engine_sklearn.pxi``, GIL released; its
twin ``cbp._reference.Engine.sklearn_epoch`` for ``backend="numpy"``), and
lbfgs evaluates ``Engine.sklearn_loss_grad``.  This module holds what stays
in Python: the optimizers' schedules and state (:class:`SGD`, :class:`Adam`,
whose ``kind``, ``hyper``, ``state`` and ``t`` the engine reads and
updates), :func:`forward` for predictions, and :func:`backprop`, one batch
of scikit-learn 1.9's ``_backprop`` operation for operation, which the twin
uses.
"""

import numpy as np
from scipy.special import expit, xlogy

from . import _codes

# -- activations, in place, as sklearn.neural_network._base --------------------


def _identity(Z):
    pass


def _logistic(Z):
    expit(Z, out=Z)


def _tanh(Z):
    np.tanh(Z, out=Z)


def _relu(Z):
    np.maximum(Z, 0, out=Z)


def _exp(Z):
    np.exp(Z, out=Z)


def _softmax(Z):
    tmp = Z - Z.max(axis=1)[:, np.newaxis]
    np.exp(tmp, out=Z)
    Z /= Z.sum(axis=1)[:, np.newaxis]


ACTIVATIONS = {
    "identity": _identity,
    "logistic": _logistic,
    "tanh": _tanh,
    "relu": _relu,
    "exp": _exp,
    "softmax": _softmax,
}


# -- derivatives from the activation's output Z, applied to delta in place -----


def _identity_derivative(Z, delta):
    pass


def _logistic_derivative(Z, delta):
    delta *= Z
    delta *= 1 - Z


def _tanh_derivative(Z, delta):
    delta *= 1 - Z**2


def _relu_derivative(Z, delta):
    delta[Z == 0] = 0


DERIVATIVES = {
    "identity": _identity_derivative,
    "logistic": _logistic_derivative,
    "tanh": _tanh_derivative,
    "relu": _relu_derivative,
}


# -- losses: y (n, k), p (n, k), sw (n,) or None -> float ----------------------


def squared_loss(y, p, sw):
    """0.5 * mean over outputs of the (weighted) mean over samples of (y - p)**2."""
    return 0.5 * np.average((y - p) ** 2, weights=sw, axis=0).mean()


def poisson_loss(y, p, sw):
    """Half Poisson deviance: sum over outputs of the mean of y log(y/p) - y + p."""
    return np.average(xlogy(y, y / p) - y + p, weights=sw, axis=0).sum()


def log_loss(y, p, sw):
    """Cross-entropy of softmax outputs, p clipped to [eps, 1 - eps]."""
    eps = np.finfo(p.dtype).eps
    p = np.clip(p, eps, 1 - eps)
    if p.shape[1] == 1:
        p = np.append(1 - p, p, axis=1)
    if y.shape[1] == 1:
        y = np.append(1 - y, y, axis=1)
    return -np.average(xlogy(y, p), weights=sw, axis=0).sum()


def binary_log_loss(y, p, sw):
    """Sum over outputs of the mean binary cross-entropy, p clipped to [eps, 1 - eps]."""
    eps = np.finfo(p.dtype).eps
    p = np.clip(p, eps, 1 - eps)
    return -np.average(xlogy(y, p) + xlogy(1 - y, 1 - p), weights=sw, axis=0).sum()


LOSSES = {
    "squared_error": squared_loss,
    "poisson": poisson_loss,
    "log_loss": log_loss,
    "binary_log_loss": binary_log_loss,
}


# -- optimizers: state per parameter array, coefs first, then intercepts ------


class _EngineState:
    def _engine_state(self, params, slots, kind):
        """The state of Engine.sklearn_epoch: ``kind``, ``hyper``, a flat
        ``state`` (slots x n_params, in the network's buffer order) and ``t``
        (batches so far)."""
        self.kind = kind
        self.hyper = np.zeros(_codes.N_OPTIMIZER_HYPER)
        self.hyper[_codes.HYPER_LEARNING_RATE] = self.learning_rate
        self.state = np.zeros(slots * sum(p.size for p in params))
        self.t = 0.0


class SGD(_EngineState):
    """scikit-learn's SGDOptimizer: v <- mu v - lr g; p += v (or mu v - lr g, Nesterov).

    The velocity holds the learning rate it was made with, so a rate changed
    between epochs scales only the new gradients.
    """

    def __init__(self, params, learning_rate_init, lr_schedule, momentum, nesterov, power_t):
        self.learning_rate_init = learning_rate_init
        self.learning_rate = float(learning_rate_init)
        self.lr_schedule = lr_schedule
        self.momentum = momentum
        self.nesterov = nesterov
        self.power_t = power_t
        self._engine_state(params, 1, _codes.OPT_SGD)
        self.hyper[_codes.HYPER_MOMENTUM] = momentum
        self.hyper[_codes.HYPER_NESTEROV] = 1.0 if nesterov else 0.0

    def iteration_ends(self, time_step):
        if self.lr_schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        if self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(f"{msg} Setting learning rate to {self.learning_rate:f}")
        return False


class Adam(_EngineState):
    """scikit-learn's AdamOptimizer: p -= lr_t m / (sqrt(v) + eps),
    lr_t = lr sqrt(1 - b2^t) / (1 - b1^t): epsilon is added to sqrt(v), not
    to the bias-corrected sqrt(v_hat) as in torch.optim and cbp.optim.Adam."""

    def __init__(self, params, learning_rate_init, beta_1, beta_2, epsilon):
        self.learning_rate_init = learning_rate_init
        self.learning_rate = float(learning_rate_init)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self._engine_state(params, 2, _codes.OPT_ADAM_SK)
        self.hyper[_codes.HYPER_BETA1] = beta_1
        self.hyper[_codes.HYPER_BETA2] = beta_2
        self.hyper[_codes.HYPER_EPSILON] = epsilon

    def iteration_ends(self, time_step):
        pass

    def trigger_stopping(self, msg, verbose):
        if verbose:
            print(msg + " Stopping.")
        return True


# -- one batch ------------------------------------------------------------------


def forward(coefs, intercepts, X, activation, out_activation):
    """Every layer's output for X: a list [X, A1, ..., A_out]."""
    acts = [X]
    hidden = ACTIVATIONS[activation]
    last = len(coefs) - 1
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        A = acts[i] @ W
        A += b
        (ACTIVATIONS[out_activation] if i == last else hidden)(A)
        acts.append(A)
    return acts


def backprop(coefs, intercepts, X, Y, sw, activation, out_activation, loss, alpha):
    """scikit-learn's ``_backprop``: (loss, coef_grads, intercept_grads) on one batch.

    loss = L(Y, out; sw) + 0.5 alpha sum(W**2) / sw_sum, with sw_sum the
    batch's weight sum (its size without weights).  The output delta is
    out - Y (the canonical link of each loss), times sw per row; then
    dW = (A.T @ delta + alpha W) / sw_sum and db = delta.sum(0) / sw_sum.
    """
    acts = forward(coefs, intercepts, X, activation, out_activation)
    value = LOSSES[loss](Y, acts[-1], sw)
    sq = 0
    for W in coefs:
        w = W.ravel()
        sq += np.dot(w, w)
    sw_sum = X.shape[0] if sw is None else sw.sum()
    value += (0.5 * alpha) * sq / sw_sum
    n = len(coefs)
    coef_grads = [None] * n
    intercept_grads = [None] * n
    delta = acts[-1] - Y
    if sw is not None:
        delta *= sw.reshape(-1, 1)
    derivative = DERIVATIVES[activation]
    for i in range(n - 1, -1, -1):
        g = acts[i].T @ delta
        g += alpha * coefs[i]
        g /= sw_sum
        coef_grads[i] = g
        intercept_grads[i] = np.sum(delta, axis=0) / sw_sum
        if i:
            delta = delta @ coefs[i].T
            derivative(acts[i], delta)
    return value, coef_grads, intercept_grads
