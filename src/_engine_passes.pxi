# Included by _core.pyx.  The Engine's workspace and passes.

# -- workspace ----------------------------------------------------------
cdef int _layout(Engine self, Py_ssize_t n) except -1:
    """Lay the workspace out for up to n rows: [X | Y | Z A D per layer],
    then, if feature-major training is on for this network,
    [xT | zT aT dT per layer] of ld >= n lanes."""
    cdef Py_ssize_t l, off, ld
    cdef double[::1] w
    ld = ((n + 3) // 4 * 4 if 0 < self.fm_side <= _fm_width
          and _fm_rows_lo <= n <= _fm_rows_hi else 0)
    if n == self.batch and ld == self.ld:
        return 0
    off = n * self.n_in
    self.y_off = off
    off += n * self.n_out
    for l in range(self.n_layers):
        self.layers[l].z = off
        self.layers[l].a = off + n * self.layers[l].n_out
        self.layers[l].d = off + 2 * n * self.layers[l].n_out
        off += 3 * n * self.layers[l].n_out
    self.ld = ld
    self.xt_off = off
    off += ld * self.n_in
    for l in range(self.n_layers):
        self.layers[l].zt = off
        self.layers[l].at = off + ld * self.layers[l].n_out
        self.layers[l].dt = off + 2 * ld * self.layers[l].n_out
        off += 3 * ld * self.layers[l].n_out
    if self._work is None or self._work.shape[0] < off:
        self._work = np.empty(off, dtype=np.float64)
    w = self._work
    self.work = &w[0]
    self.batch = n
    self.rows = 0
    return 0

# -- passes (nogil) -----------------------------------------------------
cdef inline double* _zbuf(Engine self, Layer* L) noexcept nogil:
    """Where backward reads a layer's pre-activation Z from.  A ReLU
    dense layer stores only A = relu(Z) (fused into the product), and
    A > 0 exactly where Z > 0, which is all its derivative needs."""
    if L.kind == KIND_DENSE and L.act == ACT_RELU:
        return self.work + L.a
    return self.work + L.z

cdef inline void _forward(Engine self, const double* x, Py_ssize_t n, bint train,
                          uint64_t seed, uint64_t epoch, uint64_t row) noexcept nogil:
    """Forward n rows starting at x.  With ``train``, dropout layers draw
    their masks for (seed, epoch, first row)."""
    _forward_rows(self, x, n, train, seed, epoch, row, 0, self.scratch)

cdef void _forward_rows(Engine self, const double* x, Py_ssize_t n, bint train, uint64_t seed,
                        uint64_t epoch, uint64_t row, Py_ssize_t r0,
                        double* scratch) noexcept nogil:
    """_forward of n rows into rows r0 .. r0 + n of the workspace, with
    this thread's ``scratch``; ``row`` is the first row's number in the
    epoch (dropout's draws are keyed by it)."""
    cdef Py_ssize_t l, i, m
    cdef Layer* L
    cdef double* z
    cdef double* a
    for l in range(self.n_layers):
        L = &self.layers[l]
        z = self.work + L.z + r0 * L.n_out
        a = self.work + L.a + r0 * L.n_out
        m = n * L.n_out
        if L.kind == KIND_DROPOUT:
            if train:
                dropout_mask_k(seed, 2 * (epoch * self.n_layers + l) + 1,
                               row * L.n_out, L.rate, z, m)
                for i in range(m):
                    a[i] = x[i] * z[i]
            else:
                for i in range(m):
                    z[i] = 1.0
                memcpy(a, x, m * sizeof(double))
        elif L.act == ACT_RELU:
            dense_forward_k(x, self.params + L.w_off,
                            self.params + L.b_off if L.b_off >= 0 else NULL,
                            a, n, L.n_in, L.n_out, scratch, self.scratch_cap, True)
        else:
            dense_forward_k(x, self.params + L.w_off,
                            self.params + L.b_off if L.b_off >= 0 else NULL,
                            z, n, L.n_in, L.n_out, scratch, self.scratch_cap)
            activation_forward_k(L.act, z, a, n, L.n_out, L.alpha)
        x = a

cdef double _penalties(Engine self) noexcept nogil:
    cdef Py_ssize_t l
    cdef Layer* L
    cdef double value = 0.0
    if not self.penalised:
        return 0.0
    for l in range(self.n_layers):
        L = &self.layers[l]
        if L.kind != KIND_DENSE:
            continue
        value += penalty_k(self.params + L.w_off, L.n_in * L.n_out, L.wl1, L.wl2)
        if L.b_off >= 0:
            value += penalty_k(self.params + L.b_off, L.n_out, L.bl1, L.bl2)
    return value

