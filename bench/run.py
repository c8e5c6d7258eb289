#!/usr/bin/env python
"""cbp benchmark suite.

    python bench/run.py [--quick] [--out DIR] [--threads N] [--only NAME ...]

Times cbp (native core and NumPy backend) against the seed tutorials' NumPy
loops, PyTorch (float64) and scikit-learn, side by side in one process,
after checking that every peer computes the same parameters.  Writes
``results.md``, ``results.json`` and ``sweep.png`` to ``--out`` (default
``bench/results/``) and prints the markdown report.

Workloads (``--only``): xor, spiral, mnist, seed000, sweep (the sweep also
measures linear growth in epochs and samples), and jax, numba: the one-thread
comparison with JAX and numba on workloads A-D and a population of XOR
networks, which runs in a subprocess pinned to one CPU (``bench/pinned.py``)
without ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` in its environment (what
users get: their machines do not pin OpenBLAS's core type), workload C once
more with the environment as given when it sets either, and the
single-thread dgemm rate measured in two more subprocesses (both settings).
``--quick`` is a smoke test: every workload with tiny repeat counts, well
under a minute.
"""

import argparse
import importlib.util
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: --only names; workloads.TABLE_WORKLOADS holds all but "sweep" and the pinned
#: peers (NumPy must not be imported before _limit_blas_by_env, so the list is
#: repeated here).
ALL_NAMES = ("xor", "spiral", "mnist", "seed000", "sweep", "jax", "numba")
PINNED_NAMES = ("jax", "numba")
#: the variables with which a machine can pin OpenBLAS's kernel choice; the
#: "real" dgemm rate is measured without them
OPENBLAS_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="tiny repeat counts: a smoke test of every workload (< ~60 s)",
    )
    ap.add_argument("--out", default=str(HERE / "results"), help="output directory")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for every peer (torch also runs at its default)",
    )
    ap.add_argument(
        "--only",
        nargs="+",
        choices=ALL_NAMES,
        metavar="NAME",
        help=f"run only these workloads: {', '.join(ALL_NAMES)}",
    )
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    return args


def _limit_blas_by_env(threads):
    """Without threadpoolctl, the BLAS pools can only be limited before NumPy loads.

    Also, before any BLAS loads: OpenBLAS's idle worker threads sleep at once
    rather than spin.  The peers run interleaved, and a pool left spinning by
    a default-threads peer otherwise takes the second core from the
    one-thread peer after it (measured here: the one-thread MNIST step 20%
    slower in wall-clock time, twice its CPU time).
    """
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        for var in (
            "OPENBLAS_NUM_THREADS",
            "MKL_NUM_THREADS",
            "BLIS_NUM_THREADS",
            "VECLIB_MAXIMUM_THREADS",
        ):
            os.environ.setdefault(var, str(threads))
        return (
            "threadpoolctl is not installed: BLAS limited through OPENBLAS_NUM_THREADS & "
            "co. for the whole run (torch's default-threads row is still at its default)"
        )
    return None


