"""The NumPy twin of the native core.

Every function and class here has the same signature as its counterpart in
the compiled module ``cbp._core``.  They are written the way the seed
tutorials write backprop, with NumPy array operations, and they are the
specification the native kernels are tested against (``cbp._registry``).

All arrays are float64.  Kernels write into the ``out`` arrays they are given
and return them; they never modify their inputs.  Callers (``cbp.network``)
validate shapes, dtypes and finiteness before calling.
"""
import math

import numpy as np

from . import _codes as C
from ._errors import DivergenceError

__all__ = [
    "dense_forward",
    "activation_forward",
    "activation_backward",
    "loss_value",
    "loss_gradient",
    "output_delta",
    "dense_backward",
    "penalty",
    "add_penalty_gradient",
    "sgd_update",
    "Engine",
]


# --------------------------------------------------------------------------
# Dense layer
# --------------------------------------------------------------------------
def dense_forward(X, W, b, out):
    """out := X @ W + b.  X (n, i), W (i, j), b (j,) or None, out (n, j)."""
    np.matmul(X, W, out=out)
    if b is not None:
        out += b
    return out


def dense_backward(X, W, dZ, dW, db, dX):
    """dW := X.T @ dZ, db := sum(dZ, axis=0), dX := dZ @ W.T.

    X (n, i), W (i, j), dZ (n, j), dW (i, j), db (j,) or None, dX (n, i) or None.
    """
    np.matmul(X.T, dZ, out=dW)
    if db is not None:
        np.sum(dZ, axis=0, out=db)
    if dX is not None:
        np.matmul(dZ, W.T, out=dX)


# --------------------------------------------------------------------------
# Activations.  Masks are written from Z where the function is piecewise and
# from A = f(Z) where it is smooth, with the same comparisons as the native
# kernels, so that the two agree bit for bit wherever the libm does.
# --------------------------------------------------------------------------
def activation_forward(act, Z, out, alpha=0.0):
    """out := f(Z), elementwise (row-wise for softmax).  Z, out (n, j)."""
    if act == C.ACT_IDENTITY:
        out[...] = Z
    elif act == C.ACT_RELU:
        np.maximum(Z, 0.0, out=out)
    elif act == C.ACT_LEAKY:
        np.copyto(out, np.where(Z > 0.0, Z, alpha * Z))
    elif act == C.ACT_ELU:
        np.copyto(out, np.where(Z > 0.0, Z, alpha * np.expm1(np.minimum(Z, 0.0))))
    elif act == C.ACT_SIGMOID:
        with np.errstate(over="ignore"):
            np.copyto(out, 1.0 / (1.0 + np.exp(-Z)))
    elif act == C.ACT_TANH:
        np.tanh(Z, out=out)
    elif act == C.ACT_SOFTMAX:
        e = np.exp(Z - Z.max(axis=1, keepdims=True))
        np.divide(e, e.sum(axis=1, keepdims=True), out=out)
    else:
        raise ValueError(f"unknown activation code {act}")
    return out


def activation_backward(act, Z, A, dA, out, alpha=0.0):
    """out := dL/dZ given dA = dL/dA, Z and A = f(Z).  All (n, j).

    The ReLU derivative is 0 at exactly Z == 0, as the seeds define it.
    """
    if act == C.ACT_IDENTITY:
        out[...] = dA
    elif act == C.ACT_RELU:
        np.copyto(out, np.where(Z > 0.0, dA, 0.0))
    elif act == C.ACT_LEAKY:
        np.copyto(out, np.where(Z > 0.0, dA, alpha * dA))
    elif act == C.ACT_ELU:
        # f'(z) = f(z) + alpha for z <= 0 (seed 002's table)
        np.copyto(out, np.where(Z > 0.0, dA, dA * (A + alpha)))
    elif act == C.ACT_SIGMOID:
        np.copyto(out, dA * (A * (1.0 - A)))
    elif act == C.ACT_TANH:
        np.copyto(out, dA * (1.0 - A * A))
    elif act == C.ACT_SOFTMAX:
        # Jacobian-vector product: dZ_j = A_j * (dA_j - sum_k dA_k A_k)
        s = np.sum(dA * A, axis=1, keepdims=True)
        np.copyto(out, A * (dA - s))
    else:
        raise ValueError(f"unknown activation code {act}")
    return out


# --------------------------------------------------------------------------
# Losses.  P is the network output (n, j), Y the target (n, j): regression
# values, or one-hot / probability rows for the cross-entropies.
# --------------------------------------------------------------------------
def _scale(loss, reduction, n, j):
    if reduction == C.RED_SUM:
        return 1.0
    if loss == C.LOSS_CCE:
        return 1.0 / n
    return 1.0 / (n * j)


