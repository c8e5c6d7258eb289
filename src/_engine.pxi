# Included by _core.pyx.  The Engine: its state (the cdef class) and its
# Python entry points (forward, backward, step, train_step, train_step_sgd,
# evaluate, fit, fit_fast); fit's loop is in _engine_fit.pxi.
#
# The engine's cdef routines are module-level cdef functions that take the
# engine as their first argument, ``Engine self``, in _engine_inputs.pxi,
# _engine_passes.pxi, _engine_chunks.pxi and _engine_update.pxi: Cython
# allows no include inside a class body, and a function of an Engine is the
# same direct C call as a method of a final class.

cdef inline Py_ssize_t _line(Py_ssize_t off) noexcept nogil:
    """off rounded up to a whole number of cache lines (8 doubles)."""
    return (off + 7) // 8 * 8

cdef inline double* _data(object a) except NULL:
    """The address of a's first entry (a: a non-empty C-contiguous float64 array)."""
    cdef double[::1] v = a
    return &v[0]


cdef struct Layer:
    int kind
    int act
    int trainable
    Py_ssize_t n_in
    Py_ssize_t n_out
    Py_ssize_t w_off
    Py_ssize_t b_off
    double alpha
    double wl1
    double wl2
    double bl1
    double bl2
    double rate
    # offsets of this layer's Z (the mask, for dropout), A and delta in the
    # workspace
    Py_ssize_t z
    Py_ssize_t a
    Py_ssize_t d
    # and of its feature-major zT, aT and dT (n_out, ld), when laid out
    Py_ssize_t zt
    Py_ssize_t at
    Py_ssize_t dt


cdef inline void _add_range(Py_ssize_t* segs, Py_ssize_t* count, Py_ssize_t lo,
                            Py_ssize_t hi) noexcept:
    """Append [lo, hi) to the list of ranges, merged with the last if adjacent."""
    if count[0] and segs[2 * count[0] - 1] == lo:
        segs[2 * count[0] - 1] = hi
    else:
        segs[2 * count[0]] = lo
        segs[2 * count[0] + 1] = hi
        count[0] += 1


