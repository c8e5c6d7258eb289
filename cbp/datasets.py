"""Small toy data sets for trying networks out.

The generators follow the signatures and constructions of the ``nnfs``
package's ``nnfs.datasets`` (themselves taken from the CS231n case study),
with three differences:

* randomness comes from a :class:`numpy.random.Generator` made by
  ``np.random.default_rng(seed)``; NumPy's global random state is never read
  or changed, so the data do not depend on what ran before;
* the default ``seed=0`` makes every call return the same arrays; another
  seed gives another draw, and ``seed=None`` a fresh draw each call;
* ``X`` is always float64 and classification labels are int64 (nnfs gives
  uint8 labels).

Because nnfs draws from the global ``np.random``, the same seed does *not*
give the same noise as nnfs; the formulas are the same.

Every function returns a new ``(X, y)`` pair of C-contiguous arrays that the
caller may modify freely.  ``X`` goes straight into :meth:`cbp.Network.fit`;
integer labels suit a softmax output with ``categorical_crossentropy``.
"""

import numbers

import numpy as np

from . import _validation

__all__ = ["spiral_data", "vertical_data", "sine_data", "xor"]


def _rng(seed):
    """The Generator for ``seed``: None, an int >= 0, a SeedSequence or a Generator."""
    if isinstance(seed, (np.random.Generator, np.random.SeedSequence)) or seed is None:
        return np.random.default_rng(seed)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            "seed must be None, a non-negative integer, a numpy SeedSequence or "
            f"a numpy Generator, got {type(seed).__name__}"
        )
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng(int(seed))


def _labels(samples, classes):
    """int64 labels (samples * classes,): ``samples`` zeros, then ones, ..."""
    return np.repeat(np.arange(classes, dtype=np.int64), samples)


def spiral_data(samples, classes, *, seed=0):
    """Interleaved spiral arms, one arm per class.

    For class ``k`` the ``samples`` points have radius ``r = linspace(0, 1,
    samples)`` and angle parameter ``t = linspace(4k, 4(k + 1), samples) +
    0.2 * noise`` with standard normal noise, and lie at
    ``(r * sin(2.5 t), r * cos(2.5 t))``.  The radius carries no noise, so
    every point lies in the unit disc and the first point of every arm is
    the origin.

    Parameters
    ----------
    samples : int
        Points per class, >= 1.
    classes : int
        Number of classes (arms), >= 1.
    seed : None, int, numpy SeedSequence or Generator, default 0
        Seed of the noise, passed to ``np.random.default_rng``.  The same
        seed gives the same arrays; None gives a fresh draw.  A Generator is
        used as is (and advanced).

    Returns
    -------
    X : ndarray of float64, shape (samples * classes, 2)
        Points, class by class: rows ``k * samples`` to ``(k + 1) * samples
        - 1`` belong to class ``k``, in order of increasing radius.
    y : ndarray of int64, shape (samples * classes,)
        The class of each row, in ``[0, classes)``; each class has exactly
        ``samples`` rows.

    Raises
    ------
    TypeError
        If ``samples`` or ``classes`` is not an integer (bools included) or
        ``seed`` is not one of the accepted kinds.
    ValueError
        If ``samples`` or ``classes`` is below 1, or ``seed`` is negative.

    Notes
    -----
    The noise is one ``standard_normal((classes, samples))`` draw, row ``k``
    for class ``k``.

    Examples
    --------
    >>> X, y = spiral_data(100, 3)
    >>> X.shape, y.shape
    ((300, 2), (300,))
    """
    samples = _validation.positive_int(samples, "samples")
    classes = _validation.positive_int(classes, "classes")
    rng = _rng(seed)
    noise = rng.standard_normal((classes, samples))
    r = np.linspace(0.0, 1.0, samples)
    X = np.empty((classes * samples, 2))
    for k in range(classes):
        t = np.linspace(k * 4.0, (k + 1) * 4.0, samples) + 0.2 * noise[k]
        rows = slice(k * samples, (k + 1) * samples)
        X[rows, 0] = r * np.sin(2.5 * t)
        X[rows, 1] = r * np.cos(2.5 * t)
    return X, _labels(samples, classes)


