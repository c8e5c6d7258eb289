# Included by _core.pyx.  fit()'s fused path for tiny networks (functions
# of an ``Engine self``, see _engine.pxi): with batch_size 1 and plain SGD,
# a network of at most CBP_TINY_MAX_LAYERS dense layers, every side at most
# CBP_TINY_MAX_WIDTH and at most _tiny_max_work weights in all, without
# penalties and with softmax at the output only,
# steps through src/_tiny.h: forward, loss, backward and update of each
# sample fused in one loop body, the parameters in local arrays, computing
# what the general passes compute: bit for bit where neither fuses a
# multiply-add (x86-64's baseline table), to rounding where multiply-adds
# fuse (tutorial 000's 1-1-1 net then runs a reordered loop whose state
# passes from one native call to the next, cbp_tiny_111_fused).
#
# Finiteness is checked once per epoch, not per step: the epoch's loss sum
# and the trainable parameters.  Every sample's loss is >= 0 or NaN (the
# squared errors; the cross-entropies of clipped probabilities against
# targets in [0, 1]), so a loss that is not finite keeps the sum from being
# finite; and a parameter the update made NaN or infinite stays so (p -
# lr * g of a NaN or an infinite p is NaN or infinite).  So every epoch the
# general passes would stop finds a value that is not finite at its end.
# Such an epoch is then rolled back to its start and run again on the
# general passes, which find the step, roll back and report as they always
# do (or, where only the sum overflowed, complete the epoch).  An epoch
# that ends finite is one in which no step of the general passes stops.

# the fused path on (1) or off (0): _tiny_path()
cdef bint _tiny_on = True
# and the networks it takes: at most this many weights.  Its steps are
# scalar code; one thread, ns per sample against the general passes
# (timing of fit, batch_size 1, 500 samples): 2-4-1 1.5x, 3-5-2 1.5x,
# 4-4-4-1 1.3x, 4-8-1 1.1x faster; 8-8-1 and 2-8-8-1 even; 8-8-8 1.5x
# slower.  Tutorial 000's 1-1-1 runs its own code, 10-20x faster.
cdef Py_ssize_t _tiny_max_work = 64


def _tiny_path(on=None):
    """Read, and optionally set, whether fit() takes the fused path of
    src/_tiny.h where it applies.  Returns the setting in force before the
    call.  Private: for the benchmark and for tests that compare the two
    paths.
    """
    global _tiny_on
    old = bool(_tiny_on)
    if on is not None:
        _tiny_on = bool(on)
    return old


cdef void _tiny_init(Engine self) noexcept:
    """Fill self.tiny from the layer table, and self.tiny_shape: whether
    the network is one the fused path takes."""
    cdef Py_ssize_t l, off = 0, work = 0
    cdef Layer* layer
    cdef cbp_tiny_net* t = &self.tiny
    cdef bint ok = (self.n_layers <= CBP_TINY_MAX_LAYERS and not self.penalised
                    and self.n_params <= CBP_TINY_MAX_PARAMS)
    cdef bint standard = True
    self.tiny_shape = False
    if not ok:
        return
    t.n_layers = <int>self.n_layers
    t.loss = self.loss
    t.scale = kernels.loss_scale(self.loss, self.reduction, 1, self.n_out)
    t.width[0] = <int>self.n_in
    for l in range(self.n_layers):
        layer = &self.layers[l]
        if (layer.kind != KIND_DENSE or layer.n_out > CBP_TINY_MAX_WIDTH
                or layer.n_in > CBP_TINY_MAX_WIDTH
                or (layer.act == ACT_SOFTMAX and l < self.n_layers - 1)):
            return
        work += layer.n_in * layer.n_out
        if work > _tiny_max_work:
            return
        t.width[l + 1] = <int>layer.n_out
        t.act[l] = layer.act
        t.alpha[l] = layer.alpha
        t.w_off[l] = layer.w_off
        t.b_off[l] = layer.b_off
        standard &= (layer.w_off == off and layer.b_off == off + layer.n_in * layer.n_out
                     and layer.trainable != 0)
        off += layer.n_in * layer.n_out + layer.n_out
    for l in range(self.n_layers):  # trainable: in one of the trainable ranges
        layer = &self.layers[l]
        t.w_train[l] = _tiny_in_segs(self, layer.w_off)
        t.b_train[l] = layer.b_off >= 0 and _tiny_in_segs(self, layer.b_off)
    t.n_params = self.n_params
    # every layer biased and trainable, packed from 0: one trainable range
    t.standard = (standard and off == self.n_params and self.n_segs == 1
                  and self.segs[0] == 0 and self.segs[1] == self.n_params)
    self.tiny_shape = True


cdef bint _tiny_in_segs(Engine self, Py_ssize_t i) noexcept:
    """True if parameter i is in a trainable range."""
    cdef Py_ssize_t s
    for s in range(self.n_segs):
        if self.segs[2 * s] <= i < self.segs[2 * s + 1]:
            return True
    return False


cdef cbp_tiny_run_fn _tiny_run(Engine self, Py_ssize_t bs, bint plain) noexcept:
    """The fused run fit() takes on batches of bs rows, or NULL for the
    general passes."""
    if not (_tiny_on and self.tiny_shape and bs == 1 and plain and self.ld == 0):
        return NULL
    return cbp_tiny_select(&self.tiny)  # the table in force now


cdef bint _tiny_finite(Engine self, double total) noexcept nogil:
    """True if the epoch's loss sum and every trainable parameter are finite."""
    cdef Py_ssize_t s, lo, hi
    if not isfinite(total):
        return False
    for s in range(self.n_segs):
        lo = self.segs[2 * s]
        hi = self.segs[2 * s + 1]
        if not kernels.all_finite(self.params + lo, hi - lo, False):
            return False
    return True
