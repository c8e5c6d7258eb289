"""cbp.MLPClassifier against sklearn.neural_network.MLPClassifier: fit time, one thread.

    python bench/sklearn_bench.py            # 7 rounds per workload
    python bench/sklearn_bench.py --quick    # 3 rounds, 5 epochs (a smoke test)
    python bench/sklearn_bench.py --search   # also: GridSearchCV, threads vs processes

Workloads: digits (1797 x 64, 10 classes) and iris (150 x 4, 3 classes),
standardized; hidden (64,), adam, batch 32, 30 epochs with early stopping
off and tol=0, n_iter_no_change=max_iter so both run every epoch.  Then the
same two data sets with scikit-learn's defaults (``MLPClassifier()``:
hidden (100,), adam, batch min(200, n), up to 200 epochs, stopping when the
loss stops improving by tol=1e-4), random_state=0 only (``--quick``: 5
epochs at most), timed over half the rounds (at least 3).  Before timing,
the two fits are checked to give the same coefs_ and loss_curve_ (rtol
1e-9).  Each round times one fit of each, in alternating order; the
speed-up is the median over rounds of sklearn's time / cbp's time.  BLAS and
OpenMP are limited to one thread (threadpoolctl).  The first line names the
cbp that was imported: run from a checkout, ``PYTHONPATH=.`` picks its own.

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
from pathlib import Path

import joblib
import numpy as np
from sklearn import neural_network as sknn
from sklearn.datasets import load_digits, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import cbp


def workloads(epochs, quick=False):
    """(name, X, y, params, share of the rounds) of every workload."""
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
    defaults = dict(random_state=0, **({"max_iter": 5} if quick else {}))
    data = {}
    for name, loader in (("digits", load_digits), ("iris", load_iris)):
        X, y = loader(return_X_y=True)
        data[name] = StandardScaler().fit_transform(X), y
    for name in data:
        yield name, *data[name], params, 1.0
    for name in data:
        yield f"{name}-defaults", *data[name], defaults, 0.5


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
        f"cbp {cbp.__version__} from {Path(cbp.__file__).parent} (backend "
        f"{cbp.default_backend()}), one thread, {rounds} rounds, {epochs} epochs"
    )
    print(
        f"{'workload':<16} {'sklearn s':>10} {'cbp s':>10} {'speed-up':>9} {'epochs':>6}"
        "  (median of per-round ratios)"
    )
    with threadpool_limits(1):
        for name, X, y, params, share in workloads(epochs, args.quick):
            _, ours = fit_time(cbp.MLPClassifier, params, X, y)
            _, theirs = fit_time(sknn.MLPClassifier, params, X, y)
            check_same(ours, theirs)
            t_sk, t_cbp, ratios = [], [], []
            n_rounds = rounds if share >= 1 else max(3, round(rounds * share))
            for r in range(n_rounds):
                order = (sknn.MLPClassifier, cbp.MLPClassifier)
                if r % 2:
                    order = order[::-1]
                times = {cls: fit_time(cls, params, X, y)[0] for cls in order}
                t_sk.append(times[sknn.MLPClassifier])
                t_cbp.append(times[cbp.MLPClassifier])
                ratios.append(t_sk[-1] / t_cbp[-1])
            print(
                f"{name:<16} {statistics.median(t_sk):>10.4f} {statistics.median(t_cbp):>10.4f} "
                f"{statistics.median(ratios):>8.2f}x {ours.n_iter_:>6}"
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
