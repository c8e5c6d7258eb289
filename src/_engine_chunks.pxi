# Included by _core.pyx.  The Engine's row chunks and threads (functions of
# an ``Engine self``, see _engine.pxi): whether a training step is chunked,
# the chunks' buffers, and the chunks' run, on this thread or on a team.
#
# A step on n rows whose layers are all off dgemm, with enough rows and
# work, on a thread limit of 2 or more (_plan), is computed in K row
# chunks, K = min(limit, n // _chunk_min_rows): each chunk's forward and
# backward passes are row-wise, except for the gradients, which are sums
# over the rows; chunk 0 writes its own into self.grads, chunk c >= 1
# into a buffer of its own, and then the chunks' buffers are added into
# self.grads in chunk order, and their losses too.  The chunks run on as
# many threads as the budget of _threads.h grants at the time (maybe only
# this one), which changes nothing in the result: that depends on the
# thread limit (OMP_NUM_THREADS, threadpoolctl, _thread_config), never on
# what else is running, and only the rounding of these sums tells it
# from an unchunked step.  No chunk calls BLAS.
cdef inline Py_ssize_t _plan(Engine self, Py_ssize_t n) noexcept nogil:
    """How many chunks a step on n rows is computed in (1: unchunked)."""
    if n < 2 * _chunk_min_rows:  # most steps stop here, inline
        return 1
    return _plan_work(self, n)