def _pinned(script_args, env, timeout):
    """Run bench/pinned.py with script_args; (its JSON result, None) or (None, why not)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pinned.json"
        cmd = [sys.executable, str(HERE / "pinned.py"), "--out-json", str(out), *script_args]
        try:
            proc = subprocess.run(cmd, env=env, timeout=timeout, stdout=None, stderr=None)
        except subprocess.TimeoutExpired:
            return None, f"{shlex.join(cmd[1:])} took longer than {timeout} s"
        if proc.returncode != 0 or not out.exists():
            return None, f"{shlex.join(cmd[1:])} failed with status {proc.returncode}"
        return json.loads(out.read_text()), None


def run_pinned(names, quick, notes):
    """The JAX/numba comparison and the dgemm rates, each in a pinned subprocess.

    The comparison runs without the variables that pin OpenBLAS's core type
    (``OPENBLAS_PINS``), as on users' machines; where the environment sets
    one, workload C (the one on dgemm) runs again as given.  Returns
    {"pinned": results or None, "pinned_as_given": C's results or None,
    "dgemm": [as given, unpinned kernels]}; each run's results name its
    setting ("setting": "unset" or "as given")."""
    wanted = [n for n in PINNED_NAMES if n in names]
    missing = [n for n in wanted if importlib.util.find_spec(n) is None]
    for n in missing:
        notes.append(f"{n} is not installed: its peers are skipped (pip install 'cbp[peers]')")
    present = [n for n in wanted if n not in missing]
    result = {"pinned": None, "pinned_as_given": None, "dgemm": []}
    timeout = 600 if quick else 3600
    unpinned = {k: v for k, v in os.environ.items() if k not in OPENBLAS_PINS}
    pinned_here = any(k in os.environ for k in OPENBLAS_PINS)
    if present:
        print(
            f"[pinned] {', '.join(present)} beside cbp native, one thread, one CPU "
            f"(bench/pinned.py)",
            flush=True,
        )
        args = ["--peers", *present] + (["--quick"] if quick else [])
        data, why = _pinned(args, unpinned, timeout)
        if why:
            notes.append(f"the pinned JAX/numba run did not finish: {why}")
        elif data:
            data["setting"] = "unset"
        result["pinned"] = data
        if pinned_here:
            print("[pinned] workload C again, with OpenBLAS's core type as given", flush=True)
            data, why = _pinned(args + ["--only", "C"], dict(os.environ), timeout)
            if why:
                notes.append(f"the pinned run of C as given did not finish: {why}")
            elif data:
                data["setting"] = "as given"
            result["pinned_as_given"] = data
    # The dgemm rate, as the environment has it and without the variables that
    # pin OpenBLAS's core type, alternately (pairs of runs) on the same CPU.
    runs = {"as given": [], "unset": []}
    for _ in range(1 if quick else 2):
        for key, env in (("as given", dict(os.environ)), ("unset", unpinned)):
            data, why = _pinned(["--dgemm"] + (["--quick"] if quick else []), env, timeout)
            if why:
                notes.append(f"dgemm rate ({key}): {why}")
            elif data:
                runs[key].append(data)
    for key, got in runs.items():
        if got:
            result["dgemm"].append(
                {
                    **got[0],
                    "setting": key,
                    "runs": [d["gflops"] for d in got],
                    "gflops": statistics.median(d["gflops"] for d in got),
                    "gflops_cpu": statistics.median(d["gflops_cpu"] for d in got),
                }
            )
    return result


def main(argv=None):
    args = parse_args(argv)
    setup_notes = [n for n in [_limit_blas_by_env(args.threads)] if n]

    # Import the suite as the package ``bench``; append the repo root (not
    # prepend) so that the installed cbp, or PYTHONPATH, decides which cbp runs.
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))
    from bench import report
    from bench import workloads as W
    from bench.harness import Settings
    from bench.timing import torch

    assert set(W.TABLE_WORKLOADS) | {"sweep", *PINNED_NAMES} == set(ALL_NAMES)

    if torch is None:
        setup_notes.append(
            "torch is not installed: its peers are skipped (pip install torch==2.13.0)"
        )

    settings = Settings.make(args.quick, args.threads)
    names = args.only or ALL_NAMES
    command = shlex.join(["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    start_load = os.getloadavg() if hasattr(os, "getloadavg") else None

    workloads = []
    for name, funcs in W.TABLE_WORKLOADS.items():
        if name in names:
            for func in funcs:
                w = func(settings)
                for r in w["results"]:
                    r.extra["speedup_vs_seed"] = report.speedup(r, w["results"])
                    r.extra["speedup_vs_seed_cpu"] = report.speedup(r, w["results"], "cpu_seconds")
                workloads.append(w)

    compiled = None
    if any(n in names for n in PINNED_NAMES):
        compiled = run_pinned(names, args.quick, setup_notes)

    cells, linear, plotted = [], [], False
    if "sweep" in names:
        cells = W.run_sweep(settings)
        linear = W.run_linear_growth(settings)
        why = report.plot_sweep(cells, W.SWEEP_WIDTHS, W.SWEEP_BATCHES, out / "sweep.png")
        plotted = why is None
        if why:
            setup_notes.append(why)
            print(why)

    machine = report.machine_info(ROOT)
    machine["load_average_at_start"] = start_load
    md = report.render_markdown(
        machine,
        settings,
        command,
        workloads,
        cells,
        linear,
        W.SWEEP_WIDTHS,
        W.SWEEP_BATCHES,
        setup_notes,
        start_load,
        plotted,
        compiled,
    )
    md += f"\nTotal benchmark time: {time.perf_counter() - t0:.0f} s.\n"
    (out / "results.md").write_text(md)
    report.write_json(
        out / "results.json", machine, settings, command, workloads, cells, linear, compiled
    )
    print()
    print(md)
    print(
        f"wrote {out / 'results.md'}, {out / 'results.json'}"
        + (f", {out / 'sweep.png'}" if plotted else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
