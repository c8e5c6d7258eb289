# Included by _core.pyx.  fit()'s epoch loop (functions of an ``Engine
# self``, see _engine.pxi), which Engine.fit and Engine.fit_fast both run,
# and fit_fast's checks of the arrays it is given.
#
# _fit_loop takes raw pointers to arrays its caller has checked; what it
# needs beyond the workspace (the shuffle's order and keys, fit_fast's
# history rows) is kept in the engine and grown, never shrunk, so that a
# call on the sizes of the one before allocates nothing.

cdef int _fit_buffers(Engine self, Py_ssize_t n, Py_ssize_t history_rows) except -1:
    """Room for the order and keys of a shuffle of n rows and, if
    history_rows > 0, for that many rows of fit_fast's history."""
    cdef long long[::1] order
    cdef double[::1] hist
    cdef KeyIdx* keys
    if self.order_cap < n:
        keys = <KeyIdx*>PyMem_Malloc(n * sizeof(KeyIdx))
        if keys == NULL:
            raise MemoryError()
        self._order = np.empty(n, dtype=np.int64)
        order = self._order
        self.order = &order[0]
        PyMem_Free(self.keys)
        self.keys = keys
        self.order_cap = n
    if self.hist_cap < history_rows:
        self._hist = np.empty(history_rows * N_HISTORY, dtype=np.float64)
        hist = self._hist
        self.hist = &hist[0]
        self.hist_cap = history_rows
    return 0


