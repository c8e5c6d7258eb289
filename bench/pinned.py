#!/usr/bin/env python
"""The one-thread comparison with JAX and numba, in a process pinned to one CPU.

    python bench/pinned.py --out-json FILE [--quick] [--peers jax numba] [--cpu N] [--only C ...]
    python bench/pinned.py --dgemm --out-json FILE [--quick] [--cpu N]

``bench/run.py`` starts this script as a subprocess; it can also be run by
hand.  Before anything else is imported it

- pins the process to one CPU (``os.sched_setaffinity``; default: the
  highest-numbered CPU the process may use): XLA's CPU client sizes its
  thread pools from the CPUs it can run on and ignores its thread flags
  otherwise;
- sets ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false
  intra_op_parallelism_threads=1`` (appended to any XLA_FLAGS given) and
  ``NUMBA_NUM_THREADS=1`` before jax or numba is imported;

and every peer then runs under threadpoolctl's one-thread limit.  It trains
cbp native, JAX (``jit`` over ``lax.fori_loop``) and numba (``@njit``) on the
workloads A-D and the XOR population, checks that every peer's parameters
agree with cbp's (rtol 1e-9) after a few epochs from the same initial
weights, times them side by side (interleaved rounds; compile time is left
out: the agreement run and the calibration come first) and writes the
results as JSON.

With ``--dgemm`` it only measures NumPy's single-thread 512^3 dgemm rate and
which OpenBLAS kernels threadpoolctl reports for NumPy's and SciPy's OpenBLAS
(cbp calls SciPy's): run.py runs that twice, once
with the environment it was given and once with ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE`` removed (the rate users get: their machines do not pin
the core type).
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
PEER_NAMES = ("jax", "numba")
WORKLOAD_NAMES = ("A", "overhead", "B", "C", "D", "population")
OPENBLAS_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-json", required=True, help="where to write the results")
    ap.add_argument("--quick", action="store_true", help="tiny repeat counts (smoke test)")
    ap.add_argument("--peers", nargs="+", choices=PEER_NAMES, default=list(PEER_NAMES))
    ap.add_argument("--cpu", type=int, default=None, help="the CPU to pin to")
    ap.add_argument("--dgemm", action="store_true", help="only measure the dgemm rate")
    ap.add_argument(
        "--only", nargs="+", choices=WORKLOAD_NAMES, default=None, help="only these workloads"
    )
    return ap.parse_args(argv)


def pin(cpu=None):
    """Pin this process to one CPU; returns the CPU, or None where the OS
    has no affinity call."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1] if cpu is None else cpu
    os.sched_setaffinity(0, {cpu})
    return cpu


def one_thread_env():
    flags = os.environ.get("XLA_FLAGS", "")
    if XLA_ONE_THREAD not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + XLA_ONE_THREAD).strip()
    os.environ["NUMBA_NUM_THREADS"] = "1"
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


