"""The native core against its NumPy twin, pair by pair (``cbp._registry``).

Every kernel runs on the same random operands on both sides; the outputs must
agree to ``RTOL = 1e-12``.  An absolute slack, always ``RTOL`` times the size
of the terms involved, is allowed only where the two sides legitimately sum
in a different order (BLAS and NumPy's pairwise sums against plain loops),
so that a result near zero that comes from cancelling large terms is judged
against the terms, not against itself.  Each such place says why.

Every kernel gets read-only inputs and its ``out`` arrays pre-filled with NaN:
an input written to raises, and an output left partly unwritten shows up.

Whole ``Engine`` objects are compared call by call on random networks, and
over a 200-step training run at 1e-9.
"""

import contextlib
import functools
import inspect
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cbp
from cbp import _codes, _registry, optim
from cbp import _reference as ref

# tests/conftest.py's native_core: skipped without the core, failed under
# CBP_REQUIRE_NATIVE=1
needs_native = pytest.mark.usefixtures("native_core")

RTOL = 1e-12

#: the hypothesis budget of the property tests in this module (the whole file
#: runs in well under 30 s): 60 examples a test, 25 a case for the tests that
#: are parametrized over a product of codes, which multiplies the examples.
examples = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples every run: CI is reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
product_examples = settings(examples, max_examples=25)

BATCH = st.integers(1, 40)
WIDTH = st.integers(1, 17)
LINEAR_RANGE = 1e3  # operands of the kernels that are linear in them
EXP_RANGE = 40.0  # pre-activations that go through exp, expm1 or tanh
REDUCTION_NAMES = list(_codes.REDUCTIONS)
ACT_NAMES = list(_codes.ACTIVATIONS)
LOSS_NAMES = list(_codes.LOSSES)
# One representative name a code (the first one listed), for the products.
CANONICAL_ACTS = list({code: name for name, code in reversed(_codes.ACTIVATIONS.items())}.values())


@pytest.fixture(scope="module")
def core(native_core):
    """The compiled module (conftest's native_core)."""
    return native_core


# ----------------------------------------------------------------- helpers ---
def assert_close(actual, desired, atol=0.0, rtol=RTOL, what="result"):
    """|actual - desired| <= rtol * |desired| + atol elementwise (atol may be an array)."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape} != {desired.shape}"
    assert actual.dtype == desired.dtype == np.float64, f"{what}: dtype {actual.dtype}"
    same = actual == desired  # also covers equal infinities
    err = np.zeros(desired.shape)
    np.subtract(actual, desired, where=~same, out=err)  # skips equal infinities
    err = np.abs(err)
    bound = rtol * np.abs(desired) + atol
    bad = ~(same | (err <= bound))
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), bad.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements differ; worst at {i}: "
            f"native {actual[i]!r} vs reference {desired[i]!r} "
            f"(bound {np.broadcast_to(bound, bad.shape)[i]!r})"
        )


@contextlib.contextmanager
def untouched(*arrays):
    """Make the arrays read-only for the block, then check that their bytes did not change."""
    arrays = [a for a in arrays if a is not None]
    before = [(a.tobytes(), a.flags.writeable) for a in arrays]
    for a in arrays:
        a.flags.writeable = False
    try:
        yield
    finally:
        for a, (_, writeable) in zip(arrays, before):
            a.flags.writeable = writeable
    for k, (a, (data, _)) in enumerate(zip(arrays, before)):
        assert a.tobytes() == data, f"input {k} was modified"


def nans(*shape):
    """An out array that a kernel must overwrite completely."""
    return np.full(shape, np.nan)


def twins(name, core):
    """The (native, reference) pair registered under name."""
    native, reference = _registry.KERNELS[name]
    assert native is getattr(core, name)
    return native, reference


def _dense(shape, lo, hi, seed):
    """Dense random values in [lo, hi] across several magnitudes, some exactly 0."""
    rng = np.random.default_rng(seed)
    A = rng.uniform(lo, hi, shape) * 10.0 ** rng.integers(-6, 1, shape)
    A[rng.random(shape) < 0.1] = 0.0
    return A


@functools.cache  # building a strategy costs more than drawing from it
def matrices(shape, lo=-LINEAR_RANGE, hi=LINEAR_RANGE):
    """Finite float64 arrays in [lo, hi]: hypothesis' own (sparse, edge values
    such as 0, -0.0, subnormals and the bounds) or dense random ones."""
    edge = hnp.arrays(np.float64, shape, elements=st.floats(lo, hi, allow_nan=False))
    dense = st.builds(_dense, st.just(shape), st.just(lo), st.just(hi), st.integers(0, 2**32 - 1))
    return st.one_of(edge, dense)


@functools.cache
def probabilities(shape):
    """Predictions in [0, 1], with entries exactly at 0 and 1 to exercise clipping."""

    def draw(seed):
        rng = np.random.default_rng(seed)
        P = rng.random(shape)
        P[rng.random(shape) < 0.15] = 0.0
        P[rng.random(shape) < 0.15] = 1.0
        return P

    edge = hnp.arrays(np.float64, shape, elements=st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0))
    return st.one_of(edge, st.builds(draw, st.integers(0, 2**32 - 1)))


@functools.cache
def targets(loss, shape):
    """Valid targets: any values for the squared errors, one-hot or probability rows
    for categorical cross-entropy, hard or soft labels in [0, 1] for binary."""
    n, j = shape
    if loss in (_codes.LOSS_SE, _codes.LOSS_HALF_SE):
        return matrices(shape)

    def rows(seed, one_hot):
        rng = np.random.default_rng(seed)
        if one_hot:
            return np.eye(j)[rng.integers(0, j, n)]
        Y = rng.random(shape) * (rng.random(shape) < 0.7)
        Y[np.arange(n), rng.integers(0, j, n)] += 0.5  # no all-zero row
        return Y / Y.sum(axis=1, keepdims=True)

    def labels(seed, hard):
        rng = np.random.default_rng(seed)
        return (rng.random(shape) < 0.5).astype(float) if hard else rng.random(shape)

    build = rows if loss == _codes.LOSS_CCE else labels
    return st.builds(build, st.integers(0, 2**32 - 1), st.booleans())


def scale(loss, reduction, n, j):
    """The factor a reduction applies (written out again, not taken from cbp)."""
    if reduction == _codes.RED_SUM:
        return 1.0
    return 1.0 / n if loss == _codes.LOSS_CCE else 1.0 / (n * j)


def loss_atol(loss, reduction, n, j):
    """Slack of a loss value.  Categorical cross-entropy sums each row of P * Y in
    another order on each side, which moves -log(row) by ~eps absolutely: far
    more than eps relatively when the row is close to 1 and its loss close to 0.
    The other losses add non-negative terms, which rtol covers in any order."""
    if loss == _codes.LOSS_CCE:
        return RTOL * scale(loss, reduction, n, j) * n
    return 0.0


def softmax_jvp_atol(A, dA):
    """Slack of the softmax backward A * (dA - sum(dA * A)): the row sum is taken
    in another order, and dA - sum may cancel, so judge it against its terms."""
    return RTOL * A * (np.abs(dA) + np.sum(np.abs(dA * A), axis=1, keepdims=True))


def alpha_strategy(name):
    return st.just(_codes.DEFAULT_ALPHA.get(name, 0.0)) | st.floats(0.0, 3.0)


def z_range(code):
    """Pre-activations: large for the piecewise-linear functions, sane for exp."""
    linear = code in (_codes.ACT_IDENTITY, _codes.ACT_RELU, _codes.ACT_LEAKY)
    return LINEAR_RANGE if linear else EXP_RANGE


# ---------------------------------------------------------------- registry ---
def test_registry_matches_reference_all():
    """Every name of the registry is in the twin, and every public name of the
    twin is registered."""
    assert set(ref.__all__) == set(_registry.NAMES)
    core = cbp._backend._core
    for name, native, reference in _registry.pairs():
        assert reference is getattr(ref, name)
        assert native is (getattr(core, name) if core is not None else None)


@needs_native
def test_registry_names_exist_in_core(core):
    """Every registered name is in the core, and every public callable of the core is registered."""
    for name in _registry.NAMES:
        assert callable(getattr(core, name, None)), f"cbp._core lacks {name}"
    own = {
        n
        for n, v in vars(core).items()
        if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == core.__name__
    }
    assert own <= set(_registry.NAMES), (
        f"unregistered kernels in cbp._core: {own - set(_registry.NAMES)}"
    )


def _native_parameters(obj):
    """Parameter names and defaults from the signature Cython embeds in the
    docstring (``name(...)``, or ``Engine.name(self, ...)`` for a method)."""
    first = (obj.__doc__ or "").splitlines()[0]
    match = re.fullmatch(r"[\w.]+\((.*)\)", first)
    assert match, f"no embedded signature in {obj!r}: {first!r}"
    params = []
    for part in re.split(r",\s*(?![^\[]*\])", match.group(1)):
        decl, _, default = part.partition("=")
        params.append((decl.split()[-1], default.strip() or None))
    return params


@needs_native
@pytest.mark.parametrize("name", list(_registry.NAMES))
def test_registry_signatures_match(core, name):
    """Same parameter names, order and defaults on both sides."""
    sig = inspect.signature(getattr(ref, name))
    expected = [
        (p.name, None if p.default is p.empty else repr(p.default)) for p in sig.parameters.values()
    ]
    assert _native_parameters(getattr(core, name)) == expected


ENGINE_METHODS = sorted(
    n for n, v in vars(ref.Engine).items() if not n.startswith("_") and callable(v)
)


@needs_native
def test_engine_methods_are_the_twins(core):
    """The native Engine has exactly the twin's public methods."""
    native = {
        n for n in dir(core.Engine) if not n.startswith("_") and callable(getattr(core.Engine, n))
    }
    assert native == set(ENGINE_METHODS)


