# Included by _core.pyx.  The Python wrappers of the kernels of _kernels.pxd,
# each with the signature of its NumPy twin in cbp/_reference_kernels.py.

cdef inline int _check(bint ok, str what) except -1:
    if not ok:
        raise ValueError(what)
    return 0


def dense_forward(const double[:, ::1] X, const double[:, ::1] W,
                  const double[::1] b, double[:, ::1] out):
    """out := X @ W + b.  X (n, i), W (i, j), b (j,) or None, out (n, j)."""
    cdef Py_ssize_t n = X.shape[0], ni = X.shape[1], no = W.shape[1]
    _check(W.shape[0] == ni and out.shape[0] == n and out.shape[1] == no
           and (b is None or b.shape[0] == no), "dense_forward: shape mismatch")
    cdef const double* bp = &b[0] if b is not None and no > 0 else NULL
    if n == 0 or no == 0:
        return out.base
    cdef double[::1] scratch = np.empty(max(ni * no, 1))
    with nogil:
        kernels.dense_forward(&X[0, 0] if ni else NULL, &W[0, 0] if ni else NULL, bp,
                              &out[0, 0], n, ni, no, &scratch[0], ni * no)
    return out.base


def dense_backward(const double[:, ::1] X, const double[:, ::1] W,
                   const double[:, ::1] dZ, double[:, ::1] dW, double[::1] db,
                   double[:, ::1] dX):
    """dW := X.T @ dZ, db := sum(dZ, axis=0), dX := dZ @ W.T (db, dX optional)."""
    cdef Py_ssize_t n = X.shape[0], ni = X.shape[1], no = W.shape[1]
    _check(W.shape[0] == ni and dZ.shape[0] == n and dZ.shape[1] == no
           and dW.shape[0] == ni and dW.shape[1] == no
           and (db is None or db.shape[0] == no)
           and (dX is None or (dX.shape[0] == n and dX.shape[1] == ni)),
           "dense_backward: shape mismatch")
    _check(n > 0 and ni > 0 and no > 0, "dense_backward: empty array")
    cdef double* dbp = &db[0] if db is not None else NULL
    cdef double* dXp = &dX[0, 0] if dX is not None else NULL
    cdef double[::1] scratch = np.empty(ni * no)
    with nogil:
        kernels.dense_backward(&X[0, 0], &W[0, 0], &dZ[0, 0], &dW[0, 0], dbp, dXp, n, ni, no,
                               &scratch[0], ni * no)


cdef int _feature_major_code(int act, str who) except -1:
    if act == ACT_IDENTITY:
        return FEATURE_MAJOR_NONE
    if act == ACT_RELU:
        return FEATURE_MAJOR_RELU
    if act == ACT_SIGMOID:
        return FEATURE_MAJOR_SIGMOID
    raise ValueError(f"{who}: activation code {act} is not identity, relu or sigmoid")


def dense_forward_feature_major(const double[:, ::1] XT, const double[:, ::1] W,
                                const double[::1] b, double[:, ::1] out, int act):
    """out := f(W.T @ XT + b[:, None]), feature-major: XT (i, m), W (i, j),
    b (j,) or None, out (j, m), m a positive multiple of 4; f is the
    identity, relu or sigmoid (activation codes)."""
    cdef Py_ssize_t ni = XT.shape[0], m = XT.shape[1], no = W.shape[1]
    cdef int fa = _feature_major_code(act, "dense_forward_feature_major")
    _check(W.shape[0] == ni and out.shape[0] == no and out.shape[1] == m
           and (b is None or b.shape[0] == no), "dense_forward_feature_major: shape mismatch")
    _check(ni > 0 and no > 0 and m > 0 and m % 4 == 0,
           "dense_forward_feature_major: needs i, j > 0 and m a positive multiple of 4")
    cdef const double* bp = &b[0] if b is not None else NULL
    with nogil:
        cbp_simd.feature_major_forward(m, ni, no, &XT[0, 0], &W[0, 0], bp, &out[0, 0], fa)
    return out.base


