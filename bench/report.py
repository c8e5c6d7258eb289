"""Machine information, the markdown report, results.json and sweep.png."""

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from .harness import fmt_time, speedup

SLOW_SPREAD = 0.25  # repeats further apart than this are flagged as noisy


# ---------------------------------------------------------------------------
# machine
# ---------------------------------------------------------------------------
def _cpuinfo():
    model, cores = None, set()
    phys = core = None
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or None, None
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name" and model is None:
            model = value
        elif key == "physical id":
            phys = value
        elif key == "core id":
            core = value
        elif not key and phys is not None and core is not None:
            cores.add((phys, core))
            phys = core = None
    return model, (len(cores) or None)


def _version(module):
    try:
        return __import__(module).__version__
    except Exception:
        return None


def _git(root):
    def run(*args):
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        return {
            "commit": run("rev-parse", "HEAD") or None,
            "modified_files": len(
                run("status", "--porcelain", "--untracked-files=no").splitlines()
            ),
        }
    except Exception:
        return None


def _core_build(cbp):
    """Which build of the native core ran: file, size and modification time."""
    core = getattr(getattr(cbp, "_backend", None), "_core", None)
    path = getattr(core, "__file__", None)
    if not path:
        return None
    st = os.stat(path)
    mtime = datetime.datetime.fromtimestamp(st.st_mtime).astimezone()
    return {"file": path, "bytes": st.st_size, "modified": mtime.isoformat(timespec="seconds")}


def _simd_level(cbp):
    """The kernel table of src/_simd.h in force (None without the core)."""
    try:
        return cbp._backend._core._simd()
    except Exception:
        return None


def machine_info(root):
    import cbp

    model, physical = _cpuinfo()
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": model,
        "physical_cores": physical,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "load_average_1_5_15min": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": _version("torch"),
        "sklearn": _version("sklearn"),
        "threadpoolctl": _version("threadpoolctl"),
        "matplotlib": _version("matplotlib"),
        "cbp": getattr(cbp, "__version__", None),
        "cbp_file": cbp.__file__,
        "cbp_native_available": cbp.native_available(),
        "cbp_core": _core_build(cbp),
        "git": _git(root),
        "cbp_simd": _simd_level(cbp),
        "cbp_openmp": bool(getattr(cbp, "openmp_available", lambda: False)()),
        "env": {
            k: os.environ[k]
            for k in sorted(os.environ)
            if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "CBP_"))
        },
    }
    try:
        from threadpoolctl import threadpool_info

        info["thread_pools"] = [
            {
                k: p.get(k)
                for k in ("user_api", "internal_api", "version", "architecture", "num_threads")
            }
            | {"lib": os.path.basename(p["filepath"])}
            for p in threadpool_info()
        ]
    except ImportError:
        info["thread_pools"] = None
    return info


# ---------------------------------------------------------------------------
# main table
# ---------------------------------------------------------------------------
def _fmt_speed(x):
    return "—" if x is None else f"{x:.3g}×"