def loss_value(loss, P, Y, reduction):
    """The loss of prediction P against target Y, reduced by mean or sum."""
    n, j = P.shape
    s = _scale(loss, reduction, n, j)
    if loss == C.LOSS_SE:
        return float(np.sum((P - Y) ** 2) * s)
    if loss == C.LOSS_HALF_SE:
        return float(0.5 * np.sum((P - Y) ** 2) * s)
    Pc = np.clip(P, C.CLIP_EPS, 1.0 - C.CLIP_EPS)
    if loss == C.LOSS_CCE:
        return float(np.sum(-np.log(np.sum(Pc * Y, axis=1))) * s)
    if loss == C.LOSS_BCE:
        return float(np.sum(-(Y * np.log(Pc) + (1.0 - Y) * np.log(1.0 - Pc))) * s)
    raise ValueError(f"unknown loss code {loss}")


def loss_gradient(loss, P, Y, out, reduction):
    """out := dL/dP; returns the loss.

    For the cross-entropies P is clipped to [1e-7, 1 - 1e-7] before dividing,
    as nnfs does, so the gradient stays finite at 0 and 1.
    """
    n, j = P.shape
    s = _scale(loss, reduction, n, j)
    if loss == C.LOSS_SE:
        np.copyto(out, 2.0 * s * (P - Y))
    elif loss == C.LOSS_HALF_SE:
        np.copyto(out, s * (P - Y))
    elif loss == C.LOSS_CCE:
        Pc = np.clip(P, C.CLIP_EPS, 1.0 - C.CLIP_EPS)
        np.copyto(out, -s * (Y / Pc))
    elif loss == C.LOSS_BCE:
        Pc = np.clip(P, C.CLIP_EPS, 1.0 - C.CLIP_EPS)
        np.copyto(out, -s * (Y / Pc - (1.0 - Y) / (1.0 - Pc)))
    else:
        raise ValueError(f"unknown loss code {loss}")
    return loss_value(loss, P, Y, reduction)


def output_delta(act, loss, Z, A, Y, out, reduction, alpha=0.0):
    """out := dL/dZ of the output layer; returns the loss.

    Two pairs are fused, as in scikit-learn's MLP: softmax followed by
    categorical cross-entropy gives dZ = (A * sum(Y) - Y) * s, which is the
    familiar (p - onehot) / N for one-hot rows, and sigmoid followed by binary
    cross-entropy gives dZ = (A - Y) * s.  Every other pair chains
    loss_gradient and activation_backward.
    """
    n, j = A.shape
    if act == C.ACT_SOFTMAX and loss == C.LOSS_CCE:
        s = _scale(loss, reduction, n, j)
        np.copyto(out, (A * np.sum(Y, axis=1, keepdims=True) - Y) * s)
        return loss_value(loss, A, Y, reduction)
    if act == C.ACT_SIGMOID and loss == C.LOSS_BCE:
        s = _scale(loss, reduction, n, j)
        np.copyto(out, (A - Y) * s)
        return loss_value(loss, A, Y, reduction)
    dA = np.empty_like(A)
    value = loss_gradient(loss, A, Y, dA, reduction)
    activation_backward(act, Z, A, dA, out, alpha)
    return value


# --------------------------------------------------------------------------
# Regularisation (nnfs semantics) and the update
# --------------------------------------------------------------------------
def penalty(V, l1, l2):
    """l1 * sum(|V|) + l2 * sum(V**2)."""
    value = 0.0
    if l1 > 0.0:
        value += l1 * float(np.sum(np.abs(V)))
    if l2 > 0.0:
        value += l2 * float(np.sum(V * V))
    return value


def add_penalty_gradient(V, dV, l1, l2):
    """dV += l1 * sign(V) + 2 * l2 * V."""
    if l1 > 0.0:
        dV += l1 * np.sign(V)
    if l2 > 0.0:
        dV += 2.0 * l2 * V


def sgd_update(params, grads, lr):
    """params -= lr * grads, in place."""
    params -= lr * grads
    return params


