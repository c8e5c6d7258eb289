"""The NumPy twin of the native core.

Every function and class here has the same signature as its counterpart in
the compiled module ``cbp._core``.  They are written the way the seed
tutorials write backprop, with NumPy array operations, and they are the
specification the native kernels are tested against (``cbp._registry``).

All arrays are float64.  Kernels write into the ``out`` arrays they are given
and return them; they never modify their inputs.  Callers (``cbp.network``)
validate shapes, dtypes and finiteness before calling.
"""

import functools
import math
import time

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


_FM_ACTS = (C.ACT_IDENTITY, C.ACT_RELU, C.ACT_SIGMOID)


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
    if act != C.ACT_IDENTITY:
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
        if act != C.ACT_IDENTITY:  # relu's mask from A > 0, which is Z > 0
            activation_backward(act, A, A, dXT, dXT)


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
        # -sum(Y * log(P)) per row: -log(p_true) for one-hot rows, as in nnfs,
        # and the loss whose gradient is -Y / P for probability rows
        return float(-np.sum(Y * np.log(Pc)) * s)
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


def optimizer_update(kind, hyper, params, grads, state, t):
    """One optimizer step on a flat segment, in place (nnfs semantics).

    kind : optimizer code; hyper : float64 (N_OPTIMIZER_HYPER,); state : float64
    (slots, m) for m parameters; t : steps taken before this one.  The
    learning rate decays as lr / (1 + decay * t).
    """
    lr = hyper[C.HYPER_LEARNING_RATE] / (1.0 + hyper[C.HYPER_DECAY] * t)
    eps = hyper[C.HYPER_EPSILON]
    if kind == C.OPT_SGD:
        mu = hyper[C.HYPER_MOMENTUM]
        if mu == 0.0:
            params -= lr * grads
        else:
            u = state[0]
            u *= mu
            u -= lr * grads
            if hyper[C.HYPER_NESTEROV] != 0.0:
                params += mu * u - lr * grads
            else:
                params += u
    elif kind == C.OPT_ADAGRAD:
        c = state[0]
        c += grads * grads
        params -= lr * grads / (np.sqrt(c) + eps)
    elif kind == C.OPT_RMSPROP:
        rho = hyper[C.HYPER_RHO]
        c = state[0]
        c *= rho
        c += (1.0 - rho) * (grads * grads)
        params -= lr * grads / (np.sqrt(c) + eps)
    elif kind == C.OPT_ADAM:
        b1, b2 = hyper[C.HYPER_BETA1], hyper[C.HYPER_BETA2]
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


# --------------------------------------------------------------------------
# The shared counter-based generator (splitmix64).  Integer arithmetic wraps
# modulo 2**64 on both sides, so the native loop and this twin draw the same
# numbers from the same (seed, stream, counter).
# --------------------------------------------------------------------------
_U = np.uint64
_GOLDEN = _U(0x9E3779B97F4A7C15)
_M1, _M2 = _U(0xBF58476D1CE4E5B9), _U(0x94D049BB133111EB)


def _mix(z):
    z = (z ^ (z >> _U(30))) * _M1
    z = (z ^ (z >> _U(27))) * _M2
    return z ^ (z >> _U(31))


def random_bits(seed, stream, start, n):
    """uint64 draws number start .. start + n - 1 of stream ``stream``."""
    base = _mix(np.array([seed], dtype=np.uint64) ^ (np.array([stream], dtype=np.uint64) * _GOLDEN))
    counters = np.arange(start, start + n, dtype=np.uint64) + _U(1)
    return _mix(base + counters * _GOLDEN)


def shuffle_order(seed, epoch, n):
    """The sample order of an epoch: argsort of hashed keys, ties by index."""
    return np.argsort(random_bits(seed, 2 * epoch, 0, n), kind="stable").astype(np.int64)


def dropout_mask(seed, stream, start, rate, out):
    """out := 1 / (1 - rate) where a uniform draw >= rate, else 0 (inverted dropout)."""
    bits = random_bits(seed, stream, start, out.size)
    u = (bits >> _U(11)).astype(np.float64) * 2.0**-53
    np.copyto(out.reshape(-1), np.where(u >= rate, 1.0 / (1.0 - rate), 0.0))
    return out


