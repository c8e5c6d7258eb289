"""The two kernel tables of src/_simd.h, baseline and AVX2+FMA, each run.

The native core picks a table at import (``CBP_SIMD``, default the best this
CPU runs); the private hook ``cbp._core._simd(level)`` switches it, so every
test here that takes the ``level`` fixture runs once per table this CPU has.
Covered: the levels API and the environment variable, the vectorised exp
(``_vexp``) against the libm's exp, the dense kernels against the NumPy twin
on the SIMD loops and on dgemm, and whole networks, native against twin.

Expected values come from the twin (``cbp._reference``), from NumPy or from
the libm, never from cbp's own output.
"""

import functools
import itertools
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cbp
from cbp import _codes
from cbp import _reference as ref

LEVELS = ["baseline", "avx2+fma", "avx512"]
# The dense paths: the row-major SIMD loops, BLAS dgemm (dgemm thresholds as
# in test_blas_paths.py), each with fit()'s feature-major passes off, and
# fit() on the feature-major passes for every network they take (widths up
# to 64 and any batch, rather than the default 8 and 4 to 16 rows, so that
# every case without dropout does).
PATHS = {
    "loops": ((1 << 62, 1 << 30), (0, 1, 1 << 30)),
    "dgemm": ((1, 1), (0, 1, 1 << 30)),
    "feature-major": ((1 << 62, 1 << 30), (64, 1, 1 << 30)),
}
# The widths of the dense-kernel grid: below, at and past the vector widths
# (2, 4 and 8 doubles), the register tiles (4 rows, 2-4 vectors) and their tails.
SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33]


@pytest.fixture
def core(native_core):
    return native_core


@pytest.fixture(params=LEVELS)
def level(request, core):
    """Run the test with this kernel table; the previous one is restored."""
    if request.param not in core._simd_levels():
        pytest.skip(f"this CPU or build has no {request.param} table")
    saved = core._simd(request.param)
    yield request.param
    core._simd(saved)


@pytest.fixture(params=sorted(PATHS))
def path(request, core):
    """Force the dense layers onto the SIMD loops or onto BLAS dgemm, and
    fit() on or off its feature-major passes."""
    blas, feature_major = PATHS[request.param]
    saved = core._blas_thresholds(*blas), core._feature_major_limits(*feature_major)
    yield request.param
    core._blas_thresholds(*saved[0])
    core._feature_major_limits(*saved[1])


@pytest.fixture
def restore_table(core):
    """For the tests that switch tables themselves."""
    saved = core._simd()
    yield
    core._simd(saved)


# ------------------------------------------------------------- levels API ---
def test_cbp_under_test_is_this_checkout(core):
    # The suite must exercise the core built next to these tests, not another
    # install of cbp on the path.
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    here = os.path.dirname(tests_dir)
    if os.path.isdir(os.path.join(here, "cbp")):
        assert os.path.dirname(os.path.abspath(core.__file__)) == os.path.join(here, "cbp")


def test_levels_list(core):
    levels = core._simd_levels()
    assert levels[0] == "baseline"
    assert set(levels) <= set(LEVELS)
    assert len(set(levels)) == len(levels)


def test_simd_round_trip(core, restore_table):
    levels = core._simd_levels()
    start = core._simd()
    assert start in levels
    assert core._simd() == start  # reading changes nothing
    previous = start
    for name in levels + levels[::-1]:
        assert core._simd(name) == previous  # returns the table in force before
        assert core._simd() == name
        previous = name


def test_auto_picks_the_best_level(core, restore_table):
    core._simd("baseline")
    assert core._simd("auto") == "baseline"
    assert core._simd() == core._simd_levels()[-1]


@pytest.mark.parametrize(
    "bad", ["sse9", "", "AVX2", "AVX512", "avx-512", "baseline\0junk", 3, b"baseline", ["baseline"]]
)
def test_bad_level_raises_and_keeps_the_table(core, restore_table, bad):
    for name in core._simd_levels():
        core._simd(name)
        with pytest.raises(ValueError, match="SIMD level"):
            core._simd(bad)
        assert core._simd() == name


def _child_env(**extra):
    """The environment of a child that imports the cbp under test."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(cbp.__file__)))
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env.pop("CBP_NO_EXTENSIONS", None)
    return env


CHILD = textwrap.dedent(
    """
    import json, warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import cbp._core as core
    print(json.dumps({
        "file": core.__file__,
        "level": core._simd(),
        "levels": core._simd_levels(),
        "lanes": core._fm_lanes_width(True),
        "warnings": [[w.category.__name__, str(w.message)] for w in caught],
    }))
    """
)


def _child(**extra):
    """What a fresh interpreter's core reports at import with ``extra`` in
    its environment (the table is chosen once, at import)."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        env=_child_env(**extra),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("value", ["baseline", "auto", "", " baseline ", "bogus"])
