# Included by _core.pyx.  The tuning knobs of the kernels: which SIMD table
# runs (src/_simd.h), when a dense layer goes to BLAS dgemm, and when fit()
# trains feature-major.

def _simd(level=None):
    """Read, and optionally set, the kernel table of src/_simd.h.

    ``level`` is "auto" (the best this CPU runs), "baseline", "avx2+fma" or
    "avx512".
    Returns the name in force before the call; raises ValueError for a
    level this build or CPU cannot run.  Private: the environment variable
    CBP_SIMD sets it at import; tests use this to run every table.
    """
    old = cbp_simd.name.decode()
    if level is not None:
        if (not isinstance(level, str) or "\0" in level
                or cbp_simd_select(level.encode()) != 0):
            raise ValueError(
                f"unknown or unsupported SIMD level {level!r}; this build and CPU "
                f"support {_simd_levels()}")
    return old


def _simd_levels():
    """The kernel tables this build has and this CPU can run."""
    names = ["baseline"]
    if cbp_cpu_has_avx2():
        names.append("avx2+fma")
    if cbp_simd_has_avx512():
        names.append("avx512")
    return names


def _vexp(const double[::1] x, double[::1] out):
    """out := exp(x) through the vectorised exp of the table in force.
    Private: for the tests of its accuracy and edge cases."""
    _check(out.shape[0] == x.shape[0], "_vexp: shape mismatch")
    if x.shape[0]:
        with nogil:
            cbp_simd.vexp(x.shape[0], &x[0], &out[0])
    return out.base


def _init_simd():
    import os
    import warnings
    global cbp_avx512_off
    # CBP_NO_AVX512=1: no 512-bit code at all, as on a CPU without AVX-512
    # (neither the table nor fit_many's 8 lanes; ci/sanitize.sh's ASan pass)
    off = os.environ.get("CBP_NO_AVX512", "").strip()
    if off == "1":
        cbp_avx512_off = 1
    elif off not in ("", "0"):
        warnings.warn(f"CBP_NO_AVX512={off!r} ignored: expected '1' or '0'",
                      RuntimeWarning, stacklevel=2)
    want = os.environ.get("CBP_SIMD", "auto").strip() or "auto"
    try:
        _simd(want)
    except ValueError as e:
        _simd("auto")
        warnings.warn(f"CBP_SIMD={want!r} ignored: {e}", RuntimeWarning, stacklevel=2)


_init_simd()


def _blas_thresholds(work=None, side=None):
    """Read, and optionally set, when dense layers switch to BLAS dgemm.

    A layer uses dgemm when n * n_in * n_out >= work, n >= 2, and both
    n_in and n_out >= side.  Returns the (work, side) in force before the call.
    Private: for the benchmark and for tests that force either path.
    """
    global cbp_blas_min_work, cbp_blas_min_side
    old = (cbp_blas_min_work, cbp_blas_min_side)
    if work is not None:
        cbp_blas_min_work = max(<Py_ssize_t>work, 1)
    if side is not None:
        cbp_blas_min_side = max(<Py_ssize_t>side, 1)
    return old


# fit() trains feature-major (_forward_feature_major in _engine_passes.pxi)
# a network of dense layers only, none wider than _feature_major_width, on
# batches of _feature_major_rows_lo to _feature_major_rows_hi rows.  From
# bench/crossover.py's third table (one thread, ns per step): with every side
# at most 4, ReLU and sigmoid networks step
# 1.1-1.4x (2-4-1 sigmoid, XOR's) to 1.5-3x (1-1-1 ReLU) faster from 2 to
# 32 rows; tanh ones about 5% slower (libm's tanh is most of their time);
# on 1 row, padded to 4 lanes, it is a wash or a loss; at 8 units and more,
# or 300 rows, the row-major passes are as fast or faster.
cdef Py_ssize_t _feature_major_width = 4
cdef Py_ssize_t _feature_major_rows_lo = 2
cdef Py_ssize_t _feature_major_rows_hi = 32


def _feature_major_limits(width=None, rows_lo=None, rows_hi=None):
    """Read, and optionally set, when fit() trains on feature-major
    activations: every side at most ``width`` (0: never), and batches of
    ``rows_lo`` to ``rows_hi`` rows.  Returns the (width, rows_lo, rows_hi)
    in force before the call.  Private: for the benchmark and for tests that
    force either path.
    """
    global _feature_major_width, _feature_major_rows_lo, _feature_major_rows_hi
    old = (_feature_major_width, _feature_major_rows_lo, _feature_major_rows_hi)
    if width is not None:
        _feature_major_width = max(<Py_ssize_t>width, 0)
    if rows_lo is not None:
        _feature_major_rows_lo = max(<Py_ssize_t>rows_lo, 1)
    if rows_hi is not None:
        _feature_major_rows_hi = max(<Py_ssize_t>rows_hi, 1)
    return old
