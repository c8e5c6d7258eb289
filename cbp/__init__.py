"""cbp: backpropagation for small dense networks at native speed on the CPU.

The dense forward pass, the activation masks and the fused backward and
update loops run in typed Cython kernels (``cbp._core``) over contiguous
float64 buffers.  Every kernel has a NumPy twin (``cbp._reference``) with the
same signature; set ``CBP_NO_EXTENSIONS=1`` or pass ``backend="numpy"`` to use
it.
"""

from . import datasets, examples, optim, schedules
from ._backend import default_backend, native_available, openmp_available
from ._errors import DivergenceError, FormatError, NativeUnavailableError
from .callbacks import EarlyStopping
from .gradcheck import GradcheckResult, gradcheck
from .layers import Dense, Dropout
from .many import fit_many
from .network import Network
from .persistence import load
from .trace import LayerTrace, Trace, trace

__version__ = "0.1.0"

__all__ = [
    "Dense",
    "Dropout",
    "EarlyStopping",
    "Network",
    "fit_many",
    "load",
    "trace",
    "Trace",
    "LayerTrace",
    "gradcheck",
    "GradcheckResult",
    "examples",
    "optim",
    "schedules",
    "datasets",
    "DivergenceError",
    "FormatError",
    "NativeUnavailableError",
    "native_available",
    "openmp_available",
    "default_backend",
    "__version__",
]

_SKLEARN_NAMES = ("MLPClassifier", "MLPRegressor")


def __getattr__(name):
    """``cbp.MLPClassifier`` and ``cbp.MLPRegressor``, imported from ``cbp.sklearn`` on first use.

    ``import cbp`` never imports scikit-learn; without it these names raise an
    ImportError naming the ``cbp[sklearn]`` extra.
    """
    if name in _SKLEARN_NAMES:
        from . import sklearn as _sk

        return getattr(_sk, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SKLEARN_NAMES))
