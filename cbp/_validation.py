"""Input checks at the boundary of the API.

Everything that reaches a kernel passes through here first: the kernels trust
their input, so every problem is caught and named in Python.  Inputs are never
modified; they are converted to C-contiguous float64 at most once (no copy is
made of an array that is already C-contiguous float64).
"""

import math
import numbers
import operator

import numpy as np

from . import _codes

_NUMERIC = "iuf"


def as_matrix(X, name, n_cols=None):
    """Return X as a C-contiguous float64 (n, n_cols) array, or raise.

    Rejects non-numeric dtypes, wrong dimensions or widths, empty batches and
    NaN or infinite values.
    """
    if isinstance(X, np.ndarray) and X.dtype == np.float64 and X.flags.c_contiguous:
        A = X
    else:
        try:
            A = np.asarray(X)
        except Exception as exc:  # ragged lists and other oddities
            raise TypeError(f"{name} could not be read as an array: {exc}") from None
        if A.dtype.kind not in _NUMERIC:
            raise TypeError(f"{name} must hold real numbers (int or float), got dtype {A.dtype}")
    if A.ndim != 2:
        hint = ""
        if A.ndim == 1:
            hint = " (use X.reshape(1, -1) for one sample, X.reshape(-1, 1) for one feature)"
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {A.shape}{hint}")
    if A.shape[0] == 0:
        raise ValueError(f"{name} is empty: a batch needs at least one sample")
    if n_cols is not None and A.shape[1] != n_cols:
        raise ValueError(f"{name} has {A.shape[1]} columns, the network expects {n_cols}")
    A = np.ascontiguousarray(A, dtype=np.float64)
    if not np.isfinite(A).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return A


def as_targets(y, n, n_out, loss, name="y"):
    """Return the target of a batch of n samples as C-contiguous float64 (n, n_out).

    Squared-error losses take (n, n_out), or (n,) when n_out is 1.  Categorical
    cross-entropy takes integer labels (n,) in [0, n_out), which become one-hot
    rows, or (n, n_out) rows of probabilities.  Binary cross-entropy takes
    values in [0, 1] shaped like the output.
    """
    try:
        Y = np.asarray(y)
    except Exception as exc:
        raise TypeError(f"{name} could not be read as an array: {exc}") from None
    kinds = _NUMERIC + ("b" if loss in (_codes.LOSS_BCE, _codes.LOSS_CCE) else "")
    if Y.dtype.kind not in kinds:
        raise TypeError(f"{name} must hold real numbers, got dtype {Y.dtype}")
    if Y.ndim == 0 or Y.ndim > 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {Y.shape}")
    if Y.shape[0] != n:
        raise ValueError(f"{name} has {Y.shape[0]} samples but X has {n}")
    if Y.dtype.kind == "f" and not np.isfinite(Y).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if loss == _codes.LOSS_CCE and Y.ndim == 1:
        return one_hot(Y, n_out, name)
    if Y.ndim == 1:
        if n_out != 1:
            hint = ""
            if Y.dtype.kind in "iub" or (Y == np.round(Y)).all():
                hint = (
                    "; integer class labels need loss='categorical_crossentropy' (with a "
                    "softmax output), or one-hot encode them"
                )
            raise ValueError(
                f"{name} has shape {Y.shape} but the network has {n_out} outputs; "
                f"expected ({n}, {n_out}){hint}"
            )
        Y = Y.reshape(n, 1)
    if Y.shape[1] != n_out:
        hint = ""
        if Y.shape[1] == 1 and loss == _codes.LOSS_CCE:
            hint = (
                "; a column of class labels? pass it as a 1-D array "
                f"({name}.ravel()) to have it one-hot encoded"
            )
        elif Y.shape[1] == 1 and Y.dtype.kind in "iub" and n_out > 1:
            hint = (
                f"; integer class labels? one-hot encode them ({n_out} columns), or use "
                "loss='categorical_crossentropy' with a softmax output, which takes labels"
            )
        raise ValueError(
            f"{name} has {Y.shape[1]} columns but the network has {n_out} outputs{hint}"
        )
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    if loss in (_codes.LOSS_CCE, _codes.LOSS_BCE) and ((Y < 0.0).any() or (Y > 1.0).any()):
        raise ValueError(f"{name} must lie in [0, 1] for a cross-entropy loss")
    return Y


def labels(y, n_classes, name="y"):
    """Check integer class labels: 1-D, integral, within [0, n_classes)."""
    Y = np.asarray(y)
    if Y.ndim != 1:
        raise ValueError(f"{name} labels must be 1-D, got shape {Y.shape}")
    if Y.dtype.kind == "f":
        if not np.isfinite(Y).all() or (Y != np.round(Y)).any():
            raise ValueError(f"{name} labels must be whole numbers")
        if Y.size and (Y.min() < 0 or Y.max() >= n_classes):  # before casting: no overflow
            bad = Y[(Y < 0) | (Y >= n_classes)][0]
            raise ValueError(
                f"{name} has label {bad:g}, outside [0, {n_classes}) for {n_classes} outputs"
            )
    elif Y.dtype.kind not in "iub":
        raise TypeError(f"{name} labels must be integers, got dtype {Y.dtype}")
    Y = Y.astype(np.int64)
    if Y.size and (Y.min() < 0 or Y.max() >= n_classes):
        bad = Y[(Y < 0) | (Y >= n_classes)][0]
        raise ValueError(
            f"{name} has label {bad}, outside [0, {n_classes}) for {n_classes} outputs"
        )
    return Y


def one_hot(y, n_classes, name="y"):
    """Integer labels (n,) -> float64 one-hot rows (n, n_classes)."""
    Y = labels(y, n_classes, name)
    out = np.zeros((Y.shape[0], n_classes))
    out[np.arange(Y.shape[0]), Y] = 1.0
    return out


def positive_int(value, name, minimum=1):
    """An int >= minimum (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def real(value, name, minimum=None, strict=False, maximum=None):
    """A finite float, optionally bounded below (strictly or not) and above."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def seed(value, name="seed"):
    """A seed of the shared generator: an integer in [0, 2**64)."""
    value = positive_int(value, name, minimum=0)
    if value >= 2**64:
        raise ValueError(f"{name} must be < 2**64, got {value}")
    return value


#: the output activation each cross-entropy loss needs
OUTPUT_ACTIVATION = {"categorical_crossentropy": "softmax", "binary_crossentropy": "sigmoid"}


def check_output_activation(loss, activation):
    """Raise ValueError if ``loss`` needs another output activation.

    The cross-entropies take probabilities: categorical cross-entropy a
    softmax output (rows that sum to 1), binary cross-entropy a sigmoid one.
    On another output they report a meaningless loss (clipped to 1e-7) while
    the model trains badly, so the pair is refused.
    """
    need = OUTPUT_ACTIVATION.get(loss)
    if (
        need is None
        or activation is None
        or _codes.activation_code(activation) == _codes.activation_code(need)
    ):
        return
    raise ValueError(
        f"loss={loss!r} needs a {need} output layer, but the last layer's activation is "
        f"{activation!r}: use Dense(..., activation={need!r}) for the output layer, or a "
        "squared-error loss for unbounded outputs"
    )
