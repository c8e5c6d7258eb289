/* Whole epochs of fit() in one call, on the feature-major layout.
 *
 * fit() on a full batch, in order, with plain SGD, on a network the
 * feature-major passes take whose hidden layers are ReLU or sigmoid and
 * whose output is one unit (identity, ReLU or sigmoid) under a squared
 * error, without penalties, runs its epochs here (src/_engine_fm.pxi
 * decides): forward, loss, backward and update of the whole batch, epoch
 * after epoch, with the table's own kernels on the engine's buffers and
 * none of the per-epoch set-up of the Cython loop.  Every number is the one
 * the general passes compute, bit for bit (tests/test_fm_epochs.py).
 *
 * A run stops at the first epoch whose loss or update is not finite,
 * leaving the parameters at that epoch's start, so that the general passes
 * run it and report it as they always do.  The body (_fm_epochs_body.h) is
 * compiled with every table of _simd.h.
 */
#ifndef CBP_FM_EPOCHS_H
#define CBP_FM_EPOCHS_H

#include "_simd.h"

#ifdef CBP_HAVE_VEC
#  define CBP_FM_BUILT 1
#else
#  define CBP_FM_BUILT 0
#endif

typedef cbp_ix (*cbp_fm_epochs_fn)(const cbp_fm_net* net, const double* Y, double* params,
                                   double* grads, double* snap, cbp_ix n_epochs, double lr,
                                   double* losses, cbp_ix stride);

/* The run for the table in force, or NULL where none is built. */
static cbp_fm_epochs_fn cbp_fm_select(void)
{
#if defined(CBP_HAVE_AVX512_LANES)
    if (strcmp(cbp_simd.name, "avx512") == 0) return cbp_fm_epochs_avx512n;
#endif
#if defined(CBP_HAVE_AVX2)
    if (cbp_simd_fm_avx2()) return cbp_fm_epochs_avx2;
#endif
#if CBP_FM_BUILT
    if (strcmp(cbp_simd.name, "baseline") == 0) return cbp_fm_epochs_base;
#endif
    return NULL;
}

/* Whole epochs of a thin two-layer network on the row-major path, its
 * rows in blocks (_blk_epochs_body.h). */
typedef cbp_ix (*cbp_blk_epochs_fn)(const cbp_blk_net* net, double* params, double* grads,
                                    double* snap, cbp_ix n_epochs, double lr, double* losses,
                                    cbp_ix stride);

/* The blocked run for the table in force, or NULL where none is built. */
static cbp_blk_epochs_fn cbp_blk_select(void)
{
#if defined(CBP_HAVE_AVX512_LANES)
    if (strcmp(cbp_simd.name, "avx512") == 0) return cbp_blk_epochs_avx512;
#endif
#if defined(CBP_HAVE_AVX2)
    if (strcmp(cbp_simd.name, "avx2+fma") == 0) return cbp_blk_epochs_avx2;
#endif
#if CBP_FM_BUILT
    if (strcmp(cbp_simd.name, "baseline") == 0) return cbp_blk_epochs_base;
#endif
    return NULL;
}

/* The blocked run's log(clip(x)) on n doubles, for the table in force
 * (NULL where none is built). */
typedef void (*cbp_blk_vlog_fn)(cbp_ix n, const double* x, double* y);
static cbp_blk_vlog_fn cbp_blk_vlog_select(void)
{
#if defined(CBP_HAVE_AVX512_LANES)
    if (strcmp(cbp_simd.name, "avx512") == 0) return cbp_blk_vlog_avx512;
#endif
#if defined(CBP_HAVE_AVX2)
    if (strcmp(cbp_simd.name, "avx2+fma") == 0) return cbp_blk_vlog_avx2;
#endif
#if CBP_FM_BUILT
    if (strcmp(cbp_simd.name, "baseline") == 0) return cbp_blk_vlog_base;
#endif
    return NULL;
}

/* Whole epochs of CBP_VW networks at once, a network a lane
 * (_fm_lanes_body.h); P and work hold vectors of cbp_fm_lanes_width()
 * doubles. */
typedef int (*cbp_fm_lanes_fn)(const cbp_fm_net* net, const double* Y, double* P, double* work,
                               const double* lr, cbp_ix* done, cbp_ix e0, cbp_ix e1,
                               double* const* losses, cbp_ix stride);

/* The lane run for the fits of the table in force (NULL where none is
 * built), and its lanes in *width: 8 under AVX-512 for the fits of the
 * AVX2 and AVX-512 tables (_simd_lanes.h), unless cbp_fm_lanes_wide is 0. */
static int cbp_fm_lanes_wide = 1;  /* 0: the table's own width (for tests) */

static cbp_fm_lanes_fn cbp_fm_lanes_select(int* width)
{
#if defined(CBP_HAVE_AVX2)
    if (cbp_simd_fm_avx2()) {
#  if defined(CBP_HAVE_AVX512_LANES)
        if (cbp_fm_lanes_wide && cbp_simd_has_avx512()) {
            *width = 8;
            return cbp_fm_lanes_avx512;
        }
#  endif
        *width = 4;
        return cbp_fm_lanes_avx2;
    }
#endif
#if CBP_FM_BUILT
    if (strcmp(cbp_simd.name, "baseline") == 0) {
        *width = cbp_base_vw;
        return cbp_fm_lanes_base;
    }
#endif
    *width = 0;
    return NULL;
}

/* The pair run (two groups of lanes at once, _fm_lanes_body.h) of the lane
 * run cbp_fm_lanes_select picks, or NULL where that table has none. */
static cbp_fm_lanes_fn cbp_fm_lanes_pair_select(void)
{
    int width = 0;
    cbp_fm_lanes_fn run = cbp_fm_lanes_select(&width);
    (void)run;
#if defined(CBP_HAVE_AVX2)
#  if defined(CBP_HAVE_AVX512_LANES)
    if (run == cbp_fm_lanes_avx512) return cbp_fm_lanes_pair_avx512;
#  endif
    if (run == cbp_fm_lanes_avx2) return cbp_fm_lanes_pair_avx2;
#endif
    return NULL;
}

#endif /* CBP_FM_EPOCHS_H */
