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


def _fm_lanes_width(wide=None):
    """The networks a vector of fit_many's lane run holds on the table in
    force (0: no lane run), after optionally setting whether it may take
    the 8 lanes of AVX-512 where the CPU has them (src/_simd_lanes.h: for
    the fits of the AVX2 and AVX-512 tables; ``wide`` False: the table's
    own width, 4 for both).  Private: for the benchmark and
    for tests that run both widths.
    """
    global cbp_fm_lanes_wide
    cdef int vw = 0
    if wide is not None:
        cbp_fm_lanes_wide = 1 if wide else 0
    cbp_fm_lanes_select(&vw)
    return vw


def _fm_lanes_reg(mode=None):
    """How fit_many's lane run trains the two-layer shapes it keeps in
    registers (src/_fm_lanes_body.h, cbp_fm_lanes_reg_shape), after
    optionally setting it: 2 (the default), in registers and two groups of
    lanes a call, interleaved, where the table has a pair run; 1, in
    registers, a group at a time; 0, on the run's buffers.  The numbers
    are the same.  Private: for tests and timings.
    """
    global cbp_fm_lanes_reg_on
    if mode is not None:
        if mode not in (0, 1, 2):
            raise ValueError(f"_fm_lanes_reg: mode must be 0, 1 or 2, not {mode!r}")
        cbp_fm_lanes_reg_on = mode
    return cbp_fm_lanes_reg_on


def _fm_lanes_reg_calls():
    """The register run's calls so far, a group at a time and in pairs,
    and the epochs it handed to the run on its buffers for libm's exp
    (src/_fm_lanes_body.h).  Private: for tests."""
    return (cbp_fm_lanes_reg_calls[0], cbp_fm_lanes_reg_calls[1], cbp_fm_lanes_reg_calls[2])


def _init_lanes():
    import os
    import warnings
    want = os.environ.get("CBP_LANES", "auto").strip() or "auto"
    if want == "narrow":
        _fm_lanes_width(False)
    elif want != "auto":
        warnings.warn(f"CBP_LANES={want!r} ignored: expected 'auto' or 'narrow'",
                      RuntimeWarning, stacklevel=2)


# CBP_LANES=narrow: the table's own width, 4 lanes on the AVX2 and AVX-512
# tables (CBP_NO_AVX512=1, read by _tuning.pxi, turns off all 512-bit code)
_init_lanes()


cdef enum:
    _LANES_MAX = 16  # at most this many lanes a call (a pair run's two groups of 8)


