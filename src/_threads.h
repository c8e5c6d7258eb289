/* Threads for cbp's native core: OpenMP when the build has it, one thread
 * otherwise (every function below then has its one-thread answer).
 *
 * cbp runs a training step over row chunks of the batch on several threads
 * only where it wins (see _plan in _engine_chunks.pxi), and never runs more
 * threads than OpenMP's limit for the calling thread, omp_get_max_threads()
 * (set by OMP_NUM_THREADS, or at run time by threadpoolctl), counting the
 * threads of every cbp training running at the time:
 *
 *   callers  the threads inside a cbp training call: every fit, whether it
 *            uses helpers or not, and every train_step that is chunked;
 *   extra    the OpenMP helper threads those calls are running.
 *
 * A step asks for helpers with cbp_threads_reserve() and gets at most
 * limit - callers - extra of them (possibly none: it then runs on its own
 * thread), so two trainings started from two Python threads on a 2-core
 * machine run one thread each instead of four between them.
 */
#ifndef CBP_THREADS_H
#define CBP_THREADS_H

#ifdef _OPENMP
#  include <omp.h>
#endif
#if defined(_MSC_VER) && !defined(__clang__)
#  include <intrin.h>
#endif

/* 1 if this build runs steps on several threads (it was built with OpenMP). */
static int cbp_threads_built(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* The thread limit for a region started from the calling thread (1 inside a
 * parallel region: cbp never nests). */
static int cbp_threads_limit(void)
{
#ifdef _OPENMP
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

static int cbp_threads_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Threads in the current team (it may have fewer than were asked for). */
static int cbp_threads_team(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* Wait for the whole team (an orphaned barrier: it binds to the parallel
 * region this is called from). */
static void cbp_threads_barrier(void)
{
#ifdef _OPENMP
#  pragma omp barrier
#endif
}

/* ---- the process-wide budget ------------------------------------------ */
#if defined(_MSC_VER) && !defined(__clang__)
typedef volatile long cbp_atomic;
#  define CBP_LOAD(p) _InterlockedOr((p), 0)
#  define CBP_ADD(p, v) _InterlockedExchangeAdd((p), (v))
/* 1 (and *p := want) if *p was *expect, else 0 and *expect := *p */
static int cbp_cas(cbp_atomic* p, long* expect, long want)
{
    long seen = _InterlockedCompareExchange(p, want, *expect);
    if (seen == *expect) return 1;
    *expect = seen;
    return 0;
}
#else
typedef long cbp_atomic;
#  define CBP_LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#  define CBP_ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
static int cbp_cas(cbp_atomic* p, long* expect, long want)
{
    return __atomic_compare_exchange_n(p, expect, want, 0, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST);
}
#endif

static cbp_atomic cbp_threads_callers = 0;
static cbp_atomic cbp_threads_extra = 0;

/* A training call starts (cbp_threads_enter) and ends (cbp_threads_leave) on this thread. */
static void cbp_threads_enter(void) { CBP_ADD(&cbp_threads_callers, 1); }
static void cbp_threads_leave(void) { CBP_ADD(&cbp_threads_callers, -1); }

/* Up to ``want`` helper threads, within ``limit`` threads in all; returns
 * how many were granted (0 to want).  Give them back with cbp_threads_release. */
static long cbp_threads_reserve(long want, long limit)
{
    long cur = CBP_LOAD(&cbp_threads_extra);
    for (;;) {
        long room = limit - CBP_LOAD(&cbp_threads_callers) - cur;
        long got = want < room ? want : room;
        if (got <= 0) return 0;
        if (cbp_cas(&cbp_threads_extra, &cur, cur + got)) return got;
    }
}

static void cbp_threads_release(long got)
{
    if (got > 0) CBP_ADD(&cbp_threads_extra, -got);
}

/* (callers, extra) now, for the tests */
static long cbp_threads_callers_now(void) { return CBP_LOAD(&cbp_threads_callers); }
static long cbp_threads_extra_now(void) { return CBP_LOAD(&cbp_threads_extra); }

#endif /* CBP_THREADS_H */
