"""Both dense paths of the native core, the loops and BLAS dgemm, agree
with the NumPy twin: the dispatch threshold is forced each way."""

import numpy as np
import pytest

import cbp
from cbp import _reference as ref

PATHS = {"loops": (1 << 62, 1 << 30), "dgemm": (1, 1)}


@pytest.fixture
def core(native_core):
    return native_core


@pytest.fixture(params=sorted(PATHS))
def path(request, core):
    saved = core._blas_thresholds(*PATHS[request.param])
    yield request.param
    core._blas_thresholds(*saved)


@pytest.mark.parametrize("n,ni,no", [(1, 1, 1), (3, 5, 2), (17, 9, 33), (64, 40, 24)])
@pytest.mark.parametrize("bias", [True, False])
def test_dense_kernels_match_twin(core, path, n, ni, no, bias):
    rng = np.random.default_rng(n * 1000 + ni * 10 + no)
    X, W, dZ = (
        rng.standard_normal((n, ni)),
        rng.standard_normal((ni, no)),
        rng.standard_normal((n, no)),
    )
    b = rng.standard_normal(no) if bias else None
    out = {}
    for name, mod in (("native", core), ("numpy", ref)):
        Z, dW, dX = np.empty((n, no)), np.empty((ni, no)), np.empty((n, ni))
        db = np.empty(no) if bias else None
        mod.dense_forward(X, W, b, Z)
        mod.dense_backward(X, W, dZ, dW, db, dX)
        out[name] = (Z, dW, db, dX)
    for got, want in zip(out["native"], out["numpy"]):
        if want is not None:
            # summation order differs between loops, dgemm and NumPy's BLAS
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13 * max(ni, no, n))


def test_training_runs_match_twin_on_both_paths(path):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((96, 24))
    y = rng.integers(0, 10, 96)
    runs = {}
    for backend in ("native", "numpy"):
        net = cbp.Network(
            [cbp.Dense(24, 32, "relu", seed=1), cbp.Dense(32, 10, "softmax", seed=2)],
            loss="categorical_crossentropy",
            backend=backend,
        )
        net.fit(
            X, y, epochs=20, batch_size=32, shuffle=True, seed=3, optimizer=cbp.optim.Adam(0.01)
        )
        runs[backend] = net.parameters
    np.testing.assert_allclose(runs["native"], runs["numpy"], rtol=1e-9, atol=1e-12)


def test_threshold_round_trip(core):
    saved = core._blas_thresholds()
    assert core._blas_thresholds(123, 4) == saved
    assert core._blas_thresholds(*saved) == (123, 4)
    assert core._blas_thresholds() == saved
