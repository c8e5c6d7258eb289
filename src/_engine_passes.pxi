# Included by _core.pyx.  The Engine's workspace and its passes (functions
# of an ``Engine self``, see _engine.pxi): the layout of the workspace, the
# row-major forward and backward passes (of a whole batch, or of the rows of
# one chunk), the penalties, the feature-major passes of fit on narrow
# networks, and inference into a separate buffer.

# -- workspace ----------------------------------------------------------
cdef int _layout(Engine self, Py_ssize_t n) except -1:
    """Lay the workspace out for up to n rows: [X | Y | Z A D per layer],
    then, if feature-major training is on for this network,
    [xT | zT aT dT per layer] of ld >= n lanes.  Each block starts on a
    cache line (the buffer itself does, aligned_empty), so that the rows
    of a layer whose width is a multiple of 8 are whole vectors of the
    AVX-512 table: a vector that straddles two lines loads at about half
    the rate."""
    cdef Py_ssize_t l, off, ld
    ld = ((n + 3) // 4 * 4 if 0 < self.feature_major_side <= _feature_major_width
          and _feature_major_rows_lo <= n <= _feature_major_rows_hi else 0)
    if n == self.batch and ld == self.ld:
        return 0
    off = _line(n * self.n_in)
    self.y_off = off
    off = _line(off + n * self.n_out)
    for l in range(self.n_layers):
        self.layers[l].z = off
        self.layers[l].a = _line(off + n * self.layers[l].n_out)
        self.layers[l].d = _line(self.layers[l].a + n * self.layers[l].n_out)
        off = _line(self.layers[l].d + n * self.layers[l].n_out)
    self.ld = ld
    self.xt_off = off
    off = _line(off + ld * self.n_in)
    for l in range(self.n_layers):
        self.layers[l].zt = off
        self.layers[l].at = _line(off + ld * self.layers[l].n_out)
        self.layers[l].dt = _line(self.layers[l].at + ld * self.layers[l].n_out)
        off = _line(self.layers[l].dt + ld * self.layers[l].n_out)
    if self._work is None or self._work.shape[0] < off:
        self._work = aligned_empty(off)
    self.work = _data(self._work)
    self.batch = n
    self.rows = 0
    return 0

# -- passes (nogil) -----------------------------------------------------
cdef inline double* _zbuf(Engine self, Layer* layer) noexcept nogil:
    """Where backward reads a layer's pre-activation Z from.  A ReLU
    dense layer stores only A = relu(Z) (fused into the product), and
    A > 0 exactly where Z > 0, which is all its derivative needs."""
    if layer.kind == KIND_DENSE and layer.act == ACT_RELU:
        return self.work + layer.a
    return self.work + layer.z

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
    cdef Layer* layer
    cdef double* z
    cdef double* a
    for l in range(self.n_layers):
        layer = &self.layers[l]
        z = self.work + layer.z + r0 * layer.n_out
        a = self.work + layer.a + r0 * layer.n_out
        m = n * layer.n_out
        if layer.kind == KIND_DROPOUT:
            if train:
                kernels.dropout_mask(seed, 2 * (epoch * self.n_layers + l) + 1,
                                     row * layer.n_out, layer.rate, z, m)
                for i in range(m):
                    a[i] = x[i] * z[i]
            else:
                for i in range(m):
                    z[i] = 1.0
                memcpy(a, x, m * sizeof(double))
        elif layer.act == ACT_RELU:
            kernels.dense_forward(x, self.params + layer.w_off,
                                  self.params + layer.b_off if layer.b_off >= 0 else NULL,
                                  a, n, layer.n_in, layer.n_out, scratch, self.scratch_cap, True)
        else:
            kernels.dense_forward(x, self.params + layer.w_off,
                                  self.params + layer.b_off if layer.b_off >= 0 else NULL,
                                  z, n, layer.n_in, layer.n_out, scratch, self.scratch_cap)
            kernels.activation_forward(layer.act, z, a, n, layer.n_out, layer.alpha)
        x = a