def _fm_lanes(engines, const double[:, ::1] X, const double[:, ::1] Y, Py_ssize_t epochs,
              const double[::1] lrs, double[:, ::1] losses, Py_ssize_t[::1] done,
              unsigned char[::1] stop=None):
    """fit_many's lane run: ``epochs`` whole epochs of plain SGD (rate
    lrs[i]) for each engine of ``engines``, a network a SIMD lane
    (src/_fm_lanes_body.h), each network's numbers those of its own fit's
    whole-epoch run (_fm_run), bit for bit.

    Every engine's parameters are trained in place (its gradient left as its
    fit leaves it, but for a network that stopped early, whose fit computes
    it); losses[i, e] is network i's loss of epoch e, and done[i] the epochs
    it completed: fewer than ``epochs`` when its next one is not finite (the
    parameters left at that epoch's start, for its fit to run and report)
    or on an interrupt.
    The networks have one architecture (cbp.fit_many checks it, and this
    again) and the full batch is X (n, n_in), Y (n, n_out).

    Returns (taken, pending): taken False when the run does not take these
    fits (nothing changed: train them with fit); pending the exception a
    signal handler raised (Ctrl-C), the networks then stopped where done
    says, or None.  ``epochs`` 0 only checks whether the run takes them.
    With ``stop`` (one byte, shared by calls on other threads, each on
    its own engines): a signal sets stop[0], and a call stops, as on an
    interrupt but with pending None, once it finds stop[0] set (Python runs
    signal handlers in the main thread only).  Private: for cbp.fit_many.
    """
    cdef Py_ssize_t count = len(engines), n = X.shape[0], i, c, g, q, l, np_, e, want, span = 1
    cdef Py_ssize_t pa, wa  # a lane's first parameter in P, its first entry of work
    cdef Engine first, eng
    cdef cbp_fm_net fm, other
    cdef double es[N_EARLY_STOP]
    cdef double sch[N_SCHEDULE]
    cdef int vw = 0, alive, gl, gw
    cdef cbp_fm_lanes_fn run = cbp_fm_lanes_select(&vw)
    cdef cbp_fm_lanes_fn pair = NULL, fn
    cdef double lr_l[_LANES_MAX]
    cdef Py_ssize_t done_l[_LANES_MAX]
    cdef double* loss_l[_LANES_MAX]
    cdef double[::1] P, work
    cdef Py_ssize_t size
    cdef double now, last_read, last_signal
    cdef bint interrupted = False, stopped = False
    cdef unsigned char* stop_p = NULL
    _check(losses.shape[0] == count and losses.shape[1] == epochs and done.shape[0] == count
           and lrs.shape[0] == count, "_fm_lanes: losses, done and lrs must have a row per engine")
    if stop is not None:
        _check(stop.shape[0] >= 1, "_fm_lanes: stop must hold one byte")
        stop_p = &stop[0]
    if run == NULL or count == 0 or epochs < 0 or vw > _LANES_MAX:
        return False, None
    engines = list(engines)
    first = engines[0]
    _check(X.shape[1] == first.n_in and Y.shape[0] == n and Y.shape[1] == first.n_out and n > 0,
           "_fm_lanes: X and Y do not fit the network")
    memset(es, 0, sizeof(es))
    memset(sch, 0, sizeof(sch))
    es[EARLY_STOP_ENABLED] = 0.0
    sch[SCHEDULE_KIND] = SCHEDULE_NONE
    for i in range(count):
        eng = engines[i]
        _check(eng.n_params == first.n_params and eng.n_layers == first.n_layers
               and eng.loss == first.loss and eng.reduction == first.reduction,
               "_fm_lanes: the engines differ in their architecture")
        for l in range(first.n_layers):
            _check(eng.layers[l].n_in == first.layers[l].n_in
                   and eng.layers[l].n_out == first.layers[l].n_out
                   and eng.layers[l].act == first.layers[l].act
                   and eng.layers[l].w_off == first.layers[l].w_off
                   and eng.layers[l].b_off == first.layers[l].b_off,
                   "_fm_lanes: the engines differ in their architecture")
        _check(isfinite(lrs[i]) and lrs[i] > 0.0, "_fm_lanes: every rate must be finite and > 0")
        _layout(eng, n)
        if _fm_run(eng, &other if i else &fm, n, n, True, False, 0, es, sch) == NULL:
            return False, None
    if epochs == 0:
        return True, None
    np_ = first.n_params
    size = cbp_fm_lanes_work(&fm)  # a group's vectors of work (src/_fm_lanes_body.h)
    # two groups of vw lanes a call where a pair run takes the shape: group
    # h's parameters at P[h * np_ * vw], its work at work[h * size * vw]
    if (cbp_fm_lanes_reg_on == 2 and cbp_fm_lanes_reg_shape(&fm) and count > vw
            and 2 * vw <= _LANES_MAX):
        pair = cbp_fm_lanes_pair_select()
    gw = 2 * vw if pair != NULL else vw
    P = aligned_zeros(np_ * gw)  # (on cache lines: the lanes' vectors would straddle them)
    work = aligned_zeros(size * gw)
    cdef double[::1] spare = np.empty(epochs, dtype=np.float64)  # the padding lanes' losses
    _load_feature_major(first, &X[0, 0], n)  # fm.xt: the first engine's xT, shared
    for i in range(count):
        done[i] = 0
    group = [None] * gw
    cbp_threads_enter()
    try:
        last_read = last_signal = cbp_monotonic()
        for g in range(0, count, gw):
            gl, fn = (gw, pair) if pair != NULL and count - g > vw else (vw, run)
            for c in range(gl):  # the group's lanes; past the last network, padding
                i = g + c if g + c < count else g
                group[c] = engines[i]
                lr_l[c] = lrs[i]
                done_l[c] = -1 if g + c < count else 0
                loss_l[c] = &losses[i, 0] if g + c < count else &spare[0]
                eng = group[c]
                pa = c // vw * np_ * vw + c % vw
                for q in range(np_):
                    P[pa + q * vw] = eng.params[q]
            e = 0
            with nogil:
                while e < epochs:
                    want = min(span, epochs - e)
                    alive = fn(&fm, &Y[0, 0], &P[0], &work[0], lr_l, done_l, e, e + want,
                               loss_l, 1)
                    e += want
                    if alive == 0:
                        break
                    now = cbp_monotonic()
                    if now - last_read < 0.0005:
                        span = min(2 * span, MAX_STRIDE)
                    elif now - last_read > 0.002 and span > 1:
                        span //= 2
                    last_read = now
                    if stop_p != NULL and stop_p[0]:
                        stopped = True
                        break
                    if now - last_signal >= SIGNAL_SECONDS:
                        last_signal = now
                        with gil:
                            interrupted = _signal_raised(first)
                        if interrupted:
                            if stop_p != NULL:
                                stop_p[0] = 1
                            break
            for c in range(min(gl, count - g)):  # the parameters back, and the counts
                eng = group[c]
                pa = c // vw * np_ * vw + c % vw
                wa = c // vw * size * vw + c % vw
                if done_l[c] >= 0:  # where it stopped (R)
                    for q in range(np_):
                        eng.params[q] = work[wa + (2 * np_ + q) * vw]
                else:  # and the last epoch's gradient, as its fit leaves it
                    for q in range(np_):
                        eng.params[q] = P[pa + q * vw]
                        eng.grads[q] = work[wa + q * vw]
                eng.rows = 0  # (no forward cached)
                done[g + c] = done_l[c] if done_l[c] >= 0 else min(e, epochs)
            if interrupted or stopped:
                break
        if not interrupted:
            interrupted = _signal_raised(first)
            if interrupted and stop_p != NULL:
                stop_p[0] = 1
    finally:
        cbp_threads_leave()
    if interrupted:
        pending, first._pending = first._pending, None
        return True, pending
    return True, None
