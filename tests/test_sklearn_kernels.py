"""The private kernels of src/_engine_sklearn.pxi against their NumPy twins
(cbp._reference_sklearn), on every kernel table of src/_simd.h: bit for bit,
over the vectors and the tails."""

import inspect

import numpy as np
import pytest

from cbp import _reference_sklearn as ref_sk

LEVELS = ["baseline", "avx2+fma", "avx512"]
SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, 1001]


@pytest.fixture(params=LEVELS)
def level(request, native_core):
    """Run the test with this kernel table; the previous one is restored."""
    if request.param not in native_core._simd_levels():
        pytest.skip(f"this CPU or build has no {request.param} table")
    saved = native_core._simd(request.param)
    yield request.param
    native_core._simd(saved)


def test_adam_signature_is_the_twins(native_core):
    first = native_core._sklearn_adam_update.__doc__.splitlines()[0]
    names = [p.name for p in inspect.signature(ref_sk.sklearn_adam_update).parameters.values()]
    assert first.startswith("_sklearn_adam_update(")
    assert [part.split()[-1] for part in first[first.index("(") + 1 : -1].split(", ")] == names


def _adam_operands(n, seed):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n)
    g = rng.standard_normal(n) * 10.0 ** rng.integers(-8, 3, n)
    g[rng.random(n) < 0.1] = 0.0
    m = rng.standard_normal(n) * 1e-2
    v = rng.random(n) * 1e-3
    v[rng.random(n) < 0.1] = 0.0  # sqrt(v) + eps = eps
    return p, g, m, v


@pytest.mark.parametrize("n", SIZES)
def test_adam_is_the_twin_bit_for_bit(native_core, level, n):
    """No fused multiply-add in either table: every entry rounds as NumPy's."""
    p, g, m, v = _adam_operands(n, n)
    lr_t, b1, b2, eps = 1e-3 * np.sqrt(1 - 0.999**3) / (1 - 0.9**3), 0.9, 0.999, 1e-8
    out = []
    for fn in (native_core._sklearn_adam_update, ref_sk.sklearn_adam_update):
        pp, mm, vv = p.copy(), m.copy(), v.copy()
        g_ro = g.copy()
        g_ro.flags.writeable = False
        assert fn(pp, g_ro, mm, vv, lr_t, b1, b2, eps) is True
        out.append((pp, mm, vv))
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)
    # and the formula written out, one rounding at a time
    want_m = b1 * m + (1 - b1) * g
    want_v = b2 * v + (1 - b2) * (g * g)
    np.testing.assert_array_equal(out[0][0], p + (-lr_t) * want_m / (np.sqrt(want_v) + eps))


@pytest.mark.parametrize("where", [0, 3, 4, 17, 999])
@pytest.mark.parametrize("what", ["p", "m", "v"])
def test_adam_flags_a_non_finite_value_anywhere(native_core, level, where, what):
    """A NaN or infinite new parameter, m or v (in a vector or in the tail) is
    reported, as the twin reports it."""
    n = 1000
    p, g, m, v = _adam_operands(n, 7)
    if what == "p":
        g[where] = np.nan
    elif what == "m":
        m[where] = np.inf  # m and then p become inf or NaN
    else:
        g[where] = 1e300  # g * g overflows: v is inf, p finite
    for fn in (native_core._sklearn_adam_update, ref_sk.sklearn_adam_update):
        assert fn(p.copy(), g, m.copy(), v.copy(), 1e-3, 0.9, 0.999, 1e-8) is False


def test_adam_checks_shapes(native_core):
    with pytest.raises(ValueError, match="sklearn_adam_update"):
        native_core._sklearn_adam_update(
            np.zeros(3), np.zeros(2), np.zeros(3), np.zeros(3), 1e-3, 0.9, 0.999, 1e-8
        )


