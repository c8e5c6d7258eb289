"""Default-thread training when the cores are shared.

For each case, three sets of processes train the same workload: one at the
default thread limit and two with ``OMP_NUM_THREADS=1``, taking turns
round by round (the order rotates); a round's time for a set is the
longest of its processes' ``fit`` times, the processes of a set starting
together at a barrier.  The table gives the median over the rounds of the
ratio default / one thread (above 1: the threads cost time) with its
quartiles, the two median times, and the control: the same ratio between
the two one-thread sets, which differ in nothing, so that its distance
from 1 is the bench's own noise in that case.

Cases:

* ``quiet``: one process (nothing else started by the bench);
* ``busy``: one process beside a busy one (a spinning Python process,
  started here and killed at the end);
* ``spawn N`` / ``forkserver N``: a pool of N processes of that start
  method, each training, on a machine of N cores or fewer.

Workloads: spiral, 300 x 2 -> 64 ReLU -> 3 softmax, full batch (300 rows
in 2 chunks on 2 threads), and the same network on 128 rows, just above
the chunking thresholds (128 rows, 40,960 multiply-adds), both on the
general passes (``_blk_epochs_path(False)``: the blocked whole-epoch run,
which fit takes for them otherwise, runs on one thread).

    python bench/contention.py [--quick] [--rounds R] [--scale S] [--cases busy spawn4 ...]
                               [--env NAME=VALUE ...]

``--env`` sets variables in every training process before cbp is imported
(``OMP_WAIT_POLICY=active`` to see what libgomp's spinning does), and
``--no-backoff`` switches off the back-off of ``src/_threads.h``.  BLAS is at
one thread (no layer here takes dgemm).
"""

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time

WORKLOADS = {  # name: (rows, epochs per timed fit)
    "spiral 300": (300, 1000),
    "128 rows": (128, 2000),
}
CASES = ("quiet", "busy", "spawn2", "spawn4", "forkserver2", "forkserver4")

_net = _data = _barrier = None


def _init(env, barrier, backoff):
    """Pool initializer: the environment, then cbp, then a warm-up fit."""
    global _barrier
    os.environ.update(env)
    _barrier = barrier
    import cbp  # (after the environment)

    if not backoff and hasattr(cbp._backend._core, "_thread_backoff"):
        cbp._backend._core._thread_backoff(on=False)
    if hasattr(cbp._backend._core, "_blk_epochs_path"):
        # the general passes, whose steps run in chunks on threads (the
        # blocked whole-epoch run, which takes spiral's fits, runs on one)
        cbp._backend._core._blk_epochs_path(False)
    _setup(next(iter(WORKLOADS)))


def _setup(workload):
    global _net, _data
    import cbp

    rows = WORKLOADS[workload][0]
    X, y = cbp.datasets.spiral_data(-(-rows // 3), 3)
    _data = X[:rows], y[:rows]
    _net = cbp.Network(
        [cbp.Dense(2, 64, "relu", seed=0), cbp.Dense(64, 3, "softmax", seed=1)],
        loss="categorical_crossentropy",
    )
    _net.fit(*_data, epochs=20, lr=1e-9)


def _task(args):
    workload, epochs = args
    if _data is None or len(_data[0]) != WORKLOADS[workload][0]:
        _setup(workload)
    _barrier.wait()
    t = time.perf_counter()
    _net.fit(*_data, epochs=epochs, lr=1e-9)
    return time.perf_counter() - t, _net._engine.threads_used


def _pool(ctx, n, env, backoff):
    barrier = ctx.Barrier(n)
    return ctx.Pool(n, initializer=_init, initargs=(env, barrier, backoff))


def measure(case, env, rounds, scale, backoff=True):
    """{workload: (ratios default / one thread (median, first and third
    quartiles), median default s, median one-thread s, threads used, control
    ratios (median, quartiles))}"""
    method = "forkserver" if case.startswith("forkserver") else "spawn"
    n = int(case[len(method) :]) if case[-1].isdigit() else 1
    ctx = mp.get_context(method)
    busy = None
    if case == "busy":
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    one = {**env, "OMP_NUM_THREADS": "1"}
    pools = [_pool(ctx, n, env, backoff), _pool(ctx, n, one, backoff), _pool(ctx, n, one, backoff)]
    out = {}
    try:
        for workload, (_rows, epochs) in WORKLOADS.items():
            job = [(workload, max(int(epochs * scale), 1))] * n
            for p in pools:  # the workload set up in every process
                p.map(_task, [(workload, 1)] * n, chunksize=1)
            times = [[], [], []]
            used = 0
            orders = ((0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1), (2, 1, 0), (1, 0, 2))
            for r in range(rounds):
                for i in orders[r % len(orders)]:
                    res = pools[i].map(_task, job, chunksize=1)
                    times[i].append(max(t for t, _ in res))
                    if i == 0:
                        used = max(used, max(u for _, u in res))
            out[workload] = (
                _quartiles([a / b for a, b in zip(times[0], times[1])]),
                statistics.median(times[0]),
                statistics.median(times[1]),
                used,
                _quartiles([a / b for a, b in zip(times[2], times[1])]),
            )
    finally:
        for p in pools:
            p.terminate()
            p.join()
        if busy is not None:
            busy.kill()
            busy.wait()
    return out


def _quartiles(values):
    """(median, first quartile, third quartile)"""
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q2, q1, q3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--scale", type=float, default=1.0, help="of the epochs of a timed fit")
    ap.add_argument("--quick", action="store_true", help="3 rounds of 1/5 the epochs")
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE")
    ap.add_argument(
        "--no-backoff",
        action="store_true",
        help="switch off the back-off of src/_threads.h in the training processes",
    )
    args = ap.parse_args(argv)
    env = dict(kv.split("=", 1) for kv in args.env)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    rounds, scale = (3, 0.2) if args.quick else (args.rounds, args.scale)
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; environment of "
        f"the training processes: {env}; back-off {'off' if args.no_backoff else 'on'}; "
        f"{rounds} rounds, epochs x {scale}"
    )
    print()
    print(
        "| case | workload | default / 1 thread (quartiles) | default ms | 1 thread ms "
        "| threads used | control: 1 thread / 1 thread (quartiles) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for case in args.cases:
        res = measure(case, env, rounds, scale, not args.no_backoff)
        for workload, (ratio, td, to, used, control) in res.items():
            print(
                f"| {case} | {workload} | {_fmt(ratio)} | {td * 1e3:.1f} | {to * 1e3:.1f} "
                f"| {used} | {_fmt(control)} |",
                flush=True,
            )


def _fmt(q):
    return f"{q[0]:.2f} ({q[1]:.2f}-{q[2]:.2f})"


if __name__ == "__main__":
    main()