@needs_native
@pytest.mark.parametrize("method", ENGINE_METHODS)
def test_engine_signatures_match(core, method):
    """Every Engine method has the twin's parameter names, order and defaults."""
    sig = inspect.signature(getattr(ref.Engine, method))
    expected = [
        (p.name, None if p.default is p.empty else repr(p.default)) for p in sig.parameters.values()
    ]
    assert _native_parameters(getattr(core.Engine, method)) == expected


@needs_native
def test_codes_and_columns_match_the_native_ones(core):
    """Every code and table column compiled into the core (src/_codes.pxd)
    has the same name and value in cbp/_codes.py, and the other way round."""
    native = core._columns()
    python = {
        n: v
        for n, v in vars(_codes).items()
        if n.isupper() and isinstance(v, int) and not isinstance(v, bool)
    }
    assert sorted(native) == sorted(python)
    assert {n: python[n] for n in native} == native


def test_every_registered_kernel_has_a_property_test():
    """The registry drives this file: a new kernel needs a comparison here."""
    tested = {n[len("test_") :].split("__")[0] for n in globals() if n.startswith("test_")}
    assert set(_registry.NAMES) <= tested, f"untested pairs: {set(_registry.NAMES) - tested}"


# ------------------------------------------------------------------- dense ---
@needs_native
@examples
@given(data=st.data(), n=BATCH, ni=WIDTH, no=WIDTH, with_bias=st.booleans())
def test_dense_forward(core, data, n, ni, no, with_bias):
    X = data.draw(matrices((n, ni)), "X")
    W = data.draw(matrices((ni, no)), "W")
    b = data.draw(matrices((no,)), "b") if with_bias else None
    native, reference = twins("dense_forward", core)
    out_n, out_r = nans(n, no), nans(n, no)
    with untouched(X, W, b):
        assert native(X, W, b, out_n) is out_n
        assert reference(X, W, b, out_r) is out_r
    # BLAS and the native loop add the ni products of a row in different orders.
    terms = np.abs(X) @ np.abs(W) + (0.0 if b is None else np.abs(b))
    assert_close(out_n, out_r, RTOL * terms, what="Z")


@needs_native
@examples
@given(data=st.data(), n=BATCH, ni=WIDTH, no=WIDTH, with_db=st.booleans(), with_dX=st.booleans())
def test_dense_backward(core, data, n, ni, no, with_db, with_dX):
    X = data.draw(matrices((n, ni)), "X")
    W = data.draw(matrices((ni, no)), "W")
    dZ = data.draw(matrices((n, no)), "dZ")
    native, reference = twins("dense_backward", core)
    outs = {}
    for side, kernel in (("native", native), ("numpy", reference)):
        dW = nans(ni, no)
        db = nans(no) if with_db else None
        dX = nans(n, ni) if with_dX else None
        with untouched(X, W, dZ):
            assert kernel(X, W, dZ, dW, db, dX) is None
        outs[side] = dW, db, dX
    (dW_n, db_n, dX_n), (dW_r, db_r, dX_r) = outs["native"], outs["numpy"]
    # Each output is a sum over the batch or the outputs, taken in another order.
    assert_close(dW_n, dW_r, RTOL * (np.abs(X).T @ np.abs(dZ)), what="dW")
    if with_db:
        assert_close(db_n, db_r, RTOL * np.abs(dZ).sum(axis=0), what="db")
    if with_dX:
        assert_close(dX_n, dX_r, RTOL * (np.abs(dZ) @ np.abs(W).T), what="dX")


# --------------------------------------------------- dense, feature-major ---
FM_ACTS = ["identity", "relu", "sigmoid"]
LANES = st.integers(1, 10).map(lambda q: 4 * q)  # m, a positive multiple of 4