def vertical_data(samples, classes, *, seed=0):
    """Gaussian blobs side by side, one per class.

    Class ``k`` is a round Gaussian cloud with standard deviation 0.1
    centred on ``(k / 3, 0.5)``: the classes are separated along the first
    feature only.

    Parameters
    ----------
    samples : int
        Points per class, >= 1.
    classes : int
        Number of classes (blobs), >= 1.
    seed : None, int, numpy SeedSequence or Generator, default 0
        Seed of the noise, passed to ``np.random.default_rng``.  The same
        seed gives the same arrays; None gives a fresh draw.  A Generator is
        used as is (and advanced).

    Returns
    -------
    X : ndarray of float64, shape (samples * classes, 2)
        Points, class by class: rows ``k * samples`` to ``(k + 1) * samples
        - 1`` belong to class ``k``.
    y : ndarray of int64, shape (samples * classes,)
        The class of each row, in ``[0, classes)``; each class has exactly
        ``samples`` rows.

    Raises
    ------
    TypeError
        If ``samples`` or ``classes`` is not an integer (bools included) or
        ``seed`` is not one of the accepted kinds.
    ValueError
        If ``samples`` or ``classes`` is below 1, or ``seed`` is negative.

    Notes
    -----
    The noise is one ``standard_normal((classes, 2, samples))`` draw: for
    class ``k``, ``[k, 0]`` perturbs the first feature and ``[k, 1]`` the
    second.

    Examples
    --------
    >>> X, y = vertical_data(100, 3)
    >>> X.shape, y.shape
    ((300, 2), (300,))
    """
    samples = _validation.positive_int(samples, "samples")
    classes = _validation.positive_int(classes, "classes")
    rng = _rng(seed)
    noise = rng.standard_normal((classes, 2, samples))
    X = np.empty((classes * samples, 2))
    for k in range(classes):
        rows = slice(k * samples, (k + 1) * samples)
        X[rows, 0] = 0.1 * noise[k, 0] + k / 3
        X[rows, 1] = 0.1 * noise[k, 1] + 0.5
    return X, _labels(samples, classes)


def sine_data(samples=1000):
    """One period of a sine wave, for regression.

    ``X`` is ``samples`` evenly spaced points ``i / samples`` of ``[0, 1)``
    and ``y = sin(2 pi X)``.  Nothing is random, so there is no ``seed``:
    every call with the same ``samples`` returns the same arrays.

    Parameters
    ----------
    samples : int, default 1000
        Number of points, >= 1.

    Returns
    -------
    X : ndarray of float64, shape (samples, 1)
        ``0, 1/samples, ..., (samples - 1)/samples``.
    y : ndarray of float64, shape (samples, 1)
        ``sin(2 pi X)``, in ``[-1, 1]``: a regression target (use a linear
        output and a squared-error loss), not class labels.

    Raises
    ------
    TypeError
        If ``samples`` is not an integer (bools included).
    ValueError
        If ``samples`` is below 1.

    Examples
    --------
    >>> X, y = sine_data(4)
    >>> X.ravel().tolist()
    [0.0, 0.25, 0.5, 0.75]
    """
    samples = _validation.positive_int(samples, "samples")
    X = (np.arange(samples, dtype=np.float64) / samples).reshape(-1, 1)
    return X, np.sin(2.0 * np.pi * X)


def xor():
    """The four points of the XOR truth table.

    Returns
    -------
    X : ndarray of float64, shape (4, 2)
        ``[[0, 0], [0, 1], [1, 0], [1, 1]]``.
    y : ndarray of int64, shape (4,)
        ``[0, 1, 1, 0]``, the exclusive or of the two columns, as class
        labels.  The XOR seed trains a single sigmoid output on the
        regression target ``y.reshape(-1, 1).astype(float)``, shape (4, 1).

    Examples
    --------
    >>> X, y = xor()
    >>> y.tolist()
    [0, 1, 1, 0]
    """
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([0, 1, 1, 0], dtype=np.int64)
    return X, y
