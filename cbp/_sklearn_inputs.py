"""Input handling of ``cbp.sklearn`` that avoids repeating work per fit.

:func:`binarize_integer_labels` gives ``LabelBinarizer().fit(y)`` and its
transform from one ``np.unique`` for integer and boolean labels;
:func:`validate_params_once` runs scikit-learn's parameter validation once
per class for a set of parameters of simple types.  Imports scikit-learn:
only ``cbp.sklearn`` imports this module.
"""

import numpy as np
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import validate_parameter_constraints


def binarize_integer_labels(y):
    """(LabelBinarizer().fit(y), its transform(y).astype(bool)) from one np.unique,
    for a non-empty 1-D y of integers or booleans; None for any other y.

    Such a y is "binary" (at most 2 labels) or "multiclass" for
    ``type_of_target``, and ``unique_labels`` gives its sorted distinct
    values, with y's dtype: the binarizer is given the attributes its fit
    sets.  Binary targets are one column (y == classes_[1]), multiclass ones
    one-hot.
    """
    if not (isinstance(y, np.ndarray) and y.ndim == 1 and y.size and y.dtype.kind in "iub"):
        return None
    classes, index = np.unique(y, return_inverse=True)
    lb = LabelBinarizer()
    lb.y_type_ = "multiclass" if classes.size > 2 else "binary"
    lb.sparse_input_ = False
    lb.classes_ = classes
    if classes.size > 2:
        Y = np.zeros((y.size, classes.size), dtype=bool)
        Y[np.arange(y.size), index] = True
    else:
        Y = (index == 1).reshape(-1, 1)
    return lb, Y


_SIMPLE = (str, int, float, bool, type(None))
# (estimator class, parameters) that passed validate_parameter_constraints
_VALID_PARAMS = set()


def _params_key(cls, params):
    """A hashable key of the class and of parameters that are all of simple
    types (each value with its type, so that True is not 1), or None."""
    items = []
    for name, value in sorted(params.items()):
        if isinstance(value, (tuple, list)) and all(type(v) in _SIMPLE for v in value):
            value = (type(value), tuple((type(v), v) for v in value))
        elif type(value) in _SIMPLE:
            value = (type(value), value)
        else:
            return None
        items.append((name, value))
    return (cls, tuple(items))


def validate_params_once(est):
    """BaseEstimator._validate_params(est), whose outcome depends on the
    parameters' types and values only: a set of simple types that passed for
    est's class once is not checked again."""
    params = est.get_params(deep=False)
    key = _params_key(type(est), params)
    if key is not None and key in _VALID_PARAMS:
        return
    validate_parameter_constraints(
        est._parameter_constraints, params, caller_name=type(est).__name__
    )
    if key is not None:
        if len(_VALID_PARAMS) >= 1024:
            _VALID_PARAMS.clear()
        _VALID_PARAMS.add(key)
