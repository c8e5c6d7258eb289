# Included by _core.pyx.  scikit-learn's MLP training arithmetic on the
# Engine's layers (docs/sklearn-engine-spec.md): the mini-batches of one
# epoch, or the loss and gradient of one batch (lbfgs), in one native call
# with the GIL released.  The twin is cbp._reference.Engine.sklearn_epoch /
# sklearn_loss_grad, which run cbp/_reference_sklearn.py.  The passes are the engine's dense kernels
# (kernels.dense_forward, kernels.dense_backward, kernels.activation_forward);
# the losses, the L2 term scaled by the batch's weight sum, the derivative
# products and the optimizers are scikit-learn's, operation for operation.
from libc.math cimport log as c_log, exp as c_exp, sqrt as c_sqrt, pow as c_pow, frexp

cdef double SK_EPS = 2.220446049250313e-16   # np.finfo(np.float64).eps

# The sklearn engine's own dgemm rule: a layer goes to dgemm when n * n_in *
# n_out >= _sk_blas_min_work, n >= 2 and both sides >= _sk_blas_min_side.
# Timed on sklearn_epoch (one thread, min of interleaved rounds): with
# softmax outputs and Adam, dgemm is 13-17% faster than the loops for the
# 100 x 10 output layer on batches of 200 (digits, scikit-learn's defaults)
# and as fast or a few % faster for 64 x 64 on batches of 32; a side of 3
# or 4 (iris) stays on the loops, where dgemm takes 1.5-2x as long.
cdef Py_ssize_t _sk_blas_min_work = 65536
cdef Py_ssize_t _sk_blas_min_side = 8


cdef inline int _sk_blas(Py_ssize_t n, Py_ssize_t ni, Py_ssize_t no) noexcept nogil:
    return (n * ni * no >= _sk_blas_min_work and n >= 2
            and ni >= _sk_blas_min_side and no >= _sk_blas_min_side
            and n < 2147483647 and ni < 2147483647 and no < 2147483647)


def _sklearn_blas_thresholds(work=None, side=None):
    """Read, and optionally set, when the sklearn engine's dense layers use
    dgemm (n * n_in * n_out >= work, n >= 2, both sides >= side).  Returns
    the (work, side) in force before the call.  Private: for the benchmark
    and for tests that force either path."""
    global _sk_blas_min_work, _sk_blas_min_side
    old = (_sk_blas_min_work, _sk_blas_min_side)
    if work is not None:
        _sk_blas_min_work = max(<Py_ssize_t>work, 1)
    if side is not None:
        _sk_blas_min_side = max(<Py_ssize_t>side, 1)
    return old


cdef inline double _xlogy(double x, double y) noexcept nogil:
    """scipy.special.xlogy: 0 where x == 0 (and y not NaN), else x * log(y)."""
    if x == 0.0 and y == y:
        return 0.0
    return x * c_log(y)


cdef inline double _sk_clip(double p) noexcept nogil:
    if p < SK_EPS:
        return SK_EPS
    if p > 1.0 - SK_EPS:
        return 1.0 - SK_EPS
    return p


cdef double _sk_loss(int loss, const double* P, const double* Y, const double* s,
                     Py_ssize_t n, Py_ssize_t k, double S) noexcept nogil:
    """The batch loss before L2: weighted means over rows (Σ s_i x_i / S, or
    Σ x_i / n without weights), summed over outputs (averaged for squared)."""
    cdef Py_ssize_t i, j
    cdef double total = 0.0, col, x, y, p, q
    for j in range(k):
        col = 0.0
        for i in range(n):
            y = Y[i * k + j]
            p = P[i * k + j]
            if loss == LOSS_SK_SQUARED:
                x = (y - p) * (y - p)
            elif loss == LOSS_SK_LOG:
                x = _xlogy(y, _sk_clip(p))
            elif loss == LOSS_SK_BINARY_LOG:
                q = _sk_clip(p)
                x = _xlogy(y, q) + _xlogy(1.0 - y, 1.0 - q)
            else:  # LOSS_SK_POISSON
                x = _xlogy(y, y / p) - y + p
            col += x * s[i] if s != NULL else x
        total += col / S
    if loss == LOSS_SK_SQUARED:
        return 0.5 * (total / k)
    if loss == LOSS_SK_POISSON:
        return total
    return -total


