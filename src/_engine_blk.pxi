# Included by _core.pyx.  fit()'s blocked whole-epoch run on the row-major
# path (src/_blk_epochs_body.h; functions of an ``Engine self``, see
# _engine.pxi): a full batch in order, plain SGD, no schedule, early
# stopping or validation, on two dense layers, at most CBP_BLK_MAX_SIDE
# inputs and outputs, the hidden layer ReLU or sigmoid, the output softmax
# under categorical cross-entropy or the identity under a squared error,
# no penalties, every parameter trainable (biases or none), and at most
# _blk_max_work rows times hidden units (past that the general passes may
# take more threads than this run's one).  _fit_loop runs such a fit's
# epochs here in stretches between readings of the clock, as the
# feature-major whole-epoch run (_engine_fm.pxi), and any epoch left (one
# whose loss or update was not finite, first) on the general passes.
#
# Its numbers are the general passes' to within rounding: the gradients'
# sums over the rows are taken in another order.

# the blocked run on (1) or off (0): _blk_epochs_path()
cdef bint _blk_on = True
# rows x hidden units at most (spiral's 300 x 64 is 19,200)
cdef Py_ssize_t _blk_max_work = 1 << 18


def _blk_epochs_path(on=None):
    """Read, and optionally set, whether fit() runs its epochs through
    src/_blk_epochs_body.h where that applies.  Returns the setting in
    force before the call.  Private: for the benchmark and for tests that
    compare the paths.
    """
    global _blk_on
    old = bool(_blk_on)
    if on is not None:
        _blk_on = bool(on)
    return old


def _blk_log(const double[::1] x, double[::1] out):
    """out := log(clip(x)) through the blocked run's vectorised log on the
    table in force (clip: the cross-entropy's, to [1e-7, 1 - 1e-7]).
    Private: for the tests of its accuracy."""
    cdef cbp_blk_vlog_fn fn = cbp_blk_vlog_select()
    _check(out.shape[0] == x.shape[0], "_blk_log: shape mismatch")
    if fn == NULL:
        raise RuntimeError("_blk_log: no blocked run in this build")
    if x.shape[0]:
        with nogil:
            fn(x.shape[0], &x[0], &out[0])
    return out.base


cdef cbp_blk_epochs_fn _blk_run(Engine self, cbp_blk_net* net, const double* X, const double* Y,
                                Py_ssize_t n, Py_ssize_t bs, bint plain, bint shuffle,
                                Py_ssize_t nv, const double* early_stop,
                                const double* schedule) except? NULL:
    """The blocked run of a fit of n rows in batches of bs (net filled in,
    its buffers made), or NULL for the other paths."""
    cdef Layer* l0
    cdef Layer* l1
    cdef Py_ssize_t ni, nh, no, ld, k, r, ones, size
    cdef double[::1] buf
    cdef double* xt
    cdef double* yt
    cdef cbp_blk_epochs_fn fn
    if not (_blk_on and self.ld == 0 and bs == n and plain and not shuffle and nv == 0
            and early_stop[EARLY_STOP_ENABLED] == 0.0
            and schedule[SCHEDULE_KIND] == SCHEDULE_NONE
            and self.n_layers == 2 and not self.penalised and self.n_segs == 1
            and self.segs[0] == 0 and self.segs[1] == self.n_params):
        return NULL
    l0 = &self.layers[0]
    l1 = &self.layers[1]
    ni = l0.n_in
    nh = l0.n_out
    no = l1.n_out
    if (l0.kind != KIND_DENSE or l1.kind != KIND_DENSE
            or not (l0.act == ACT_RELU or l0.act == ACT_SIGMOID)
            or ni > CBP_BLK_MAX_SIDE or no > CBP_BLK_MAX_SIDE or n < CBP_BLK_MIN_ROWS
            or n * nh > _blk_max_work):
        return NULL
    if l1.act == ACT_SOFTMAX and self.loss == LOSS_CCE:
        net.loss = CBP_BLK_LOSS_CCE
    elif l1.act == ACT_IDENTITY and self.loss == LOSS_SE:
        net.loss = CBP_BLK_LOSS_SE
    elif l1.act == ACT_IDENTITY and self.loss == LOSS_HALF_SE:
        net.loss = CBP_BLK_LOSS_HALF_SE
    else:
        return NULL
    fn = cbp_blk_select()  # the table in force now
    if fn == NULL:
        return NULL
    ld = (n + CBP_BLK_LD - 1) // CBP_BLK_LD * CBP_BLK_LD
    size = (ni + no) * ld + CBP_BLK_WORK(ni, nh, no)
    if self._blk_buf is None or self._blk_buf.shape[0] < size:
        # on cache lines (ld and the blocks are multiples of 8 doubles): a
        # vector that straddles two lines loads at half the rate
        self._blk_buf = aligned_zeros(size)
    buf = self._blk_buf
    xt = &buf[0]
    yt = xt + ni * ld
    for k in range(ni):  # X and Y feature-major, the padding rows 0
        for r in range(n):
            xt[k * ld + r] = X[r * ni + k]
        for r in range(n, ld):
            xt[k * ld + r] = 0.0
    for k in range(no):
        for r in range(n):
            yt[k * ld + r] = Y[r * no + k]
        for r in range(n, ld):
            yt[k * ld + r] = 0.0
    net.onehot = 1
    for r in range(n):  # one 1 a row, the rest 0 (labels; else the log of every P)
        ones = 0
        for k in range(no):
            if Y[r * no + k] == 1.0:
                ones += 1
            elif Y[r * no + k] != 0.0:
                ones = 2
        if ones != 1:
            net.onehot = 0
            break
    net.n = n
    net.ld = ld
    net.ni = ni
    net.nh = nh
    net.no = no
    net.n_params = self.n_params
    net.hact = CBP_FM_ACT_RELU if l0.act == ACT_RELU else CBP_FM_ACT_SIGMOID
    net.scale = kernels.loss_scale(self.loss, self.reduction, n, no)
    net.w_off[0] = l0.w_off
    net.b_off[0] = l0.b_off
    net.w_off[1] = l1.w_off
    net.b_off[1] = l1.b_off
    net.acc_at = HISTORY_ACCURACY - HISTORY_LOSS
    net.xt = xt
    net.yt = yt
    net.work = yt + no * ld
    net.zeros = net.work + CBP_BLK_WORK(ni, nh, no) - nh - no
    memset(<void*>net.zeros, 0, (nh + no) * sizeof(double))
    return fn
