"""The native core of cbp.

``def`` functions here are thin wrappers over the ``noexcept nogil`` kernels
of ``_kernels.pxd``: each has the same signature as its NumPy twin in
``cbp/_reference.py``, and exists so that the two can be compared.  The
``Engine`` class runs whole forward / backward / update passes over a network
without touching Python objects between layers.

Nothing here validates user input: ``cbp.network`` does that before calling.
The memoryview signatures still reject wrong dtypes, dimensions and memory
layouts with a ``ValueError``/``TypeError``, never a crash.
"""
cimport cython
from cython.parallel cimport parallel
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT
from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.math cimport isfinite, NAN
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memcpy

import numpy as np

cdef object ndarray = np.ndarray

from cbp._errors import DivergenceError

from _kernels cimport *

cdef extern from "_clock.h" nogil:
    double cbp_monotonic()

# The training loop reads the clock every `stride` steps, with the stride
# adapted so that reads come 0.5-2 ms apart, and checks for signals (with the
# GIL, PyErr_CheckSignals) at most every SIGNAL_SECONDS.
cdef double SIGNAL_SECONDS = 0.005
cdef Py_ssize_t MAX_STRIDE = 1 << 20

cdef extern from "_par.h" nogil:
    int cbp_par_built()
    int cbp_par_limit()
    int cbp_par_thread()
    int cbp_par_team()
    void cbp_par_barrier()
    void cbp_par_enter()
    void cbp_par_leave()
    long cbp_par_reserve(long want, long limit)
    void cbp_par_release(long got)
    long cbp_par_callers_now()
    long cbp_par_extra_now()


def _simd(level=None):
    """Read, and optionally set, the kernel table of src/_simd.h.

    ``level`` is "auto" (the best this CPU runs), "baseline" or "avx2+fma".
    Returns the name in force before the call; raises ValueError for a
    level this build or CPU cannot run.  Private: the environment variable
    CBP_SIMD sets it at import; tests use this to run both tables.
    """
    old = cbp_simd.name.decode()
    if level is not None:
        if (not isinstance(level, str) or "\0" in level
                or cbp_simd_select(level.encode()) != 0):
            raise ValueError(
                f"unknown or unsupported SIMD level {level!r}; this build and CPU "
                f"support {_simd_levels()}")
    return old


def _simd_levels():
    """The kernel tables this build has and this CPU can run."""
    names = ["baseline"]
    if cbp_cpu_has_avx2():
        names.append("avx2+fma")
    return names


def _vexp(const double[::1] x, double[::1] out):
    """out := exp(x) through the vectorised exp of the table in force.
    Private: for the tests of its accuracy and edge cases."""
    _check(out.shape[0] == x.shape[0], "_vexp: shape mismatch")
    if x.shape[0]:
        with nogil:
            cbp_simd.vexp(x.shape[0], &x[0], &out[0])
    return out.base


def _init_simd():
    import os
    import warnings
    want = os.environ.get("CBP_SIMD", "auto").strip() or "auto"
    try:
        _simd(want)
    except ValueError as e:
        _simd("auto")
        warnings.warn(f"CBP_SIMD={want!r} ignored: {e}", RuntimeWarning, stacklevel=2)


_init_simd()


def _blas_thresholds(work=None, side=None):
    """Read, and optionally set, when dense layers switch to BLAS dgemm.

    A layer uses dgemm when n * n_in * n_out >= work, n >= 2, and both
    n_in and n_out >= side.  Returns the (work, side) in force before the call.
    Private: for the benchmark and for tests that force either path.
    """
    global cbp_blas_min_work, cbp_blas_min_side
    old = (cbp_blas_min_work, cbp_blas_min_side)
    if work is not None:
        cbp_blas_min_work = max(<Py_ssize_t>work, 1)
    if side is not None:
        cbp_blas_min_side = max(<Py_ssize_t>side, 1)
    return old


# fit() trains feature-major (see Engine._forward_fm) a network of dense
# layers only, none wider than _fm_width, on batches of _fm_rows_lo to
# _fm_rows_hi rows.  From bench/crossover.py's third table (one thread, ns
# per step): with every side at most 4, ReLU and sigmoid networks step
# 1.1-1.4x (2-4-1 sigmoid, XOR's) to 1.5-3x (1-1-1 ReLU) faster from 2 to
# 32 rows; tanh ones about 5% slower (libm's tanh is most of their time);
# on 1 row, padded to 4 lanes, it is a wash or a loss; at 8 units and more,
# or 300 rows, the row-major passes are as fast or faster.
cdef Py_ssize_t _fm_width = 4
cdef Py_ssize_t _fm_rows_lo = 2
cdef Py_ssize_t _fm_rows_hi = 32


def _fm_limits(width=None, rows_lo=None, rows_hi=None):
    """Read, and optionally set, when fit() trains on feature-major
    activations: every side at most ``width`` (0: never), and batches of
    ``rows_lo`` to ``rows_hi`` rows.  Returns the (width, rows_lo, rows_hi)
    in force before the call.  Private: for the benchmark and for tests that
    force either path.
    """
    global _fm_width, _fm_rows_lo, _fm_rows_hi
    old = (_fm_width, _fm_rows_lo, _fm_rows_hi)
    if width is not None:
        _fm_width = max(<Py_ssize_t>width, 0)
    if rows_lo is not None:
        _fm_rows_lo = max(<Py_ssize_t>rows_lo, 1)
    if rows_hi is not None:
        _fm_rows_hi = max(<Py_ssize_t>rows_hi, 1)
    return old


# A training step is computed in row chunks that may run on several threads
# (see Engine._plan and _fwd_bwd) when the thread limit is 2 or more, no
# dense layer takes dgemm at the batch's size (BLAS has threads of its own),
# the step has at least _par_min_work multiply-adds (rows times the sum of
# n_in * n_out) and every chunk gets at least _par_min_rows rows.  From
# bench/crossover.py's fourth table (2 cores, full-batch steps of six small
# networks on 32 to 1024 rows, medians of 7): at and above these thresholds
# two threads beat one by 1.0-1.9x (median 1.3x); below 64 rows or about 10k
# multiply-adds they lose (0.4-0.95x), where OpenMP's region and barrier and
# the reduction of the chunks cost more than the half step they save; in
# between (128 rows, 11k-25k) they win or lose by little, and stay off.
cdef Py_ssize_t _par_min_rows = 64
cdef Py_ssize_t _par_min_work = 32768
cdef int _par_threads = 0     # threads for the chunks (0: OpenMP's limit)
cdef bint _par_used = False   # chunks have run on several threads in this process
cdef bint _par_off = False    # a fork's child of a process that had (see below)
cdef enum:
    CBP_MAX_CHUNKS = 64  # chunks of a step, at most


cdef inline int _thread_limit() noexcept nogil:
    """The thread limit of a step started from this thread: _par_threads if
    set, else OpenMP's (1 in a build without it)."""
    if _par_threads > 0:
        return _par_threads
    return cbp_par_limit()


def _par_config(threads=None, min_rows=None, min_work=None):
    """Read, and optionally set, when a training step is computed in row
    chunks that may run on several threads: one chunk per thread of the
    limit, each of at least ``min_rows`` rows, for steps of at least
    ``min_work`` multiply-adds.  The limit is OpenMP's for the calling
    thread (omp_get_max_threads) or, if ``threads`` > 0, that, even in a
    build without OpenMP (its chunks then run on one thread).  Returns the
    (threads, min_rows, min_work) in force before the call.  Private: for
    the benchmark and for tests that force either path.
    """
    global _par_threads, _par_min_rows, _par_min_work
    old = (_par_threads, _par_min_rows, _par_min_work)
    if threads is not None:
        _par_threads = min(max(<int>threads, 0), CBP_MAX_CHUNKS)
    if min_rows is not None:
        _par_min_rows = max(<Py_ssize_t>min_rows, 1)
    if min_work is not None:
        _par_min_work = max(<Py_ssize_t>min_work, 0)
    return old


def _par_state():
    """{"built", "limit", "callers", "extra", "off"}: whether this build has
    OpenMP, the thread limit for a step started from this thread, the
    threads inside cbp training calls and the helper threads they run now,
    and whether threads are off in this process (a fork's child)."""
    return {"built": bool(cbp_par_built()), "limit": cbp_par_limit(),
            "callers": cbp_par_callers_now(), "extra": cbp_par_extra_now(),
            "off": bool(_par_off)}


def _par_reserve(long want, long limit):
    """cbp_par_reserve, for the tests of the budget: the helper threads granted."""
    return cbp_par_reserve(want, limit)


def _par_release(long got):
    cbp_par_release(got)


def _par_enter():
    cbp_par_enter()


def _par_leave():
    cbp_par_leave()