cdef inline double _backward(Engine self, const double* X, const double* Y,
                             Py_ssize_t n) noexcept nogil:
    """Backpropagate from target Y; X is the input of the forward pass."""
    return (_backward_rows(self, X, Y, n, 0, self.grads, self.scratch, n)
            + _penalty_grads(self))

cdef double _backward_rows(Engine self, const double* X, const double* Y, Py_ssize_t n,
                           Py_ssize_t r0, double* grads, double* scratch,
                           Py_ssize_t nscale) noexcept nogil:
    """_backward of the n rows at r0 of the workspace (X and Y are those
    rows' own), the gradients into ``grads`` (laid out as self.grads),
    without the penalties, as rows of a batch of nscale rows (n, or more
    for a chunk; see loss_value_k).  Returns their loss."""
    cdef Py_ssize_t l, i, lo, po
    cdef Layer* L = &self.layers[self.n_layers - 1]
    cdef Layer* P
    cdef double value
    cdef const double* x
    cdef const double* gate
    cdef double* dx
    lo = r0 * L.n_out
    value = output_delta_k(L.act, self.loss, _zbuf(self, L) + lo, self.work + L.a + lo, Y,
                           self.work + L.d + lo, n, L.n_out, self.reduction, L.alpha,
                           nscale)
    for l in range(self.n_layers - 1, -1, -1):
        L = &self.layers[l]
        P = &self.layers[l - 1] if l > 0 else NULL
        lo = r0 * L.n_out
        po = r0 * P.n_out if P != NULL else 0
        dx = self.work + P.d + po if P != NULL else NULL
        # the ReLU mask of a dense layer below is fused into dX's store
        gate = (self.work + P.a + po if P != NULL and P.kind == KIND_DENSE
                and P.act == ACT_RELU and L.kind == KIND_DENSE else NULL)
        if L.kind == KIND_DROPOUT:
            if dx != NULL:
                for i in range(n * L.n_out):
                    dx[i] = self.work[L.d + lo + i] * self.work[L.z + lo + i]
        else:
            x = X if l == 0 else self.work + P.a + po
            dense_backward_k(x, self.params + L.w_off, self.work + L.d + lo,
                             grads + L.w_off,
                             grads + L.b_off if L.b_off >= 0 else NULL,
                             dx, n, L.n_in, L.n_out, scratch, self.scratch_cap,
                             gate)
        if P != NULL and gate == NULL:
            activation_backward_k(P.act, _zbuf(self, P) + po, self.work + P.a + po, dx, dx,
                                  n, P.n_out, P.alpha)
    return value

cdef double _penalty_grads(Engine self) noexcept nogil:
    """Add the L1/L2 penalty gradients (nnfs semantics); return the penalty."""
    cdef Py_ssize_t l
    cdef Layer* L
    if not self.penalised:
        return 0.0
    for l in range(self.n_layers):
        L = &self.layers[l]
        if L.kind != KIND_DENSE:
            continue
        add_penalty_gradient_k(self.params + L.w_off, self.grads + L.w_off,
                               L.n_in * L.n_out, L.wl1, L.wl2)
        if L.b_off >= 0:
            add_penalty_gradient_k(self.params + L.b_off, self.grads + L.b_off,
                                   L.n_out, L.bl1, L.bl2)
    return _penalties(self)

# -- feature-major passes (fit, narrow networks) --------------------------
# Every side of the network is at most _fm_width, every layer dense, and
# the batch has _fm_rows_lo to _fm_rows_hi rows (see there), so
# a product has no side wide enough to vectorise along.  fit() then keeps
# the activations feature-major, xT (n_in, ld) and zT, aT, dT (n_out, ld)
# per layer, and fm_forward and fm_backward (_simd.h) vectorise along the
# batch, with ReLU and sigmoid applied in registers.  The ld - n padding
# lanes replicate the last row forward (so they compute what a real row
# does) and carry a zero delta backward (so they add nothing to a
# gradient).  An output layer of one unit is row-major as it is; a wider
# one is also laid out row-major (Z, A, delta) for the loss functions.
cdef inline int _fm_act(Engine self, const Layer* L) noexcept nogil:
    """The activation fm_forward applies to L's output itself."""
    if L.act == ACT_RELU:
        return FM_RELU
    if L.act == ACT_SIGMOID:
        return FM_SIGMOID
    return FM_NONE

cdef inline double* _fm_z(Engine self, const Layer* L) noexcept nogil:
    """Where L's pre-activation is read back from: A when fm_forward
    applied the activation (all the derivative needs), else zT."""
    return self.work + (L.at if _fm_act(self, L) != FM_NONE else L.zt)

