# The native kernels of cbp: plain C loops over contiguous float64 buffers.
#
# Every function here is ``noexcept nogil`` and touches no Python object.
# Shapes are passed explicitly; all matrices are row-major (C order).
# Callers validate everything before calling: these loops trust their input.
#
# Each kernel mirrors a function of the NumPy twin (cbp/_reference_kernels.py),
# with the same comparisons and formulas, so the two agree to rounding.
#
# Names: the routines here have plain names (dense_forward, loss_value, ...,
# as scikit-learn names its nogil routines), and _core.pyx cimports this file
# qualified, ``cimport _kernels as kernels``, calling them as
# ``kernels.dense_forward(...)``.  The plain names in cbp._core belong to the
# Python wrappers of _wrappers.pxi, which carry the twin's names and
# signatures.  Codes and table columns come from _codes.pxd.
from libc.math cimport exp, expm1, log, tanh, fabs, sqrt, isfinite
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm

from _codes cimport *

# Layers with at least cbp_blas_min_work multiply-adds (n * n_in * n_out),
# two rows or more, and n_in and n_out both at least cbp_blas_min_side go to
# BLAS dgemm; the rest run the kernels of _simd.h, which have no call or
# packing overhead and stay vectorised on thin sides where dgemm does not.
# The defaults come from bench/crossover.py (one thread): dgemm pays from
# about 64 x 64 layers on 64 rows, and on 1024 rows the loops win while a
# side is 8 or narrower, dgemm from 16 on; at 10 it is even for a thin
# input side and dgemm is 2.3x faster for a thin output side (the loops'
# tail of 10 % 4 columns).  cbp._core._blas_thresholds() reads and sets them
# (the tests force each path).
cdef extern from *:
    """
    static Py_ssize_t cbp_blas_min_work = 262144;
    static Py_ssize_t cbp_blas_min_side = 10;
    """
    Py_ssize_t cbp_blas_min_work
    Py_ssize_t cbp_blas_min_side


# Small-matrix products and vectorised exp (src/_simd.h): one table of
# function pointers, baseline or AVX2+FMA, chosen at import.
cdef extern from "_simd.h" nogil:
    ctypedef void (*mm_nn_fn)(Py_ssize_t m, Py_ssize_t K, Py_ssize_t N, const double* A,
                              Py_ssize_t lda, const double* B, Py_ssize_t ldb,
                              const double* bias, double* C, Py_ssize_t ldc, int epi,
                              const double* gate) noexcept nogil
    ctypedef void (*mm_tn_fn)(Py_ssize_t m, Py_ssize_t K, Py_ssize_t N, const double* A,
                              Py_ssize_t lda, const double* B, Py_ssize_t ldb, double* C,
                              Py_ssize_t ldc, int trans, double* colsum,
                              double* asum) noexcept nogil
    enum:
        EPI_NONE "CBP_EPI_NONE"
        EPI_RELU "CBP_EPI_RELU"
        EPI_GATE "CBP_EPI_GATE"
    ctypedef void (*map_fn)(Py_ssize_t n, const double* x, double* y) noexcept nogil
    ctypedef int (*sgd_fn)(Py_ssize_t n, double lr, double* p, const double* g,
                           double* snap) noexcept nogil
    ctypedef int (*adam_sk_fn)(Py_ssize_t n, double lr_t, double b1, double b2, double eps,
                               double* p, const double* g, double* m,
                               double* v) noexcept nogil
    enum:
        FEATURE_MAJOR_NONE "CBP_FEATURE_MAJOR_NONE"
        FEATURE_MAJOR_RELU "CBP_FEATURE_MAJOR_RELU"
        FEATURE_MAJOR_SIGMOID "CBP_FEATURE_MAJOR_SIGMOID"
    ctypedef void (*feature_major_forward_fn)(Py_ssize_t ld, Py_ssize_t K, Py_ssize_t N,
                                              const double* xT, const double* W,
                                              const double* bias, double* out,
                                              int act) noexcept nogil
    ctypedef void (*feature_major_backward_fn)(Py_ssize_t ld, Py_ssize_t K, Py_ssize_t N,
                                               const double* xT, const double* dT,
                                               const double* W, double* gW, double* gb,
                                               double* dxT, const double* A,
                                               int act) noexcept nogil
    ctypedef struct cbp_simd_table:
        mm_nn_fn mm_nn
        mm_nn_fn mm_nt
        mm_tn_fn mm_tn
        map_fn vexp
        map_fn vsigmoid
        feature_major_forward_fn feature_major_forward
        feature_major_backward_fn feature_major_backward
        sgd_fn sgd
        adam_sk_fn adam_sk
        const char* name
    cbp_simd_table cbp_simd
    int cbp_simd_select(const char* want)
    int cbp_cpu_has_avx2()
    int cbp_simd_has_avx512()
    int cbp_avx512_off