# --------------------------------------------------------------------------
# The network engine
# --------------------------------------------------------------------------
class Engine:
    """Forward, backward and update over a flat parameter buffer.

    Parameters
    ----------
    meta : int64 array (n_layers, N_META)
        One row a layer: kind, n_in, n_out, activation code, weight offset,
        bias offset (-1: no bias), trainable flag.
    hyper : float64 array (n_layers, N_HYPER)
        One row a layer: activation alpha, weight L1, weight L2, bias L1,
        bias L2, dropout rate.
    params, grads : float64 arrays (n_params,)
        The network's flat parameter and gradient buffers, shared (not
        copied): the engine reads and writes them in place.
    loss, reduction : int
        Codes from ``cbp._codes``.
    """

    def __init__(self, meta, hyper, params, grads, loss, reduction):
        self.meta = np.array(meta, dtype=np.int64)
        self.hyper = np.array(hyper, dtype=np.float64)
        self.params = params
        self.grads = grads
        self.loss = int(loss)
        self.reduction = int(reduction)
        self._cache = None

    # -- views ------------------------------------------------------------
    def _w(self, buf, l):
        m = self.meta[l]
        off, n_in, n_out = m[C.M_WOFF], m[C.M_NIN], m[C.M_NOUT]
        return buf[off : off + n_in * n_out].reshape(n_in, n_out)

    def _b(self, buf, l):
        m = self.meta[l]
        off = m[C.M_BOFF]
        return None if off < 0 else buf[off : off + m[C.M_NOUT]]

    # -- passes -----------------------------------------------------------
    def _forward(self, X):
        cache = []
        A = np.array(X, dtype=np.float64)  # a private copy, as the native engine keeps
        for l, m in enumerate(self.meta):
            n_out = m[C.M_NOUT]
            Z = np.empty((A.shape[0], n_out))
            dense_forward(A, self._w(self.params, l), self._b(self.params, l), Z)
            An = np.empty_like(Z)
            activation_forward(m[C.M_ACT], Z, An, self.hyper[l, C.H_ALPHA])
            cache.append((A, Z, An))
            A = An
        return cache

    def forward(self, X):
        """Run X (n, n_in) through the network; keep what backward needs."""
        self._cache = self._forward(X)
        return self._cache[-1][2]

    def predict(self, X):
        """The output for X as a new array; the backward cache is untouched."""
        return self._forward(X)[-1][2].copy()

    def backward(self, Y):
        """Fill the gradient buffer for target Y (n, n_out); return the loss.

        The loss includes every layer's L1/L2 penalty.
        """
        if self._cache is None:
            raise RuntimeError("backward() needs a forward() first")
        L = len(self.meta)
        Ain, Z, A = self._cache[-1]
        m = self.meta[-1]
        dZ = np.empty_like(Z)
        value = output_delta(
            m[C.M_ACT], self.loss, Z, A, Y, dZ, self.reduction, self.hyper[-1, C.H_ALPHA]
        )
        for l in range(L - 1, -1, -1):
            Ain, Z, A = self._cache[l]
            W = self._w(self.params, l)
            dX = np.empty_like(Ain) if l > 0 else None
            dense_backward(Ain, W, dZ, self._w(self.grads, l), self._b(self.grads, l), dX)
            if l > 0:
                Zp, Ap = self._cache[l - 1][1:]
                dZ = np.empty_like(Zp)
                activation_backward(
                    self.meta[l - 1, C.M_ACT], Zp, Ap, dX, dZ, self.hyper[l - 1, C.H_ALPHA]
                )
        return value + self._regularize()

    def _regularize(self):
        value = 0.0
        for l in range(len(self.meta)):
            h = self.hyper[l]
            W, dW = self._w(self.params, l), self._w(self.grads, l)
            value += penalty(W, h[C.H_WL1], h[C.H_WL2])
            add_penalty_gradient(W, dW, h[C.H_WL1], h[C.H_WL2])
            b = self._b(self.params, l)
            if b is not None:
                db = self._b(self.grads, l)
                value += penalty(b, h[C.H_BL1], h[C.H_BL2])
                add_penalty_gradient(b, db, h[C.H_BL1], h[C.H_BL2])
        return value

    def _trainable(self):
        for l, m in enumerate(self.meta):
            if m[C.M_TRAIN]:
                yield self._w(self.params, l), self._w(self.grads, l)
                b = self._b(self.params, l)
                if b is not None:
                    yield b, self._b(self.grads, l)

    def _sgd_ok(self, lr):
        with np.errstate(over="ignore", invalid="ignore"):
            return all(np.isfinite(p - lr * g).all() for p, g in self._trainable())

    def sgd_step(self, lr):
        """params -= lr * grads over the trainable layers.

        Raises DivergenceError, and leaves the parameters as they were, if the
        update would make any of them NaN or infinite.
        """
        if not self._sgd_ok(lr):
            raise DivergenceError(
                "the update would make a parameter NaN or infinite; "
                "the parameters were left at their last finite values"
            )
        self._sgd(lr)

    def _sgd(self, lr):
        for l, m in enumerate(self.meta):
            if m[C.M_TRAIN]:
                sgd_update(self._w(self.params, l), self._w(self.grads, l), lr)
                b = self._b(self.params, l)
                if b is not None:
                    sgd_update(b, self._b(self.grads, l), lr)

    def train_step(self, X, Y, lr):
        """forward, backward and sgd_step in one call; the loss before the update."""
        self.forward(X)
        value = self.backward(Y)
        if not (math.isfinite(value) and self._sgd_ok(lr)):
            raise DivergenceError(
                f"training diverged: the loss is {value!r} or the update would make a "
                "parameter NaN or infinite; the parameters were left at their last "
                "finite values"
            )
        self._sgd(lr)
        return value