cdef double _penalties(Engine self) noexcept nogil:
    cdef Py_ssize_t l
    cdef Layer* layer
    cdef double value = 0.0
    if not self.penalised:
        return 0.0
    for l in range(self.n_layers):
        layer = &self.layers[l]
        if layer.kind != KIND_DENSE:
            continue
        value += kernels.penalty(self.params + layer.w_off, layer.n_in * layer.n_out,
                                 layer.wl1, layer.wl2)
        if layer.b_off >= 0:
            value += kernels.penalty(self.params + layer.b_off, layer.n_out, layer.bl1, layer.bl2)
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
    for a chunk; see kernels.loss_value).  Returns their loss."""
    cdef Py_ssize_t l, i, lo, po
    cdef Layer* layer = &self.layers[self.n_layers - 1]
    cdef Layer* prev
    cdef double value
    cdef const double* x
    cdef const double* gate
    cdef double* dx
    lo = r0 * layer.n_out
    value = kernels.output_delta(layer.act, self.loss, _zbuf(self, layer) + lo,
                                 self.work + layer.a + lo, Y, self.work + layer.d + lo, n,
                                 layer.n_out, self.reduction, layer.alpha, nscale)
    for l in range(self.n_layers - 1, -1, -1):
        layer = &self.layers[l]
        prev = &self.layers[l - 1] if l > 0 else NULL
        lo = r0 * layer.n_out
        po = r0 * prev.n_out if prev != NULL else 0
        dx = self.work + prev.d + po if prev != NULL else NULL
        # the ReLU mask of a dense layer below is fused into dX's store
        gate = (self.work + prev.a + po if prev != NULL and prev.kind == KIND_DENSE
                and prev.act == ACT_RELU and layer.kind == KIND_DENSE else NULL)
        if layer.kind == KIND_DROPOUT:
            if dx != NULL:
                for i in range(n * layer.n_out):
                    dx[i] = self.work[layer.d + lo + i] * self.work[layer.z + lo + i]
        else:
            x = X if l == 0 else self.work + prev.a + po
            kernels.dense_backward(x, self.params + layer.w_off, self.work + layer.d + lo,
                                   grads + layer.w_off,
                                   grads + layer.b_off if layer.b_off >= 0 else NULL,
                                   dx, n, layer.n_in, layer.n_out, scratch, self.scratch_cap,
                                   gate)
        if prev != NULL and gate == NULL:
            kernels.activation_backward(prev.act, _zbuf(self, prev) + po, self.work + prev.a + po,
                                        dx, dx, n, prev.n_out, prev.alpha)
    return value

cdef double _penalty_grads(Engine self) noexcept nogil:
    """Add the L1/L2 penalty gradients (nnfs semantics); return the penalty."""
    cdef Py_ssize_t l
    cdef Layer* layer
    if not self.penalised:
        return 0.0
    for l in range(self.n_layers):
        layer = &self.layers[l]
        if layer.kind != KIND_DENSE:
            continue
        kernels.add_penalty_gradient(self.params + layer.w_off, self.grads + layer.w_off,
                                     layer.n_in * layer.n_out, layer.wl1, layer.wl2)
        if layer.b_off >= 0:
            kernels.add_penalty_gradient(self.params + layer.b_off, self.grads + layer.b_off,
                                         layer.n_out, layer.bl1, layer.bl2)
    return _penalties(self)

# -- feature-major passes (fit, narrow networks) --------------------------
# Every side of the network is at most _feature_major_width, every layer dense, and
# the batch has _feature_major_rows_lo to _feature_major_rows_hi rows (see there), so
# a product has no side wide enough to vectorise along.  fit() then keeps
# the activations feature-major, xT (n_in, ld) and zT, aT, dT (n_out, ld)
# per layer, and feature_major_forward and feature_major_backward (_simd.h) vectorise along the
# batch, with ReLU and sigmoid applied in registers.  The ld - n padding
# lanes replicate the last row forward (so they compute what a real row
# does) and carry a zero delta backward (so they add nothing to a
# gradient).  An output layer of one unit is row-major as it is; a wider
# one is also laid out row-major (Z, A, delta) for the loss functions.
cdef inline int _feature_major_act(Engine self, const Layer* layer) noexcept nogil:
    """The activation feature_major_forward applies to layer's output itself."""
    if layer.act == ACT_RELU:
        return FEATURE_MAJOR_RELU
    if layer.act == ACT_SIGMOID:
        return FEATURE_MAJOR_SIGMOID
    return FEATURE_MAJOR_NONE

cdef inline double* _feature_major_z(Engine self, const Layer* layer) noexcept nogil:
    """Where layer's pre-activation is read back from: A when feature_major_forward
    applied the activation (all the derivative needs), else zT."""
    if _feature_major_act(self, layer) != FEATURE_MAJOR_NONE:
        return self.work + layer.at
    return self.work + layer.zt

cdef void _load_feature_major(Engine self, const double* x, Py_ssize_t n) noexcept nogil:
    """xT of the n rows of x, its padding lanes copies of the last row."""
    cdef Py_ssize_t k, r, ld = self.ld, ni = self.n_in
    cdef double* xt = self.work + self.xt_off
    for k in range(ni):
        for r in range(n):
            xt[k * ld + r] = x[r * ni + k]
        for r in range(n, ld):
            xt[k * ld + r] = x[(n - 1) * ni + k]

