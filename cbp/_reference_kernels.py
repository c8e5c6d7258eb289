"""The NumPy twins of the native kernels (``src/_kernels.pxd``, through the
wrappers of ``src/_wrappers.pxi``): the dense layer (row-major and
feature-major), the activations, the losses, the penalties and the
optimizer updates.

Each function has the signature of its wrapper in ``cbp._core``, and a
one-line math docstring.  All arrays are float64; the functions write into
the ``out`` arrays they are given and return them, and never modify their
inputs.  ``cbp._reference`` re-exports them (``cbp._registry`` pairs them
with the native ones).
"""

import numpy as np

from . import _codes

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


_FM_ACTS = (_codes.ACT_IDENTITY, _codes.ACT_RELU, _codes.ACT_SIGMOID)


def _feature_major_check(act, who, m):
    if act not in _FM_ACTS:
        raise ValueError(f"{who}: activation code {act} is not identity, relu or sigmoid")
    if m <= 0 or m % 4:
        raise ValueError(f"{who}: needs i, j > 0 and m a positive multiple of 4")


def dense_forward_feature_major(XT, W, b, out, act):
    """out := f(W.T @ XT + b[:, None]), feature-major: XT (i, m), W (i, j),
    b (j,) or None, out (j, m), m a positive multiple of 4; f is the
    identity, relu or sigmoid (activation codes)."""
    _feature_major_check(act, "dense_forward_feature_major", XT.shape[1])
    np.matmul(W.T, XT, out=out)
    if b is not None:
        out += b[:, None]
    if act != _codes.ACT_IDENTITY:
        activation_forward(act, out, out)
    return out


def dense_backward_feature_major(XT, W, dT, A, act, dW, db, dXT):
    """dW := XT @ dT.T, db := sum(dT, axis=1), dXT := (W @ dT) * f'(Z) from
    A = f(Z) (db, dXT optional; A is read for relu and sigmoid), feature-major:
    XT, A, dXT (i, m), W, dW (i, j), dT (j, m), m a positive multiple of 4."""
    _feature_major_check(act, "dense_backward_feature_major", XT.shape[1])
    np.matmul(XT, dT.T, out=dW)
    if db is not None:
        np.sum(dT, axis=1, out=db)
    if dXT is not None:
        np.matmul(W, dT, out=dXT)
        if act != _codes.ACT_IDENTITY:  # relu's mask from A > 0, which is Z > 0
            activation_backward(act, A, A, dXT, dXT)


# --------------------------------------------------------------------------
# Activations.  Masks are written from Z where the function is piecewise and
# from A = f(Z) where it is smooth, with the same comparisons as the native
# kernels, so that the two agree bit for bit wherever the libm does.
# --------------------------------------------------------------------------
def activation_forward(act, Z, out, alpha=0.0):
    """out := f(Z), elementwise (row-wise for softmax).  Z, out (n, j)."""
    if act == _codes.ACT_IDENTITY:
        out[...] = Z
    elif act == _codes.ACT_RELU:
        np.maximum(Z, 0.0, out=out)
    elif act == _codes.ACT_LEAKY:
        np.copyto(out, np.where(Z > 0.0, Z, alpha * Z))
    elif act == _codes.ACT_ELU:
        np.copyto(out, np.where(Z > 0.0, Z, alpha * np.expm1(np.minimum(Z, 0.0))))
    elif act == _codes.ACT_SIGMOID:
        with np.errstate(over="ignore"):
            np.copyto(out, 1.0 / (1.0 + np.exp(-Z)))
    elif act == _codes.ACT_TANH:
        np.tanh(Z, out=out)
    elif act == _codes.ACT_SOFTMAX:
        e = np.exp(Z - Z.max(axis=1, keepdims=True))
        np.divide(e, e.sum(axis=1, keepdims=True), out=out)
    else:
        raise ValueError(f"unknown activation code {act}")
    return out


def activation_backward(act, Z, A, dA, out, alpha=0.0):
    """out := dL/dZ given dA = dL/dA, Z and A = f(Z).  All (n, j).

    The ReLU derivative is 0 at exactly Z == 0, as the seeds define it.
    """
    if act == _codes.ACT_IDENTITY:
        out[...] = dA
    elif act == _codes.ACT_RELU:
        np.copyto(out, np.where(Z > 0.0, dA, 0.0))
    elif act == _codes.ACT_LEAKY:
        np.copyto(out, np.where(Z > 0.0, dA, alpha * dA))
    elif act == _codes.ACT_ELU:
        # f'(z) = f(z) + alpha for z <= 0 (seed 002's table)
        np.copyto(out, np.where(Z > 0.0, dA, dA * (A + alpha)))
    elif act == _codes.ACT_SIGMOID:
        np.copyto(out, dA * (A * (1.0 - A)))
    elif act == _codes.ACT_TANH:
        np.copyto(out, dA * (1.0 - A * A))
    elif act == _codes.ACT_SOFTMAX:
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
    if reduction == _codes.RED_SUM:
        return 1.0
    if loss == _codes.LOSS_CCE:
        return 1.0 / n
    return 1.0 / (n * j)