def _after_fork_in_child():
    # GNU libgomp cannot start a team in the child of a process that had one
    # (it waits forever for threads the fork did not copy), so a child of a
    # process that trained on several threads trains on one.
    global _par_off
    if _par_used:
        _par_off = True


import os as _os
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_after_fork_in_child)
del _os


# ---------------------------------------------------------------------------
# Kernel wrappers (the twin's signatures)
# ---------------------------------------------------------------------------
def _check(bint ok, str what):
    if not ok:
        raise ValueError(what)


def dense_forward(const double[:, ::1] X, const double[:, ::1] W,
                  const double[::1] b, double[:, ::1] out):
    """out := X @ W + b.  X (n, i), W (i, j), b (j,) or None, out (n, j)."""
    cdef Py_ssize_t n = X.shape[0], ni = X.shape[1], no = W.shape[1]
    _check(W.shape[0] == ni and out.shape[0] == n and out.shape[1] == no
           and (b is None or b.shape[0] == no), "dense_forward: shape mismatch")
    cdef const double* bp = &b[0] if b is not None and no > 0 else NULL
    if n == 0 or no == 0:
        return out.base
    cdef double[::1] scratch = np.empty(max(ni * no, 1))
    with nogil:
        dense_forward_k(&X[0, 0] if ni else NULL, &W[0, 0] if ni else NULL, bp,
                        &out[0, 0], n, ni, no, &scratch[0], ni * no)
    return out.base


def dense_backward(const double[:, ::1] X, const double[:, ::1] W,
                   const double[:, ::1] dZ, double[:, ::1] dW, double[::1] db,
                   double[:, ::1] dX):
    """dW := X.T @ dZ, db := sum(dZ, axis=0), dX := dZ @ W.T (db, dX optional)."""
    cdef Py_ssize_t n = X.shape[0], ni = X.shape[1], no = W.shape[1]
    _check(W.shape[0] == ni and dZ.shape[0] == n and dZ.shape[1] == no
           and dW.shape[0] == ni and dW.shape[1] == no
           and (db is None or db.shape[0] == no)
           and (dX is None or (dX.shape[0] == n and dX.shape[1] == ni)),
           "dense_backward: shape mismatch")
    _check(n > 0 and ni > 0 and no > 0, "dense_backward: empty array")
    cdef double* dbp = &db[0] if db is not None else NULL
    cdef double* dXp = &dX[0, 0] if dX is not None else NULL
    cdef double[::1] scratch = np.empty(ni * no)
    with nogil:
        dense_backward_k(&X[0, 0], &W[0, 0], &dZ[0, 0], &dW[0, 0], dbp, dXp, n, ni, no,
                         &scratch[0], ni * no)


cdef int _fm_code(int act, str who) except -1:
    if act == ACT_IDENTITY:
        return FM_NONE
    if act == ACT_RELU:
        return FM_RELU
    if act == ACT_SIGMOID:
        return FM_SIGMOID
    raise ValueError(f"{who}: activation code {act} is not identity, relu or sigmoid")


def dense_forward_fm(const double[:, ::1] XT, const double[:, ::1] W,
                     const double[::1] b, double[:, ::1] out, int act):
    """out := f(W.T @ XT + b[:, None]), feature-major: XT (i, m), W (i, j),
    b (j,) or None, out (j, m), m a positive multiple of 4; f is the
    identity, relu or sigmoid (activation codes)."""
    cdef Py_ssize_t ni = XT.shape[0], m = XT.shape[1], no = W.shape[1]
    cdef int fa = _fm_code(act, "dense_forward_fm")
    _check(W.shape[0] == ni and out.shape[0] == no and out.shape[1] == m
           and (b is None or b.shape[0] == no), "dense_forward_fm: shape mismatch")
    _check(ni > 0 and no > 0 and m > 0 and m % 4 == 0,
           "dense_forward_fm: needs i, j > 0 and m a positive multiple of 4")
    cdef const double* bp = &b[0] if b is not None else NULL
    with nogil:
        cbp_simd.fm_forward(m, ni, no, &XT[0, 0], &W[0, 0], bp, &out[0, 0], fa)
    return out.base


def dense_backward_fm(const double[:, ::1] XT, const double[:, ::1] W,
                      const double[:, ::1] dT, const double[:, ::1] A, int act,
                      double[:, ::1] dW, double[::1] db, double[:, ::1] dXT):
    """dW := XT @ dT.T, db := sum(dT, axis=1), dXT := (W @ dT) * f'(Z) from
    A = f(Z) (db, dXT optional; A is read for relu and sigmoid), feature-major:
    XT, A, dXT (i, m), W, dW (i, j), dT (j, m), m a positive multiple of 4."""
    cdef Py_ssize_t ni = XT.shape[0], m = XT.shape[1], no = W.shape[1]
    cdef int fa = _fm_code(act, "dense_backward_fm")
    _check(W.shape[0] == ni and dT.shape[0] == no and dT.shape[1] == m
           and dW.shape[0] == ni and dW.shape[1] == no
           and (db is None or db.shape[0] == no)
           and (dXT is None or (dXT.shape[0] == ni and dXT.shape[1] == m))
           and (dXT is None or fa == FM_NONE
                or (A is not None and A.shape[0] == ni and A.shape[1] == m)),
           "dense_backward_fm: shape mismatch")
    _check(ni > 0 and no > 0 and m > 0 and m % 4 == 0,
           "dense_backward_fm: needs i, j > 0 and m a positive multiple of 4")
    cdef double* dbp = &db[0] if db is not None else NULL
    cdef double* dxp = &dXT[0, 0] if dXT is not None else NULL
    cdef const double* ap = &A[0, 0] if A is not None and fa != FM_NONE else NULL
    with nogil:
        cbp_simd.fm_backward(m, ni, no, &XT[0, 0], &dT[0, 0], &W[0, 0], &dW[0, 0], dbp,
                             dxp, ap, fa)


def activation_forward(int act, const double[:, ::1] Z, double[:, ::1] out,
                       double alpha=0.0):
    """out := f(Z), elementwise (row-wise for softmax).  Z, out (n, j)."""
    _check(0 <= act <= ACT_SOFTMAX, f"unknown activation code {act}")
    _check(Z.shape[0] == out.shape[0] and Z.shape[1] == out.shape[1],
           "activation_forward: shape mismatch")
    if Z.shape[0] and Z.shape[1]:
        with nogil:
            activation_forward_k(act, &Z[0, 0], &out[0, 0], Z.shape[0], Z.shape[1], alpha)
    return out.base


def activation_backward(int act, const double[:, ::1] Z, const double[:, ::1] A,
                        const double[:, ::1] dA, double[:, ::1] out, double alpha=0.0):
    """out := dL/dZ given dA = dL/dA, Z and A = f(Z).  All (n, j)."""
    _check(0 <= act <= ACT_SOFTMAX, f"unknown activation code {act}")
    cdef Py_ssize_t n = Z.shape[0], no = Z.shape[1]
    _check(A.shape[0] == n and dA.shape[0] == n and out.shape[0] == n
           and A.shape[1] == no and dA.shape[1] == no and out.shape[1] == no,
           "activation_backward: shape mismatch")
    if n and no:
        with nogil:
            activation_backward_k(act, &Z[0, 0], &A[0, 0], &dA[0, 0], &out[0, 0],
                                  n, no, alpha)
    return out.base


def _check_loss(int loss, int reduction, const double[:, ::1] P,
                const double[:, ::1] Y):
    _check(0 <= loss <= LOSS_BCE, f"unknown loss code {loss}")
    _check(reduction == RED_MEAN or reduction == RED_SUM,
           f"unknown reduction code {reduction}")
    _check(P.shape[0] == Y.shape[0] and P.shape[1] == Y.shape[1], "loss: shape mismatch")
    _check(P.shape[0] > 0 and P.shape[1] > 0, "loss: empty batch")


def loss_value(int loss, const double[:, ::1] P, const double[:, ::1] Y, int reduction):
    """The loss of prediction P against target Y, reduced by mean or sum."""
    _check_loss(loss, reduction, P, Y)
    return loss_value_k(loss, &P[0, 0], &Y[0, 0], P.shape[0], P.shape[1], reduction,
                        P.shape[0])


def loss_gradient(int loss, const double[:, ::1] P, const double[:, ::1] Y,
                  double[:, ::1] out, int reduction):
    """out := dL/dP; returns the loss."""
    _check_loss(loss, reduction, P, Y)
    _check(out.shape[0] == P.shape[0] and out.shape[1] == P.shape[1],
           "loss_gradient: shape mismatch")
    return loss_gradient_k(loss, &P[0, 0], &Y[0, 0], &out[0, 0], P.shape[0],
                           P.shape[1], reduction, P.shape[0])