def dense_backward_feature_major(const double[:, ::1] XT, const double[:, ::1] W,
                                 const double[:, ::1] dT, const double[:, ::1] A, int act,
                                 double[:, ::1] dW, double[::1] db, double[:, ::1] dXT):
    """dW := XT @ dT.T, db := sum(dT, axis=1), dXT := (W @ dT) * f'(Z) from
    A = f(Z) (db, dXT optional; A is read for relu and sigmoid), feature-major:
    XT, A, dXT (i, m), W, dW (i, j), dT (j, m), m a positive multiple of 4."""
    cdef Py_ssize_t ni = XT.shape[0], m = XT.shape[1], no = W.shape[1]
    cdef int fa = _feature_major_code(act, "dense_backward_feature_major")
    _check(W.shape[0] == ni and dT.shape[0] == no and dT.shape[1] == m
           and dW.shape[0] == ni and dW.shape[1] == no
           and (db is None or db.shape[0] == no)
           and (dXT is None or (dXT.shape[0] == ni and dXT.shape[1] == m))
           and (dXT is None or fa == FEATURE_MAJOR_NONE
                or (A is not None and A.shape[0] == ni and A.shape[1] == m)),
           "dense_backward_feature_major: shape mismatch")
    _check(ni > 0 and no > 0 and m > 0 and m % 4 == 0,
           "dense_backward_feature_major: needs i, j > 0 and m a positive multiple of 4")
    cdef double* dbp = &db[0] if db is not None else NULL
    cdef double* dxp = &dXT[0, 0] if dXT is not None else NULL
    cdef const double* ap = &A[0, 0] if A is not None and fa != FEATURE_MAJOR_NONE else NULL
    with nogil:
        cbp_simd.feature_major_backward(m, ni, no, &XT[0, 0], &dT[0, 0], &W[0, 0], &dW[0, 0], dbp,
                                        dxp, ap, fa)


def activation_forward(int act, const double[:, ::1] Z, double[:, ::1] out,
                       double alpha=0.0):
    """out := f(Z), elementwise (row-wise for softmax).  Z, out (n, j)."""
    _check(0 <= act <= ACT_SOFTMAX, f"unknown activation code {act}")
    _check(Z.shape[0] == out.shape[0] and Z.shape[1] == out.shape[1],
           "activation_forward: shape mismatch")
    if Z.shape[0] and Z.shape[1]:
        with nogil:
            kernels.activation_forward(act, &Z[0, 0], &out[0, 0], Z.shape[0], Z.shape[1], alpha)
    return out.base


def activation_backward(int act, const double[:, ::1] Z, const double[:, ::1] A,
                        const double[:, ::1] dA, double[:, ::1] out, double alpha=0.0):
    """out := dL/dZ given dA = dL/dA, Z and A = f(Z).  All (n, j)."""
    _check(0 <= act <= ACT_SOFTMAX, f"unknown activation code {act}")
    cdef Py_ssize_t n = Z.shape[0], no = Z.shape[1]
    _check(A.shape[0] == n and dA.shape[0] == n and out.shape[0] == n
           and A.shape[1] == no and dA.shape[1] == no and out.shape[1] == no,
           "activation_backward: shape mismatch")
    if n and no:
        with nogil:
            kernels.activation_backward(act, &Z[0, 0], &A[0, 0], &dA[0, 0], &out[0, 0],
                                        n, no, alpha)
    return out.base


def _check_loss(int loss, int reduction, const double[:, ::1] P,
                const double[:, ::1] Y):
    _check(0 <= loss <= LOSS_BCE, f"unknown loss code {loss}")
    _check(reduction == RED_MEAN or reduction == RED_SUM,
           f"unknown reduction code {reduction}")
    _check(P.shape[0] == Y.shape[0] and P.shape[1] == Y.shape[1], "loss: shape mismatch")
    _check(P.shape[0] > 0 and P.shape[1] > 0, "loss: empty batch")


