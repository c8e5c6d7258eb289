"""Where should a dense layer switch from cbp's own loops to BLAS dgemm, and
when should fit() train feature-major?

Three tables; the first two time one ``train_step`` with every layer forced onto the
loops, then forced onto dgemm, one BLAS thread, medians of repeats:

1. square layers: an (n, w) -> (w) ReLU -> (w) softmax network (where the
   work threshold, cbp_blas_min_work, comes from);
2. thin layers: a single (thin -> 256) or (256 -> thin) layer on 1024 rows,
   squared error (where the thin-side threshold, cbp_blas_min_side, comes
   from: the narrowest side at which dgemm still wins);
3. feature-major: fit() for 200 epochs of 4 batches of b rows on small
   networks, per step (batch), with the feature-major passes off, then
   forced on, the two alternating (where _feature_major_limits, the widest
   side and the batch rows, come from);
4. threads: full-batch fit() steps of networks below the dgemm crossover on
   one thread, then on two (OpenMP over row chunks of the batch), the two
   alternating, BLAS at one thread (where _thread_config's min_rows and
   min_work come from).  Skipped when the core was built without OpenMP or
   the machine has one CPU.

The dgemm defaults compiled into src/_kernels.pxd, and the feature-major
and thread limits in src/_tuning.pxi and src/_threads.pxi, come from these
tables.

    python bench/crossover.py
"""

import statistics
import time

import numpy as np

import cbp
from cbp import _core

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None


def _time(f, min_time=0.05, repeats=5):
    number = 1
    while True:
        t = time.perf_counter()
        for _ in range(number):
            f()
        if time.perf_counter() - t >= min_time or number >= 1 << 20:
            break
        number *= 2
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(number):
            f()
        runs.append((time.perf_counter() - t) / number)
    return statistics.median(runs)


def _alternate(f, setups, rounds, per):
    """The median time of f / per under each setup, the setups taking turns
    (so that drift hits them alike), one timed call of each per round."""
    runs = [[] for _ in setups]
    for _ in range(rounds):
        for i, setup in enumerate(setups):
            setup()
            runs[i].append(_time(f, repeats=1) / per)
    return [statistics.median(r) for r in runs]


def main():
    rng = np.random.default_rng(0)
    saved = _core._blas_thresholds()
    print("| batch | width | loops us | dgemm us | loops/dgemm | n*w*w |")
    print("|---|---|---|---|---|---|")
    try:
        for n in (1, 4, 16, 64, 256):
            for w in (4, 8, 16, 32, 64, 128):
                X = rng.standard_normal((n, w))
                y = rng.integers(0, w, n)
                Y = np.eye(w)[y]
                net = cbp.Network(
                    [cbp.Dense(w, w, "relu", seed=0), cbp.Dense(w, w, "softmax", seed=1)],
                    loss="categorical_crossentropy",
                )
                times = []
                for work, side in ((1 << 62, 1 << 30), (1, 1)):  # loops only, dgemm only
                    _core._blas_thresholds(work, side)
                    times.append(_time(lambda net=net, X=X, Y=Y: net.train_step(X, Y, lr=1e-9)))
                print(
                    f"| {n} | {w} | {times[0] * 1e6:.2f} | {times[1] * 1e6:.2f} | "
                    f"{times[0] / times[1]:.2f} | {n * w * w} |"
                )
        print()
        print("| rows | n_in | n_out | loops us | dgemm us | loops/dgemm |")
        print("|---|---|---|---|---|---|")
        n, wide = 1024, 256
        for thin in (2, 4, 8, 10, 16, 32):
            for ni, no in ((thin, wide), (wide, thin)):
                X = rng.standard_normal((n, ni))
                Y = rng.standard_normal((n, no))
                net = cbp.Network([cbp.Dense(ni, no, "identity", seed=0)])
                times = []
                for work, side in ((1 << 62, 1 << 30), (1, 1)):
                    _core._blas_thresholds(work, side)
                    times.append(_time(lambda net=net, X=X, Y=Y: net.train_step(X, Y, lr=1e-9)))
                print(
                    f"| {n} | {ni} | {no} | {times[0] * 1e6:.1f} | {times[1] * 1e6:.1f} | "
                    f"{times[0] / times[1]:.2f} |"
                )
        print()
        feature_major_table(rng)
    finally:
        _core._blas_thresholds(*saved)