def output_delta(int act, int loss, const double[:, ::1] Z, const double[:, ::1] A,
                 const double[:, ::1] Y, double[:, ::1] out, int reduction,
                 double alpha=0.0):
    """out := dL/dZ of the output layer (fused where it applies); returns the loss."""
    _check(0 <= act <= ACT_SOFTMAX, f"unknown activation code {act}")
    _check_loss(loss, reduction, A, Y)
    _check(Z.shape[0] == A.shape[0] and Z.shape[1] == A.shape[1]
           and out.shape[0] == A.shape[0] and out.shape[1] == A.shape[1],
           "output_delta: shape mismatch")
    return output_delta_k(act, loss, &Z[0, 0], &A[0, 0], &Y[0, 0], &out[0, 0],
                          A.shape[0], A.shape[1], reduction, alpha, A.shape[0])


def penalty(const double[::1] V, double l1, double l2):
    """l1 * sum(|V|) + l2 * sum(V**2)."""
    if V.shape[0] == 0:
        return 0.0
    return penalty_k(&V[0], V.shape[0], l1, l2)


def add_penalty_gradient(const double[::1] V, double[::1] dV, double l1, double l2):
    """dV += l1 * sign(V) + 2 * l2 * V."""
    _check(V.shape[0] == dV.shape[0], "add_penalty_gradient: shape mismatch")
    if V.shape[0]:
        add_penalty_gradient_k(&V[0], &dV[0], V.shape[0], l1, l2)


def sgd_update(double[::1] params, const double[::1] grads, double lr):
    """params -= lr * grads, in place."""
    _check(params.shape[0] == grads.shape[0], "sgd_update: shape mismatch")
    if params.shape[0]:
        with nogil:
            sgd_update_k(&params[0], &grads[0], params.shape[0], lr)
    return params.base


def optimizer_update(int kind, const double[::1] hyper, double[::1] params,
                     const double[::1] grads, double[:, ::1] state, double t):
    """One optimizer step on a flat segment, in place (nnfs semantics)."""
    cdef Py_ssize_t m = params.shape[0]
    _check(0 <= kind <= OPT_ADAM, f"unknown optimizer code {kind}")
    _check(hyper.shape[0] == 8 and grads.shape[0] == m and state.shape[1] == m
           and state.shape[0] >= (2 if kind == OPT_ADAM else
                                  (1 if kind != OPT_SGD or hyper[O_MOMENTUM] != 0.0 else 0)),
           "optimizer_update: shape mismatch")
    if m == 0:
        return params.base
    cdef double* s0 = &state[0, 0] if state.shape[0] > 0 else NULL
    cdef double* s1 = &state[1, 0] if state.shape[0] > 1 else NULL
    with nogil:
        optimizer_update_k(kind, &hyper[0], &params[0], &grads[0], s0, s1, m, t)
    return params.base


