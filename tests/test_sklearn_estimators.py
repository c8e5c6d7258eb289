"""cbp.MLPClassifier / cbp.MLPRegressor against scikit-learn's own MLP."""

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip(
    "sklearn", minversion="1.9", reason="scikit-learn>=1.9 (cbp[sklearn]) is not installed"
)

from sklearn import neural_network as sknn  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_iris, make_multilabel_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import cbp  # noqa: E402
from cbp import MLPClassifier, MLPRegressor  # noqa: E402

RTOL = 1e-9
ACTIVATIONS = ["identity", "logistic", "tanh", "relu"]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


def _pair(cls, **params):
    ours = (MLPClassifier if cls == "clf" else MLPRegressor)(**params)
    theirs = (sknn.MLPClassifier if cls == "clf" else sknn.MLPRegressor)(**params)
    return ours, theirs


def assert_same_fit(ours, theirs, lbfgs=False):
    """The fitted state of ours equals scikit-learn's to RTOL (atol for near-zero entries)."""
    for name in ("coefs_", "intercepts_"):
        for a, b in zip(getattr(ours, name), getattr(theirs, name), strict=True):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-12, err_msg=name)
    for name in ("n_iter_", "t_", "n_layers_", "n_outputs_", "out_activation_", "n_features_in_"):
        assert getattr(ours, name) == getattr(theirs, name), name
    if lbfgs:
        return
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=RTOL)
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=RTOL)
    if theirs.validation_scores_ is None:
        assert ours.validation_scores_ is None and ours.best_validation_score_ is None
        np.testing.assert_allclose(ours.best_loss_, theirs.best_loss_, rtol=RTOL)
    else:
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=RTOL)
        np.testing.assert_allclose(
            ours.best_validation_score_, theirs.best_validation_score_, rtol=RTOL
        )
        assert ours.best_loss_ is None and theirs.best_loss_ is None


def _iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _binary():
    X, y = _iris()
    return X[:100], y[:100]


def _multilabel():
    X, Y = make_multilabel_classification(n_samples=90, n_features=6, n_classes=3, random_state=0)
    return StandardScaler().fit_transform(X), Y


def _regression(n_targets=1):
    X, y = make_regression(
        n_samples=90, n_features=5, n_targets=n_targets, noise=0.5, random_state=0
    )
    return X, y / y.std()


DATA = {
    "binary": _binary,
    "multiclass": _iris,
    "multilabel": _multilabel,
    "regression": _regression,
    "regression2": lambda: _regression(2),
}


# -- conformance ---------------------------------------------------------------