cdef Py_ssize_t _plan_work(Engine self, Py_ssize_t n) noexcept nogil:
    """_plan for n >= 2 * _chunk_min_rows: the layers and the work."""
    cdef Py_ssize_t l, work = 0
    cdef Layer* layer
    for l in range(self.n_layers):
        layer = &self.layers[l]
        if layer.kind == KIND_DENSE:
            if kernels.use_blas(n, layer.n_in, layer.n_out):
                return 1
            work += layer.n_in * layer.n_out
    if work * n < _chunk_min_work:
        return 1
    return max(min(n // _chunk_min_rows, <Py_ssize_t>_thread_limit(), CBP_MAX_CHUNKS), 1)

cdef inline int _prepare_chunks(Engine self, Py_ssize_t n) except -1:
    """Room for the chunk buffers of a step on up to n rows (those of a
    step on fewer rows fit in them); returns the chunks it plans."""
    cdef Py_ssize_t k = _plan(self, n)
    if k - 1 > self.n_chunk_bufs:
        _grow_chunk_bufs(self, k - 1)
    return <int>k

cdef int _grow_chunk_bufs(Engine self, Py_ssize_t bufs) except -1:
    self._chunk_buf = aligned_empty(bufs * self.chunk_stride)
    self.chunk_buf = _data(self._chunk_buf)
    self.n_chunk_bufs = bufs
    return 0

cdef inline double _fwd_bwd(Engine self, const double* X, const double* Y, Py_ssize_t n,
                            bint train, uint64_t seed, uint64_t epoch, uint64_t row,
                            Py_ssize_t* hit, Py_ssize_t* seen) noexcept nogil:
    """_forward and _backward of a batch, in chunks where _plan says so,
    on several threads where the build, OpenMP's limit and the budget
    (_threads.h) allow; with ``hit``, its correct predictions too
    (kernels.correct).  Returns the loss, penalties included."""
    cdef Py_ssize_t k = _plan(self, n)
    if k > 1 and k <= 1 + self.n_chunk_bufs:  # (else a caller forgot _prepare_chunks)
        return _fwd_bwd_chunks(self, k, X, Y, n, train, seed, epoch, row, hit, seen)
    self.threads_used = 1
    _forward(self, X, n, train, seed, epoch, row)
    cdef double value = _backward(self, X, Y, n)
    if hit != NULL:
        hit[0] = kernels.correct(self.loss, self.work + self.layers[self.n_layers - 1].a,
                                 Y, n, self.n_out, seen)
    return value

cdef double _fwd_bwd_chunks(Engine self, Py_ssize_t k, const double* X, const double* Y,
                            Py_ssize_t n, bint train, uint64_t seed, uint64_t epoch,
                            uint64_t row, Py_ssize_t* hit, Py_ssize_t* seen) noexcept nogil:
    """_fwd_bwd in k chunks."""
    cdef Py_ssize_t c, h = 0, sn = 0
    cdef long got = 0
    cdef long long t0 = 0, now, alone = 0
    cdef double value = 0.0
    global _threads_were_used
    self.nchunks = k
    if cbp_threads_built() and not _threads_off:  # (a fork's child runs them on one)
        t0 = cbp_threads_now()
        if not cbp_threads_paused(t0):  # (the back-off of _threads.h)
            got = cbp_threads_reserve(k - 1, _thread_limit())
    if got == 0:
        self.threads_used = 1
        for c in range(k):
            _run_chunk(self, c, X, Y, n, train, seed, epoch, row, hit != NULL)
        _reduce_chunks(self, 0, 1)
    else:
        _threads_were_used = True
        with parallel(num_threads=got + 1):
            _team_part(self, X, Y, n, train, seed, epoch, row, hit != NULL, &alone)
        cbp_threads_release(got)
        now = cbp_threads_now()
        cbp_threads_report(now - t0, alone, now)
    for c in range(k):
        value += self.chunk_loss[c]
        h += self.chunk_hits[c]
        sn += self.chunk_seen[c]
    if hit != NULL:
        hit[0] = h
        seen[0] = sn
    return value + _penalty_grads(self)

cdef void _team_part(Engine self, const double* X, const double* Y, Py_ssize_t n, bint train,
                     uint64_t seed, uint64_t epoch, uint64_t row,
                     bint count, long long* alone) noexcept nogil:
    """One thread's part of _fwd_bwd, inside the parallel region: a
    contiguous block of the chunks, then its share of the sums.  Thread 0
    sets ``alone`` to the time of its block scaled to all the chunks (the
    time of the step on one thread, for the back-off of _threads.h)."""
    cdef int t = cbp_threads_id(), nt = cbp_threads_team()
    cdef Py_ssize_t k = self.nchunks, c
    cdef long long start = 0
    if t == 0:
        self.threads_used = nt
        start = cbp_threads_now()
    for c in range(k * t // nt, k * (t + 1) // nt):
        _run_chunk(self, c, X, Y, n, train, seed, epoch, row, count)
    if t == 0:
        alone[0] = (cbp_threads_now() - start) * k // (k // nt)
    cbp_threads_barrier()
    _reduce_chunks(self, t, nt)

cdef void _run_chunk(Engine self, Py_ssize_t c, const double* X, const double* Y, Py_ssize_t n,
                     bint train, uint64_t seed, uint64_t epoch, uint64_t row,
                     bint count) noexcept nogil:
    """Forward and backward of chunk c of self.nchunks; its gradients
    into its buffer, its loss and correct predictions into chunk_loss, chunk_hits."""
    cdef Py_ssize_t k = self.nchunks
    cdef Py_ssize_t r0 = n * c // k, rows = n * (c + 1) // k - r0
    cdef double* g = self.grads if c == 0 else self.chunk_buf + (c - 1) * self.chunk_stride
    cdef double* scr = self.scratch if c == 0 else g + _line(self.n_params)
    _forward_rows(self, X + r0 * self.n_in, rows, train, seed, epoch, row + r0, r0, scr)
    self.chunk_loss[c] = _backward_rows(self, X + r0 * self.n_in, Y + r0 * self.n_out, rows, r0,
                                        g, scr, n)
    if count:
        self.chunk_hits[c] = kernels.correct(self.loss,
                                             self.work + self.layers[self.n_layers - 1].a
                                             + r0 * self.n_out, Y + r0 * self.n_out, rows,
                                             self.n_out, &self.chunk_seen[c])
    else:
        self.chunk_hits[c] = 0
        self.chunk_seen[c] = 0

cdef void _reduce_chunks(Engine self, int t, int nt) noexcept nogil:
    """Part t of nt of: self.grads += the gradients of chunks 1 .. K - 1,
    in chunk order, over every dense layer's range."""
    cdef Py_ssize_t s, c, i, lo, hi, a, b
    cdef const double* src
    cdef double* dst = self.grads
    for s in range(self.n_gsegs):
        lo = self.gsegs[2 * s]
        hi = self.gsegs[2 * s + 1]
        a = lo + (hi - lo) * t // nt
        b = lo + (hi - lo) * (t + 1) // nt
        for c in range(1, self.nchunks):
            src = self.chunk_buf + (c - 1) * self.chunk_stride
            for i in range(a, b):
                dst[i] += src[i]
