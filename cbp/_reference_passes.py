"""The twin Engine's passes and its update (the native ones are
``src/_engine_passes.pxi`` and ``src/_engine_update.pxi``): functions of an
engine ``e`` (a ``cbp._reference.Engine``), as the native routines are
functions of an ``Engine self``.

The views of a layer's weights and bias in a flat buffer, the forward pass
(dropout masks drawn from the engine's streams), the penalties, the
backward pass into the gradient buffer, the batch accuracy and evaluation,
and one optimizer step over the trainable segments.  The engine's state
read here: ``layer_ints``, ``layer_floats``, ``params``, ``grads``,
``loss``, ``reduction``, ``segments``, ``_cache`` (the layer outputs of the
last training forward pass) and ``_masks`` (its dropout masks).
"""

import math

import numpy as np

from . import _codes
from ._errors import DivergenceError
from ._reference_kernels import (
    activation_backward,
    activation_forward,
    add_penalty_gradient,
    dense_backward,
    dense_forward,
    loss_value,
    optimizer_update,
    output_delta,
    penalty,
)
from ._reference_random import dropout_mask


# -- views ------------------------------------------------------------------
def weights(e, buf, l):
    """Layer l's weights in ``buf`` (params or grads), an (n_in, n_out) view."""
    m = e.layer_ints[l]
    off, n_in, n_out = m[_codes.LAYER_WEIGHT_OFFSET], m[_codes.LAYER_N_IN], m[_codes.LAYER_N_OUT]
    return buf[off : off + n_in * n_out].reshape(n_in, n_out)


def bias(e, buf, l):
    """Layer l's bias in ``buf``, an (n_out,) view, or None without one."""
    m = e.layer_ints[l]
    off = m[_codes.LAYER_BIAS_OFFSET]
    return None if off < 0 else buf[off : off + m[_codes.LAYER_N_OUT]]


# -- passes -----------------------------------------------------------------
def forward(e, X, train=None, keep=True):
    """Layer outputs for X; ``train`` = (seed, epoch, first row) turns dropout on.

    With ``keep`` the dropout masks are kept for backward (predict and
    evaluate pass False, so they leave the backward cache alone)."""
    cache = []
    A = np.array(X, dtype=np.float64)  # a private copy, as the native engine keeps
    n_layers = len(e.layer_ints)
    for l, m in enumerate(e.layer_ints):
        if m[_codes.LAYER_KIND] == _codes.KIND_DROPOUT:
            mask = np.ones_like(A)
            if train is not None:
                seed, epoch, row = train
                stream = 2 * (epoch * n_layers + l) + 1
                rate = e.layer_floats[l, _codes.LAYER_DROPOUT_RATE]
                dropout_mask(seed, stream, row * m[_codes.LAYER_N_OUT], rate, mask)
            if keep:
                e._masks[l] = mask
            Z = A * mask
            cache.append((A, Z, Z))
            A = Z
            continue
        Z = np.empty((A.shape[0], m[_codes.LAYER_N_OUT]))
        dense_forward(A, weights(e, e.params, l), bias(e, e.params, l), Z)
        An = np.empty_like(Z)
        activation_forward(m[_codes.LAYER_ACTIVATION], Z, An, e.layer_floats[l, _codes.LAYER_ALPHA])
        cache.append((A, Z, An))
        A = An
    return cache


def penalties(e):
    """The summed L1/L2 penalty of every layer."""
    value = 0.0
    for l, m in enumerate(e.layer_ints):
        if m[_codes.LAYER_KIND] != _codes.KIND_DENSE:
            continue
        h = e.layer_floats[l]
        value += penalty(
            weights(e, e.params, l), h[_codes.LAYER_WEIGHT_L1], h[_codes.LAYER_WEIGHT_L2]
        )
        b = bias(e, e.params, l)
        if b is not None:
            value += penalty(b, h[_codes.LAYER_BIAS_L1], h[_codes.LAYER_BIAS_L2])
    return value


def backward(e, Y):
    """Fill the gradient buffer from the cached forward pass for target Y;
    return the loss, penalties included."""
    cache = e._cache
    Ain, Z, A = cache[-1]
    m = e.layer_ints[-1]
    dZ = np.empty_like(Z)
    value = output_delta(
        m[_codes.LAYER_ACTIVATION],
        e.loss,
        Z,
        A,
        Y,
        dZ,
        e.reduction,
        e.layer_floats[-1, _codes.LAYER_ALPHA],
    )
    for l in range(len(e.layer_ints) - 1, -1, -1):
        m = e.layer_ints[l]
        Ain = cache[l][0]
        if m[_codes.LAYER_KIND] == _codes.KIND_DROPOUT:
            dX = dZ * e._masks[l]
        else:
            dX = np.empty_like(Ain) if l > 0 else None
            W = weights(e, e.params, l)
            dense_backward(Ain, W, dZ, weights(e, e.grads, l), bias(e, e.grads, l), dX)
        if l > 0:
            Zp, Ap = cache[l - 1][1:]
            dZ = np.empty_like(Zp)
            activation_backward(
                e.layer_ints[l - 1, _codes.LAYER_ACTIVATION],
                Zp,
                Ap,
                dX,
                dZ,
                e.layer_floats[l - 1, _codes.LAYER_ALPHA],
            )
    # L1/L2 penalties, nnfs semantics
    for l, m in enumerate(e.layer_ints):
        if m[_codes.LAYER_KIND] != _codes.KIND_DENSE:
            continue
        h = e.layer_floats[l]
        add_penalty_gradient(
            weights(e, e.params, l),
            weights(e, e.grads, l),
            h[_codes.LAYER_WEIGHT_L1],
            h[_codes.LAYER_WEIGHT_L2],
        )
        b = bias(e, e.params, l)
        if b is not None:
            add_penalty_gradient(
                b, bias(e, e.grads, l), h[_codes.LAYER_BIAS_L1], h[_codes.LAYER_BIAS_L2]
            )
    return value + penalties(e)


def accuracy(e, A, Y):
    """Correct predictions in a batch, and how many were judged."""
    if e.loss == _codes.LOSS_CCE:
        return int(np.sum(np.argmax(A, axis=1) == np.argmax(Y, axis=1))), A.shape[0]
    if e.loss == _codes.LOSS_BCE:
        return int(np.sum((A > 0.5) == (Y > 0.5))), A.size
    return 0, 0


def evaluate(e, X, Y):
    """(loss with penalties, accuracy or NaN) of the network on (X, Y)."""
    A = forward(e, X, keep=False)[-1][2]
    value = loss_value(e.loss, A, Y, e.reduction) + penalties(e)
    hit, seen = accuracy(e, A, Y)
    return value, (hit / seen if seen else math.nan)


# -- the update -------------------------------------------------------------
def update(e, kind, hyper, state, t):
    """One optimizer step over the trainable segments; True if all finite."""
    n_params = e.params.shape[0]
    slots = state.shape[0] // n_params if n_params else 0
    S = state.reshape(slots, n_params) if slots else state.reshape(0, n_params)
    ok = True
    for lo, hi in e.segments:
        p = e.params[lo:hi]
        optimizer_update(kind, hyper, p, e.grads[lo:hi], S[:, lo:hi], t)
        ok = ok and bool(np.isfinite(p).all()) and bool(np.isfinite(S[:, lo:hi]).all())
    return ok


def diverged(what):
    """Raise the DivergenceError of a step that was undone."""
    raise DivergenceError(
        f"training diverged: {what}; the parameters were left at their last finite values"
    )