@needs_native
@examples
@given(
    data=st.data(),
    m=LANES,
    ni=WIDTH,
    no=WIDTH,
    with_bias=st.booleans(),
    act=st.sampled_from(FM_ACTS),
)
def test_dense_forward_feature_major(core, data, m, ni, no, with_bias, act):
    code = _codes.activation_code(act)
    lim = LINEAR_RANGE if act != "sigmoid" else EXP_RANGE / 20.0  # keeps W.T @ XT in exp's range
    XT = data.draw(matrices((ni, m), -lim, lim), "XT")
    W = data.draw(matrices((ni, no), -1.0, 1.0) if act == "sigmoid" else matrices((ni, no)), "W")
    b = data.draw(matrices((no,), -lim, lim), "b") if with_bias else None
    native, reference = twins("dense_forward_feature_major", core)
    out_n, out_r = nans(no, m), nans(no, m)
    with untouched(XT, W, b):
        assert native(XT, W, b, out_n, code) is out_n
        assert reference(XT, W, b, out_r, code) is out_r
    # BLAS and the native loop add the ni products of a column in different
    # orders.  A sigmoid moves by A (1 - A) times that, relatively to A by
    # (1 - A) times it, plus the few ulp of each side's exp.
    terms = np.abs(W).T @ np.abs(XT) + (0.0 if b is None else np.abs(b)[:, None])
    if act == "sigmoid":
        assert_close(out_n, out_r, RTOL * out_r * (terms * (1.0 - out_r) + 1.0), what="A")
    else:
        assert_close(out_n, out_r, RTOL * terms, what="Z")


@needs_native
@examples
@given(
    data=st.data(),
    m=LANES,
    ni=WIDTH,
    no=WIDTH,
    with_db=st.booleans(),
    with_dX=st.booleans(),
    act=st.sampled_from(FM_ACTS),
)
def test_dense_backward_feature_major(core, data, m, ni, no, with_db, with_dX, act):
    XT = data.draw(matrices((ni, m)), "XT")
    W = data.draw(matrices((ni, no)), "W")
    dT = data.draw(matrices((no, m)), "dT")
    code = _codes.activation_code(act)
    if act == "sigmoid":
        A = data.draw(probabilities((ni, m)), "A")
    else:  # ReLU outputs: >= 0, many exactly 0
        A = np.maximum(data.draw(matrices((ni, m)), "A"), 0.0)
    native, reference = twins("dense_backward_feature_major", core)
    outs = {}
    for side, kernel in (("native", native), ("numpy", reference)):
        dW = nans(ni, no)
        db = nans(no) if with_db else None
        dXT = nans(ni, m) if with_dX else None
        with untouched(XT, W, dT, A):
            assert kernel(XT, W, dT, A, code, dW, db, dXT) is None
        outs[side] = dW, db, dXT
    (dW_n, db_n, dX_n), (dW_r, db_r, dX_r) = outs["native"], outs["numpy"]
    # Each output is a sum over the batch or the outputs, taken in another order.
    assert_close(dW_n, dW_r, RTOL * (np.abs(XT) @ np.abs(dT).T), what="dW")
    if with_db:
        assert_close(db_n, db_r, RTOL * np.abs(dT).sum(axis=1), what="db")
    if with_dX:
        deriv = {"identity": 1.0, "relu": (A > 0.0) * 1.0, "sigmoid": A * (1.0 - A)}[act]
        assert_close(dX_n, dX_r, RTOL * (np.abs(W) @ np.abs(dT)) * deriv, what="dXT")


@needs_native
@pytest.mark.parametrize("kernel", ["dense_forward_feature_major", "dense_backward_feature_major"])
@pytest.mark.parametrize("bad", ["activation", "lanes", "shape"])
def test_dense_feature_major_reject_bad_arguments(core, kernel, bad):
    """The same ValueError on both sides, before anything is computed."""
    m = 6 if bad == "lanes" else 8
    XT, W, dT, A = np.ones((3, m)), np.ones((3, 2)), np.ones((2, m)), np.ones((3, m))
    code = _codes.activation_code("tanh" if bad == "activation" else "relu")
    for mod in (core, ref):
        if kernel == "dense_forward_feature_major":
            args = (XT, W, None, np.empty((3 if bad == "shape" else 2, m)), code)
        else:
            dW = np.empty((3, 3 if bad == "shape" else 2))
            args = (XT, W, dT, A, code, dW, None, np.empty((3, m)))
        # the twin leaves shapes to NumPy, which raises its own ValueError
        with pytest.raises(ValueError, match=kernel if bad != "shape" or mod is core else None):
            getattr(mod, kernel)(*args)


# ------------------------------------------------------------- activations ---
@needs_native
@pytest.mark.parametrize("name", ACT_NAMES)
@product_examples
@given(data=st.data(), n=BATCH, j=WIDTH)
def test_activation_forward(core, name, data, n, j):
    code, r = _codes.ACTIVATIONS[name], z_range(_codes.ACTIVATIONS[name])
    Z = data.draw(matrices((n, j), -r, r), "Z")
    alpha = data.draw(alpha_strategy(name), "alpha")
    native, reference = twins("activation_forward", core)
    out_n, out_r = nans(n, j), nans(n, j)
    with untouched(Z):
        assert native(code, Z, out_n, alpha) is out_n
        assert reference(code, Z, out_r, alpha) is out_r
    # Elementwise, or (softmax) a row sum of positive terms: rtol covers any order.
    assert_close(out_n, out_r, what="A")


@needs_native
@pytest.mark.parametrize("name", ACT_NAMES)
@product_examples
@given(data=st.data(), n=BATCH, j=WIDTH)
def test_activation_backward(core, name, data, n, j):
    code, r = _codes.ACTIVATIONS[name], z_range(_codes.ACTIVATIONS[name])
    Z = data.draw(matrices((n, j), -r, r), "Z")
    alpha = data.draw(alpha_strategy(name), "alpha")
    A = ref.activation_forward(code, Z, np.empty_like(Z), alpha)
    dA = data.draw(matrices((n, j)), "dA")
    native, reference = twins("activation_backward", core)
    out_n, out_r = nans(n, j), nans(n, j)
    with untouched(Z, A, dA):
        assert native(code, Z, A, dA, out_n, alpha) is out_n
        assert reference(code, Z, A, dA, out_r, alpha) is out_r
    atol = softmax_jvp_atol(A, dA) if code == _codes.ACT_SOFTMAX else 0.0
    assert_close(out_n, out_r, atol, what="dZ")


# ------------------------------------------------------------------ losses ---
def draw_prediction_and_target(data, loss, shape):
    """P and Y for a loss: any values for the squared errors, (0, 1) with exact
    0s and 1s against valid targets for the cross-entropies."""
    if loss in (_codes.LOSS_SE, _codes.LOSS_HALF_SE):
        P = data.draw(matrices(shape), "P")
    else:
        P = data.draw(probabilities(shape), "P")
    return P, data.draw(targets(loss, shape), "Y")


@needs_native
@pytest.mark.parametrize("reduction", REDUCTION_NAMES)
@pytest.mark.parametrize("loss", LOSS_NAMES)
@product_examples
@given(data=st.data(), n=BATCH, j=WIDTH)
def test_loss_value(core, loss, reduction, data, n, j):
    code, red = _codes.LOSSES[loss], _codes.REDUCTIONS[reduction]
    P, Y = draw_prediction_and_target(data, code, (n, j))
    native, reference = twins("loss_value", core)
    with untouched(P, Y):
        value_n = native(code, P, Y, red)
        value_r = reference(code, P, Y, red)
    assert type(value_n) is type(value_r) is float
    assert np.isfinite(value_r)
    assert_close(value_n, value_r, loss_atol(code, red, n, j), what="loss")


