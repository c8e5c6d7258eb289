"""The five workloads.  Each ``run_*`` function returns a dict

``{"name", "title", "unit", "results": [PeerResult], "extra": {...}, "notes": [...]}``

and prints its progress through ``log``.
"""

import numpy as np

from .harness import fmt_time, measure_peers, speedup
from .peers import (
    CbpPeer,
    Layer,
    Peer,
    Problem,
    SeedScalarPeer,
    SeedSoftmaxPeer,
    SeedXorPeer,
    SklearnPeer,
    TorchPeer,
    train_step_flops,
)
from .timing import autotimeit, thread_limits


def _x(ratio):
    return "—" if ratio is None else f"{ratio:.3g}×"


def _workload(name, title, unit, results, **extra):
    return {
        "name": name,
        "title": title,
        "unit": unit,
        "results": results,
        "extra": extra,
        "notes": [],
    }


def _standard_peers(problem, s, via="fit", torch_default=True):
    """cbp native and NumPy backend, then torch at s.threads; with
    ``torch_default``, cbp native and torch at their default thread counts too
    (the pair the default-threads comparison is about)."""
    peers = [CbpPeer(problem, "native", via, s.threads), CbpPeer(problem, "numpy", via, s.threads)]
    torch_peers = [TorchPeer(problem, s.threads)]
    if torch_default:
        torch_peers += [CbpPeer(problem, "native", via, None), TorchPeer(problem, None)]
    return peers, torch_peers


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------
def spiral_data(samples, classes, seed=0):
    """nnfs's spiral data set: ``cbp.datasets.spiral_data`` if cbp has it,
    else the same construction here (nnfs / CS231n): per class, radius
    linspace(0, 1) and angle linspace(4k, 4(k+1)) + 0.2 * noise."""
    try:
        from cbp.datasets import spiral_data as cbp_spiral

        X, y = cbp_spiral(samples, classes, seed=seed)
        return np.asarray(X, dtype=np.float64), np.asarray(y), "cbp.datasets.spiral_data"
    except (ImportError, TypeError):
        pass
    rng = np.random.default_rng(seed)
    X = np.zeros((samples * classes, 2))
    y = np.zeros(samples * classes, dtype=np.int64)
    for k in range(classes):
        ix = slice(samples * k, samples * (k + 1))
        r = np.linspace(0.0, 1, samples)
        t = np.linspace(k * 4, (k + 1) * 4, samples) + rng.standard_normal(samples) * 0.2
        X[ix] = np.c_[r * np.sin(t * 2.5), r * np.cos(t * 2.5)]
        y[ix] = k
    return X, y, "bench.workloads.spiral_data"


def classifier(n_in, width, n_classes, n_samples, lr, seed=0, batch_size=None):
    """A dense -> ReLU -> dense -> softmax problem on random data."""
    rng = np.random.default_rng(seed)
    return Problem(
        layers=(Layer(n_in, width, "relu"), Layer(width, n_classes, "softmax")),
        loss="categorical_crossentropy",
        X=rng.standard_normal((n_samples, n_in)),
        y=rng.integers(0, n_classes, n_samples),
        lr=lr,
        batch_size=batch_size,
        seed=seed,
    )


# ---------------------------------------------------------------------------
# 1. seed 004's XOR
# ---------------------------------------------------------------------------
def run_xor(s, log=print):
    epochs = 1_000 if s.quick else 10_000
    log(
        f"[xor] seed 004: 2-4-1 sigmoid, no biases, 0.5*sum(err^2), lr 0.1, "
        f"timed in runs of {epochs} epochs"
    )
    p = Problem(
        layers=(Layer(2, 4, "sigmoid", False, "uniform"), Layer(4, 1, "sigmoid", False, "uniform")),
        loss="half_squared_error",
        reduction="sum",
        X=np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64),
        y=np.array([[0], [1], [1], [0]], dtype=np.float64),
        lr=0.1,
    )
    cbp_peers, torch_peers = _standard_peers(p, s)
    peers = (
        cbp_peers
        + [CbpPeer(p, "native", "train_step", s.threads), SeedXorPeer(p, s.threads)]
        + torch_peers
    )
    res = measure_peers("xor", peers, s, min_epochs=epochs, call_epochs=epochs, log=log)
    return _workload(
        "xor",
        f"XOR 2-4-1 sigmoid (seed 004), full batch, runs of {epochs} epochs",
        "epoch",
        res,
        epochs_per_run=epochs,
    )