cdef inline bint use_blas(Py_ssize_t n, Py_ssize_t ni, Py_ssize_t no) noexcept nogil:
    return (n * ni * no >= cbp_blas_min_work and n >= 2
            and ni >= cbp_blas_min_side and no >= cbp_blas_min_side
            and n < 2147483647 and ni < 2147483647 and no < 2147483647)


cdef inline void gemm(char ta, char tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                      const double* A, Py_ssize_t lda, const double* B, Py_ssize_t ldb,
                      double beta, double* C, Py_ssize_t ldc) noexcept nogil:
    """Column-major C := op(A) @ op(B) + beta * C through BLAS dgemm.

    A row-major matrix is the column-major view of its transpose, so the
    row-major product C = A @ B is computed as C.T = B.T @ A.T.
    """
    cdef int m_ = <int>m, n_ = <int>n, k_ = <int>k
    cdef int lda_ = <int>lda, ldb_ = <int>ldb, ldc_ = <int>ldc
    cdef double one = 1.0
    dgemm(&ta, &tb, &m_, &n_, &k_, &one, <double*>A, &lda_, <double*>B, &ldb_, &beta,
          C, &ldc_)

cdef extern from *:
    """
    #define CBP_CLIP_EPS 1e-7
    """
    const double CLIP_EPS "CBP_CLIP_EPS"


# ---------------------------------------------------------------- dense ----
# Below the BLAS crossover the products run on the register-blocked kernels
# of _simd.h, always vectorised along a side of 4 or more: a layer with fewer
# than 4 outputs (a regression head, 3 classes) takes dot products along its
# inputs against W transposed into ``scratch``; ``cap`` is the scratch size,
# and a layer that does not fit is run without the transpose.

cdef inline void transpose(const double* W, double* Wt, Py_ssize_t ni,
                           Py_ssize_t no) noexcept nogil:
    """Wt (no, ni) := W (ni, no).T"""
    cdef Py_ssize_t k, j
    for k in range(ni):
        for j in range(no):
            Wt[j * ni + k] = W[k * no + j]


cdef inline void dense_forward(const double* X, const double* W, const double* b,
                               double* Z, Py_ssize_t n, Py_ssize_t ni, Py_ssize_t no,
                               double* scratch, Py_ssize_t cap, bint relu=False,
                               int blas=-1) noexcept nogil:
    """Z := X @ W (+ b), then Z := relu(Z) if ``relu`` (fused into the store).

    X (n, ni), W (ni, no), b (no,) or NULL, Z (n, no).  ``blas``: 1 dgemm,
    0 the loops, -1 (default) as use_blas decides.
    """
    cdef Py_ssize_t i
    cdef int epi = EPI_RELU if relu else EPI_NONE
    if use_blas(n, ni, no) if blas < 0 else blas != 0:
        if b != NULL:
            for i in range(n):
                memcpy(Z + i * no, b, no * sizeof(double))
        # Z.T (no, n) = W.T (no, ni) @ X.T (ni, n)
        gemm(b'N', b'N', no, n, ni, W, no, X, ni, 1.0 if b != NULL else 0.0, Z, no)
        if relu:
            activation_forward(ACT_RELU, Z, Z, n, no, 0.0)
    elif no < 4 and ni >= 4 and n >= 4 and ni * no <= cap:
        transpose(W, scratch, ni, no)
        cbp_simd.mm_nt(n, ni, no, X, ni, scratch, ni, b, Z, no, epi, NULL)
    else:
        cbp_simd.mm_nn(n, ni, no, X, ni, W, no, b, Z, no, epi, NULL)


cdef inline void bias_grad(const double* dZ, double* db, Py_ssize_t n,
                           Py_ssize_t no) noexcept nogil:
    """db := sum(dZ, axis=0) for dZ (n, no)."""
    cdef Py_ssize_t i, j
    cdef const double* dzi
    memset(db, 0, no * sizeof(double))
    for i in range(n):
        dzi = dZ + i * no
        for j in range(no):
            db[j] += dzi[j]