cdef const double* _forward_fm(Engine self, const double* x, Py_ssize_t n,
                               bint load) noexcept nogil:
    """Forward n rows of x (with ``load``; else xT is still in place);
    returns the network's output, row-major (n, n_out)."""
    cdef Py_ssize_t l, k, r, j, ld = self.ld, ni = self.n_in, no
    cdef Layer* L
    cdef double* xt = self.work + self.xt_off
    cdef double* z
    cdef int fa
    if load:
        for k in range(ni):
            for r in range(n):
                xt[k * ld + r] = x[r * ni + k]
            for r in range(n, ld):
                xt[k * ld + r] = x[(n - 1) * ni + k]
    for l in range(self.n_layers):
        L = &self.layers[l]
        no = L.n_out
        fa = _fm_act(self, L) if no == 1 or l < self.n_layers - 1 else FM_NONE
        cbp_simd.fm_forward(ld, L.n_in, no, xt, self.params + L.w_off,
                            self.params + L.b_off if L.b_off >= 0 else NULL,
                            self.work + (L.zt if fa == FM_NONE else L.at), fa)
        xt = self.work + L.at
        if fa != FM_NONE:
            continue
        if l < self.n_layers - 1 and ld == n:  # elementwise
            activation_forward_k(L.act, self.work + L.zt, xt, 1, no * ld, L.alpha)
        elif l < self.n_layers - 1:  # the n lanes of each unit, the padding copied
            for j in range(no):
                activation_forward_k(L.act, self.work + L.zt + j * ld, xt + j * ld, 1, n,
                                     L.alpha)
                for r in range(n, ld):
                    xt[j * ld + r] = xt[j * ld + n - 1]
        elif no == 1:
            activation_forward_k(L.act, self.work + L.zt, xt, n, 1, L.alpha)
        else:  # row-major Z, then A
            z = self.work + L.z
            for j in range(no):
                for r in range(n):
                    z[r * no + j] = self.work[L.zt + j * ld + r]
            activation_forward_k(L.act, z, self.work + L.a, n, no, L.alpha)
            return self.work + L.a
    return xt

cdef double _backward_fm(Engine self, const double* Y, Py_ssize_t n) noexcept nogil:
    """As _backward, after _forward_fm."""
    cdef Py_ssize_t l, r, j, ld = self.ld, no
    cdef Layer* L = &self.layers[self.n_layers - 1]
    cdef Layer* P
    cdef double value
    cdef double* dt = self.work + L.dt
    cdef int fa
    no = L.n_out
    if no == 1:
        value = output_delta_k(L.act, self.loss, _fm_z(self, L), self.work + L.at, Y,
                               dt, n, 1, self.reduction, L.alpha, n)
    else:
        value = output_delta_k(L.act, self.loss, self.work + L.z, self.work + L.a, Y,
                               self.work + L.d, n, no, self.reduction, L.alpha, n)
        for j in range(no):
            for r in range(n):
                dt[j * ld + r] = self.work[L.d + r * no + j]
    for j in range(no):
        for r in range(n, ld):
            dt[j * ld + r] = 0.0
    for l in range(self.n_layers - 1, -1, -1):
        L = &self.layers[l]
        P = &self.layers[l - 1] if l > 0 else NULL
        fa = _fm_act(self, P) if P != NULL else FM_NONE
        cbp_simd.fm_backward(ld, L.n_in, L.n_out,
                             self.work + (P.at if P != NULL else self.xt_off),
                             self.work + L.dt, self.params + L.w_off,
                             self.grads + L.w_off,
                             self.grads + L.b_off if L.b_off >= 0 else NULL,
                             self.work + P.dt if P != NULL else NULL,
                             self.work + P.at if P != NULL else NULL, fa)
        if P != NULL and fa == FM_NONE:
            activation_backward_k(P.act, self.work + P.zt, self.work + P.at,
                                  self.work + P.dt, self.work + P.dt, 1,
                                  P.n_out * ld, P.alpha)
    return value + _penalty_grads(self)

cdef double* _infer(Engine self, const double* x, Py_ssize_t n, double* buf) noexcept nogil:
    """Forward without dropout into a ping-pong buffer of 2 * n * width;
    returns the output."""
    cdef Py_ssize_t l
    cdef Layer* L
    cdef double* cur = buf
    for l in range(self.n_layers):
        L = &self.layers[l]
        cur = buf + (l % 2) * n * self.width
        if L.kind == KIND_DROPOUT:
            memcpy(cur, x, n * L.n_out * sizeof(double))
        else:
            dense_forward_k(x, self.params + L.w_off,
                            self.params + L.b_off if L.b_off >= 0 else NULL,
                            cur, n, L.n_in, L.n_out, self.scratch, self.scratch_cap,
                            L.act == ACT_RELU)
            if L.act != ACT_RELU:
                activation_forward_k(L.act, cur, cur, n, L.n_out, L.alpha)
        x = cur
    return cur
