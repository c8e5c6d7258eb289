# Included by _core.pyx.  The Engine's optimizer step, snapshot and rollback
# (functions of an ``Engine self``, see _engine.pxi).  A step that leaves a
# parameter or a loss NaN or infinite is undone from a snapshot: plain SGD
# saves the old values in its own pass (_sgd), the other optimizers copy
# the parameters and their state before the step (_before_update).

cdef bint _update(Engine self, int kind, const double* hyper, double* state,
                  Py_ssize_t slots, double t, double* snap) noexcept nogil:
    """One optimizer step over the trainable segments; True if all finite.

    Plain SGD runs as ``_sgd`` (the same arithmetic, without the dispatch)
    and saves the old values into ``snap`` in its own pass, unless snap is
    NULL; the other optimizers leave snap alone (see ``_before_update``).
    """
    cdef Py_ssize_t s, lo, hi, n_params = self.n_params
    cdef int chk = 0
    if _plain_sgd(self, kind, hyper):
        return _sgd(self, hyper[HYPER_LEARNING_RATE], snap)
    for s in range(self.n_segs):
        lo = self.segs[2 * s]
        hi = self.segs[2 * s + 1]
        chk |= kernels.optimizer_update(kind, hyper, self.params + lo, self.grads + lo,
                                        state + lo if slots > 0 else NULL,
                                        state + n_params + lo if slots > 1 else NULL,
                                        hi - lo, t)
    return chk == 0


cdef Py_ssize_t _slots(Engine self, int kind, const double[::1] hyper,
                       const double[::1] state) except -1:
    return _slots_of(self, kind, &hyper[0], hyper.shape[0], state.shape[0])

cdef Py_ssize_t _slots_of(Engine self, int kind, const double* hyper, Py_ssize_t n_hyper,
                          Py_ssize_t n_state) except -1:
    """The state slots of optimizer ``kind`` (0: plain SGD), having checked
    the hyper-parameter vector's length and that the state has room."""
    _check(0 <= kind <= OPT_ADAM and n_hyper == N_OPTIMIZER_HYPER, "Engine: bad optimizer")
    cdef Py_ssize_t need = 2 if kind == OPT_ADAM else (
        0 if kind == OPT_SGD and hyper[HYPER_MOMENTUM] == 0.0 else 1)
    _check(n_state >= need * self.n_params, "Engine: optimizer state too small")
    return need

cdef double* _snap_buffer(Engine self, Py_ssize_t slots) except NULL:
    """Room for the params and ``slots`` optimizer state slots."""
    cdef Py_ssize_t m = self.n_params * (1 + slots)
    cdef double[::1] snap
    if self.snap_cap < m:
        self._snap = np.empty(m, dtype=np.float64)
        snap = self._snap
        self.snap = &snap[0]
        self.snap_cap = m
    return self.snap

cdef double* _before_update(Engine self, bint plain, const double[::1] state,
                            Py_ssize_t slots) except NULL:
    """Where the state before one update is kept for ``_rollback``: plain
    SGD saves it in its own pass (``_update(..., snap)``), the other
    optimizers' params and state are copied here now."""
    cdef double* snap = _snap_buffer(self, slots)
    if not plain:
        _snapshot_nogil(self, snap, &state[0] if slots else NULL, slots)
    return snap

cdef void _rollback(Engine self, bint plain, const double* snap, double* state,
                    Py_ssize_t slots) noexcept nogil:
    """Undo what was updated since the snapshot into snap."""
    if plain:  # only the trainable segments were saved (and changed)
        _restore_segs(self, snap)
    else:
        memcpy(self.params, snap, self.n_params * sizeof(double))
        if slots:
            memcpy(state, snap + self.n_params, slots * self.n_params * sizeof(double))

cdef bint _sgd(Engine self, double lr, double* snap=NULL) noexcept nogil:
    """params -= lr * grads over the trainable segments; True if all finite.

    With ``snap``, the old values of the segments are saved there first,
    in the same pass (snap[i] for params[i]); _rollback undoes it.
    """
    cdef Py_ssize_t s, lo, hi
    cdef int bad = 0
    for s in range(self.n_segs):
        lo = self.segs[2 * s]
        hi = self.segs[2 * s + 1]
        bad |= cbp_simd.sgd(hi - lo, lr, self.params + lo, self.grads + lo,
                            snap + lo if snap != NULL else NULL)
    return bad == 0

cdef void _restore_segs(Engine self, const double* snap) noexcept nogil:
    """The trainable segments back from snap."""
    cdef Py_ssize_t s, lo, hi
    for s in range(self.n_segs):
        lo = self.segs[2 * s]
        hi = self.segs[2 * s + 1]
        memcpy(self.params + lo, snap + lo, (hi - lo) * sizeof(double))

cdef inline bint _plain_sgd(Engine self, int kind, const double* hyper) noexcept nogil:
    """Plain SGD: p -= lr * g, what ``_sgd`` computes."""
    return kind == OPT_SGD and hyper[HYPER_MOMENTUM] == 0.0 and hyper[HYPER_DECAY] == 0.0

cdef void _snapshot_nogil(Engine self, double* snap, const double* state,
                          Py_ssize_t slots) noexcept nogil:
    memcpy(snap, self.params, self.n_params * sizeof(double))
    if slots:
        memcpy(snap + self.n_params, state, slots * self.n_params * sizeof(double))