@needs_native
@pytest.mark.parametrize("reduction", REDUCTION_NAMES)
@pytest.mark.parametrize("loss", LOSS_NAMES)
@product_examples
@given(data=st.data(), n=BATCH, j=WIDTH)
def test_loss_gradient(core, loss, reduction, data, n, j):
    code, red = _codes.LOSSES[loss], _codes.REDUCTIONS[reduction]
    P, Y = draw_prediction_and_target(data, code, (n, j))
    native, reference = twins("loss_gradient", core)
    out_n, out_r = nans(n, j), nans(n, j)
    with untouched(P, Y):
        value_n = native(code, P, Y, out_n, red)
        value_r = reference(code, P, Y, out_r, red)
    assert np.isfinite(out_r).all()
    assert_close(out_n, out_r, what="dP")  # elementwise
    assert_close(value_n, value_r, loss_atol(code, red, n, j), what="loss")


@needs_native
@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("act", CANONICAL_ACTS)
@product_examples
@given(data=st.data(), n=BATCH, j=WIDTH, reduction=st.sampled_from(REDUCTION_NAMES))
def test_output_delta(core, act, loss, data, n, j, reduction):
    """Fused (softmax + categorical, sigmoid + binary) and chained pairs alike."""
    code, lcode, red = _codes.ACTIVATIONS[act], _codes.LOSSES[loss], _codes.REDUCTIONS[reduction]
    r = z_range(code)
    Z = data.draw(matrices((n, j), -r, r), "Z")
    alpha = data.draw(alpha_strategy(act), "alpha")
    A = ref.activation_forward(code, Z, np.empty_like(Z), alpha)
    Y = data.draw(targets(lcode, (n, j)), "Y")
    native, reference = twins("output_delta", core)
    out_n, out_r = nans(n, j), nans(n, j)
    with untouched(Z, A, Y):
        value_n = native(code, lcode, Z, A, Y, out_n, red, alpha)
        value_r = reference(code, lcode, Z, A, Y, out_r, red, alpha)
    atol = 0.0
    if (act, loss) == ("softmax", "categorical_crossentropy"):
        # (A * sum(Y) - Y) * s: the row sum of Y is taken in another order.
        s = scale(lcode, red, n, j)
        atol = RTOL * s * (A * np.abs(Y).sum(axis=1, keepdims=True) + np.abs(Y))
    elif code == _codes.ACT_SOFTMAX:
        dA = np.empty_like(A)
        ref.loss_gradient(lcode, A, Y, dA, red)
        atol = softmax_jvp_atol(A, dA)
    assert_close(out_n, out_r, atol, what="dZ")
    assert_close(value_n, value_r, loss_atol(lcode, red, n, j), what="loss")


# ---------------------------------------------------------- regularisation ---
PENALTY = st.just(0.0) | st.floats(0.0, 10.0)


@needs_native
@examples
@given(data=st.data(), m=st.integers(1, 300), l1=PENALTY, l2=PENALTY)
def test_penalty(core, data, m, l1, l2):
    V = data.draw(matrices((m,)), "V")
    native, reference = twins("penalty", core)
    with untouched(V):
        value_n, value_r = native(V, l1, l2), reference(V, l1, l2)
    # Sums of non-negative terms: rtol covers any order.
    assert_close(value_n, value_r, what="penalty")


@needs_native
@examples
@given(data=st.data(), m=st.integers(1, 300), l1=PENALTY, l2=PENALTY)
def test_add_penalty_gradient(core, data, m, l1, l2):
    V = data.draw(matrices((m,)), "V")
    dV = data.draw(matrices((m,)), "dV")
    native, reference = twins("add_penalty_gradient", core)
    dV_n, dV_r = dV.copy(), dV.copy()
    with untouched(V):
        assert native(V, dV_n, l1, l2) is None
        assert reference(V, dV_r, l1, l2) is None
    assert_close(dV_n, dV_r, what="dV")


@needs_native
@examples
@given(data=st.data(), m=st.integers(1, 300), lr=st.floats(0.0, 10.0))
def test_sgd_update(core, data, m, lr):
    p = data.draw(matrices((m,)), "params")
    g = data.draw(matrices((m,)), "grads")
    native, reference = twins("sgd_update", core)
    p_n, p_r = p.copy(), p.copy()
    with untouched(g):
        assert native(p_n, g, lr) is p_n
        assert reference(p_r, g, lr) is p_r
    assert_close(p_n, p_r, what="params")


# -------------------------------------------------------------- optimizers ---
#: optimizer name -> (code, hyper-parameters, state slots).  The adaptive ones
#: divide by (sqrt(cache) + eps), which multiplies a rounding difference in a
#: gradient near 0 by up to lr / eps; with eps = 1e-3 and lr = 0.01 a fused
#: train_step stays comparable at 1e-12 (test_optimizer_update draws small
#: eps too, from identical gradients).
OPTIMIZERS = {
    "sgd": (_codes.OPT_SGD, {_codes.HYPER_LEARNING_RATE: 0.05}, 0),
    "momentum": (_codes.OPT_SGD, {_codes.HYPER_LEARNING_RATE: 0.05, _codes.HYPER_MOMENTUM: 0.9}, 1),
    "nesterov": (
        _codes.OPT_SGD,
        {
            _codes.HYPER_LEARNING_RATE: 0.05,
            _codes.HYPER_MOMENTUM: 0.5,
            _codes.HYPER_NESTEROV: 1.0,
            _codes.HYPER_DECAY: 0.1,
        },
        1,
    ),
    "adagrad": (
        _codes.OPT_ADAGRAD,
        {_codes.HYPER_LEARNING_RATE: 0.01, _codes.HYPER_EPSILON: 1e-3},
        1,
    ),
    "rmsprop": (
        _codes.OPT_RMSPROP,
        {_codes.HYPER_LEARNING_RATE: 0.01, _codes.HYPER_RHO: 0.9, _codes.HYPER_EPSILON: 1e-3},
        1,
    ),
    "adam": (
        _codes.OPT_ADAM,
        {
            _codes.HYPER_LEARNING_RATE: 0.01,
            _codes.HYPER_BETA1: 0.9,
            _codes.HYPER_BETA2: 0.999,
            _codes.HYPER_EPSILON: 1e-3,
            _codes.HYPER_DECAY: 0.01,
        },
        2,
    ),
}


def optimizer_args(name):
    """(kind, optimizer_hyper, slots) of an OPTIMIZERS entry."""
    kind, values, slots = OPTIMIZERS[name]
    optimizer_hyper = np.zeros(_codes.N_OPTIMIZER_HYPER)
    for k, v in values.items():
        optimizer_hyper[k] = v
    return kind, optimizer_hyper, slots