cdef inline double _sk_sumsq(const double* W, Py_ssize_t m) noexcept nogil:
    """sum(W**2) on four partial sums (entries i mod 4), added pairwise, then the tail."""
    cdef Py_ssize_t i
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    for i in range(0, m - 3, 4):
        s0 += W[i] * W[i]
        s1 += W[i + 1] * W[i + 1]
        s2 += W[i + 2] * W[i + 2]
        s3 += W[i + 3] * W[i + 3]
    s0 = (s0 + s1) + (s2 + s3)
    for i in range(m - m % 4, m):
        s0 += W[i] * W[i]
    return s0


cdef double _sk_batch(Engine e, int loss, double alpha, const double* X, const double* Y,
                      const double* s, Py_ssize_t n, double* acts, double* d1,
                      double* d2) noexcept nogil:
    """Forward, loss (with L2) and gradients into e.grads for one batch."""
    cdef Py_ssize_t l, i, j, m, off, ni, no, L = e.n_layers
    cdef Layer* layer
    cdef const double* inp = X
    cdef double* A
    cdef double* W
    cdef double* gW
    cdef double* gb
    cdef double* tmp
    cdef double S = 0.0, value, sq = 0.0, a, inv
    cdef int act, ex
    cdef bint pow2
    off = 0
    for l in range(L):  # forward: acts holds every layer's output, back to back
        layer = &e.layers[l]
        ni = layer.n_in
        no = layer.n_out
        A = acts + off
        m = n * no
        if l < L - 1:
            act = layer.act
        elif loss == LOSS_SK_SQUARED:
            act = ACT_IDENTITY
        elif loss == LOSS_SK_LOG:
            act = ACT_SOFTMAX
        elif loss == LOSS_SK_BINARY_LOG:
            act = ACT_SIGMOID
        else:
            act = -1
        # ReLU (z if z > 0 else 0, as activation_forward) is fused into the store
        kernels.dense_forward(inp, e.params + layer.w_off, e.params + layer.b_off, A, n, ni,
                              no, e.scratch, e.scratch_cap, act == ACT_RELU,
                              _sk_blas(n, ni, no))
        if act == -1:
            for i in range(m):
                A[i] = c_exp(A[i])
        elif act != ACT_IDENTITY and act != ACT_RELU:
            kernels.activation_forward(act, A, A, n, no, 0.0)
        inp = A
        off += m
    if s != NULL:
        for i in range(n):
            S += s[i]
    else:
        S = <double>n
    layer = &e.layers[L - 1]
    no = layer.n_out
    A = acts + off - n * no
    value = _sk_loss(loss, A, Y, s, n, no, S)
    for l in range(L):
        layer = &e.layers[l]
        sq += _sk_sumsq(e.params + layer.w_off, layer.n_in * layer.n_out)
    value += (0.5 * alpha) * sq / S
    # x / S is x * (1 / S), exactly, when S is a power of two (a batch of 32
    # rows without weights); otherwise the division stays
    pow2 = S > 0.0 and frexp(S, &ex) == 0.5 and ex > -1021
    inv = 1.0 / S
    for i in range(n * no):  # output delta (P - Y) * s, the canonical links
        d1[i] = A[i] - Y[i]
    if s != NULL:
        for i in range(n):
            for j in range(no):
                d1[i * no + j] *= s[i]
    for l in range(L - 1, -1, -1):
        layer = &e.layers[l]
        ni = layer.n_in
        no = layer.n_out
        off -= n * no
        inp = X if l == 0 else acts + off - n * ni
        W = e.params + layer.w_off
        gW = e.grads + layer.w_off
        gb = e.grads + layer.b_off
        act = e.layers[l - 1].act if l > 0 else ACT_IDENTITY
        # below a ReLU layer, scikit-learn's delta[A == 0] = 0 is the store's
        # gate A > 0 (A = relu(Z) is >= 0 and never NaN)
        kernels.dense_backward(inp, W, d1, gW, gb, d2 if l > 0 else NULL, n, ni, no,
                               e.scratch, e.scratch_cap, inp if act == ACT_RELU else NULL,
                               _sk_blas(n, ni, no))
        if pow2:
            for i in range(ni * no):
                gW[i] = (gW[i] + alpha * W[i]) * inv
            for j in range(no):
                gb[j] = gb[j] * inv
        else:
            for i in range(ni * no):
                gW[i] = (gW[i] + alpha * W[i]) / S
            for j in range(no):
                gb[j] = gb[j] / S
        if l > 0:
            A = <double*>inp
            m = n * ni
            if act == ACT_SIGMOID:
                for i in range(m):
                    d2[i] = d2[i] * A[i]
                    d2[i] = d2[i] * (1.0 - A[i])
            elif act == ACT_TANH:
                for i in range(m):
                    a = A[i]
                    d2[i] = d2[i] * (1.0 - a * a)
            tmp = d1
            d1 = d2
            d2 = tmp
    return value