def test_cbp_simd_environment_variable(core, value):
    # The table is chosen once, at import: each value needs a fresh process.
    got = _child(CBP_SIMD=value)
    assert os.path.samefile(got["file"], core.__file__)
    assert got["levels"] == core._simd_levels()
    ours = [w for w in got["warnings"] if "CBP_SIMD" in w[1]]
    if value == "bogus":
        # an unknown value warns and falls back to auto
        assert [w[0] for w in ours] == ["RuntimeWarning"], got["warnings"]
        assert "bogus" in ours[0][1]
        assert got["level"] == core._simd_levels()[-1]
    else:
        assert ours == [], got["warnings"]
        want = value.strip() or "auto"
        assert got["level"] == (core._simd_levels()[-1] if want == "auto" else want)


@pytest.mark.parametrize("name", ["avx2+fma", "avx512"])
def test_cbp_simd_environment_variable_names_a_table(core, name):
    if name not in core._simd_levels():
        pytest.skip(f"this CPU or build has no {name} table")
    got = _child(CBP_SIMD=name)
    assert got["level"] == name
    assert not [w for w in got["warnings"] if "CBP_SIMD" in w[1]]


@pytest.mark.parametrize("value", ["1", "0", "", "yes"])
def test_cbp_no_avx512_turns_off_every_512_bit_path(core, value):
    """CBP_NO_AVX512=1 at import: as on a CPU without AVX-512, no AVX-512
    table and 4 lanes at most for fit_many; "0" or "" change nothing; any
    other value warns and changes nothing."""
    got = _child(CBP_NO_AVX512=value)
    ours = [w for w in got["warnings"] if "CBP_NO_AVX512" in w[1]]
    assert [w[0] for w in ours] == (["RuntimeWarning"] if value == "yes" else [])
    if value == "1":
        assert got["levels"] == [name for name in core._simd_levels() if name != "avx512"]
        assert got["level"] == got["levels"][-1]
        assert got["lanes"] <= 4
    else:
        assert got["levels"] == core._simd_levels()
        assert got["lanes"] == core._fm_lanes_width()


def _xor_fit(core, table, **kw):
    core._simd(table)
    rng = np.random.default_rng(4)
    layers = [
        cbp.Dense(2, 4, "sigmoid", weights=rng.uniform(-1, 1, (2, 4)), bias=np.zeros(4)),
        cbp.Dense(4, 1, "sigmoid", weights=rng.uniform(-1, 1, (4, 1)), bias=np.zeros(1)),
    ]
    net = cbp.Network(layers, loss="squared_error")
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([0.0, 1.0, 1.0, 0.0])
    hist = net.fit(X, y, epochs=3000, lr=0.5, **kw)
    engine = net._engine
    assert (engine.fm_epochs if kw["batch_size"] is None else engine.tiny_steps) > 0
    return net.parameters.copy(), net.gradients.copy(), hist["loss"].copy()


@pytest.mark.parametrize("batch_size", [None, 1])
def test_avx512_table_trains_feature_major_and_per_sample_as_avx2(core, restore_table, batch_size):
    """The AVX-512 table takes the AVX2 table's feature-major kernels and
    its whole-epoch run: a full-batch fit on them trains to the same
    numbers under both tables, bit for bit.  Its per-sample step replays
    its own products (8-lane sums); a network with no side over 4 has no
    vector part at either width, so that fit agrees bit for bit too."""
    if "avx512" not in core._simd_levels():
        pytest.skip("this CPU or build has no avx512 table")
    want = _xor_fit(core, "avx2+fma", batch_size=batch_size)
    got = _xor_fit(core, "avx512", batch_size=batch_size)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


# -------------------------------------------------------------------- exp ---
def libm_exp(x):
    """exp element by element through the C library (math.exp), which is what
    _vexp falls back to.  np.exp is not used for the exact comparisons: on
    CPUs with AVX-512 NumPy has its own exp, which need not match the libm's
    bit for bit."""
    out = np.empty(len(x))
    for i, v in enumerate(np.asarray(x, dtype=np.float64).tolist()):
        try:
            out[i] = math.exp(v)
        except OverflowError:  # the C function returns +inf; Python raises
            out[i] = math.inf
    return out


def vexp(core, x):
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    assert core._vexp(x, out) is out
    return out