# --------------------------------------------------- rollback of an epoch ---
def _engine(which, native_core, params):
    """An Engine of a 5-6-3 relu network over ``params`` (native or twin)."""
    from cbp import _codes
    from cbp import _reference as ref
    from cbp.network import Dense, Network

    net = Network([Dense(5, 6, "relu"), Dense(6, 3, "identity")], loss="half_squared_error")
    meta, floats = net._layer_table()
    cls = native_core.Engine if which == "native" else ref.Engine
    return cls(meta, floats, params, np.zeros(params.size), _codes.LOSS_HALF_SE, _codes.RED_MEAN)


@pytest.mark.parametrize("which", ["native", "twin"])
def test_a_failed_update_mid_epoch_leaves_the_values_before_its_batch(native_core, which):
    """Batch 3 of 5 makes Adam's v infinite (a gradient of 1e160 squared) with
    a finite loss: the parameters and state are those after batches 0-2, bit
    for bit, as one epoch over those rows alone leaves them."""
    from cbp import _codes
    from cbp._errors import DivergenceError

    rng = np.random.default_rng(5)
    n, P = 37, 5 * 6 + 6 + 6 * 3 + 3
    X = rng.normal(size=(n, 5))
    X[:, 0] = 0.0  # feature 0's weights get no gradient, so Adam leaves them at 1e-170 ...
    X[26, 0] = 1e160  # ... until row 26 (batch 3): x w is 1e-10, its gradient 1e160
    Y = rng.normal(size=(n, 3))
    p0 = rng.normal(0, 0.5, P)
    p0[0:6] = 1e-170  # W1[0, :]
    h = np.zeros(_codes.N_OPTIMIZER_HYPER)
    h[_codes.HYPER_LEARNING_RATE], h[_codes.HYPER_BETA1], h[_codes.HYPER_BETA2] = 0.01, 0.9, 0.999
    h[_codes.HYPER_EPSILON] = 1e-8
    args = (_codes.LOSS_SK_SQUARED, 1e-3, _codes.OPT_ADAM_SK, h)
    p, state = p0.copy(), np.zeros(2 * P)
    with pytest.raises(DivergenceError, match="the update made a parameter NaN or infinite"):
        _engine(which, native_core, p).sklearn_epoch(X, Y, None, None, 8, *args, state, 2.0)
    q, want_state = p0.copy(), np.zeros(2 * P)
    _, t = _engine(which, native_core, q).sklearn_epoch(
        X[:24], Y[:24], None, None, 8, *args, want_state, 2.0
    )
    assert t == 5.0
    assert not np.array_equal(q, p0)
    np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(state, want_state)


# ------------------------------------------------ labels of the classifier ---
@pytest.mark.parametrize(
    "y",
    [
        np.array([3, 1, 2, 3, 1, 1]),  # multiclass
        np.array([-5, 7, 7, -5, 7]),  # binary
        np.array([4, 4, 4]),  # one class
        np.array([0, 1, 2, 1], dtype=np.uint8),
        np.array([2, 0, 9, 9, 5], dtype=np.int32),
        np.array([True, False, True]),
        np.array([False, False]),
        np.arange(40) % 13,
    ],
    ids=lambda y: f"{y.dtype}-{np.unique(y).size}",
)
def test_integer_labels_binarize_as_label_binarizer(y):
    """cbp.sklearn's one-np.unique path gives LabelBinarizer's fitted state and
    transform (as bool), and its inverse_transform maps back to y."""
    pytest.importorskip("sklearn")
    from sklearn.preprocessing import LabelBinarizer

    from cbp._sklearn_inputs import binarize_integer_labels

    lb, Y = binarize_integer_labels(y)
    want = LabelBinarizer().fit(y)
    assert lb.y_type_ == want.y_type_
    assert lb.sparse_input_ == want.sparse_input_
    assert lb.classes_.dtype == want.classes_.dtype
    np.testing.assert_array_equal(lb.classes_, want.classes_)
    want_Y = want.transform(y).astype(bool)
    assert Y.dtype == want_Y.dtype and Y.shape == want_Y.shape
    np.testing.assert_array_equal(Y, want_Y)
    np.testing.assert_array_equal(lb.transform(y), want.transform(y))
    if np.unique(y).size > 1:
        np.testing.assert_array_equal(lb.inverse_transform(Y.astype(float)), y)