cdef inline void dense_backward(const double* X, const double* W, const double* dZ,
                                double* dW, double* db, double* dX, Py_ssize_t n,
                                Py_ssize_t ni, Py_ssize_t no, double* scratch,
                                Py_ssize_t cap, const double* gate=NULL,
                                int blas=-1) noexcept nogil:
    """dW := X.T @ dZ; db := sum(dZ, 0) (if db); dX := dZ @ W.T (if dX).

    With ``gate`` (n, ni), dX := where(gate > 0, dX, 0): the ReLU mask of the
    layer below, fused into the store.  ``blas`` as in dense_forward.
    """
    cdef int epi = EPI_GATE if gate != NULL else EPI_NONE
    if use_blas(n, ni, no) if blas < 0 else blas != 0:
        # dW.T (no, ni) = dZ.T (no, n) @ X (n, ni)
        gemm(b'N', b'T', no, ni, n, dZ, no, X, ni, 0.0, dW, no)
        if db != NULL:
            bias_grad(dZ, db, n, no)
        if dX != NULL:
            # dX.T (ni, n) = W (ni, no) @ dZ.T (no, n)
            gemm(b'T', b'N', ni, n, no, W, no, dZ, no, 0.0, dX, ni)
            if gate != NULL:  # the ReLU mask: gate = relu(Z) > 0 where Z > 0
                activation_backward(ACT_RELU, gate, NULL, dX, dX, n, ni, 0.0)
        return
    if no >= 4 or ni < 4:  # vectorised along the outputs; db rides along
        cbp_simd.mm_tn(n, ni, no, X, ni, dZ, no, dW, no, 0, db, NULL)
    else:  # few outputs: vectorise along the inputs, dW.T = dZ.T @ X; db too
        cbp_simd.mm_tn(n, no, ni, dZ, no, X, ni, dW, no, 1, NULL, db)
    if dX != NULL:
        if ni >= 4 and n >= 4 and ni * no <= cap:
            transpose(W, scratch, ni, no)
            cbp_simd.mm_nn(n, no, ni, dZ, no, scratch, ni, NULL, dX, ni, epi, gate)
        else:
            cbp_simd.mm_nt(n, no, ni, dZ, no, W, no, NULL, dX, ni, epi, gate)


# ---------------------------------------------------------- activations ----
cdef inline void activation_forward(int act, const double* Z, double* A,
                                    Py_ssize_t n, Py_ssize_t no,
                                    double alpha) noexcept nogil:
    """A := f(Z) for (n, no) buffers; softmax is taken row by row."""
    cdef Py_ssize_t i, j, m = n * no
    cdef double z, mx, s
    if act == ACT_IDENTITY:
        if A != Z:
            memcpy(A, Z, m * sizeof(double))
    elif act == ACT_RELU:
        for i in range(m):
            z = Z[i]
            A[i] = z if z > 0.0 else 0.0
    elif act == ACT_LEAKY:
        for i in range(m):
            z = Z[i]
            A[i] = z if z > 0.0 else alpha * z
    elif act == ACT_ELU:
        for i in range(m):
            z = Z[i]
            A[i] = z if z > 0.0 else alpha * expm1(z)
    elif act == ACT_SIGMOID:
        cbp_simd.vsigmoid(m, Z, A)
    elif act == ACT_TANH:
        for i in range(m):
            A[i] = tanh(Z[i])
    elif act == ACT_SOFTMAX:
        for i in range(n):
            mx = Z[i * no]
            for j in range(1, no):
                if Z[i * no + j] > mx:
                    mx = Z[i * no + j]
            for j in range(no):
                A[i * no + j] = Z[i * no + j] - mx
        cbp_simd.vexp(m, A, A)
        for i in range(n):
            s = 0.0
            for j in range(no):
                s += A[i * no + j]
            for j in range(no):
                A[i * no + j] = A[i * no + j] / s