def sweep_points():
    """Inputs across the whole vectorised range [-708, 709]."""
    rng = np.random.default_rng(20240601)
    ln2_half = math.log(2.0) / 2
    # x = (k + 1/2) ln2 are where the reduction x = k ln2 + r switches k, and
    # r reaches its extremes: there and a few ulp either side
    edges = np.arange(-2042, 2046) * ln2_half
    edges = edges[(edges >= -708) & (edges <= 709)]
    near_edges = np.concatenate(
        [edges]
        + [np.nextafter(edges, s * np.inf) for s in (-1, 1)]
        + [edges + d * np.spacing(edges) for d in (-3, 3)]
    )
    tiny = np.concatenate(
        [
            [0.0, -0.0, 5e-324, -5e-324, 1e-300, -1e-300, 2.2e-308, 1e-17, -1e-17, 1e-9, -1e-9],
            np.linspace(-1e-3, 1e-3, 2001),
            rng.uniform(-1.0, 1.0, 5000),
        ]
    )
    ends = [-708.0, 709.0, np.nextafter(-708.0, 0.0), np.nextafter(709.0, 0.0)]
    x = np.concatenate(
        [
            np.linspace(-708.0, 709.0, 200_001),
            rng.uniform(-708.0, 709.0, 100_000),
            rng.uniform(-20.0, 20.0, 20_000),  # where training sends it
            near_edges,
            tiny,
            np.arange(-708, 710, dtype=np.float64),
            ends,
        ]
    )
    return x[(x >= -708.0) & (x <= 709.0)]


def test_vexp_accuracy(core, level):
    x = sweep_points()
    y = vexp(core, x)
    want = np.exp(x)
    # The reference is np.exp (itself within about 0.5 ulp of the true value),
    # and _simd.h promises 1 ulp: 2 ulp of the reference is loose by design,
    # a bound the two errors cannot exceed together, not a measure of either.
    ulps = np.abs(y - want) / np.spacing(want)
    worst = int(np.argmax(ulps))
    assert ulps[worst] <= 2.0, (
        f"{level}: exp({x[worst]!r}) = {y[worst]!r}, np.exp gives {want[worst]!r}"
    )
    assert np.all(np.isfinite(y)) and np.all(y > 0)  # all normal numbers in range
    assert np.all(y[x == 0.0] == 1.0)


