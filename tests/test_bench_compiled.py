"""The benchmark's JAX and numba peers (bench/compiled.py) compute what cbp computes.

Each compiled peer is compared with cbp native over a few epochs from the
same initial weights (the check the benchmark makes before timing), and the
numba loops are also checked against an independent NumPy computation of the
same updates.  Skipped where jax or numba is not installed (the "peers" extra).
The JAX peers run in one subprocess: once JAX has run, a process must not
fork, and other tests of the suite fork.  No time is measured here.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import cbp

ROOT = Path(__file__).resolve().parent.parent
if not (ROOT / "bench" / "compiled.py").is_file():
    pytest.skip("bench/ is not in this tree (installed-wheel test run)", allow_module_level=True)
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from bench import compiled as C  # noqa: E402
from bench.peers import CbpPeer, Layer, Problem, compare_params  # noqa: E402
from bench.pinned import ratios  # noqa: E402
from bench.report import dgemm_floor  # noqa: E402

needs_native = pytest.mark.skipif(not cbp.native_available(), reason="native core not loaded")
needs_jax = pytest.mark.skipif(not C.HAVE_JAX, reason="jax not installed")
needs_numba = pytest.mark.skipif(C.numba is None, reason="numba not installed")


def xor_problem():
    return Problem(
        layers=(Layer(2, 4, "sigmoid", False, "uniform"), Layer(4, 1, "sigmoid", False, "uniform")),
        loss="half_squared_error",
        reduction="sum",
        X=np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64),
        y=np.array([[0], [1], [1], [0]], dtype=np.float64),
        lr=0.1,
    )


def softmax_problem(n=40, n_in=5, width=7, classes=3, lr=0.5):
    rng = np.random.default_rng(3)
    return Problem(
        layers=(Layer(n_in, width, "relu"), Layer(width, classes, "softmax")),
        loss="categorical_crossentropy",
        X=rng.standard_normal((n, n_in)),
        y=rng.integers(0, classes, n),
        lr=lr,
    )


def scalar_problem(n=50):
    x = np.random.default_rng(1).uniform(1.0, 4.0, (n, 1))
    init = [(np.array([[0.5]]), np.array([0.2])), (np.array([[0.3]]), np.array([0.1]))]
    return Problem(
        layers=(Layer(1, 1, "relu"), Layer(1, 1, "identity")),
        loss="half_squared_error",
        X=x,
        y=x.copy(),
        lr=0.01,
        batch_size=1,
        init=init,
    )


def trained(peer, epochs):
    peer.reset()
    peer.train(epochs)
    return peer.params()


def assert_agree(got, ref):
    ok, rel = compare_params(got, ref)
    assert ok, rel


# -- against cbp native ------------------------------------------------------
CASES = {
    "xor": (xor_problem, "xor", 30),
    "softmax": (softmax_problem, "softmax", 10),
    "scalar": (scalar_problem, "scalar", 2),
}


@needs_native
@needs_numba
@pytest.mark.parametrize("case", CASES)
def test_numba_peer_agrees_with_cbp(case):
    make, kind, epochs = CASES[case]
    p = make()
    assert_agree(trained(C.NumbaPeer(p, kind), epochs), trained(CbpPeer(p, "native"), epochs))


# The JAX checks, run in a subprocess that prints one JSON object:
# {check: [agrees, max relative difference] or an error message}.
JAX_CHECKS = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    sys.path.append(sys.argv[2])
    import test_bench_compiled as T
    from bench import compiled as C
    from bench.peers import CbpPeer, compare_params

    out = {}
    for case, (make, _, epochs) in T.CASES.items():
        p = make()
        out[case] = compare_params(T.trained(C.JaxPeer(p), epochs),
                                   T.trained(CbpPeer(p, "native"), epochs))
    p = T.softmax_problem(n=40)
    p.batch_size = 8
    out["minibatches"] = compare_params(T.trained(C.JaxPeer(p), 3),
                                        T.trained(CbpPeer(p, "native"), 3))
    pop = C.Population(T.xor_problem(), 5)
    got = T.trained(C.JaxPopulationPeer(pop), 40)
    out["population"] = compare_params(got, T.trained(C.CbpPopulationPeer(pop), 40))
    out["population_size"] = len(got)
    p.batch_size = 7
    try:
        C.JaxPeer(p).reset()
        out["unequal_batches"] = "no error"
    except ValueError as exc:
        out["unequal_batches"] = str(exc)
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def jax_checks():
    proc = subprocess.run(
        [sys.executable, "-c", JAX_CHECKS, str(Path(__file__).parent), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_native
@needs_jax
@pytest.mark.parametrize("check", [*CASES, "minibatches", "population"])
def test_jax_peer_agrees_with_cbp(jax_checks, check):
    ok, rel = jax_checks[check]
    assert ok, rel


@needs_native
@needs_jax
def test_jax_population_holds_every_network(jax_checks):
    assert jax_checks["population_size"] == 2 * 5


@needs_native
@needs_jax
def test_jax_peer_refuses_unequal_batches(jax_checks):
    assert "equal size" in jax_checks["unequal_batches"]


@needs_native
@needs_numba
def test_numba_population_agrees_with_cbp_one_by_one():
    pop = C.Population(xor_problem(), 5)
    got = trained(C.NumbaPopulationPeer(pop), 40)
    ref = trained(C.CbpPopulationPeer(pop), 40)
    assert len(got) == 2 * 5
    assert_agree(got, ref)
    # the networks started apart and stay apart: the comparison is not of one network five times
    assert not np.allclose(got[0][0], got[2][0])


@needs_native
def test_fit_many_peer_is_the_one_by_one_fits_exactly():
    from cbp import many

    pop = C.Population(xor_problem(), 11)
    before = many._paths["lanes"]
    got = trained(C.CbpManyPeer(pop), 40)
    assert many._paths["lanes"] > before  # (the SIMD lanes ran)
    ref = trained(C.CbpPopulationPeer(pop), 40)
    assert len(got) == len(ref) == 2 * 11
    for (W, b), (Wr, br) in zip(got, ref):
        np.testing.assert_array_equal(W, Wr)
        assert b is None and br is None


# -- against NumPy written independently -------------------------------------
@needs_numba
def test_numba_xor_loop_is_the_tutorial_update():
    p = xor_problem()
    (W1, _), (W2, _) = p.init
    W1, W2 = W1.copy(), W2.copy()
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    for _ in range(7):
        h = sig(p.X @ W1)
        o = sig(h @ W2)
        d2 = (p.y - o) * o * (1 - o)
        d1 = d2 @ W2.T * h * (1 - h)
        W2 += h.T @ d2 * p.lr
        W1 += p.X.T @ d1 * p.lr
    got = trained(C.NumbaPeer(p, "xor"), 7)
    np.testing.assert_allclose(got[0][0], W1, rtol=1e-12)
    np.testing.assert_allclose(got[1][0], W2, rtol=1e-12)


@needs_numba
def test_numba_softmax_step_is_the_combined_gradient():
    p = softmax_problem()
    (W1, b1), (W2, b2) = [(W.copy(), b.copy()) for W, b in p.init]
    z1 = p.X @ W1 + b1
    a1 = np.maximum(z1, 0)
    z2 = a1 @ W2 + b2
    prob = np.exp(z2 - z2.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    dz2 = (prob - np.eye(3)[p.y]) / len(p.X)
    dz1 = (dz2 @ W2.T) * (z1 > 0)
    expected = [
        (W1 - p.lr * p.X.T @ dz1, b1 - p.lr * dz1.sum(0)),
        (W2 - p.lr * a1.T @ dz2, b2 - p.lr * dz2.sum(0)),
    ]
    got = trained(C.NumbaPeer(p, "softmax"), 1)
    for (W, b), (We, be) in zip(got, expected):
        np.testing.assert_allclose(W, We, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(b, be, rtol=1e-12, atol=1e-15)


@needs_numba
def test_numba_scalar_loop_reproduces_tutorial_000():
    # tutorial 000 prints w, b, v, c = 0.5924, 0.2462, 0.4848, 0.254 after one
    # step on (x, y) = (2, 2) with lr 0.1 from w, b, v, c = 0.5, 0.2, 0.3, 0.1
    p = scalar_problem()
    p.X, p.y, p.lr = np.array([[2.0]]), np.array([[2.0]]), 0.1
    (W1, b1), (W2, b2) = trained(C.NumbaPeer(p, "scalar"), 1)
    np.testing.assert_allclose(
        [W1[0, 0], b1[0], W2[0, 0], b2[0]], [0.5924, 0.2462, 0.4848, 0.254], rtol=0, atol=5e-13
    )


# -- the report's arithmetic ---------------------------------------------------
class _T:
    def __init__(self, per_unit):
        self.per_unit = per_unit


class _R:
    def __init__(self, family, per_unit, scale=1.0):
        self.family, self.per_unit = family, scale
        self.timing = None if per_unit is None else _T(per_unit)  # None: not timed


def test_ratios_are_medians_of_per_round_ratios():
    cbp_r = _R("cbp", [1.0, 2.0, 4.0])
    jax_r = _R("jax", [3.0, 2.0, 20.0])  # rounds: 3, 1, 5 -> median 3 (ratio of medians: 1)
    got = ratios([cbp_r, jax_r, _R("numba", None)])
    assert got["jax"]["rounds"] == [3.0, 1.0, 5.0]
    assert got["jax"]["median"] == 3.0
    assert "numba" not in got


def test_dgemm_floor_is_flops_at_the_rate_over_cbp_time():
    compiled = {
        "dgemm": [
            {"setting": "as given", "gflops": 50.0, "gflops_cpu": 100.0},
            {"setting": "unset", "gflops": 80.0, "gflops_cpu": 80.0},
        ],
        "pinned": {
            "setting": "unset",
            "workloads": [
                {
                    "name": "B",
                    "flops": 1e6,
                    "results": [{"family": "cbp", "median_s": 40e-6, "cpu_median_s": 25e-6}],
                },
                {
                    "name": "A",
                    "flops": None,
                    "results": [{"family": "cbp", "median_s": 1e-7, "cpu_median_s": 1e-7}],
                },
            ],
        },
        "pinned_as_given": {
            "setting": "as given",
            "workloads": [
                {
                    "name": "B",
                    "flops": 1e6,
                    "results": [{"family": "cbp", "median_s": 50e-6, "cpu_median_s": 40e-6}],
                },
            ],
        },
    }
    floors = dgemm_floor(compiled)
    assert set(floors) == {"B"}
    # Each run at its own setting's rate.  Unset: 1 MFLOP at 80 GFLOP/s = 12.5 µs,
    # of cbp's 40 µs and of its 25 µs of CPU time.  As given: 20 µs at 50 GFLOP/s,
    # of 50 µs; by CPU time 10 µs (100 GFLOP/s) of 40 µs.
    assert floors["B"]["unset"] == pytest.approx((12.5e-6, 0.3125, 0.5))
    assert floors["B"]["as given"] == pytest.approx((20e-6, 0.4, 0.25))


class _Recording:
    """A peer that records the epochs of every train call."""

    label, threads, threads_label, family, check = "recording", 1, "1", "cbp", True

    def __init__(self):
        self.calls = []

    def unavailable(self):
        return None

    def reset(self):
        pass

    def train(self, n):
        self.calls.append(n)

    def params(self):
        return [(np.zeros((1, 1)), None)]


def test_call_epochs_times_the_workload_as_calls_of_its_length():
    from bench.harness import Settings, _in_calls, measure_peers

    s = Settings(quick=True, threads=1, target=0.0, repeats=3, check_epochs=2, max_seconds=None)
    quiet = dict(log=lambda *a: None)
    peer = _Recording()
    (res,) = measure_peers("w", [peer], s, min_epochs=60, call_epochs=20, **quiet)
    assert res.status == "ok" and res.timing.number == 60 and len(res.timing.per_unit) == 3
    assert peer.calls == [2] + [20] * 3 * 4  # the check; calibration and 3 samples, 3 calls each
    peer = _Recording()
    measure_peers("w", [peer], s, min_epochs=60, **quiet)
    assert peer.calls == [2] + [60] * 4  # without call_epochs: one call a sample
    peer.calls.clear()
    _in_calls(30)(peer)(70)
    assert peer.calls == [30, 30, 10]