cdef inline void activation_backward(int act, const double* Z, const double* A,
                                     const double* dA, double* dZ, Py_ssize_t n,
                                     Py_ssize_t no, double alpha) noexcept nogil:
    """dZ := dA * f'(Z); dZ may alias dA.  ReLU'(0) is 0, as in the seeds."""
    cdef Py_ssize_t i, j, m = n * no
    cdef double s, a
    if act == ACT_IDENTITY:
        if dZ != dA:
            memcpy(dZ, dA, m * sizeof(double))
    elif act == ACT_RELU:
        for i in range(m):
            dZ[i] = dA[i] if Z[i] > 0.0 else 0.0
    elif act == ACT_LEAKY:
        for i in range(m):
            dZ[i] = dA[i] if Z[i] > 0.0 else alpha * dA[i]
    elif act == ACT_ELU:
        for i in range(m):
            dZ[i] = dA[i] if Z[i] > 0.0 else dA[i] * (A[i] + alpha)
    elif act == ACT_SIGMOID:
        for i in range(m):
            a = A[i]
            dZ[i] = dA[i] * (a * (1.0 - a))
    elif act == ACT_TANH:
        for i in range(m):
            a = A[i]
            dZ[i] = dA[i] * (1.0 - a * a)
    elif act == ACT_SOFTMAX:
        for i in range(n):
            s = 0.0
            for j in range(no):
                s += dA[i * no + j] * A[i * no + j]
            for j in range(no):
                dZ[i * no + j] = A[i * no + j] * (dA[i * no + j] - s)


# --------------------------------------------------------------- losses ----
cdef inline double loss_scale(int loss, int reduction, Py_ssize_t n,
                              Py_ssize_t no) noexcept nogil:
    if reduction == RED_SUM:
        return 1.0
    if loss == LOSS_CCE:
        return 1.0 / <double>n
    return 1.0 / <double>(n * no)


cdef inline double clip(double p) noexcept nogil:
    if p < CLIP_EPS:
        return CLIP_EPS
    if p > 1.0 - CLIP_EPS:
        return 1.0 - CLIP_EPS
    return p


cdef inline double loss_value(int loss, const double* P, const double* Y,
                              Py_ssize_t n, Py_ssize_t no,
                              int reduction, Py_ssize_t nscale) noexcept nogil:
    """The reduced loss of P against Y, both (n, no).

    The mean is over a batch of ``nscale`` rows: n for the whole batch, more
    for a chunk of its rows (then the result is that chunk's share).
    """
    cdef Py_ssize_t i, m = n * no
    cdef double acc = 0.0, d, p
    cdef double s = loss_scale(loss, reduction, nscale, no)
    if loss == LOSS_SE or loss == LOSS_HALF_SE:
        for i in range(m):
            d = P[i] - Y[i]
            acc += d * d
        if loss == LOSS_HALF_SE:
            acc = 0.5 * acc
    elif loss == LOSS_CCE:
        # -sum(Y * log(P)): -log(p_true) for one-hot rows, as in nnfs
        for i in range(m):
            if Y[i] != 0.0:  # 0 * log(p) adds nothing: skip the log
                acc += Y[i] * log(clip(P[i]))
        acc = -acc
    elif loss == LOSS_BCE:
        for i in range(m):
            p = clip(P[i])
            acc += -(Y[i] * log(p) + (1.0 - Y[i]) * log(1.0 - p))
    return acc * s


cdef inline double loss_gradient(int loss, const double* P, const double* Y,
                                 double* dP, Py_ssize_t n, Py_ssize_t no,
                                 int reduction, Py_ssize_t nscale) noexcept nogil:
    """dP := dL/dP (cross-entropies divide by the clipped P); returns the loss.
    ``nscale`` as in loss_value."""
    cdef Py_ssize_t i, m = n * no
    cdef double p
    cdef double s = loss_scale(loss, reduction, nscale, no)
    if loss == LOSS_SE:
        for i in range(m):
            dP[i] = 2.0 * s * (P[i] - Y[i])
    elif loss == LOSS_HALF_SE:
        for i in range(m):
            dP[i] = s * (P[i] - Y[i])
    elif loss == LOSS_CCE:
        for i in range(m):
            dP[i] = -s * (Y[i] / clip(P[i]))
    elif loss == LOSS_BCE:
        for i in range(m):
            p = clip(P[i])
            dP[i] = -s * (Y[i] / p - (1.0 - Y[i]) / (1.0 - p))
    return loss_value(loss, P, Y, n, no, reduction, nscale)