cdef const double* _forward_feature_major(Engine self, const double* x, Py_ssize_t n,
                                          bint load) noexcept nogil:
    """Forward n rows of x (with ``load``; else xT is still in place);
    returns the network's output, row-major (n, n_out)."""
    cdef Py_ssize_t l, k, r, j, ld = self.ld, ni = self.n_in, no
    cdef Layer* layer
    cdef double* xt = self.work + self.xt_off
    cdef double* z
    cdef int fa
    if load:
        _load_feature_major(self, x, n)
    for l in range(self.n_layers):
        layer = &self.layers[l]
        no = layer.n_out
        fa = (_feature_major_act(self, layer) if no == 1 or l < self.n_layers - 1
              else FEATURE_MAJOR_NONE)
        cbp_simd.feature_major_forward(ld, layer.n_in, no, xt, self.params + layer.w_off,
                                       self.params + layer.b_off if layer.b_off >= 0 else NULL,
                                       self.work + (layer.zt if fa == FEATURE_MAJOR_NONE
                                                    else layer.at), fa)
        xt = self.work + layer.at
        if fa != FEATURE_MAJOR_NONE:
            continue
        if l < self.n_layers - 1 and ld == n:  # elementwise
            kernels.activation_forward(layer.act, self.work + layer.zt, xt, 1, no * ld,
                                       layer.alpha)
        elif l < self.n_layers - 1:  # the n lanes of each unit, the padding copied
            for j in range(no):
                kernels.activation_forward(layer.act, self.work + layer.zt + j * ld,
                                           xt + j * ld, 1, n, layer.alpha)
                for r in range(n, ld):
                    xt[j * ld + r] = xt[j * ld + n - 1]
        elif no == 1:
            kernels.activation_forward(layer.act, self.work + layer.zt, xt, n, 1, layer.alpha)
        else:  # row-major Z, then A
            z = self.work + layer.z
            for j in range(no):
                for r in range(n):
                    z[r * no + j] = self.work[layer.zt + j * ld + r]
            kernels.activation_forward(layer.act, z, self.work + layer.a, n, no, layer.alpha)
            return self.work + layer.a
    return xt

cdef double _backward_feature_major(Engine self, const double* Y, Py_ssize_t n) noexcept nogil:
    """As _backward, after _forward_feature_major."""
    cdef Py_ssize_t l, r, j, ld = self.ld, no
    cdef Layer* layer = &self.layers[self.n_layers - 1]
    cdef Layer* prev
    cdef double value
    cdef double* dt = self.work + layer.dt
    cdef int fa
    no = layer.n_out
    if no == 1:
        value = kernels.output_delta(layer.act, self.loss, _feature_major_z(self, layer),
                                     self.work + layer.at, Y, dt, n, 1, self.reduction,
                                     layer.alpha, n)
    else:
        value = kernels.output_delta(layer.act, self.loss, self.work + layer.z,
                                     self.work + layer.a, Y, self.work + layer.d, n, no,
                                     self.reduction, layer.alpha, n)
        for j in range(no):
            for r in range(n):
                dt[j * ld + r] = self.work[layer.d + r * no + j]
    for j in range(no):
        for r in range(n, ld):
            dt[j * ld + r] = 0.0
    for l in range(self.n_layers - 1, -1, -1):
        layer = &self.layers[l]
        prev = &self.layers[l - 1] if l > 0 else NULL
        fa = _feature_major_act(self, prev) if prev != NULL else FEATURE_MAJOR_NONE
        cbp_simd.feature_major_backward(ld, layer.n_in, layer.n_out,
                                        self.work + (prev.at if prev != NULL else self.xt_off),
                                        self.work + layer.dt, self.params + layer.w_off,
                                        self.grads + layer.w_off,
                                        self.grads + layer.b_off if layer.b_off >= 0 else NULL,
                                        self.work + prev.dt if prev != NULL else NULL,
                                        self.work + prev.at if prev != NULL else NULL, fa)
        if prev != NULL and fa == FEATURE_MAJOR_NONE:
            kernels.activation_backward(prev.act, self.work + prev.zt, self.work + prev.at,
                                        self.work + prev.dt, self.work + prev.dt, 1,
                                        prev.n_out * ld, prev.alpha)
    return value + _penalty_grads(self)

cdef double* _infer(Engine self, const double* x, Py_ssize_t n, double* buf) noexcept nogil:
    """Forward without dropout into a ping-pong buffer of 2 * n * width;
    returns the output."""
    cdef Py_ssize_t l
    cdef Layer* layer
    cdef double* cur = buf
    for l in range(self.n_layers):
        layer = &self.layers[l]
        cur = buf + (l % 2) * n * self.width
        if layer.kind == KIND_DROPOUT:
            memcpy(cur, x, n * layer.n_out * sizeof(double))
        else:
            kernels.dense_forward(x, self.params + layer.w_off,
                                  self.params + layer.b_off if layer.b_off >= 0 else NULL,
                                  cur, n, layer.n_in, layer.n_out, self.scratch, self.scratch_cap,
                                  layer.act == ACT_RELU)
            if layer.act != ACT_RELU:
                kernels.activation_forward(layer.act, cur, cur, n, layer.n_out, layer.alpha)
        x = cur
    return cur
