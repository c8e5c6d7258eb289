# Included by _core.pyx.  The Engine's checks of its entry points' arrays
# (functions of an ``Engine self``, see _engine.pxi): loading X into the
# workspace, and the buffer checks of train_step_sgd's fast path.

cdef Py_ssize_t _load_x(Engine self, const double[:, ::1] X) except -1:
    cdef Py_ssize_t n = X.shape[0]
    _check(n > 0 and X.shape[1] == self.n_in, "Engine: X has the wrong shape")
    _layout(self, n)
    memcpy(self.work, &X[0, 0], n * self.n_in * sizeof(double))
    return n

cdef bint _matrix(Engine self, Py_buffer* b, Py_ssize_t rows, Py_ssize_t cols):
    """A 2-D float64 buffer of the given shape (rows < 0: any rows)."""
    return not (b.ndim != 2 or b.itemsize != 8 or b.format == NULL or b.format[0] != b'd'
                or b.format[1] != 0 or b.shape[1] != cols or b.shape[0] < 1
                or (rows >= 0 and b.shape[0] != rows))

cdef bint _usable(Engine self, Py_buffer* b, Py_ssize_t rows, Py_ssize_t cols, bint unit):
    """A 2-D float64 buffer of the given shape (rows < 0: any), finite,
    and within [0, 1] when ``unit``."""
    return (_matrix(self, b, rows, cols)
            and kernels.all_finite(<const double*>b.buf, b.shape[0] * cols, unit))

cdef bint _column(Engine self, Py_buffer* b, Py_ssize_t rows):
    """One output's targets as a 1-D float64 buffer of ``rows`` (the memory
    of the (rows, 1) matrix), finite, within [0, 1] for binary
    cross-entropy; not for categorical cross-entropy, whose 1-D targets
    are labels."""
    return (b.ndim == 1 and self.n_out == 1 and self.loss != LOSS_CCE and b.itemsize == 8
            and b.format != NULL and b.format[0] == b'd' and b.format[1] == 0
            and b.shape[0] == rows
            and kernels.all_finite(<const double*>b.buf, rows, self.loss == LOSS_BCE))

cdef bint _labels(Engine self, Py_buffer* b, Py_ssize_t rows):
    """A 1-D int64 buffer of ``rows`` class labels, each in [0, n_out)."""
    cdef Py_ssize_t i
    cdef const int64_t* v = <const int64_t*>b.buf
    if (b.ndim != 1 or b.itemsize != 8 or b.format == NULL or b.format[1] != 0
            or (b.format[0] != b'l' and b.format[0] != b'q') or b.shape[0] != rows):
        return False
    for i in range(rows):
        if not (0 <= v[i] < self.n_out):
            return False
    return True
