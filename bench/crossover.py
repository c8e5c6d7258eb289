"""Where should a dense layer switch from cbp's own loops to BLAS dgemm?

Two tables, each timing one ``train_step`` with every layer forced onto the
loops, then forced onto dgemm, one BLAS thread, medians of repeats:

1. square layers: an (n, w) -> (w) ReLU -> (w) softmax network (where the
   work threshold, cbp_blas_min_work, comes from);
2. thin layers: a single (thin -> 256) or (256 -> thin) layer on 1024 rows,
   squared error (where the thin-side threshold, cbp_blas_min_side, comes
   from: the narrowest side at which dgemm still wins).

The defaults compiled into src/_kernels.pxd come from these tables.

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
                    times.append(_time(lambda: net.train_step(X, Y, lr=1e-9)))
                print(f"| {n} | {w} | {times[0] * 1e6:.2f} | {times[1] * 1e6:.2f} | "
                      f"{times[0] / times[1]:.2f} | {n * w * w} |")
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
                    times.append(_time(lambda: net.train_step(X, Y, lr=1e-9)))
                print(f"| {n} | {ni} | {no} | {times[0] * 1e6:.1f} | {times[1] * 1e6:.1f} | "
                      f"{times[0] / times[1]:.2f} |")
    finally:
        _core._blas_thresholds(*saved)


if __name__ == "__main__":
    if threadpool_limits is not None:
        with threadpool_limits(1):
            main()
    else:
        main()
