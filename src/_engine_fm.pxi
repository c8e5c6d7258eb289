# Included by _core.pyx.  fit()'s whole-epoch run on the feature-major
# layout (src/_fm_epochs.h; functions of an ``Engine self``, see
# _engine.pxi): a full batch in order, plain SGD, no schedule, early
# stopping or validation, on a network of at most CBP_FM_MAX_LAYERS dense
# layers that the feature-major passes take, hidden layers ReLU or sigmoid,
# one output unit (identity, ReLU or sigmoid), a squared error, no
# penalties, every parameter trainable (biases or none).  _fit_loop runs such a fit's epochs
# here in stretches between readings of the clock, then any epoch left
# (one whose loss or update was not finite, first) on the general passes.

# the whole-epoch run on (1) or off (0): _fm_epochs_path()
cdef bint _fm_on = True


def _fm_epochs_path(on=None):
    """Read, and optionally set, whether fit() runs its epochs through
    src/_fm_epochs.h where that applies.  Returns the setting in force
    before the call.  Private: for the benchmark and for tests that compare
    the paths.
    """
    global _fm_on
    old = bool(_fm_on)
    if on is not None:
        _fm_on = bool(on)
    return old


cdef bint _fm_shape(Engine self) noexcept:
    """Whether the network is one the whole-epoch run takes (its layers;
    the batch and the settings are _fm_run's)."""
    cdef Py_ssize_t l, off = 0
    cdef Layer* layer
    if (self.n_layers > CBP_FM_MAX_LAYERS or self.penalised or self.n_out != 1
            or not (self.loss == LOSS_SE or self.loss == LOSS_HALF_SE)
            or self.n_segs != 1 or self.segs[0] != 0 or self.segs[1] != self.n_params):
        return False
    for l in range(self.n_layers):
        layer = &self.layers[l]
        if layer.kind != KIND_DENSE or layer.w_off != off or (
                layer.b_off >= 0 and layer.b_off != off + layer.n_in * layer.n_out):
            return False
        if l < self.n_layers - 1 and not (layer.act == ACT_RELU or layer.act == ACT_SIGMOID):
            return False
        if l == self.n_layers - 1 and not (layer.act == ACT_IDENTITY or layer.act == ACT_RELU
                                           or layer.act == ACT_SIGMOID):
            return False
        off += layer.n_in * layer.n_out + (layer.n_out if layer.b_off >= 0 else 0)
    return off == self.n_params


cdef cbp_fm_epochs_fn _fm_run(Engine self, cbp_fm_net* net, Py_ssize_t n, Py_ssize_t bs,
                              bint plain, bint shuffle, Py_ssize_t nv, const double* early_stop,
                              const double* schedule) noexcept:
    """The whole-epoch run of a fit of n rows in batches of bs, on the
    workspace as _layout laid it out (net filled in), or NULL for the
    general passes."""
    cdef Py_ssize_t l
    cdef Layer* layer
    if not (_fm_on and self.ld > 0 and bs == n and plain and not shuffle and nv == 0
            and early_stop[EARLY_STOP_ENABLED] == 0.0
            and schedule[SCHEDULE_KIND] == SCHEDULE_NONE and _fm_shape(self)):
        return NULL
    net.n = n
    net.ld = self.ld
    net.n_layers = self.n_layers
    net.n_params = self.n_params
    net.loss = self.loss
    net.scale = kernels.loss_scale(self.loss, self.reduction, n, 1)
    net.xt = self.work + self.xt_off
    for l in range(self.n_layers):
        layer = &self.layers[l]
        net.width[l] = layer.n_in
        net.width[l + 1] = layer.n_out
        net.fact[l] = _feature_major_act(self, layer)
        net.w_off[l] = layer.w_off
        net.b_off[l] = layer.b_off
        net.at[l] = self.work + layer.at
        net.dt[l] = self.work + layer.dt
    layer = &self.layers[self.n_layers - 1]
    net.out_act = layer.act
    net.zt_out = self.work + layer.zt
    return cbp_fm_select()  # the table in force now
