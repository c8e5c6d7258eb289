# Whole epochs of fit() on the feature-major layout (src/_fm_epochs.h), as
# the engine (src/_engine_fm.pxi) calls them.

cdef extern from "_fm_epochs.h" nogil:
    enum:
        CBP_FM_MAX_LAYERS
        CBP_FM_LOSS_SE
        CBP_FM_LOSS_HALF_SE
        CBP_FM_ACT_RELU
        CBP_FM_ACT_SIGMOID
    ctypedef struct cbp_fm_net:
        Py_ssize_t n, ld, n_layers, n_params
        int loss, out_act
        double scale
        Py_ssize_t width[5]
        int fact[4]
        Py_ssize_t w_off[4]
        Py_ssize_t b_off[4]
        const double* xt
        double* at[4]
        double* dt[4]
        double* zt_out
    ctypedef Py_ssize_t (*cbp_fm_epochs_fn)(const cbp_fm_net* net, const double* Y,
                                            double* params, double* grads, double* snap,
                                            Py_ssize_t n_epochs, double lr,
                                            double* losses, Py_ssize_t stride) noexcept nogil
    cbp_fm_epochs_fn cbp_fm_select()
    enum:
        CBP_BLK_MAX_SIDE
        CBP_BLK_LD
        CBP_BLK_MIN_ROWS
        CBP_BLK_LOSS_SE
        CBP_BLK_LOSS_HALF_SE
        CBP_BLK_LOSS_CCE
    Py_ssize_t CBP_BLK_WORK(Py_ssize_t ni, Py_ssize_t nh, Py_ssize_t no)
    ctypedef struct cbp_blk_net:
        Py_ssize_t n, ld, ni, nh, no, n_params
        int loss, hact, onehot
        double scale
        Py_ssize_t w_off[2]
        Py_ssize_t b_off[2]
        Py_ssize_t acc_at
        const double* xt
        const double* yt
        double* work
        const double* zeros
    ctypedef Py_ssize_t (*cbp_blk_epochs_fn)(const cbp_blk_net* net, double* params,
                                             double* grads, double* snap, Py_ssize_t n_epochs,
                                             double lr, double* losses,
                                             Py_ssize_t stride) noexcept nogil
    cbp_blk_epochs_fn cbp_blk_select()
    ctypedef void (*cbp_blk_vlog_fn)(Py_ssize_t n, const double* x, double* y) noexcept nogil
    cbp_blk_vlog_fn cbp_blk_vlog_select()
    ctypedef int (*cbp_fm_lanes_fn)(const cbp_fm_net* net, const double* Y, double* P,
                                    double* work, const double* lr, Py_ssize_t* done,
                                    Py_ssize_t e0, Py_ssize_t e1, double* const* losses,
                                    Py_ssize_t stride) noexcept nogil
    cbp_fm_lanes_fn cbp_fm_lanes_select(int* width)
    cbp_fm_lanes_fn cbp_fm_lanes_pair_select()
    Py_ssize_t cbp_fm_lanes_work(const cbp_fm_net* net)
    int cbp_fm_lanes_reg_shape(const cbp_fm_net* net)
    int cbp_fm_lanes_wide
    int cbp_fm_lanes_reg_on
    long cbp_fm_lanes_reg_calls[3]