cdef inline double output_delta(int act, int loss, const double* Z, const double* A,
                                const double* Y, double* dZ, Py_ssize_t n,
                                Py_ssize_t no, int reduction,
                                double alpha, Py_ssize_t nscale) noexcept nogil:
    """dZ := dL/dZ of the output layer, fused for softmax+CCE and sigmoid+BCE.
    ``nscale`` as in loss_value."""
    cdef Py_ssize_t i, j, m = n * no
    cdef double s, ysum
    if act == ACT_SOFTMAX and loss == LOSS_CCE:
        s = loss_scale(loss, reduction, nscale, no)
        for i in range(n):
            ysum = 0.0
            for j in range(no):
                ysum += Y[i * no + j]
            for j in range(no):
                dZ[i * no + j] = (A[i * no + j] * ysum - Y[i * no + j]) * s
        return loss_value(loss, A, Y, n, no, reduction, nscale)
    if act == ACT_SIGMOID and loss == LOSS_BCE:
        s = loss_scale(loss, reduction, nscale, no)
        for i in range(m):
            dZ[i] = (A[i] - Y[i]) * s
        return loss_value(loss, A, Y, n, no, reduction, nscale)
    s = loss_gradient(loss, A, Y, dZ, n, no, reduction, nscale)
    activation_backward(act, Z, A, dZ, dZ, n, no, alpha)
    return s


# ------------------------------------------------ regularisation, update ----
cdef inline double sign(double v) noexcept nogil:
    if v > 0.0:
        return 1.0
    if v < 0.0:
        return -1.0
    return 0.0


cdef inline double penalty(const double* V, Py_ssize_t m, double l1,
                           double l2) noexcept nogil:
    """l1 * sum|V| + l2 * sum V**2."""
    cdef Py_ssize_t i
    cdef double a1 = 0.0, a2 = 0.0
    if l1 > 0.0:
        for i in range(m):
            a1 += fabs(V[i])
    if l2 > 0.0:
        for i in range(m):
            a2 += V[i] * V[i]
    return l1 * a1 + l2 * a2


cdef inline void add_penalty_gradient(const double* V, double* dV, Py_ssize_t m,
                                      double l1, double l2) noexcept nogil:
    """dV += l1 * sign(V) + 2 * l2 * V."""
    cdef Py_ssize_t i
    if l1 > 0.0:
        for i in range(m):
            dV[i] += l1 * sign(V[i])
    if l2 > 0.0:
        for i in range(m):
            dV[i] += 2.0 * l2 * V[i]


cdef inline void sgd_update(double* p, const double* g, Py_ssize_t m,
                            double lr) noexcept nogil:
    """p -= lr * g (the sgd kernel of _simd.h)."""
    cbp_simd.sgd(m, lr, p, g, NULL)


# ------------------------------------------------------------ optimizers ----
cdef inline double flag(double bad, double x) noexcept nogil:
    """1.0 if x is NaN or +-inf (then x - x is NaN), else ``bad``.

    Carrying the flag as a double through a select lets gcc vectorise the
    update loops that check their results (an int flag or a sum does not).
    """
    cdef double d = x - x
    return 1.0 if d != d else bad


cdef inline bint all_finite(const double* v, Py_ssize_t m, bint unit) noexcept nogil:
    """True if every v[i] is finite (within [0, 1] with ``unit``).  Checked
    in blocks with a select, which gcc vectorises, and a test per block."""
    cdef Py_ssize_t i, j, e
    cdef double chk
    for i in range(0, m, 256):
        e = min(i + 256, m)
        chk = 0.0
        if unit:
            for j in range(i, e):
                chk = chk if (v[j] >= 0.0 and v[j] <= 1.0) else 1.0
        else:
            for j in range(i, e):
                chk = flag(chk, v[j])
        if chk != 0.0:
            return False
    return True


cdef inline bint copy_finite(const double* v, double* out, Py_ssize_t m) noexcept nogil:
    """out[:m] := v[:m]; True if every v[i] is finite.  Stops at the block
    of 256 with the first value that is not (out is then partly written)."""
    cdef Py_ssize_t i, j, e
    cdef double chk, x
    for i in range(0, m, 256):
        e = min(i + 256, m)
        chk = 0.0
        for j in range(i, e):
            x = v[j]
            out[j] = x
            chk = flag(chk, x)
        if chk != 0.0:
            return False
    return True