@pytest.mark.parametrize(
    "bad",
    [
        np.inf,
        -np.inf,
        np.nan,
        -709.0,
        710.0,
        709.5,
        np.nextafter(-708.0, -np.inf),
        np.nextafter(709.0, np.inf),
        -1e308,
        1e308,
    ],
)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_vexp_out_of_range_goes_to_libm(core, level, bad, where):
    # An input outside [-708, 709] (or NaN) is libm's exp, lane by lane; its
    # in-range neighbours keep the vector arithmetic's own value (each as
    # it is alone), so one such input costs one libm call, not the array.
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 5, 8, 13, 17):
        x = rng.uniform(-50.0, 50.0, n)
        at = {"first": 0, "middle": n // 2, "last": n - 1}[where]
        x[at] = bad
        y = vexp(core, x)
        np.testing.assert_array_equal(y[at], libm_exp(x[at : at + 1])[0])
        alone = np.array([vexp(core, [v])[0] for v in np.delete(x, at)])
        np.testing.assert_array_equal(np.delete(y, at), alone)
        np.testing.assert_allclose(y, libm_exp(x), rtol=2.5e-16)  # (within 1 ulp)
        assert np.array_equal(np.isnan(y), np.isnan(x))


@pytest.mark.parametrize("n", range(10))
def test_vexp_lengths_and_in_place(core, level, n):
    # Lengths 0..9 cover every tail of 2- and 4-wide vectors.
    rng = np.random.default_rng(100 + n)
    x = rng.uniform(-30.0, 30.0, n)
    x_copy = x.copy()
    y = vexp(core, x)
    np.testing.assert_array_equal(x, x_copy)  # the input is left alone
    assert np.all(np.abs(y - np.exp(x)) <= 2 * np.spacing(np.exp(x)))
    z = x.copy()
    assert core._vexp(z, z) is z  # in place: same values as out of place
    np.testing.assert_array_equal(z, y)


def test_vexp_writes_only_its_own_elements(core, level):
    # Views into a larger buffer: the guard elements around must survive the
    # tail handling.
    for n in range(1, 10):
        buf = np.full(n + 8, -7.25)
        x = np.linspace(-3.0, 3.0, n)
        out = buf[4 : 4 + n]
        core._vexp(x, out)
        np.testing.assert_array_equal(buf[:4], -7.25)
        np.testing.assert_array_equal(buf[4 + n :], -7.25)
        np.testing.assert_array_equal(out, vexp(core, x))


def test_vexp_result_does_not_depend_on_position(core, level):
    # Every lane and the tail run the same arithmetic: a value gives the same
    # bits at index 0, in any lane, and in the tail, whatever its neighbours,
    # out-of-range ones (which libm computes) included.
    rng = np.random.default_rng(11)
    values = np.concatenate(
        [
            rng.uniform(-708.0, 709.0, 20),
            rng.uniform(-2.0, 2.0, 20),
            [-708.0, 709.0, 0.0, 0.5 * math.log(2.0)],
        ]
    )
    alone = np.array([vexp(core, [v])[0] for v in values])
    for n in range(1, 10):
        for p in range(n):
            x = np.tile(rng.uniform(-5.0, 5.0, n), (len(values), 1))
            if n > 1:  # a neighbour out of range
                x[:, (p + 1) % n] = (-800.0, 1000.0, np.nan)[n % 3]
            x[:, p] = values
            got = np.array([vexp(core, row)[p] for row in x])
            np.testing.assert_array_equal(got, alone, err_msg=f"length {n}, index {p}")


def test_vexp_rejects_bad_arguments(core, level):
    with pytest.raises(ValueError):
        core._vexp(np.zeros(3), np.zeros(4))
    with pytest.raises((ValueError, TypeError)):
        core._vexp(np.zeros(6)[::2], np.zeros(3))  # not contiguous
    with pytest.raises((ValueError, TypeError)):
        core._vexp(np.zeros(3, dtype=np.float32), np.zeros(3))
    assert core._vexp(np.empty(0), np.empty(0)).shape == (0,)


@pytest.mark.parametrize("act", ["sigmoid", "softmax"])
def test_exp_activations_match_twin(core, level, act):
    # sigmoid and softmax are the users of vsigmoid and vexp.  Each output is
    # a couple of roundings from an exp that is within 2 ulp of np.exp.
    code = _codes.activation_code(act)
    rng = np.random.default_rng(3)
    for n, no in itertools.product([1, 2, 3, 5], [1, 2, 3, 4, 5, 9]):
        Z = rng.uniform(-30.0, 30.0, (n, no))
        out = {}
        for name, mod in (("native", core), ("numpy", ref)):
            o = np.full((n, no), np.nan)
            mod.activation_forward(code, Z, o)
            out[name] = o
        np.testing.assert_allclose(
            out["native"], out["numpy"], rtol=1e-14, atol=1e-300, err_msg=f"{act} {n}x{no}"
        )


def test_sigmoid_out_of_range_goes_to_libm(core, level):
    # exp(-z) out of range: that input by libm, bit for bit the textbook
    # formula; every other input as without it (the vector arithmetic,
    # whatever its neighbours), in place too.
    code = _codes.activation_code("sigmoid")
    for n in range(1, 19):
        for bad in sorted({0, n // 2, n - 1}):
            for v in (-710.0, 800.0, np.nan):  # exp(710) overflows; sigmoid(800) is 1
                z = np.linspace(-40.0, 40.0, n)
                clean = z.copy()
                z[bad] = v
                out, ref = np.full((1, n), np.nan), np.full((1, n), np.nan)
                core.activation_forward(code, z.reshape(1, n), out)
                core.activation_forward(code, clean.reshape(1, n), ref)
                want = 1.0 / (1.0 + libm_exp(-z))
                np.testing.assert_array_equal(out[0, bad], want[bad])
                keep = np.arange(n) != bad
                np.testing.assert_array_equal(out[0, keep], ref[0, keep])
                inplace = z.reshape(1, n).copy()
                core.activation_forward(code, inplace, inplace)
                np.testing.assert_array_equal(inplace, out)


# ----------------------------------------------------------- dense kernels ---
def _dense_both(core, X, W, b, dZ, with_dx):
    n, ni = X.shape
    no = W.shape[1]
    out = {}
    for name, mod in (("native", core), ("numpy", ref)):
        # NaN everywhere, so that an element left unwritten shows up
        Z, dW, dX = np.full((n, no), np.nan), np.full((ni, no), np.nan), np.full((n, ni), np.nan)
        db = np.full(no, np.nan) if b is not None else None
        if not with_dx:
            dX = None
        mod.dense_forward(X, W, b, Z)
        mod.dense_backward(X, W, dZ, dW, db, dX)
        out[name] = (Z, dW, db, dX)
    return out


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_dense_kernels_match_twin(core, level, path, bias):
    """Every (n, ni, no) of SIZES**3: the forward, dW, db and dX of the native
    kernels equal the twin's to rounding, and read-only inputs stay as they
    were."""
    _check_dense_kernels(core, level, path, bias, itertools.product(SIZES, repeat=3))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_wide_thin_dense_kernels_match_twin(core, level, path, bias):
    """As above, for a side of 2 or 3 against one of 64 or more: the 8-vector
    passes of mm_tn, mm_nn's streamed rows (K <= 4) with a column remainder,
    and mm_nt's row blocks over a long K with a tail."""
    shapes = itertools.product([9, 33], [2, 3, 64, 67, 130], [2, 3, 64, 67, 130])
    _check_dense_kernels(core, level, path, bias, [s for s in shapes if min(s[1:]) <= 3])


def _check_dense_kernels(core, level, path, bias, shapes):
    for n, ni, no in shapes:
        rng = np.random.default_rng([n, ni, no, bias])
        X, W, dZ = (rng.standard_normal(s) for s in ((n, ni), (ni, no), (n, no)))
        b = rng.standard_normal(no) if bias else None
        inputs = [a for a in (X, W, dZ, b) if a is not None]
        copies = [a.copy() for a in inputs]
        for a in inputs:
            a.flags.writeable = False  # a write raises at once
        with_dx = (n + ni + no) % 3 != 0  # dX is optional: leave it out now and then
        out = _dense_both(core, X, W, b, dZ, with_dx)
        for a, c in zip(inputs, copies):
            np.testing.assert_array_equal(a, c)
        for what, got, want in zip(("Z", "dW", "db", "dX"), out["native"], out["numpy"]):
            if want is None:
                assert got is None
                continue
            assert not np.isnan(got).any(), f"{what} not fully written at {(n, ni, no)}"
            # summation order differs between the tiles, dgemm and NumPy's BLAS
            np.testing.assert_allclose(
                got,
                want,
                rtol=1e-12,
                atol=1e-13 * max(ni, no, n),
                err_msg=f"{what} at n, ni, no = {(n, ni, no)} ({level}, {path})",
            )


def test_dense_kernels_exact_on_integers(core, level, path):
    # Small integers: every product and partial sum is exact, so every order
    # of summation gives the same bits, and native must equal the twin.
    rng = np.random.default_rng(17)
    for n, ni, no in itertools.product([1, 3, 4, 5, 9, 17], [1, 2, 4, 5, 8, 33], [1, 3, 4, 7, 16]):
        X, W, dZ = (rng.integers(-4, 5, s).astype(np.float64) for s in ((n, ni), (ni, no), (n, no)))
        b = rng.integers(-4, 5, no).astype(np.float64)
        out = _dense_both(core, X, W, b, dZ, True)
        for got, want in zip(out["native"], out["numpy"]):
            np.testing.assert_array_equal(got, want, err_msg=f"{(n, ni, no)}")


# ------------------------------------------- dense kernels, feature-major ---
FM_LANES = [4, 8, 12, 16, 36]  # one, two, three vectors of 4; 2-lane tables: 2 to 18


def _feature_major_both(core, XT, W, b, dT, A, act, with_db, with_dx):
    ni, m = XT.shape
    no = W.shape[1]
    code = _codes.activation_code(act)
    out = {}
    for name, mod in (("native", core), ("numpy", ref)):
        Z, dW, dXT = np.full((no, m), np.nan), np.full((ni, no), np.nan), np.full((ni, m), np.nan)
        db = np.full(no, np.nan) if with_db else None
        mod.dense_forward_feature_major(XT, W, b, Z, code)
        mod.dense_backward_feature_major(XT, W, dT, A, code, dW, db, dXT if with_dx else None)
        out[name] = (Z, dW, db, dXT if with_dx else None)
    return out


@pytest.mark.parametrize("act", ["identity", "relu", "sigmoid"])
def test_dense_feature_major_kernels_match_twin(core, level, act):
    """Every (m, ni, no) of FM_LANES x SIZES x SIZES: the forward, dW, db and
    dXT of the feature-major kernels equal the twin's to rounding (gW in
    blocks of the vector width and a scalar tail, db likewise), every output
    element is written, and read-only inputs stay as they were."""
    for m, ni, no in itertools.product(FM_LANES, SIZES, SIZES):
        rng = np.random.default_rng([m, ni, no, len(act)])
        XT, W, dT = (rng.standard_normal(s) for s in ((ni, m), (ni, no), (no, m)))
        A = rng.random((ni, m)) if act == "sigmoid" else np.maximum(rng.standard_normal((ni, m)), 0)
        b = rng.standard_normal(no) if (m + ni + no) % 2 else None
        inputs = [a for a in (XT, W, dT, A, b) if a is not None]
        copies = [a.copy() for a in inputs]
        for a in inputs:
            a.flags.writeable = False
        with_db, with_dx = (m + ni) % 3 != 0, (ni + no) % 3 != 1
        out = _feature_major_both(core, XT, W, b, dT, A, act, with_db, with_dx)
        for a, c in zip(inputs, copies):
            np.testing.assert_array_equal(a, c)
        for what, got, want in zip(("Z", "dW", "db", "dXT"), out["native"], out["numpy"]):
            if want is None:
                continue
            assert not np.isnan(got).any(), f"{what} not fully written at {(m, ni, no)}"
            np.testing.assert_allclose(
                got,
                want,
                rtol=1e-12,
                atol=1e-13 * max(ni, no, m),
                err_msg=f"{what} at m, ni, no = {(m, ni, no)} ({level}, {act})",
            )


def test_dense_feature_major_kernels_exact_on_integers(core, level):
    # Small integers: every sum is exact in any order, so native equals the twin
    rng = np.random.default_rng(19)
    for m, ni, no in itertools.product([4, 8, 20], [1, 2, 4, 5, 8, 33], [1, 3, 4, 7, 16]):
        XT, W, dT = (
            rng.integers(-4, 5, s).astype(np.float64) for s in ((ni, m), (ni, no), (no, m))
        )
        b = rng.integers(-4, 5, no).astype(np.float64)
        for act in ("identity", "relu"):
            A = np.maximum(rng.integers(-2, 3, (ni, m)), 0).astype(np.float64)
            out = _feature_major_both(core, XT, W, b, dT, A, act, True, True)
            for got, want in zip(out["native"], out["numpy"]):
                np.testing.assert_array_equal(got, want, err_msg=f"{(m, ni, no, act)}")


def test_dense_feature_major_sigmoid_out_of_range_goes_to_libm(core, level):
    # A vector with -z outside [-708, 709] in any lane is computed by libm,
    # bit for bit the textbook formula; the others stay within rounding.
    code = _codes.activation_code("sigmoid")
    m = 16
    z = np.linspace(-30.0, 30.0, m)
    z[5] = -710.0  # exp(710) overflows: sigmoid 0
    z[14] = 745.0
    XT, W = z.reshape(1, m), np.ones((1, 1))
    out = np.full((1, m), np.nan)
    core.dense_forward_feature_major(XT, W, None, out, code)
    want = 1.0 / (1.0 + libm_exp(-z))
    width = 2 if level == "baseline" else 4  # (the AVX-512 table keeps AVX2's kernels here)
    for i in range(m):
        if any(abs(v) > 708 for v in z[i - i % width : i - i % width + width]):
            assert out[0, i] == want[i], i
        else:
            np.testing.assert_allclose(out[0, i], want[i], rtol=4e-16)


# ------------------------------------------------------------------ sgd ---
@pytest.mark.parametrize("n", SIZES + [256, 1001])
def test_sgd_is_numpy_bit_for_bit(core, level, n):
    """p -= lr * g rounds lr * g first, as NumPy does (no fused multiply-add
    in the AVX2+FMA table either), over the vectors and the tail."""
    rng = np.random.default_rng(n)
    p, g = rng.standard_normal(n), rng.standard_normal(n) * 1e3
    lr = 0.1 + rng.random()
    want = p - lr * g
    core.sgd_update(p, g, lr)
    np.testing.assert_array_equal(p, want)


@pytest.mark.parametrize("where", [0, 3, 4, 17, 999])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_sgd_flags_a_non_finite_update_anywhere(core, level, where, bad):
    """A plain SGD step that makes one parameter (in a vector or in the tail)
    NaN or infinite is caught, and every parameter is restored."""
    n = 1000
    meta = np.array(
        [[_codes.KIND_DENSE, 1, n, _codes.activation_code("identity"), 0, -1, 1, 1]], dtype=np.int64
    )
    hyper = np.zeros((1, 6))
    params = np.random.default_rng(1).standard_normal(n)
    grads = np.zeros(n)
    engine = core.Engine(meta, hyper, params, grads, _codes.LOSS_SE, _codes.RED_SUM)
    engine.forward(np.ones((1, 1)))
    engine.backward(np.zeros((1, n)))
    grads[where] = bad if bad != np.inf else -1e308  # p - lr * g overflows to +inf
    before = params.copy()
    with pytest.raises(cbp.DivergenceError):
        engine.sgd_step(10.0 if bad == np.inf else 1.0)
    np.testing.assert_array_equal(params, before)


# --------------------------------------------------------- whole networks ---
def _data(seed, n, ni, target, no):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, ni))
    if target == "labels":
        y = rng.integers(0, no, n)
    elif target == "binary":
        y = rng.integers(0, 2, (n, no)).astype(np.float64)
    else:
        y = rng.standard_normal((n, no))
    return X, y


def _integer_case():
    """Integer inputs and weights, zero biases: many hidden pre-activations
    are exactly 0 (in every order of summation), where ReLU's derivative is 0
    on both sides."""
    rng = np.random.default_rng(29)
    X = rng.integers(-2, 3, (64, 4)).astype(np.float64)
    W1 = np.array(
        [[1, -1, 2, 0, 1, -2], [1, -1, -2, 1, 0, 2], [-1, 1, 1, -1, 1, 0], [-1, 1, -1, 0, -2, 0]],
        dtype=np.float64,
    )
    W2 = rng.integers(-2, 3, (6, 2)).astype(np.float64)
    y = rng.integers(-3, 4, (64, 2)).astype(np.float64)
    assert np.count_nonzero(X @ W1 == 0) >= 40  # the point of the case

    def layers():
        return [
            cbp.Dense(4, 6, "relu", weights=W1, bias=np.zeros(6)),
            cbp.Dense(6, 2, "identity", weights=W2, bias=np.zeros(2)),
        ]

    return layers, X, y


def _case(name):
    """(layers factory, loss, X, y, batch_size, epochs, optimizer factory)."""
    sgd = lambda lr: lambda: cbp.optim.SGD(lr)  # noqa: E731
    if name == "2-64relu-3softmax-cce":
        X, y = _data(1, 120, 2, "labels", 3)
        return (
            lambda: [cbp.Dense(2, 64, "relu", seed=1), cbp.Dense(64, 3, "softmax", seed=2)],
            "categorical_crossentropy",
            X,
            y,
            4,
            20,
            lambda: cbp.optim.Adam(0.01),
        )
    if name == "5-7relu-1-se":
        X, y = _data(2, 60, 5, "real", 1)
        return (
            lambda: [cbp.Dense(5, 7, "relu", seed=3), cbp.Dense(7, 1, "identity", seed=4)],
            "squared_error",
            X,
            y,
            1,
            20,
            sgd(0.01),
        )
    if name in ("3-17tanh-9relu-2-se", "3-17sigmoid-9relu-2-se"):
        act = name.split("-")[1][2:]
        X, y = _data(3, 90, 3, "real", 2)
        return (
            lambda: [
                cbp.Dense(3, 17, act, seed=5),
                cbp.Dense(17, 9, "relu", seed=6),
                cbp.Dense(9, 2, "identity", seed=7),
            ],
            "squared_error",
            X,
            y,
            3,
            20,
            lambda: cbp.optim.SGD(0.02, momentum=0.9),
        )
    if name == "33-4relu-1sigmoid-bce":
        X, y = _data(4, 100, 33, "binary", 1)
        return (
            lambda: [cbp.Dense(33, 4, "relu", seed=8), cbp.Dense(4, 1, "sigmoid", seed=9)],
            "binary_crossentropy",
            X,
            y,
            5,
            25,
            lambda: cbp.optim.Adam(0.005),
        )
    if name == "6-16relu-dropout-3softmax-cce":
        X, y = _data(5, 300, 6, "labels", 3)
        return (
            lambda: [
                cbp.Dense(6, 16, "relu", seed=10),
                cbp.Dropout(0.3),
                cbp.Dense(16, 3, "softmax", seed=11),
            ],
            "categorical_crossentropy",
            X,
            y,
            32,
            30,
            lambda: cbp.optim.RMSprop(0.005),
        )
    if name == "4-9relu-2relu-se":
        X, y = _data(6, 300, 4, "real", 2)
        y = np.abs(y)  # a ReLU output layer can reach these
        return (
            lambda: [cbp.Dense(4, 9, "relu", seed=12), cbp.Dense(9, 2, "relu", seed=13)],
            "squared_error",
            X,
            y,
            300,
            50,
            sgd(0.05),
        )
    if name == "11-3relu-2relu-1-se":
        # thin ReLU layers: C of 1 to 3 columns (mm_nt's blocks of rows, with
        # a K tail and the ReLU gate fused into the store)
        X, y = _data(7, 90, 11, "real", 1)
        return (
            lambda: [
                cbp.Dense(11, 3, "relu", seed=16),
                cbp.Dense(3, 2, "relu", seed=17),
                cbp.Dense(2, 1, "identity", seed=18),
            ],
            "squared_error",
            X,
            y,
            16,
            20,
            sgd(0.01),
        )
    if name == "integers-4-6relu-2-se":
        layers, X, y = _integer_case()
        return layers, "squared_error", X, y, 4, 20, sgd(2.0**-8)
    raise KeyError(name)


CASES = [
    "2-64relu-3softmax-cce",
    "5-7relu-1-se",
    "3-17tanh-9relu-2-se",
    "3-17sigmoid-9relu-2-se",
    "33-4relu-1sigmoid-bce",
    "6-16relu-dropout-3softmax-cce",
    "4-9relu-2relu-se",
    "11-3relu-2relu-1-se",
    "integers-4-6relu-2-se",
]
# The batch sizes of fit: one sample, 3 and 5 (odd tails of the 4-row tiles),
# 4 (exactly a tile), and 300 (the whole set in one batch).
BATCHES = [1, 3, 4, 5, 300]


def _fit(name, backend, path=None):
    layers, loss, X, y, bs, epochs, opt = _case(name)
    net = cbp.Network(layers(), loss=loss, backend=backend)
    hist = net.fit(X, y, epochs=epochs, batch_size=bs, shuffle=True, seed=21, optimizer=opt())
    if path is not None:  # the path the fixture asked for is the one taken
        assert (net._engine.ld > 0) == (path == "feature-major" and "dropout" not in name)
    return net.parameters.copy(), hist["loss"].copy()


@functools.cache
def _twin_fit(name):
    """The twin's run does not depend on the table or the dgemm threshold:
    computed once, read-only."""
    params, losses = _fit(name, "numpy")
    params.flags.writeable = losses.flags.writeable = False
    return params, losses


def _assert_runs_agree(got, want, what):
    (gp, gl), (wp, wl) = got, want
    # 1e-9 after tens of epochs: rounding differences grow through training
    np.testing.assert_allclose(gl, wl, rtol=1e-9, atol=1e-12, err_msg=f"loss history, {what}")
    np.testing.assert_allclose(gp, wp, rtol=1e-9, atol=1e-12, err_msg=f"parameters, {what}")


@pytest.mark.parametrize("name", CASES)
def test_training_matches_twin(level, path, name):
    _assert_runs_agree(_fit(name, "native", path), _twin_fit(name), f"{name} ({level}, {path})")


def _fit_batches(backend, batch_size):
    # 7 -> 9 relu -> 5: tails at both widths; 300 samples, so 300 is one batch
    X, y = _data(7, 300, 7, "real", 5)
    net = cbp.Network(
        [cbp.Dense(7, 9, "relu", seed=14), cbp.Dense(9, 5, "identity", seed=15)],
        loss="squared_error",
        backend=backend,
    )
    hist = net.fit(
        X,
        y,
        epochs=5 if batch_size == 1 else 10,
        lr=0.01,
        batch_size=batch_size,
        shuffle=True,
        seed=22,
    )
    return net.parameters.copy(), hist["loss"].copy()


@functools.cache
def _twin_batches(batch_size):
    params, losses = _fit_batches("numpy", batch_size)
    params.flags.writeable = losses.flags.writeable = False
    return params, losses


@pytest.mark.parametrize("batch_size", BATCHES)
def test_batch_sizes_match_twin(level, path, batch_size):
    _assert_runs_agree(
        _fit_batches("native", batch_size),
        _twin_batches(batch_size),
        f"batch_size {batch_size} ({level}, {path})",
    )


@pytest.mark.parametrize("name", CASES)
def test_gradients_match_twin(level, path, name):
    """One forward and one backward on the whole data set: output, loss and
    every gradient agree with the twin to 1e-12."""
    layers, loss, X, y, *_ = _case(name)
    out = {}
    for backend in ("native", "numpy"):
        net = cbp.Network(layers(), loss=loss, backend=backend)
        A = net.forward(X)
        value = net.backward(y)
        out[backend] = (A, value, net.gradients.copy(), net)
    (A, value, g, net), (wA, wvalue, wg, _) = out["native"], out["numpy"]
    if name.startswith("integers"):
        # every sum exact (integers, and a mean over 2**7 entries): same bits
        np.testing.assert_array_equal(A, wA)
        np.testing.assert_array_equal(g, wg)
        assert value == wvalue
    np.testing.assert_allclose(A, wA, rtol=1e-12, atol=1e-15)
    assert value == pytest.approx(wvalue, rel=1e-12)
    # A gradient entry is a sum over the batch; where its terms cancel, the
    # difference in summation order is judged against the layer's largest entry.
    off = 0
    for layer in net.layers:
        size = getattr(layer, "size", 0)
        if not size:
            continue
        scale = np.max(np.abs(wg[off : off + size]))
        np.testing.assert_allclose(
            g[off : off + size],
            wg[off : off + size],
            rtol=1e-12,
            atol=1e-12 * scale,
            err_msg=f"{name}, layer at {off}",
        )
        off += size


# -------------------------------------------------------- seed 004 (XOR) ---
# The construction of tests/test_seeds.py's seed 004: 2-4-1 sigmoid, no
# biases, half squared error summed over the batch, weights from U[0, 1) of
# default_rng(0), 10,000 full-batch epochs at lr 0.1.
XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
XOR_Y = np.array([[0], [1], [1], [0]])
XOR_RNG_SEED = 0


def _xor(backend):
    rng = np.random.default_rng(XOR_RNG_SEED)
    w1 = rng.uniform(size=(2, 4))
    w2 = rng.uniform(size=(4, 1))
    hidden = cbp.Dense(2, 4, "sigmoid", use_bias=False, weights=w1)
    output = cbp.Dense(4, 1, "sigmoid", use_bias=False, weights=w2)
    net = cbp.Network([hidden, output], loss="half_squared_error", reduction="sum", backend=backend)
    net.fit(XOR_X, XOR_Y, epochs=10000, lr=0.1, batch_size=None)
    return hidden.weights.copy(), output.weights.copy(), net.predict(XOR_X)


@functools.cache
def _twin_xor():
    return _xor("numpy")


def test_seed004_xor_matches_twin(level, path):
    got, want = _xor("native"), _twin_xor()
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=0)
    np.testing.assert_array_equal(np.round(got[2]), XOR_Y)  # and it learns XOR
