"""Hypothesis fuzz of cbp's public API, on both backends.

Every generated call must either work correctly -- a result of the documented
type and shape, with finite values -- or raise a clear Python exception:
``ValueError`` (``cbp.FormatError`` included), ``TypeError``,
``cbp.DivergenceError``, ``RuntimeError`` for misuse (backward before
forward), ``OSError`` for unusable paths and ``MemoryError`` only for absurd
sizes.  Never a crash, a hang, another exception type or a warning.  On top:

* inputs are never modified: every array and container passed in is
  snapshotted and compared after the call;
* each generated input carries a verdict (valid, invalid, either way), so a
  valid input that is rejected with ValueError/TypeError fails the fuzz as
  much as an invalid one that is accepted;
* a call that fails leaves no trace: the parameters, the optimizer and its
  state, the epoch count are as before, and a following valid ``train_step``
  gives bit for bit what it gives on a fresh, identically built copy
  (``test_fuzz_sequences`` checks this over whole random call sequences,
  mirroring every successful call on a twin network).

Regressions.  Every bug the fuzz found has a minimal reproduction
(``_repro_*``, true while the bug is present) and a test of its own near the
end of this file, which names the bug should it come back.

Counting.  Every checked call is one "case", counted in ``FUZZ_COUNTS``;
tests/conftest.py reports the counts in pytest's terminal summary
(``N fuzz cases tried ...``, one line per test after it).

The profile is fixed (derandomize=True, no example database, no deadline) so
that every run tries the same cases; ``CBP_FUZZ_MAX_EXAMPLES`` scales it down
for slow runs (sanitizers).
"""

import collections
import copy
import gc
import json
import math
import os
import pathlib
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import cbp
from cbp import optim

# When a test fails, Hypothesis imports libcst to suggest a patch, and libcst
# trips a DeprecationWarning in mypy_extensions: under filterwarnings=error that
# would turn a plain failure into a pytest INTERNALERROR.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)

MAX_EXAMPLES = int(os.environ.get("CBP_FUZZ_MAX_EXAMPLES", "100"))