def feature_major_table(rng):
    """Row-major against feature-major fit() epochs (table 3)."""
    saved = _core._feature_major_limits()
    nets = [  # n_in, width, n_out, hidden, output, loss
        (2, 4, 1, "sigmoid", "sigmoid", "half_squared_error"),
        (1, 1, 1, "relu", "relu", "squared_error"),
        (2, 4, 3, "relu", "softmax", "categorical_crossentropy"),
        (4, 4, 2, "tanh", "identity", "squared_error"),
        (2, 8, 3, "relu", "softmax", "categorical_crossentropy"),
        (4, 8, 2, "tanh", "identity", "squared_error"),
        (2, 16, 1, "sigmoid", "sigmoid", "binary_crossentropy"),
    ]
    print("| net | batch rows | row-major ns/step | feature-major ns/step | row/feature |")
    print("|---|---|---|---|---|")
    try:
        for ni, w, no, hidden, out, loss in nets:
            for b in (1, 2, 4, 8, 16, 32, 300):
                n = 4 * b
                X = rng.standard_normal((n, ni))
                y = rng.integers(0, no, n) if out == "softmax" else rng.random((n, no))
                net = cbp.Network(
                    [cbp.Dense(ni, w, hidden, seed=0), cbp.Dense(w, no, out, seed=1)], loss=loss
                )

                def fit(net=net, X=X, y=y, b=b):
                    return net.fit(X, y, epochs=200, lr=1e-9, batch_size=b)

                row, feature_major = _alternate(
                    fit,
                    [
                        lambda on=on: _core._feature_major_limits(1 << 30 if on else 0, 1, 1 << 30)
                        for on in (0, 1)
                    ],
                    rounds=5,
                    per=800,
                )
                print(
                    f"| {ni}-{w}-{no} {hidden} | {b} | {row * 1e9:.0f} | "
                    f"{feature_major * 1e9:.0f} | {row / feature_major:.2f} |"
                )
    finally:
        _core._feature_major_limits(*saved)


def par_table(rng):
    """One thread against two, full-batch fit() steps (table 4)."""
    state = _core._thread_state()
    if not state["built"] or state["limit"] < 2:
        print(f"(table 4 skipped: OpenMP built {state['built']}, thread limit {state['limit']})")
        return
    saved = _core._thread_config()
    saved_on = _core._thread_backoff(on=False)["on"]  # every two-thread step on the team
    nets = [  # n_in, width, n_out
        (2, 64, 3),
        (32, 4, 10),
        (8, 8, 3),
        (2, 16, 1),
        (4, 32, 2),
        (16, 8, 4),
    ]
    print("| net | rows | multiply-adds | 1 thread us/step | 2 threads us/step | 1/2 |")
    print("|---|---|---|---|---|---|")
    try:
        _core._thread_config(None, 1, 0)
        for ni, w, no in nets:
            for n in (32, 64, 128, 256, 512, 1024):
                X = rng.standard_normal((n, ni))
                y = rng.integers(0, no, n)
                net = cbp.Network(
                    [cbp.Dense(ni, w, "relu", seed=0), cbp.Dense(w, no, "softmax", seed=1)],
                    loss="categorical_crossentropy",
                )
                fit = lambda net=net, X=X, y=y: net.fit(X, y, epochs=100, lr=1e-9)  # noqa: E731
                one, two = _alternate(
                    fit, [lambda t=t: _core._thread_config(t) for t in (1, 2)], rounds=7, per=100
                )
                print(
                    f"| {ni}-{w}-{no} | {n} | {n * (ni * w + w * no)} | {one * 1e6:.2f} | "
                    f"{two * 1e6:.2f} | {one / two:.2f} |"
                )
    finally:
        _core._thread_config(*saved)
        _core._thread_backoff(reset=True, on=saved_on)


if __name__ == "__main__":
    if threadpool_limits is not None:
        with threadpool_limits(1):
            main()
        print()
        with threadpool_limits(1, user_api="blas"):
            par_table(np.random.default_rng(1))
    else:
        main()
        print()
        par_table(np.random.default_rng(1))