cdef int _sk_update(Engine e, int kind, const double* h, double* state, double t) noexcept nogil:
    """scikit-learn's SGD (momentum, Nesterov) or Adam on every parameter;
    1 if a new parameter or state value is NaN or infinite, else 0."""
    cdef Py_ssize_t i, P = e.n_params
    cdef double* p = e.params
    cdef const double* g = e.grads
    cdef double lr = h[HYPER_LEARNING_RATE], mu, b1, b2, lr_t, u
    if kind == OPT_SGD:
        mu = h[HYPER_MOMENTUM]
        for i in range(P):
            u = mu * state[i] - lr * g[i]
            state[i] = u
            if h[HYPER_NESTEROV] != 0.0:
                u = mu * u - lr * g[i]
            p[i] += u
        return not (kernels.all_finite(p, P, False) and kernels.all_finite(state, P, False))
    # OPT_ADAM_SK: the adam_sk kernel of _simd.h, with the bias corrections in lr_t
    b1 = h[HYPER_BETA1]
    b2 = h[HYPER_BETA2]
    lr_t = lr * c_sqrt(1.0 - c_pow(b2, t)) / (1.0 - c_pow(b1, t))
    return kernels.cbp_simd.adam_sk(P, lr_t, b1, b2, h[HYPER_EPSILON], p, g, state, state + P)


def _sklearn_adam_update(double[::1] params, const double[::1] grads, double[::1] m,
                         double[::1] v, double lr_t, double beta_1, double beta_2,
                         double epsilon):
    """scikit-learn's Adam step in place: m := b1 m + (1 - b1) g, v := b2 v +
    (1 - b2) g**2, params += -lr_t m / (sqrt(v) + epsilon); True if all stay
    finite.  Private, for the tests; the twin is
    cbp._reference_sklearn.sklearn_adam_update."""
    cdef Py_ssize_t n = params.shape[0]
    _check(grads.shape[0] == n and m.shape[0] == n and v.shape[0] == n,
           "sklearn_adam_update: shape mismatch")
    cdef int bad = 0
    if n:
        with nogil:
            bad = kernels.cbp_simd.adam_sk(n, lr_t, beta_1, beta_2, epsilon, &params[0],
                                           &grads[0], &m[0], &v[0])
    return not bad


cdef object _sk_inputs(Engine e, X, Y, sw, int loss):
    """X (n, n_in), Y (n, n_out) C-contiguous float64, sw None or (n,) finite >= 0,
    the loss code, and a network of dense layers with biases, chained."""
    cdef Py_ssize_t l
    if not (isinstance(X, ndarray) and isinstance(Y, ndarray) and X.dtype == np.float64
            and Y.dtype == np.float64 and X.ndim == 2 and Y.ndim == 2
            and X.flags.c_contiguous and Y.flags.c_contiguous):
        raise ValueError("sklearn_epoch: X and Y must be C-contiguous 2-D float64 arrays")
    if X.shape[1] != e.n_in or Y.shape[1] != e.n_out or X.shape[0] != Y.shape[0] or X.shape[0] < 1:
        raise ValueError("sklearn_epoch: X is (%d, %d) and Y (%d, %d); the network takes %d "
                         "inputs and gives %d outputs" % (X.shape[0], X.shape[1], Y.shape[0],
                                                          Y.shape[1], e.n_in, e.n_out))
    if not (LOSS_SK_SQUARED <= loss <= LOSS_SK_POISSON):
        raise ValueError("sklearn_epoch: bad loss code %d" % loss)
    for l in range(e.n_layers):
        if e.layers[l].kind != KIND_DENSE or e.layers[l].b_off < 0:
            raise ValueError("sklearn_epoch: every layer must be dense with a bias")
        if l < e.n_layers - 1 and e.layers[l].act not in (
                ACT_IDENTITY, ACT_RELU, ACT_SIGMOID, ACT_TANH):
            raise ValueError("sklearn_epoch: hidden activations are identity, relu, "
                             "sigmoid or tanh")
    cdef const double[:, ::1] Xv = X
    cdef const double[:, ::1] Yv = Y
    cdef const double[::1] sv
    if not (kernels.all_finite(&Xv[0, 0], Xv.shape[0] * Xv.shape[1], False)
            and kernels.all_finite(&Yv[0, 0], Yv.shape[0] * Yv.shape[1], False)):
        raise ValueError("sklearn_epoch: X and Y must be finite")
    if sw is not None:
        sw = np.ascontiguousarray(sw, dtype=np.float64)
        if sw.shape != (X.shape[0],):
            raise ValueError("sklearn_epoch: sample weights must be (n,) finite and >= 0")
        sv = sw
        if not _sk_all_nonnegative(&sv[0], sv.shape[0]):
            raise ValueError("sklearn_epoch: sample weights must be (n,) finite and >= 0")
    return sw