FUZZ = settings(
    # CBP_FUZZ_NO_SHRINK=1 (the sanitizer runs): report a failure as found, do
    # not spend minutes shrinking it under a slow build
    phases=[p for p in Phase if not (p is Phase.shrink and os.environ.get("CBP_FUZZ_NO_SHRINK"))],
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=MAX_EXAMPLES,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
#: tests that sweep every mutation in each example, and those that write
#: files (save fsyncs), run fewer examples
FUZZ_SWEEP = settings(FUZZ, max_examples=max(1, MAX_EXAMPLES * 2 // 5))
FUZZ_IO = settings(FUZZ, max_examples=max(1, MAX_EXAMPLES * 3 // 10))

#: "<test>:<outcome>" -> number of checked calls; "<test>:examples" -> examples run
FUZZ_COUNTS = collections.Counter()

OK, BAD, ANY = "ok", "bad", "any"  # verdicts on an input

LOSSES = ["squared_error", "half_squared_error", "categorical_crossentropy", "binary_crossentropy"]
CE = ("categorical_crossentropy", "binary_crossentropy")
ACTS = [
    "identity",
    "linear",
    "relu",
    "leaky_relu",
    "prelu",
    "elu",
    "sigmoid",
    "logistic",
    "tanh",
    "softmax",
    "ReLU",
    "Tanh",
]
INITS = ["glorot", "he", "nnfs", "uniform"]
BIG = 1e100  # inputs beyond this may legitimately overflow a forward pass


class _Junk:
    """An object no API accepts."""

    def __repr__(self):
        return "<junk>"


JUNK = [
    None,
    "abc",
    "",
    b"xy",
    [],
    [[]],
    {},
    {"a": 1},
    _Junk(),
    1.5,
    -1,
    0,
    True,
    2**70,
    float("nan"),
    complex(1, 2),
    (1, 2),
    np.array([1.0, 2.0]),
    print,
]


# ---------------------------------------------------------------------------
# Minimal reproductions of the bugs the fuzz found (True if the bug is
# present); each has a regression test at the end of this file
# ---------------------------------------------------------------------------
def _repro_adopt_on_failed_network():
    """A Network(...) that raises after adopting its layers leaves them
    marked as belonging to a network that does not exist."""
    layers = [cbp.Dense(1, 1, "relu", seed=0), cbp.Dense(1, 1, "identity", seed=0)]
    try:
        cbp.Network(layers, optimizer=3)
    except TypeError:
        pass
    try:
        cbp.Network(layers)
    except ValueError:
        return True
    return False


def _repro_numpy_int_seed_save():
    """A network whose seed is a NumPy integer (accepted) cannot be saved."""
    net = cbp.Network([cbp.Dense(1, 1, seed=np.int64(1))], seed=np.int64(2))
    with tempfile.TemporaryDirectory() as d:
        try:
            net.save(os.path.join(d, "n.npz"))
        except TypeError:
            return True
    return False


def _repro_seed_overflow():
    """A seed >= 2**64 is not rejected with ValueError (it raised
    OverflowError)."""
    net = cbp.Network([cbp.Dense(1, 1, seed=0)])
    try:
        net.fit([[1.0]], [[1.0]], epochs=1, lr=0.1, seed=2**64)
    except ValueError:
        return False
    except OverflowError:
        return True
    return True


def _repro_network_seed_overflow():
    """Network(seed=2**64) is accepted (then every native fit failed)."""
    for backend in _backends():
        try:
            cbp.Network([cbp.Dense(1, 1, seed=0)], seed=2**64, backend=backend)
        except ValueError:
            continue
        return True
    return False


def _repro_nonfinite_output():
    """Finite inputs that overflow give inf/NaN outputs silently."""
    net = cbp.Network([cbp.Dense(1, 1, "identity", weights=[[10.0]], bias=[0.0])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = net.predict([[1e308]])
        except (ValueError, ArithmeticError):
            return False
    return not np.isfinite(out).all()


def _repro_label_cast_warning():
    """Huge float class labels make NumPy warn (an error under -W error)."""
    net = cbp.Network([cbp.Dense(1, 3, "softmax", seed=0)], loss="categorical_crossentropy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            net.train_step([[1.0]], np.array([1e300]), lr=0.1)
        except ValueError:
            pass
    return any(issubclass(w.category, RuntimeWarning) for w in caught)


def _repro_stale_batch_after_failed_train_step():
    """A train_step that raises DivergenceError has replaced the forward cache
    but not the batch size the Python layer checks backward's y against."""
    for backend in _backends():
        net = cbp.Network(
            [cbp.Dense(1, 1, "identity", weights=[[1.0]], bias=[0.0])], backend=backend
        )
        net.forward([[1.0]])
        try:  # a finite loss, an update to inf: DivergenceError
            net.train_step([[1.0], [2.0], [3.0]], [[0.0], [0.0], [0.0]], lr=1e308)
        except cbp.DivergenceError:
            pass
        try:
            net.backward([[0.0], [0.0], [0.0]])  # y for the batch now cached
        except ValueError:
            return True
    return False


def _repro_load_allocates_declared_size():
    """load() builds the declared architecture before comparing its size with
    the stored parameters: a file declaring a huge layer raises MemoryError."""
    net = cbp.Network([cbp.Dense(1, 1, seed=0)])
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "n.npz")
        net.save(path)
        arrays = _npz_arrays(path)
        meta = json.loads(str(arrays["meta"][()]))
        meta["config"]["layers"][0].update(n_inputs=10**6, n_neurons=10**6)
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez(path, **arrays)
        try:
            cbp.load(path)
        except MemoryError:
            return True
        except ValueError:
            return False
    return True  # accepted


def _repro_history_preallocated():
    """fit() allocates the history of every requested epoch up front:
    fit(epochs=10**12) stopped by its callback after one epoch raises
    MemoryError."""
    net = cbp.Network([cbp.Dense(1, 1, seed=0)])
    try:
        net.fit(
            [[1.0]],
            [[1.0]],
            epochs=10**12,
            lr=0.1,
            callback=lambda e, logs: False,
            callback_every=1,
        )
    except MemoryError:
        return True
    return False


def _repro_load_leaks_file():
    """load() of a damaged zip raises FormatError but leaves the file open
    (np.load does not close it when the zip is unreadable): ResourceWarning."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bad.npz")
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04" + bytes(40))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                cbp.load(path)
            except ValueError:
                pass
            gc.collect()
    return any(issubclass(w.category, ResourceWarning) for w in caught)


def _repro_load_accepts_bad_epochs():
    """load() accepts an epochs_trained no fit can continue from (-5,
    10**30); fit(shuffle=True) on the loaded network then raises
    OverflowError."""
    for backend in _backends():
        for count in (-5, 10**30):
            net = cbp.Network([cbp.Dense(1, 1, seed=0)], backend=backend)
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "n.npz")
                net.save(path)
                arrays = _npz_arrays(path)
                meta = json.loads(str(arrays["meta"][()]))
                meta["epochs_trained"] = count
                arrays["meta"] = np.array(json.dumps(meta))
                np.savez(path, **arrays)
                try:
                    loaded = cbp.load(path)
                except ValueError:
                    continue
            try:
                loaded.fit([[1.0], [2.0]], [[1.0], [2.0]], epochs=1, shuffle=True)
            except OverflowError:
                return True
    return False


def _repro_load_npy_typeerror():
    """load() of a plain .npy file raises TypeError ('numpy.ndarray' object
    does not support the context manager protocol), not FormatError."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.npz")
        with open(path, "wb") as f:
            np.save(f, np.arange(3.0))
        try:
            cbp.load(path)
        except TypeError:
            return True
        except ValueError:
            return False
    return True  # accepted


def _repro_val_loss_overflow_silent():
    """fit records an infinite validation loss in its history without a word,
    while evaluate() on the same data raises FloatingPointError and fit's
    docstring promises DivergenceError when a loss becomes infinite."""
    net = cbp.Network([cbp.Dense(1, 1, "identity", weights=[[1e300]], bias=[0.0])])
    try:
        h = net.fit([[0.0]], [[0.0]], epochs=1, lr=0.1, validation_data=([[10.0]], [[0.0]]))
    except (ArithmeticError, ValueError):
        return False
    return not np.isfinite(h["val_loss"]).all()


def _repro_dense_seed_unchecked():
    """Dense(seed="abc") is accepted; the error comes later, from NumPy."""
    try:
        cbp.Dense(1, 1, seed="abc")
    except (TypeError, ValueError):
        return False
    return True


def _backends():
    return ["native", "numpy"] if cbp.native_available() else ["numpy"]


def _npz_arrays(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# ---------------------------------------------------------------------------
# Snapshots: inputs are never modified
# ---------------------------------------------------------------------------
def snapshot(obj, depth=0):
    if depth > 6:
        return ("deep", obj)
    if isinstance(obj, np.ndarray):
        mask = np.ma.getmaskarray(obj).copy() if isinstance(obj, np.ma.MaskedArray) else None
        data = np.asarray(obj)
        return (
            "nd",
            obj,
            data.copy(order="K"),
            data.dtype,
            data.shape,
            data.strides,
            data.flags.writeable,
            mask,
        )
    if isinstance(obj, (list, tuple)):
        return ("seq", obj, len(obj), [snapshot(o, depth + 1) for o in obj])
    if isinstance(obj, dict):
        return ("dict", obj, {k: snapshot(v, depth + 1) for k, v in obj.items()})
    return ("obj", obj)


def assert_unchanged(snap, where):
    kind, obj = snap[0], snap[1]
    if kind == "nd":
        _, _, copy_, dtype, shape, strides, writeable, mask = snap
        data = np.asarray(obj)
        assert data.dtype == dtype and data.shape == shape and data.strides == strides, where
        assert data.flags.writeable == writeable, f"{where}: writeable flag changed"
        if dtype.kind == "O":
            assert all(a is b for a, b in zip(data.ravel(), copy_.ravel())), where
        else:
            assert data.tobytes() == copy_.tobytes(), f"{where}: an input array was modified"
        if mask is not None:
            assert np.array_equal(np.ma.getmaskarray(obj), mask), f"{where}: mask modified"
    elif kind == "seq":
        assert len(obj) == snap[2], f"{where}: a list/tuple input changed length"
        for s in snap[3]:
            assert_unchanged(s, where)
    elif kind == "dict":
        assert set(obj) == set(snap[2]), f"{where}: a dict input changed keys"
        for s in snap[2].values():
            assert_unchanged(s, where)


# ---------------------------------------------------------------------------
# Running one call under the contract
# ---------------------------------------------------------------------------
class Outcome:
    def __init__(self, value=None, error=None):
        self.value, self.error = value, error

    @property
    def ok(self):
        return self.error is None

    def __repr__(self):
        return f"Outcome({type(self.error).__name__ if self.error else 'ok'})"


def run(test, label, fn, *args, verdict=OK, allow=(), flush=False, big=False, **kwargs):
    """Call fn(*args, **kwargs) and check the contract of a single call.

    verdict: OK (the inputs are valid: ValueError/TypeError is a failure), BAD
    (invalid: the call must raise ValueError/TypeError) or ANY.  allow: extra
    exception types allowed.  flush: collect garbage after
    a failure (drop its frames), so that what they held -- an open file,
    say -- is released, and warns, inside the call's record.  big: the inputs
    or the parameters are so large that the forward pass may overflow, which
    FloatingPointError reports; for moderate ones it is a failure.
    """
    snap = snapshot((args, kwargs))
    error = None
    value = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = fn(*args, **kwargs)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # every other type is judged below
            error = exc
        if flush and isinstance(error, (ValueError, TypeError, ArithmeticError, OSError)):
            # drop the frames of an expected failure now, so that what they
            # held (an open file, say) is released -- and warns -- in here
            error.__traceback__ = None
            error.__context__ = None
            error.__cause__ = None
    assert_unchanged(snap, f"{label}: inputs")
    for w in caught:
        raise AssertionError(
            f"{label} emitted {w.category.__name__}: {w.message} (verdict {verdict})"
        )
    if error is not None:
        if isinstance(error, cbp.DivergenceError):
            assert verdict != BAD, f"{label}: invalid input reached training ({error})"
        elif isinstance(error, FloatingPointError):
            assert verdict != BAD, f"{label}: invalid input reached the engine ({error})"
            assert big, f"{label}: overflow reported for moderate inputs: {error}"
            assert str(error).strip(), f"{label}: FloatingPointError without a message"
        elif isinstance(error, (ValueError, TypeError)):
            assert verdict != OK, f"{label}: valid input rejected: {type(error).__name__}: {error}"
            assert str(error).strip(), f"{label}: {type(error).__name__} without a message"
        elif allow and isinstance(error, allow):
            assert str(error).strip(), f"{label}: {type(error).__name__} without a message"
        else:
            raise AssertionError(
                f"{label} raised {type(error).__name__}: {error} (verdict {verdict})"
            ) from error
    else:
        assert verdict != BAD, f"{label}: invalid input accepted"
    FUZZ_COUNTS[f"{test}:{type(error).__name__ if error else 'ok'}"] += 1
    return Outcome(value, error)


def example(test):
    FUZZ_COUNTS[f"{test}:examples"] += 1


def combine(*verdicts):
    if BAD in verdicts:
        return BAD
    if ANY in verdicts:
        return ANY
    return OK


# ---------------------------------------------------------------------------
# Networks from plain specs (so that a twin can be rebuilt identically)
# ---------------------------------------------------------------------------
@st.composite
def opt_specs(draw):
    kind = draw(st.sampled_from(["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]))
    lr = draw(st.sampled_from([1e-3, 0.01, 0.1]))
    decay = draw(st.sampled_from([0.0, 0.0, 1e-3]))
    if kind == "sgd":
        return ("sgd", dict(lr=lr, decay=decay))
    if kind == "momentum":
        return ("sgd", dict(lr=lr, momentum=0.9, decay=decay))
    if kind == "nesterov":
        return ("sgd", dict(lr=lr, momentum=0.5, nesterov=True, decay=decay))
    if kind == "adagrad":
        return ("adagrad", dict(lr=lr, decay=decay))
    if kind == "rmsprop":
        return ("rmsprop", dict(lr=lr, rho=draw(st.sampled_from([0.0, 0.9, 1.0])), decay=decay))
    return ("adam", dict(lr=lr, beta_1=draw(st.sampled_from([0.0, 0.9])), decay=decay))


def make_opt(spec):
    return None if spec is None else optim.get(spec[0], **spec[1])


@st.composite
def net_specs(draw, max_hidden=2):
    loss = draw(st.sampled_from(LOSSES))
    n_in = draw(st.integers(1, 4))
    layers = []
    width = n_in
    for _ in range(draw(st.integers(0, max_hidden))):
        w = draw(st.integers(1, 5))
        layers.append(
            dict(
                type="Dense",
                n_inputs=width,
                n_neurons=w,
                activation=draw(st.sampled_from(ACTS)),
                use_bias=draw(st.sampled_from([True, True, False])),
                trainable=draw(st.sampled_from([True, True, True, False])),
                init=draw(st.sampled_from(INITS)),
                seed=draw(st.integers(0, 2**32)),
                weight_l2=draw(st.sampled_from([0.0, 0.0, 1e-3])),
                bias_l1=draw(st.sampled_from([0.0, 0.0, 1e-3])),
            )
        )
        if draw(st.integers(0, 3)) == 0:
            layers.append(dict(type="Dropout", rate=draw(st.sampled_from([0.0, 0.25, 0.5]))))
        width = w
    if loss == "categorical_crossentropy":
        n_out = draw(st.integers(2, 4))
        act = draw(st.sampled_from(["softmax", "softmax", "softmax", "sigmoid", "identity"]))
    elif loss == "binary_crossentropy":
        n_out = draw(st.integers(1, 3))
        act = draw(st.sampled_from(["sigmoid", "sigmoid", "softmax", "tanh"]))
    else:
        n_out = draw(st.integers(1, 3))
        act = draw(st.sampled_from(ACTS))
    layers.append(
        dict(
            type="Dense",
            n_inputs=width,
            n_neurons=n_out,
            activation=act,
            use_bias=draw(st.sampled_from([True, True, False])),
            init=draw(st.sampled_from(INITS)),
            seed=draw(st.integers(0, 2**32)),
        )
    )
    return dict(
        layers=layers,
        loss=loss,
        reduction=draw(st.sampled_from(["mean", "sum"])),
        seed=draw(st.integers(0, 1000)),
        optimizer=draw(st.one_of(st.none(), opt_specs())),
        n_in=n_in,
        n_out=n_out,
    )


def make_layer(spec):
    spec = dict(spec)
    kind = spec.pop("type")
    return cbp.Dense(**spec) if kind == "Dense" else cbp.Dropout(**spec)


def build(spec, backend):
    # any output with any loss: the fuzz covers the unfused cross-entropies too
    return cbp.Network(
        [make_layer(s) for s in spec["layers"]],
        loss=spec["loss"],
        reduction=spec["reduction"],
        backend=backend,
        seed=spec["seed"],
        optimizer=make_opt(spec["optimizer"]),
        check_output=False,
    )


def valid_X(rng, n, n_in):
    return rng.uniform(-2.0, 2.0, (n, n_in))


def valid_y(rng, n, n_out, loss, form=0):
    """A valid target in one of several forms."""
    if loss == "categorical_crossentropy":
        labels = rng.integers(0, n_out, n)
        form %= 4
        if form == 0:
            return labels
        if form == 1:
            return np.eye(n_out)[labels]
        if form == 2:
            p = rng.random((n, n_out)) + 1e-3
            return p / p.sum(axis=1, keepdims=True)
        return labels.astype(np.float64)
    if loss == "binary_crossentropy":
        form %= 3
        if form == 0:
            return rng.random((n, n_out))
        if form == 1:
            return rng.integers(0, 2, (n, n_out))
        return rng.integers(0, 2, (n, n_out)).astype(bool)
    Y = rng.standard_normal((n, n_out))
    return Y[:, 0].copy() if (form % 2 and n_out == 1) else Y


def state(net):
    opt = net.optimizer
    return dict(
        params=net.parameters.copy(),
        epochs=net.epochs_trained,
        opt=opt,
        opt_state=None if opt is None or opt.state is None else opt.state.copy(),
        opt_iter=None if opt is None else opt.iterations,
    )


def assert_state(net, before, where):
    after = state(net)
    assert after["params"].tobytes() == before["params"].tobytes(), (
        f"{where}: parameters changed by a failed call"
    )
    assert after["epochs"] == before["epochs"], f"{where}: epochs_trained changed"
    assert after["opt"] is before["opt"], f"{where}: the network's optimizer was replaced"
    if before["opt"] is not None:
        assert after["opt_iter"] == before["opt_iter"], f"{where}: optimizer iterations changed"
        a, b = after["opt_state"], before["opt_state"]
        if b is None:
            assert a is None or not a.any(), f"{where}: optimizer state changed"
        else:
            assert a is not None and a.tobytes() == b.tobytes(), f"{where}: optimizer state changed"


def probe_same(net, twin, spec, where, rng_seed=12345):
    """A valid train_step (the network's optimizer, else SGD 0.1) gives the same
    outcome, loss and parameters on net and on its twin."""
    rng = np.random.default_rng(rng_seed)
    X = valid_X(rng, 3, spec["n_in"])
    y = valid_y(rng, 3, spec["n_out"], spec["loss"])
    results = []
    for n in (net, twin):
        try:
            results.append(("ok", n.train_step(X, y)))
        except cbp.DivergenceError:
            results.append(("diverged", None))
    assert results[0] == results[1] or (
        results[0][0] == "ok"
        and results[1][0] == "ok"
        and math.isnan(results[0][1])
        and math.isnan(results[1][1])
    ), f"{where}: next train_step differs from a fresh copy: {results}"
    assert net.parameters.tobytes() == twin.parameters.tobytes(), (
        f"{where}: parameters after the next train_step differ from a fresh copy"
    )


# ---------------------------------------------------------------------------
# Inputs: a valid array, then maybe mutated; each with a verdict
# ---------------------------------------------------------------------------
class Arg:
    """A generated argument: its value, verdict, number of rows (for X/y) and
    whether it holds values so large that a forward pass may overflow."""

    def __init__(self, value, verdict=OK, rows=None, big=False, tag=""):
        self.value, self.verdict, self.rows, self.big, self.tag = value, verdict, rows, big, tag

    def __repr__(self):
        return f"Arg({self.tag}, {self.verdict}, rows={self.rows})"


class _Sub(np.ndarray):
    """A trivial ndarray subclass."""


def _quiet_cast(A, dtype):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if np.dtype(dtype) == np.longdouble:
            # A cast writes only the value bytes of an x87 long double (10 of
            # 16), never its padding: start from zeros, so that comparing the
            # input's bytes with its snapshot (assert_unchanged) reads no
            # uninitialised memory (valgrind flags that in bytes ==).
            B = np.zeros(A.shape, dtype)
            B[...] = A
            return B
        return A.astype(dtype)


# mutations common to X and y: name -> (weight, verdict for X)
_LAYOUT = [
    "none",
    "list",
    "tuple",
    "F",
    "strided",
    "negstrides",
    "readonly",
    "subclass",
    "masked",
    "bigendian",
]
_DTYPES = [
    "float32",
    "float16",
    "longdouble",
    "int64",
    "int8",
    "uint8",
    "bool",
    "complex",
    "complex_real",
    "object",
    "str",
    "bytes",
    "datetime",
    "timedelta",
]
_VALUES = ["nan", "inf", "-inf", "huge", "max", "tiny", "denormal", "negzero", "masked_nan"]
_SHAPES = [
    "1d",
    "row1d",
    "0d",
    "3d",
    "empty",
    "zero_cols",
    "more_cols",
    "fewer_cols",
    "more_rows",
    "fewer_rows",
    "transpose",
    "ragged",
    "scalar",
    "junk",
]
MUTATIONS = ["none"] * 12 + _LAYOUT + _DTYPES + _VALUES + _SHAPES
#: mutations that keep a valid array valid (mostly): for "all arguments valid" cases
SAFE_MUTATIONS = (
    ["none"] * 10 + _LAYOUT + ["float32", "longdouble", "int64", "tiny", "negzero", "huge"]
)


#: every mutation once, the junk expanded value by value: what a sweep tries
SWEEP_MUTATIONS = sorted(set(MUTATIONS) - {"junk"}) + [f"junk:{i}" for i in range(len(JUNK))]


def mutate(draw, A, role, loss=None, safe=False, name=None):
    """Mutate the valid 2-D (or 1-D labels) array A (name: which mutation,
    else drawn).  Returns an Arg."""
    if name is None:
        name = draw(st.sampled_from(SAFE_MUTATIONS if safe else MUTATIONS))
    n = A.shape[0]
    rows = n
    is_float = A.dtype.kind == "f"
    ce = loss in CE
    labels = A.ndim == 1 and loss == "categorical_crossentropy"  # class labels
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    pos = tuple(int(rng.integers(0, s)) for s in A.shape) if A.size else None

    def arg(value, verdict, big=False, rows=rows):
        return Arg(value, verdict, rows, big, f"{role}:{name}")

    if name == "none":
        return arg(A, OK)
    if name == "list":
        return arg(A.tolist(), OK)
    if name == "tuple":
        return arg(tuple(map(tuple, A)) if A.ndim == 2 else tuple(A.tolist()), OK)
    if name == "F":
        return arg(np.asfortranarray(A), OK)
    if name == "strided":
        big_ = np.zeros(tuple(2 * s for s in A.shape), dtype=A.dtype)
        big_[tuple(slice(None, None, 2) for _ in A.shape)] = A
        return arg(big_[tuple(slice(None, None, 2) for _ in A.shape)], OK)
    if name == "negstrides":
        return arg(A[::-1], OK)
    if name == "readonly":
        B = A.copy()
        B.flags.writeable = False
        return arg(B, OK)
    if name == "subclass":
        return arg(A.view(_Sub), OK)
    if name == "masked":
        return arg(np.ma.masked_array(A, mask=np.zeros(A.shape, bool)), OK)
    if name == "bigendian":
        return arg(A.astype(A.dtype.newbyteorder(">")), OK)
    # dtypes
    if name in ("float32", "float16", "longdouble"):
        B = _quiet_cast(
            A, {"float32": np.float32, "float16": np.float16, "longdouble": np.longdouble}[name]
        )
        if labels or not is_float:
            return arg(B, OK)
        # rounding may push a probability row's entries: still in [0, 1]
        return arg(B, OK)
    if name in ("int64", "int8", "uint8"):
        if labels:
            return arg(A.astype(name), OK if A.dtype.kind in "iub" else ANY)
        B = _quiet_cast(np.abs(A) if name == "uint8" else A, name)
        return arg(B, OK)
    if name == "bool":
        B = A.astype(bool)
        if role == "X":
            return arg(B, BAD)
        return arg(B, OK if ce else BAD)
    if name in ("complex", "complex_real"):
        B = A.astype(np.complex128)
        if name == "complex":
            B = B + 1j
        return arg(B, BAD)
    if name == "object":
        return arg(A.astype(object), BAD)
    if name == "str":
        return arg(A.astype(str), BAD)
    if name == "bytes":
        return arg(A.astype("S"), BAD)
    if name == "datetime":
        return arg(np.zeros(A.shape, dtype="datetime64[s]"), BAD)
    if name == "timedelta":
        return arg(np.zeros(A.shape, dtype="timedelta64[s]"), BAD)
    # values
    if name in ("nan", "inf", "-inf"):
        B = A.astype(np.float64)
        B[pos] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[name]
        return arg(B, BAD)
    if name in ("huge", "max"):
        B = A.astype(np.float64)
        if name == "huge":
            B = B * 1e300
        else:
            B[pos] = 1.7976931348623157e308
        if labels:  # labels 1e300: not whole-number-in-range
            return arg(B, BAD if (B != A).any() else OK)
        if role == "y" and ce:
            return arg(B, BAD if (B > 1).any() or (B < 0).any() else OK)
        return arg(B, OK, big=True)
    if name in ("tiny", "denormal", "negzero"):
        B = A.astype(np.float64)
        if name == "tiny":
            B = B * 1e-300
        elif name == "denormal":
            B[pos] = 5e-324
        else:
            B[pos] = -0.0
        if labels:  # still whole numbers within the original range?
            whole = np.array_equal(B, np.round(B)) and B.min() >= 0 and B.max() <= A.max()
            return arg(B, OK if whole else BAD)
        return arg(B, OK)
    if name == "masked_nan":
        B = A.astype(np.float64)
        B[pos] = np.nan
        mask = np.zeros(A.shape, bool)
        mask[pos] = True
        return arg(np.ma.masked_array(B, mask=mask), BAD)
    # shapes
    if name == "1d":
        if A.ndim == 1:
            return arg(A[:, None], ANY)  # (n, 1) labels: one-hot? a column
        return arg(A.ravel(), ANY if (role == "y" and A.shape[1] == 1) else BAD, rows=A.size)
    if name == "row1d":
        if role == "X":
            return arg(A[0], BAD, rows=A.shape[1])
        return arg(A[0], ANY, rows=A.shape[1] if A.ndim == 2 else 1)
    if name == "0d":
        return arg(A.ravel()[0], BAD, rows=0)
    if name == "3d":
        return arg(A[None] if A.ndim == 2 else A[None, :, None], BAD, rows=1)
    if name == "empty":
        return arg(A[:0], BAD, rows=0)
    if name == "zero_cols":
        return arg(np.zeros((n, 0)), BAD)
    if name == "more_cols":
        if A.ndim == 1:
            return arg(np.stack([A, A], axis=1), ANY)
        return arg(np.concatenate([A, A[:, :1]], axis=1), BAD)
    if name == "fewer_cols":
        if A.ndim == 1 or A.shape[1] == 1:
            return arg(np.zeros((n, 0)), BAD)
        return arg(A[:, :-1], BAD)
    if name == "more_rows":
        return arg(np.concatenate([A, A[:1]]), OK, rows=n + 1)
    if name == "fewer_rows":
        if n == 1:
            return arg(A[:0], BAD, rows=0)
        return arg(A[:-1], OK, rows=n - 1)
    if name == "transpose":
        if A.ndim == 1:
            return arg(A.T, OK)
        return arg(A.T, ANY, rows=A.shape[1])
    if name == "ragged":
        L = A.tolist()
        if A.ndim == 2 and A.shape[1] > 1:
            L[-1] = L[-1][:-1]
            return arg(L, BAD)
        return arg([L[0], [L[0], L[0]]], BAD)
    if name == "scalar":
        return arg(1.0, BAD, rows=0)
    junk = JUNK[int(name[5:])] if name.startswith("junk:") else draw(st.sampled_from(JUNK))
    if isinstance(junk, (np.ndarray, tuple)):  # (1, 2): two labels, say
        return Arg(junk, ANY, 2, tag=f"{role}:junk-{type(junk).__name__}")
    return Arg(junk, BAD, None, tag=f"{role}:junk")  # scalars, strings, objects: never arrays


@st.composite
def X_args(draw, n, n_in, safe=False):
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    return mutate(draw, valid_X(rng, n, n_in), "X", safe=safe)


@st.composite
def y_args(draw, n, n_out, loss, safe=False):
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    Y = valid_y(rng, n, n_out, loss, draw(st.integers(0, 3)))
    special = 1 if safe else draw(st.integers(0, 9))
    if special == 0 and Y_SPECIALS.get(loss):
        return y_special(rng, n, n_out, loss, draw(st.sampled_from(Y_SPECIALS[loss])))
    return mutate(draw, Y, "y", loss, safe=safe)


Y_SPECIALS = {
    "categorical_crossentropy": [
        "out_of_range",
        "negative",
        "half",
        "nan_label",
        "uint64_big",
        "huge_label",
        "bool_labels",
        "2d_int_labels",
        "unnormalised",
    ],
    "binary_crossentropy": ["below0", "above1", "two", "tiny_negative"],
}


def y_special(rng, n, n_out, loss, bad):
    """Targets that only a cross-entropy loss can get wrong."""
    if loss == "categorical_crossentropy":
        labels = rng.integers(0, n_out, n)
        if bad == "out_of_range":
            labels[0] = n_out
            return Arg(labels, BAD, n, tag="y:" + bad)
        if bad == "negative":
            labels[-1] = -1
            return Arg(labels, BAD, n, tag="y:" + bad)
        if bad == "half":
            return Arg(labels + 0.5, BAD, n, tag="y:" + bad)
        if bad == "nan_label":
            L = labels.astype(float)
            L[0] = np.nan
            return Arg(L, BAD, n, tag="y:" + bad)
        if bad == "uint64_big":
            return Arg(np.full(n, 2**63, dtype=np.uint64), BAD, n, tag="y:" + bad)
        if bad == "huge_label":
            return Arg(np.full(n, 1e300), BAD, n, tag="y:" + bad)
        if bad == "bool_labels":
            return Arg(labels.astype(bool), OK, n, tag="y:" + bad)
        if bad == "2d_int_labels":
            return Arg(labels[:, None], ANY, n, tag="y:" + bad)
        return Arg(np.full((n, n_out), 1.0), OK, n, tag="y:" + bad)  # rows sum > 1
    B = rng.random((n, n_out))
    B[0, 0] = {"below0": -0.1, "above1": 1.1, "two": 2.0, "tiny_negative": -1e-300}[bad]
    return Arg(B, BAD, n, tag="y:" + bad)


def sweep_X(draw, n, n_in):
    """Every mutation of one valid X."""
    A = valid_X(np.random.default_rng(draw(st.integers(0, 2**16))), n, n_in)
    for name in SWEEP_MUTATIONS:
        yield mutate(draw, A, "X", name=name)


def sweep_y(draw, n, n_out, loss):
    """Every mutation of valid targets (their form drawn), and the specials."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    for name in SWEEP_MUTATIONS:
        Y = valid_y(rng, n, n_out, loss, draw(st.integers(0, 3)))
        yield mutate(draw, Y, "y", loss, name=name)
    for bad in Y_SPECIALS.get(loss, []):
        yield y_special(rng, n, n_out, loss, bad)


def scalar_arg(draw, kind, safe=False):
    """A scalar for lr, epochs, batch_size, seed or callback_every."""
    table, weights = scalar_table(kind)
    pool = [i for i, w in enumerate(weights) for _ in range(w) if not safe or table[i][1] == OK]
    value, verdict = table[draw(st.sampled_from(pool))]
    return Arg(value, verdict, tag=f"{kind}={value!r}")


def sweep_scalar(kind):
    return [Arg(v, verdict, tag=f"{kind}={v!r}") for v, verdict in scalar_table(kind)[0]]


def scalar_table(kind):
    """[(value, verdict)], weights"""
    if kind == "lr":
        table = [
            (None, OK),
            (0.1, OK),
            (0.01, OK),
            (1, OK),
            (np.float64(0.05), OK),
            (np.float32(0.05), OK),
            (1e-300, OK),
            (5e-324, OK),
            (1e300, OK),
            (1e10, OK),
            (0.0, BAD),
            (-0.1, BAD),
            (-np.inf, BAD),
            (np.inf, BAD),
            (np.nan, BAD),
            ("0.1", BAD),
            (True, BAD),
            ([0.1], BAD),
            ({}, BAD),
            (complex(0.1), BAD),
            (np.array(0.1), ANY),
            (np.array([0.1]), BAD),
            (2**70, OK),
        ]
        weights = [20, 10, 10, 2, 2, 1, 1, 1, 4, 4] + [1] * 13
    elif kind == "epochs":
        table = [
            (1, OK),
            (2, OK),
            (3, OK),
            (np.int64(2), OK),
            (np.uint8(1), OK),
            (5, OK),
            (0, BAD),
            (-1, BAD),
            (2.0, BAD),
            (1.5, BAD),
            ("2", BAD),
            (None, BAD),
            (True, BAD),
            ([2], BAD),
            (np.float64(2), BAD),
        ]
        # (huge epoch counts are valid and would train for ever: the fit sweep
        # tries them with a callback that stops after the first epoch)
        weights = [20, 10, 5, 2, 1, 3] + [1] * 9
    elif kind == "batch_size":
        table = [
            (None, OK),
            (1, OK),
            (2, OK),
            (3, OK),
            (100, OK),
            (2**64, OK),
            (np.int32(2), OK),
            (0, BAD),
            (-1, BAD),
            (1.5, BAD),
            ("2", BAD),
            (True, BAD),
            ([1], BAD),
            (float("nan"), BAD),
        ]
        weights = [10, 5, 5, 3, 2, 1, 1] + [1] * 7
    elif kind == "seed":
        table = [
            (None, OK),
            (0, OK),
            (7, OK),
            (2**32, OK),
            (2**63, OK),
            (2**64 - 1, OK),
            (np.int64(3), OK),
            (np.uint64(2**64 - 1), OK),
            (2**64, BAD),
            (2**100, BAD),
            (-1, BAD),
            (1.5, BAD),
            ("1", BAD),
            (True, BAD),
            ([1], BAD),
        ]
        weights = [10, 5, 5, 2, 2, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1]
    elif kind == "callback_every":
        table = [
            (100, OK),
            (1, OK),
            (2, OK),
            (2**64, OK),
            (np.int16(1), OK),
            (0, BAD),
            (-1, BAD),
            (1.5, BAD),
            (None, BAD),
            ("1", BAD),
            (True, BAD),
        ]
        weights = [10, 5, 3, 1, 1] + [1] * 6
    else:
        raise AssertionError(kind)
    assert len(weights) == len(table), kind
    return table, weights


def is_big(*args, net=None):
    """Inputs (Args) or parameters large enough to overflow a forward pass."""
    if any(a.big for a in args if isinstance(a, Arg)):
        return True
    return net is not None and bool(np.abs(net.parameters).max() > BIG)


def _finite(x):
    return bool(np.all(np.isfinite(np.asarray(x, dtype=float))))


# ---------------------------------------------------------------------------
# Result checks
# ---------------------------------------------------------------------------
def check_output(out, rows, n_out, where):
    assert isinstance(out, np.ndarray) and out.dtype == np.float64, f"{where}: {type(out)}"
    assert out.shape == (rows, n_out), f"{where}: shape {out.shape} != {(rows, n_out)}"
    assert _finite(out), f"{where}: non-finite output {out}"


def check_loss(value, where):
    assert isinstance(value, float), f"{where}: loss is a {type(value).__name__}"
    assert math.isfinite(value), f"{where}: non-finite loss {value}"


def rows_of(*args):
    return [a.rows for a in args]


# ---------------------------------------------------------------------------
# The fuzz tests
# ---------------------------------------------------------------------------
def _check_inference(T, net, spec, X, y=None):
    """predict and forward on X (they must agree); evaluate on (X, y)."""
    before = state(net)
    outs = {}
    for op in ("predict", "forward"):
        o = run(
            T, f"{op}({X})", getattr(net, op), X.value, verdict=X.verdict, big=is_big(X, net=net)
        )
        if o.ok:
            check_output(o.value, X.rows, spec["n_out"], f"{op}({X})")
            outs[op] = o.value
        assert_state(net, before, op)
    if len(outs) == 2:
        assert np.array_equal(outs["predict"], outs["forward"], equal_nan=True), (
            f"predict and forward disagree on {X}"
        )
    if y is None:
        return
    verdict = combine(X.verdict, y.verdict)
    if verdict == OK and X.rows != y.rows:
        verdict = BAD
    o = run(
        T,
        f"evaluate({X}, {y})",
        net.evaluate,
        X.value,
        y.value,
        verdict=verdict,
        big=is_big(X, y, net=net),
    )
    assert_state(net, before, "evaluate")
    if o.ok:
        assert set(o.value) == ({"loss", "accuracy"} if spec["loss"] in CE else {"loss"})
        check_loss(o.value["loss"], f"evaluate({X}, {y})")
        if "accuracy" in o.value:
            assert 0.0 <= o.value["accuracy"] <= 1.0


@FUZZ_SWEEP
@given(data=st.data())
def test_fuzz_inference(backend, data):
    """forward, predict and evaluate: every mutation of X (with valid y), every
    mutation of y (with valid X), then a drawn pair."""
    T = "inference"
    example(T)
    spec = data.draw(net_specs())
    net = build(spec, backend)
    twin = build(spec, backend)
    n = data.draw(st.integers(1, 6))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    X_ok = Arg(valid_X(rng, n, spec["n_in"]), OK, n)
    y_ok = Arg(valid_y(rng, n, spec["n_out"], spec["loss"], data.draw(st.integers(0, 3))), OK, n)
    for X in sweep_X(data.draw, n, spec["n_in"]):
        _check_inference(T, net, spec, X, y_ok)
    for y in sweep_y(data.draw, n, spec["n_out"], spec["loss"]):
        _check_inference(T, net, spec, X_ok, y)
    X = data.draw(X_args(n, spec["n_in"]))
    _check_inference(T, net, spec, X, data.draw(y_args(X.rows or n, spec["n_out"], spec["loss"])))
    probe_same(net, twin, spec, "after inference")


@FUZZ_SWEEP
@given(data=st.data())
def test_fuzz_backward_and_step(backend, data):
    """backward before any forward (RuntimeError whatever y is); then, after a
    valid forward, every mutation of y; then step(lr) for every lr."""
    T = "backward_step"
    example(T)
    spec = data.draw(net_specs())
    net = build(spec, backend)
    twin = build(spec, backend)
    n = data.draw(st.integers(1, 5))
    y = data.draw(y_args(n, spec["n_out"], spec["loss"]))
    o = run(T, "backward", net.backward, y.value, verdict=ANY, allow=(RuntimeError,))
    assert isinstance(o.error, RuntimeError) and "forward" in str(o.error), (
        f"backward before forward: {o}"
    )
    before = state(net)
    Xf = valid_X(np.random.default_rng(data.draw(st.integers(0, 2**16))), n, spec["n_in"])
    net.forward(Xf)
    twin.forward(Xf)
    for y in sweep_y(data.draw, n, spec["n_out"], spec["loss"]):
        verdict = BAD if y.verdict == OK and y.rows != n else y.verdict
        o = run(T, f"backward({y})", net.backward, y.value, verdict=verdict, big=is_big(y, net=net))
        assert_state(net, before, f"backward({y})")
        if o.ok:
            check_loss(o.value, f"backward({y})")
            assert twin.backward(y.value) == o.value or math.isnan(o.value)
            assert net.gradients.tobytes() == twin.gradients.tobytes(), f"backward({y})"
    for lr in sweep_scalar("lr"):
        before = state(net)
        o = run(T, "step", net.step, lr.value, verdict=lr.verdict)
        if o.ok:
            assert o.value is None and _finite(net.parameters)
            twin.step(lr.value)
            assert net.parameters.tobytes() == twin.parameters.tobytes(), f"step({lr})"
        else:
            assert_state(net, before, f"step({lr})")
    probe_same(net, twin, spec, "after backward/step")


def _check_train_step(T, net, twin, X, y, lr):
    verdict = combine(X.verdict, y.verdict, lr.verdict)
    if verdict == OK and X.rows != y.rows:
        verdict = BAD
    before = state(net)
    where = f"train_step({X}, {y}, {lr})"
    o = run(
        T,
        where,
        net.train_step,
        X.value,
        y.value,
        lr.value,
        verdict=verdict,
        big=is_big(X, y, net=net),
    )
    if o.ok:
        check_loss(o.value, where)
        assert _finite(net.parameters), where
        assert twin.train_step(X.value, y.value, lr.value) == o.value, where
        assert net.parameters.tobytes() == twin.parameters.tobytes(), where
    else:
        assert_state(net, before, where)
    return o


@FUZZ_SWEEP
@given(data=st.data())
def test_fuzz_train_step(backend, data):
    """train_step(X, y, lr): every mutation of each argument with the others
    valid, then a drawn triple.  Every success is repeated on a twin."""
    T = "train_step"
    example(T)
    spec = data.draw(net_specs())
    net = build(spec, backend)
    twin = build(spec, backend)
    n = data.draw(st.integers(1, 6))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    X_ok = Arg(valid_X(rng, n, spec["n_in"]), OK, n)
    y_ok = Arg(valid_y(rng, n, spec["n_out"], spec["loss"], data.draw(st.integers(0, 3))), OK, n)
    lr_ok = Arg(data.draw(st.sampled_from([None, 0.01, 0.1])), OK)
    cases = [(X, y_ok, lr_ok) for X in sweep_X(data.draw, n, spec["n_in"])]
    cases += [(X_ok, y, lr_ok) for y in sweep_y(data.draw, n, spec["n_out"], spec["loss"])]
    cases += [(X_ok, y_ok, lr) for lr in sweep_scalar("lr")]
    cases += [
        (
            data.draw(X_args(n, spec["n_in"])),
            data.draw(y_args(n, spec["n_out"], spec["loss"])),
            scalar_arg(data.draw, "lr"),
        )
    ]
    for X, y, lr in cases:
        _check_train_step(T, net, twin, X, y, lr)
    probe_same(net, twin, spec, "after train_step")


FIT_ARGS = [
    "X",
    "y",
    "epochs",
    "lr",
    "batch_size",
    "seed",
    "callback_every",
    "optimizer",
    "validation",
    "early_stopping",
    "callback",
]


def _fit_args(data, spec, n):
    """Arguments of fit as specs.  Modes: every argument valid; exactly one
    argument free to be invalid; all free; valid but with lr=1e300, which
    makes training diverge after a step or two."""
    mode = data.draw(st.sampled_from(["valid", "one_bad", "random", "diverge"]))
    free = data.draw(st.sampled_from(FIT_ARGS)) if mode == "one_bad" else None

    def safe(name):
        return mode in ("valid", "diverge") or (mode == "one_bad" and name != free)

    args = {"mode": (mode, free)}
    args["X"] = data.draw(X_args(n, spec["n_in"], safe=safe("X")))
    args["y"] = data.draw(y_args(n, spec["n_out"], spec["loss"], safe=safe("y")))
    for k in ("epochs", "lr", "batch_size", "seed", "callback_every"):
        args[k] = scalar_arg(data.draw, k, safe=safe(k))
    if mode == "diverge":
        args["lr"] = Arg(1e300, OK, tag="lr=1e300")
        args["epochs"] = Arg(data.draw(st.sampled_from([2, 3, 5])), OK, tag="epochs")
    sh = data.draw(st.sampled_from([False, True, None, "auto", np.bool_(False), 0, 1, "yes"]))
    args["shuffle"] = Arg(
        sh,
        OK if sh is None or isinstance(sh, (bool, np.bool_)) or sh == "auto" else BAD,
        tag=f"shuffle={sh!r}",
    )
    # optimizer: None, a fresh one (spec), junk
    o = data.draw(
        st.sampled_from(
            ["none"] * 6
            + ["fresh"] * 4
            + ([] if safe("optimizer") else ["junk_str", "class", "bound_other", "instance_junk"])
        )
    )
    if o == "fresh" and args["lr"].value is not None and safe("optimizer"):
        o = "none"  # lr and optimizer together are rejected
    args["optimizer"] = o
    # validation data
    v = data.draw(
        st.sampled_from(
            ["none"] * 6
            + ["ok"] * 3
            + ["list"]
            + (
                []
                if safe("validation")
                else ["mutX", "muty", "single", "triple", "str", "dict", "int"]
            )
        )
    )
    args["validation"] = v
    if v in ("ok", "list", "mutX", "muty"):
        nv = data.draw(st.integers(1, 4))
        rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
        Xv = Arg(valid_X(rng, nv, spec["n_in"]), OK, nv)
        yv = Arg(valid_y(rng, nv, spec["n_out"], spec["loss"]), OK, nv)
        if v == "mutX":
            Xv = data.draw(X_args(nv, spec["n_in"]))
        if v == "muty":
            yv = data.draw(y_args(nv, spec["n_out"], spec["loss"]))
        args["val_arrays"] = (Xv, yv)
    es = data.draw(
        st.sampled_from(
            ["none"] * 6
            + ["true", "obj", "obj_keep"]
            + ([] if safe("early_stopping") else ["false", "str"])
        )
    )
    args["early_stopping"] = es
    cb = data.draw(
        st.sampled_from(
            ["none"] * 5
            + ["record", "stop_first", "truthy"]
            + ([] if safe("callback") else ["int"])
        )
    )
    args["callback"] = cb
    args["opt_spec"] = data.draw(opt_specs())
    return args


def _materialize_fit(args, spec, backend, calls):
    """(kwargs for fit, verdict, extra notes) -- fresh objects every time."""
    kw = {}
    verdicts = []
    X, y = args["X"], args["y"]
    verdicts += [X.verdict, y.verdict]
    if X.verdict == OK and y.verdict == OK and X.rows != y.rows:
        verdicts.append(BAD)
    for k in ("epochs", "lr", "batch_size", "seed", "callback_every", "shuffle"):
        kw[k] = args[k].value
        verdicts.append(args[k].verdict)
    o = args["optimizer"]
    if o == "fresh":
        kw["optimizer"] = make_opt(args["opt_spec"])
        if kw["lr"] is not None:
            verdicts.append(BAD)
    elif o == "junk_str":
        kw["optimizer"], _ = "adamw", verdicts.append(BAD)  # not an optimizer's name
    elif o == "class":
        kw["optimizer"], _ = optim.Adam, verdicts.append(BAD)
    elif o == "bound_other":
        other = optim.Adam()
        other._bind(10**4 + 7)
        kw["optimizer"], _ = other, verdicts.append(BAD)
    elif o == "instance_junk":
        kw["optimizer"], _ = object(), verdicts.append(BAD)
    v = args["validation"]
    if v in ("ok", "list", "mutX", "muty"):
        Xv, yv = args["val_arrays"]
        kw["validation_data"] = [Xv.value, yv.value] if v == "list" else (Xv.value, yv.value)
        verdicts += [Xv.verdict, yv.verdict]
        if Xv.verdict == OK and yv.verdict == OK and Xv.rows != yv.rows:
            verdicts.append(BAD)
    elif v == "single":
        kw["validation_data"] = (valid_X(np.random.default_rng(1), 2, spec["n_in"]),)
        verdicts.append(BAD)
    elif v == "triple":
        Xv = valid_X(np.random.default_rng(1), 2, spec["n_in"])
        kw["validation_data"] = (Xv, Xv, Xv)
        verdicts.append(BAD)
    elif v == "str":
        kw["validation_data"] = "ab"
        verdicts.append(BAD)
    elif v == "dict":
        kw["validation_data"] = {"X": 1, "y": 2}
        verdicts.append(BAD)
    elif v == "int":
        kw["validation_data"] = 5
        verdicts.append(BAD)
    es = args["early_stopping"]
    if es == "true":
        kw["early_stopping"] = True
    elif es == "obj":
        kw["early_stopping"] = cbp.EarlyStopping(patience=1, tol=0.0)
    elif es == "obj_keep":
        kw["early_stopping"] = cbp.EarlyStopping(patience=2, restore_best=False)
    elif es == "false":
        kw["early_stopping"] = False
        verdicts.append(ANY)  # rejected today (TypeError); False could mean "off"
    elif es == "str":
        kw["early_stopping"] = "yes"
        verdicts.append(BAD)
    cb = args["callback"]
    if cb == "record":
        kw["callback"] = lambda epoch, logs: calls.append((epoch, dict(logs)))
    elif cb == "stop_first":
        kw["callback"] = lambda epoch, logs: (calls.append((epoch, dict(logs))), False)[1]
    elif cb == "truthy":
        kw["callback"] = lambda epoch, logs: (calls.append((epoch, dict(logs))), "stop")[1]
    elif cb == "int":
        kw["callback"] = 5
        verdicts.append(BAD)
    return kw, combine(*verdicts)


def check_history(hist, net, kw, calls, classifier, where, may_stop):
    epochs = kw["epochs"]
    assert isinstance(hist, dict) and hist is net.history, where
    keys = {"loss"} | ({"accuracy"} if classifier else set())
    if kw.get("validation_data") is not None:
        keys |= {"val_loss"} | ({"val_accuracy"} if classifier else set())
    es = kw.get("early_stopping")
    if es is not None and es is not False:
        keys |= {"best_epoch", "stopped_epoch"}
    assert set(hist) == keys, f"{where}: history keys {sorted(hist)} != {sorted(keys)}"
    L = len(hist["loss"])
    assert 1 <= L <= epochs, f"{where}: {L} epochs of history for epochs={epochs}"
    stopped_early = es not in (None, False) and hist["stopped_epoch"] is not None
    if L < epochs:
        assert stopped_early or may_stop, f"{where}: fit stopped after {L} epochs"
    for k in keys - {"best_epoch", "stopped_epoch"}:
        assert len(hist[k]) == L, f"{where}: history[{k!r}] = {hist[k]}"
        assert _finite(hist[k]), f"{where}: history[{k!r}] = {hist[k]}"
        if "accuracy" in k:
            assert ((hist[k] >= 0) & (hist[k] <= 1)).all()
    for epoch, logs in calls:
        assert 1 <= epoch <= L and all(math.isfinite(v) for v in logs.values()), (epoch, logs)


def _check_fit(T, net, twin, spec, backend, args, where="fit"):
    """One fit call under the contract; the twin repeats what it must."""
    calls = []
    kw, verdict = _materialize_fit(args, spec, backend, calls)
    before = state(net)
    epochs_before = net.epochs_trained
    o = run(T, where, net.fit, args["X"].value, args["y"].value, verdict=verdict, **kw)
    if o.ok:
        check_history(
            o.value, net, kw, calls, spec["loss"] in CE, where, args["callback"] == "stop_first"
        )
        assert net.epochs_trained == epochs_before + len(o.value["loss"]), where
        assert _finite(net.parameters), where
        # deterministic: the twin does the same
        kw2, _ = _materialize_fit(args, spec, backend, [])
        h2 = twin.fit(args["X"].value, args["y"].value, **kw2)
        assert net.parameters.tobytes() == twin.parameters.tobytes(), (
            f"{where}: fit is not deterministic"
        )
        assert np.array_equal(o.value["loss"], h2["loss"]), where
    elif isinstance(o.error, cbp.DivergenceError):
        err = o.error
        assert isinstance(err.epoch, int) and 1 <= err.epoch <= kw["epochs"], where
        assert _finite(net.parameters), where
        assert len(err.history["loss"]) == err.epoch - 1, where
        assert net.epochs_trained == epochs_before + err.epoch - 1, where
        # the parameters are those of the start of the diverging epoch: what
        # the same fit stopped one epoch earlier leaves (early stopping only
        # watches, but its restore_best would move the twin elsewhere)
        kw2, _ = _materialize_fit(args, spec, backend, [])
        kw2.pop("early_stopping", None)
        if err.epoch > 1:
            kw2["epochs"] = err.epoch - 1
            twin.fit(args["X"].value, args["y"].value, **kw2)
        elif kw2.get("optimizer") is not None:
            twin.optimizer = kw2["optimizer"]  # fit adopts its optimizer even on failure
        assert net.parameters.tobytes() == twin.parameters.tobytes(), (
            f"{where}: after divergence in epoch {err.epoch} the parameters are not those "
            "of its start"
        )
        assert net.epochs_trained == twin.epochs_trained, where
    else:
        assert_state(net, before, where)
    # fit leaves no forward cache: backward must ask for a forward
    if o.ok or isinstance(o.error, cbp.DivergenceError):
        y_ok = valid_y(np.random.default_rng(0), 1, spec["n_out"], spec["loss"])
        with pytest.raises(RuntimeError, match="forward"):
            net.backward(y_ok)
    return o


@FUZZ
@given(data=st.data())
def test_fuzz_fit(backend, data):
    """fit with drawn arguments: all valid, one free to be invalid, all free,
    or valid with lr=1e300 (divergence)."""
    T = "fit"
    example(T)
    spec = data.draw(net_specs())
    net = build(spec, backend)
    twin = build(spec, backend)
    n = data.draw(st.integers(1, 6))
    _check_fit(T, net, twin, spec, backend, _fit_args(data, spec, n))
    probe_same(net, twin, spec, "after fit")


FIT_VARIANTS = {
    "shuffle": [
        (True, OK),
        (None, OK),
        ("auto", OK),
        (np.bool_(True), OK),
        (0, BAD),
        (1, BAD),
        ("yes", BAD),
    ],
    "optimizer": ["fresh", "junk_str", "class", "bound_other", "instance_junk"],
    "validation": ["ok", "list", "mutX", "muty", "single", "triple", "str", "dict", "int"],
    "early_stopping": ["true", "obj", "obj_keep", "false", "str"],
    "callback": ["record", "stop_first", "truthy", "int"],
}


@settings(FUZZ, max_examples=max(1, MAX_EXAMPLES // 5))
@given(data=st.data())
def test_fuzz_fit_sweep(backend, data):
    """fit: every invalid value of every argument in turn, the others valid."""
    T = "fit_sweep"
    example(T)
    spec = data.draw(net_specs(max_hidden=1))
    net = build(spec, backend)
    twin = build(spec, backend)
    n = data.draw(st.integers(1, 5))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    base = {
        "mode": ("sweep", None),
        "X": Arg(valid_X(rng, n, spec["n_in"]), OK, n),
        "y": Arg(valid_y(rng, n, spec["n_out"], spec["loss"], data.draw(st.integers(0, 3))), OK, n),
        "epochs": Arg(1, OK),
        "lr": Arg(None, OK),
        "batch_size": Arg(None, OK),
        "seed": Arg(None, OK),
        "callback_every": Arg(100, OK),
        "shuffle": Arg(False, OK),
        "optimizer": "none",
        "validation": "none",
        "early_stopping": "none",
        "callback": "none",
        "opt_spec": data.draw(opt_specs()),
    }
    variants = [("X", X) for X in sweep_X(data.draw, n, spec["n_in"])]
    variants += [("y", y) for y in sweep_y(data.draw, n, spec["n_out"], spec["loss"])]
    for kind in ("epochs", "lr", "batch_size", "seed", "callback_every"):
        variants += [(kind, a) for a in sweep_scalar(kind)]
    variants += [
        ("shuffle", Arg(v, verdict, tag=f"shuffle={v!r}")) for v, verdict in FIT_VARIANTS["shuffle"]
    ]
    for key in ("optimizer", "validation", "early_stopping", "callback"):
        variants += [(key, v) for v in FIT_VARIANTS[key]]
    variants += [("huge_epochs", e) for e in (10**6, 2**63, 2**64, 10**30)]
    for key, value in variants:
        args = dict(base)
        if key == "huge_epochs":  # valid; the callback stops them after epoch 1
            args.update(
                epochs=Arg(value, OK, tag=f"epochs={value}"),
                callback="stop_first",
                callback_every=Arg(1, OK),
            )
        else:
            args[key] = value
        if key == "validation" and value in ("ok", "list", "mutX", "muty"):
            nv = data.draw(st.integers(1, 3))
            Xv = Arg(valid_X(rng, nv, spec["n_in"]), OK, nv)
            yv = Arg(valid_y(rng, nv, spec["n_out"], spec["loss"]), OK, nv)
            if value == "mutX":
                Xv = data.draw(X_args(nv, spec["n_in"]))
            elif value == "muty":
                yv = data.draw(y_args(nv, spec["n_out"], spec["loss"]))
            args["val_arrays"] = (Xv, yv)
        _check_fit(T, net, twin, spec, backend, args, where=f"fit({key}={value!r})")
        assert net.parameters.tobytes() == twin.parameters.tobytes()
    probe_same(net, twin, spec, "after the fit sweep")


# ---------------------------------------------------------------------------
# Random call sequences on one network, mirrored on a twin
# ---------------------------------------------------------------------------
@st.composite
def ops(draw, spec):
    kind = draw(
        st.sampled_from(
            [
                "forward",
                "forward",
                "backward",
                "backward",
                "step",
                "train_step",
                "train_step",
                "train_step",
                "fit",
                "predict",
                "evaluate",
                "set_weights",
                "set_optimizer",
            ]
        )
    )
    n = draw(st.integers(1, 4))
    mutate_ = draw(st.integers(0, 3)) == 0

    def X():
        if mutate_:
            return draw(X_args(n, spec["n_in"]))
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        return Arg(valid_X(rng, n, spec["n_in"]), OK, n)

    def y(rows=n):
        if mutate_:
            return draw(y_args(rows, spec["n_out"], spec["loss"]))
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        return Arg(
            valid_y(rng, rows, spec["n_out"], spec["loss"], draw(st.integers(0, 3))), OK, rows
        )

    def lr():
        if mutate_:
            return scalar_arg(draw, "lr")
        return Arg(draw(st.sampled_from([None, None, 0.01, 0.01, 0.1, 0.1, 1e150, 1e300])), OK)

    if kind in ("forward", "predict"):
        return (kind, X())
    if kind == "backward":
        return (kind, y(draw(st.integers(1, 4))))
    if kind == "step":
        return (kind, lr())
    if kind == "train_step":
        return (kind, X(), y(), lr())
    if kind == "evaluate":
        return (kind, X(), y())
    if kind == "fit":
        return (
            kind,
            X(),
            y(),
            Arg(draw(st.integers(1, 3)), OK),
            scalar_arg(draw, "batch_size") if mutate_ else Arg(None, OK),
            lr(),
            Arg(draw(st.booleans()), OK),
        )
    if kind == "set_weights":
        dense = [i for i, l in enumerate(spec["layers"]) if l["type"] == "Dense"]
        i = draw(st.sampled_from(dense))
        L = spec["layers"][i]
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        W = rng.uniform(-1, 1, (L["n_inputs"], L["n_neurons"]))
        W = mutate(draw, W, "W") if mutate_ else Arg(W, OK, L["n_inputs"])
        return (kind, i, W, L["n_inputs"])
    if kind == "set_optimizer":
        choice = draw(st.sampled_from(["spec", "none", "junk", "bound_other"]))
        return (kind, choice, draw(opt_specs()))
    raise AssertionError(kind)


def _apply(net, op):
    """Run op on net; returns the raw result (exceptions propagate)."""
    kind = op[0]
    if kind in ("forward", "predict"):
        return getattr(net, kind)(op[1].value)
    if kind == "backward":
        return net.backward(op[1].value)
    if kind == "step":
        return net.step(op[1].value)
    if kind == "train_step":
        return net.train_step(op[1].value, op[2].value, op[3].value)
    if kind == "evaluate":
        return net.evaluate(op[1].value, op[2].value)
    if kind == "fit":
        _, X, y, epochs, bs, lr, shuffle = op
        return net.fit(
            X.value,
            y.value,
            epochs=epochs.value,
            batch_size=bs.value,
            lr=lr.value,
            shuffle=shuffle.value,
            seed=3,
        )
    if kind == "set_weights":
        net.layers[op[1]].weights = op[2].value
        return None
    if kind == "set_optimizer":
        choice, ospec = op[1], op[2]
        if choice == "spec":
            net.optimizer = make_opt(ospec)
        elif choice == "none":
            net.optimizer = None
        elif choice == "junk":
            net.optimizer = "sgdw"  # not an optimizer's name
        else:
            other = optim.SGD(0.1, momentum=0.5)
            other._bind(net.parameters.size + 1)
            net.optimizer = other
        return None
    raise AssertionError(kind)


MAYBE = "maybe"  # a cached forward pass that a failed call may have dropped


def _non_finite(X):
    """X is a float64 ndarray holding a NaN or an infinity."""
    return isinstance(X, np.ndarray) and X.dtype == np.float64 and not np.isfinite(X).all()


def _verdict(op, batch):
    kind = op[0]
    args = [a for a in op[1:] if isinstance(a, Arg)]
    v = combine(*(a.verdict for a in args))
    if kind in ("train_step", "evaluate", "fit") and v == OK and op[1].rows != op[2].rows:
        v = BAD
    if kind == "backward":
        if batch is None or batch is MAYBE:
            return ANY  # RuntimeError expected (MAYBE: allowed)
        if v == OK and op[1].rows != batch:
            v = BAD
    if kind == "set_optimizer":
        v = OK if op[1] in ("spec", "none") else BAD
    if kind == "set_weights" and v == OK:
        if op[2].rows is not None and op[2].rows != op[3]:
            v = BAD  # a row more or fewer than the layer's inputs
        elif op[2].rows != np.shape(op[2].value)[0]:
            v = ANY
    return v


@FUZZ
@given(data=st.data())
def test_fuzz_sequences(backend, data):
    """Random sequences of valid and invalid calls on one network.  Every call
    that succeeds is repeated on a twin; failed calls must leave no trace, so
    the two stay bit-identical throughout."""
    T = "sequences"
    example(T)
    spec = data.draw(net_specs())
    net = build(spec, backend)
    twin = build(spec, backend)
    batch = None  # rows of the last successful forward/train_step (None after fit)
    big_batch = False  # ... and whether its X was large enough to overflow
    for i in range(data.draw(st.integers(1, 8))):
        op = data.draw(ops(spec))
        where = f"op {i} {op[0]} {[a for a in op[1:]]}"
        verdict = _verdict(op, batch)
        before = state(net)
        o = run(
            T,
            op[0],
            _apply,
            net,
            op,
            verdict=verdict,
            allow=(RuntimeError,) if op[0] == "backward" else (),
            big=is_big(*op[1:], net=net) or (op[0] in ("backward", "step") and big_batch),
        )
        if isinstance(o.error, RuntimeError):
            assert op[0] == "backward" and batch in (None, MAYBE), f"{where}: {o.error}"
            batch = None
        if isinstance(o.error, FloatingPointError):
            # an overflow leaves its documented traces (a forward pass whose
            # output overflowed is still cached; a backward whose loss
            # overflowed has written the gradients): the twin, in the same
            # state, must overflow the same way and keep the same traces
            with pytest.raises(FloatingPointError) as mirrored:
                _apply(twin, op)
            assert str(mirrored.value) == str(o.error), where
        if op[0] == "forward" and isinstance(o.error, FloatingPointError):
            # the cached output overflowed: a backward on it may overflow too,
            # even after a set_weights has made the parameters moderate
            batch, big_batch = op[1].rows, True
        if op[0] == "train_step" and not o.ok and _non_finite(op[1].value):
            # the fast path checks X as it copies it over the cached forward's
            # input, so the cache may be gone (documented in train_step)
            batch = MAYBE if batch is not None else None
        if o.ok:
            kind = op[0]
            mirror = _apply(twin, op)
            if kind in ("forward", "predict"):
                check_output(o.value, op[1].rows, spec["n_out"], where)
                assert np.array_equal(o.value, mirror, equal_nan=True), where
            elif kind in ("backward", "train_step"):
                check_loss(o.value, where)
                assert o.value == mirror or (math.isnan(o.value) and math.isnan(mirror)), where
            elif kind == "evaluate":
                check_loss(o.value["loss"], where)
                assert o.value == mirror or not math.isfinite(o.value["loss"]), where
            elif kind == "fit":
                assert np.array_equal(o.value["loss"], mirror["loss"]), where
            if kind in ("forward", "train_step"):
                batch = op[1].rows
                big_batch = op[1].big
            elif kind == "fit":
                batch = None
        elif isinstance(o.error, cbp.DivergenceError):
            if op[0] == "fit":
                err = o.error
                if err.epoch > 1:
                    _, X, y, epochs, bs, lr, shuffle = op
                    twin.fit(
                        X.value,
                        y.value,
                        epochs=err.epoch - 1,
                        batch_size=bs.value,
                        lr=lr.value,
                        shuffle=shuffle.value,
                        seed=3,
                    )
                elif op[5].value is None and twin.optimizer is None:
                    # a fit without lr or optimizer adopts the default Adam,
                    # even when its first epoch diverges
                    twin.optimizer = optim.Adam()
                batch = None
            # what a diverged call leaves in the forward cache and the
            # gradients is not specified: re-synchronise both networks
            rng = np.random.default_rng(i)
            Xs = valid_X(rng, 2, spec["n_in"])
            ys = valid_y(rng, 2, spec["n_out"], spec["loss"])
            overflowed = []
            for m in (net, twin):
                try:
                    m.forward(Xs)
                    m.backward(ys)
                except FloatingPointError:  # overflow: only with parameters beyond BIG
                    assert is_big(net=m), f"{where}: overflow after the re-synchronisation"
                    overflowed.append(m)
            batch, big_batch = 2, False
            if overflowed:
                # the same parameters overflow the same way on both ...
                assert len(overflowed) == 2, f"{where}: only one network overflowed"
                # ... but then no backward rewrote the gradients, and the
                # diverged call's are still in net's buffer: carry them over
                twin.gradients[:] = net.gradients
            assert net.gradients.tobytes() == twin.gradients.tobytes(), where
        else:
            assert_state(net, before, where)
        assert net.parameters.tobytes() == twin.parameters.tobytes(), (
            f"{where}: the network and its twin differ"
        )
        assert net.epochs_trained == twin.epochs_trained, where
        if net.optimizer is not None:
            assert (
                twin.optimizer is not None and net.optimizer.iterations == twin.optimizer.iterations
            )
    probe_same(net, twin, spec, "after the sequence")


# ---------------------------------------------------------------------------
# Constructors
# ---------------------------------------------------------------------------
def junk_verdict(value):
    """Numbers among the junk may be valid for some parameters."""
    if isinstance(value, tuple):  # (1, 2): two numbers, a fine bias or two labels
        return ANY
    if isinstance(value, bool) or isinstance(value, (str, bytes, list, dict, _Junk)):
        return BAD
    if isinstance(value, float) and not math.isfinite(value):
        return BAD
    if isinstance(value, (int, float, np.ndarray)):
        return ANY
    return BAD


def _pick(data, valid, junk=JUNK):
    """(value, verdict): valid values (list of (value, verdict)) or junk."""
    if data.draw(st.integers(0, 3)):
        return data.draw(st.sampled_from(valid))
    value = data.draw(st.sampled_from(junk))
    for v, verdict in valid:  # the junk value may happen to be a valid one
        if type(v) is type(value) and (
            v is value or (not isinstance(v, np.ndarray) and v == value)
        ):
            return value, verdict
    return value, junk_verdict(value)


@FUZZ
@given(data=st.data())
def test_fuzz_layer_constructors(backend, data):
    """Dense(...) and Dropout(rate) with arbitrary arguments; a layer that is
    built must work in a network, and its given values are copied in."""
    T = "layers"
    example(T)
    n_in, verdict_in = _pick(
        data, [(1, OK), (3, OK), (np.int64(2), OK), (0, BAD), (-2, BAD), (2.0, BAD), (10**7, ANY)]
    )
    n_out, verdict_out = _pick(data, [(1, OK), (2, OK), (np.uint8(2), OK), (0, BAD), (10**7, ANY)])
    kw = {}
    verdicts = [verdict_in, verdict_out]
    valid = {
        "activation": [(a, OK) for a in ACTS] + [("bogus", BAD), ("", BAD)],
        "use_bias": [(True, OK), (False, OK), (0, OK), ("yes", OK), (None, OK)],
        "trainable": [(True, OK), (False, OK), (1, OK)],
        "alpha": [
            (None, OK),
            (0.0, OK),
            (0.3, OK),
            (-1.0, OK),
            (1e300, OK),
            (np.float32(2), OK),
            (np.inf, BAD),
            (np.nan, BAD),
        ],
        "init": [(i, OK) for i in INITS] + [("Glorot", BAD), ("zeros", BAD)],
        "seed": [
            (None, OK),
            (0, OK),
            (2**40, OK),
            (np.int64(5), OK),
            (-1, BAD),
            (1.5, BAD),
            ("abc", BAD),
            (True, BAD),
            (2**64, BAD),
        ],
        "weight_l1": [(0.0, OK), (1e-3, OK), (1, OK), (-1e-3, BAD), (np.inf, BAD)],
        "weight_l2": [(0.0, OK), (1e-3, OK), (1e300, OK), (-1.0, BAD)],
        "bias_l1": [(0.0, OK), (0.5, OK), (np.nan, BAD)],
        "bias_l2": [(0.0, OK), (2, OK), (-0.0, OK)],
    }
    for key in valid:
        if data.draw(st.integers(0, 2)) == 0:
            value, v = _pick(data, valid[key])
            if key in ("use_bias", "trainable"):
                v = OK if v == OK else ANY  # anything has a truth value
            kw[key] = value
            verdicts.append(v)
    wmode = data.draw(st.sampled_from(["none"] * 3 + ["weights", "bias", "both"]))
    ok_sizes = all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 < v < 100
        for v in (n_in, n_out)
    )
    W = b = None
    # mutations that keep a valid weight/bias array valid
    keep = (
        "none",
        "list",
        "tuple",
        "F",
        "strided",
        "negstrides",
        "readonly",
        "subclass",
        "masked",
        "bigendian",
        "float32",
        "float16",
        "longdouble",
        "int64",
        "int8",
        "uint8",
        "tiny",
        "denormal",
        "negzero",
        "huge",
        "max",
    )
    try:
        has_bias = bool(kw.get("use_bias", True))
    except ValueError:  # an array's ambiguous truth value
        has_bias = None
    if wmode != "none" and ok_sizes:
        rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
        if wmode in ("weights", "both"):
            W = mutate(data.draw, rng.uniform(-1, 1, (int(n_in), int(n_out))), "W")
            kw["weights"] = W.value
            ok_ = W.tag.split(":")[1] in keep
            verdicts.append(OK if ok_ else (BAD if W.verdict == BAD else ANY))
        if wmode in ("bias", "both"):
            b = mutate(data.draw, rng.uniform(-1, 1, (int(n_out),)), "b")
            kw["bias"] = b.value
            ok_ = b.tag.split(":")[1] in keep
            verdicts.append(OK if ok_ else (BAD if b.verdict == BAD else ANY))
            if has_bias is False:
                verdicts.append(BAD)
    verdict = combine(*verdicts)
    o = run(
        T,
        "Dense",
        cbp.Dense,
        n_in,
        n_out,
        verdict=verdict,
        allow=(MemoryError,) if not ok_sizes else (),
        **kw,
    )
    if o.ok and ok_sizes:
        layer = o.value
        if W is not None and verdicts and W.tag.split(":")[1] in keep:
            given = np.asarray(np.asarray(W.value), dtype=np.float64)
            assert np.array_equal(layer.weights, given), "weights not copied in exactly"
            if isinstance(W.value, np.ndarray):
                assert not np.shares_memory(layer.weights, W.value), "weights aliased, not copied"
        net = run(T, "Network(layer)", cbp.Network, [layer], backend=backend, verdict=OK)
        if net.ok:
            X = valid_X(np.random.default_rng(0), 3, int(n_in))
            out = net.value.predict(X)
            assert out.shape == (3, int(n_out))
            if not _finite(out):
                assert np.abs(net.value.parameters).max() > BIG or abs(layer.alpha) > BIG, out
    # Dropout
    rate, v = _pick(
        data,
        [
            (0.0, OK),
            (0.5, OK),
            (0.99, OK),
            (np.float32(0.1), OK),
            (1, BAD),
            (1.0, BAD),
            (-0.1, BAD),
            (np.nan, BAD),
            (np.inf, BAD),
            (2, BAD),
        ],
    )
    o = run(T, "Dropout", cbp.Dropout, rate, verdict=v)
    if o.ok:
        net = cbp.Network(
            [cbp.Dense(2, 3, seed=0), o.value, cbp.Dense(3, 1, seed=1)], backend=backend
        )
        rng = np.random.default_rng(1)
        X, y = valid_X(rng, 4, 2), rng.standard_normal((4, 1))
        out = run(T, "fit(dropout)", net.fit, X, y, epochs=2, lr=0.01, verdict=OK)
        if out.ok:
            assert _finite(out.value["loss"])
        assert np.array_equal(net.predict(X), net.forward(X))


def _network_args(data, spec, backend):
    """Arguments of Network(...) with some made invalid."""
    verdicts = []
    layer_mode = data.draw(
        st.sampled_from(
            ["ok"] * 5
            + [
                "empty",
                "none",
                "str",
                "junk_item",
                "dropout_first",
                "dropout_last",
                "width_mismatch",
                "duplicate",
                "taken",
                "class_item",
                "generator",
                "tuple",
            ]
        )
    )
    layers = [make_layer(s) for s in spec["layers"]]
    value = layers
    reusable = False  # the layers alone form a valid network afterwards
    if layer_mode == "ok":
        verdicts.append(OK)
        reusable = True
    elif layer_mode == "tuple":
        value = tuple(layers)
        verdicts.append(OK)
        reusable = True
    elif layer_mode == "generator":
        value = (layer for layer in layers)
        verdicts.append(OK)
        reusable = True
    elif layer_mode == "empty":
        value = []
        verdicts.append(BAD)
    elif layer_mode == "none":
        value = None
        verdicts.append(BAD)
    elif layer_mode == "str":
        value = "dense"
        verdicts.append(BAD)
    elif layer_mode == "junk_item":
        value = layers + [data.draw(st.sampled_from(JUNK))]
        verdicts.append(BAD)
    elif layer_mode == "class_item":
        value = [cbp.Dense] + layers
        verdicts.append(BAD)
    elif layer_mode == "dropout_first":
        value = [cbp.Dropout(0.5)] + layers
        verdicts.append(BAD)
    elif layer_mode == "dropout_last":
        value = layers + [cbp.Dropout(0.5)]
        verdicts.append(BAD)
    elif layer_mode == "width_mismatch":
        value = layers + [cbp.Dense(spec["n_out"] + 1, 1, seed=0)]
        verdicts.append(BAD)
    elif layer_mode == "duplicate":
        value = (
            layers + [layers[-1]]
            if spec["n_out"] == spec["layers"][-1]["n_inputs"]
            else layers + layers
        )
        verdicts.append(BAD)
    elif layer_mode == "taken":
        cbp.Network([make_layer(s) for s in spec["layers"][:-1]] + [layers[-1]])
        verdicts.append(BAD)
    kw = {}
    for key, table in (
        (
            "loss",
            [(loss, OK) for loss in LOSSES] + [("SQUARED_ERROR", OK), ("mse", BAD), ("hinge", BAD)],
        ),
        ("reduction", [("mean", OK), ("sum", OK), ("Mean", OK), ("max", BAD)]),
        ("backend", [(None, OK), ("numpy", OK), ("NATIVE", BAD), ("torch", BAD)]),
        (
            "seed",
            [
                (None, OK),
                (0, OK),
                (12345, OK),
                (np.int32(7), OK),
                (-1, BAD),
                (1.5, BAD),
                ("3", BAD),
                (2**64, BAD),
            ],
        ),
        (
            "optimizer",
            [(None, OK), ("spec", OK), ("sgd", OK), ("sgdw", BAD), ("bound", BAD), ("class", BAD)],
        ),
    ):
        if data.draw(st.integers(0, 2)) == 0:
            val, v = _pick(data, table)
            if key == "optimizer" and isinstance(val, str):  # (junk values pass as drawn)
                if val == "spec":
                    val = optim.Adam(0.01)
                elif val == "bound":
                    val = optim.Adam(0.01)
                    val._bind(10**3 + 1)
                elif val == "class":
                    val = optim.SGD
            kw[key] = val
            verdicts.append(v)
    # the cross-entropies take probabilities: their output activation is fixed
    need = {"categorical_crossentropy": "softmax", "binary_crossentropy": "sigmoid"}.get(
        str(kw.get("loss", "")).lower()
    )
    if need is not None and spec["layers"][-1]["activation"] != need:
        verdicts.append(BAD)
    kw.setdefault("backend", None)
    if kw["backend"] is None:
        kw["backend"] = backend
    return layers, value, kw, combine(*verdicts), reusable, layer_mode


@FUZZ
@given(data=st.data())
def test_fuzz_network_constructor(backend, data):
    """Network(layers, loss, reduction, backend, seed, optimizer); a failed
    construction must leave its layers free for another network."""
    T = "network"
    example(T)
    spec = data.draw(net_specs())
    layers, value, kw, verdict, reusable, mode = _network_args(data, spec, backend)
    o = run(T, "Network", cbp.Network, value, verdict=verdict, **kw)
    if o.ok:
        net = o.value
        assert net.parameters.dtype == np.float64 and _finite(net.parameters)
        X = valid_X(np.random.default_rng(0), 2, spec["n_in"])
        assert net.predict(X).shape == (2, spec["n_out"])
        try:
            y = valid_y(np.random.default_rng(1), 2, spec["n_out"], net.loss)
            net.fit(X, y, epochs=1)
        except cbp.DivergenceError:
            pass
    elif reusable:
        # the same layers, now with valid arguments, must make a network
        again = run(T, "Network(again)", cbp.Network, layers, backend=backend, verdict=OK)
        if again.ok:
            assert again.value.predict(
                valid_X(np.random.default_rng(0), 1, spec["n_in"])
            ).shape == (1, spec["n_out"])


@FUZZ
@given(data=st.data())
def test_fuzz_optimizers(backend, data):
    """Optimizer constructors, optim.get and EarlyStopping with arbitrary
    arguments; an optimizer that is built trains a network."""
    T = "optimizers"
    example(T)
    name = data.draw(st.sampled_from(["SGD", "Adagrad", "RMSprop", "Adam", "get"]))
    params = {
        "SGD": {
            "lr": [(0.1, OK), (1, OK), (1e-300, OK)],
            "momentum": [(0.0, OK), (0.9, OK), (1.5, OK), (-0.1, BAD)],
            "nesterov": [(False, OK), (np.bool_(False), OK), ("yes", BAD), (1, BAD)],
            "decay": [(0.0, OK), (0.1, OK), (-1.0, BAD)],
        },
        "Adagrad": {
            "lr": [(0.1, OK), (2, OK)],
            "epsilon": [(1e-7, OK), (1.0, OK), (0.0, BAD), (-1e-7, BAD)],
            "decay": [(0.0, OK), (1e300, OK)],
        },
        "RMSprop": {
            "lr": [(0.01, OK)],
            "rho": [(0.0, OK), (0.9, OK), (1.0, OK), (1.01, BAD), (-0.5, BAD)],
            "epsilon": [(1e-7, OK), (np.inf, BAD)],
            "decay": [(0.0, OK)],
        },
        "Adam": {
            "lr": [(0.001, OK), (0.5, OK)],
            "beta_1": [(0.0, OK), (0.9, OK), (0.999, OK), (1.0, BAD), (-0.1, BAD)],
            "beta_2": [(0.999, OK), (0.0, OK), (1.0, BAD)],
            "epsilon": [(1e-7, OK), (1e-300, OK), (0, BAD)],
            "decay": [(0.0, OK)],
        },
    }
    verdicts = []
    kw = {}
    if name == "get":
        oname, v = _pick(
            data,
            [
                ("sgd", OK),
                ("Adam", OK),
                ("RMSPROP", OK),
                ("adagrad", OK),
                ("lbfgs", BAD),
                ("", BAD),
            ],
        )
        verdicts.append(v)
        table = params.get(
            {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop", "adagrad": "Adagrad"}.get(
                str(oname).lower(), "Adam"
            )
        )
        if data.draw(st.booleans()):
            kw["bogus_kw"] = 1
            verdicts.append(BAD)
    else:
        table = params[name]
    for key, valid in table.items():
        if data.draw(st.integers(0, 1)) == 0:
            value, v = _pick(data, valid + [(np.nan, BAD), (np.inf, BAD), (-np.inf, BAD)])
            kw[key] = value
            verdicts.append(v)
    verdict = combine(*verdicts)
    if name == "get":
        o = run(T, "optim.get", optim.get, oname, verdict=verdict, **kw)
    else:
        o = run(T, name, getattr(optim, name), verdict=verdict, **kw)
    if o.ok:
        opt = o.value
        assert isinstance(opt, optim.Optimizer), opt
        again = optim.get(opt.name, **opt.get_config())
        assert again.get_config() == opt.get_config()
        net = cbp.Network(
            [cbp.Dense(2, 3, "tanh", seed=0), cbp.Dense(3, 1, "identity", seed=1)], backend=backend
        )
        rng = np.random.default_rng(0)
        X, y = valid_X(rng, 5, 2), rng.standard_normal((5, 1))
        r = run(T, f"fit({opt!r})", net.fit, X, y, epochs=3, optimizer=opt, verdict=OK)
        if r.ok:
            assert _finite(r.value["loss"]) and opt.iterations == 3
            assert opt.state is not None and opt.state.shape == (opt.slots * net.parameters.size,)
        assert _finite(net.parameters)
    # EarlyStopping
    kw = {}
    verdicts = []
    for key, valid in (
        ("patience", [(1, OK), (10, OK), (0, BAD), (1.5, BAD), (-3, BAD)]),
        ("tol", [(0.0, OK), (1e-4, OK), (-1e-4, BAD), (np.nan, BAD)]),
        ("restore_best", [(True, OK), (False, OK), ("no", OK)]),
    ):
        if data.draw(st.booleans()):
            value, v = _pick(data, valid)
            if key == "restore_best":
                v = OK if v == OK else ANY
            kw[key] = value
            verdicts.append(v)
    o = run(T, "EarlyStopping", cbp.EarlyStopping, verdict=combine(*verdicts), **kw)
    if o.ok:
        net = cbp.Network([cbp.Dense(2, 1, "identity", seed=0)], backend=backend)
        rng = np.random.default_rng(0)
        X, y = valid_X(rng, 5, 2), rng.standard_normal((5, 1))
        h = net.fit(X, y, epochs=5, lr=0.05, early_stopping=o.value, validation_data=(X, y))
        assert 1 <= len(h["loss"]) <= 5 and _finite(h["val_loss"])


# ---------------------------------------------------------------------------
# save / load
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_files")


@FUZZ_IO
@given(data=st.data())
def test_fuzz_save_load(backend, data, fuzz_dir):
    """save(path) and load(path, backend) with arbitrary paths and backends;
    a valid round trip reproduces the network exactly."""
    T = "save_load"
    example(T)
    spec = data.draw(net_specs())
    if data.draw(st.integers(0, 4)) == 0:  # NumPy integers as seeds (accepted by cbp)
        spec = copy.deepcopy(spec)
        spec["seed"] = np.int64(spec["seed"])
    net = build(spec, backend)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    X = valid_X(rng, 4, spec["n_in"])
    y = valid_y(rng, 4, spec["n_out"], spec["loss"])
    if data.draw(st.booleans()):
        try:
            net.fit(X, y, epochs=2, batch_size=2)
        except cbp.DivergenceError:
            pass
    path_kind = data.draw(
        st.sampled_from(
            ["str"] * 4
            + ["pathlib", "bytes", "missing_dir", "is_dir", "none", "int", "list", "nul"]
        )
    )
    target = fuzz_dir / f"net_{backend}.npz"
    path, verdict, allow = {
        "str": (str(target), OK, ()),
        "pathlib": (target, OK, ()),
        "bytes": (os.fsencode(str(target)), ANY, ()),
        "missing_dir": (str(fuzz_dir / "no" / "such" / "dir.npz"), ANY, (OSError,)),
        "is_dir": (str(fuzz_dir), ANY, (OSError,)),
        "none": (None, BAD, ()),
        "int": (12345678, ANY, (OSError,)),  # a file descriptor number
        "list": ([str(target)], BAD, ()),
        "nul": (str(target) + "\0x", BAD, ()),
    }[path_kind]
    before = state(net)
    o = run(T, "save", net.save, path, verdict=verdict, allow=allow)
    assert_state(net, before, "save")
    leftovers = [p.name for p in fuzz_dir.iterdir() if p.name.startswith(".cbp-")]
    assert not leftovers, f"save left temporary files behind: {leftovers}"
    if not o.ok or path_kind not in ("str", "pathlib", "bytes"):
        return
    be, v = data.draw(
        st.sampled_from(
            [(None, OK), ("numpy", OK), (backend, OK), ("bogus", BAD), (3, BAD), ("NUMPY", BAD)]
        )
    )
    o = run(T, "load", cbp.load, path, backend=be, verdict=v, flush=True)
    if not o.ok:
        return
    new = o.value
    assert new.parameters.tobytes() == net.parameters.tobytes()
    assert new.epochs_trained == net.epochs_trained
    assert new.get_config() == net.get_config()
    if net.optimizer is not None:
        assert new.optimizer.get_config() == net.optimizer.get_config()
        assert new.optimizer.iterations == net.optimizer.iterations
        if net.optimizer.state is not None:
            assert new.optimizer.state.tobytes() == net.optimizer.state.tobytes()
    assert np.array_equal(new.predict(X), net.predict(X)) or new.backend != net.backend
    if new.backend == net.backend:
        probe_same(new, net, spec, "after load")


def _corruptions():
    return st.sampled_from(
        [
            "truncate",
            "garbage",
            "empty",
            "not_zip_npy",
            "missing_meta",
            "missing_params",
            "format_future",
            "format_float",
            "format_shape",
            "meta_not_json",
            "meta_list",
            "meta_junk_value",
            "params_nan",
            "params_short",
            "params_2d",
            "params_object",
            "opt_state_short",
            "opt_name",
            "layer_type",
            "epochs_str",
            "epochs_negative",
            "epochs_huge",
            "extra_key",
            "drop_key",
            "huge_layer",
        ]
    )


def _mutate_meta(meta, data):
    """Replace one value somewhere in the JSON meta with junk."""
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + [i])
        paths.append(path)

    walk(meta, [])
    paths = [p for p in paths if p]
    path = data.draw(st.sampled_from(paths))
    junk = data.draw(st.sampled_from([None, "x", -1, 0, 1.5, 10**30, [], {}, True, "relu", 1e300]))
    node = meta
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = junk
    return meta, path, junk


@FUZZ_IO
@given(data=st.data())
def test_fuzz_load_corrupted(backend, data, fuzz_dir):
    """load() of damaged files raises FormatError (or loads a valid network);
    never another exception, never a broken network."""
    T = "load_corrupted"
    example(T)
    spec = data.draw(net_specs(max_hidden=1))
    net = build(spec, backend)
    X = valid_X(np.random.default_rng(0), 3, spec["n_in"])
    y = valid_y(np.random.default_rng(1), 3, spec["n_out"], spec["loss"])
    try:
        net.fit(X, y, epochs=1)
    except cbp.DivergenceError:
        pass
    path = str(fuzz_dir / f"corrupt_{backend}.npz")
    net.save(path)
    raw = pathlib.Path(path).read_bytes()
    arrays = _npz_arrays(path)
    meta = json.loads(str(arrays["meta"][()]))
    kind = data.draw(_corruptions())
    verdict = BAD
    detail = None
    if kind == "truncate":
        cut = data.draw(st.integers(0, len(raw) - 1))
        pathlib.Path(path).write_bytes(raw[:cut])
    elif kind == "garbage":
        rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
        b = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 20))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        pathlib.Path(path).write_bytes(bytes(b))
        verdict = ANY  # a flipped byte may hit nothing that matters
    elif kind == "empty":
        pathlib.Path(path).write_bytes(b"")
    elif kind == "not_zip_npy":
        with open(path, "wb") as f:
            np.save(f, np.arange(3.0))
    else:
        if kind == "missing_meta":
            del arrays["meta"]
        elif kind == "missing_params":
            del arrays["parameters"]
        elif kind == "format_future":
            arrays["format"] = np.array([99], dtype=np.int64)
        elif kind == "format_float":
            arrays["format"] = np.array([1.0])
        elif kind == "format_shape":
            arrays["format"] = np.array([[1]], dtype=np.int64)
        elif kind == "meta_not_json":
            arrays["meta"] = np.array("{not json")
        elif kind == "meta_list":
            arrays["meta"] = np.array(json.dumps([1, 2, 3]))
        elif kind == "meta_junk_value":
            meta, p, junk = _mutate_meta(meta, data)
            detail = (p, junk)
            arrays["meta"] = np.array(json.dumps(meta))
            verdict = ANY
        elif kind == "params_nan":
            arrays["parameters"] = np.full_like(arrays["parameters"], np.nan)
        elif kind == "params_short":
            arrays["parameters"] = arrays["parameters"][:-1]
        elif kind == "params_2d":
            arrays["parameters"] = arrays["parameters"][None, :]
        elif kind == "params_object":
            arrays["parameters"] = np.array(["a"] * arrays["parameters"].size)
        elif kind == "opt_state_short":
            if meta["optimizer"] is None or arrays["optimizer_state"].size == 0:
                verdict = ANY
            arrays["optimizer_state"] = arrays["optimizer_state"][:-1]
        elif kind == "opt_name":
            if meta["optimizer"] is None:
                meta["optimizer"] = {"name": "lbfgs", "config": {}, "iterations": 0}
            else:
                meta["optimizer"]["name"] = "lbfgs"
            arrays["meta"] = np.array(json.dumps(meta))
        elif kind == "layer_type":
            meta["config"]["layers"][0]["type"] = "Conv2D"
            arrays["meta"] = np.array(json.dumps(meta))
        elif kind == "epochs_str":
            meta["epochs_trained"] = "many"
            arrays["meta"] = np.array(json.dumps(meta))
        elif kind == "epochs_negative":
            meta["epochs_trained"] = -5
            arrays["meta"] = np.array(json.dumps(meta))
        elif kind == "epochs_huge":
            meta["epochs_trained"] = 10**30
            arrays["meta"] = np.array(json.dumps(meta))
        elif kind == "extra_key":
            meta["config"]["layers"][0]["colour"] = "red"
            arrays["meta"] = np.array(json.dumps(meta))
        elif kind == "drop_key":
            del meta["config"]["loss"]
            arrays["meta"] = np.array(json.dumps(meta))
        elif kind == "huge_layer":
            meta["config"]["layers"][0].update(n_inputs=10**6, n_neurons=10**6)
            arrays["meta"] = np.array(json.dumps(meta))
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    o = run(
        T, f"load({kind} {detail})", cbp.load, path, backend=backend, verdict=verdict, flush=True
    )
    if o.error is not None:
        assert isinstance(o.error, cbp.FormatError), (
            f"load({kind}) raised {type(o.error).__name__}, not FormatError: {o.error}"
        )
    if o.ok:
        new = o.value
        assert _finite(new.parameters)
        out = run(T, "predict(loaded)", new.predict, X, verdict=OK)
        if out.ok:
            assert out.value.shape == (3, new.n_outputs)
        # the loaded network trains (one epoch; its epoch count feeds the shuffle)
        yy = valid_y(np.random.default_rng(1), 3, new.n_outputs, new.loss)
        if new.n_inputs == spec["n_in"]:
            r = run(T, "fit(loaded)", new.fit, X, yy, epochs=1, shuffle=True, verdict=OK)
            if r.ok:
                assert _finite(r.value["loss"])


# ---------------------------------------------------------------------------
# Sweeps of every constructor argument (deterministic, no Hypothesis)
# ---------------------------------------------------------------------------
def _values(table):
    """A parameter's table plus every junk value (with its verdict)."""
    out = list(table)
    for j in JUNK:
        for v, _ in table:
            if type(v) is type(j) and (v is j or (not isinstance(v, np.ndarray) and v == j)):
                break
        else:
            out.append((j, junk_verdict(j)))
    return out


DENSE_TABLE = {
    "n_inputs": [(1, OK), (3, OK), (np.int64(2), OK), (0, BAD), (-2, BAD), (2.0, BAD), ("3", BAD)],
    "n_neurons": [(1, OK), (2, OK), (np.uint8(2), OK), (0, BAD), (1.0, BAD)],
    "activation": [(a, OK) for a in ACTS] + [("bogus", BAD), ("", BAD), (b"relu", BAD)],
    "use_bias": [(True, OK), (False, OK), (0, OK), ("yes", OK), (None, OK)],
    "trainable": [(True, OK), (False, OK), (1, OK)],
    "alpha": [
        (None, OK),
        (0.0, OK),
        (0.3, OK),
        (-1.0, OK),
        (1e300, OK),
        (np.float32(2), OK),
        (np.inf, BAD),
        (np.nan, BAD),
        ("0.1", BAD),
    ],
    "init": [(i, OK) for i in INITS] + [("Glorot", BAD), ("zeros", BAD)],
    "seed": [
        (None, OK),
        (0, OK),
        (2**40, OK),
        (np.int64(5), OK),
        (-1, BAD),
        (1.5, BAD),
        ("abc", BAD),
        (True, BAD),
        (2**64, BAD),
    ],
    "weight_l1": [(0.0, OK), (1e-3, OK), (1, OK), (-1e-3, BAD), (np.inf, BAD)],
    "weight_l2": [(0.0, OK), (1e-3, OK), (1e300, OK), (-1.0, BAD)],
    "bias_l1": [(0.0, OK), (0.5, OK), (np.nan, BAD)],
    "bias_l2": [(0.0, OK), (2, OK), (-0.0, OK)],
    "weights": [
        (None, OK),
        ([[0.5, -0.5]], OK),
        (np.ones((1, 2), np.float32), OK),
        (np.ones((2, 1)), BAD),
        ([[np.nan, 0.0]], BAD),
        (np.ones((1, 2), bool), BAD),
        ([["a", "b"]], BAD),
    ],
    "bias": [
        (None, OK),
        ([0.1, 0.2], OK),
        (np.zeros(2, np.int8), OK),
        ([0.1], BAD),
        ([np.inf, 0], BAD),
    ],
}

OPT_TABLE = {
    "SGD": {
        "lr": [(0.1, OK), (1, OK), (1e-300, OK), (0.0, BAD), (-1.0, BAD)],
        "momentum": [(0.0, OK), (0.9, OK), (1.5, OK), (-0.1, BAD)],
        "nesterov": [(False, OK), (np.bool_(False), OK), ("yes", BAD), (1, BAD)],
        "decay": [(0.0, OK), (0.1, OK), (-1.0, BAD)],
    },
    "Adagrad": {
        "lr": [(0.1, OK), (2, OK)],
        "epsilon": [(1e-7, OK), (1.0, OK), (0.0, BAD), (-1e-7, BAD)],
        "decay": [(0.0, OK), (1e300, OK)],
    },
    "RMSprop": {
        "lr": [(0.01, OK)],
        "rho": [(0.0, OK), (0.9, OK), (1.0, OK), (1.01, BAD), (-0.5, BAD)],
        "epsilon": [(1e-7, OK), (np.inf, BAD)],
        "decay": [(0.0, OK)],
    },
    "Adam": {
        "lr": [(0.001, OK), (0.5, OK)],
        "beta_1": [(0.0, OK), (0.9, OK), (0.999, OK), (1.0, BAD), (-0.1, BAD)],
        "beta_2": [(0.999, OK), (0.0, OK), (1.0, BAD)],
        "epsilon": [(1e-7, OK), (1e-300, OK), (0, BAD)],
        "decay": [(0.0, OK)],
    },
}


def _train_briefly(T, net, label, n_in, **kw):
    rng = np.random.default_rng(0)
    X = valid_X(rng, 4, n_in)
    y = valid_y(rng, 4, net.n_outputs, net.loss)
    o = run(T, label, net.fit, X, y, epochs=2, verdict=OK, **kw)
    if o.ok:
        assert _finite(o.value["loss"]) and _finite(net.parameters), label
    return o


def test_sweep_dense_and_dropout(backend):
    """Dense: every argument alone over its table and all the junk; Dropout(rate)."""
    T = "sweep_layers"
    for key, table in DENSE_TABLE.items():
        for value, verdict in _values(table):
            example(T)
            if key in ("use_bias", "trainable"):
                verdict = OK if verdict == OK else ANY  # anything has a truth value
            args = dict(n_inputs=1, n_neurons=2, activation="tanh")
            args[key] = value
            big = key in ("n_inputs", "n_neurons") and isinstance(value, int) and value > 10**6
            o = run(
                T,
                f"Dense({key}={value!r})",
                cbp.Dense,
                verdict=verdict,
                allow=(MemoryError,) if big else (),
                **args,
            )
            if not o.ok or big:
                continue
            layer = o.value
            if key == "weights" and value is not None:
                assert np.array_equal(layer.weights, np.asarray(value, dtype=float))
            net = run(
                T,
                f"Network([Dense({key}={value!r})])",
                cbp.Network,
                [layer],
                backend=backend,
                verdict=ANY if key == "seed" else OK,
            )
            if net.ok:
                out = net.value.predict(valid_X(np.random.default_rng(0), 3, layer.n_inputs))
                assert out.shape == (3, layer.n_neurons)
                assert _finite(out) or abs(layer.alpha) > BIG
    for rate, verdict in _values(
        [
            (0.0, OK),
            (0.5, OK),
            (0.99, OK),
            (np.float32(0.1), OK),
            (1, BAD),
            (1.0, BAD),
            (-0.1, BAD),
            (np.inf, BAD),
            (2, BAD),
        ]
    ):
        example(T)
        o = run(T, f"Dropout({rate!r})", cbp.Dropout, rate, verdict=verdict)
        if o.ok:
            net = cbp.Network(
                [cbp.Dense(2, 3, seed=0), o.value, cbp.Dense(3, 1, seed=1)], backend=backend
            )
            _train_briefly(T, net, f"fit(Dropout({rate!r}))", 2, lr=0.01)


def test_sweep_network_arguments(backend):
    """Network(...): every keyword alone over its table and the junk; after a
    failure the same layers must still make a network."""
    T = "sweep_network"
    table = {
        # the output is softmax: binary cross-entropy needs a sigmoid one
        "loss": [(loss, BAD if loss == "binary_crossentropy" else OK) for loss in LOSSES]
        + [("SQUARED_ERROR", OK), ("mse", BAD)],
        "check_output": [(True, OK), (False, OK), (np.bool_(False), OK), (1, BAD), ("no", BAD)],
        "reduction": [("mean", OK), ("sum", OK), ("Mean", OK), ("max", BAD)],
        "backend": [(None, OK), ("numpy", OK), (backend, OK), ("NATIVE", BAD), ("torch", BAD)],
        "seed": [
            (None, OK),
            (0, OK),
            (2**64 - 1, OK),
            (np.int32(7), OK),
            (-1, BAD),
            (1.5, BAD),
            ("3", BAD),
            (2**64, BAD),
            (2**100, BAD),
        ],
        "optimizer": [(None, OK), ("adam", OK), ("adamw", BAD), (optim.SGD, BAD)],
        "layers": [(None, BAD), ([], BAD), ("dense", BAD), (5, BAD)],
    }

    for key, entries in table.items():
        for value, verdict in _values(entries):
            example(T)
            layers = [cbp.Dense(2, 3, "relu", seed=0), cbp.Dense(3, 2, "softmax", seed=1)]
            kw = {"backend": backend}
            if key == "layers":
                o = run(T, f"Network({value!r})", cbp.Network, value, verdict=BAD, **kw)
                continue
            kw[key] = value
            o = run(T, f"Network({key}={value!r})", cbp.Network, layers, verdict=verdict, **kw)
            if o.ok:
                net = o.value
                loss = net.loss
                _train_briefly(
                    T, net, f"fit(Network({key}={value!r}))", 2, shuffle=True
                ) if loss else None
            else:
                again = run(
                    T,
                    f"Network(again after {key}={value!r})",
                    cbp.Network,
                    layers,
                    backend=backend,
                    verdict=OK,
                )
                if again.ok:
                    _train_briefly(T, again.value, "fit(again)", 2)
    # an optimizer bound to another network's size, and the same layer twice
    example(T)
    other = optim.Adam()
    other._bind(7)
    layers = [cbp.Dense(2, 3, seed=0), cbp.Dense(3, 2, seed=1)]
    run(
        T,
        "Network(optimizer bound elsewhere)",
        cbp.Network,
        layers,
        optimizer=other,
        backend=backend,
        verdict=BAD,
    )
    d = cbp.Dense(2, 2, seed=0)
    run(T, "Network([d, d])", cbp.Network, [d, d], backend=backend, verdict=BAD)


def test_sweep_optimizers_and_early_stopping(backend):
    """Every optimizer argument alone over its table and the junk; optim.get;
    EarlyStopping.  What is built must train."""
    T = "sweep_optim"
    for name, params in OPT_TABLE.items():
        for key, entries in params.items():
            for value, verdict in _values(entries):
                example(T)
                o = run(
                    T,
                    f"{name}({key}={value!r})",
                    getattr(optim, name),
                    verdict=verdict,
                    **{key: value},
                )
                if not o.ok:
                    continue
                opt = o.value
                assert optim.get(opt.name, **opt.get_config()).get_config() == opt.get_config()
                net = cbp.Network(
                    [cbp.Dense(2, 3, "tanh", seed=0), cbp.Dense(3, 1, "identity", seed=1)],
                    backend=backend,
                )
                r = _train_briefly(T, net, f"fit({opt!r})", 2, optimizer=opt)
                if r.ok:
                    assert opt.iterations == 2 and opt.state.shape == (
                        opt.slots * net.parameters.size,
                    )
    for name, verdict in _values(
        [("sgd", OK), ("Adam", OK), ("RMSPROP", OK), ("adagrad", OK), ("lbfgs", BAD), ("", BAD)]
    ):
        example(T)
        run(T, f"optim.get({name!r})", optim.get, name, verdict=BAD if verdict != OK else OK)
    example(T)
    run(T, "optim.get(adam, bogus=1)", optim.get, "adam", verdict=BAD, bogus=1)
    es_table = {
        "patience": [(1, OK), (10, OK), (0, BAD), (1.5, BAD), (-3, BAD)],
        "tol": [(0.0, OK), (1e-4, OK), (-1e-4, BAD), (np.nan, BAD)],
        "restore_best": [(True, OK), (False, OK), ("no", OK)],
    }
    for key, entries in es_table.items():
        for value, verdict in _values(entries):
            example(T)
            if key == "restore_best":
                verdict = OK if verdict == OK else ANY
            o = run(
                T,
                f"EarlyStopping({key}={value!r})",
                cbp.EarlyStopping,
                verdict=verdict,
                **{key: value},
            )
            if o.ok:
                net = cbp.Network([cbp.Dense(2, 1, "identity", seed=0)], backend=backend)
                rng = np.random.default_rng(0)
                X, y = valid_X(rng, 5, 2), rng.standard_normal((5, 1))
                h = net.fit(X, y, epochs=5, lr=0.05, early_stopping=o.value, validation_data=(X, y))
                assert 1 <= len(h["loss"]) <= 5 and _finite(h["val_loss"])


def test_sweep_save_load_arguments(backend, tmp_path, monkeypatch):
    """save(path) for every kind of path, load(path, backend) for every backend value."""
    monkeypatch.chdir(tmp_path)  # junk such as "abc" is a valid relative path: keep it here
    T = "sweep_save_load"
    net = cbp.Network(
        [cbp.Dense(2, 3, "tanh", seed=0), cbp.Dense(3, 1, seed=1)],
        backend=backend,
        optimizer=optim.Adam(0.01),
    )
    _train_briefly(T, net, "fit before save", 2)
    target = tmp_path / "net.npz"
    paths = [
        (str(target), OK, ()),
        (target, OK, ()),
        (os.fsencode(str(target)), ANY, ()),
        (str(tmp_path / "no" / "dir.npz"), ANY, (OSError,)),
        (str(tmp_path), ANY, (OSError,)),
        (str(target) + "\0x", BAD, ()),
    ] + [(j, ANY, (OSError,)) for j in JUNK]
    for path, verdict, allow in paths:
        example(T)
        if isinstance(path, (int, float)) and not isinstance(path, bool):
            continue  # an int is a file descriptor to os.fspath's callers: not fuzzed here
        before = state(net)
        run(T, f"save({path!r})", net.save, path, verdict=verdict, allow=allow)
        assert_state(net, before, f"save({path!r})")
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cbp-")]
    net.save(target)
    for be, verdict in _values(
        [(None, OK), ("numpy", OK), (backend, OK), ("bogus", BAD), ("NUMPY", BAD)]
    ):
        example(T)
        o = run(
            T, f"load(backend={be!r})", cbp.load, target, backend=be, verdict=verdict, flush=True
        )
        if o.ok:
            new = o.value
            assert new.parameters.tobytes() == net.parameters.tobytes()
            assert new.optimizer.state.tobytes() == net.optimizer.state.tobytes()
            assert new.epochs_trained == net.epochs_trained


# ---------------------------------------------------------------------------
# Regressions: every bug this fuzz found, as its minimal reproduction
# ---------------------------------------------------------------------------
# A Network(...) that raises after taking its layers (a bad optimizer, say)
# leaves them free for another network
def test_bug_failed_network_leaves_layers_free():
    assert not _repro_adopt_on_failed_network()


# A network whose seeds are NumPy integers (accepted by Network and Dense) saves
def test_bug_numpy_integer_seed_can_be_saved():
    assert not _repro_numpy_int_seed_save()


# fit(seed=2**64) raises ValueError (the native core takes uint64)
def test_bug_fit_seed_too_large_is_a_value_error():
    assert not _repro_seed_overflow()


# Network(seed=2**64) is rejected, rather than failing every native fit
def test_bug_network_seed_too_large_is_rejected():
    assert not _repro_network_seed_overflow()


# predict([[1e308]]) through a weight of 10 raises, rather than returning [[inf]]
def test_bug_overflowing_forward_is_reported():
    assert not _repro_nonfinite_output()


# class labels as huge floats (1e300) are rejected without a NumPy RuntimeWarning
def test_bug_huge_float_labels_rejected_without_warning():
    assert not _repro_label_cast_warning()


# after train_step raises DivergenceError, backward(y) takes y for the batch
# that step cached
def test_bug_backward_after_diverged_train_step():
    assert not _repro_stale_batch_after_failed_train_step()


# load() compares the declared architecture with the stored parameters before
# building it: a file declaring Dense(10**6, 10**6) is a FormatError, not a
# MemoryError
def test_bug_load_checks_size_before_allocating():
    assert not _repro_load_allocates_declared_size()


# fit(epochs=10**12) stopped by its callback after one epoch does not allocate
# the history of every epoch
def test_bug_fit_history_not_preallocated():
    assert not _repro_history_preallocated()


# load() of a damaged zip raises FormatError and closes the file
def test_bug_load_closes_damaged_file():
    assert not _repro_load_leaks_file()


# load() rejects an epochs_trained no fit can continue from (-5, 10**30)
def test_bug_load_rejects_bad_epoch_count():
    assert not _repro_load_accepts_bad_epochs()


# load() of a plain .npy file raises FormatError
def test_bug_load_npy_file_is_a_format_error():
    assert not _repro_load_npy_typeerror()


# Dense(seed=...) is validated ('abc' is rejected by Dense, not later by NumPy)
def test_bug_dense_seed_validated():
    assert not _repro_dense_seed_unchecked()


# an infinite validation loss in fit raises DivergenceError
def test_bug_fit_reports_an_overflowing_validation_loss():
    assert not _repro_val_loss_overflow_silent()