@st.composite
def optimizer_hypers(draw, name):
    """The hyper-parameter vector of an optimizer, each value drawn around its entry."""
    kind, optimizer_hyper, slots = optimizer_args(name)
    unit = st.floats(0.0, 0.999)
    optimizer_hyper[_codes.HYPER_LEARNING_RATE] = draw(st.floats(1e-4, 1.0))
    optimizer_hyper[_codes.HYPER_DECAY] = draw(st.just(0.0) | st.floats(0.0, 1.0))
    if optimizer_hyper[_codes.HYPER_MOMENTUM]:
        optimizer_hyper[_codes.HYPER_MOMENTUM] = draw(st.floats(0.01, 0.999))
    if kind == _codes.OPT_RMSPROP:
        optimizer_hyper[_codes.HYPER_RHO] = draw(unit)
    if kind == _codes.OPT_ADAM:
        optimizer_hyper[_codes.HYPER_BETA1], optimizer_hyper[_codes.HYPER_BETA2] = (
            draw(unit),
            draw(unit),
        )
    if kind != _codes.OPT_SGD:
        optimizer_hyper[_codes.HYPER_EPSILON] = draw(st.sampled_from([1e-7, 1e-8, 1e-3]))
    return optimizer_hyper


@needs_native
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@product_examples
@given(data=st.data(), m=st.integers(1, 300), t=st.integers(0, 1000))
def test_optimizer_update(core, name, data, m, t):
    kind, _, slots = optimizer_args(name)
    optimizer_hyper = data.draw(optimizer_hypers(name), "optimizer_hyper")
    p = data.draw(matrices((m,)), "params")
    g = data.draw(matrices((m,)), "grads")
    state = data.draw(matrices((slots, m)), "state")
    if kind != _codes.OPT_SGD:  # caches of squared gradients are never negative
        state[-1] = np.abs(state[-1])
    native, reference = twins("optimizer_update", core)
    buffers = {side: (p.copy(), state.copy()) for side in ("native", "numpy")}
    for side, kernel in (("native", native), ("numpy", reference)):
        params, st_ = buffers[side]
        with untouched(optimizer_hyper, g):
            assert kernel(kind, optimizer_hyper, params, g, st_, float(t)) is params
    # the same elementwise formulas on both sides
    assert_close(buffers["native"][0], buffers["numpy"][0], what="params")
    assert_close(buffers["native"][1], buffers["numpy"][1], what="state")


# ---------------------------------------------------------- the generator ---
U64 = st.integers(0, 2**64 - 1)


@needs_native
@examples
@given(seed=U64, stream=U64, start=st.integers(0, 2**63), n=st.integers(0, 300))
def test_random_bits(core, seed, stream, start, n):
    native, reference = twins("random_bits", core)
    bits_n, bits_r = native(seed, stream, start, n), reference(seed, stream, start, n)
    assert bits_n.dtype == bits_r.dtype == np.uint64
    assert np.array_equal(bits_n, bits_r)


@needs_native
@examples
@given(seed=U64, epoch=st.integers(0, 2**40), n=st.integers(0, 300))
def test_shuffle_order(core, seed, epoch, n):
    native, reference = twins("shuffle_order", core)
    order_n, order_r = native(seed, epoch, n), reference(seed, epoch, n)
    assert order_n.dtype == order_r.dtype == np.int64
    assert np.array_equal(order_n, order_r)
    assert np.array_equal(np.sort(order_r), np.arange(n))


@needs_native
@examples
@given(
    seed=U64,
    stream=U64,
    start=st.integers(0, 2**40),
    n=BATCH,
    j=WIDTH,
    rate=st.sampled_from([0.0, 0.5]) | st.floats(0.0, 0.99),
)
def test_dropout_mask(core, seed, stream, start, n, j, rate):
    native, reference = twins("dropout_mask", core)
    out_n, out_r = nans(n, j), nans(n, j)
    assert native(seed, stream, start, rate, out_n) is out_n
    assert reference(seed, stream, start, rate, out_r) is out_r
    assert np.array_equal(out_n, out_r)  # the same bits, the same comparisons
    assert set(np.unique(out_r)) <= {0.0, 1.0 / (1.0 - rate)}


# ------------------------------------------------------------------ engine ---
def dense(
    n_in,
    n_out,
    act="identity",
    alpha=None,
    bias=True,
    trainable=True,
    penalties=(0.0,) * 4,
    bias_trainable=True,
):
    """A dense row of a layer list (see layer_table)."""
    alpha = _codes.DEFAULT_ALPHA.get(act, 0.0) if alpha is None else alpha
    return dict(
        kind=_codes.KIND_DENSE,
        n_in=n_in,
        n_out=n_out,
        act=act,
        alpha=alpha,
        bias=bias,
        trainable=trainable,
        penalties=list(penalties),
        bias_trainable=bias_trainable,
    )


def dropout(width, rate):
    """A dropout row of a layer list: the identity outside fit()."""
    return dict(kind=_codes.KIND_DROPOUT, n_in=width, n_out=width, rate=rate)


def layer_table(layers):
    """layer_ints, layer_floats and the parameter count of a layer list, laid out as
    cbp.network lays them out (weights, then bias, layer after layer)."""
    layer_ints = np.zeros((len(layers), _codes.N_LAYER_INTS), dtype=np.int64)
    layer_floats = np.zeros((len(layers), _codes.N_LAYER_FLOATS))
    off = 0
    for l, layer in enumerate(layers):
        n_in, n_out = layer["n_in"], layer["n_out"]
        if layer["kind"] == _codes.KIND_DROPOUT:
            layer_ints[l] = (_codes.KIND_DROPOUT, n_in, n_out, _codes.ACT_IDENTITY, 0, -1, 0, 0)
            layer_floats[l, _codes.LAYER_DROPOUT_RATE] = layer["rate"]
            continue
        nw = n_in * n_out
        b_off = off + nw if layer["bias"] else -1
        code = _codes.ACTIVATIONS[layer["act"]]
        layer_ints[l] = (
            _codes.KIND_DENSE,
            n_in,
            n_out,
            code,
            off,
            b_off,
            int(layer["trainable"]),
            int(layer["bias_trainable"]),
        )
        layer_floats[l, _codes.LAYER_ALPHA] = layer["alpha"]
        layer_floats[
            l,
            [
                _codes.LAYER_WEIGHT_L1,
                _codes.LAYER_WEIGHT_L2,
                _codes.LAYER_BIAS_L1,
                _codes.LAYER_BIAS_L2,
            ],
        ] = layer["penalties"]
        off += nw + (n_out if layer["bias"] else 0)
    return layer_ints, layer_floats, off