def random_bits(uint64_t seed, uint64_t stream, uint64_t start, Py_ssize_t n):
    """uint64 draws number start .. start + n - 1 of stream ``stream``."""
    out = np.empty(n, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    cdef uint64_t base = stream_base_k(seed, stream)
    cdef Py_ssize_t i
    for i in range(n):
        o[i] = draw_k(base, start + <uint64_t>i)
    return out


cdef struct KeyIdx:
    uint64_t key
    long long idx


cdef int _cmp_keyidx(const void* a, const void* b) noexcept nogil:
    cdef const KeyIdx* x = <const KeyIdx*>a
    cdef const KeyIdx* y = <const KeyIdx*>b
    if x.key < y.key:
        return -1
    if x.key > y.key:
        return 1
    return -1 if x.idx < y.idx else (1 if x.idx > y.idx else 0)


cdef void shuffle_order_k(uint64_t seed, uint64_t epoch, long long* order,
                          KeyIdx* tmp, Py_ssize_t n) noexcept nogil:
    """order := argsort of the epoch's hashed keys, ties broken by index."""
    cdef Py_ssize_t i
    cdef uint64_t base = stream_base_k(seed, 2 * epoch)
    for i in range(n):
        tmp[i].key = draw_k(base, <uint64_t>i)
        tmp[i].idx = i
    qsort(tmp, n, sizeof(KeyIdx), _cmp_keyidx)
    for i in range(n):
        order[i] = tmp[i].idx


def shuffle_order(uint64_t seed, uint64_t epoch, Py_ssize_t n):
    """The sample order of an epoch: argsort of hashed keys, ties by index."""
    out = np.empty(n, dtype=np.int64)
    if n == 0:
        return out
    cdef long long[::1] o = out
    cdef KeyIdx* tmp = <KeyIdx*>PyMem_Malloc(n * sizeof(KeyIdx))
    if tmp == NULL:
        raise MemoryError()
    with nogil:
        shuffle_order_k(seed, epoch, &o[0], tmp, n)
    PyMem_Free(tmp)
    return out


def dropout_mask(uint64_t seed, uint64_t stream, uint64_t start, double rate,
                 double[:, ::1] out):
    """out := 1 / (1 - rate) where a uniform draw >= rate, else 0 (inverted dropout)."""
    if out.shape[0] and out.shape[1]:
        dropout_mask_k(seed, stream, start, rate, &out[0, 0], out.shape[0] * out.shape[1])
    return out.base


# ---------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------
cdef enum:
    KIND_DENSE = 0
    KIND_DROPOUT = 1

cdef enum:
    FIT_DONE = 0
    FIT_STOPPED = 1
    FIT_DIVERGED = 2

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


@cython.final  # no subclasses: the passes are called directly, not through a vtable
cdef class Engine:
    """Forward, backward, optimizer steps and whole training runs over a flat
    parameter buffer.

    Same constructor and methods as ``cbp._reference.Engine``; see there.
    The workspace is laid out once per batch size; nothing is allocated
    inside a training loop.
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
    cdef Py_ssize_t fm_side        # widest side if feature-major can run, else 0
    cdef readonly Py_ssize_t ld    # feature-major lanes (0: not laid out)
    cdef Py_ssize_t xt_off         # offset of xT (n_in, ld)
    cdef object _scratch           # W transposed, for the thin layers (_simd.h)
    cdef double* scratch
    cdef Py_ssize_t scratch_cap
    cdef object _snap              # params + optimizer state before a step
    cdef double* snap
    cdef Py_ssize_t snap_cap
    # chunks (_fwd_bwd): every chunk c >= 1 has a gradient buffer and a
    # scratch, tstride doubles from tbuf + (c - 1) * tstride
    cdef Py_ssize_t* gsegs         # gradient ranges [lo, hi) of every dense layer, merged
    cdef Py_ssize_t n_gsegs
    cdef object _tbuf
    cdef object _pending           # the exception a signal handler raised in fit
    cdef double* tbuf
    cdef Py_ssize_t tstride
    cdef Py_ssize_t n_chunk_bufs   # chunks (after the first) tbuf has room for
    cdef Py_ssize_t nchunks        # chunks of the step running
    cdef readonly int threads_used # threads the last training step ran on
    cdef double tval[CBP_MAX_CHUNKS]
    cdef Py_ssize_t thit[CBP_MAX_CHUNKS]
    cdef Py_ssize_t tseen[CBP_MAX_CHUNKS]

    def __cinit__(self):
        self.layers = NULL
        self.segs = NULL
        self.gsegs = NULL

    def __init__(self, meta, hyper, double[::1] params, double[::1] grads,
                 int loss, int reduction):
        cdef const long long[:, ::1] m = np.ascontiguousarray(meta, dtype=np.int64)
        cdef const double[:, ::1] h = np.ascontiguousarray(hyper, dtype=np.float64)
        cdef Py_ssize_t l, L = m.shape[0], lo, hi, P = params.shape[0]
        cdef Layer* Ly
        _check(L > 0 and m.shape[1] == 7 and h.shape[0] == L and h.shape[1] == 6,
               "Engine: bad layer table")
        _check(P > 0 and grads.shape[0] == P, "Engine: params/grads size mismatch")
        _check(0 <= loss <= LOSS_BCE and (reduction == RED_MEAN or reduction == RED_SUM),
               "Engine: bad loss or reduction code")
        self.layers = <Layer*>PyMem_Malloc(L * sizeof(Layer))
        self.segs = <Py_ssize_t*>PyMem_Malloc(2 * L * sizeof(Py_ssize_t))
        self.gsegs = <Py_ssize_t*>PyMem_Malloc(2 * L * sizeof(Py_ssize_t))
        if self.layers == NULL or self.segs == NULL or self.gsegs == NULL:
            raise MemoryError()
        self.n_gsegs = 0
        self.n_layers = L
        self.width = 0
        self.n_segs = 0
        self.penalised = False
        self.fm_side = 0
        self.ld = 0
        for l in range(L):
            Ly = &self.layers[l]
            Ly.kind = <int>m[l, 0]
            Ly.n_in = m[l, 1]
            Ly.n_out = m[l, 2]
            Ly.act = <int>m[l, 3]
            Ly.w_off = m[l, 4]
            Ly.b_off = m[l, 5]
            Ly.trainable = <int>m[l, 6]
            Ly.alpha = h[l, 0]
            Ly.wl1 = h[l, 1]
            Ly.wl2 = h[l, 2]
            Ly.bl1 = h[l, 3]
            Ly.bl2 = h[l, 4]
            Ly.rate = h[l, 5]
            _check(0 <= Ly.act <= ACT_SOFTMAX, "Engine: bad activation code")
            _check(Ly.kind == KIND_DENSE or (Ly.kind == KIND_DROPOUT and Ly.n_in == Ly.n_out
                                            and 0.0 <= Ly.rate < 1.0 and l < L - 1),
                   "Engine: bad layer kind")
            _check(Ly.n_in > 0 and Ly.n_out > 0 and (l == 0 or Ly.n_in == self.layers[l - 1].n_out),
                   "Engine: layer widths do not chain")
            if Ly.kind == KIND_DENSE:
                self.penalised |= (Ly.wl1 != 0.0 or Ly.wl2 != 0.0 or Ly.bl1 != 0.0
                                   or Ly.bl2 != 0.0)
                _check(Ly.w_off >= 0 and Ly.w_off + Ly.n_in * Ly.n_out <= P
                       and Ly.b_off + Ly.n_out <= P,
                       "Engine: layer table does not fit the parameter buffer")
                _check(Ly.b_off < 0 or Ly.b_off == Ly.w_off + Ly.n_in * Ly.n_out,
                       "Engine: a layer's bias must follow its weights")
                lo = Ly.w_off
                hi = lo + Ly.n_in * Ly.n_out + (Ly.n_out if Ly.b_off >= 0 else 0)
                _add_range(self.gsegs, &self.n_gsegs, lo, hi)
                if Ly.trainable:
                    _add_range(self.segs, &self.n_segs, lo, hi)
            self.width = max(self.width, Ly.n_out)
            self.fm_side = max(self.fm_side, Ly.n_in, Ly.n_out)
        self.n_in = self.layers[0].n_in
        self.n_out = self.layers[L - 1].n_out
        for l in range(L):  # dense layers only, softmax only at the output
            Ly = &self.layers[l]
            if Ly.kind != KIND_DENSE or (Ly.act == ACT_SOFTMAX and l < L - 1):
                self.fm_side = 0
        # room to transpose the largest W up to 64k entries; larger ones are
        # either on dgemm or run without the transpose
        self.scratch_cap = 1
        for l in range(L):
            if self.layers[l].kind == KIND_DENSE:
                lo = self.layers[l].n_in * self.layers[l].n_out
                if lo <= 65536:
                    self.scratch_cap = max(self.scratch_cap, lo)
        self._scratch = np.empty(self.scratch_cap, dtype=np.float64)
        cdef double[::1] scr = self._scratch
        self.scratch = &scr[0]
        self.n_params = P
        self._params = params
        self._grads = grads
        self.params = &params[0]
        self.grads = &grads[0]
        self.loss = loss
        self.reduction = reduction
        self.batch = 0
        self.rows = 0
        self.tstride = P + self.scratch_cap
        self.n_chunk_bufs = 0
        self.nchunks = 1
        self.threads_used = 1

    def __dealloc__(self):
        PyMem_Free(self.layers)
        PyMem_Free(self.segs)
        PyMem_Free(self.gsegs)

    # -- workspace ----------------------------------------------------------
    cdef int _layout(self, Py_ssize_t n) except -1:
        """Lay the workspace out for up to n rows: [X | Y | Z A D per layer],
        then, if feature-major training is on for this network,
        [xT | zT aT dT per layer] of ld >= n lanes."""
        cdef Py_ssize_t l, off, ld
        cdef double[::1] w
        ld = ((n + 3) // 4 * 4 if 0 < self.fm_side <= _fm_width
              and _fm_rows_lo <= n <= _fm_rows_hi else 0)
        if n == self.batch and ld == self.ld:
            return 0
        off = n * self.n_in
        self.y_off = off
        off += n * self.n_out
        for l in range(self.n_layers):
            self.layers[l].z = off
            self.layers[l].a = off + n * self.layers[l].n_out
            self.layers[l].d = off + 2 * n * self.layers[l].n_out
            off += 3 * n * self.layers[l].n_out
        self.ld = ld
        self.xt_off = off
        off += ld * self.n_in
        for l in range(self.n_layers):
            self.layers[l].zt = off
            self.layers[l].at = off + ld * self.layers[l].n_out
            self.layers[l].dt = off + 2 * ld * self.layers[l].n_out
            off += 3 * ld * self.layers[l].n_out
        if self._work is None or self._work.shape[0] < off:
            self._work = np.empty(off, dtype=np.float64)
        w = self._work
        self.work = &w[0]
        self.batch = n
        self.rows = 0
        return 0

    # -- passes (nogil) -----------------------------------------------------
    cdef inline double* _zbuf(self, Layer* L) noexcept nogil:
        """Where backward reads a layer's pre-activation Z from.  A ReLU
        dense layer stores only A = relu(Z) (fused into the product), and
        A > 0 exactly where Z > 0, which is all its derivative needs."""
        if L.kind == KIND_DENSE and L.act == ACT_RELU:
            return self.work + L.a
        return self.work + L.z

    cdef inline void _forward(self, const double* x, Py_ssize_t n, bint train,
                              uint64_t seed, uint64_t epoch, uint64_t row) noexcept nogil:
        """Forward n rows starting at x.  With ``train``, dropout layers draw
        their masks for (seed, epoch, first row)."""
        self._forward_rows(x, n, train, seed, epoch, row, 0, self.scratch)

    cdef void _forward_rows(self, const double* x, Py_ssize_t n, bint train, uint64_t seed,
                            uint64_t epoch, uint64_t row, Py_ssize_t r0,
                            double* scratch) noexcept nogil:
        """_forward of n rows into rows r0 .. r0 + n of the workspace, with
        this thread's ``scratch``; ``row`` is the first row's number in the
        epoch (dropout's draws are keyed by it)."""
        cdef Py_ssize_t l, i, m
        cdef Layer* L
        cdef double* z
        cdef double* a
        for l in range(self.n_layers):
            L = &self.layers[l]
            z = self.work + L.z + r0 * L.n_out
            a = self.work + L.a + r0 * L.n_out
            m = n * L.n_out
            if L.kind == KIND_DROPOUT:
                if train:
                    dropout_mask_k(seed, 2 * (epoch * self.n_layers + l) + 1,
                                   row * L.n_out, L.rate, z, m)
                    for i in range(m):
                        a[i] = x[i] * z[i]
                else:
                    for i in range(m):
                        z[i] = 1.0
                    memcpy(a, x, m * sizeof(double))
            elif L.act == ACT_RELU:
                dense_forward_k(x, self.params + L.w_off,
                                self.params + L.b_off if L.b_off >= 0 else NULL,
                                a, n, L.n_in, L.n_out, scratch, self.scratch_cap, True)
            else:
                dense_forward_k(x, self.params + L.w_off,
                                self.params + L.b_off if L.b_off >= 0 else NULL,
                                z, n, L.n_in, L.n_out, scratch, self.scratch_cap)
                activation_forward_k(L.act, z, a, n, L.n_out, L.alpha)
            x = a

    cdef double _penalties(self) noexcept nogil:
        cdef Py_ssize_t l
        cdef Layer* L
        cdef double value = 0.0
        if not self.penalised:
            return 0.0
        for l in range(self.n_layers):
            L = &self.layers[l]
            if L.kind != KIND_DENSE:
                continue
            value += penalty_k(self.params + L.w_off, L.n_in * L.n_out, L.wl1, L.wl2)
            if L.b_off >= 0:
                value += penalty_k(self.params + L.b_off, L.n_out, L.bl1, L.bl2)
        return value

    cdef inline double _backward(self, const double* X, const double* Y,
                                 Py_ssize_t n) noexcept nogil:
        """Backpropagate from target Y; X is the input of the forward pass."""
        return (self._backward_rows(X, Y, n, 0, self.grads, self.scratch, n)
                + self._penalty_grads())

    cdef double _backward_rows(self, const double* X, const double* Y, Py_ssize_t n,
                               Py_ssize_t r0, double* grads, double* scratch,
                               Py_ssize_t nscale) noexcept nogil:
        """_backward of the n rows at r0 of the workspace (X and Y are those
        rows' own), the gradients into ``grads`` (laid out as self.grads),
        without the penalties, as rows of a batch of nscale rows (n, or more
        for a chunk; see loss_value_k).  Returns their loss."""
        cdef Py_ssize_t l, i, lo, po
        cdef Layer* L = &self.layers[self.n_layers - 1]
        cdef Layer* P
        cdef double value
        cdef const double* x
        cdef const double* gate
        cdef double* dx
        lo = r0 * L.n_out
        value = output_delta_k(L.act, self.loss, self._zbuf(L) + lo, self.work + L.a + lo, Y,
                               self.work + L.d + lo, n, L.n_out, self.reduction, L.alpha,
                               nscale)
        for l in range(self.n_layers - 1, -1, -1):
            L = &self.layers[l]
            P = &self.layers[l - 1] if l > 0 else NULL
            lo = r0 * L.n_out
            po = r0 * P.n_out if P != NULL else 0
            dx = self.work + P.d + po if P != NULL else NULL
            # the ReLU mask of a dense layer below is fused into dX's store
            gate = (self.work + P.a + po if P != NULL and P.kind == KIND_DENSE
                    and P.act == ACT_RELU and L.kind == KIND_DENSE else NULL)
            if L.kind == KIND_DROPOUT:
                if dx != NULL:
                    for i in range(n * L.n_out):
                        dx[i] = self.work[L.d + lo + i] * self.work[L.z + lo + i]
            else:
                x = X if l == 0 else self.work + P.a + po
                dense_backward_k(x, self.params + L.w_off, self.work + L.d + lo,
                                 grads + L.w_off,
                                 grads + L.b_off if L.b_off >= 0 else NULL,
                                 dx, n, L.n_in, L.n_out, scratch, self.scratch_cap,
                                 gate)
            if P != NULL and gate == NULL:
                activation_backward_k(P.act, self._zbuf(P) + po, self.work + P.a + po, dx, dx,
                                      n, P.n_out, P.alpha)
        return value

    # -- chunks and threads ---------------------------------------------------
    # A step on n rows whose layers are all off dgemm, with enough rows and
    # work, on a thread limit of 2 or more (_plan), is computed in K row
    # chunks, K = min(limit, n // _par_min_rows): each chunk's forward and
    # backward passes are row-wise, except for the gradients, which are sums
    # over the rows; chunk 0 writes its own into self.grads, chunk c >= 1
    # into a buffer of its own, and then the chunks' buffers are added into
    # self.grads in chunk order, and their losses too.  The chunks run on as
    # many threads as the budget of _par.h grants at the time (maybe only
    # this one), which changes nothing in the result: that depends on the
    # thread limit (OMP_NUM_THREADS, threadpoolctl, _par_config), never on
    # what else is running, and only the rounding of these sums tells it
    # from an unchunked step.  No chunk calls BLAS.
    cdef inline Py_ssize_t _plan(self, Py_ssize_t n) noexcept nogil:
        """How many chunks a step on n rows is computed in (1: unchunked)."""
        if n < 2 * _par_min_rows:  # most steps stop here, inline
            return 1
        return self._plan_work(n)

    cdef Py_ssize_t _plan_work(self, Py_ssize_t n) noexcept nogil:
        """_plan for n >= 2 * _par_min_rows: the layers and the work."""
        cdef Py_ssize_t l, work = 0
        cdef Layer* L
        for l in range(self.n_layers):
            L = &self.layers[l]
            if L.kind == KIND_DENSE:
                if use_blas_k(n, L.n_in, L.n_out):
                    return 1
                work += L.n_in * L.n_out
        if work * n < _par_min_work:
            return 1
        return max(min(n // _par_min_rows, <Py_ssize_t>_thread_limit(), CBP_MAX_CHUNKS), 1)

    cdef inline int _par_prepare(self, Py_ssize_t n) except -1:
        """Room for the chunk buffers of a step on up to n rows (those of a
        step on fewer rows fit in them); returns the chunks it plans."""
        cdef Py_ssize_t k = self._plan(n)
        if k - 1 > self.n_chunk_bufs:
            self._grow_chunk_bufs(k - 1)
        return <int>k

    cdef int _grow_chunk_bufs(self, Py_ssize_t bufs) except -1:
        cdef double[::1] buf
        self._tbuf = np.empty(bufs * self.tstride, dtype=np.float64)
        buf = self._tbuf
        self.tbuf = &buf[0]
        self.n_chunk_bufs = bufs
        return 0

    cdef inline double _fwd_bwd(self, const double* X, const double* Y, Py_ssize_t n,
                                bint train, uint64_t seed, uint64_t epoch, uint64_t row,
                                Py_ssize_t* hit, Py_ssize_t* seen) noexcept nogil:
        """_forward and _backward of a batch, in chunks where _plan says so,
        on several threads where the build, OpenMP's limit and the budget
        (_par.h) allow; with ``hit``, its correct predictions too
        (correct_k).  Returns the loss, penalties included."""
        cdef Py_ssize_t k = self._plan(n)
        if k > 1 and k <= 1 + self.n_chunk_bufs:  # (else a caller forgot _par_prepare)
            return self._fwd_bwd_chunks(k, X, Y, n, train, seed, epoch, row, hit, seen)
        self.threads_used = 1
        self._forward(X, n, train, seed, epoch, row)
        cdef double value = self._backward(X, Y, n)
        if hit != NULL:
            hit[0] = correct_k(self.loss, self.work + self.layers[self.n_layers - 1].a,
                               Y, n, self.n_out, seen)
        return value

    cdef double _fwd_bwd_chunks(self, Py_ssize_t k, const double* X, const double* Y,
                                Py_ssize_t n, bint train, uint64_t seed, uint64_t epoch,
                                uint64_t row, Py_ssize_t* hit, Py_ssize_t* seen) noexcept nogil:
        """_fwd_bwd in k chunks."""
        cdef Py_ssize_t c, h = 0, sn = 0
        cdef long got = 0
        cdef double value = 0.0
        global _par_used
        self.nchunks = k
        if cbp_par_built() and not _par_off:  # (a fork's child runs them on one)
            got = cbp_par_reserve(k - 1, _thread_limit())
        if got == 0:
            self.threads_used = 1
            for c in range(k):
                self._run_chunk(c, X, Y, n, train, seed, epoch, row, hit != NULL)
            self._reduce_chunks(0, 1)
        else:
            _par_used = True
            with parallel(num_threads=got + 1):
                self._team_part(X, Y, n, train, seed, epoch, row, hit != NULL)
            cbp_par_release(got)
        for c in range(k):
            value += self.tval[c]
            h += self.thit[c]
            sn += self.tseen[c]
        if hit != NULL:
            hit[0] = h
            seen[0] = sn
        return value + self._penalty_grads()

    cdef void _team_part(self, const double* X, const double* Y, Py_ssize_t n, bint train,
                         uint64_t seed, uint64_t epoch, uint64_t row,
                         bint count) noexcept nogil:
        """One thread's part of _fwd_bwd, inside the parallel region: a
        contiguous block of the chunks, then its share of the sums."""
        cdef int t = cbp_par_thread(), nt = cbp_par_team()
        cdef Py_ssize_t k = self.nchunks, c
        if t == 0:
            self.threads_used = nt
        for c in range(k * t // nt, k * (t + 1) // nt):
            self._run_chunk(c, X, Y, n, train, seed, epoch, row, count)
        cbp_par_barrier()
        self._reduce_chunks(t, nt)

    cdef void _run_chunk(self, Py_ssize_t c, const double* X, const double* Y, Py_ssize_t n,
                         bint train, uint64_t seed, uint64_t epoch, uint64_t row,
                         bint count) noexcept nogil:
        """Forward and backward of chunk c of self.nchunks; its gradients
        into its buffer, its loss and correct predictions into tval, thit."""
        cdef Py_ssize_t k = self.nchunks
        cdef Py_ssize_t r0 = n * c // k, rows = n * (c + 1) // k - r0
        cdef double* g = self.grads if c == 0 else self.tbuf + (c - 1) * self.tstride
        cdef double* scr = self.scratch if c == 0 else g + self.n_params
        self._forward_rows(X + r0 * self.n_in, rows, train, seed, epoch, row + r0, r0, scr)
        self.tval[c] = self._backward_rows(X + r0 * self.n_in, Y + r0 * self.n_out, rows, r0,
                                           g, scr, n)
        if count:
            self.thit[c] = correct_k(self.loss,
                                     self.work + self.layers[self.n_layers - 1].a
                                     + r0 * self.n_out, Y + r0 * self.n_out, rows,
                                     self.n_out, &self.tseen[c])
        else:
            self.thit[c] = 0
            self.tseen[c] = 0

    cdef void _reduce_chunks(self, int t, int nt) noexcept nogil:
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
                src = self.tbuf + (c - 1) * self.tstride
                for i in range(a, b):
                    dst[i] += src[i]

    cdef double _penalty_grads(self) noexcept nogil:
        """Add the L1/L2 penalty gradients (nnfs semantics); return the penalty."""
        cdef Py_ssize_t l
        cdef Layer* L
        if not self.penalised:
            return 0.0
        for l in range(self.n_layers):
            L = &self.layers[l]
            if L.kind != KIND_DENSE:
                continue
            add_penalty_gradient_k(self.params + L.w_off, self.grads + L.w_off,
                                   L.n_in * L.n_out, L.wl1, L.wl2)
            if L.b_off >= 0:
                add_penalty_gradient_k(self.params + L.b_off, self.grads + L.b_off,
                                       L.n_out, L.bl1, L.bl2)
        return self._penalties()

    # -- feature-major passes (fit, narrow networks) --------------------------
    # Every side of the network is at most _fm_width, every layer dense, and
    # the batch has _fm_rows_lo to _fm_rows_hi rows (see there), so
    # a product has no side wide enough to vectorise along.  fit() then keeps
    # the activations feature-major, xT (n_in, ld) and zT, aT, dT (n_out, ld)
    # per layer, and fm_forward and fm_backward (_simd.h) vectorise along the
    # batch, with ReLU and sigmoid applied in registers.  The ld - n padding
    # lanes replicate the last row forward (so they compute what a real row
    # does) and carry a zero delta backward (so they add nothing to a
    # gradient).  An output layer of one unit is row-major as it is; a wider
    # one is also laid out row-major (Z, A, delta) for the loss functions.
    cdef inline int _fm_act(self, const Layer* L) noexcept nogil:
        """The activation fm_forward applies to L's output itself."""
        if L.act == ACT_RELU:
            return FM_RELU
        if L.act == ACT_SIGMOID:
            return FM_SIGMOID
        return FM_NONE

    cdef inline double* _fm_z(self, const Layer* L) noexcept nogil:
        """Where L's pre-activation is read back from: A when fm_forward
        applied the activation (all the derivative needs), else zT."""
        return self.work + (L.at if self._fm_act(L) != FM_NONE else L.zt)

    cdef const double* _forward_fm(self, const double* x, Py_ssize_t n,
                                   bint load) noexcept nogil:
        """Forward n rows of x (with ``load``; else xT is still in place);
        returns the network's output, row-major (n, n_out)."""
        cdef Py_ssize_t l, k, r, j, ld = self.ld, ni = self.n_in, no
        cdef Layer* L
        cdef double* xt = self.work + self.xt_off
        cdef double* z
        cdef int fa
        if load:
            for k in range(ni):
                for r in range(n):
                    xt[k * ld + r] = x[r * ni + k]
                for r in range(n, ld):
                    xt[k * ld + r] = x[(n - 1) * ni + k]
        for l in range(self.n_layers):
            L = &self.layers[l]
            no = L.n_out
            fa = self._fm_act(L) if no == 1 or l < self.n_layers - 1 else FM_NONE
            cbp_simd.fm_forward(ld, L.n_in, no, xt, self.params + L.w_off,
                                self.params + L.b_off if L.b_off >= 0 else NULL,
                                self.work + (L.zt if fa == FM_NONE else L.at), fa)
            xt = self.work + L.at
            if fa != FM_NONE:
                continue
            if l < self.n_layers - 1 and ld == n:  # elementwise
                activation_forward_k(L.act, self.work + L.zt, xt, 1, no * ld, L.alpha)
            elif l < self.n_layers - 1:  # the n lanes of each unit, the padding copied
                for j in range(no):
                    activation_forward_k(L.act, self.work + L.zt + j * ld, xt + j * ld, 1, n,
                                         L.alpha)
                    for r in range(n, ld):
                        xt[j * ld + r] = xt[j * ld + n - 1]
            elif no == 1:
                activation_forward_k(L.act, self.work + L.zt, xt, n, 1, L.alpha)
            else:  # row-major Z, then A
                z = self.work + L.z
                for j in range(no):
                    for r in range(n):
                        z[r * no + j] = self.work[L.zt + j * ld + r]
                activation_forward_k(L.act, z, self.work + L.a, n, no, L.alpha)
                return self.work + L.a
        return xt

    cdef double _backward_fm(self, const double* Y, Py_ssize_t n) noexcept nogil:
        """As _backward, after _forward_fm."""
        cdef Py_ssize_t l, r, j, ld = self.ld, no
        cdef Layer* L = &self.layers[self.n_layers - 1]
        cdef Layer* P
        cdef double value
        cdef double* dt = self.work + L.dt
        cdef int fa
        no = L.n_out
        if no == 1:
            value = output_delta_k(L.act, self.loss, self._fm_z(L), self.work + L.at, Y,
                                   dt, n, 1, self.reduction, L.alpha, n)
        else:
            value = output_delta_k(L.act, self.loss, self.work + L.z, self.work + L.a, Y,
                                   self.work + L.d, n, no, self.reduction, L.alpha, n)
            for j in range(no):
                for r in range(n):
                    dt[j * ld + r] = self.work[L.d + r * no + j]
        for j in range(no):
            for r in range(n, ld):
                dt[j * ld + r] = 0.0
        for l in range(self.n_layers - 1, -1, -1):
            L = &self.layers[l]
            P = &self.layers[l - 1] if l > 0 else NULL
            fa = self._fm_act(P) if P != NULL else FM_NONE
            cbp_simd.fm_backward(ld, L.n_in, L.n_out,
                                 self.work + (P.at if P != NULL else self.xt_off),
                                 self.work + L.dt, self.params + L.w_off,
                                 self.grads + L.w_off,
                                 self.grads + L.b_off if L.b_off >= 0 else NULL,
                                 self.work + P.dt if P != NULL else NULL,
                                 self.work + P.at if P != NULL else NULL, fa)
            if P != NULL and fa == FM_NONE:
                activation_backward_k(P.act, self.work + P.zt, self.work + P.at,
                                      self.work + P.dt, self.work + P.dt, 1,
                                      P.n_out * ld, P.alpha)
        return value + self._penalty_grads()

    cdef bint _update(self, int kind, const double* oh, double* state,
                      Py_ssize_t slots, double t, double* snap) noexcept nogil:
        """One optimizer step over the trainable segments; True if all finite.

        Plain SGD runs as ``_sgd`` (the same arithmetic, without the dispatch)
        and saves the old values into ``snap`` in its own pass, unless snap is
        NULL; the other optimizers leave snap alone (see ``_before_update``).
        """
        cdef Py_ssize_t s, lo, hi, P = self.n_params
        cdef int chk = 0
        if self._plain_sgd(kind, oh):
            return self._sgd(oh[O_LR], snap)
        for s in range(self.n_segs):
            lo = self.segs[2 * s]
            hi = self.segs[2 * s + 1]
            chk |= optimizer_update_k(kind, oh, self.params + lo, self.grads + lo,
                                      state + lo if slots > 0 else NULL,
                                      state + P + lo if slots > 1 else NULL,
                                      hi - lo, t)
        return chk == 0

    cdef double* _infer(self, const double* x, Py_ssize_t n, double* buf) noexcept nogil:
        """Forward without dropout into a ping-pong buffer of 2 * n * width;
        returns the output."""
        cdef Py_ssize_t l
        cdef Layer* L
        cdef double* cur = buf
        for l in range(self.n_layers):
            L = &self.layers[l]
            cur = buf + (l % 2) * n * self.width
            if L.kind == KIND_DROPOUT:
                memcpy(cur, x, n * L.n_out * sizeof(double))
            else:
                dense_forward_k(x, self.params + L.w_off,
                                self.params + L.b_off if L.b_off >= 0 else NULL,
                                cur, n, L.n_in, L.n_out, self.scratch, self.scratch_cap,
                                L.act == ACT_RELU)
                if L.act != ACT_RELU:
                    activation_forward_k(L.act, cur, cur, n, L.n_out, L.alpha)
            x = cur
        return cur

    # -- Python entry points -------------------------------------------------
    cdef Py_ssize_t _load_x(self, const double[:, ::1] X) except -1:
        cdef Py_ssize_t n = X.shape[0]
        _check(n > 0 and X.shape[1] == self.n_in, "Engine: X has the wrong shape")
        self._layout(n)
        memcpy(self.work, &X[0, 0], n * self.n_in * sizeof(double))
        return n

    def forward(self, const double[:, ::1] X):
        """Run X (n, n_in) through the network; keep what backward needs."""
        cdef Py_ssize_t n = self._load_x(X)
        with nogil:
            self._forward(self.work, n, False, 0, 0, 0)
        self.rows = n
        cdef Layer* L = &self.layers[self.n_layers - 1]
        return self._work[L.a:L.a + n * L.n_out].reshape(n, L.n_out)

    def predict(self, const double[:, ::1] X):
        """The output for X as a new array; the backward cache is untouched."""
        cdef Py_ssize_t n = X.shape[0]
        _check(n > 0 and X.shape[1] == self.n_in, "Engine: X has the wrong shape")
        cdef double[::1] buf = np.empty(2 * n * self.width, dtype=np.float64)
        cdef double* out
        with nogil:
            out = self._infer(&X[0, 0], n, &buf[0])
        cdef Py_ssize_t off = out - &buf[0]
        return np.asarray(buf)[off:off + n * self.n_out].reshape(n, self.n_out).copy()

    def backward(self, const double[:, ::1] Y):
        """Fill the gradient buffer for target Y (n, n_out); return the loss."""
        if self.rows == 0:
            raise RuntimeError("backward() needs a forward() first")
        _check(Y.shape[0] == self.rows and Y.shape[1] == self.n_out,
               "Engine: Y has the wrong shape")
        cdef double value
        with nogil:
            value = self._backward(self.work, &Y[0, 0], self.rows)
        return value

    cdef Py_ssize_t _slots(self, int kind, const double[::1] oh,
                           const double[::1] state) except -1:
        _check(0 <= kind <= OPT_ADAM and oh.shape[0] == 8, "Engine: bad optimizer")
        cdef Py_ssize_t need = 2 if kind == OPT_ADAM else (
            0 if kind == OPT_SGD and oh[O_MOMENTUM] == 0.0 else 1)
        _check(state.shape[0] >= need * self.n_params, "Engine: optimizer state too small")
        return need

    cdef double* _snap_buffer(self, Py_ssize_t slots) except NULL:
        """Room for the params and ``slots`` optimizer state slots."""
        cdef Py_ssize_t m = self.n_params * (1 + slots)
        cdef double[::1] snap
        if self.snap_cap < m:
            self._snap = np.empty(m, dtype=np.float64)
            snap = self._snap
            self.snap = &snap[0]
            self.snap_cap = m
        return self.snap

    cdef double* _before_update(self, bint plain, const double[::1] state,
                                Py_ssize_t slots) except NULL:
        """Where the state before one update is kept for ``_rollback``: plain
        SGD saves it in its own pass (``_update(..., snap)``), the other
        optimizers' params and state are copied here now."""
        cdef double* snap = self._snap_buffer(slots)
        if not plain:
            self._snapshot_nogil(snap, &state[0] if slots else NULL, slots)
        return snap

    cdef void _rollback(self, bint plain, const double* snap, double* state,
                        Py_ssize_t slots) noexcept nogil:
        """Undo what was updated since the snapshot into snap."""
        if plain:  # only the trainable segments were saved (and changed)
            self._restore_segs(snap)
        else:
            memcpy(self.params, snap, self.n_params * sizeof(double))
            if slots:
                memcpy(state, snap + self.n_params, slots * self.n_params * sizeof(double))

    def step(self, int kind, const double[::1] ohyper, double[::1] state, double t):
        """Apply one optimizer step with the current gradients."""
        cdef Py_ssize_t slots = self._slots(kind, ohyper, state)
        cdef bint plain = self._plain_sgd(kind, &ohyper[0])
        cdef double* snap = self._before_update(plain, state, slots)
        cdef double* st = &state[0] if slots else NULL
        cdef bint ok
        with nogil:
            ok = self._update(kind, &ohyper[0], st, slots, t, snap)
            if not ok:
                self._rollback(plain, snap, st, slots)
        if not ok:
            raise DivergenceError(
                "training diverged: the update made a parameter NaN or infinite; "
                "the parameters were left at their last finite values")

    def sgd_step(self, double lr):
        """params -= lr * grads over the trainable layers (plain SGD)."""
        oh = np.zeros(8)
        oh[O_LR] = lr
        self.step(OPT_SGD, oh, np.empty(0), 0)

    def train_step(self, const double[:, ::1] X, const double[:, ::1] Y, int kind,
                   const double[::1] ohyper, double[::1] state, double t):
        """forward, backward and one optimizer step; the loss before the update."""
        cdef Py_ssize_t n = self._load_x(X)
        _check(Y.shape[0] == n and Y.shape[1] == self.n_out,
               "Engine: Y has the wrong shape")
        cdef Py_ssize_t slots = self._slots(kind, ohyper, state)
        cdef bint plain = self._plain_sgd(kind, &ohyper[0])
        cdef double* snap = self._before_update(plain, state, slots)
        cdef double* st = &state[0] if slots else NULL
        cdef double value
        cdef bint ok
        cdef bint par = self._par_prepare(n) > 1
        if par:
            cbp_par_enter()
        try:
            with nogil:
                value = self._fwd_bwd(self.work, &Y[0, 0], n, False, 0, 0, 0, NULL, NULL)
                ok = isfinite(value)
                if ok:
                    ok = self._update(kind, &ohyper[0], st, slots, t, snap)
                    if not ok:
                        self._rollback(plain, snap, st, slots)
        finally:
            if par:
                cbp_par_leave()
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

    cdef bint _matrix(self, Py_buffer* b, Py_ssize_t rows, Py_ssize_t cols):
        """A 2-D float64 buffer of the given shape (rows < 0: any rows)."""
        return not (b.ndim != 2 or b.itemsize != 8 or b.format == NULL or b.format[0] != b'd'
                    or b.format[1] != 0 or b.shape[1] != cols or b.shape[0] < 1
                    or (rows >= 0 and b.shape[0] != rows))

    cdef bint _usable(self, Py_buffer* b, Py_ssize_t rows, Py_ssize_t cols, bint unit):
        """A 2-D float64 buffer of the given shape (rows < 0: any), finite,
        and within [0, 1] when ``unit``."""
        return (self._matrix(b, rows, cols)
                and all_finite_k(<const double*>b.buf, b.shape[0] * cols, unit))

    cdef bint _labels(self, Py_buffer* b, Py_ssize_t rows):
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

    def train_step_sgd(self, X, Y, double lr):
        """Fast path of ``train_step`` with plain SGD.

        Takes X and Y only when they are already C-contiguous float64
        ndarrays of the right shapes, finite (and within [0, 1] for the
        cross-entropies), or, for categorical cross-entropy, Y int64 class
        labels in range, with lr finite and > 0.  Otherwise returns None
        having touched nothing, and the caller validates and converts; but
        an X that is not finite, with everything else in order, also drops
        the cached forward pass (X is checked as it is copied over that
        pass's input).
        """
        cdef Py_buffer xb, yb
        cdef bint got_x = False, got_y = False, ok, labels = False, par = False
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
            if not self._matrix(&xb, -1, self.n_in):
                return None
            labels = self.loss == LOSS_CCE and self._labels(&yb, xb.shape[0])
            if not (labels or self._usable(&yb, xb.shape[0], self.n_out,
                                           self.loss == LOSS_CCE or self.loss == LOSS_BCE)):
                return None
            n = xb.shape[0]
            self._layout(n)
            # X is checked as it is copied in, one pass over it; a value that
            # is not finite leaves no forward pass cached (its input is gone)
            if not copy_finite_k(<const double*>xb.buf, self.work, n * self.n_in):
                self.rows = 0
                return None
            yp = <const double*>yb.buf
            if labels:  # one-hot rows in the workspace's target block
                yp = self.work + self.y_off
                memset(self.work + self.y_off, 0, n * self.n_out * sizeof(double))
                for i in range(n):
                    self.work[self.y_off + i * self.n_out + (<const int64_t*>yb.buf)[i]] = 1.0
            snap = self._snap_buffer(0)
            par = self._par_prepare(n) > 1
            if par:
                cbp_par_enter()
            with nogil:
                value = self._fwd_bwd(self.work, yp, n, False, 0, 0, 0, NULL, NULL)
                ok = isfinite(value)
                if ok:
                    ok = self._sgd(lr, snap)
                    if not ok:
                        self._rollback(True, snap, NULL, 0)
            self.rows = n
        finally:
            if par:
                cbp_par_leave()
            PyBuffer_Release(&xb)
            PyBuffer_Release(&yb)
        if not ok:
            raise DivergenceError(
                f"training diverged: the loss is {value} or the update made a parameter "
                "NaN or infinite; the parameters were left at their last finite values")
        return value

    cdef bint _sgd(self, double lr, double* snap=NULL) noexcept nogil:
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

    cdef void _restore_segs(self, const double* snap) noexcept nogil:
        """The trainable segments back from snap."""
        cdef Py_ssize_t s, lo, hi
        for s in range(self.n_segs):
            lo = self.segs[2 * s]
            hi = self.segs[2 * s + 1]
            memcpy(self.params + lo, snap + lo, (hi - lo) * sizeof(double))

    cdef inline bint _plain_sgd(self, int kind, const double* oh) noexcept nogil:
        """Plain SGD: p -= lr * g, what ``_sgd`` computes."""
        return kind == OPT_SGD and oh[O_MOMENTUM] == 0.0 and oh[O_DECAY] == 0.0

    def evaluate(self, const double[:, ::1] X, const double[:, ::1] Y):
        """(loss, accuracy) on (X, Y), dropout off; accuracy is NaN for regression."""
        cdef Py_ssize_t n = X.shape[0], seen = 0, hit
        _check(n > 0 and X.shape[1] == self.n_in and Y.shape[0] == n
               and Y.shape[1] == self.n_out, "Engine: X or Y has the wrong shape")
        cdef double[::1] buf = np.empty(2 * n * self.width, dtype=np.float64)
        cdef double value
        cdef double* out
        with nogil:
            out = self._infer(&X[0, 0], n, &buf[0])
            value = loss_value_k(self.loss, out, &Y[0, 0], n, self.n_out, self.reduction, n)
            value += self._penalties()
            hit = correct_k(self.loss, out, &Y[0, 0], n, self.n_out, &seen)
        return value, (hit / <double>seen if seen else float("nan"))

    def fit(self, const double[:, ::1] X, const double[:, ::1] Y, Xv_, Yv_, int kind,
            const double[::1] ohyper, double[::1] state, double t, Py_ssize_t epoch0,
            Py_ssize_t n_epochs, Py_ssize_t batch_size, bint shuffle, uint64_t seed,
            double[::1] es, double[::1] best, double[:, ::1] hist, long long[::1] progress,
            double report_seconds):
        """Train for up to n_epochs epochs, numbered from epoch0; see the twin."""
        cdef Py_ssize_t n = X.shape[0], bs = min(batch_size, n)
        _check(n > 0 and bs > 0 and X.shape[1] == self.n_in and Y.shape[0] == n
               and Y.shape[1] == self.n_out, "Engine: X or Y has the wrong shape")
        _check(hist.shape[0] >= n_epochs and hist.shape[1] == 4 and es.shape[0] == 6
               and best.shape[0] == self.n_params and progress.shape[0] >= 2,
               "Engine: bad fit buffers")
        progress[0] = 0
        progress[1] = 0
        cdef const double[:, ::1] Xv
        cdef const double[:, ::1] Yv
        cdef Py_ssize_t nv = 0
        if Xv_ is not None:
            Xv = Xv_
            Yv = Yv_
            nv = Xv.shape[0]
            _check(nv > 0 and Xv.shape[1] == self.n_in and Yv.shape[0] == nv
                   and Yv.shape[1] == self.n_out, "Engine: validation data has the wrong shape")
        cdef Py_ssize_t slots = self._slots(kind, ohyper, state)
        cdef double* snap = self._snap_buffer(slots)  # the epoch's start, for rollback
        cdef double* st = &state[0] if slots else NULL
        # plain SGD: the first step of an epoch saves the epoch's start in its
        # own pass, instead of a copy of every parameter before it
        cdef bint plain = self._plain_sgd(kind, &ohyper[0]), snapped = False
        self._layout(bs)
        cdef bint fm = self.ld > 0
        if not fm:  # room for the chunks of a full and of the last batch
            self._par_prepare(bs)
            if n % bs:
                self._par_prepare(n % bs)
        order_arr = np.empty(n, dtype=np.int64)
        cdef long long[::1] order = order_arr
        cdef KeyIdx* keys = <KeyIdx*>PyMem_Malloc(n * sizeof(KeyIdx))
        if keys == NULL:
            raise MemoryError()
        cdef double[::1] vbuf = np.empty(2 * max(nv, 1) * self.width, dtype=np.float64)
        cdef Py_ssize_t k, row, r, nb, i, hit, seen, h_, s_, batches, steps = 0, steps0
        cdef Py_ssize_t done = n_epochs, status = FIT_DONE
        cdef uint64_t epoch
        cdef double total, value, cur
        cdef const double* out
        cdef double* xw
        cdef double* yw
        cdef bint ok
        # the clock: read every `stride` steps (see SIGNAL_SECONDS)
        cdef double start = cbp_monotonic(), last_read = start, last_signal = start, now
        cdef Py_ssize_t stride = 1, ticks = 0
        cdef bint interrupted = False, report_due = False
        cbp_par_enter()
        try:
            with nogil:
                for k in range(n_epochs):
                    epoch = epoch0 + k
                    if not plain:
                        self._snapshot_nogil(snap, st, slots)
                    snapped = False
                    steps0 = steps
                    if shuffle:
                        shuffle_order_k(seed, epoch, &order[0], keys, n)
                    total = 0.0
                    hit = 0
                    seen = 0
                    batches = 0
                    ok = True
                    row = 0
                    while row < n:
                        nb = min(bs, n - row)
                        if shuffle:  # gather the batch's rows
                            xw = self.work
                            yw = self.work + self.y_off
                            for r in range(nb):
                                memcpy(xw + r * self.n_in, &X[order[row + r], 0],
                                       self.n_in * sizeof(double))
                                memcpy(yw + r * self.n_out, &Y[order[row + r], 0],
                                       self.n_out * sizeof(double))
                        else:  # in order: the batch is a slice, read in place
                            xw = <double*>&X[row, 0]
                            yw = <double*>&Y[row, 0]
                        if fm:  # xT stays from epoch to epoch for an in-order full batch
                            out = self._forward_fm(xw, nb, shuffle or nb < n or k == 0)
                            value = self._backward_fm(yw, nb)
                            h_ = correct_k(self.loss, out, yw, nb, self.n_out, &s_)
                        else:
                            value = self._fwd_bwd(xw, yw, nb, True, seed, epoch, row, &h_,
                                                  &s_)
                        ok = isfinite(value)
                        if ok:
                            ok = self._update(kind, &ohyper[0], st, slots, t + steps,
                                              NULL if snapped else snap)
                            snapped = True
                        if not ok:
                            break
                        steps += 1
                        total += value
                        hit += h_
                        seen += s_
                        batches += 1
                        row += nb
                        ticks += 1
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
                                    interrupted = self._signal_raised()
                                if interrupted:
                                    ok = False
                                    break
                    if not ok:
                        if snapped or not plain:  # else nothing was applied
                            self._rollback(plain, snap, st, slots)
                        steps = steps0
                        done = k
                        status = FIT_DIVERGED
                        break
                    hist[k, 0] = total / batches
                    hist[k, 1] = hit / <double>seen if seen else NAN
                    if nv:
                        out = self._infer(&Xv[0, 0], nv, &vbuf[0])
                        hist[k, 2] = loss_value_k(self.loss, out, &Yv[0, 0], nv, self.n_out,
                                                  self.reduction, nv) + self._penalties()
                        h_ = correct_k(self.loss, out, &Yv[0, 0], nv, self.n_out, &s_)
                        hist[k, 3] = h_ / <double>s_ if s_ else NAN
                        if not isfinite(hist[k, 2]):  # a loss became infinite: diverged
                            self._rollback(plain, snap, st, slots)  # snapped
                            steps = steps0
                            done = k
                            status = FIT_DIVERGED
                            break
                    else:
                        hist[k, 2] = NAN
                        hist[k, 3] = NAN
                    if es[5] != 0.0:
                        cur = hist[k, 2] if nv else hist[k, 0]
                        if cur >= es[0] - es[4]:  # not below best - tol
                            es[1] += 1.0
                        else:
                            es[1] = 0.0
                        if cur < es[0]:
                            es[0] = cur
                            es[2] = <double>epoch
                            memcpy(&best[0], self.params, self.n_params * sizeof(double))
                        if es[1] >= es[3]:
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
                if not interrupted:
                    with gil:  # a signal that arrived since the last check
                        interrupted = self._signal_raised()
        finally:
            cbp_par_leave()
            PyMem_Free(keys)
        self.rows = 0
        if interrupted:
            exc, self._pending = self._pending, None
            raise exc
        return done, steps, status

    cdef bint _signal_raised(self) noexcept:
        """Run Python's pending signal handlers (with the GIL); True, and the
        exception kept in _pending, if one raised (KeyboardInterrupt)."""
        try:
            PyErr_CheckSignals()
        except BaseException as exc:
            self._pending = exc
            return True
        return False

    cdef void _snapshot_nogil(self, double* snap, const double* state,
                              Py_ssize_t slots) noexcept nogil:
        memcpy(snap, self.params, self.n_params * sizeof(double))
        if slots:
            memcpy(snap + self.n_params, state, slots * self.n_params * sizeof(double))
