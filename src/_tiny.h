/* The fused per-sample training step of fit() on tiny networks.
 *
 * fit() with batch_size 1 on a network of at most CBP_TINY_MAX_LAYERS dense
 * layers, every side at most CBP_TINY_MAX_WIDTH, no penalties and plain SGD
 * runs its steps here (src/_engine_tiny.pxi decides): forward, loss,
 * backward and update of one sample in one loop body over small local
 * arrays, with none of the per-step set-up of the general passes.
 *
 * Every number is the one the general passes compute, bit for bit: the
 * products replay the kernels of _simd.h for one row (mm_nn's sums from the
 * bias over k in order, mm_tn's 0 + x * dz, mm_nt's CBP_VW lane sums added
 * lane by lane, then its tail), compiled for the same instruction set as the
 * table in force, so that the compiler fuses the same multiply-adds; the
 * loss, activations and their derivatives replay the Cython kernels of
 * _kernels.pxd, with every product rounded on its own (CBP_TINY_ROUND), as
 * they are where no FMA is built in; the update is the sgd kernel's
 * p - (lr * g).  tests/test_tiny.py compares the two paths bit for bit.
 *
 * The body (_tiny_body.h) is compiled once per table of _simd.h: for the
 * baseline ISA, and for AVX2+FMA and AVX-512 where _simd.h builds those
 * tables.  Builds without vector extensions (CBP_HAVE_VEC undefined) have
 * no fused path.
 */
#ifndef CBP_TINY_H
#define CBP_TINY_H

#include "_simd.h"

#define CBP_TINY_MAX_LAYERS 4
#define CBP_TINY_MAX_WIDTH 8
/* parameters of the largest network taken: 4 layers of 8 x 8 plus a bias */
#define CBP_TINY_MAX_PARAMS (CBP_TINY_MAX_LAYERS * (CBP_TINY_MAX_WIDTH + 1) * CBP_TINY_MAX_WIDTH)

/* codes of _codes.pxd, as _tiny_body.h compares them */
#define CBP_TINY_ACT_IDENTITY 0
#define CBP_TINY_ACT_RELU 1
#define CBP_TINY_ACT_LEAKY 2
#define CBP_TINY_ACT_ELU 3
#define CBP_TINY_ACT_SIGMOID 4
#define CBP_TINY_ACT_TANH 5
#define CBP_TINY_ACT_SOFTMAX 6
#define CBP_TINY_LOSS_SE 0
#define CBP_TINY_LOSS_HALF_SE 1
#define CBP_TINY_LOSS_CCE 2
#define CBP_TINY_LOSS_BCE 3
#define CBP_TINY_CLIP_EPS 1e-7

/* The network, as the engine's layer table describes it. */
/* Where a call of the 1-1-1 loop left off inside an epoch (cbp_tiny_111_fused) */
typedef struct {
    cbp_ix row;     /* the row whose start z and cy hold; -1: none */
    double z, cy;   /* its first product and error offset */
    double p[4];    /* the parameters at the call's end, that they go with */
} cbp_tiny_carry;

typedef struct {
    int n_layers;
    int loss;
    double scale;          /* the loss's reduction scale for one row (loss_scale) */
    int width[CBP_TINY_MAX_LAYERS + 1];  /* width[0] inputs, width[l + 1] layer l's outputs */
    int act[CBP_TINY_MAX_LAYERS];
    double alpha[CBP_TINY_MAX_LAYERS];
    cbp_ix w_off[CBP_TINY_MAX_LAYERS];
    cbp_ix b_off[CBP_TINY_MAX_LAYERS];   /* -1: no bias */
    int w_train[CBP_TINY_MAX_LAYERS];    /* 1: the optimizer updates the weights */
    int b_train[CBP_TINY_MAX_LAYERS];    /* 1: and the bias */
    cbp_ix n_params;
    int standard;  /* 1: every layer biased and trainable, packed from 0 (1-1-1 is specialised) */
    cbp_map_fn vexp;      /* the table's, for softmax and sigmoid */
    cbp_map_fn vsigmoid;
    cbp_ix n_rows;         /* the epoch's rows (the engine sets them for each fit) */
    cbp_tiny_carry carry;  /* the engine sets carry.row to -1 */
} cbp_tiny_net;

/* A product rounded on its own: the compiler may not fuse it into an add. */
#if defined(__x86_64__) || defined(__i386__)
#  define CBP_TINY_ROUND(v) __asm__("" : "+x"(v))
#elif defined(__aarch64__)
#  define CBP_TINY_ROUND(v) __asm__("" : "+w"(v))
#else
#  define CBP_TINY_ROUND(v) ((void)0)
#endif

#define CBP_TINY_CAT_(a, b) a##b
#define CBP_TINY_CAT(a, b) CBP_TINY_CAT_(a, b)

typedef void (*cbp_tiny_run_fn)(cbp_tiny_net* net, double* params, double* grads,
                                const double* X, const double* Y, const int64_t* order,
                                cbp_ix row, cbp_ix count, double lr, double* total,
                                cbp_ix* hit, cbp_ix* seen);

#if defined(CBP_HAVE_VEC)
#  define CBP_TINY_BUILT 1
#  define CBP_TINY_SUFFIX _base
#  define CBP_TINY_ATTR
#  if defined(__AVX__)
#    define CBP_TINY_VW 4
#  else
#    define CBP_TINY_VW 2
#  endif
#  if defined(__FMA__)
#    define CBP_TINY_FMA 1
#  else
#    define CBP_TINY_FMA 0
#  endif
#  include "_tiny_body.h"
#  if defined(CBP_HAVE_AVX2)
#    define CBP_TINY_SUFFIX _avx2
#    define CBP_TINY_ATTR __attribute__((target("avx2,fma")))
#    define CBP_TINY_VW 4
#    define CBP_TINY_FMA 1
#    include "_tiny_body.h"
#  endif
#  if defined(CBP_HAVE_AVX512_LANES)
#    define CBP_TINY_SUFFIX _avx512
#    define CBP_TINY_ATTR __attribute__((target("avx512f,avx512dq,avx2,fma")))
#    define CBP_TINY_VW 8
#    define CBP_TINY_FMA 1
#    include "_tiny_body.h"
#  endif
#else
#  define CBP_TINY_BUILT 0
#endif

/* The fused run for the table in force (NULL: none in this build); net
 * takes the table's vexp and vsigmoid. */
static cbp_tiny_run_fn cbp_tiny_select(cbp_tiny_net* net)
{
    net->vexp = cbp_simd.vexp;
    net->vsigmoid = cbp_simd.vsigmoid;
#if defined(CBP_HAVE_AVX2)
#  if defined(CBP_HAVE_AVX512_LANES)
    if (strcmp(cbp_simd.name, "avx512") == 0) return cbp_tiny_run_avx512;
#  endif
    if (strcmp(cbp_simd.name, "avx2+fma") == 0) return cbp_tiny_run_avx2;
#endif
#if CBP_TINY_BUILT
    if (strcmp(cbp_simd.name, "baseline") == 0) return cbp_tiny_run_base;
#endif
    return NULL;
}

#endif /* CBP_TINY_H */
