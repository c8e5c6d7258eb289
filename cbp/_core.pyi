"""Type stub of the compiled core ``cbp._core`` (built from src/_core.pyx).

Every function and ``Engine`` here has a NumPy twin of the same signature in
``cbp._reference``.  Arrays are float64 and C-contiguous unless stated;
shapes are given as (rows, columns).
"""

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

def _blas_thresholds(work: int | None = None, side: int | None = None) -> tuple[int, int]: ...
def _sklearn_blas_thresholds(
    work: int | None = None, side: int | None = None
) -> tuple[int, int]: ...
def _sklearn_adam_update(
    params: F64,
    grads: F64,
    m: F64,
    v: F64,
    lr_t: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
) -> bool:
    """scikit-learn's Adam step in place; twin: cbp._reference_sklearn.sklearn_adam_update."""

def _simd(level: str | None = None) -> str: ...
def _simd_levels() -> list[str]: ...
def _vexp(x: F64, out: F64) -> F64: ...
def _columns() -> dict[str, int]: ...
def dense_forward(X: F64, W: F64, b: F64 | None, out: F64) -> F64:
    """out (n, j) := X (n, i) @ W (i, j) + b (j,)."""

def dense_backward(X: F64, W: F64, dZ: F64, dW: F64, db: F64 | None, dX: F64 | None) -> None:
    """dW (i, j) := X.T @ dZ; db (j,) := sum(dZ, 0); dX (n, i) := dZ @ W.T."""

def _feature_major_limits(
    width: int | None = None, rows_lo: int | None = None, rows_hi: int | None = None
) -> tuple[int, int, int]: ...
def _tiny_path(on: bool | None = None) -> bool: ...
def _fm_epochs_path(on: bool | None = None) -> bool: ...
def _thread_config(
    threads: int | None = None, min_rows: int | None = None, min_work: int | None = None
) -> tuple[int, int, int]: ...
def _thread_state() -> dict[str, object]: ...
def _thread_backoff(reset: bool = False, on: bool | None = None) -> dict[str, object]: ...
def _thread_report(team: int, alone: int, now: int) -> bool: ...
def _thread_paused(now: int | None = None) -> bool: ...
def _thread_reserve(want: int, limit: int) -> int: ...
def _thread_release(got: int) -> None: ...
def _thread_enter() -> None: ...
def _thread_leave() -> None: ...
def dense_forward_feature_major(XT: F64, W: F64, b: F64 | None, out: F64, act: int) -> F64:
    """out (j, m) := f(W (i, j).T @ XT (i, m) + b (j,)[:, None]); f identity, relu or sigmoid."""

def dense_backward_feature_major(
    XT: F64,
    W: F64,
    dT: F64,
    A: F64 | None,
    act: int,
    dW: F64,
    db: F64 | None,
    dXT: F64 | None,
) -> None:
    """dW (i, j) := XT @ dT.T; db (j,) := sum(dT, 1); dXT (i, m) := (W @ dT) * f'(Z) from A."""

def activation_forward(act: int, Z: F64, out: F64, alpha: float = 0.0) -> F64:
    """out (n, j) := f(Z); row-wise for softmax."""

def activation_backward(act: int, Z: F64, A: F64, dA: F64, out: F64, alpha: float = 0.0) -> F64:
    """out (n, j) := dL/dZ from dA = dL/dA, Z and A = f(Z)."""

def loss_value(loss: int, P: F64, Y: F64, reduction: int) -> float:
    """The reduced loss of P (n, j) against Y (n, j)."""

def loss_gradient(loss: int, P: F64, Y: F64, out: F64, reduction: int) -> float:
    """out (n, j) := dL/dP; returns the loss."""

def output_delta(
    act: int, loss: int, Z: F64, A: F64, Y: F64, out: F64, reduction: int, alpha: float = 0.0
) -> float:
    """out (n, j) := dL/dZ of the output layer (fused pairs); returns the loss."""

def penalty(V: F64, l1: float, l2: float) -> float:
    """l1 * sum|V| + l2 * sum V**2 over a 1-D array."""

def add_penalty_gradient(V: F64, dV: F64, l1: float, l2: float) -> None:
    """dV += l1 * sign(V) + 2 * l2 * V."""

def sgd_update(params: F64, grads: F64, lr: float) -> F64:
    """params (m,) -= lr * grads (m,)."""

def optimizer_update(kind: int, hyper: F64, params: F64, grads: F64, state: F64, t: float) -> F64:
    """One optimizer step on params (m,), with state (slots, m) and t prior steps."""

def random_bits(seed: int, stream: int, start: int, n: int) -> NDArray[np.uint64]:
    """splitmix64 draws start .. start + n - 1 of a (seed, stream)."""

def shuffle_order(seed: int, epoch: int, n: int) -> NDArray[np.int64]:
    """The sample order (n,) of an epoch."""

def dropout_mask(seed: int, stream: int, start: int, rate: float, out: F64) -> F64:
    """out (n, j) := 1 / (1 - rate) where a draw >= rate, else 0."""

class Engine:
    """Forward, backward, optimizer steps and whole runs over flat buffers."""

    loss: int
    reduction: int
    ld: int  # feature-major lanes of the workspace (0: row-major)
    threads_used: int  # threads the last training step ran on
    tiny_steps: int  # steps the last fit() ran on the fused path of src/_tiny.h
    fm_epochs: int  # epochs the last fit() ran as whole-epoch runs (src/_fm_epochs.h)
    fast_out: tuple[F64, F64 | None, int, int, int, BaseException | None] | None

    def __init__(
        self,
        layer_ints: NDArray[np.int64],
        layer_floats: F64,
        params: F64,
        grads: F64,
        loss: int,
        reduction: int,
    ) -> None: ...
    def forward(self, X: F64) -> F64: ...
    def predict(self, X: F64) -> F64: ...
    def backward(self, Y: F64) -> float: ...
    def step(self, kind: int, hyper: F64, state: F64, t: float) -> None: ...
    def sgd_step(self, lr: float) -> None: ...
    def train_step(self, X: F64, Y: F64, kind: int, hyper: F64, state: F64, t: float) -> float: ...
    def train_step_sgd(self, X: object, Y: object, lr: float) -> float | None: ...
    def evaluate(self, X: F64, Y: F64) -> tuple[float, float]: ...
    def fit(
        self,
        X: F64,
        Y: F64,
        Xv: F64 | None,
        Yv: F64 | None,
        kind: int,
        hyper: F64,
        state: F64,
        t: float,
        epoch0: int,
        n_epochs: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        early_stop: F64,
        best: F64,
        history: F64,
        progress: NDArray[np.int64],
        report_seconds: float,
        schedule: F64,
    ) -> tuple[int, int, int]: ...
    def fit_fast(
        self,
        X: object,
        Y: object,
        kind: int,
        hyper: F64,
        state: F64,
        t: float,
        epoch0: int,
        n_epochs: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
    ) -> tuple[F64, F64 | None, int, int, int, BaseException | None] | None: ...