cdef bint _sk_all_nonnegative(const double* v, Py_ssize_t m) noexcept nogil:
    """True if every v[i] is finite and >= 0 (checked in place: no temporaries)."""
    cdef Py_ssize_t i
    cdef double chk = 0.0
    for i in range(m):
        chk = chk if (v[i] >= 0.0 and v[i] - v[i] == 0.0) else 1.0
    return chk == 0.0


cdef bint _sk_all_indices(const long long* o, Py_ssize_t m, Py_ssize_t n) noexcept nogil:
    """True if every o[i] is in range(n)."""
    cdef Py_ssize_t i
    cdef long long bad = 0
    for i in range(m):
        bad |= (o[i] < 0) | (o[i] >= n)
    return bad == 0


cdef Py_ssize_t _sk_acts_size(Engine e, Py_ssize_t bs):
    """The size of the activations of every layer for bs rows, back to back."""
    cdef Py_ssize_t l, total = 0
    for l in range(e.n_layers):
        total += bs * e.layers[l].n_out
    return total


def _sklearn_loss_grad(Engine e, X, Y, sw, int loss, double alpha):
    sw = _sk_inputs(e, X, Y, sw, loss)
    cdef Py_ssize_t n = X.shape[0], n_acts = _sk_acts_size(e, n)
    cdef double[::1] work = np.empty(n_acts + 2 * n * e.width)
    cdef double* acts = &work[0]
    cdef const double[:, ::1] Xv = X
    cdef const double[:, ::1] Yv = Y
    cdef const double[::1] sv
    cdef const double* sp = NULL
    cdef double value
    if sw is not None:
        sv = sw
        sp = &sv[0]
    with nogil:
        value = _sk_batch(e, loss, alpha, &Xv[0, 0], &Yv[0, 0], sp, n, acts, acts + n_acts,
                          acts + n_acts + n * e.width)
    return value


cdef double _sk_gathered(Engine e, int loss, double alpha, const double* X, const double* Y,
                         const double* s, const long long* order, Py_ssize_t start,
                         Py_ssize_t nb, double* xb, double* yb, double* sb, double* acts,
                         double* d1, double* d2) noexcept nogil:
    """_sk_batch on the rows order[start:start + nb] of X, Y (and s, if not
    NULL), copied into xb, yb (and sb)."""
    cdef Py_ssize_t i, r, d = e.n_in, k = e.n_out
    for i in range(nb):
        r = order[start + i]
        memcpy(&xb[i * d], &X[r * d], d * sizeof(double))
        memcpy(&yb[i * k], &Y[r * k], k * sizeof(double))
        if s != NULL:
            sb[i] = s[r]
    return _sk_batch(e, loss, alpha, xb, yb, sb if s != NULL else NULL, nb, acts, d1, d2)