cdef int _fit_loop(Engine self, const double* X, const double* Y, Py_ssize_t n,
                   const double* X_val, const double* Y_val, Py_ssize_t nv, int kind,
                   const double* hyper, double* st, Py_ssize_t slots, double t,
                   Py_ssize_t epoch0, Py_ssize_t n_epochs, Py_ssize_t bs, bint shuffle,
                   uint64_t seed, double* early_stop, double* best, double* history,
                   long long* progress, double report_seconds, double* schedule,
                   Py_ssize_t* result) except -1:
    """Engine.fit's run on checked arrays: X (n, n_in) and Y (n, n_out),
    the validation rows X_val and Y_val (nv of them, 0: none), the
    optimizer (``st`` NULL without slots), batches of bs (1 <= bs <= n)
    rows, ``history`` n_epochs rows of N_HISTORY, ``best`` n_params (read
    only with early stopping on), ``progress`` 2 entries.

    Sets result[0], result[1], result[2] to Engine.fit's (epochs, steps,
    status) and returns 0; or returns 1, the exception a signal handler
    raised kept in self._pending, when the run was interrupted (the epoch
    under way rolled back, ``progress`` describing the completed ones).
    """
    # the optimizer's hyper-parameters with each epoch's rate
    cdef double hyp[N_OPTIMIZER_HYPER]
    memcpy(hyp, hyper, N_OPTIMIZER_HYPER * sizeof(double))
    cdef double base_lr = hyper[HYPER_LEARNING_RATE]
    cdef double* snap = _snap_buffer(self, slots)  # the epoch's start, for rollback
    # plain SGD: the first step of an epoch saves the epoch's start in its
    # own pass, instead of a copy of every parameter before it
    cdef bint plain = _plain_sgd(self, kind, hyper), snapped = False
    _layout(self, bs)
    cdef bint feature_major = self.ld > 0
    # the fused per-sample step (_engine_tiny.pxi), where it applies
    cdef cbp_tiny_run_fn tiny_run = _tiny_run(self, bs, plain)
    cdef bint tiny = tiny_run != NULL
    self.tiny_steps = 0
    if tiny:
        self.threads_used = 1
        self.tiny.n_rows = n  # (the 1-1-1 loop carries a row's start from call to call)
        self.tiny.carry.row = -1
    if not feature_major:  # room for the chunks of a full and of the last batch
        _prepare_chunks(self, bs)
        if n % bs:
            _prepare_chunks(self, n % bs)
    _fit_buffers(self, n, 0)
    cdef long long* order = self.order
    cdef KeyIdx* keys = self.keys
    cdef double[::1] vbuf
    cdef double* vb = NULL
    if nv:
        vbuf = np.empty(2 * nv * self.width, dtype=np.float64)
        vb = &vbuf[0]
    cdef Py_ssize_t k, row, r, nb, hit, seen, h_, s_, batches, steps = 0, steps0, taken
    cdef Py_ssize_t tiny_steps = 0  # (kept in self.tiny_steps when the loop ends)
    cdef Py_ssize_t done = n_epochs, status = FIT_DONE
    cdef uint64_t epoch
    cdef double total, value, cur
    cdef double* hrow
    cdef const double* out
    cdef double* xw
    cdef double* yw
    cdef bint ok
    # the clock: read every `stride` steps (see SIGNAL_SECONDS)
    cdef double start = cbp_monotonic(), last_read = start, last_signal = start, now
    cdef Py_ssize_t stride = 1, ticks = 0
    cdef bint interrupted = False, report_due = False
    # whole epochs in one call (_engine_fm.pxi), where they apply: epochs
    # k0 onwards are left to the loop below
    cdef cbp_fm_net fm
    cdef cbp_fm_epochs_fn fm_run = NULL
    cdef Py_ssize_t k0 = 0, span = 1, want, got
    self.fm_epochs = 0
    if feature_major and not tiny:
        fm_run = _fm_run(self, &fm, n, bs, plain, shuffle, nv, early_stop, schedule)
    # or the blocked whole-epoch run (_engine_blk.pxi)
    cdef cbp_blk_net blk
    cdef cbp_blk_epochs_fn blk_run = NULL
    self.blk_epochs = 0
    if not feature_major and not tiny and self.ahead_at >= self.ahead_n:
        blk_run = _blk_run(self, &blk, X, Y, n, bs, plain, shuffle, nv, early_stop, schedule)
        if blk_run != NULL:
            self.threads_used = 1
    if self.ahead_at < self.ahead_n:  # epochs fit_many's lane run computed ahead
        if fm_run == NULL:
            raise RuntimeError(
                "cbp internal error: fit_many computed epochs ahead for a fit that the "
                "whole-epoch run does not take")
        k0 = min(self.ahead_n - self.ahead_at, n_epochs)
        for k in range(k0):
            hrow = history + k * N_HISTORY
            hrow[HISTORY_LOSS] = self.ahead[self.ahead_at + k]
            hrow[HISTORY_LR] = base_lr
            hrow[HISTORY_ACCURACY] = NAN
            hrow[HISTORY_VAL_LOSS] = NAN
            hrow[HISTORY_VAL_ACCURACY] = NAN
        self.ahead_at += k0
        steps = k0
        progress[0] = k0
        progress[1] = steps
    cbp_threads_enter()
    try:
        with nogil:
            if fm_run != NULL or blk_run != NULL:
                if fm_run != NULL:
                    _load_feature_major(self, X, n)
                while k0 < n_epochs:
                    want = min(span, n_epochs - k0)
                    if fm_run != NULL:
                        got = fm_run(&fm, Y, self.params, self.grads, snap, want, base_lr,
                                     history + k0 * N_HISTORY + HISTORY_LOSS, N_HISTORY)
                    else:
                        got = blk_run(&blk, self.params, self.grads, snap, want, base_lr,
                                      history + k0 * N_HISTORY + HISTORY_LOSS, N_HISTORY)
                    for k in range(k0, k0 + got):
                        hrow = history + k * N_HISTORY
                        hrow[HISTORY_LR] = base_lr
                        if fm_run != NULL or blk.loss != CBP_BLK_LOSS_CCE:
                            hrow[HISTORY_ACCURACY] = NAN
                        hrow[HISTORY_VAL_LOSS] = NAN
                        hrow[HISTORY_VAL_ACCURACY] = NAN
                    k0 += got
                    steps += got
                    progress[0] = k0
                    progress[1] = steps
                    if got < want:
                        break  # the next epoch is not finite: the loop below runs it
                    now = cbp_monotonic()
                    if now - last_read < 0.0005:
                        span = min(2 * span, MAX_STRIDE)
                    elif now - last_read > 0.002 and span > 1:
                        span //= 2
                    last_read = now
                    if now - last_signal >= SIGNAL_SECONDS:
                        last_signal = now
                        with gil:
                            interrupted = _signal_raised(self)
                        if interrupted:
                            break
                    if report_seconds > 0.0 and now - start >= report_seconds and k0 < n_epochs:
                        done = k0  # back to Python for the display
                        break
                if fm_run != NULL:
                    self.fm_epochs = k0
                else:
                    self.blk_epochs = k0
                if interrupted or done < n_epochs:
                    k0 = n_epochs  # (the loop below runs nothing)
            for k in range(k0, n_epochs):
                epoch = epoch0 + k
                hyp[HYPER_LEARNING_RATE] = _schedule_rate(schedule, base_lr, epoch)
                if not plain:
                    _snapshot_nogil(self, snap, st, slots)
                snapped = False
                if tiny:  # the fused path has no per-step snapshot: the epoch's start
                    memcpy(snap, self.params, self.n_params * sizeof(double))
                    snapped = True
                steps0 = steps
                if shuffle:
                    _epoch_order(seed, epoch, order, keys, n)
                while True:  # (once more, on the general passes, if the fused one diverged)
                    total = 0.0
                    hit = 0
                    seen = 0
                    batches = 0
                    ok = True
                    row = 0
                    while row < n:
                        if tiny:  # one-row steps up to the next reading of the clock
                            nb = min(stride - ticks, n - row)
                            tiny_run(&self.tiny, self.params, self.grads, X, Y,
                                     <const int64_t*>order if shuffle else NULL, row, nb,
                                     hyp[HYPER_LEARNING_RATE], &total, &hit, &seen)
                            tiny_steps += nb
                            taken = nb
                        else:
                            nb = min(bs, n - row)
                            if shuffle:  # gather the batch's rows
                                xw = self.work
                                yw = self.work + self.y_off
                                for r in range(nb):
                                    memcpy(xw + r * self.n_in, X + order[row + r] * self.n_in,
                                           self.n_in * sizeof(double))
                                    memcpy(yw + r * self.n_out, Y + order[row + r] * self.n_out,
                                           self.n_out * sizeof(double))
                            else:  # in order: the batch is a slice, read in place
                                xw = <double*>(X + row * self.n_in)
                                yw = <double*>(Y + row * self.n_out)
                            if feature_major:  # xT stays for an in-order full batch
                                out = _forward_feature_major(self, xw, nb,
                                                             shuffle or nb < n or k == 0)
                                value = _backward_feature_major(self, yw, nb)
                                h_ = kernels.correct(self.loss, out, yw, nb, self.n_out, &s_)
                            else:
                                value = _fwd_bwd(self, xw, yw, nb, True, seed, epoch, row, &h_,
                                                 &s_)
                            ok = isfinite(value)
                            if ok:
                                ok = _update(self, kind, hyp, st, slots, t + steps,
                                             NULL if snapped else snap)
                                snapped = True
                            if not ok:
                                break
                            total += value
                            hit += h_
                            seen += s_
                            taken = 1
                        steps += taken
                        batches += taken
                        row += nb
                        ticks += taken
                        if ticks >= stride:
                            ticks = 0
                            now = cbp_monotonic()
                            if now - last_read < 0.0005:
                                stride = min(2 * stride, MAX_STRIDE)
                            elif now - last_read > 0.002 and stride > 1:
                                stride //= 2
                            last_read = now
                            if report_seconds > 0.0 and now - start >= report_seconds:
                                report_due = True
                            if now - last_signal >= SIGNAL_SECONDS:
                                last_signal = now
                                with gil:
                                    interrupted = _signal_raised(self)
                                if interrupted:
                                    ok = False
                                    break
                    if not (tiny and ok) or _tiny_finite(self, total):
                        break
                    # not finite: the epoch again from its start, on the general passes
                    _rollback(self, plain, snap, st, slots)
                    steps = steps0
                    snapped = False
                    tiny = False
                tiny = tiny_run != NULL
                if not ok:
                    if snapped or not plain:  # else nothing was applied
                        _rollback(self, plain, snap, st, slots)
                    steps = steps0
                    done = k
                    status = FIT_DIVERGED
                    break
                hrow = history + k * N_HISTORY
                hrow[HISTORY_LOSS] = total / batches
                hrow[HISTORY_LR] = hyp[HYPER_LEARNING_RATE]
                hrow[HISTORY_ACCURACY] = hit / <double>seen if seen else NAN
                if nv:
                    out = _infer(self, X_val, nv, vb)
                    hrow[HISTORY_VAL_LOSS] = (
                        kernels.loss_value(self.loss, out, Y_val, nv, self.n_out,
                                           self.reduction, nv) + _penalties(self))
                    h_ = kernels.correct(self.loss, out, Y_val, nv, self.n_out, &s_)
                    hrow[HISTORY_VAL_ACCURACY] = h_ / <double>s_ if s_ else NAN
                    if not isfinite(hrow[HISTORY_VAL_LOSS]):  # diverged
                        _rollback(self, plain, snap, st, slots)  # snapped
                        steps = steps0
                        done = k
                        status = FIT_DIVERGED
                        break
                else:
                    hrow[HISTORY_VAL_LOSS] = NAN
                    hrow[HISTORY_VAL_ACCURACY] = NAN
                cur = hrow[HISTORY_VAL_LOSS] if nv else hrow[HISTORY_LOSS]
                _schedule_end_epoch(schedule, cur, base_lr, hyp[HYPER_LEARNING_RATE])
                if early_stop[EARLY_STOP_ENABLED] != 0.0:
                    # an improvement is a loss below best - tolerance
                    if cur >= (early_stop[EARLY_STOP_BEST_LOSS]
                               - early_stop[EARLY_STOP_TOLERANCE]):
                        early_stop[EARLY_STOP_WAIT] += 1.0
                    else:
                        early_stop[EARLY_STOP_WAIT] = 0.0
                    if cur < early_stop[EARLY_STOP_BEST_LOSS]:
                        early_stop[EARLY_STOP_BEST_LOSS] = cur
                        early_stop[EARLY_STOP_BEST_EPOCH] = <double>epoch
                        memcpy(best, self.params, self.n_params * sizeof(double))
                    if early_stop[EARLY_STOP_WAIT] >= early_stop[EARLY_STOP_PATIENCE]:
                        done = k + 1
                        status = FIT_STOPPED
                # the epoch is complete: the counters describe it
                progress[0] = k + 1
                progress[1] = steps
                if status == FIT_STOPPED:
                    break
                if report_due and k + 1 < n_epochs:  # back to Python for the display
                    done = k + 1
                    break
        if not interrupted:  # a signal that arrived since the last check
            interrupted = _signal_raised(self)
    finally:
        cbp_threads_leave()
        self.tiny_steps = tiny_steps
    self.rows = 0
    result[0] = done
    result[1] = steps
    result[2] = status
    return 1 if interrupted else 0


