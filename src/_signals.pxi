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


cdef bint _signal_raised(Engine self) noexcept:
    """Run Python's pending signal handlers (with the GIL held); True, and the
    exception kept in ``self._pending``, if one raised (KeyboardInterrupt)."""
    try:
        PyErr_CheckSignals()
    except BaseException as exc:
        self._pending = exc
        return True
    return False