def main_table(workloads):
    lines = [
        "| Workload | Peer | Threads | Median time | Speed-up vs seed NumPy | CPU time | "
        "Speed-up (CPU) | Spread | Agreement |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for w in workloads:
        res = w["results"]
        for r in res:
            if r.status == "ok":
                time = f"{fmt_time(r.seconds)}/{r.unit}"
                cpu = fmt_time(r.cpu_seconds)
                spread = f"{r.timing.spread:.0%}"
            else:
                time, cpu, spread = r.status, "—", "—"
            agreement = r.agreement if r.status != "skipped" else f"skipped ({r.note})"
            lines.append(
                f"| {w['name']} | {r.peer} | {r.threads} | {time} | "
                f"{_fmt_speed(speedup(r, res))} | {cpu} | "
                f"{_fmt_speed(speedup(r, res, 'cpu_seconds'))} | {spread} | "
                f"{agreement} |"
            )
    return "\n".join(lines)


def contention(workloads, cells):
    """Median of wall / CPU time over the single-thread rows: 1.0 on an idle
    machine, higher when other processes took the CPU from this one."""
    rows = [r for w in workloads for r in w["results"]] + [r for c in cells for r in c["results"]]
    ratios = [
        r.seconds / r.cpu_seconds for r in rows if r.seconds and r.cpu_seconds and r.threads == "1"
    ]
    return float(np.median(ratios)) if ratios else None


def _mnist_section(w):
    x = w["extra"]
    lines = [
        f"### {w['title']}: throughput",
        "",
        f"FLOPs per step, counted from the shapes (forward X@W, backward X.T@dZ, and dZ@W.T "
        f"in every layer but the first): **{x['flops_per_step'] / 1e6:.1f} MFLOP**.  "
        f"NumPy dgemm {x['dgemm_size']}³ at {x['dgemm_threads']} thread(s) on this machine: "
        f"**{x['dgemm_gflops']:.1f} GFLOP/s** by wall-clock, "
        f"{x['dgemm_gflops_cpu']:.1f} GFLOP/s by CPU time.",
        "",
        "| Peer | Threads | Time/step | GFLOP/s | % of 1-thread dgemm | CPU time/step | "
        "GFLOP/s (CPU time) | % of dgemm (CPU time) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in w["results"]:
        if "gflops" in r.extra:
            cpu_gf = x["flops_per_step"] / r.cpu_seconds / 1e9
            lines.append(
                f"| {r.peer} | {r.threads} | {fmt_time(r.seconds)} | "
                f"{r.extra['gflops']:.2f} | "
                f"{100 * r.extra['gflops'] / x['dgemm_gflops']:.0f}% | "
                f"{fmt_time(r.cpu_seconds)} | {cpu_gf:.2f} | "
                f"{100 * cpu_gf / x['dgemm_gflops_cpu']:.0f}% |"
            )
    return "\n".join(lines)


def _online_section(w):
    lines = [
        f"### {w['title']}: throughput",
        "",
        "| Peer | Threads | Time/step | Steps/s | Steps per CPU second |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in w["results"]:
        if "steps_per_s" in r.extra:
            lines.append(
                f"| {r.peer} | {r.threads} | {fmt_time(r.seconds)} | "
                f"{r.extra['steps_per_s']:,.0f} | {1 / r.cpu_seconds:,.0f} |"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# JAX and numba, pinned to one CPU (bench/pinned.py)
# ---------------------------------------------------------------------------
def _pinned_time(r):
    return fmt_time(r["median_s"]) if r.get("status") == "ok" and r.get("median_s") else "—"


def _pinned_cell(w, family):
    """'time (ratio×)' of one peer family in one pinned workload, or its status."""
    r = next((r for r in w["results"] if r["family"] == family), None)
    if r is None:
        return "not run", "—", "—"
    if r["status"] != "ok":
        return f"{r['status']} ({r['note']})" if r["note"] else r["status"], "—", r["agreement"]
    ratio = (w["ratios"].get(family) or {}).get("median")
    return _pinned_time(r), _fmt_speed(ratio), r["agreement"]


def _blas_owner(pool):
    """Which package ships a BLAS library: "NumPy", "SciPy" or its file name."""
    path = pool.get("filepath") or ""
    for pkg, name in (
        ("numpy.libs", "NumPy"),
        ("scipy.libs", "SciPy"),
        ("numpy", "NumPy"),
        ("scipy", "SciPy"),
    ):
        if f"/{pkg}/" in path:
            return name
    return os.path.basename(path) or "?"


def pinned_runs(compiled):
    """The pinned runs of a bench result: the comparison (OpenBLAS's core
    type unset) and, where the environment pinned it, C as given."""
    return [d for d in (compiled.get("pinned"), compiled.get("pinned_as_given")) if d]


def dgemm_floor(compiled):
    """{workload: {setting: (floor seconds, cbp's share, cbp's share by CPU time)}}
    for the pinned workloads that count their flops, each run's cbp time at
    the dgemm rate measured under that run's setting ("unset" or "as
    given").  The share is floor / cbp time; by CPU time, both the rate and
    cbp's time are process CPU times, which do not grow while another process
    holds the CPU (the rate and cbp's time are measured at different
    moments)."""
    out = {}
    rates = {d["setting"]: (d["gflops"], d.get("gflops_cpu")) for d in compiled.get("dgemm") or []}
    for run in pinned_runs(compiled):
        if run.get("setting") not in rates:
            continue
        g, g_cpu = rates[run["setting"]]
        for w in run.get("workloads", []):
            cbp = next(
                (r for r in w["results"] if r["family"] == "cbp" and r.get("median_s")), None
            )
            if not w.get("flops") or cbp is None:
                continue
            floor = w["flops"] / (g * 1e9)
            cpu = (
                w["flops"] / (g_cpu * 1e9) / cbp["cpu_median_s"]
                if g_cpu and cbp.get("cpu_median_s")
                else None
            )
            out.setdefault(w["name"], {})[run["setting"]] = (floor, floor / cbp["median_s"], cpu)
    return out


def _setting_text(data, given):
    """What the pinned runs' environments held of OpenBLAS's core-type pins."""
    if data.get("setting") != "unset":
        return "OpenBLAS's core type: as the environment gave it."
    text = (
        "The run's environment has `OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE` removed, so "
        "that OpenBLAS (cbp calls SciPy's; numba's `np.dot` NumPy's) picks its kernels for "
        "the CPU it finds, as on users' machines, which do not pin them; only this "
        "benchmark unsets them, tests and CI never do."
    )
    if given:
        text += (
            "  The environment it was given pins them, so workload C, the one on dgemm, "
            'ran once more as given: the rows marked "as given".'
        )
    return text


def compiled_section(compiled):
    """The markdown of the JAX/numba comparison and the dgemm rates."""
    data, given = compiled.get("pinned"), compiled.get("pinned_as_given")
    lines = ["## JAX and numba, one thread, one CPU", ""]
    if data:
        s = data["settings"]
        lines += [
            f"Run by `bench/pinned.py` in a subprocess pinned to CPU {data['cpu']} "
            f"(`os.sched_setaffinity`), `XLA_FLAGS={data['xla_flags']}` and "
            f"`NUMBA_NUM_THREADS=1` set before jax and numba are imported, threadpoolctl's "
            f"one-thread limit for BLAS/OpenMP; JAX {data['jax'] or 'not installed'}, numba "
            f"{data['numba'] or 'not installed'}, float64 throughout.  Every peer trains from "
            f"cbp's initial weights and must agree with cbp native (rtol 1e-9) before it is "
            f"timed; the agreement run and the calibration come first, so JIT compilation is not "
            f"timed.  Ratio = peer time / cbp time (> 1: cbp is faster), the median over "
            f"{s['repeats']} interleaved rounds of the ratio within each round.  The machine is "
            f"shared: absolute times are only indicative, the side-by-side ratios are what "
            f"this measures.  " + _setting_text(data, given),
            "",
            "| Workload | cbp native | JAX | JAX / cbp | numba | numba / cbp | Agreement "
            "(JAX; numba) |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        rows = [(w, "") for w in data["workloads"]]
        if given:
            env = given.get("env") or {}
            pins = ", ".join(f"{k}={v}" for k, v in env.items() if v) or "none"
            rows += [(w, f" (OpenBLAS as given: {pins})") for w in given["workloads"]]
        for w, label in rows:
            cbp = next((r for r in w["results"] if r["family"] == "cbp"), None)
            jt, jr, ja = _pinned_cell(w, "jax")
            nt, nr, na = _pinned_cell(w, "numba")
            cbp_t = _pinned_time(cbp) if cbp else "—"
            lines.append(
                f"| {w['title']}{label} | {cbp_t} | {jt} | {jr} | {nt} | {nr} | {ja}; {na} |"
            )
        behind = [
            f"{w['name']}{label}: {fam} takes {1 / ratio:.3g}× less time than cbp native"
            for w, label in rows
            for fam, got in w["ratios"].items()
            if (ratio := got.get("median")) and ratio < 1
        ]
        if behind:
            lines += ["", "**Where cbp is behind**: " + "; ".join(behind) + "."]
        pop = next((w for w in data["workloads"] if w["name"] == "population"), None)
        if pop:
            whole = [
                f"{r['peer']} {fmt_time(r['median_s'] * pop['networks'] * pop['epochs'])}"
                for r in pop["results"]
                if r.get("median_s")
            ]
            lines += [
                "",
                f"The population ({pop['networks']} networks × {pop['epochs']} epochs) "
                f"in all: " + ", ".join(whole) + ".  cbp's row is `cbp.fit_many`, which "
                "trains the networks together in SIMD lanes at one thread here; "
                "`cbp-one-by-one` fits them one after another; JAX runs them as one `vmap`.  "
                f"Every peer is timed in calls of {pop['epochs']} epochs, repeated to fill "
                "a sample (one longer call would allocate longer histories)."
                + (
                    f"  The one-by-one fits take {one:.2f}× the time of `fit_many`."
                    if (one := (pop["ratios"].get("cbp-one-by-one") or {}).get("median"))
                    else ""
                ),
            ]
        scaling = data.get("population_scaling") or []
        if scaling:
            lines += [
                "",
                f"Against the number of networks ({scaling[0]['epochs']} epochs each, "
                "time per network-epoch; ratios are the other's time / `fit_many`'s):",
                "",
                "| Networks | cbp.fit_many | one by one | ratio | JAX vmap | ratio |",
                "|---:|---:|---:|---:|---:|---:|",
            ]
            for row in scaling:
                cells = {r["family"]: r for r in row["results"]}

                def cell(family, row=row, cells=cells):
                    r = cells.get(family)
                    t = fmt_time(r["median_s"]) if r and r.get("median_s") else "—"
                    ratio = (row["ratios"].get(family) or {}).get("median")
                    return t, f"{ratio:.2f}×" if ratio else "—"

                many_t = cell("cbp")[0]
                one_t, one_r = cell("cbp-one-by-one")
                jax_t, jax_r = cell("jax")
                lines.append(
                    f"| {row['networks']} | {many_t} | {one_t} | {one_r} | {jax_t} | {jax_r} |"
                )
    else:
        lines += ["Not run (see the notes)."]
    dg = compiled.get("dgemm") or []
    if dg:
        lines += [
            "",
            "### The single-thread dgemm rate and the floor",
            "",
            "NumPy's 512³ dgemm at one thread on the pinned CPU, each setting in its own "
            "subprocess (alternately, the median of its runs): the environment as the "
            "bench was given it, and with `OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE` "
            "unset, so that OpenBLAS picks its kernels for the CPU it finds.  Users' "
            "machines do not pin the core type; the second rate is what they get.  Only "
            "this benchmark unsets them; tests and CI never do.",
            "",
            "| Setting | OPENBLAS_CORETYPE | OPENBLAS_L2_SIZE | GFLOP/s | GFLOP/s (CPU "
            "time) | Runs | BLAS kernels (threadpoolctl internal_api, version, "
            "architecture; cbp calls SciPy's) |",
            "|---|---|---|---:|---:|---|---|",
        ]
        for d in dg:
            kern = (
                "; ".join(
                    f"{_blas_owner(b)}: {b.get('internal_api')} {b.get('version')}, "
                    f"{b.get('architecture')}"
                    for b in d.get("blas") or []
                )
                or "?"
            )
            env = d.get("env") or {}
            lines.append(
                f"| {d['setting']} | {env.get('OPENBLAS_CORETYPE') or 'unset'} | "
                f"{env.get('OPENBLAS_L2_SIZE') or 'unset'} | {d['gflops']:.1f} | "
                f"{d['gflops_cpu']:.1f} | "
                f"{', '.join(f'{g:.1f}' for g in d['runs'])} | {kern} |"
            )
        floors = dgemm_floor(compiled)
        if floors:
            lines += [
                "",
                "The floor of a workload is the time its matrix products take at "
                "the dgemm rate (the FLOPs of X@W, X.T@dZ and dZ@W.T, as in the MNIST "
                "section) at the rate of the setting cbp's time was taken under; cbp's "
                "share is floor / cbp time (100%: cbp runs at dgemm "
                "speed), by wall-clock time and, in parentheses, by CPU time (the rate "
                "and cbp's time are taken at different moments, so on a busy machine "
                "the CPU-time share is the one to read).",
                "",
                "| Workload | MFLOP | "
                + " | ".join(f"floor ({d['setting']}) | cbp's share (CPU time)" for d in dg)
                + " |",
                "|---|---:|" + "---:|---:|" * len(dg),
            ]
            runs = pinned_runs(compiled)
            for name, by in floors.items():
                w = next(w for run in runs for w in run["workloads"] if w["name"] == name)
                cells = []
                for d in dg:
                    if d["setting"] in by:
                        floor, share, cpu = by[d["setting"]]
                        cpu = "—" if cpu is None else f"{100 * cpu:.0f}%"
                        cells.append(f"{fmt_time(floor)} | {100 * share:.0f}% ({cpu})")
                    else:
                        cells.append("— | —")
                lines.append(f"| {name} | {w['flops'] / 1e6:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# sweep
# ---------------------------------------------------------------------------
def sweep_tables(cells, widths, batches):
    by = {(c["width"], c["batch"]): c for c in cells}
    lines = [
        "| Batch | Width | cbp native fit /step | seed NumPy /step | Speed-up | "
        "cbp CPU /step | seed CPU /step | Speed-up (CPU) | cbp GFLOP/s | Agreement |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in cells:
        cbp_r, seed_r = c["results"]
        gf = f"{c['flops'] / cbp_r.seconds / 1e9:.2f}" if cbp_r.seconds else "—"
        lines.append(
            f"| {c['batch']} | {c['width']} | {fmt_time(cbp_r.seconds)} | "
            f"{fmt_time(seed_r.seconds)} | {_fmt_speed(c['speedup'])} | "
            f"{fmt_time(cbp_r.cpu_seconds)} | {fmt_time(seed_r.cpu_seconds)} | "
            f"{_fmt_speed(c['speedup_cpu'])} | {gf} | {seed_r.agreement} |"
        )
    pivot = [
        "Speed-up of cbp native over seed-style NumPy (>1: cbp faster), by wall-clock "
        "time (by CPU time in parentheses):",
        "",
        "| batch \\ width | " + " | ".join(map(str, widths)) + " |",
        "|---:|" + "---:|" * len(widths),
    ]
    for b in batches:
        row = [
            f"{_fmt_speed(by[(w, b)]['speedup'])} ({_fmt_speed(by[(w, b)]['speedup_cpu'])})"
            if (w, b) in by
            else "—"
            for w in widths
        ]
        pivot.append(f"| {b} | " + " | ".join(row) + " |")
    return "\n".join(pivot) + "\n\n" + "\n".join(lines)


def linear_table(rows):
    if not rows:
        return ""
    r0 = rows[0]
    lines = [
        f"One `fit`-style training call ({32}-{r0['width']}-10 net, batches of "
        f"{r0['batch_size']}), E = {r0['E']} epochs, N = {r0['N']} samples.  Linear growth "
        f"means both ratios are close to 2.",
        "",
        "Ratios by wall-clock time, by CPU time in parentheses.",
        "",
        "| Peer | T(N, E) | T(N, 2E) | T(N, 2E) / T(N, E) | T(2N, E) | T(2N, E) / T(N, E) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        t = r["times"]
        if "epochs_ratio" in r:
            lines.append(
                f"| {r['peer']} | {fmt_time(t['N,E'])} | {fmt_time(t['N,2E'])} | "
                f"{r['epochs_ratio']:.3f} ({r['epochs_ratio_cpu']:.3f}) | "
                f"{fmt_time(t['2N,E'])} | "
                f"{r['samples_ratio']:.3f} ({r['samples_ratio_cpu']:.3f}) |"
            )
        else:
            lines.append(f"| {r['peer']} | {r['status']} | | | | |")
    return "\n".join(lines)


def plot_sweep(cells, widths, batches, path):
    """time/step vs width, one panel per batch size, cbp native and seed NumPy."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: sweep.png not written"
    fig, axes = plt.subplots(1, len(batches), figsize=(4 * len(batches), 3.6), sharey=True)
    for ax, b in zip(np.atleast_1d(axes), batches):
        for i, (label, color, marker) in enumerate(
            (("cbp native fit", "C0", "o"), ("seed-style NumPy", "C1", "s"))
        ):
            rows = [
                (c["width"], c["results"][i])
                for c in cells
                if c["batch"] == b and c["results"][i].seconds
            ]
            if not rows:
                continue
            x = [w for w, _ in rows]
            ax.loglog(
                x,
                [r.seconds * 1e6 for _, r in rows],
                marker=marker,
                color=color,
                label=f"{label} (wall)",
            )
            ax.loglog(
                x,
                [r.cpu_seconds * 1e6 for _, r in rows],
                marker=marker,
                color=color,
                linestyle=":",
                alpha=0.5,
                label=f"{label} (CPU time)",
            )
        ax.set_title(f"batch {b}")
        ax.set_xlabel("hidden width")
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.grid(True, which="both", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("time per step (µs)")
    np.atleast_1d(axes)[0].legend(fontsize="small")
    fig.suptitle("32 -> width ReLU -> 10 softmax, one SGD step (1 thread)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# ---------------------------------------------------------------------------
# notes: what looks off, found automatically
# ---------------------------------------------------------------------------
def auto_notes(workloads, cells, linear):
    notes, noisy = [], []
    for w in workloads:
        res = w["results"]
        for r in res:
            if r.agreement.startswith("DISAGREES"):
                notes.append(
                    f"**{w['name']} / {r.peer}: parameters DISAGREE with the reference "
                    f"after the check steps** ({r.agreement}); its time is shown but "
                    f"it does not compute the same thing."
                )
            if r.status == "error":
                notes.append(f"{w['name']} / {r.peer}: error: {r.note}")
            if r.status == "skipped":
                notes.append(f"{w['name']} / {r.peer}: skipped ({r.note}).")
            least = w["extra"].get("epochs_per_run")
            if r.timing is not None and least and r.timing.number < least:
                notes.append(
                    f"{w['name']} / {r.peer}: too slow for runs of {least} epochs; "
                    f"timed in runs of {r.timing.number}."
                )
            if r.timing is not None and r.timing.spread > SLOW_SPREAD:
                noisy.append(f"{w['name']} / {r.peer} ({r.timing.spread:.0%})")
        natives = [r for r in res if r.family == "cbp" and "native" in r.peer and r.seconds]
        rivals = [r for r in res if r.seconds and not (r.family == "cbp" and "native" in r.peer)]
        for nat in natives:
            # like with like: one thread against one thread, defaults against defaults
            for other in (o for o in rivals if (o.threads == "1") == (nat.threads == "1")):
                wall = nat.seconds / other.seconds
                cpu = nat.cpu_seconds / other.cpu_seconds
                if wall <= 1 and cpu <= 1:
                    continue
                what = (
                    f"{w['name']}: {nat.peer} is slower than {other.peer} at "
                    f"{other.threads} thread(s): {wall:.2f}× its wall-clock time "
                    f"({fmt_time(nat.seconds)} vs {fmt_time(other.seconds)}/{w['unit']}), "
                    f"{cpu:.2f}× its CPU time"
                )
                if wall > 1 and cpu > 1:
                    notes.append(f"**{what}.**")
                else:
                    notes.append(f"{what} (slower by one measure only: likely contention).")
    if noisy:
        notes.append(
            f"Noisy timings (wall-clock spread > {SLOW_SPREAD:.0%} between repeats): "
            + ", ".join(noisy)
            + "."
        )

    def cell(c):
        return (
            f"width {c['width']} × batch {c['batch']} ({_fmt_speed(c['speedup'])} wall, "
            f"{_fmt_speed(c['speedup_cpu'])} CPU)"
        )

    below = [
        (c, [c[k] is not None and c[k] < 1 for k in ("speedup", "speedup_cpu")]) for c in cells
    ]
    both = [cell(c) for c, flags in below if all(flags)]
    one = [cell(c) for c, flags in below if any(flags) and not all(flags)]
    if both:
        notes.append(
            "**Sweep: cbp native is slower than seed-style NumPy at** " + ", ".join(both) + "."
        )
    if one:
        notes.append(
            "Sweep: cbp native is slower than seed-style NumPy by one measure only "
            "(likely contention) at " + ", ".join(one) + "."
        )
    bad = [
        c
        for c in cells
        for r in c["results"]
        if r.agreement.startswith("DISAGREES") or r.status == "error"
    ]
    if bad:
        notes.append(
            "Sweep cells with a disagreement or error: "
            + ", ".join(f"width {c['width']} × batch {c['batch']}" for c in bad)
            + "."
        )
    for r in linear:
        for key in ("epochs_ratio", "samples_ratio"):
            off = [
                f"{r[k]:.2f} by {how}"
                for k, how in ((key, "wall-clock"), (key + "_cpu", "CPU"))
                if k in r and not 1.7 <= r[k] <= 2.3
            ]
            if off:
                notes.append(
                    f"Linear growth: {r['peer']} {key.replace('_', ' ')} is "
                    f"{' and '.join(off)} time, not ~2."
                )
    return notes


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------
def _load(avg):
    return "n/a" if avg is None else ", ".join(f"{x:.2f}" for x in avg)


def render_markdown(
    machine,
    settings,
    command,
    workloads,
    cells,
    linear,
    widths,
    batches,
    extra_notes,
    start_load=None,
    plot=True,
    compiled=None,
):
    m = machine
    out = [
        "# cbp benchmark results",
        "",
        f"- Command: `{command}`",
        f"- Date: {m['date']}; mode: "
        f"{'quick (smoke test, not for quoting)' if settings.quick else 'full'}",
        f"- CPU: {m['cpu_model']}, {m['physical_cores']} physical cores, "
        f"{m['usable_cpus']} usable CPUs; {m['platform']}",
        f"- Load average (1, 5, 15 min) when the run began: {_load(start_load)}; when it ended: "
        f"{_load(m['load_average_1_5_15min'])} (other processes share these CPUs)",
        f"- Python {m['python']}, NumPy {m['numpy']}, torch {m['torch']}, scikit-learn "
        f"{m['sklearn']}, threadpoolctl {m['threadpoolctl']}",
        f"- cbp {m['cbp']} ({m['cbp_file']}), native core loaded: {m['cbp_native_available']}, "
        f"git {(m['git'] or {}).get('commit', '?')} with "
        f"{(m['git'] or {}).get('modified_files', '?')} modified tracked files; core built "
        f"{(m['cbp_core'] or {}).get('modified', '?')}; SIMD kernel table "
        f"{m.get('cbp_simd')}; OpenMP {'on' if m.get('cbp_openmp') else 'off'}",
        "- Environment: "
        + (", ".join(f"{k}={v}" for k, v in (m.get("env") or {}).items()) or "none"),
        "",
        f"Method: every peer runs in this one process, at {settings.threads} thread(s) "
        f"(threadpoolctl limits for BLAS/OpenMP, `torch.set_num_threads`) unless marked "
        f"otherwise.  A timed call runs n epochs/steps, n grown on a 1-2-5 ladder until the call "
        f"lasts ≥ {settings.target} s; the time is the median of {settings.repeats} such calls.  "
        f"Before timing, every peer trains {settings.check_epochs} epochs from the same initial "
        f"weights and its parameters are compared with cbp native's (rtol 1e-9, float64); the "
        f"agreement column shows the largest relative difference.  Median time is wall-clock; "
        f"CPU time is the process CPU time of the same calls (it does not count time this "
        f"process spent waiting for a CPU that another process held).  Speed-up = seed-style "
        f"NumPy time / peer time (> 1: faster than the tutorial loop), taken in each round of "
        f"the repeats and reported as the median over the rounds; the seed-style loop runs "
        f"right before or after cbp native in every round (alternately), the other peers "
        f"after them.  Spread = (max − min) / median of the wall times over the repeats.",
        "",
        "## Results",
        "",
        main_table(workloads),
        "",
    ]
    for w in workloads:
        if w["name"] == "mnist":
            out += [_mnist_section(w), ""]
        if w["name"] == "seed000-online":
            out += [_online_section(w), ""]
    if compiled:
        out += [compiled_section(compiled), ""]
    if cells:
        out += [
            "## Sweep: hidden width × batch size",
            "",
            sweep_tables(cells, widths, batches),
            "",
        ] + (["![sweep](sweep.png)", ""] if plot else [])
    if linear:
        out += ["## Linear growth", "", linear_table(linear), ""]
    notes = (
        [n for w in workloads for n in w["notes"]]
        + extra_notes
        + auto_notes(workloads, cells, linear)
    )
    busy = contention(workloads, cells)
    if busy is not None and busy > 1.1:
        notes.insert(
            0,
            f"**The machine was busy**: over the 1-thread rows, wall time / CPU "
            f"time has median {busy:.2f} (1.00 on an idle machine).  Compare the CPU "
            f"columns, and treat wall times as upper bounds.",
        )
    out += ["## Notes (generated: what looks off)", ""]
    out += [f"- {n}" for n in notes] if notes else ["- nothing flagged"]
    return "\n".join(out) + "\n"


def _jsonable(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "as_dict"):
        return o.as_dict()
    return str(o)


def write_json(path, machine, settings, command, workloads, cells, linear, compiled=None):
    data = {
        "command": command,
        "machine": machine,
        "settings": settings.__dict__,
        "workloads": {
            w["name"]: {
                "title": w["title"],
                "unit": w["unit"],
                "results": w["results"],
                "extra": w["extra"],
                "notes": w["notes"],
            }
            for w in workloads
        },
        "sweep": cells,
        "linear_growth": linear,
        "compiled_peers": compiled,
    }
    Path(path).write_text(json.dumps(data, indent=1, default=_jsonable) + "\n")