@parametrize_with_checks(
    # the instances of scikit-learn's own check of its MLP (max_iter=100)
    [MLPClassifier(max_iter=100, random_state=0), MLPRegressor(max_iter=100, random_state=0)],
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# -- fidelity: the same numbers as scikit-learn --------------------------------


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("target", list(DATA))
def test_same_numbers_as_sklearn(solver, activation, target):
    X, y = DATA[target]()
    kind = "reg" if target.startswith("regression") else "clf"
    ours, theirs = _pair(
        kind,
        hidden_layer_sizes=(6, 4),
        activation=activation,
        solver=solver,
        batch_size=16,
        max_iter=10,
        learning_rate_init=0.01,
        alpha=1e-3,
        random_state=3,
    )
    _quiet(ours.fit, X, y)
    _quiet(theirs.fit, X, y)
    assert_same_fit(ours, theirs)
    np.testing.assert_allclose(
        ours.predict(X) if kind == "reg" else ours.predict_proba(X),
        theirs.predict(X) if kind == "reg" else theirs.predict_proba(X),
        rtol=1e-9,
        atol=1e-12,
    )


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("target", ["binary", "multiclass", "multilabel", "regression"])
def test_early_stopping_same_as_sklearn(solver, target):
    X, y = DATA[target]()
    kind = "reg" if target.startswith("regression") else "clf"
    ours, theirs = _pair(
        kind,
        hidden_layer_sizes=(8,),
        solver=solver,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=3,
        max_iter=25,
        learning_rate_init=0.05,
        batch_size=10,
        random_state=1,
    )
    _quiet(ours.fit, X, y)
    _quiet(theirs.fit, X, y)
    assert len(theirs.validation_scores_) >= 4
    assert_same_fit(ours, theirs)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("target", ["binary", "multiclass", "multilabel", "regression2"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_sample_weight_same_as_sklearn(solver, target, early_stopping):
    X, y = DATA[target]()
    sw = np.random.default_rng(0).uniform(0.1, 3.0, X.shape[0])
    kind = "reg" if target.startswith("regression") else "clf"
    ours, theirs = _pair(
        kind,
        hidden_layer_sizes=(5,),
        solver=solver,
        batch_size=13,
        max_iter=10,
        early_stopping=early_stopping,
        alpha=0.01,
        learning_rate_init=0.02,
        random_state=2,
    )
    _quiet(ours.fit, X, y, sample_weight=sw)
    _quiet(theirs.fit, X, y, sample_weight=sw)
    assert_same_fit(ours, theirs)


@pytest.mark.parametrize("schedule", ["constant", "invscaling", "adaptive"])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_schedules_same_as_sklearn(schedule, momentum, nesterov):
    X, y = _iris()
    # tol large enough that 'adaptive' divides the rate by 5 several times
    ours, theirs = _pair(
        "clf",
        hidden_layer_sizes=(6,),
        solver="sgd",
        learning_rate=schedule,
        momentum=momentum,
        nesterovs_momentum=nesterov,
        learning_rate_init=0.1,
        power_t=0.3,
        batch_size=20,
        max_iter=30,
        tol=0.05 if schedule == "adaptive" else 1e-4,
        n_iter_no_change=2,
        random_state=4,
    )
    _quiet(ours.fit, X, y)
    _quiet(theirs.fit, X, y)
    assert_same_fit(ours, theirs)
    assert ours._optimizer.learning_rate == pytest.approx(
        theirs._optimizer.learning_rate, rel=1e-12
    )
    if schedule == "adaptive":
        assert theirs._optimizer.learning_rate < 0.1 / 5


@pytest.mark.parametrize("shuffle", [True, False])
def test_no_shuffle_and_auto_batch_same_as_sklearn(shuffle):
    X, y = _regression()
    ours, theirs = _pair(
        "reg", hidden_layer_sizes=(7,), shuffle=shuffle, max_iter=10, random_state=5
    )
    _quiet(ours.fit, X, y)
    _quiet(theirs.fit, X, y)
    assert_same_fit(ours, theirs)


def test_poisson_same_as_sklearn():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 4))
    y = rng.poisson(np.exp(0.3 * X[:, 0]))
    ours, theirs = _pair(
        "reg",
        loss="poisson",
        hidden_layer_sizes=(5,),
        max_iter=10,
        learning_rate_init=0.01,
        random_state=0,
    )
    _quiet(ours.fit, X, y)
    _quiet(theirs.fit, X, y)
    assert_same_fit(ours, theirs)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9)
    np.testing.assert_allclose(
        np.exp(ours.network_.predict(X)).ravel(), theirs.predict(X), rtol=1e-9
    )


@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_warm_start_same_as_sklearn(kind):
    X, y = _iris() if kind == "clf" else _regression()
    ours, theirs = _pair(
        kind,
        hidden_layer_sizes=(5,),
        max_iter=4,
        warm_start=True,
        learning_rate_init=0.01,
        random_state=0,
    )
    for _ in range(3):
        _quiet(ours.fit, X, y)
        _quiet(theirs.fit, X, y)
    assert len(theirs.loss_curve_) == 12
    assert_same_fit(ours, theirs)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_same_as_sklearn(solver):
    X, y = _iris()
    ours, theirs = _pair(
        "clf", hidden_layer_sizes=(5,), solver=solver, batch_size=30, random_state=0
    )
    classes = np.unique(y)
    for i in range(4):
        part = slice(0, 75) if i % 2 == 0 else slice(75, 150)
        ours.partial_fit(X[part], y[part], classes=classes)
        theirs.partial_fit(X[part], y[part], classes=classes)
    assert_same_fit(ours, theirs)
    reg_ours, reg_theirs = _pair("reg", hidden_layer_sizes=(5,), solver=solver, random_state=0)
    Xr, yr = _regression()
    for _ in range(3):
        reg_ours.partial_fit(Xr, yr)
        reg_theirs.partial_fit(Xr, yr)
    assert_same_fit(reg_ours, reg_theirs)


