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
 * machine run one thread each instead of four between them.  It asks for
 * none while the back-off at the end of this file pauses the teams, after
 * a step whose helpers came too late to win.
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

/* ---- backing off when the helpers come late ----------------------------
 * On a machine whose cores are busy with other work, a helper thread may
 * start its chunks long after the caller (it was asleep, or descheduled),
 * and the step then takes longer than the caller alone would have.  Each
 * step that ran on a team reports its time and the time the caller alone
 * would have taken (cbp_threads_report: its own chunks' time scaled to all the
 * chunks).  After a lost step, every chunked step in the process runs on
 * its own thread for a pause, which starts at CBP_PAUSE_MIN, doubles with
 * each lost step, up to CBP_PAUSE_MAX, and halves with each step the team
 * wins.  A step that took the team more than twice as long as the caller
 * alone had a helper that was not running at all (the cores are
 * oversubscribed: a pool of more processes than cores, say), and such a
 * probe costs a scheduler time slice: the pause then starts at
 * CBP_PAUSE_OVERSUBSCRIBED at least, so that probing stays a small share
 * of the time.  Only the number of threads that run the chunks changes, never the
 * chunks, so the results do not.  Times are in nanoseconds of
 * omp_get_wtime's clock, process-wide; concurrent reports may overwrite
 * each other, which only shortens or lengthens one pause.
 */
#define CBP_PAUSE_MIN 4000000LL     /* 4 ms */
#define CBP_PAUSE_MAX 1000000000LL  /* 1 s */
#define CBP_PAUSE_OVERSUBSCRIBED 256000000LL  /* 256 ms */

#if defined(_MSC_VER) && !defined(__clang__)
typedef volatile __int64 cbp_atomic64;
#  define CBP_LOAD64(p) _InterlockedOr64((p), 0)
#  define CBP_STORE64(p, v) _InterlockedExchange64((p), (v))
#  define CBP_ADD64(p, v) _InterlockedExchangeAdd64((p), (v))
#else
typedef long long cbp_atomic64;
#  define CBP_LOAD64(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#  define CBP_STORE64(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#  define CBP_ADD64(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#endif

static cbp_atomic64 cbp_threads_until = 0;              /* teams again from this time */
static cbp_atomic64 cbp_threads_pause = CBP_PAUSE_MIN;  /* the next pause */
static cbp_atomic64 cbp_threads_won = 0, cbp_threads_lost = 0;  /* team steps so far */
static cbp_atomic64 cbp_threads_backoff_on = 1;         /* 0: never pause (tests) */

/* Now, in ns (0 in a build without OpenMP: no team to time). */
static long long cbp_threads_now(void)
{
#ifdef _OPENMP
    return (long long)(omp_get_wtime() * 1e9);
#else
    return 0;
#endif
}

/* 1 if chunked steps run on one thread at time ``now`` (a pause). */
static int cbp_threads_paused(long long now)
{
    return now < CBP_LOAD64(&cbp_threads_until) && CBP_LOAD64(&cbp_threads_backoff_on);
}

/* A step ran on a team in ``team`` ns, ending at ``now``; its caller alone
 * would have taken ``alone``.  Returns 1 if the team lost (a pause began). */
static int cbp_threads_report(long long team, long long alone, long long now)
{
    long long pause = CBP_LOAD64(&cbp_threads_pause);
    if (team > alone) {
        if (team > 2 * alone && pause < CBP_PAUSE_OVERSUBSCRIBED)
            pause = CBP_PAUSE_OVERSUBSCRIBED;
        CBP_STORE64(&cbp_threads_until, now + pause);
        CBP_STORE64(&cbp_threads_pause, pause < CBP_PAUSE_MAX / 2 ? 2 * pause : CBP_PAUSE_MAX);
        CBP_ADD64(&cbp_threads_lost, 1);
        return 1;
    }
    CBP_STORE64(&cbp_threads_pause, pause > 2 * CBP_PAUSE_MIN ? pause / 2 : CBP_PAUSE_MIN);
    CBP_ADD64(&cbp_threads_won, 1);
    return 0;
}

/* The back-off state (for the tests and the benchmark): out[0..4] :=
 * until, pause, won, lost, on; then, with ``reset``, the state back to its
 * start; with ``on`` 0 or 1, the back-off off (no pauses) or on. */
static void cbp_threads_backoff_state(long long* out, int reset, int on)
{
    out[0] = CBP_LOAD64(&cbp_threads_until);
    out[1] = CBP_LOAD64(&cbp_threads_pause);
    out[2] = CBP_LOAD64(&cbp_threads_won);
    out[3] = CBP_LOAD64(&cbp_threads_lost);
    out[4] = CBP_LOAD64(&cbp_threads_backoff_on);
    if (on == 0 || on == 1)
        CBP_STORE64(&cbp_threads_backoff_on, on);
    if (reset) {
        CBP_STORE64(&cbp_threads_until, 0);
        CBP_STORE64(&cbp_threads_pause, CBP_PAUSE_MIN);
        CBP_STORE64(&cbp_threads_won, 0);
        CBP_STORE64(&cbp_threads_lost, 0);
    }
}

#endif /* CBP_THREADS_H */
