# Included by _core.pyx.  Threads and chunks: the thread budget of _threads.h,
# when a training step is computed in row chunks, and the fork handler.

cdef extern from "_threads.h" nogil:
    int cbp_threads_built()
    int cbp_threads_limit()
    int cbp_threads_id()
    int cbp_threads_team()
    void cbp_threads_barrier()
    void cbp_threads_enter()
    void cbp_threads_leave()
    long cbp_threads_reserve(long want, long limit)
    void cbp_threads_release(long got)
    long cbp_threads_callers_now()
    long cbp_threads_extra_now()
    long long cbp_threads_now()
    bint cbp_threads_paused(long long now)
    bint cbp_threads_report(long long team, long long alone, long long now)
    void cbp_threads_backoff_state(long long* out, int reset, int on)


# A training step is computed in row chunks that may run on several threads
# (_plan and _fwd_bwd in _engine_chunks.pxi) when the thread limit is 2 or more, no
# dense layer takes dgemm at the batch's size (BLAS has threads of its own),
# the step has at least _chunk_min_work multiply-adds (rows times the sum of
# n_in * n_out) and every chunk gets at least _chunk_min_rows rows.  From
# bench/crossover.py's fourth table (2 cores, full-batch steps of six small
# networks on 32 to 1024 rows, medians of 7): at and above these thresholds
# two threads beat one by 1.0-1.9x (median 1.3x); below 64 rows or about 10k
# multiply-adds they lose (0.4-0.95x), where OpenMP's region and barrier and
# the reduction of the chunks cost more than the half step they save; in
# between (128 rows, 11k-25k) they win or lose by little, and stay off.
cdef Py_ssize_t _chunk_min_rows = 64
cdef Py_ssize_t _chunk_min_work = 32768
cdef int _chunk_threads = 0            # threads for the chunks (0: OpenMP's limit)
cdef bint _threads_were_used = False  # chunks have run on several threads in this process
cdef bint _threads_off = False        # a fork's child of a process that had (see below)
cdef enum:
    CBP_MAX_CHUNKS = 64  # chunks of a step, at most


cdef inline int _thread_limit() noexcept nogil:
    """The thread limit of a step started from this thread: _chunk_threads if
    set, else OpenMP's (1 in a build without it)."""
    if _chunk_threads > 0:
        return _chunk_threads
    return cbp_threads_limit()


def _thread_config(threads=None, min_rows=None, min_work=None):
    """Read, and optionally set, when a training step is computed in row
    chunks that may run on several threads: one chunk per thread of the
    limit, each of at least ``min_rows`` rows, for steps of at least
    ``min_work`` multiply-adds.  The limit is OpenMP's for the calling
    thread (omp_get_max_threads) or, if ``threads`` > 0, that, even in a
    build without OpenMP (its chunks then run on one thread).  Returns the
    (threads, min_rows, min_work) in force before the call.  Private: for
    the benchmark and for tests that force either path.
    """
    global _chunk_threads, _chunk_min_rows, _chunk_min_work
    old = (_chunk_threads, _chunk_min_rows, _chunk_min_work)
    if threads is not None:
        _chunk_threads = min(max(<int>threads, 0), CBP_MAX_CHUNKS)
    if min_rows is not None:
        _chunk_min_rows = max(<Py_ssize_t>min_rows, 1)
    if min_work is not None:
        _chunk_min_work = max(<Py_ssize_t>min_work, 0)
    return old


def _thread_state():
    """{"built", "limit", "callers", "extra", "off"}: whether this build has
    OpenMP, the thread limit for a step started from this thread, the
    threads inside cbp training calls and the helper threads they run now,
    and whether threads are off in this process (a fork's child)."""
    return {"built": bool(cbp_threads_built()), "limit": cbp_threads_limit(),
            "callers": cbp_threads_callers_now(), "extra": cbp_threads_extra_now(),
            "off": bool(_threads_off)}


def _thread_backoff(reset=False, on=None):
    """{"until", "pause", "won", "lost", "on"} of the back-off of _threads.h
    (ns, the team steps won and lost so far, whether it pauses), as they were
    before the call; then, with ``reset``, the state back to its start, and
    with ``on``, the back-off on or off.  Private: for the tests and the
    benchmark."""
    cdef long long out[5]
    cbp_threads_backoff_state(out, 1 if reset else 0, -1 if on is None else (1 if on else 0))
    return dict(zip(("until", "pause", "won", "lost", "on"),
                    [out[i] for i in range(4)] + [bool(out[4])]))


def _thread_report(long long team, long long alone, long long now):
    """cbp_threads_report, for the tests of the back-off: True if a pause began."""
    return bool(cbp_threads_report(team, alone, now))


def _thread_paused(now=None):
    """Whether chunked steps run on one thread at ``now`` (ns; default: now)."""
    return bool(cbp_threads_paused(cbp_threads_now() if now is None else <long long>now))


def _thread_reserve(long want, long limit):
    """cbp_threads_reserve, for the tests of the budget: the helper threads granted."""
    return cbp_threads_reserve(want, limit)


def _thread_release(long got):
    cbp_threads_release(got)


def _thread_enter():
    cbp_threads_enter()


def _thread_leave():
    cbp_threads_leave()


def _after_fork_in_child():
    # GNU libgomp cannot start a team in the child of a process that had one
    # (it waits forever for threads the fork did not copy), so a child of a
    # process that trained on several threads trains on one.
    global _threads_off
    if _threads_were_used:
        _threads_off = True


import os as _os
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_after_fork_in_child)
del _os