def loss_value(loss, P, Y, reduction):
    """The loss of prediction P against target Y, reduced by mean or sum."""
    n, j = P.shape
    s = _scale(loss, reduction, n, j)
    if loss == _codes.LOSS_SE:
        return float(np.sum((P - Y) ** 2) * s)
    if loss == _codes.LOSS_HALF_SE:
        return float(0.5 * np.sum((P - Y) ** 2) * s)
    Pc = np.clip(P, _codes.CLIP_EPS, 1.0 - _codes.CLIP_EPS)
    if loss == _codes.LOSS_CCE:
        # -sum(Y * log(P)) per row: -log(p_true) for one-hot rows, as in nnfs,
        # and the loss whose gradient is -Y / P for probability rows
        return float(-np.sum(Y * np.log(Pc)) * s)
    if loss == _codes.LOSS_BCE:
        return float(np.sum(-(Y * np.log(Pc) + (1.0 - Y) * np.log(1.0 - Pc))) * s)
    raise ValueError(f"unknown loss code {loss}")


def loss_gradient(loss, P, Y, out, reduction):
    """out := dL/dP; returns the loss.

    For the cross-entropies P is clipped to [1e-7, 1 - 1e-7] before dividing,
    as nnfs does, so the gradient stays finite at 0 and 1.
    """
    n, j = P.shape
    s = _scale(loss, reduction, n, j)
    if loss == _codes.LOSS_SE:
        np.copyto(out, 2.0 * s * (P - Y))
    elif loss == _codes.LOSS_HALF_SE:
        np.copyto(out, s * (P - Y))
    elif loss == _codes.LOSS_CCE:
        Pc = np.clip(P, _codes.CLIP_EPS, 1.0 - _codes.CLIP_EPS)
        np.copyto(out, -s * (Y / Pc))
    elif loss == _codes.LOSS_BCE:
        Pc = np.clip(P, _codes.CLIP_EPS, 1.0 - _codes.CLIP_EPS)
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
    if act == _codes.ACT_SOFTMAX and loss == _codes.LOSS_CCE:
        s = _scale(loss, reduction, n, j)
        np.copyto(out, (A * np.sum(Y, axis=1, keepdims=True) - Y) * s)
        return loss_value(loss, A, Y, reduction)
    if act == _codes.ACT_SIGMOID and loss == _codes.LOSS_BCE:
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


def optimizer_update(kind, hyper, params, grads, state, t):
    """One optimizer step on a flat segment, in place (nnfs semantics).

    kind : optimizer code; hyper : float64 (N_OPTIMIZER_HYPER,); state : float64
    (slots, m) for m parameters; t : steps taken before this one.  The
    learning rate decays as lr / (1 + decay * t).
    """
    lr = hyper[_codes.HYPER_LEARNING_RATE] / (1.0 + hyper[_codes.HYPER_DECAY] * t)
    eps = hyper[_codes.HYPER_EPSILON]
    if kind == _codes.OPT_SGD:
        mu = hyper[_codes.HYPER_MOMENTUM]
        if mu == 0.0:
            params -= lr * grads
        else:
            u = state[0]
            u *= mu
            u -= lr * grads
            if hyper[_codes.HYPER_NESTEROV] != 0.0:
                params += mu * u - lr * grads
            else:
                params += u
    elif kind == _codes.OPT_ADAGRAD:
        c = state[0]
        c += grads * grads
        params -= lr * grads / (np.sqrt(c) + eps)
    elif kind == _codes.OPT_RMSPROP:
        rho = hyper[_codes.HYPER_RHO]
        c = state[0]
        c *= rho
        c += (1.0 - rho) * (grads * grads)
        params -= lr * grads / (np.sqrt(c) + eps)
    elif kind == _codes.OPT_ADAM:
        b1, b2 = hyper[_codes.HYPER_BETA1], hyper[_codes.HYPER_BETA2]
        m, v = state[0], state[1]
        m *= b1
        m += (1.0 - b1) * grads
        v *= b2
        v += (1.0 - b2) * (grads * grads)
        mhat = m / (1.0 - b1 ** (t + 1))
        vhat = v / (1.0 - b2 ** (t + 1))
        params -= lr * mhat / (np.sqrt(vhat) + eps)
    else:
        raise ValueError(f"unknown optimizer code {kind}")
    return params