@st.composite
def engine_setups(draw):
    """1 to 3 dense layers with random widths, activations, biases, frozen
    layers, L1/L2 penalties and dropout between them; a loss, a reduction and
    a seed for the values."""
    n_dense = draw(st.integers(1, 3))
    widths = draw(st.lists(WIDTH, min_size=n_dense + 1, max_size=n_dense + 1))
    layers = []
    for l in range(n_dense):
        if l and draw(st.booleans()):
            layers.append(dropout(widths[l], draw(st.floats(0.0, 0.9))))
        act = draw(st.sampled_from(ACT_NAMES))
        penalty = st.just(0.0) | st.floats(0.0, 0.1)
        layers.append(
            dense(
                widths[l],
                widths[l + 1],
                act,
                alpha=draw(alpha_strategy(act)),
                bias=draw(st.booleans()),
                trainable=draw(st.booleans()),
                penalties=draw(st.lists(penalty, min_size=4, max_size=4)),
            )
        )
    loss = draw(st.sampled_from(LOSS_NAMES))
    reduction = draw(st.sampled_from(REDUCTION_NAMES))
    return (
        layers,
        _codes.LOSSES[loss],
        _codes.REDUCTIONS[reduction],
        draw(st.integers(0, 2**32 - 1)),
    )


def random_targets(rng, loss, shape):
    """Valid targets drawn from rng (see ``targets``)."""
    n, j = shape
    if loss == _codes.LOSS_CCE:
        return np.eye(j)[rng.integers(0, j, n)]
    if loss == _codes.LOSS_BCE:
        return rng.random(shape)
    return rng.normal(0.0, 2.0, shape)


def initial_params(rng, layer_ints, size):
    """N(0, 1 / n_in) weights and N(0, 0.1) biases, so that pre-activations stay
    of order 1.  NumPy's tanh and the C library's differ in the last bit, and
    the derivative 1 - A**2 turns that into a relative error of eps / (1 - A**2)
    (softmax saturating does the same): an engine fed values that saturate
    them can differ by far more than 1e-12 for reasons that are not cbp's."""
    params = rng.normal(0.0, 0.1, size)
    for m in layer_ints:
        if m[_codes.LAYER_KIND] == _codes.KIND_DENSE:
            nw = m[_codes.LAYER_N_IN] * m[_codes.LAYER_N_OUT]
            params[m[_codes.LAYER_WEIGHT_OFFSET] : m[_codes.LAYER_WEIGHT_OFFSET] + nw] *= (
                10.0 / np.sqrt(m[_codes.LAYER_N_IN])
            )
    return params


def engine_atol(reference):
    """Slack of a whole pass: every layer's matmuls sum in another order on each
    side, and the rounding differences travel through the later layers, so an
    entry that cancels to near zero is judged against the array's scale."""
    finite = np.abs(reference[np.isfinite(reference)])
    # 100 * RTOL of the array's scale: a whole pass chains up to three layers
    # of matmuls whose intermediate terms can be orders of magnitude larger
    # than the gradient they cancel down to (weights up to 1e3), NumPy's tanh
    # differs from libm's by an ulp or two, and the calls chain (forward,
    # backward, three kinds of update, a new batch size) on the same buffers.
    # Single kernels are held to RTOL in the tests above.
    return 100 * RTOL * (finite.max() if finite.size else 0.0)


STATE = object()  # stands for each side's own optimizer state in EnginePair.call


class EnginePair:
    """The same network on both backends, each over its own buffers."""

    def __init__(self, core, layer_ints, layer_floats, params, loss, reduction, atol_loss):
        self.buffers = {
            side: {"params": params.copy(), "grads": nans(params.size), "state": np.zeros(0)}
            for side in ("native", "numpy")
        }
        self.atol_loss = atol_loss
        self.engines = {}
        for side, cls in (("native", core.Engine), ("numpy", ref.Engine)):
            b = self.buffers[side]
            with untouched(layer_ints, layer_floats):
                self.engines[side] = cls(
                    layer_ints, layer_floats, b["params"], b["grads"], loss, reduction
                )

    def set_state(self, state):
        for b in self.buffers.values():
            b["state"] = state.copy()

    def call(self, method, *args):
        """Run one method on both engines with frozen array arguments; compare
        what they return or raise, and every buffer afterwards."""
        out = {}
        for side, engine in self.engines.items():
            a = [self.buffers[side]["state"] if x is STATE else x for x in args]
            with untouched(*[x for x in args if isinstance(x, np.ndarray)]):
                try:
                    out[side] = _snapshot(getattr(engine, method)(*a))
                except cbp.DivergenceError as exc:
                    out[side] = exc
        self._compare(out["native"], out["numpy"], method)
        for name in ("params", "grads", "state"):
            n, r = self.buffers["native"][name], self.buffers["numpy"][name]
            assert np.array_equal(np.isnan(n), np.isnan(r)), f"{method}: NaNs differ in {name}"
            assert_close(
                np.nan_to_num(n), np.nan_to_num(r), engine_atol(r), what=f"{method}: {name}"
            )
            # Start the next call from the same buffers: each call is judged
            # at 1e-12 on its own, drift over many steps is the long run's job.
            np.copyto(n, r)
        return out["numpy"]

    def _compare(self, native, reference, what):
        if isinstance(reference, Exception):
            assert type(native) is type(reference), (
                f"{what}: native gave {native!r}, reference raised {reference!r}"
            )
        elif isinstance(reference, tuple):
            assert isinstance(native, tuple) and len(native) == len(reference), what
            for k, (n, r) in enumerate(zip(native, reference)):
                self._compare(n, r, f"{what}[{k}]")
        elif isinstance(reference, np.ndarray):
            assert_close(native, reference, engine_atol(reference), what=f"{what} output")
        elif isinstance(reference, float):
            assert type(native) is float, f"{what}: native returned {native!r}"
            if not (np.isnan(native) and np.isnan(reference)):
                assert_close(native, reference, self.atol_loss, what=f"{what} loss")
        else:
            assert native == reference, f"{what}: {native!r} != {reference!r}"


def _snapshot(value):
    """A private copy of what a method returned (the native forward returns a view
    into its workspace, which the next call overwrites)."""
    return np.array(value) if isinstance(value, np.ndarray) else value


@needs_native
@examples
@given(setup=engine_setups(), n1=BATCH, n2=BATCH, n3=BATCH, opt=st.sampled_from(list(OPTIMIZERS)))
def test_Engine__passes(core, setup, n1, n2, n3, opt):
    """forward, backward, sgd_step, step, train_step, train_step_sgd, predict
    and evaluate agree call by call, buffers included."""
    layers, loss, reduction, seed = setup
    layer_ints, layer_floats, size = layer_table(layers)
    n_in, n_out = layers[0]["n_in"], layers[-1]["n_out"]
    rng = np.random.default_rng(seed)
    X1, X2, X3 = (rng.normal(0.0, 1.0, (n, n_in)) for n in (n1, n2, n3))
    Y1, Y2, Y3 = (random_targets(rng, loss, (n, n_out)) for n in (n1, n2, n3))
    # a loss is a sum of non-negative terms (penalties too), CCE aside: see loss_atol
    atol_loss = loss_atol(loss, reduction, max(n1, n2, n3), n_out) * n_out
    pair = EnginePair(
        core,
        layer_ints,
        layer_floats,
        initial_params(rng, layer_ints, size),
        loss,
        reduction,
        atol_loss,
    )
    kind, optimizer_hyper, slots = optimizer_args(opt)
    pair.set_state(np.zeros(slots * size))

    pair.call("forward", X1)
    if not isinstance(pair.call("backward", Y1), Exception):
        assert not np.isnan(pair.buffers["numpy"]["grads"]).any(), (
            "backward left gradients unwritten"
        )
    pair.call("sgd_step", 0.05)
    pair.call("train_step", X2, Y2, kind, optimizer_hyper, STATE, 0.0)
    pair.call("step", kind, optimizer_hyper, STATE, 1.0)
    pair.call("train_step_sgd", X1, Y1, 0.05)
    pair.call("forward", X3)  # a new batch size lays the workspace out anew
    pair.call("backward", Y3)
    # predict and evaluate come last: with a dropout layer the twin's predict
    # clobbers the backward cache (test_Engine__predict_keeps_the_backward_cache)
    pair.call("predict", X2)
    pair.call("evaluate", X2, Y2)