# --------------------------------------------------------------------------
# Learning-rate schedules of Engine.fit (src/_engine_schedule.pxi): the same
# operations in the same order, on Python floats (libm's pow and cos), so
# that both backends give the same rates bit for bit.
# --------------------------------------------------------------------------
def _check_schedule(s):
    """ValueError unless ``s`` is a schedule vector fit can run."""
    if s.shape != (C.N_SCHEDULE,):
        raise ValueError("Engine: the schedule vector has the wrong size")
    finite = np.isfinite(s)
    finite[C.SCHEDULE_BEST] = True
    if not finite.all():
        raise ValueError("Engine: the schedule holds NaN or inf")
    kind = s[C.SCHEDULE_KIND]
    if kind not in (
        C.SCHEDULE_NONE,
        C.SCHEDULE_STEP,
        C.SCHEDULE_EXPONENTIAL,
        C.SCHEDULE_COSINE,
        C.SCHEDULE_PLATEAU,
    ):
        raise ValueError("Engine: bad schedule code")
    if kind == C.SCHEDULE_STEP and not (
        s[C.SCHEDULE_STEP_SIZE] >= 1.0
        and s[C.SCHEDULE_STEP_SIZE] == math.floor(s[C.SCHEDULE_STEP_SIZE])
        and s[C.SCHEDULE_GAMMA] > 0.0
    ):
        raise ValueError("Engine: bad step schedule")
    if kind == C.SCHEDULE_EXPONENTIAL and not s[C.SCHEDULE_GAMMA] > 0.0:
        raise ValueError("Engine: bad exponential schedule")
    if kind == C.SCHEDULE_COSINE and not (
        s[C.SCHEDULE_T_MAX] >= 1.0
        and s[C.SCHEDULE_T_MAX] == math.floor(s[C.SCHEDULE_T_MAX])
        and s[C.SCHEDULE_ETA_MIN] >= 0.0
    ):
        raise ValueError("Engine: bad cosine schedule")
    if kind == C.SCHEDULE_PLATEAU and not (
        0.0 < s[C.SCHEDULE_FACTOR] < 1.0
        and s[C.SCHEDULE_PATIENCE] >= 0.0
        and s[C.SCHEDULE_THRESHOLD] >= 0.0
        and s[C.SCHEDULE_COOLDOWN] >= 0.0
        and s[C.SCHEDULE_MIN_LR] >= 0.0
        and s[C.SCHEDULE_EPS] >= 0.0
        and s[C.SCHEDULE_SCALE] > 0.0
        and s[C.SCHEDULE_BAD_EPOCHS] >= 0.0
        and s[C.SCHEDULE_COOLDOWN_LEFT] >= 0.0
        and not math.isnan(s[C.SCHEDULE_BEST])
    ):
        raise ValueError("Engine: bad plateau schedule")


def schedule_rate(s, lr, epoch):
    """The learning rate of epoch ``epoch`` for base rate ``lr``."""
    kind, lr, e = int(s[C.SCHEDULE_KIND]), float(lr), float(epoch)
    if kind == C.SCHEDULE_STEP:
        return lr * math.pow(
            float(s[C.SCHEDULE_GAMMA]), math.floor(e / float(s[C.SCHEDULE_STEP_SIZE]))
        )
    if kind == C.SCHEDULE_EXPONENTIAL:
        return lr * math.pow(float(s[C.SCHEDULE_GAMMA]), e)
    if kind == C.SCHEDULE_COSINE:
        t, eta_min = float(s[C.SCHEDULE_T_MAX]), float(s[C.SCHEDULE_ETA_MIN])
        e = min(e, t)
        return eta_min + (lr - eta_min) * (1.0 + math.cos(math.pi * e / t)) / 2.0
    if kind == C.SCHEDULE_PLATEAU:
        return lr * float(s[C.SCHEDULE_SCALE])
    return lr


