"""cbp.MLPClassifier against sklearn.neural_network.MLPClassifier: fit time, one thread.

    python bench/sklearn_bench.py            # 7 rounds per workload
    python bench/sklearn_bench.py --quick    # 3 rounds, 5 epochs (a smoke test)
    python bench/sklearn_bench.py --search   # also: GridSearchCV, threads vs processes

Workloads: digits (1797 x 64, 10 classes) and iris (150 x 4, 3 classes),
standardized; hidden (64,), adam, batch 32, 30 epochs with early stopping
off and tol=0, n_iter_no_change=max_iter so both run every epoch.  Before
timing, the two fits are checked to give the same coefs_ and loss_curve_
(rtol 1e-9).  Each round times one fit of each, in alternating order; the
speed-up is the median over rounds of sklearn's time / cbp's time.  BLAS and
OpenMP are limited to one thread (threadpoolctl).

``--search`` times one GridSearchCV over cbp.MLPClassifier on digits (4
candidates x 3 folds, 10 epochs each) with joblib's backends: sequential,
``threading`` and ``loky`` (processes) with n_jobs=2, each worker's BLAS
limited to one thread; the median of ``rounds`` runs each.
"""

import argparse
import statistics
import sys
import time
import warnings

import joblib
import numpy as np
from sklearn import neural_network as sknn
from sklearn.datasets import load_digits, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import cbp


def workloads(epochs):
    params = dict(
        hidden_layer_sizes=(64,),
        solver="adam",
        batch_size=32,
        max_iter=epochs,
        early_stopping=False,
        tol=0.0,
        n_iter_no_change=epochs,
        random_state=0,
    )
    for name, loader in (("digits", load_digits), ("iris", load_iris)):
        X, y = loader(return_X_y=True)
        yield name, StandardScaler().fit_transform(X), y, params


def fit_time(cls, params, X, y):
    est = cls(**params)
    t0 = time.perf_counter()
    est.fit(X, y)
    return time.perf_counter() - t0, est


def check_same(ours, theirs):
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)


def search_times(rounds):
    from sklearn.model_selection import GridSearchCV

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    grid = {"hidden_layer_sizes": [(32,), (64,)], "alpha": [1e-4, 1e-2]}
    est = cbp.MLPClassifier(solver="adam", batch_size=32, max_iter=10, random_state=0)
    setups = [("sequential", None, 1), ("threading", "threading", 2), ("loky", "loky", 2)]
    out = {}
    for name, backend, n_jobs in setups:
        times = []
        for _ in range(rounds):
            search = GridSearchCV(est, grid, cv=3, n_jobs=n_jobs)
            t0 = time.perf_counter()
            if backend is None:
                search.fit(X, y)
            elif backend == "loky":  # the worker processes' BLAS pools
                with joblib.parallel_config(backend=backend, inner_max_num_threads=1):
                    search.fit(X, y)
            else:
                with joblib.parallel_config(backend=backend):
                    search.fit(X, y)
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds of 5 epochs")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument(
        "--search",
        action="store_true",
        help="also time GridSearchCV with joblib's threading and loky backends",
    )
    args = ap.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    epochs = 5 if args.quick else 30
    warnings.simplefilter("ignore", ConvergenceWarning)
    print(
        f"cbp {cbp.__version__} (backend {cbp.default_backend()}), one thread, "
        f"{rounds} rounds, {epochs} epochs"
    )
    print(
        f"{'workload':<8} {'sklearn s':>10} {'cbp s':>10} {'speed-up':>9}"
        "  (median of per-round ratios)"
    )
    with threadpool_limits(1):
        for name, X, y, params in workloads(epochs):
            _, ours = fit_time(cbp.MLPClassifier, params, X, y)
            _, theirs = fit_time(sknn.MLPClassifier, params, X, y)
            check_same(ours, theirs)
            t_sk, t_cbp, ratios = [], [], []
            for r in range(rounds):
                order = (sknn.MLPClassifier, cbp.MLPClassifier)
                if r % 2:
                    order = order[::-1]
                times = {cls: fit_time(cls, params, X, y)[0] for cls in order}
                t_sk.append(times[sknn.MLPClassifier])
                t_cbp.append(times[cbp.MLPClassifier])
                ratios.append(t_sk[-1] / t_cbp[-1])
            print(
                f"{name:<8} {statistics.median(t_sk):>10.4f} {statistics.median(t_cbp):>10.4f} "
                f"{statistics.median(ratios):>8.2f}x"
            )
    if args.search:
        with threadpool_limits(1):
            times = search_times(max(1, rounds // 2))
        print("GridSearchCV on digits (4 candidates x 3 folds), n_jobs=2:")
        for name, t in times.items():
            print(f"  {name:<10} {t:8.2f} s  ({times['sequential'] / t:.2f}x sequential)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