@needs_native
@pytest.mark.parametrize("method", ["predict", "evaluate"])
@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_Engine__predict_keeps_the_backward_cache(core, backend, method):
    """predict and evaluate between forward and backward change nothing that
    backward reads, dropout layers included."""
    module = core if backend == "native" else ref
    layer_ints, layer_floats, size = layer_table(
        [dense(2, 3, "tanh"), dropout(3, 0.5), dense(3, 1)]
    )
    rng = np.random.default_rng(5)
    X, Y, X2 = rng.normal(size=(4, 2)), rng.normal(size=(4, 1)), rng.normal(size=(2, 2))
    params, grads = rng.normal(size=size), np.zeros(size)
    engine = module.Engine(layer_ints, layer_floats, params, grads, _codes.LOSS_SE, _codes.RED_MEAN)
    engine.forward(X)
    expected = engine.backward(Y), grads.copy()
    engine.forward(X)
    getattr(engine, method)(*((X2,) if method == "predict" else (X2, Y[:2])))
    assert engine.backward(Y) == expected[0]
    assert np.array_equal(grads, expected[1])


@needs_native
def test_Engine__divergence(core):
    """An update that would overflow raises DivergenceError on both sides and changes nothing."""
    layer_ints, layer_floats, size = layer_table([dense(3, 4, "tanh"), dense(4, 2)])
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    pair = EnginePair(
        core, layer_ints, layer_floats, rng.normal(size=size), _codes.LOSS_SE, _codes.RED_SUM, 0.0
    )
    pair.call("forward", X)
    pair.call("backward", Y)
    before = pair.buffers["numpy"]["params"].copy()
    kind, optimizer_hyper, _ = optimizer_args("sgd")
    optimizer_hyper[_codes.HYPER_LEARNING_RATE] = 1e308
    for method, args in (
        ("sgd_step", (1e308,)),
        ("step", (kind, optimizer_hyper, STATE, 0.0)),
        ("train_step", (X, Y, kind, optimizer_hyper, STATE, 0.0)),
        ("train_step_sgd", (X, Y, 1e308)),
    ):
        assert isinstance(pair.call(method, *args), cbp.DivergenceError), method
        for side in pair.engines:
            assert np.array_equal(pair.buffers[side]["params"], before), (
                f"{side} {method} changed the parameters"
            )


@needs_native
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_Engine__train_step_sgd_with_a_non_finite_X_drops_the_cached_forward(core, bad):
    """The fast path checks X as it copies it in: an X with a NaN or inf
    returns None on both sides, leaves the parameters alone, and no cached
    forward pass (backward then raises on both sides, as before any forward)."""
    layer_ints, layer_floats, size = layer_table([dense(3, 4, "tanh"), dense(4, 2)])
    rng = np.random.default_rng(8)
    X, Y = rng.normal(size=(700, 3)), rng.normal(size=(700, 2))  # over a block of 256
    pair = EnginePair(
        core, layer_ints, layer_floats, rng.normal(size=size), _codes.LOSS_SE, _codes.RED_MEAN, 0.0
    )
    pair.call("forward", X)
    before = pair.buffers["numpy"]["params"].copy()
    X[600, 1] = bad
    assert pair.call("train_step_sgd", X, Y, 0.1) is None
    for side in pair.engines:
        assert np.array_equal(pair.buffers[side]["params"], before), side
    for engine in pair.engines.values():
        with pytest.raises(RuntimeError, match="forward"):
            engine.backward(Y)
    X[600, 1] = 0.0
    assert isinstance(pair.call("train_step_sgd", X, Y, 0.1), float)  # usable again


@needs_native
def test_Engine__accepts_read_only_layer_table(core):
    """Like the twin, the native engine only reads its layer table."""
    layer_ints, layer_floats, size = layer_table([dense(2, 1)])
    with untouched(layer_ints, layer_floats):
        for engine in (ref.Engine, core.Engine):
            engine(
                layer_ints,
                layer_floats,
                np.zeros(size),
                np.zeros(size),
                _codes.LOSS_SE,
                _codes.RED_MEAN,
            )


LONG_RUNS = {
    "softmax-cce-mean-sgd": ("softmax", "categorical_crossentropy", "mean", None),
    "sigmoid-bce-sum-sgd": ("sigmoid", "binary_crossentropy", "sum", None),
    "identity-se-mean-adam": ("identity", "squared_error", "mean", "adam"),
}


@needs_native
@pytest.mark.parametrize("case", list(LONG_RUNS))
def test_Engine__long_run(core, case):
    """200 train_steps of a 5-layer network with mixed activations through the
    public API, at varied batch sizes: the rounding differences between the
    backends must stay below 1e-9."""
    out_act, loss, reduction, opt = LONG_RUNS[case]
    rng = np.random.default_rng(2024)
    X = rng.normal(size=(64, 4))
    labels = (X[:, 0] * X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)
    Y = np.sin(X[:, :3]) if loss == "squared_error" else np.eye(3)[labels]

    def network(backend):
        layers = [
            cbp.Dense(4, 9, "tanh"),
            cbp.Dense(9, 7, "relu"),
            cbp.Dense(7, 6, "elu"),
            cbp.Dense(6, 5, "leaky_relu"),
            cbp.Dense(5, 3, out_act),
        ]
        optimizer = optim.Adam(lr=0.01) if opt == "adam" else None
        return cbp.Network(
            layers, loss=loss, reduction=reduction, backend=backend, seed=3, optimizer=optimizer
        )

    nets = {side: network(side) for side in ("native", "numpy")}
    assert np.array_equal(nets["native"].parameters, nets["numpy"].parameters)
    lr = None if opt else (0.05 if reduction == "mean" else 0.005)
    sizes = [16, 7, 64, 1, 33]
    losses = {side: [] for side in nets}
    start = 0
    for step in range(200):
        rows = np.arange(start, start + sizes[step % len(sizes)]) % len(X)
        start += len(rows)
        for side, net in nets.items():
            losses[side].append(net.train_step(X[rows], Y[rows], lr))
    p_n, p_r = nets["native"].parameters, nets["numpy"].parameters
    assert not np.allclose(p_r, network("numpy").parameters), "the network did not train"
    assert_close(p_n, p_r, 1e-9 * np.abs(p_r).max(), rtol=1e-9, what="parameters after 200 steps")
    assert_close(np.array(losses["native"]), np.array(losses["numpy"]), rtol=1e-9, what="losses")