def schedule_end_epoch(s, monitored, lr, rate):
    """After an epoch run at ``rate`` (base rate ``lr``) whose monitored loss
    is ``monitored``: the plateau state, updated in place as torch's
    ReduceLROnPlateau (mode 'min', threshold_mode 'rel') steps it."""
    if int(s[C.SCHEDULE_KIND]) != C.SCHEDULE_PLATEAU:
        return
    if monitored < s[C.SCHEDULE_BEST] * (1.0 - s[C.SCHEDULE_THRESHOLD]):
        s[C.SCHEDULE_BEST] = monitored
        s[C.SCHEDULE_BAD_EPOCHS] = 0.0
    else:
        s[C.SCHEDULE_BAD_EPOCHS] += 1.0
    if s[C.SCHEDULE_COOLDOWN_LEFT] > 0.0:  # bad epochs in the cooldown do not count
        s[C.SCHEDULE_COOLDOWN_LEFT] -= 1.0
        s[C.SCHEDULE_BAD_EPOCHS] = 0.0
    if s[C.SCHEDULE_BAD_EPOCHS] > s[C.SCHEDULE_PATIENCE]:
        new = max(float(rate) * float(s[C.SCHEDULE_FACTOR]), float(s[C.SCHEDULE_MIN_LR]))
        if rate - new > s[C.SCHEDULE_EPS]:
            s[C.SCHEDULE_SCALE] = new / lr
        s[C.SCHEDULE_COOLDOWN_LEFT] = s[C.SCHEDULE_COOLDOWN]
        s[C.SCHEDULE_BAD_EPOCHS] = 0.0


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
        self._masks = {}  # dropout layer -> mask of the current batch
        self._training = False
        # trainable parameter ranges, merged where adjacent
        segs = []
        for m in self.layer_ints:
            if m[C.LAYER_KIND] != C.KIND_DENSE or not m[C.LAYER_TRAINABLE]:
                continue
            lo = m[C.LAYER_WEIGHT_OFFSET]
            hi = lo + m[C.LAYER_N_IN] * m[C.LAYER_N_OUT]  # the weights, and the bias
            if m[C.LAYER_BIAS_OFFSET] >= 0 and m[C.LAYER_BIAS_TRAINABLE]:  # unless fixed
                hi += m[C.LAYER_N_OUT]
            if segs and segs[-1][1] == lo:
                segs[-1][1] = hi
            else:
                segs.append([lo, hi])
        self.segments = [tuple(s) for s in segs]

    # -- views ------------------------------------------------------------
    def _w(self, buf, l):
        m = self.layer_ints[l]
        off, n_in, n_out = m[C.LAYER_WEIGHT_OFFSET], m[C.LAYER_N_IN], m[C.LAYER_N_OUT]
        return buf[off : off + n_in * n_out].reshape(n_in, n_out)

    def _b(self, buf, l):
        m = self.layer_ints[l]
        off = m[C.LAYER_BIAS_OFFSET]
        return None if off < 0 else buf[off : off + m[C.LAYER_N_OUT]]

    # -- passes -----------------------------------------------------------
    def _forward(self, X, train=None, keep=True):
        """Layer outputs for X; ``train`` = (seed, epoch, first row) turns dropout on.

        With ``keep`` the dropout masks are kept for backward (predict and
        evaluate pass False, so they leave the backward cache alone)."""
        cache = []
        A = np.array(X, dtype=np.float64)  # a private copy, as the native engine keeps
        n_layers = len(self.layer_ints)
        for l, m in enumerate(self.layer_ints):
            if m[C.LAYER_KIND] == C.KIND_DROPOUT:
                mask = np.ones_like(A)
                if train is not None:
                    seed, epoch, row = train
                    stream = 2 * (epoch * n_layers + l) + 1
                    rate = self.layer_floats[l, C.LAYER_DROPOUT_RATE]
                    dropout_mask(seed, stream, row * m[C.LAYER_N_OUT], rate, mask)
                if keep:
                    self._masks[l] = mask
                Z = A * mask
                cache.append((A, Z, Z))
                A = Z
                continue
            Z = np.empty((A.shape[0], m[C.LAYER_N_OUT]))
            dense_forward(A, self._w(self.params, l), self._b(self.params, l), Z)
            An = np.empty_like(Z)
            activation_forward(m[C.LAYER_ACTIVATION], Z, An, self.layer_floats[l, C.LAYER_ALPHA])
            cache.append((A, Z, An))
            A = An
        return cache

    @_quiet
    def forward(self, X):
        """Run X (n, n_in) through the network; keep what backward needs."""
        self._cache = self._forward(X)
        return self._cache[-1][2]

    @_quiet
    def predict(self, X):
        """The output for X as a new array; the backward cache is untouched."""
        return self._forward(X, keep=False)[-1][2].copy()

    def _penalties(self):
        """The summed L1/L2 penalty of every layer."""
        value = 0.0
        for l, m in enumerate(self.layer_ints):
            if m[C.LAYER_KIND] != C.KIND_DENSE:
                continue
            h = self.layer_floats[l]
            value += penalty(self._w(self.params, l), h[C.LAYER_WEIGHT_L1], h[C.LAYER_WEIGHT_L2])
            b = self._b(self.params, l)
            if b is not None:
                value += penalty(b, h[C.LAYER_BIAS_L1], h[C.LAYER_BIAS_L2])
        return value

    def _backward(self, Y):
        cache = self._cache
        Ain, Z, A = cache[-1]
        m = self.layer_ints[-1]
        dZ = np.empty_like(Z)
        value = output_delta(
            m[C.LAYER_ACTIVATION],
            self.loss,
            Z,
            A,
            Y,
            dZ,
            self.reduction,
            self.layer_floats[-1, C.LAYER_ALPHA],
        )
        for l in range(len(self.layer_ints) - 1, -1, -1):
            m = self.layer_ints[l]
            Ain = cache[l][0]
            if m[C.LAYER_KIND] == C.KIND_DROPOUT:
                dX = dZ * self._masks[l]
            else:
                dX = np.empty_like(Ain) if l > 0 else None
                W = self._w(self.params, l)
                dense_backward(Ain, W, dZ, self._w(self.grads, l), self._b(self.grads, l), dX)
            if l > 0:
                Zp, Ap = cache[l - 1][1:]
                dZ = np.empty_like(Zp)
                activation_backward(
                    self.layer_ints[l - 1, C.LAYER_ACTIVATION],
                    Zp,
                    Ap,
                    dX,
                    dZ,
                    self.layer_floats[l - 1, C.LAYER_ALPHA],
                )
        # L1/L2 penalties, nnfs semantics
        for l, m in enumerate(self.layer_ints):
            if m[C.LAYER_KIND] != C.KIND_DENSE:
                continue
            h = self.layer_floats[l]
            add_penalty_gradient(
                self._w(self.params, l),
                self._w(self.grads, l),
                h[C.LAYER_WEIGHT_L1],
                h[C.LAYER_WEIGHT_L2],
            )
            b = self._b(self.params, l)
            if b is not None:
                add_penalty_gradient(
                    b, self._b(self.grads, l), h[C.LAYER_BIAS_L1], h[C.LAYER_BIAS_L2]
                )
        return value + self._penalties()

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
        return self._backward(Y)

    # -- updates ----------------------------------------------------------
    def _update(self, kind, hyper, state, t):
        """One optimizer step over the trainable segments; True if all finite."""
        n_params = self.params.shape[0]
        slots = state.shape[0] // n_params if n_params else 0
        S = state.reshape(slots, n_params) if slots else state.reshape(0, n_params)
        ok = True
        for lo, hi in self.segments:
            p = self.params[lo:hi]
            optimizer_update(kind, hyper, p, self.grads[lo:hi], S[:, lo:hi], t)
            ok = ok and bool(np.isfinite(p).all()) and bool(np.isfinite(S[:, lo:hi]).all())
        return ok

    def _divergence(self, what):
        raise DivergenceError(
            f"training diverged: {what}; the parameters were left at their last finite values"
        )

    # -- scikit-learn's arithmetic (src/_engine_sklearn.pxi) ---------------
    _SK_HIDDEN = {
        C.ACT_IDENTITY: "identity",
        C.ACT_RELU: "relu",
        C.ACT_SIGMOID: "logistic",
        C.ACT_TANH: "tanh",
    }
    _SK_LOSS = {
        C.LOSS_SK_SQUARED: ("squared_error", "identity"),
        C.LOSS_SK_LOG: ("log_loss", "softmax"),
        C.LOSS_SK_BINARY_LOG: ("binary_log_loss", "logistic"),
        C.LOSS_SK_POISSON: ("poisson", "exp"),
    }

    def _sk_check(self, X, Y, sw, loss):
        L = len(self.layer_ints)
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
        n_in = self.layer_ints[0][C.LAYER_N_IN]
        n_out = self.layer_ints[-1][C.LAYER_N_OUT]
        if X.shape[1] != n_in or Y.shape[1] != n_out or X.shape[0] != Y.shape[0] or X.shape[0] < 1:
            raise ValueError(
                f"sklearn_epoch: X is {X.shape} and Y {Y.shape}; the network "
                f"takes {n_in} inputs and gives {n_out} outputs"
            )
        if loss not in self._SK_LOSS:
            raise ValueError(f"sklearn_epoch: bad loss code {loss}")
        for l, m in enumerate(self.layer_ints):
            if m[C.LAYER_KIND] != C.KIND_DENSE or m[C.LAYER_BIAS_OFFSET] < 0:
                raise ValueError("sklearn_epoch: every layer must be dense with a bias")
            if l < L - 1 and m[C.LAYER_ACTIVATION] not in self._SK_HIDDEN:
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

    def _sk_batch(self, X, Y, sw, loss, alpha):
        from . import _sklearn_epoch as E

        L = len(self.layer_ints)
        coefs = [self._w(self.params, l) for l in range(L)]
        intercepts = [self._b(self.params, l) for l in range(L)]
        hidden = self._SK_HIDDEN[self.layer_ints[0][C.LAYER_ACTIVATION]] if L > 1 else "identity"
        name, out = self._SK_LOSS[loss]
        value, cg, ig = E.backprop(coefs, intercepts, X, Y, sw, hidden, out, name, alpha)
        for l in range(L):
            self._w(self.grads, l)[...] = cg[l]
            self._b(self.grads, l)[...] = ig[l]
        return value

    @_quiet
    def sklearn_loss_grad(self, X, Y, sw, loss, alpha):
        """scikit-learn's loss of all rows; its gradient into grads."""
        sw = self._sk_check(X, Y, sw, loss)
        return self._sk_batch(X, Y, sw, loss, alpha)

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
        sw = self._sk_check(X, Y, sw, loss)
        n = X.shape[0]
        P = self.params.shape[0]
        if kind not in (C.OPT_SGD, C.OPT_ADAM_SK):
            raise ValueError("sklearn_epoch: the optimizer is OPT_SGD or OPT_ADAM_SK")
        if batch_size < 1:
            raise ValueError("sklearn_epoch: batch_size must be >= 1")
        slots = 1 if kind == C.OPT_SGD else 2
        hyper = np.ascontiguousarray(hyper, dtype=np.float64)
        if hyper.shape != (C.N_OPTIMIZER_HYPER,) or not np.isfinite(hyper).all():
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
        lr = hyper[C.HYPER_LEARNING_RATE]
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            value = self._sk_batch(X[idx], Y[idx], None if sw is None else sw[idx], loss, alpha)
            if not math.isfinite(value):
                self._divergence(
                    f"a batch loss was NaN or infinite (rows {start} to "
                    f"{start + len(idx)} of the epoch)"
                )
            saved = self.params.copy(), state.copy()
            g = self.grads
            t += 1.0
            if kind == C.OPT_SGD:
                mu = hyper[C.HYPER_MOMENTUM]
                u = mu * state - lr * g
                state[...] = u
                if hyper[C.HYPER_NESTEROV] != 0.0:
                    u = mu * u - lr * g
                self.params += u
            else:
                b1, b2, eps = hyper[C.HYPER_BETA1], hyper[C.HYPER_BETA2], hyper[C.HYPER_EPSILON]
                ms, vs = state[:P], state[P:]
                ms[...] = b1 * ms + (1 - b1) * g
                vs[...] = b2 * vs + (1 - b2) * (g * g)
                lr_t = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
                self.params += -lr_t * ms / (np.sqrt(vs) + eps)
            if not (np.isfinite(self.params).all() and np.isfinite(state).all()):
                np.copyto(self.params, saved[0])
                np.copyto(state, saved[1])
                self._divergence("the update made a parameter NaN or infinite")
            total += value * len(idx)
        return total, t

    @_quiet
    def step(self, kind, hyper, state, t):
        """Apply one optimizer step with the current gradients."""
        saved = self.params.copy(), state.copy()
        if not self._update(kind, hyper, state, t):
            np.copyto(self.params, saved[0])
            np.copyto(state, saved[1])
            self._divergence("the update made a parameter NaN or infinite")

    @_quiet
    def train_step(self, X, Y, kind, hyper, state, t):
        """forward, backward and one optimizer step; the loss before the update."""
        self._cache = self._forward(X)
        value = self._backward(Y)
        if not math.isfinite(value):
            self._divergence(f"the loss is {value}")
        self.step(kind, hyper, state, t)
        return value

    def train_step_sgd(self, X, Y, lr):
        """Fast path of ``train_step`` with plain SGD.

        Takes X and Y only when they are already C-contiguous float64
        ndarrays of the right shapes, finite (and within [0, 1] for the
        cross-entropies), or, for categorical cross-entropy, Y int64 class
        labels in range, with lr finite and > 0.  Otherwise returns None
        having touched nothing, and the caller validates and converts; but
        an X that is not finite, with everything else in order, also drops
        the cached forward pass (the native engine checks X as it copies it
        over that pass's input).
        """
        if (
            type(X) is not np.ndarray
            or type(Y) is not np.ndarray
            or not (lr > 0.0 and math.isfinite(lr))
        ):
            return None
        n_in, n_out = self.layer_ints[0, C.LAYER_N_IN], self.layer_ints[-1, C.LAYER_N_OUT]
        if X.dtype != np.float64 or not X.flags.c_contiguous or X.ndim != 2:
            return None
        if X.shape[1] != n_in or X.shape[0] < 1:
            return None
        if (
            self.loss == C.LOSS_CCE
            and Y.ndim == 1
            and Y.dtype == np.int64
            and Y.shape[0] == X.shape[0]
            and ((Y >= 0) & (Y < n_out)).all()
        ):
            Y = np.eye(n_out)[Y]  # class labels: one-hot rows
        if Y.dtype != np.float64 or not Y.flags.c_contiguous or Y.ndim != 2:
            return None
        if Y.shape[1] != n_out or Y.shape[0] != X.shape[0]:
            return None
        if self.loss in (C.LOSS_CCE, C.LOSS_BCE):
            if not ((Y >= 0.0) & (Y <= 1.0)).all():
                return None
        elif not np.isfinite(Y).all():
            return None
        if not np.isfinite(X).all():
            self._cache = None
            return None
        hyper = np.zeros(C.N_OPTIMIZER_HYPER)
        hyper[C.HYPER_LEARNING_RATE] = lr
        return self.train_step(X, Y, C.OPT_SGD, hyper, np.empty(0), 0)

    def sgd_step(self, lr):
        """params -= lr * grads over the trainable layers (plain SGD)."""
        hyper = np.zeros(C.N_OPTIMIZER_HYPER)
        hyper[C.HYPER_LEARNING_RATE] = lr
        self.step(C.OPT_SGD, hyper, np.empty(0), 0)

    # -- whole runs -------------------------------------------------------
    def _accuracy(self, A, Y):
        """Correct predictions in a batch, and how many were judged."""
        if self.loss == C.LOSS_CCE:
            return int(np.sum(np.argmax(A, axis=1) == np.argmax(Y, axis=1))), A.shape[0]
        if self.loss == C.LOSS_BCE:
            return int(np.sum((A > 0.5) == (Y > 0.5))), A.size
        return 0, 0

    def _evaluate(self, X, Y):
        """(loss with penalties, accuracy or NaN) of the network on (X, Y)."""
        A = self._forward(X, keep=False)[-1][2]
        value = loss_value(self.loss, A, Y, self.reduction) + self._penalties()
        hit, seen = self._accuracy(A, Y)
        return value, (hit / seen if seen else math.nan)

    @_quiet
    def evaluate(self, X, Y):
        """(loss, accuracy) on (X, Y), dropout off; accuracy is NaN for regression."""
        return self._evaluate(X, Y)

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
        _check_schedule(schedule)
        base_lr = float(hyper[C.HYPER_LEARNING_RATE])
        hyper = np.array(hyper, dtype=np.float64)  # with each epoch's rate
        progress[0] = progress[1] = 0
        start = time.monotonic()
        n = X.shape[0]
        bs = min(batch_size, n)
        steps = 0
        for k in range(n_epochs):
            epoch = epoch0 + k
            hyper[C.HYPER_LEARNING_RATE] = schedule_rate(schedule, base_lr, epoch)
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
            if status == C.FIT_DIVERGED:
                np.copyto(self.params, saved[0])
                np.copyto(state, saved[1])
                np.copyto(schedule, saved[4])
                self._cache = None  # fit leaves no forward pass, however it ends
                return k, saved[2], C.FIT_DIVERGED
            progress[0], progress[1] = k + 1, steps
            if status == C.FIT_STOPPED:
                self._cache = None
                return k + 1, steps, C.FIT_STOPPED
            if report_seconds > 0 and time.monotonic() - start >= report_seconds:
                self._cache = None
                return k + 1, steps, C.FIT_DONE
        self._cache = None
        return n_epochs, steps, C.FIT_DONE

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
            self._cache = self._forward(X[idx], train=(seed, epoch, first))
            value = self._backward(Y[idx])
            h, s = self._accuracy(self._cache[-1][2], Y[idx])
            if not math.isfinite(value) or not self._update(kind, hyper, state, t + steps):
                return C.FIT_DIVERGED, steps
            steps += 1
            total += value
            hit, seen, batches = hit + h, seen + s, batches + 1
        row[C.HISTORY_LOSS] = total / batches
        row[C.HISTORY_LR] = hyper[C.HYPER_LEARNING_RATE]
        row[C.HISTORY_ACCURACY] = hit / seen if seen else math.nan
        if Xv is not None:
            row[C.HISTORY_VAL_LOSS], row[C.HISTORY_VAL_ACCURACY] = self._evaluate(Xv, Yv)
            if not math.isfinite(row[C.HISTORY_VAL_LOSS]):  # a loss became infinite
                return C.FIT_DIVERGED, steps
        else:
            row[C.HISTORY_VAL_LOSS] = row[C.HISTORY_VAL_ACCURACY] = math.nan
        cur = row[C.HISTORY_VAL_LOSS] if Xv is not None else row[C.HISTORY_LOSS]
        schedule_end_epoch(schedule, cur, base_lr, hyper[C.HYPER_LEARNING_RATE])
        if early_stop[C.EARLY_STOP_ENABLED] != 0.0:
            # an improvement is a loss below best - tolerance
            if cur >= (early_stop[C.EARLY_STOP_BEST_LOSS] - early_stop[C.EARLY_STOP_TOLERANCE]):
                early_stop[C.EARLY_STOP_WAIT] += 1.0
            else:
                early_stop[C.EARLY_STOP_WAIT] = 0.0
            if cur < early_stop[C.EARLY_STOP_BEST_LOSS]:
                early_stop[C.EARLY_STOP_BEST_LOSS] = cur
                early_stop[C.EARLY_STOP_BEST_EPOCH] = epoch
                np.copyto(best, self.params)
            if early_stop[C.EARLY_STOP_WAIT] >= early_stop[C.EARLY_STOP_PATIENCE]:
                return C.FIT_STOPPED, steps
        return C.FIT_DONE, steps
