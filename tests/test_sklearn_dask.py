"""GridSearchCV over cbp.MLPClassifier on a real dask.distributed cluster (worker processes)."""

import warnings

import numpy as np
import pytest

pytest.importorskip(
    "sklearn", minversion="1.9", reason="scikit-learn>=1.9 (cbp[sklearn]) is not installed"
)
distributed = pytest.importorskip(
    "dask.distributed", reason="dask[distributed] (cbp[dask]) is not installed"
)
joblib = pytest.importorskip("joblib", minversion="1.3", reason="joblib>=1.3 is not installed")

from sklearn.datasets import load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from cbp import MLPClassifier  # noqa: E402

GRID = {"mlpclassifier__hidden_layer_sizes": [(4,), (8,)], "mlpclassifier__alpha": [1e-4, 1e-2]}


def _search(n_jobs):
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=15, random_state=0))
    return GridSearchCV(pipe, GRID, cv=3, n_jobs=n_jobs)


def test_gridsearch_on_local_cluster_matches_local_run():
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = _search(None).fit(X, y)
    cluster = client = None
    try:
        # distributed may warn about ports, memory limits or its dashboard on a shared host
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cluster = distributed.LocalCluster(
                n_workers=2,
                processes=True,
                threads_per_worker=1,
                dashboard_address=None,
                silence_logs=40,
            )
            client = distributed.Client(cluster, timeout=30)
            client.wait_for_workers(2, timeout=60)
            with joblib.parallel_config(backend="dask"):
                remote = _search(-1).fit(X, y)
            workers = client.run(lambda: __import__("os").getpid())
    finally:
        if client is not None:
            client.close(timeout=30)
        if cluster is not None:
            cluster.close(timeout=30)
    assert len(set(workers.values())) == 2  # the cluster has two worker processes
    # the fits are deterministic (random_state=0), so where they ran changes nothing
    np.testing.assert_array_equal(
        remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    )
    assert remote.best_params_ == local.best_params_
    np.testing.assert_array_equal(remote.predict(X), local.predict(X))