@pytest.mark.parametrize("target", ["binary", "multiclass", "multilabel", "regression2"])
def test_lbfgs_same_as_sklearn(target):
    X, y = DATA[target]()
    kind = "reg" if target.startswith("regression") else "clf"
    ours, theirs = _pair(kind, hidden_layer_sizes=(6,), solver="lbfgs", max_iter=60, random_state=0)
    _quiet(ours.fit, X, y)
    _quiet(theirs.fit, X, y)
    assert abs(ours.loss_ - theirs.loss_) <= 1e-6
    assert ours.n_iter_ == theirs.n_iter_
    assert not hasattr(ours, "partial_fit")


def test_float32_int_bool_features_train_in_float64():
    X, y = _iris()
    for Xt in (X.astype(np.float32), (X * 10).astype(int), X > 0):
        ours, theirs = _pair("clf", hidden_layer_sizes=(4,), max_iter=5, random_state=0)
        _quiet(ours.fit, Xt, y)
        _quiet(theirs.fit, Xt.astype(np.float64), y)
        assert_same_fit(ours, theirs)
        assert ours.coefs_[0].dtype == np.float64


# -- network_ ------------------------------------------------------------------


def test_network_weights_are_coefs():
    X, y = _iris()
    clf = _quiet(MLPClassifier((5, 4), max_iter=5, random_state=0).fit, X, y)
    net = clf.network_
    assert isinstance(net, cbp.Network) and len(net.layers) == 3
    for layer, W, b in zip(net.layers, clf.coefs_, clf.intercepts_):
        assert np.shares_memory(layer.weights, W) and np.shares_memory(layer.bias, b)
    assert [layer.activation for layer in net.layers] == ["relu", "relu", "softmax"]
    np.testing.assert_allclose(net.predict(X), clf.predict_proba(X), rtol=1e-12)
    clf.coefs_[1][...] = 0.0  # the views write through
    assert np.all(net.layers[1].weights == 0)
    clone_of = pickle.loads(pickle.dumps(clf))
    for layer, W in zip(clone_of.network_.layers, clone_of.coefs_):
        assert np.shares_memory(layer.weights, W)
    np.testing.assert_array_equal(clone_of.predict_proba(X), clf.predict_proba(X))


def test_predict_from_several_threads(monkeypatch):
    """network_ serves one thread at a time; the others predict with the NumPy forward."""
    from concurrent.futures import ThreadPoolExecutor

    from cbp import _sklearn_epoch

    X, y = _iris()
    clf = _quiet(MLPClassifier((64,), max_iter=2, random_state=0).fit, X, y)
    Xb = np.tile(X, (100, 1))  # long enough native calls for the threads to meet
    expected = clf.predict_proba(Xb)
    numpy_calls = []
    forward = _sklearn_epoch.forward
    monkeypatch.setattr(_sklearn_epoch, "forward", lambda *a: numpy_calls.append(1) or forward(*a))

    def work(_):
        return [clf.predict_proba(Xb) for _ in range(10)]

    with ThreadPoolExecutor(4) as pool:
        for batch in pool.map(work, range(4)):
            for P in batch:
                np.testing.assert_allclose(P, expected, rtol=1e-12, atol=1e-15)
    if not numpy_calls:
        pytest.skip("the threads never met inside network_ on this run")


@pytest.mark.parametrize("backend", ["numpy", "native"])
def test_backend_parameter(backend):
    if backend == "native" and not cbp.native_available():
        pytest.skip("the native core is not built")
    X, y = _iris()
    clf = _quiet(MLPClassifier((5,), max_iter=5, random_state=0, backend=backend).fit, X, y)
    assert clf.network_.backend == backend


# -- cbp extras ----------------------------------------------------------------


def test_class_weight_is_sample_weight():
    X, y = _iris()
    keep = np.r_[0:50, 50:70, 100:150]  # unbalanced
    X, y = X[keep], y[keep]
    from sklearn.utils.class_weight import compute_sample_weight

    for cw in ("balanced", {0: 1.0, 1: 4.0, 2: 0.5}):
        ours = _quiet(MLPClassifier((5,), max_iter=8, class_weight=cw, random_state=0).fit, X, y)
        theirs = _quiet(
            sknn.MLPClassifier((5,), max_iter=8, random_state=0).fit,
            X,
            y,
            sample_weight=compute_sample_weight(cw, y),
        )
        assert_same_fit(ours, theirs)
    with pytest.raises(ValueError, match="class_weight"):
        MLPClassifier(class_weight="bad").fit(X, y)
    Xm, Ym = _multilabel()
    with pytest.raises(ValueError, match="multilabel"):
        MLPClassifier(class_weight="balanced").fit(Xm, Ym)


