"""NumPy twins of the private kernels of ``src/_engine_sklearn.pxi``.

Each function has the signature of the native one (``cbp._core._<name>``)
and computes what it computes, operation for operation, so that the two
agree bit for bit; ``tests/test_sklearn_kernels.py`` compares them.
"""

import numpy as np

__all__ = ["sklearn_adam_update"]


def sklearn_adam_update(params, grads, m, v, lr_t, beta_1, beta_2, epsilon):
    """scikit-learn's Adam step in place: m := b1 m + (1 - b1) g, v := b2 v +
    (1 - b2) g**2, params += -lr_t m / (sqrt(v) + epsilon); True if all stay finite."""
    with np.errstate(all="ignore"):  # a non-finite step is reported, not warned about
        m[...] = beta_1 * m + (1 - beta_1) * grads
        v[...] = beta_2 * v + (1 - beta_2) * (grads * grads)
        params += -lr_t * m / (np.sqrt(v) + epsilon)
    return bool(np.isfinite(params).all() and np.isfinite(m).all() and np.isfinite(v).all())