cdef object _history_column(Engine self, Py_ssize_t n, Py_ssize_t column):
    """A new float64 array of column ``column`` of fit_fast's first n
    history rows (filled through the buffer protocol: a typed memoryview's
    set-up costs more than a short fit)."""
    cdef Py_buffer b
    cdef Py_ssize_t k
    cdef double* out
    col = np.empty(n)
    PyObject_GetBuffer(col, &b, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
    out = <double*>b.buf
    for k in range(n):
        out[k] = self.hist[k * N_HISTORY + column]
    PyBuffer_Release(&b)
    return col


cdef bint _fit_targets(Engine self, Py_buffer* b, Py_ssize_t rows) noexcept:
    """fit_fast's Y, a float64 array by its dtype (taken without its
    format): (rows, n_out), or (rows,) with one output (except for
    categorical cross-entropy, whose 1-D targets are labels); finite, and
    within [0, 1] for the cross-entropies."""
    if b.ndim == 1 and self.n_out == 1 and self.loss != LOSS_CCE:
        if b.shape[0] != rows:
            return False
    elif b.ndim != 2 or b.shape[0] != rows or b.shape[1] != self.n_out:
        return False
    return kernels.all_finite(<const double*>b.buf, rows * self.n_out,
                              self.loss == LOSS_CCE or self.loss == LOSS_BCE)