# ---------------------------------------------------------------------------
# the workloads
# ---------------------------------------------------------------------------
def workloads(quick):
    """(name, title, unit, problem or population, make-peers, measure kwargs, flops)."""
    import numpy as np

    from bench import compiled as C
    from bench.peers import CbpPeer, Layer, Problem, train_step_flops
    from bench.workloads import SEED000_INIT, SEED000_LAYERS, spiral_data

    out = []
    xor = Problem(
        layers=(Layer(2, 4, "sigmoid", False, "uniform"), Layer(4, 1, "sigmoid", False, "uniform")),
        loss="half_squared_error",
        reduction="sum",
        X=np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64),
        y=np.array([[0], [1], [1], [0]], dtype=np.float64),
        lr=0.1,
    )
    epochs = 1_000 if quick else 10_000
    out.append(
        dict(
            name="A",
            title="A: XOR 2-4-1 sigmoid (tutorial 004), full batch, per epoch",
            unit="epoch",
            peers=lambda: [
                CbpPeer(xor, "native", "fit", 1),
                C.JaxPeer(xor),
                C.NumbaPeer(xor, "xor"),
            ],
            # in runs of 10,000 epochs: a run of a whole sample's 5,000,000
            # would return a 40 MB history, on fresh pages every call
            kw=dict(min_epochs=epochs, call_epochs=epochs),
            flops=None,
        )
    )

    out.append(
        dict(
            name="overhead",
            title="fit call overhead: a 1-epoch fit of the XOR net (A), per call",
            unit="call",
            peers=lambda: [
                C.PerCall(CbpPeer(xor, "native", "fit", 1)),
                C.PerCall(C.JaxPeer(xor)),
                C.PerCall(C.NumbaPeer(xor, "xor")),
            ],
            kw=dict(min_epochs=100 if quick else 1_000),
            flops=None,
        )
    )

    X, y, _source = spiral_data(100, 3)
    spiral = Problem(
        layers=(Layer(2, 64, "relu"), Layer(64, 3, "softmax")),
        loss="categorical_crossentropy",
        X=X,
        y=y,
        lr=1.0,
    )
    out.append(
        dict(
            name="B",
            title="B: spiral 300x2 -> 64 ReLU -> 3 softmax, full-batch SGD, per epoch",
            unit="epoch",
            peers=lambda: [
                CbpPeer(spiral, "native", "fit", 1),
                C.JaxPeer(spiral),
                C.NumbaPeer(spiral, "softmax"),
            ],
            kw={},
            flops=train_step_flops(spiral.layers, spiral.n_samples),
        )
    )

    rng = np.random.default_rng(0)
    mnist = Problem(
        layers=(Layer(784, 256, "relu"), Layer(256, 10, "softmax")),
        loss="categorical_crossentropy",
        X=rng.random((128, 784)),
        y=rng.integers(0, 10, 128),
        lr=0.01,
    )
    out.append(
        dict(
            name="C",
            title="C: MNIST-shaped 128x784 -> 256 -> 10, one step",
            unit="step",
            peers=lambda: [
                CbpPeer(mnist, "native", "train_step", 1),
                C.JaxPeer(mnist),
                C.NumbaPeer(mnist, "softmax"),
            ],
            kw={},
            flops=train_step_flops(mnist.layers, 128),
        )
    )

    n = 1_000
    x = np.random.default_rng(0).uniform(1.0, 4.0, (n, 1))
    seed000 = Problem(
        layers=SEED000_LAYERS,
        loss="half_squared_error",
        X=x,
        y=x.copy(),
        lr=0.01,
        batch_size=1,
        init=SEED000_INIT,
    )
    out.append(
        dict(
            name="D",
            title=f"D: tutorial 000's 1-1-1 ReLU net, per-sample SGD over {n} samples, per sample",
            unit="sample",
            peers=lambda: [
                CbpPeer(seed000, "native", "fit", 1),
                C.JaxPeer(seed000),
                C.NumbaPeer(seed000, "scalar"),
            ],
            kw=dict(per_unit=1.0 / n, check_epochs=1),
            flops=None,
        )
    )

    count, pop_epochs = (16, 1_000) if quick else (256, 10_000)
    population = C.Population(xor, count)
    out.append(
        dict(
            name="population",
            title=f"{count} XOR networks x {pop_epochs} epochs (different initial "
            f"weights), per network-epoch",
            unit="network-epoch",
            peers=lambda: [
                C.CbpManyPeer(population),
                C.CbpPopulationPeer(population),
                C.JaxPopulationPeer(population),
                C.NumbaPopulationPeer(population),
            ],
            kw=dict(min_epochs=pop_epochs, call_epochs=pop_epochs, per_unit=1.0 / count),
            flops=None,
            networks=count,
            epochs=pop_epochs,
        )
    )
    return out


def ratios(results):
    """peer time / cbp time per round, for every timed peer: the median and
    all the rounds (measure_peers interleaves the peers, so round k of every
    peer ran side by side)."""
    ref = next((r for r in results if r.family == "cbp" and r.timing is not None), None)
    out = {}
    for r in results:
        if ref is None or r is ref or r.timing is None:
            continue
        a, b = r.timing.per_unit, ref.timing.per_unit
        scale = r.per_unit / ref.per_unit
        rounds = [x / y * scale for x, y in zip(a, b)]
        out[r.family] = {"median": statistics.median(rounds) if rounds else None, "rounds": rounds}
    return out


