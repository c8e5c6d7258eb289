# cython: language_level=3
"""The native core of cbp.

``def`` functions here are thin wrappers over the ``noexcept nogil`` kernels
of ``_kernels.pxd``: each has the same signature as its NumPy twin in
``cbp/_reference.py``, and exists so that the two can be compared.  The
``Engine`` class runs whole forward / backward / update passes over a network
without touching Python objects between layers.

Nothing here validates user input: ``cbp.network`` does that before calling.
The memoryview signatures still reject wrong dtypes, dimensions and memory
layouts with a ``ValueError``/``TypeError``, never a crash.
"""
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.math cimport isfinite
from libc.string cimport memcpy

import numpy as np

from cbp._errors import DivergenceError

from _kernels cimport *


# ---------------------------------------------------------------------------
# Kernel wrappers (the twin's signatures)
# ---------------------------------------------------------------------------
def _check(bint ok, str what):
    if not ok:
        raise ValueError(what)


def dense_forward(const double[:, ::1] X, const double[:, ::1] W,
                  const double[::1] b, double[:, ::1] out):
    """out := X @ W + b.  X (n, i), W (i, j), b (j,) or None, out (n, j)."""
    cdef Py_ssize_t n = X.shape[0], ni = X.shape[1], no = W.shape[1]
    _check(W.shape[0] == ni and out.shape[0] == n and out.shape[1] == no
           and (b is None or b.shape[0] == no), "dense_forward: shape mismatch")
    cdef const double* bp = &b[0] if b is not None and no > 0 else NULL
    if n == 0 or no == 0:
        return out.base
    with nogil:
        dense_forward_k(&X[0, 0] if ni else NULL, &W[0, 0] if ni else NULL, bp,
                        &out[0, 0], n, ni, no)
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
    with nogil:
        dense_backward_k(&X[0, 0], &W[0, 0], &dZ[0, 0], &dW[0, 0], dbp, dXp, n, ni, no)


