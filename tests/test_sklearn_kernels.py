"""The private kernels of src/_engine_sklearn.pxi against their NumPy twins
(cbp._reference_sklearn), on every kernel table of src/_simd.h: bit for bit,
over the vectors and the tails."""

import inspect

import numpy as np
import pytest

from cbp import _reference_sklearn as ref_sk

LEVELS = ["baseline", "avx2+fma"]
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