def run_peers(args):
    from bench import compiled as C
    from bench.harness import Settings, family_of, measure_peers

    s = Settings.make(args.quick, 1)
    if not args.quick:
        s.repeats = 9
    keep = {"cbp", "cbp-one-by-one", *args.peers}
    result = {
        "settings": s.__dict__,
        "jax": C.jax_version(),
        "numba": C.numba_version(),
        "env": {k: os.environ.get(k) for k in OPENBLAS_PINS},
        "workloads": [],
    }
    for w in workloads(args.quick):
        if args.only and w["name"] not in args.only:
            continue
        print(f"[pinned {w['name']}] {w['title']}", flush=True)
        peers = [p for p in w["peers"]() if family_of(p) in keep]
        res = measure_peers(w["name"], peers, s, unit=w["unit"], **w["kw"])
        entry = {k: w[k] for k in ("name", "title", "unit", "flops")}
        entry.update({k: w[k] for k in ("networks", "epochs") if k in w})
        entry["results"] = [r.as_dict() for r in res]
        entry["ratios"] = ratios(res)
        result["workloads"].append(entry)
    if not args.only or "population" in args.only:
        result["population_scaling"] = population_scaling(args, s, keep)
    return result


def population_scaling(args, s, keep):
    """cbp.fit_many, the one-by-one fits and JAX's vmap against the number
    of XOR networks: [{networks, epochs, results, ratios}] (the issue's
    "show the scaling with the number of networks")."""
    from bench import compiled as C
    from bench.harness import family_of, measure_peers

    pop = next(w for w in workloads(args.quick) if w["name"] == "population")
    xor = pop["peers"]()[0].population.problem
    counts, epochs = ((1, 8, 32), 200) if args.quick else ((1, 4, 8, 16, 64, 256, 1024), 2_000)
    out = []
    for count in counts:
        print(f"[pinned population scaling] {count} XOR networks x {epochs} epochs", flush=True)
        population = C.Population(xor, count)
        peers = [
            C.CbpManyPeer(population),
            C.CbpPopulationPeer(population),
            C.JaxPopulationPeer(population),
        ]
        peers = [p for p in peers if family_of(p) in keep]
        res = measure_peers(
            f"population-{count}", peers, s, unit="network-epoch", min_epochs=epochs,
            call_epochs=epochs, per_unit=1.0 / count,
        )  # fmt: skip
        out.append(
            dict(
                networks=count,
                epochs=epochs,
                results=[r.as_dict() for r in res],
                ratios=ratios(res),
            )
        )
    return out


def run_dgemm(args, size=512):
    import numpy as np
    import scipy.linalg  # noqa: F401 (loads SciPy's OpenBLAS, cbp's BLAS, for the report)
    from threadpoolctl import threadpool_info, threadpool_limits

    from bench.timing import autotimeit

    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((size, size)), rng.standard_normal((size, size))
    Cm = np.empty_like(A)

    def run(n):
        for _ in range(n):
            np.matmul(A, B, out=Cm)

    with threadpool_limits(limits=1):
        t = autotimeit(run, target=0.02 if args.quick else 0.2, repeats=3 if args.quick else 9)
    flops = 2 * size**3
    pools = [
        {k: p.get(k) for k in ("internal_api", "version", "architecture", "filepath")}
        for p in threadpool_info()
        if p.get("user_api") == "blas"
    ]
    return {
        "gflops": flops / t.median / 1e9,
        "gflops_cpu": flops / t.cpu_median / 1e9,
        "size": size,
        "blas": pools,
        "env": {k: os.environ.get(k) for k in OPENBLAS_PINS},
    }


def main(argv=None):
    args = parse_args(argv)
    cpu = pin(args.cpu)
    one_thread_env()
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))
    t0 = time.perf_counter()
    result = run_dgemm(args) if args.dgemm else run_peers(args)
    result.update(cpu=cpu, xla_flags=os.environ.get("XLA_FLAGS"), seconds=time.perf_counter() - t0)
    Path(args.out_json).write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