@pytest.mark.parametrize(
    "y",
    [np.array([0.0, 1.0]), np.array(["a", "b"]), np.zeros((3, 2), dtype=int), np.array([], int)],
    ids=["float", "str", "2-d", "empty"],
)
def test_other_labels_take_label_binarizer(y):
    pytest.importorskip("sklearn")
    from cbp._sklearn_inputs import binarize_integer_labels

    assert binarize_integer_labels(y) is None


# ------------------------------------------- parameter validation, cached ---
def test_a_validated_parameter_set_does_not_excuse_another():
    """Parameters that passed once are not re-checked, but any other value,
    or the same value with another type (1 for True), still is."""
    pytest.importorskip("sklearn")
    from sklearn.utils._param_validation import InvalidParameterError

    import cbp

    X = np.random.default_rng(0).normal(size=(20, 3))
    y = np.arange(20) % 2
    clf = cbp.MLPClassifier((4,), max_iter=2, shuffle=True, random_state=0)
    with pytest.warns(Warning):
        clf.fit(X, y)
        clf.fit(X, y)  # the cached set
    for bad in (dict(shuffle=1), dict(alpha=-1.0), dict(hidden_layer_sizes="4")):
        with pytest.raises(InvalidParameterError):
            cbp.MLPClassifier((4,), max_iter=2, random_state=0).set_params(**bad).fit(X, y)
    assert cbp.MLPClassifier._get_param_names() == sorted(cbp.MLPClassifier().get_params())


# ------------------------------------------- the sklearn engine's dgemm rule ---
@pytest.mark.parametrize("rule", [(1, 1), (1 << 62, 1 << 30)], ids=["dgemm", "loops"])
def test_epoch_on_dgemm_or_the_loops_is_the_twins(native_core, rule):
    """Every layer forced onto dgemm, or onto the loops: the epoch agrees with
    the twin to 1e-12 (a 6-16-12-10 relu network, softmax, Adam, weighted)."""
    from cbp import _codes
    from cbp import _reference as ref
    from cbp.network import Dense, Network

    rng = np.random.default_rng(11)
    sizes = [6, 16, 12, 10]
    net = Network(
        [
            Dense(a, b, "relu" if i < 2 else "softmax")
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
        ],
        loss="categorical_crossentropy",
    )
    meta, floats = net._layer_table()
    P = net.parameters.size
    p0 = rng.normal(0, 0.5, P)
    X = rng.normal(size=(50, 6))
    Y = np.eye(10)[rng.integers(0, 10, 50)]
    sw = rng.uniform(0.5, 2.0, 50)
    h = np.zeros(_codes.N_OPTIMIZER_HYPER)
    h[_codes.HYPER_LEARNING_RATE], h[_codes.HYPER_BETA1], h[_codes.HYPER_BETA2] = 0.01, 0.9, 0.999
    h[_codes.HYPER_EPSILON] = 1e-8
    out = []
    saved = native_core._sklearn_blas_thresholds(*rule)
    try:
        for cls in (native_core.Engine, ref.Engine):
            p, state = p0.copy(), np.zeros(2 * P)
            e = cls(meta, floats, p, np.zeros(P), _codes.LOSS_CCE, _codes.RED_MEAN)
            total, _ = e.sklearn_epoch(
                X, Y, sw, None, 16, _codes.LOSS_SK_LOG, 1e-3, _codes.OPT_ADAM_SK, h, state, 0.0
            )
            out.append((total, p, state))
    finally:
        assert native_core._sklearn_blas_thresholds(*saved) == rule
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
