# Signals and time inside the native training loop (Engine.fit).
#
# The loop reads a monotonic clock (_clock.h) every `stride` steps, with the
# stride adapted so that reads come 0.5-2 ms apart whatever a step costs, and
# runs Python's signal handlers (PyErr_CheckSignals, with the GIL) at most
# every SIGNAL_SECONDS, so that Ctrl-C stops a fit within milliseconds.

cdef extern from "_clock.h" nogil:
    double cbp_monotonic()

cdef double SIGNAL_SECONDS = 0.005
cdef Py_ssize_t MAX_STRIDE = 1 << 20


def _max_stride(stride=None):
    """Read, and optionally set, the most steps (or whole epochs) the
    training loop takes between readings of the clock, which is where it
    splits its native calls.  Returns the setting in force before the call.
    Private: for tests that check that the results do not depend on the
    split (1: a call a step).
    """
    global MAX_STRIDE
    old = MAX_STRIDE
    if stride is not None:
        if stride < 1:
            raise ValueError(f"stride must be at least 1, got {stride}")
        MAX_STRIDE = stride
    return old


cdef bint _signal_raised(Engine self) noexcept:
    """Run Python's pending signal handlers (with the GIL held); True, and the
    exception kept in ``self._pending``, if one raised (KeyboardInterrupt)."""
    try:
        PyErr_CheckSignals()
    except BaseException as exc:
        self._pending = exc
        return True
    return False
