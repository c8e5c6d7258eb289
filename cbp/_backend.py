"""Choose between the compiled core and its NumPy twin.

``CBP_NO_EXTENSIONS=1`` in the environment forces the NumPy backend, as
yarl's ``YARL_NO_EXTENSIONS`` does; otherwise the compiled ``cbp._core`` is
imported if it was built.  Nothing falls back silently: asking for
``backend="native"`` when the core did not load raises
:class:`~cbp.NativeUnavailableError` with the reason.
"""

import os
from types import ModuleType

from . import _reference
from ._errors import NativeUnavailableError

BACKENDS = ("native", "numpy")

#: The OpenMP wait policy the core's threads get when the user chose none:
#: an idle helper thread sleeps at once instead of spinning (libgomp spins
#: for milliseconds by default, on a core another process may need).
WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}
#: The variables that, when any is set, are the user's choice and are kept.
WAIT_POLICY_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
#: What this import put in the environment while the core loaded ({} if the
#: user's setting was kept, or nothing was imported).
wait_policy_set: dict = {}


def _import_core():
    """Import cbp._core with WAIT_POLICY in the environment, unless one of
    WAIT_POLICY_VARS is set.  The OpenMP runtime (the copy of libgomp
    bundled in a wheel) reads it as the core loads it; the environment is
    restored afterwards, so that nothing else sees it."""
    global wait_policy_set
    chosen = any(v in os.environ for v in WAIT_POLICY_VARS)
    set_here = {} if chosen else dict(WAIT_POLICY)
    os.environ.update(set_here)
    try:
        from . import _core
    finally:
        for name in set_here:
            del os.environ[name]
    wait_policy_set = set_here
    return _core


_core: ModuleType | None = None
_why_not = None
if os.environ.get("CBP_NO_EXTENSIONS", "").strip().lower() not in ("", "0", "false", "no"):
    _why_not = "CBP_NO_EXTENSIONS is set in the environment"
else:
    try:
        _core = _import_core()
    except ImportError as exc:  # not built, or built for another Python
        _why_not = f"the compiled core failed to import: {exc}"


def native_available():
    """Return True if the compiled core ``cbp._core`` is loaded."""
    return _core is not None


def openmp_available():
    """Return True if the compiled core is loaded and was built with OpenMP,
    so that large enough steps of small layers can run on several threads."""
    return _core is not None and bool(_core._thread_state()["built"])


def default_backend():
    """``"native"`` when the compiled core is loaded, else ``"numpy"``."""
    return "native" if _core is not None else "numpy"


def module(backend):
    """The kernel module for a backend name (None means the default)."""
    if backend is None:
        backend = default_backend()
    if backend == "native":
        if _core is None:
            raise NativeUnavailableError(f"backend='native' is not available: {_why_not}")
        return _core
    if backend == "numpy":
        return _reference
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string or None, got {type(backend).__name__}")
    raise ValueError(f"unknown backend {backend!r}; expected one of: native, numpy")