def loss_value(int loss, const double[:, ::1] P, const double[:, ::1] Y, int reduction):
    """The loss of prediction P against target Y, reduced by mean or sum."""
    _check_loss(loss, reduction, P, Y)
    return kernels.loss_value(loss, &P[0, 0], &Y[0, 0], P.shape[0], P.shape[1], reduction,
                              P.shape[0])


def loss_gradient(int loss, const double[:, ::1] P, const double[:, ::1] Y,
                  double[:, ::1] out, int reduction):
    """out := dL/dP; returns the loss."""
    _check_loss(loss, reduction, P, Y)
    _check(out.shape[0] == P.shape[0] and out.shape[1] == P.shape[1],
           "loss_gradient: shape mismatch")
    return kernels.loss_gradient(loss, &P[0, 0], &Y[0, 0], &out[0, 0], P.shape[0],
                                 P.shape[1], reduction, P.shape[0])


def output_delta(int act, int loss, const double[:, ::1] Z, const double[:, ::1] A,
                 const double[:, ::1] Y, double[:, ::1] out, int reduction,
                 double alpha=0.0):
    """out := dL/dZ of the output layer (fused where it applies); returns the loss."""
    _check(0 <= act <= ACT_SOFTMAX, f"unknown activation code {act}")
    _check_loss(loss, reduction, A, Y)
    _check(Z.shape[0] == A.shape[0] and Z.shape[1] == A.shape[1]
           and out.shape[0] == A.shape[0] and out.shape[1] == A.shape[1],
           "output_delta: shape mismatch")
    return kernels.output_delta(act, loss, &Z[0, 0], &A[0, 0], &Y[0, 0], &out[0, 0],
                                A.shape[0], A.shape[1], reduction, alpha, A.shape[0])


def penalty(const double[::1] V, double l1, double l2):
    """l1 * sum(|V|) + l2 * sum(V**2)."""
    if V.shape[0] == 0:
        return 0.0
    return kernels.penalty(&V[0], V.shape[0], l1, l2)


def add_penalty_gradient(const double[::1] V, double[::1] dV, double l1, double l2):
    """dV += l1 * sign(V) + 2 * l2 * V."""
    _check(V.shape[0] == dV.shape[0], "add_penalty_gradient: shape mismatch")
    if V.shape[0]:
        kernels.add_penalty_gradient(&V[0], &dV[0], V.shape[0], l1, l2)


def sgd_update(double[::1] params, const double[::1] grads, double lr):
    """params -= lr * grads, in place."""
    _check(params.shape[0] == grads.shape[0], "sgd_update: shape mismatch")
    if params.shape[0]:
        with nogil:
            kernels.sgd_update(&params[0], &grads[0], params.shape[0], lr)
    return params.base


def optimizer_update(int kind, const double[::1] hyper, double[::1] params,
                     const double[::1] grads, double[:, ::1] state, double t):
    """One optimizer step on a flat segment, in place (nnfs semantics)."""
    cdef Py_ssize_t m = params.shape[0]
    _check(0 <= kind <= OPT_ADAM, f"unknown optimizer code {kind}")
    _check(hyper.shape[0] == N_OPTIMIZER_HYPER and grads.shape[0] == m and state.shape[1] == m
           and state.shape[0] >= (2 if kind == OPT_ADAM else
                                  (1 if kind != OPT_SGD or hyper[HYPER_MOMENTUM] != 0.0 else 0)),
           "optimizer_update: shape mismatch")
    if m == 0:
        return params.base
    cdef double* s0 = &state[0, 0] if state.shape[0] > 0 else NULL
    cdef double* s1 = &state[1, 0] if state.shape[0] > 1 else NULL
    with nogil:
        kernels.optimizer_update(kind, &hyper[0], &params[0], &grads[0], s0, s1, m, t)
    return params.base