def _sklearn_epoch(Engine e, X, Y, sw, order, Py_ssize_t batch_size, int loss, double alpha,
                   int kind, hyper, state, double t):
    sw = _sk_inputs(e, X, Y, sw, loss)
    cdef Py_ssize_t n = X.shape[0], d = e.n_in, k = e.n_out, P = e.n_params
    cdef Py_ssize_t slots = 1 if kind == OPT_SGD else 2
    if kind != OPT_SGD and kind != OPT_ADAM_SK:
        raise ValueError("sklearn_epoch: the optimizer is OPT_SGD or OPT_ADAM_SK")
    if batch_size < 1:
        raise ValueError("sklearn_epoch: batch_size must be >= 1")
    batch_size = min(batch_size, n)
    hyper = np.ascontiguousarray(hyper, dtype=np.float64)
    cdef const double[::1] hv
    if hyper.shape == (N_OPTIMIZER_HYPER,):
        hv = hyper
    if hyper.shape != (N_OPTIMIZER_HYPER,) or not kernels.all_finite(&hv[0], hv.shape[0], False):
        raise ValueError("sklearn_epoch: hyper must be (N_OPTIMIZER_HYPER,) finite float64")
    if not (isinstance(state, ndarray) and state.dtype == np.float64
            and state.flags.c_contiguous and state.shape == (slots * P,)):
        raise ValueError("sklearn_epoch: state must be a C-contiguous float64 array of %d"
                         % (slots * P))
    cdef const long long[::1] ov
    if order is not None:
        order = np.ascontiguousarray(order, dtype=np.int64)
        if order.shape == (n,):
            ov = order
        if order.shape != (n,) or not _sk_all_indices(&ov[0], n, n):
            raise ValueError("sklearn_epoch: order must be (n,) indices in range(n)")
    else:
        ov = np.arange(n, dtype=np.int64)
    # one work buffer: activations, two deltas, the gathered batch, the snapshot
    cdef Py_ssize_t n_acts = _sk_acts_size(e, batch_size), wd = batch_size * e.width
    cdef double[::1] work = np.empty(n_acts + 2 * wd + batch_size * (d + k + 1)
                                     + (1 + slots) * P)
    cdef double* acts = &work[0]
    cdef double* d1 = acts + n_acts
    cdef double* d2 = d1 + wd
    cdef double* xb = d2 + wd
    cdef double* yb = xb + batch_size * d
    cdef double* sb = yb + batch_size * k
    cdef double* snap = sb + batch_size
    cdef double[::1] st = state
    cdef const double[:, ::1] Xv = X
    cdef const double[:, ::1] Yv = Y
    cdef const double[::1] sv
    cdef const double* sp = NULL
    cdef double total = 0.0, value = 0.0, t0
    cdef Py_ssize_t start = 0, nb, i, r
    cdef int status = 0
    if sw is not None:
        sv = sw
        sp = &sv[0]
    with nogil:
        # one snapshot an epoch: a rollback replays the batches before the
        # failing one from it, through the same arithmetic, so it lands on the
        # very values that batch started from
        memcpy(snap, e.params, P * sizeof(double))
        memcpy(snap + P, &st[0], slots * P * sizeof(double))
        t0 = t
        while start < n:
            nb = min(batch_size, n - start)
            value = _sk_gathered(e, loss, alpha, &Xv[0, 0], &Yv[0, 0], sp, &ov[0], start, nb,
                                 xb, yb, sb, acts, d1, d2)
            if not isfinite(value):
                status = 1
                break
            t += 1.0
            if _sk_update(e, kind, &hv[0], &st[0], t):
                status = 2
                break
            total += value * nb
            start += nb
        if status == 2:
            memcpy(e.params, snap, P * sizeof(double))
            memcpy(&st[0], snap + P, slots * P * sizeof(double))
            t = t0
            r = 0
            while r < start:
                i = min(batch_size, n - r)
                _sk_gathered(e, loss, alpha, &Xv[0, 0], &Yv[0, 0], sp, &ov[0], r, i, xb,
                             yb, sb, acts, d1, d2)
                t += 1.0
                _sk_update(e, kind, &hv[0], &st[0], t)
                r += i
            # the failing batch's gradients, as its step found them
            _sk_gathered(e, loss, alpha, &Xv[0, 0], &Yv[0, 0], sp, &ov[0], start, nb, xb,
                         yb, sb, acts, d1, d2)
    if status == 1:
        raise DivergenceError(
            "training diverged: a batch loss was NaN or infinite (rows %d to %d of the "
            "epoch); the parameters were left at their last finite values"
            % (start, start + nb))
    if status == 2:
        raise DivergenceError(
            "training diverged: the update made a parameter NaN or infinite; "
            "the parameters were left at their last finite values")
    return total, t