FIT_RUNS = {
    "cce-adam-dropout-shuffle-validation": dict(
        out="softmax",
        loss="categorical_crossentropy",
        optimizer="adam",
        dropout=0.3,
        shuffle=True,
        batch_size=13,
        validation=True,
        early_stopping=False,
    ),
    "bce-momentum-early-stopping": dict(
        out="sigmoid",
        loss="binary_crossentropy",
        optimizer="momentum",
        dropout=0.0,
        shuffle=True,
        batch_size=None,
        validation=True,
        early_stopping=True,
    ),
    "se-sgd-in-order": dict(
        out="identity",
        loss="half_squared_error",
        optimizer=None,
        dropout=0.5,
        shuffle=False,
        batch_size=1,
        validation=False,
        early_stopping=False,
    ),
}


@needs_native
@pytest.mark.parametrize("case", list(FIT_RUNS))
def test_Engine__fit(core, case):
    """Network.fit (the engine's whole training loop: shuffles, dropout masks,
    optimizers, validation, early stopping) gives the same history and
    parameters on both backends, to 1e-9."""
    cfg = FIT_RUNS[case]
    rng = np.random.default_rng(99)
    X, Xv = rng.normal(size=(50, 4)), rng.normal(size=(20, 4))

    def target(X):
        labels = (X[:, 0] * X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)
        return np.sin(X[:, :3]) if cfg["loss"] == "half_squared_error" else np.eye(3)[labels]

    def run(backend):
        layers = [
            cbp.Dense(4, 8, "tanh"),
            cbp.Dropout(cfg["dropout"]),
            cbp.Dense(8, 6, "elu"),
            cbp.Dense(6, 3, cfg["out"]),
        ]
        net = cbp.Network(layers, loss=cfg["loss"], backend=backend, seed=4)
        opt = {
            "adam": lambda: optim.Adam(lr=0.01),
            "momentum": lambda: optim.SGD(lr=0.1, momentum=0.9),
            None: lambda: None,
        }[cfg["optimizer"]]()
        history = net.fit(
            X,
            target(X),
            epochs=40,
            lr=None if opt else 0.01,
            optimizer=opt,
            batch_size=cfg["batch_size"],
            shuffle=cfg["shuffle"],
            seed=7,
            validation_data=(Xv, target(Xv)) if cfg["validation"] else None,
            early_stopping=cbp.EarlyStopping(patience=3, tol=1e-3)
            if cfg["early_stopping"]
            else None,
        )
        return net, history

    (net_n, hist_n), (net_r, hist_r) = run("native"), run("numpy")
    assert hist_n.keys() == hist_r.keys()
    for key, r in hist_r.items():
        n = hist_n[key]
        if isinstance(r, np.ndarray):
            assert_close(n, r, 1e-9 * np.abs(r).max(), rtol=1e-9, what=f"history[{key!r}]")
        else:
            assert n == r, f"history[{key!r}]: {n!r} != {r!r}"
    p_n, p_r = net_n.parameters, net_r.parameters
    assert_close(p_n, p_r, 1e-9 * np.abs(p_r).max(), rtol=1e-9, what="parameters after fit")


@needs_native
def test_Engine__train_step_sgd_takes_int64_labels(core):
    """With categorical cross-entropy the fast path takes int64 class labels:
    the same step as one-hot rows, on both engines; labels it cannot take
    (out of range, another dtype, 2-D, the wrong count) return None, touching
    nothing."""
    layer_ints, layer_floats, size = layer_table([dense(3, 5, "relu"), dense(5, 4, "softmax")])
    rng = np.random.default_rng(11)
    X = rng.normal(0.0, 1.0, (6, 3))
    labels = np.array([0, 3, 1, 1, 2, 3], dtype=np.int64)
    params = initial_params(rng, layer_ints, size)
    onehot = EnginePair(
        core, layer_ints, layer_floats, params, _codes.LOSS_CCE, _codes.RED_MEAN, 1e-12
    )
    want = onehot.call("train_step_sgd", X, np.eye(4)[labels], 0.1)
    pair = EnginePair(
        core, layer_ints, layer_floats, params, _codes.LOSS_CCE, _codes.RED_MEAN, 1e-12
    )
    got = pair.call("train_step_sgd", X, labels, 0.1)
    assert isinstance(got, float) and got == want
    np.testing.assert_array_equal(
        pair.buffers["numpy"]["params"], onehot.buffers["numpy"]["params"]
    )
    for bad in (
        np.array([0, 3, 1, 1, 2, 4]),
        np.array([0, 3, 1, 1, 2, -1]),
        labels.astype(np.int32),
        labels.reshape(6, 1),
        labels[:5],
    ):
        before = {side: b["params"].copy() for side, b in pair.buffers.items()}
        assert pair.call("train_step_sgd", X, bad, 0.1) is None
        for side, b in pair.buffers.items():
            np.testing.assert_array_equal(b["params"], before[side])


@needs_native
@pytest.mark.parametrize("loss", [_codes.LOSS_SE, _codes.LOSS_BCE, _codes.LOSS_CCE])
def test_Engine__train_step_sgd_takes_one_outputs_targets_as_a_vector(core, loss):
    """A one-output network's (n,) targets train on the fast path as the
    (n, 1) column does, on both sides; not for categorical cross-entropy
    (1-D targets are labels there), not for two outputs, not when a target
    is not finite (or, for binary cross-entropy, outside [0, 1])."""
    act = "softmax" if loss == _codes.LOSS_CCE else "sigmoid"
    rng = np.random.default_rng(9)
    X, y = rng.normal(size=(6, 3)), rng.uniform(size=6)
    for n_out in (1, 2):
        layer_ints, layer_floats, size = layer_table([dense(3, 4, "tanh"), dense(4, n_out, act)])
        params = rng.normal(size=size)
        pair = EnginePair(core, layer_ints, layer_floats, params, loss, _codes.RED_MEAN, 0.0)
        takes = n_out == 1 and loss != _codes.LOSS_CCE
        got = pair.call("train_step_sgd", X, y, 0.1)
        assert (got is not None) == takes, (n_out, loss)
        if takes:  # the same step as on the column
            column = EnginePair(core, layer_ints, layer_floats, params, loss, _codes.RED_MEAN, 0.0)
            assert column.call("train_step_sgd", X, y[:, None].copy(), 0.1) == got
            np.testing.assert_array_equal(
                pair.buffers["native"]["params"], column.buffers["native"]["params"]
            )
            for bad in (np.nan, 1.5 if loss == _codes.LOSS_BCE else np.inf):
                z = y.copy()
                z[3] = bad
                assert pair.call("train_step_sgd", X, z, 0.1) is None
