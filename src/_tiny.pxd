# The fused per-sample step of fit() on tiny networks (src/_tiny.h), as the
# engine (src/_engine_tiny.pxi) calls it.
from libc.stdint cimport int64_t

cdef extern from "_tiny.h" nogil:
    enum:
        CBP_TINY_MAX_LAYERS
        CBP_TINY_MAX_WIDTH
        CBP_TINY_MAX_PARAMS
    ctypedef struct cbp_tiny_carry:
        Py_ssize_t row
    ctypedef struct cbp_tiny_net:
        int n_layers
        int loss
        double scale
        int width[5]
        int act[4]
        double alpha[4]
        Py_ssize_t w_off[4]
        Py_ssize_t b_off[4]
        int w_train[4]
        int b_train[4]
        Py_ssize_t n_params
        int standard
        Py_ssize_t n_rows
        cbp_tiny_carry carry
    ctypedef void (*cbp_tiny_run_fn)(cbp_tiny_net* net, double* params, double* grads,
                                     const double* X, const double* Y, const int64_t* order,
                                     Py_ssize_t row, Py_ssize_t count, double lr, double* total,
                                     Py_ssize_t* hit, Py_ssize_t* seen) noexcept nogil
    cbp_tiny_run_fn cbp_tiny_select(cbp_tiny_net* net)