def activation_forward(int act, const double[:, ::1] Z, double[:, ::1] out,
                       double alpha=0.0):
    """out := f(Z), elementwise (row-wise for softmax).  Z, out (n, j)."""
    _check(0 <= act <= ACT_SOFTMAX, f"unknown activation code {act}")
    _check(Z.shape[0] == out.shape[0] and Z.shape[1] == out.shape[1],
           "activation_forward: shape mismatch")
    if Z.shape[0] and Z.shape[1]:
        with nogil:
            activation_forward_k(act, &Z[0, 0], &out[0, 0], Z.shape[0], Z.shape[1], alpha)
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
            activation_backward_k(act, &Z[0, 0], &A[0, 0], &dA[0, 0], &out[0, 0],
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
    return loss_value_k(loss, &P[0, 0], &Y[0, 0], P.shape[0], P.shape[1], reduction)


def loss_gradient(int loss, const double[:, ::1] P, const double[:, ::1] Y,
                  double[:, ::1] out, int reduction):
    """out := dL/dP; returns the loss."""
    _check_loss(loss, reduction, P, Y)
    _check(out.shape[0] == P.shape[0] and out.shape[1] == P.shape[1],
           "loss_gradient: shape mismatch")
    return loss_gradient_k(loss, &P[0, 0], &Y[0, 0], &out[0, 0], P.shape[0],
                           P.shape[1], reduction)


def output_delta(int act, int loss, const double[:, ::1] Z, const double[:, ::1] A,
                 const double[:, ::1] Y, double[:, ::1] out, int reduction,
                 double alpha=0.0):
    """out := dL/dZ of the output layer (fused where it applies); returns the loss."""
    _check(0 <= act <= ACT_SOFTMAX, f"unknown activation code {act}")
    _check_loss(loss, reduction, A, Y)
    _check(Z.shape[0] == A.shape[0] and Z.shape[1] == A.shape[1]
           and out.shape[0] == A.shape[0] and out.shape[1] == A.shape[1],
           "output_delta: shape mismatch")
    return output_delta_k(act, loss, &Z[0, 0], &A[0, 0], &Y[0, 0], &out[0, 0],
                          A.shape[0], A.shape[1], reduction, alpha)


def penalty(const double[::1] V, double l1, double l2):
    """l1 * sum(|V|) + l2 * sum(V**2)."""
    if V.shape[0] == 0:
        return 0.0
    return penalty_k(&V[0], V.shape[0], l1, l2)


def add_penalty_gradient(const double[::1] V, double[::1] dV, double l1, double l2):
    """dV += l1 * sign(V) + 2 * l2 * V."""
    _check(V.shape[0] == dV.shape[0], "add_penalty_gradient: shape mismatch")
    if V.shape[0]:
        add_penalty_gradient_k(&V[0], &dV[0], V.shape[0], l1, l2)


def sgd_update(double[::1] params, const double[::1] grads, double lr):
    """params -= lr * grads, in place."""
    _check(params.shape[0] == grads.shape[0], "sgd_update: shape mismatch")
    if params.shape[0]:
        with nogil:
            sgd_update_k(&params[0], &grads[0], params.shape[0], lr)
    return params.base


# ---------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------
cdef struct Layer:
    int kind
    int act
    int trainable
    Py_ssize_t n_in
    Py_ssize_t n_out
    Py_ssize_t w_off
    Py_ssize_t b_off
    double alpha
    double wl1
    double wl2
    double bl1
    double bl2
    double rate
    # offsets of this layer's Z, A and delta in the workspace
    Py_ssize_t z
    Py_ssize_t a
    Py_ssize_t d


cdef class Engine:
    """Forward, backward and update over a flat parameter buffer.

    Same constructor and methods as ``cbp._reference.Engine``; see there.
    """
    cdef Layer* layers
    cdef Py_ssize_t n_layers
    cdef Py_ssize_t n_in
    cdef Py_ssize_t n_out
    cdef double[::1] _params
    cdef double[::1] _grads
    cdef double* params
    cdef double* grads
    cdef readonly int loss
    cdef readonly int reduction
    cdef object _work          # float64 ndarray backing the workspace
    cdef double* work
    cdef Py_ssize_t batch      # batch size the workspace is laid out for
    cdef bint have_cache       # a forward() has filled the workspace

    def __cinit__(self):
        self.layers = NULL

    def __init__(self, meta, hyper, double[::1] params, double[::1] grads,
                 int loss, int reduction):
        cdef long long[:, ::1] m = np.ascontiguousarray(meta, dtype=np.int64)
        cdef double[:, ::1] h = np.ascontiguousarray(hyper, dtype=np.float64)
        cdef Py_ssize_t l, L = m.shape[0]
        _check(L > 0 and m.shape[1] == 7 and h.shape[0] == L and h.shape[1] == 6,
               "Engine: bad layer table")
        _check(params.shape[0] == grads.shape[0], "Engine: params/grads size mismatch")
        _check(0 <= loss <= LOSS_BCE and (reduction == RED_MEAN or reduction == RED_SUM),
               "Engine: bad loss or reduction code")
        self.layers = <Layer*>PyMem_Malloc(L * sizeof(Layer))
        if self.layers == NULL:
            raise MemoryError()
        self.n_layers = L
        for l in range(L):
            self.layers[l].kind = <int>m[l, 0]
            self.layers[l].n_in = m[l, 1]
            self.layers[l].n_out = m[l, 2]
            self.layers[l].act = <int>m[l, 3]
            self.layers[l].w_off = m[l, 4]
            self.layers[l].b_off = m[l, 5]
            self.layers[l].trainable = <int>m[l, 6]
            self.layers[l].alpha = h[l, 0]
            self.layers[l].wl1 = h[l, 1]
            self.layers[l].wl2 = h[l, 2]
            self.layers[l].bl1 = h[l, 3]
            self.layers[l].bl2 = h[l, 4]
            self.layers[l].rate = h[l, 5]
            _check(0 <= self.layers[l].act <= ACT_SOFTMAX, "Engine: bad activation code")
            _check(self.layers[l].n_in > 0 and self.layers[l].n_out > 0
                   and self.layers[l].w_off >= 0
                   and self.layers[l].w_off + self.layers[l].n_in * self.layers[l].n_out
                   <= params.shape[0]
                   and self.layers[l].b_off + self.layers[l].n_out <= params.shape[0]
                   and (l == 0 or self.layers[l].n_in == self.layers[l - 1].n_out),
                   "Engine: layer table does not fit the parameter buffer")
        self.n_in = self.layers[0].n_in
        self.n_out = self.layers[L - 1].n_out
        self._params = params
        self._grads = grads
        self.params = &params[0]
        self.grads = &grads[0]
        self.loss = loss
        self.reduction = reduction
        self.batch = 0
        self.have_cache = False

    def __dealloc__(self):
        PyMem_Free(self.layers)

    # -- workspace ----------------------------------------------------------
    cdef int _layout(self, Py_ssize_t n) except -1:
        """Lay the workspace out for batch size n: [X | Z A D per layer]."""
        cdef Py_ssize_t l, off
        if n == self.batch:
            return 0
        off = n * self.n_in
        for l in range(self.n_layers):
            self.layers[l].z = off
            self.layers[l].a = off + n * self.layers[l].n_out
            self.layers[l].d = off + 2 * n * self.layers[l].n_out
            off += 3 * n * self.layers[l].n_out
        if self._work is None or self._work.shape[0] < off:
            self._work = np.empty(off, dtype=np.float64)
        cdef double[::1] w = self._work
        self.work = &w[0]
        self.batch = n
        return 0

    # -- passes (nogil) -----------------------------------------------------
    cdef void _forward(self, Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t l
        cdef Layer* L
        cdef const double* x = self.work
        for l in range(self.n_layers):
            L = &self.layers[l]
            dense_forward_k(x, self.params + L.w_off,
                            self.params + L.b_off if L.b_off >= 0 else NULL,
                            self.work + L.z, n, L.n_in, L.n_out)
            activation_forward_k(L.act, self.work + L.z, self.work + L.a, n, L.n_out,
                                 L.alpha)
            x = self.work + L.a

    cdef double _backward(self, const double* Y, Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t l
        cdef Layer* L = &self.layers[self.n_layers - 1]
        cdef Layer* P
        cdef double value
        cdef const double* x
        value = output_delta_k(L.act, self.loss, self.work + L.z, self.work + L.a, Y,
                               self.work + L.d, n, L.n_out, self.reduction, L.alpha)
        for l in range(self.n_layers - 1, -1, -1):
            L = &self.layers[l]
            x = self.work if l == 0 else self.work + self.layers[l - 1].a
            dense_backward_k(x, self.params + L.w_off, self.work + L.d,
                             self.grads + L.w_off,
                             self.grads + L.b_off if L.b_off >= 0 else NULL,
                             self.work + self.layers[l - 1].d if l > 0 else NULL,
                             n, L.n_in, L.n_out)
            if l > 0:
                P = &self.layers[l - 1]
                activation_backward_k(P.act, self.work + P.z, self.work + P.a,
                                      self.work + P.d, self.work + P.d, n, P.n_out,
                                      P.alpha)
        # L1/L2 penalties, nnfs semantics
        for l in range(self.n_layers):
            L = &self.layers[l]
            value += penalty_k(self.params + L.w_off, L.n_in * L.n_out, L.wl1, L.wl2)
            add_penalty_gradient_k(self.params + L.w_off, self.grads + L.w_off,
                                   L.n_in * L.n_out, L.wl1, L.wl2)
            if L.b_off >= 0:
                value += penalty_k(self.params + L.b_off, L.n_out, L.bl1, L.bl2)
                add_penalty_gradient_k(self.params + L.b_off, self.grads + L.b_off,
                                       L.n_out, L.bl1, L.bl2)
        return value

    cdef bint _sgd_ok(self, double lr) noexcept nogil:
        """True if params - lr * grads is finite over every trainable layer."""
        cdef Py_ssize_t l, i, m
        cdef Layer* L
        for l in range(self.n_layers):
            L = &self.layers[l]
            if not L.trainable:
                continue
            m = L.n_in * L.n_out
            for i in range(L.w_off, L.w_off + m):
                if not isfinite(self.params[i] - lr * self.grads[i]):
                    return False
            if L.b_off >= 0:
                for i in range(L.b_off, L.b_off + L.n_out):
                    if not isfinite(self.params[i] - lr * self.grads[i]):
                        return False
        return True

    cdef void _sgd(self, double lr) noexcept nogil:
        cdef Py_ssize_t l
        cdef Layer* L
        for l in range(self.n_layers):
            L = &self.layers[l]
            if L.trainable:
                sgd_update_k(self.params + L.w_off, self.grads + L.w_off,
                             L.n_in * L.n_out, lr)
                if L.b_off >= 0:
                    sgd_update_k(self.params + L.b_off, self.grads + L.b_off,
                                 L.n_out, lr)

    # -- Python entry points -------------------------------------------------
    cdef Py_ssize_t _load_x(self, const double[:, ::1] X) except -1:
        cdef Py_ssize_t n = X.shape[0]
        _check(n > 0 and X.shape[1] == self.n_in, "Engine: X has the wrong shape")
        self._layout(n)
        memcpy(self.work, &X[0, 0], n * self.n_in * sizeof(double))
        return n

    def forward(self, const double[:, ::1] X):
        """Run X (n, n_in) through the network; keep what backward needs."""
        cdef Py_ssize_t n = self._load_x(X)
        with nogil:
            self._forward(n)
        self.have_cache = True
        cdef Layer* L = &self.layers[self.n_layers - 1]
        return self._work[L.a:L.a + n * L.n_out].reshape(n, L.n_out)

    def predict(self, const double[:, ::1] X):
        """The output for X as a new array; the backward cache is untouched."""
        cdef Py_ssize_t n = X.shape[0], l, width = 0
        _check(n > 0 and X.shape[1] == self.n_in, "Engine: X has the wrong shape")
        for l in range(self.n_layers):
            width = max(width, self.layers[l].n_out)
        cdef double[::1] buf = np.empty(2 * n * width, dtype=np.float64)
        cdef double* cur
        cdef const double* x = &X[0, 0]
        cdef Layer* L
        with nogil:
            for l in range(self.n_layers):
                L = &self.layers[l]
                cur = &buf[0] + (l % 2) * n * width
                dense_forward_k(x, self.params + L.w_off,
                                self.params + L.b_off if L.b_off >= 0 else NULL,
                                cur, n, L.n_in, L.n_out)
                activation_forward_k(L.act, cur, cur, n, L.n_out, L.alpha)
                x = cur
        l = (self.n_layers - 1) % 2
        return np.asarray(buf)[l * n * width:l * n * width + n * self.n_out].reshape(
            n, self.n_out).copy()

    def backward(self, const double[:, ::1] Y):
        """Fill the gradient buffer for target Y (n, n_out); return the loss."""
        if not self.have_cache:
            raise RuntimeError("backward() needs a forward() first")
        _check(Y.shape[0] == self.batch and Y.shape[1] == self.n_out,
               "Engine: Y has the wrong shape")
        cdef double value
        with nogil:
            value = self._backward(&Y[0, 0], self.batch)
        return value

    def sgd_step(self, double lr):
        """params -= lr * grads over the trainable layers.

        Raises DivergenceError, and leaves the parameters as they were, if the
        update would make any of them NaN or infinite.
        """
        cdef bint ok
        with nogil:
            ok = self._sgd_ok(lr)
            if ok:
                self._sgd(lr)
        if not ok:
            raise DivergenceError(
                "the update would make a parameter NaN or infinite; "
                "the parameters were left at their last finite values")

    def train_step(self, const double[:, ::1] X, const double[:, ::1] Y, double lr):
        """forward, backward and sgd_step in one call; the loss before the update."""
        cdef Py_ssize_t n = self._load_x(X)
        _check(Y.shape[0] == n and Y.shape[1] == self.n_out,
               "Engine: Y has the wrong shape")
        cdef double value
        cdef bint ok
        with nogil:
            self._forward(n)
            value = self._backward(&Y[0, 0], n)
            ok = isfinite(value) and self._sgd_ok(lr)
            if ok:
                self._sgd(lr)
        self.have_cache = True
        if not ok:
            raise DivergenceError(
                f"training diverged: the loss is {value!r} or the update would make a "
                "parameter NaN or infinite; the parameters were left at their last "
                "finite values")
        return value