# -- scikit-learn integration --------------------------------------------------


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["setosa", "versicolor", "virginica"]),
        np.array([10, -3, 7]),
        np.array(["x", "y", "z"], dtype=object),
    ],
    ids=["str", "int", "object"],
)
def test_any_labels(labels):
    X, y = _iris()
    y_named = labels[y]
    clf = _quiet(MLPClassifier((5,), max_iter=20, random_state=0).fit, X, y_named)
    ref = _quiet(sknn.MLPClassifier((5,), max_iter=20, random_state=0).fit, X, y_named)
    np.testing.assert_array_equal(clf.classes_, ref.classes_)
    np.testing.assert_array_equal(clf.predict(X), ref.predict(X))
    assert clf.score(X, y_named) == ref.score(X, y_named)


def test_bool_labels():
    X, y = _binary()
    yb = y == 1
    clf = _quiet(MLPClassifier((5,), max_iter=20, random_state=0).fit, X, yb)
    assert clf.predict(X).dtype == bool
    assert set(clf.classes_) == {False, True}


def test_dataframe_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = _iris()
    df = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    clf = _quiet(MLPClassifier((5,), max_iter=5, random_state=0).fit, df, y)
    np.testing.assert_array_equal(clf.feature_names_in_, ["sl", "sw", "pl", "pw"])
    np.testing.assert_allclose(clf.predict_proba(df), clf.network_.predict(X), rtol=1e-12)
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X)
    _quiet(clf.fit, X.tolist(), y.tolist())
    assert not hasattr(clf, "feature_names_in_")


def test_pipeline_gridsearch_cv_clone_pickle():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=30, random_state=0))
    grid = GridSearchCV(
        pipe,
        {"mlpclassifier__hidden_layer_sizes": [(4,), (8,)], "mlpclassifier__alpha": [1e-4, 1e-1]},
        cv=3,
    )
    _quiet(grid.fit, X, y)
    assert set(grid.best_params_) == {"mlpclassifier__hidden_layer_sizes", "mlpclassifier__alpha"}
    scores = _quiet(cross_val_score, pipe, X, y, cv=3)
    ref = _quiet(
        cross_val_score,
        make_pipeline(StandardScaler(), sknn.MLPClassifier(max_iter=30, random_state=0)),
        X,
        y,
        cv=3,
    )
    np.testing.assert_allclose(scores, ref)
    est = grid.best_estimator_
    c = clone(est)
    assert c.get_params()["mlpclassifier__alpha"] == est.get_params()["mlpclassifier__alpha"]
    assert not hasattr(c[-1], "coefs_")
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))


def test_errors_follow_sklearn():
    X, y = _iris()
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(X)
    with pytest.raises(ValueError, match="'solver' parameter"):
        MLPClassifier(solver="bogus").fit(X, y)
    with pytest.raises(ValueError, match="'backend' parameter"):
        MLPRegressor(backend="gpu").fit(X, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes must be > 0"):
        MLPClassifier(hidden_layer_sizes=[3, 0]).fit(X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(X, y)
    with pytest.raises(AttributeError, match="has no attribute 'partial_fit'"):
        _ = MLPClassifier(solver="lbfgs").partial_fit
    clf = _quiet(MLPClassifier((3,), max_iter=2).fit, X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :2])
    with pytest.raises(ValueError, match="warm_start can only be used"):
        clf.set_params(warm_start=True).fit(X[y < 2], y[y < 2])
    with pytest.warns(UserWarning, match="It is going to be clipped"):
        _quiet(MLPRegressor(hidden_layer_sizes=(3,), batch_size=1000, max_iter=2).fit, X, y)


def test_import_cbp_does_not_import_sklearn():
    code = "import sys, cbp; assert 'sklearn' not in sys.modules; print(sorted(dir(cbp)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "MLPClassifier" in out.stdout


def test_missing_sklearn_names_the_extra():
    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "import cbp\n"
        "try:\n"
        "    cbp.MLPClassifier\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install "cbp[sklearn]"' in out.stdout