# ---------------------------------------------------------------------------
# 2. spiral, 300 x 2, 2 -> 64 ReLU -> 3 softmax
# ---------------------------------------------------------------------------
def run_spiral(s, log=print):
    X, y, source = spiral_data(100, 3)
    log(f"[spiral] 300x2 spiral ({source}), 2-64-3 ReLU/softmax, CCE mean, full-batch SGD lr 1.0")
    p = Problem(
        layers=(Layer(2, 64, "relu"), Layer(64, 3, "softmax")),
        loss="categorical_crossentropy",
        X=X,
        y=y,
        lr=1.0,
    )
    cbp_peers, torch_peers = _standard_peers(p, s)
    peers = (
        cbp_peers
        + [SeedSoftmaxPeer(p, s.threads), SeedSoftmaxPeer(p, s.threads, lean=True)]
        + torch_peers
        + [SklearnPeer(p, s.threads)]
    )
    res = measure_peers("spiral", peers, s, log=log)
    return _workload(
        "spiral",
        "Spiral 300x2, 2-64-3 ReLU/softmax, CCE, full batch",
        "epoch",
        res,
        data_source=source,
    )


# ---------------------------------------------------------------------------
# 3. MNIST-shaped training step, and the machine's dgemm for scale
# ---------------------------------------------------------------------------
def dgemm_gflops(s, size=512):
    """Single-thread (s.threads) NumPy matmul speed, size x size @ size x size."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((size, size)), rng.standard_normal((size, size))
    C = np.empty_like(A)

    def run(n):
        for _ in range(n):
            np.matmul(A, B, out=C)

    with thread_limits(s.threads):
        t = autotimeit(run, target=s.target, repeats=s.repeats)
    flops = 2 * size**3
    return flops / t.median / 1e9, flops / t.cpu_median / 1e9, t


def run_mnist(s, log=print):
    n, n_in, hidden, n_out = 128, 784, 256, 10
    log(f"[mnist] one train_step: X {n}x{n_in} random, {n_in}-{hidden}-{n_out} ReLU/softmax, CCE")
    rng = np.random.default_rng(0)
    p = Problem(
        layers=(Layer(n_in, hidden, "relu"), Layer(hidden, n_out, "softmax")),
        loss="categorical_crossentropy",
        X=rng.random((n, n_in)),
        y=rng.integers(0, n_out, n),
        lr=0.01,
    )
    cbp_peers, torch_peers = _standard_peers(p, s, via="train_step")
    peers = (
        cbp_peers
        + [SeedSoftmaxPeer(p, s.threads), SeedSoftmaxPeer(p, s.threads, lean=True)]
        + torch_peers
    )
    res = measure_peers("mnist", peers, s, unit="step", log=log)
    flops = train_step_flops(p.layers, n)
    for r in res:
        if r.seconds:
            r.extra["gflops"] = flops / r.seconds / 1e9
    gemm, gemm_cpu, gemm_t = dgemm_gflops(s)
    log(
        f"  flops per step {flops / 1e6:.1f} M; numpy dgemm 512^3 at {s.threads} thread(s): "
        f"{gemm:.1f} GFLOP/s"
    )
    w = _workload(
        "mnist",
        f"MNIST-shaped train_step, {n}x{n_in}, {n_in}-{hidden}-{n_out}",
        "step",
        res,
        flops_per_step=flops,
        dgemm_gflops=gemm,
        dgemm_gflops_cpu=gemm_cpu,
        dgemm_size=512,
        dgemm_threads=s.threads,
        dgemm_timing=gemm_t.as_dict(),
    )
    return w


# ---------------------------------------------------------------------------
# 4. seed 000: one neuron, one call at a time, and online SGD
# ---------------------------------------------------------------------------
SEED000_LAYERS = (Layer(1, 1, "relu"), Layer(1, 1, "identity"))
SEED000_INIT = [(np.array([[0.5]]), np.array([0.2])), (np.array([[0.3]]), np.array([0.1]))]
#: what seed 000 prints after its one step on (x, y) = (2, 2) with lr 0.1: w, b, v, c
SEED000_PRINTED = (0.5924, 0.2462, 0.4848, 0.254)


def run_seed000_call(s, log=print):
    log("[seed000-call] seed 000's 1-1-1 ReLU net, train_step on one (1, 1) sample from Python")
    p = Problem(
        layers=SEED000_LAYERS,
        loss="half_squared_error",
        X=np.array([[2.0]]),
        y=np.array([[2.0]]),
        lr=0.1,
        init=SEED000_INIT,
    )
    cbp_peers, torch_peers = _standard_peers(p, s, via="train_step", torch_default=False)
    peers = cbp_peers + [SeedScalarPeer(p, s.threads)] + torch_peers
    res = measure_peers("seed000-call", peers, s, unit="call", log=log)
    w = _workload("seed000-call", "Seed 000 net, one train_step call on a (1,1) batch", "call", res)
    # cbp must reproduce the numbers the seed prints after its single step.
    ref = cbp_peers[0] if cbp_peers[0].unavailable() is None else cbp_peers[1]
    try:
        ref.reset()
        ref.train(1)
        (W1, b1), (W2, b2) = ref.params()
        got = (W1[0, 0], b1[0], W2[0, 0], b2[0])
        ok = np.allclose(got, SEED000_PRINTED, rtol=0, atol=5e-13)
        w["extra"]["seed_printed_values_reproduced"] = bool(ok)
        w["notes"].append(
            f"{ref.label}: one step reproduces seed 000's printed w, b, v, c "
            f"{SEED000_PRINTED}: {'yes' if ok else 'NO, got ' + repr(got)}"
        )
    except Exception as exc:  # reported, not fatal
        w["notes"].append(f"seed 000 printed-values check failed: {exc!r}")
    return w


def run_seed000_online(s, log=print):
    n = 1_000 if s.quick else 5_000
    log(f"[seed000-online] per-example SGD over {n} samples (fit(batch_size=1)), y = x")
    rng = np.random.default_rng(0)
    x = rng.uniform(1.0, 4.0, (n, 1))
    p = Problem(
        layers=SEED000_LAYERS,
        loss="half_squared_error",
        X=x,
        y=x.copy(),
        lr=0.01,
        batch_size=1,
        init=SEED000_INIT,
    )
    cbp_peers, torch_peers = _standard_peers(p, s, torch_default=False)
    peers = cbp_peers + [SeedScalarPeer(p, s.threads)] + torch_peers
    res = measure_peers(
        "seed000-online", peers, s, unit="step", per_unit=1.0 / n, check_epochs=1, log=log
    )
    for r in res:
        if r.seconds:
            r.extra["steps_per_s"] = 1.0 / r.seconds
    return _workload(
        "seed000-online",
        f"Seed 000 net, online SGD over {n} samples (batch 1)",
        "step",
        res,
        samples=n,
    )


# ---------------------------------------------------------------------------
# 5. width x batch sweep, and linear growth
# ---------------------------------------------------------------------------
SWEEP_WIDTHS = (4, 16, 64, 256, 1024)
SWEEP_BATCHES = (1, 16, 128, 1024)
SWEEP_INPUTS, SWEEP_CLASSES = 32, 10


def run_sweep(s, log=print):
    log(
        f"[sweep] {SWEEP_INPUTS} -> width ReLU -> {SWEEP_CLASSES} softmax, one full-batch step, "
        f"cbp native fit vs seed-style NumPy"
    )
    cells = []
    for batch in SWEEP_BATCHES:
        for width in SWEEP_WIDTHS:
            p = classifier(SWEEP_INPUTS, width, SWEEP_CLASSES, batch, lr=0.1)
            peers = [CbpPeer(p, "native", "fit", s.threads), SeedSoftmaxPeer(p, s.threads)]
            res = measure_peers(
                f"sweep w={width} b={batch}", peers, s, unit="step", log=lambda *a: None
            )
            cbp_r, seed_r = res
            speed = speedup(cbp_r, res)
            speed_cpu = speedup(cbp_r, res, "cpu_seconds")
            log(
                f"  width {width:>5} batch {batch:>5}: cbp {fmt_time(cbp_r.seconds):>9}  "
                f"numpy {fmt_time(seed_r.seconds):>9}  speed-up {_x(speed)} "
                f"(CPU time {_x(speed_cpu)})  [{cbp_r.status}/{seed_r.status}, "
                f"{seed_r.agreement}]"
            )
            cells.append(
                {
                    "width": width,
                    "batch": batch,
                    "results": res,
                    "speedup": speed,
                    "speedup_cpu": speed_cpu,
                    "flops": train_step_flops(p.layers, batch),
                }
            )
    return cells


class _Calls(Peer):
    """Adapter for the growth runs: one unit is one ``peer.train(epochs)`` call,
    so the time includes whatever a call costs besides its epochs."""

    check, no_check_reason = False, "different problem"

    def __init__(self, peer, epochs, key):
        super().__init__(peer.problem, peer.threads)
        self.peer, self.epochs, self.key = peer, epochs, key
        self.label = f"{peer.label} [{key}]"

    def unavailable(self):
        return self.peer.unavailable()

    @property
    def threads_label(self):
        return self.peer.threads_label

    def reset(self):
        self.peer.reset()

    def params(self):
        return self.peer.params()

    def train(self, n):
        for _ in range(n):
            self.peer.train(self.epochs)


def run_linear_growth(s, log=print):
    """T(epochs E) vs T(2E) and T(samples N) vs T(2N), minibatches of 32:
    the time of one whole training call, all six runs interleaved."""
    width, bs = 64, 32
    E, N = (4, 256) if s.quick else (20, 1024)
    log(
        f"[linear] {SWEEP_INPUTS}-{width}-{SWEEP_CLASSES}, batches of {bs}: "
        f"time of one fit over E={E} / {2 * E} epochs and N={N} / {2 * N} samples"
    )
    configs = (("N,E", N, E), ("N,2E", N, 2 * E), ("2N,E", 2 * N, E))
    makers = (
        lambda p: CbpPeer(p, "native", "fit", s.threads),
        lambda p: SeedSoftmaxPeer(p, s.threads),
    )
    peers = [
        _Calls(
            make(classifier(SWEEP_INPUTS, width, SWEEP_CLASSES, n, lr=0.01, batch_size=bs)),
            epochs,
            key,
        )
        for make in makers
        for key, n, epochs in configs
    ]
    res = measure_peers("linear", peers, s, unit="call", log=log)
    rows = []
    for i in range(0, len(peers), len(configs)):
        group = list(zip(peers[i : i + len(configs)], res[i : i + len(configs)]))
        times = {p.key: r.seconds for p, r in group if r.seconds}
        cpu = {p.key: r.cpu_seconds for p, r in group if r.seconds}
        bad = [f"{r.status}: {r.note}" for _, r in group if r.status != "ok"]
        row = {
            "peer": group[0][0].peer.label,
            "status": bad[0] if bad else "ok",
            "E": E,
            "N": N,
            "batch_size": bs,
            "width": width,
            "times": times,
            "cpu_times": cpu,
            "spread": {p.key: r.timing.spread for p, r in group if r.timing},
        }
        if len(times) == len(configs):
            for name, key in (("epochs_ratio", "N,2E"), ("samples_ratio", "2N,E")):
                row[name] = times[key] / times["N,E"]
                row[name + "_cpu"] = cpu[key] / cpu["N,E"]
            log(
                f"  {row['peer']:<22} T(N,2E)/T(N,E) {row['epochs_ratio']:.3f} "
                f"(CPU {row['epochs_ratio_cpu']:.3f})  T(2N,E)/T(N,E) "
                f"{row['samples_ratio']:.3f} (CPU {row['samples_ratio_cpu']:.3f})"
            )
        rows.append(row)
    return rows


# Registry for run.py: name (for --only) -> the functions that fill the main
# table.  The sweep is handled apart: it makes a plot and tables of its own.
TABLE_WORKLOADS = {
    "xor": (run_xor,),
    "spiral": (run_spiral,),
    "mnist": (run_mnist,),
    "seed000": (run_seed000_call, run_seed000_online),
}
__all__ = ["TABLE_WORKLOADS", "run_sweep", "run_linear_growth"]