cdef inline int optimizer_update(int kind, const double* h, double* p,
                                 const double* g, double* s0, double* s1,
                                 Py_ssize_t m, double t) noexcept nogil:
    """One optimizer step on m parameters (nnfs semantics), in place.

    s0, s1 are the state slots (momentum / cache / Adam's m and v).  Returns
    0 when every new parameter and state value is finite, non-zero otherwise.
    """
    cdef Py_ssize_t i
    cdef double lr = h[HYPER_LEARNING_RATE] / (1.0 + h[HYPER_DECAY] * t)
    cdef double eps = h[HYPER_EPSILON], mu, rho, b1, b2, c1, c2, u, gi, c, mi, vi
    cdef double chk = 0.0
    if kind == OPT_SGD:
        mu = h[HYPER_MOMENTUM]
        if mu == 0.0:
            for i in range(m):
                p[i] = p[i] - lr * g[i]
                chk = flag(chk, p[i])
        elif h[HYPER_NESTEROV] != 0.0:
            for i in range(m):
                u = mu * s0[i] - lr * g[i]
                s0[i] = u
                p[i] = p[i] + (mu * u - lr * g[i])
                chk = flag(flag(chk, p[i]), u)
        else:
            for i in range(m):
                u = mu * s0[i] - lr * g[i]
                s0[i] = u
                p[i] = p[i] + u
                chk = flag(chk, p[i])
    elif kind == OPT_ADAGRAD:
        for i in range(m):
            gi = g[i]
            c = s0[i] + gi * gi
            s0[i] = c
            p[i] = p[i] - lr * gi / (sqrt(c) + eps)
            chk = flag(flag(chk, p[i]), c)
    elif kind == OPT_RMSPROP:
        rho = h[HYPER_RHO]
        for i in range(m):
            gi = g[i]
            c = rho * s0[i] + (1.0 - rho) * (gi * gi)
            s0[i] = c
            p[i] = p[i] - lr * gi / (sqrt(c) + eps)
            chk = flag(flag(chk, p[i]), c)
    elif kind == OPT_ADAM:
        b1 = h[HYPER_BETA1]
        b2 = h[HYPER_BETA2]
        c1 = 1.0 - b1 ** (t + 1.0)
        c2 = 1.0 - b2 ** (t + 1.0)
        for i in range(m):
            gi = g[i]
            mi = b1 * s0[i] + (1.0 - b1) * gi
            vi = b2 * s1[i] + (1.0 - b2) * (gi * gi)
            s0[i] = mi
            s1[i] = vi
            p[i] = p[i] - lr * (mi / c1) / (sqrt(vi / c2) + eps)
            chk = flag(flag(chk, p[i]), vi)
    return chk != 0.0


# ------------------------------------------- the shared generator (splitmix64)
from libc.stdint cimport uint64_t

cdef inline uint64_t mix64(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline uint64_t stream_base(uint64_t seed, uint64_t stream) noexcept nogil:
    return mix64(seed ^ (stream * <uint64_t>0x9E3779B97F4A7C15ULL))


cdef inline uint64_t draw(uint64_t base, uint64_t counter) noexcept nogil:
    """Draw number ``counter`` of the stream whose base is ``base``."""
    return mix64(base + (counter + 1) * <uint64_t>0x9E3779B97F4A7C15ULL)


cdef inline double uniform(uint64_t bits) noexcept nogil:
    """The top 53 bits as a double in [0, 1)."""
    return <double>(bits >> 11) * (1.0 / 9007199254740992.0)


cdef inline void dropout_mask(uint64_t seed, uint64_t stream, uint64_t start,
                              double rate, double* out, Py_ssize_t m) noexcept nogil:
    """out := 1 / (1 - rate) where a uniform draw >= rate, else 0."""
    cdef Py_ssize_t i
    cdef uint64_t base = stream_base(seed, stream)
    cdef double keep = 1.0 / (1.0 - rate)
    for i in range(m):
        out[i] = keep if uniform(draw(base, start + <uint64_t>i)) >= rate else 0.0


# --------------------------------------------------------------- accuracy ----
cdef inline Py_ssize_t correct(int loss, const double* A, const double* Y,
                               Py_ssize_t n, Py_ssize_t no,
                               Py_ssize_t* seen) noexcept nogil:
    """Correct predictions in a batch: argmax match (categorical) or
    thresholding at 0.5 (binary).  seen receives how many were judged."""
    cdef Py_ssize_t i, j, ja, jy, hit = 0
    if loss == LOSS_CCE:
        for i in range(n):
            ja = 0
            jy = 0
            for j in range(1, no):
                if A[i * no + j] > A[i * no + ja]:
                    ja = j
                if Y[i * no + j] > Y[i * no + jy]:
                    jy = j
            hit += ja == jy
        seen[0] = n
    elif loss == LOSS_BCE:
        for i in range(n * no):
            hit += (A[i] > 0.5) == (Y[i] > 0.5)
        seen[0] = n * no
    else:
        seen[0] = 0
    return hit