@cython.final  # no subclasses: nothing here is meant to be overridden
cdef class Engine:
    """Forward, backward, optimizer steps and whole training runs over a flat
    parameter buffer.

    Same constructor and methods as ``cbp._reference.Engine``, whose
    docstrings say what each argument holds (tests/test_equivalence.py checks
    the signatures against each other).  The workspace is laid out once per
    batch size; nothing is allocated inside a training loop.
    """
    cdef Layer* layers
    cdef Py_ssize_t n_layers
    cdef Py_ssize_t n_in
    cdef Py_ssize_t n_out
    cdef Py_ssize_t n_params
    cdef Py_ssize_t width          # widest layer output
    cdef Py_ssize_t* segs          # trainable ranges [lo, hi), merged
    cdef Py_ssize_t n_segs
    cdef bint penalised            # any layer with an L1/L2 term
    cdef double[::1] _params
    cdef double[::1] _grads
    cdef double* params
    cdef double* grads
    cdef readonly int loss
    cdef readonly int reduction
    cdef object _work              # float64 ndarray backing the workspace
    cdef double* work
    cdef Py_ssize_t batch          # rows the workspace is laid out for
    cdef Py_ssize_t rows           # rows of the cached forward (0: none)
    cdef Py_ssize_t y_off          # offset of the gathered targets
    cdef Py_ssize_t feature_major_side  # widest side if feature-major can run, else 0
    cdef readonly Py_ssize_t ld    # feature-major lanes (0: not laid out)
    cdef Py_ssize_t xt_off         # offset of xT (n_in, ld)
    cdef object _scratch           # W transposed, for the thin layers (_simd.h)
    cdef double* scratch
    cdef Py_ssize_t scratch_cap
    cdef object _snap              # params + optimizer state before a step
    cdef double* snap
    cdef Py_ssize_t snap_cap
    # chunks (_fwd_bwd): every chunk c >= 1 has a gradient buffer and a
    # scratch (at the next cache line), chunk_stride doubles from
    # chunk_buf + (c - 1) * chunk_stride
    cdef Py_ssize_t* gsegs         # gradient ranges [lo, hi) of every dense layer, merged
    cdef Py_ssize_t n_gsegs
    cdef object _chunk_buf
    cdef object _pending           # the exception a signal handler raised in fit
    cdef double* chunk_buf
    cdef Py_ssize_t chunk_stride
    cdef Py_ssize_t n_chunk_bufs   # chunks (after the first) chunk_buf has room for
    cdef Py_ssize_t nchunks        # chunks of the step running
    cdef readonly int threads_used  # threads the last training step ran on
    cdef double chunk_loss[CBP_MAX_CHUNKS]
    cdef Py_ssize_t chunk_hits[CBP_MAX_CHUNKS]
    cdef Py_ssize_t chunk_seen[CBP_MAX_CHUNKS]
    # the fused path of fit() (_engine_tiny.pxi): the network as src/_tiny.h
    # reads it, whether it is one that path takes, and the steps the last
    # fit() ran on it
    cdef cbp_tiny_net tiny
    cdef bint tiny_shape
    cdef readonly Py_ssize_t tiny_steps
    # the epochs the last fit() ran as whole-epoch runs (_engine_fm.pxi)
    cdef readonly Py_ssize_t fm_epochs
    # and as blocked whole-epoch runs (_engine_blk.pxi), on these buffers
    cdef readonly Py_ssize_t blk_epochs
    cdef object _blk_buf
    # epochs that fit_many's lane run (_engine_fm.pxi) computed ahead for
    # this engine's next fit: their losses, ahead_n of them, ahead_at taken
    cdef object _ahead
    cdef const double* ahead
    cdef Py_ssize_t ahead_n
    cdef Py_ssize_t ahead_at
    # fit's buffers beyond the workspace (_engine_fit.pxi): the order and
    # keys of a shuffle of order_cap rows, fit_fast's history of hist_cap rows
    # fit_fast's last result, also kept here for a Ctrl-C that lands as it returns
    cdef public object fast_out
    cdef object _order
    cdef long long* order
    cdef KeyIdx* keys
    cdef Py_ssize_t order_cap
    cdef object _hist
    cdef double* hist
    cdef Py_ssize_t hist_cap

    def __cinit__(self):
        self.layers = NULL
        self.segs = NULL
        self.gsegs = NULL
        self.keys = NULL
        self.order_cap = 0
        self.hist_cap = 0
        self.ahead_n = 0
        self.ahead_at = 0

    def __init__(self, layer_ints, layer_floats, double[::1] params, double[::1] grads,
                 int loss, int reduction):
        cdef const long long[:, ::1] m = np.ascontiguousarray(layer_ints, dtype=np.int64)
        cdef const double[:, ::1] h = np.ascontiguousarray(layer_floats, dtype=np.float64)
        cdef Py_ssize_t l, n_layers = m.shape[0], lo, hi, n_params = params.shape[0]
        cdef Layer* layer
        _check(n_layers > 0 and m.shape[1] == N_LAYER_INTS and h.shape[0] == n_layers
               and h.shape[1] == N_LAYER_FLOATS,
               "Engine: bad layer table")
        _check(n_params > 0 and grads.shape[0] == n_params, "Engine: params/grads size mismatch")
        _check(0 <= loss <= LOSS_BCE and (reduction == RED_MEAN or reduction == RED_SUM),
               "Engine: bad loss or reduction code")
        self.layers = <Layer*>PyMem_Malloc(n_layers * sizeof(Layer))
        self.segs = <Py_ssize_t*>PyMem_Malloc(2 * n_layers * sizeof(Py_ssize_t))
        self.gsegs = <Py_ssize_t*>PyMem_Malloc(2 * n_layers * sizeof(Py_ssize_t))
        if self.layers == NULL or self.segs == NULL or self.gsegs == NULL:
            raise MemoryError()
        self.n_gsegs = 0
        self.n_layers = n_layers
        self.width = 0
        self.n_segs = 0
        self.penalised = False
        self.feature_major_side = 0
        self.ld = 0
        for l in range(n_layers):
            layer = &self.layers[l]
            layer.kind = <int>m[l, LAYER_KIND]
            layer.n_in = m[l, LAYER_N_IN]
            layer.n_out = m[l, LAYER_N_OUT]
            layer.act = <int>m[l, LAYER_ACTIVATION]
            layer.w_off = m[l, LAYER_WEIGHT_OFFSET]
            layer.b_off = m[l, LAYER_BIAS_OFFSET]
            layer.trainable = <int>m[l, LAYER_TRAINABLE]
            layer.alpha = h[l, LAYER_ALPHA]
            layer.wl1 = h[l, LAYER_WEIGHT_L1]
            layer.wl2 = h[l, LAYER_WEIGHT_L2]
            layer.bl1 = h[l, LAYER_BIAS_L1]
            layer.bl2 = h[l, LAYER_BIAS_L2]
            layer.rate = h[l, LAYER_DROPOUT_RATE]
            _check(0 <= layer.act <= ACT_SOFTMAX, "Engine: bad activation code")
            _check(layer.kind == KIND_DENSE
                   or (layer.kind == KIND_DROPOUT and layer.n_in == layer.n_out
                       and 0.0 <= layer.rate < 1.0 and l < n_layers - 1),
                   "Engine: bad layer kind")
            _check(layer.n_in > 0 and layer.n_out > 0
                   and (l == 0 or layer.n_in == self.layers[l - 1].n_out),
                   "Engine: layer widths do not chain")
            if layer.kind == KIND_DENSE:
                self.penalised |= (layer.wl1 != 0.0 or layer.wl2 != 0.0 or layer.bl1 != 0.0
                                   or layer.bl2 != 0.0)
                _check(layer.w_off >= 0 and layer.w_off + layer.n_in * layer.n_out <= n_params
                       and layer.b_off + layer.n_out <= n_params,
                       "Engine: layer table does not fit the parameter buffer")
                _check(layer.b_off < 0 or layer.b_off == layer.w_off + layer.n_in * layer.n_out,
                       "Engine: a layer's bias must follow its weights")
                lo = layer.w_off
                hi = lo + layer.n_in * layer.n_out + (layer.n_out if layer.b_off >= 0 else 0)
                _add_range(self.gsegs, &self.n_gsegs, lo, hi)
                if layer.trainable:  # the weights, and the bias unless it stays fixed
                    if not m[l, LAYER_BIAS_TRAINABLE]:
                        hi = lo + layer.n_in * layer.n_out
                    _add_range(self.segs, &self.n_segs, lo, hi)
            self.width = max(self.width, layer.n_out)
            self.feature_major_side = max(self.feature_major_side, layer.n_in, layer.n_out)
        self.n_in = self.layers[0].n_in
        self.n_out = self.layers[n_layers - 1].n_out
        for l in range(n_layers):  # dense layers only, softmax only at the output
            layer = &self.layers[l]
            if layer.kind != KIND_DENSE or (layer.act == ACT_SOFTMAX and l < n_layers - 1):
                self.feature_major_side = 0
        # room to transpose the largest W up to 64k entries; larger ones are
        # either on dgemm or run without the transpose
        self.scratch_cap = 1
        for l in range(n_layers):
            if self.layers[l].kind == KIND_DENSE:
                lo = self.layers[l].n_in * self.layers[l].n_out
                if lo <= 65536:
                    self.scratch_cap = max(self.scratch_cap, lo)
        self._scratch = aligned_empty(self.scratch_cap)
        self.scratch = _data(self._scratch)
        self.n_params = n_params
        self._params = params
        self._grads = grads
        self.params = &params[0]
        self.grads = &grads[0]
        self.loss = loss
        self.reduction = reduction
        self.batch = 0
        self.rows = 0
        self.chunk_stride = _line(n_params) + _line(self.scratch_cap)
        self.n_chunk_bufs = 0
        self.nchunks = 1
        self.threads_used = 1
        self.tiny_steps = 0
        self.fm_epochs = 0
        self.blk_epochs = 0
        _tiny_init(self)

    def __dealloc__(self):
        PyMem_Free(self.layers)
        PyMem_Free(self.segs)
        PyMem_Free(self.gsegs)
        PyMem_Free(self.keys)

    def _take_epochs(self, losses=None):
        """Hand the next fit the epochs fit_many's lane run (_fm_lanes)
        computed for this network, their losses in ``losses`` (1-D
        float64): the fit's loop takes them as its first epochs, as its
        whole-epoch run would have run them, and trains on from there.
        None takes back what was not taken.  Returns the epochs still not
        taken before the call.  Private: for cbp.fit_many.
        """
        cdef const double[::1] view
        left = self.ahead_n - self.ahead_at
        self.ahead_n = 0
        self.ahead_at = 0
        self._ahead = None
        if losses is not None:
            view = np.ascontiguousarray(losses, dtype=np.float64)
            if view.shape[0]:
                self._ahead = view
                self.ahead = &view[0]
                self.ahead_n = view.shape[0]
        return left

    # -- Python entry points -------------------------------------------------
    def forward(self, const double[:, ::1] X):
        """Run X (n, n_in) through the network; keep what backward needs."""
        cdef Py_ssize_t n = _load_x(self, X)
        with nogil:
            _forward(self, self.work, n, False, 0, 0, 0)
        self.rows = n
        cdef Layer* layer = &self.layers[self.n_layers - 1]
        return self._work[layer.a:layer.a + n * layer.n_out].reshape(n, layer.n_out)

    def predict(self, const double[:, ::1] X):
        """The output for X as a new array; the backward cache is untouched."""
        cdef Py_ssize_t n = X.shape[0]
        _check(n > 0 and X.shape[1] == self.n_in, "Engine: X has the wrong shape")
        cdef double[::1] buf = np.empty(2 * n * self.width, dtype=np.float64)
        cdef double* out
        with nogil:
            out = _infer(self, &X[0, 0], n, &buf[0])
        cdef Py_ssize_t off = out - &buf[0]
        return np.asarray(buf)[off:off + n * self.n_out].reshape(n, self.n_out).copy()

    @property
    def cached_rows(self):
        """Rows of the cached forward pass; 0 when there is none."""
        return self.rows

    def backward(self, const double[:, ::1] Y):
        """Fill the gradient buffer for target Y (n, n_out); return the loss."""
        if self.rows == 0:
            raise RuntimeError("backward() needs a forward() first")
        _check(Y.shape[0] == self.rows and Y.shape[1] == self.n_out,
               "Engine: Y has the wrong shape")
        cdef double value
        with nogil:
            value = _backward(self, self.work, &Y[0, 0], self.rows)
        return value

    def step(self, int kind, const double[::1] hyper, double[::1] state, double t):
        """Apply one optimizer step with the current gradients."""
        cdef Py_ssize_t slots = _slots(self, kind, hyper, state)
        cdef bint plain = _plain_sgd(self, kind, &hyper[0])
        cdef double* snap = _before_update(self, plain, state, slots)
        cdef double* st = &state[0] if slots else NULL
        cdef bint ok
        with nogil:
            ok = _update(self, kind, &hyper[0], st, slots, t, snap)
            if not ok:
                _rollback(self, plain, snap, st, slots)
        if not ok:
            raise DivergenceError(
                "training diverged: the update made a parameter NaN or infinite; "
                "the parameters were left at their last finite values")

    def sklearn_epoch(self, X, Y, sw, order, Py_ssize_t batch_size, int loss, double alpha,
                      int kind, hyper, state, double t):
        """One epoch of scikit-learn's mini-batch loop (src/_engine_sklearn.pxi)."""
        return _sklearn_epoch(self, X, Y, sw, order, batch_size, loss, alpha, kind, hyper,
                              state, t)

    def sklearn_loss_grad(self, X, Y, sw, int loss, double alpha):
        """scikit-learn's loss of all rows; its gradient into grads."""
        return _sklearn_loss_grad(self, X, Y, sw, loss, alpha)

    def sgd_step(self, double lr):
        """params -= lr * grads over the trainable layers (plain SGD)."""
        hyper = np.zeros(N_OPTIMIZER_HYPER)
        hyper[HYPER_LEARNING_RATE] = lr
        self.step(OPT_SGD, hyper, np.empty(0), 0)

    def train_step(self, const double[:, ::1] X, const double[:, ::1] Y, int kind,
                   const double[::1] hyper, double[::1] state, double t):
        """forward, backward and one optimizer step; the loss before the update."""
        cdef Py_ssize_t n = _load_x(self, X)
        _check(Y.shape[0] == n and Y.shape[1] == self.n_out,
               "Engine: Y has the wrong shape")
        cdef Py_ssize_t slots = _slots(self, kind, hyper, state)
        cdef bint plain = _plain_sgd(self, kind, &hyper[0])
        cdef double* snap = _before_update(self, plain, state, slots)
        cdef double* st = &state[0] if slots else NULL
        cdef double value
        cdef bint ok
        cdef bint chunked = _prepare_chunks(self, n) > 1
        if chunked:
            cbp_threads_enter()
        try:
            with nogil:
                value = _fwd_bwd(self, self.work, &Y[0, 0], n, False, 0, 0, 0, NULL, NULL)
                ok = isfinite(value)
                if ok:
                    ok = _update(self, kind, &hyper[0], st, slots, t, snap)
                    if not ok:
                        _rollback(self, plain, snap, st, slots)
        finally:
            if chunked:
                cbp_threads_leave()
        self.rows = n
        if not ok:
            if not isfinite(value):
                raise DivergenceError(
                    f"training diverged: the loss is {value}; the parameters were left "
                    "at their last finite values")
            raise DivergenceError(
                "training diverged: the update made a parameter NaN or infinite; "
                "the parameters were left at their last finite values")
        return value

    def train_step_sgd(self, X, Y, double lr):
        """Fast path of ``train_step`` with plain SGD.

        Takes X and Y only when they are already C-contiguous float64
        ndarrays of the right shapes (Y (n, n_out), or (n,) with one output
        but for categorical cross-entropy), finite (and within [0, 1] for
        the cross-entropies), or, for categorical cross-entropy, Y int64
        class labels in range, with lr finite and > 0.  Otherwise returns
        None having touched nothing, and the caller validates and converts;
        but an X that is not finite, with everything else in order, also
        drops the cached forward pass (X is checked as it is copied over
        that pass's input).
        """
        cdef Py_buffer xb, yb
        cdef bint got_x = False, got_y = False, ok, labels = False, chunked = False
        cdef Py_ssize_t n, i
        cdef double value
        cdef const double* yp
        cdef double* snap
        if type(X) is not ndarray or type(Y) is not ndarray or not (lr > 0.0 and isfinite(lr)):
            return None
        try:
            PyObject_GetBuffer(X, &xb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
            got_x = True
            PyObject_GetBuffer(Y, &yb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
            got_y = True
        except (BufferError, ValueError, TypeError):  # not contiguous, not numeric
            if got_x:
                PyBuffer_Release(&xb)
            return None
        try:
            if not _matrix(self, &xb, -1, self.n_in):
                return None
            labels = self.loss == LOSS_CCE and _labels(self, &yb, xb.shape[0])
            if not (labels or _usable(self, &yb, xb.shape[0], self.n_out,
                                      self.loss == LOSS_CCE or self.loss == LOSS_BCE)
                    or _column(self, &yb, xb.shape[0])):
                return None
            n = xb.shape[0]
            _layout(self, n)
            # X is checked as it is copied in, one pass over it; a value that
            # is not finite leaves no forward pass cached (its input is gone)
            if not kernels.copy_finite(<const double*>xb.buf, self.work, n * self.n_in):
                self.rows = 0
                return None
            yp = <const double*>yb.buf
            if labels:  # one-hot rows in the workspace's target block
                yp = self.work + self.y_off
                memset(self.work + self.y_off, 0, n * self.n_out * sizeof(double))
                for i in range(n):
                    self.work[self.y_off + i * self.n_out + (<const int64_t*>yb.buf)[i]] = 1.0
            snap = _snap_buffer(self, 0)
            chunked = _prepare_chunks(self, n) > 1
            if chunked:
                cbp_threads_enter()
            with nogil:
                value = _fwd_bwd(self, self.work, yp, n, False, 0, 0, 0, NULL, NULL)
                ok = isfinite(value)
                if ok:
                    ok = _sgd(self, lr, snap)
                    if not ok:
                        _rollback(self, True, snap, NULL, 0)
            self.rows = n
        finally:
            if chunked:
                cbp_threads_leave()
            PyBuffer_Release(&xb)
            PyBuffer_Release(&yb)
        if not ok:
            raise DivergenceError(
                f"training diverged: the loss is {value} or the update made a parameter "
                "NaN or infinite; the parameters were left at their last finite values")
        return value

    def evaluate(self, const double[:, ::1] X, const double[:, ::1] Y):
        """(loss, accuracy) on (X, Y), dropout off; accuracy is NaN for regression."""
        cdef Py_ssize_t n = X.shape[0], seen = 0, hit
        _check(n > 0 and X.shape[1] == self.n_in and Y.shape[0] == n
               and Y.shape[1] == self.n_out, "Engine: X or Y has the wrong shape")
        cdef double[::1] buf = np.empty(2 * n * self.width, dtype=np.float64)
        cdef double value
        cdef double* out
        with nogil:
            out = _infer(self, &X[0, 0], n, &buf[0])
            value = kernels.loss_value(self.loss, out, &Y[0, 0], n, self.n_out, self.reduction, n)
            value += _penalties(self)
            hit = kernels.correct(self.loss, out, &Y[0, 0], n, self.n_out, &seen)
        return value, (hit / <double>seen if seen else float("nan"))

    def fit(self, const double[:, ::1] X, const double[:, ::1] Y, Xv, Yv, int kind,
            const double[::1] hyper, double[::1] state, double t, Py_ssize_t epoch0,
            Py_ssize_t n_epochs, Py_ssize_t batch_size, bint shuffle, uint64_t seed,
            double[::1] early_stop, double[::1] best, double[:, ::1] history,
            long long[::1] progress, double report_seconds, double[::1] schedule):
        """Train for up to ``n_epochs`` epochs, numbered from ``epoch0``.

        Each epoch visits the rows of X once, in batches of ``batch_size``
        (the last one shorter), and takes one optimizer step a batch.

        Parameters
        ----------
        X : float64 array (n, n_in)
            The training inputs, C-contiguous, n >= 1.
        Y : float64 array (n, n_out)
            The training targets (one-hot rows for categorical
            cross-entropy).
        Xv, Yv : float64 arrays (n_val, n_in) and (n_val, n_out), or None
            Validation data, evaluated after every epoch with dropout off;
            both None for none.
        kind : int
            Optimizer code (``OPT_SGD``, ``OPT_ADAGRAD``, ``OPT_RMSPROP``,
            ``OPT_ADAM``).
        hyper : float64 array (N_OPTIMIZER_HYPER,)
            The optimizer's hyper-parameters, indexed by the ``HYPER_*``
            columns of ``cbp._codes``.
        state : float64 array (slots * n_params,)
            The optimizer's state (momentum, caches), updated in place.
        t : float
            Optimizer steps taken before this call (the learning-rate decay
            and Adam's bias correction count from it).
        epoch0 : int
            The number of the first epoch; the shuffle and the dropout
            masks of epoch e are drawn from streams keyed by e.
        n_epochs : int
            Epochs to run at most.
        batch_size : int
            Rows a batch (more than n: one batch of n rows).
        shuffle : bool
            Visit the rows in the order ``shuffle_order(seed, epoch, n)``
            instead of in order.
        seed : int
            Seed of the shuffle and of the dropout masks.
        early_stop : float64 array (N_EARLY_STOP,)
            Early-stopping state, indexed by the ``EARLY_STOP_*`` columns and
            updated in place: with ``EARLY_STOP_ENABLED`` nonzero, the
            monitored loss (the validation loss with validation data, else
            the training loss) of each epoch is compared with
            ``EARLY_STOP_BEST_LOSS`` minus ``EARLY_STOP_TOLERANCE``; the run
            stops when ``EARLY_STOP_WAIT`` epochs without improvement reach
            ``EARLY_STOP_PATIENCE``.
        best : float64 array (n_params,)
            Receives the parameters at the end of the best epoch (when early
            stopping is on).
        history : float64 array (>= n_epochs, N_HISTORY)
            Row k receives epoch k's ``HISTORY_LOSS``, ``HISTORY_ACCURACY``,
            ``HISTORY_VAL_LOSS`` and ``HISTORY_VAL_ACCURACY`` (NaN where
            they do not apply), and ``HISTORY_LR``, the rate it ran at.
        progress : int64 array (2,)
            Set after every completed epoch to the epochs completed and the
            optimizer steps they took, so that a caller that is interrupted
            at any moment knows what the parameters hold.
        report_seconds : float
            If > 0, return after the first epoch that ends this many seconds
            or more after the call started (for a progress display).
        schedule : float64 array (N_SCHEDULE,)
            The learning-rate schedule, indexed by the ``SCHEDULE_*``
            columns: epoch e runs with ``hyper[HYPER_LEARNING_RATE]``
            replaced by the schedule's rate for e (decay then applies per
            step on top of it).  A plateau schedule's state
            (``SCHEDULE_SCALE``, ``SCHEDULE_BEST``, ``SCHEDULE_BAD_EPOCHS``,
            ``SCHEDULE_COOLDOWN_LEFT``) is updated in place after each
            completed epoch, from the loss early stopping monitors.

        Every few milliseconds of work the loop runs Python's signal handlers
        (with the GIL).  If one raises (KeyboardInterrupt for Ctrl-C), the
        epoch under way is rolled back to its start and the exception
        propagates: the parameters, the optimizer state, ``early_stop``,
        ``best``, ``schedule`` and ``progress`` then describe the last
        completed epoch.

        Returns
        -------
        (epochs, steps, status) : (int, int, int)
            Epochs completed, optimizer steps taken, and ``FIT_DONE``,
            ``FIT_STOPPED`` (early stopping) or ``FIT_DIVERGED`` (a loss or a
            parameter stopped being finite: the diverging epoch was rolled
            back to its start, and is not counted).
        """
        cdef Py_ssize_t n = X.shape[0], bs = min(batch_size, n)
        _check(n > 0 and bs > 0 and X.shape[1] == self.n_in and Y.shape[0] == n
               and Y.shape[1] == self.n_out, "Engine: X or Y has the wrong shape")
        _check(history.shape[0] >= n_epochs and history.shape[1] == N_HISTORY
               and early_stop.shape[0] == N_EARLY_STOP
               and best.shape[0] == self.n_params and progress.shape[0] >= 2,
               "Engine: bad fit buffers")
        _check_schedule(schedule)
        progress[0] = 0
        progress[1] = 0
        cdef const double[:, ::1] X_val
        cdef const double[:, ::1] Y_val
        cdef const double* xv = NULL
        cdef const double* yv = NULL
        cdef Py_ssize_t nv = 0
        if Xv is not None:
            X_val = Xv
            Y_val = Yv
            nv = X_val.shape[0]
            _check(nv > 0 and X_val.shape[1] == self.n_in and Y_val.shape[0] == nv
                   and Y_val.shape[1] == self.n_out, "Engine: validation data has the wrong shape")
            xv = &X_val[0, 0]
            yv = &Y_val[0, 0]
        cdef Py_ssize_t slots = _slots(self, kind, hyper, state)
        cdef Py_ssize_t result[3]
        if _fit_loop(self, &X[0, 0], &Y[0, 0], n, xv, yv, nv, kind, &hyper[0],
                     &state[0] if slots else NULL, slots, t, epoch0, n_epochs, bs, shuffle,
                     seed, &early_stop[0], &best[0],
                     &history[0, 0] if history.shape[0] else NULL, &progress[0],
                     report_seconds, &schedule[0], result):
            exc, self._pending = self._pending, None
            raise exc
        return result[0], result[1], result[2]

    def fit_fast(self, X, Y, int kind, hyper, state, double t,
                 Py_ssize_t epoch0, Py_ssize_t n_epochs, Py_ssize_t batch_size, bint shuffle,
                 uint64_t seed):
        """Fast path of ``fit``: no validation data, early stopping off, no
        schedule, no report; returns the history instead of filling buffers.

        Takes X and Y only when they are already C-contiguous float64
        ndarrays, X (n, n_in) and Y (n, n_out) (or (n,) for one output,
        except with categorical cross-entropy), both finite and Y within
        [0, 1] for the cross-entropies; otherwise returns None having
        touched nothing, and the caller validates and converts.  The other
        arguments are ``fit``'s, n_epochs >= 1.

        Returns
        -------
        (loss, accuracy, epochs, steps, status, error)
            ``loss``: a new float64 array of the completed epochs' losses;
            ``accuracy`` one of their accuracies for the cross-entropy
            losses, else None; epochs, steps and status as ``fit`` returns
            them; ``error`` the exception a signal handler raised
            (KeyboardInterrupt for Ctrl-C), returned rather than raised so
            that the caller commits the completed epochs first, else None.
        """
        cdef Py_buffer xb, yb, hb, sb
        cdef bint got_x = False, got_y = False
        cdef Py_ssize_t n, k, slots
        cdef const double* hp
        cdef double* sp
        cdef Py_ssize_t result[3]
        cdef double es[N_EARLY_STOP]
        cdef double sched[N_SCHEDULE]
        cdef long long progress[2]
        cdef int interrupted
        # float64 ndarrays, by their dtype (the builtin float64 descriptor: a
        # byte-swapped one is not it), so that the buffers are asked for
        # without their format, which NumPy would format as a string
        if (type(X) is not ndarray or type(Y) is not ndarray or n_epochs < 1
                or X.dtype is not _F64 or Y.dtype is not _F64):
            return None
        _check(type(hyper) is ndarray and type(state) is ndarray and hyper.dtype is _F64
               and state.dtype is _F64, "Engine: bad optimizer")
        try:
            PyObject_GetBuffer(X, &xb, PyBUF_C_CONTIGUOUS)
            got_x = True
            PyObject_GetBuffer(Y, &yb, PyBUF_C_CONTIGUOUS)
            got_y = True
        except (BufferError, ValueError, TypeError):  # not contiguous
            if got_x:
                PyBuffer_Release(&xb)
            return None
        # hyper and state: the caller's own float64 vectors (taken as buffers,
        # not typed memoryviews, whose set-up costs more than this call's epoch)
        try:
            PyObject_GetBuffer(hyper, &hb, PyBUF_C_CONTIGUOUS)
        except BaseException:
            PyBuffer_Release(&xb)
            PyBuffer_Release(&yb)
            raise
        try:
            PyObject_GetBuffer(state, &sb, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
        except BaseException:
            PyBuffer_Release(&hb)
            PyBuffer_Release(&xb)
            PyBuffer_Release(&yb)
            raise
        try:
            if xb.ndim != 2 or xb.shape[1] != self.n_in or xb.shape[0] < 1:
                return None
            n = xb.shape[0]
            if not (_fit_targets(self, &yb, n)
                    and kernels.all_finite(<const double*>xb.buf, n * self.n_in, False)):
                return None
            _check(hb.ndim == 1 and sb.ndim == 1, "Engine: bad optimizer")
            hp = <const double*>hb.buf
            sp = <double*>sb.buf
            slots = _slots_of(self, kind, hp, hb.shape[0], sb.shape[0])
            _fit_buffers(self, 0, n_epochs)
            progress[0] = 0
            progress[1] = 0
            memset(es, 0, sizeof(es))  # off, as _fit.run sets it up
            es[EARLY_STOP_BEST_LOSS] = INFINITY
            es[EARLY_STOP_BEST_EPOCH] = -1.0
            memset(sched, 0, sizeof(sched))
            sched[SCHEDULE_KIND] = SCHEDULE_NONE
            interrupted = _fit_loop(self, <const double*>xb.buf, <const double*>yb.buf, n, NULL,
                                    NULL, 0, kind, hp, sp if slots else NULL,
                                    slots, t, epoch0, n_epochs, min(batch_size, n), shuffle,
                                    seed, es, NULL, self.hist, progress, 0.0, sched, result)
        finally:
            PyBuffer_Release(&xb)
            PyBuffer_Release(&yb)
            PyBuffer_Release(&hb)
            PyBuffer_Release(&sb)
        # the completed epochs: all of them, or those before an interrupt
        n = progress[0] if interrupted else result[0]
        loss = _history_column(self, n, HISTORY_LOSS)
        accuracy = None
        if self.loss == LOSS_CCE or self.loss == LOSS_BCE:
            accuracy = _history_column(self, n, HISTORY_ACCURACY)
        error = None
        if interrupted:
            error, self._pending = self._pending, None
            self.fast_out = loss, accuracy, progress[0], progress[1], FIT_DONE, error
        else:
            self.fast_out = loss, accuracy, result[0], result[1], result[2], error
        return self.fast_out
