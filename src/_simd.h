/* Small-matrix products and element-wise exponentials for cbp's native core.
 *
 * Dense layers narrower than the BLAS crossover, and every layer with a side
 * too thin for dgemm to pay (2 inputs, 3 classes, 1 output), run here.  The
 * kernels are written once, in _simd_body.h, with GCC/Clang vector
 * extensions, and compiled three times on x86-64: for the baseline ISA of
 * the build (SSE2 in a wheel: 2 doubles a vector), for AVX2 with FMA (4)
 * and for AVX-512 (8; _simd_lanes.h, with the AVX2 table's feature-major
 * kernels).  At import, cbp_simd_select("auto") picks the widest table the
 * CPU and the OS support.  Compilers without vector extensions (MSVC), and
 * builds with CBP_SIMD_PLAIN defined, get the plain loops at the end of this
 * file.
 *
 * All matrices are row-major with explicit leading dimensions.  No kernel
 * allocates, reads past its bounds, or touches Python objects.  The sums run
 * over k in increasing order within each SIMD lane; the lanes are added at
 * the end, so results differ from a plain loop only by rounding.
 *
 *   mm_nn:    C (m, N) := epi(A (m, K) @ B (K, N) [+ bias])     vectorised along N
 *   mm_nt:    C (m, N) := epi(A (m, K) @ Bt(N, K).T [+ bias])   vectorised along K
 *   mm_tn:    R (K, N) := A (m, K).T @ B (m, N), stored as C = R or C = R.T,
 *             colsum := the column sums of B and asum := those of A, when
 *             not NULL
 *   vexp:     y := exp(x), at most 1.04 ulp from the exact value on 25M
 *             inputs measured (_simd_elem.h)
 *   vsigmoid: a := 1 / (1 + exp(-z))
 *   sgd:      p := p - lr * g (lr * g rounded first, as NumPy computes it), the
 *             old p saved into snap first unless snap is NULL; returns 1 if a
 *             new p is NaN or infinite, else 0
 *   adam_sk:  scikit-learn's Adam step, every operation rounded on its own as
 *             NumPy rounds it (no fused multiply-add):
 *             m := b1 * m + (1 - b1) * g;  v := b2 * v + (1 - b2) * (g * g);
 *             p := p + (-lr_t) * m / (sqrt(v) + eps); returns 1 if a new p, m
 *             or v is NaN or infinite, else 0
 */
#ifndef CBP_SIMD_H
#define CBP_SIMD_H

#include <math.h>
#include <stddef.h>
#if defined(__x86_64__) || defined(__i386__)
#  include <immintrin.h>  /* (test intrinsics in the functions built for AVX and AVX-512) */
#endif
#include <stdint.h>
#include <string.h>

typedef ptrdiff_t cbp_ix;

/* Epilogues of mm_nn and mm_nt, applied to each entry v of C as it is stored. */
#define CBP_EPI_NONE 0
#define CBP_EPI_RELU 1  /* v if v > 0 else 0 */
#define CBP_EPI_GATE 2  /* v if gate > 0 else 0; gate has C's shape and ldc */

/* mm_nn keeps B in registers for K <= 4 from this many rows on */
#define CBP_NN_STREAM_ROWS 8

typedef void (*cbp_mm_nn_fn)(cbp_ix m, cbp_ix K, cbp_ix N, const double* A, cbp_ix lda,
                             const double* B, cbp_ix ldb, const double* bias, double* C,
                             cbp_ix ldc, int epi, const double* gate);
typedef void (*cbp_mm_tn_fn)(cbp_ix m, cbp_ix K, cbp_ix N, const double* A, cbp_ix lda,
                             const double* B, cbp_ix ldb, double* C, cbp_ix ldc, int trans,
                             double* colsum, double* asum);
typedef void (*cbp_map_fn)(cbp_ix n, const double* x, double* y);
typedef int (*cbp_sgd_fn)(cbp_ix n, double lr, double* p, const double* g, double* snap);
typedef int (*cbp_adam_sk_fn)(cbp_ix n, double lr_t, double b1, double b2, double eps, double* p,
                              const double* g, double* m, double* v);
/* Activations fused into feature_major_forward and feature_major_backward */
#define CBP_FEATURE_MAJOR_NONE 0
#define CBP_FEATURE_MAJOR_RELU 1
#define CBP_FEATURE_MAJOR_SIGMOID 2

typedef void (*cbp_feature_major_forward_fn)(cbp_ix ld, cbp_ix K, cbp_ix N, const double* xT,
                                             const double* W, const double* bias, double* out,
                                             int act);
typedef void (*cbp_feature_major_backward_fn)(cbp_ix ld, cbp_ix K, cbp_ix N, const double* xT,
                                              const double* dT, const double* W, double* gW,
                                              double* gb, double* dxT, const double* A, int act);

/* The network of a whole-epoch run (_fm_epochs.h), on the engine's
 * feature-major buffers: n rows in ld lanes, layer l's weights at w_off[l]
 * (n_in x n_out, row-major) and bias at b_off[l] (-1: none), its output at at[l] and
 * its delta at dt[l]; fact[l] the activation feature_major_forward fuses;
 * one trainable range, [0, n_params). */
#define CBP_FM_MAX_LAYERS 4
#define CBP_FM_LOSS_SE 0
#define CBP_FM_LOSS_HALF_SE 1
#define CBP_FM_ACT_IDENTITY 0
#define CBP_FM_ACT_RELU 1
#define CBP_FM_ACT_SIGMOID 4
typedef struct {
    cbp_ix n, ld, n_layers, n_params;
    int loss, out_act;
    double scale;  /* loss_scale of the batch */
    cbp_ix width[CBP_FM_MAX_LAYERS + 1];
    int fact[CBP_FM_MAX_LAYERS];
    cbp_ix w_off[CBP_FM_MAX_LAYERS], b_off[CBP_FM_MAX_LAYERS];
    const double* xt;
    double* at[CBP_FM_MAX_LAYERS];
    double* dt[CBP_FM_MAX_LAYERS];
    double* zt_out;
} cbp_fm_net;

/* fit_many's lane run on the shapes cbp_fm_lanes_reg_shape names
 * (_fm_lanes_body.h): 2, in registers and two groups of lanes at once
 * where the table has a pair run; 1, in registers, a group at a time; 0,
 * on its buffers (the same numbers; for tests and timings) */
static int cbp_fm_lanes_reg_on = 2;
/* the register run's calls, a group at a time ([0]) and in pairs ([1]), and
 * the epochs it handed to the run on its buffers for libm's exp ([2]):
 * counted for tests (_fm_lanes_reg_calls), relaxed atomics (threads) */
static long cbp_fm_lanes_reg_calls[3];

/* The vectors of work a group of the lane run takes (_fm_lanes_body.h):
 * G, S, R, the zero bias (the widest layer), and each layer's activations
 * and deltas on ld rows. */
static inline cbp_ix cbp_fm_lanes_work(const cbp_fm_net* net)
{
    cbp_ix size = 3 * net->n_params + 1, l;
    for (l = 0; l < net->n_layers; l++) size += 2 * net->width[l + 1] * net->ld + net->width[l + 1];
    return size;
}

/* 1 where the lane run keeps the values in registers (cbp_fm_lanes_reg):
 * two dense layers 2-H-1, H 2, 4 or 8, on one vector of rows (1 to 4), a
 * ReLU or sigmoid hidden layer, a sigmoid output or an identity one,
 * biased everywhere or nowhere, the parameters laid out in order. */
static inline int cbp_fm_lanes_reg_shape(const cbp_fm_net* net)
{
    const cbp_ix* w = net->width;
    const int hb = net->b_off[0] >= 0;
    if (net->n_layers != 2 || net->ld != 4 || net->n < 1 || net->n > 4) return 0;
    if (w[0] != 2 || (w[1] != 2 && w[1] != 4 && w[1] != 8) || w[2] != 1) return 0;
    if (net->fact[0] != CBP_FEATURE_MAJOR_RELU && net->fact[0] != CBP_FEATURE_MAJOR_SIGMOID)
        return 0;
    if (!(net->fact[1] == CBP_FEATURE_MAJOR_SIGMOID && net->out_act == CBP_FM_ACT_SIGMOID) &&
        !(net->fact[1] == CBP_FEATURE_MAJOR_NONE && net->out_act == CBP_FM_ACT_IDENTITY))
        return 0;
    if ((net->b_off[1] >= 0) != hb || net->w_off[0] != 0) return 0;
    if (hb && (net->b_off[0] != 2 * w[1] || net->b_off[1] != 4 * w[1])) return 0;
    if (net->w_off[1] != (hb ? 3 : 2) * w[1]) return 0;
    return net->n_params == (hb ? 4 * w[1] + 1 : 3 * w[1]);
}

/* The network of a blocked whole-epoch run (_blk_epochs_body.h): two
 * dense layers ni -> nh (hact: ReLU or sigmoid) -> no, on n rows given
 * feature-major in xt (ni x ld) and yt (no x ld), ld a multiple of
 * CBP_BLK_LD, the padding 0; work and zeros, CBP_BLK_WORK(ni, nh, no) doubles;
 * one trainable range, [0, n_params). */
#define CBP_BLK_MAX_SIDE 4
#define CBP_BLK_RV 3   /* vectors of rows a block */
#define CBP_BLK_LD 24  /* (CBP_BLK_RV vectors of the widest table) */
#define CBP_BLK_MIN_ROWS 16  /* fewer rows: the general passes */
#define CBP_BLK_WORK(ni, nh, no) \
    (8 * ((ni) * ((nh) + 1) + (nh) + (nh) * (no) + (no) + 4 + CBP_BLK_RV * (nh)) + (nh) + (no))
#define CBP_BLK_LOSS_SE 0
#define CBP_BLK_LOSS_HALF_SE 1
#define CBP_BLK_LOSS_CCE 2
#define CBP_BLK_CLIP 1e-7  /* the cross-entropy's clip (_kernels.pxd's CBP_CLIP_EPS) */
typedef struct {
    cbp_ix n, ld, ni, nh, no, n_params;
    int loss, hact;  /* CBP_BLK_LOSS_*, CBP_FM_ACT_RELU or _SIGMOID */
    int onehot;      /* 1: every row of yt is 0 but for one 1 */
    double scale;    /* loss_scale of the batch */
    cbp_ix w_off[2], b_off[2];
    cbp_ix acc_at;   /* where an epoch's accuracy goes, from its loss */
    const double* xt;
    const double* yt;
    double* work;        /* the run's sums and block */
    const double* zeros; /* nh + no zeros: the bias of a layer without one */
} cbp_blk_net;

typedef struct {
    cbp_mm_nn_fn mm_nn;
    cbp_mm_nn_fn mm_nt;
    cbp_mm_tn_fn mm_tn;
    cbp_map_fn vexp;
    cbp_map_fn vsigmoid;
    cbp_feature_major_forward_fn feature_major_forward;
    cbp_feature_major_backward_fn feature_major_backward;
    cbp_sgd_fn sgd;
    cbp_adam_sk_fn adam_sk;
    const char* name;
} cbp_simd_table;

#define CBP_CAT_(a, b) a##b
#define CBP_CAT(a, b) CBP_CAT_(a, b)

#if (defined(__GNUC__) || defined(__clang__)) && !defined(CBP_SIMD_PLAIN)
#  define CBP_HAVE_VEC 1
#  if defined(__clang__)
#    define CBP_UNROLL _Pragma("unroll")
#  else
#    define CBP_UNROLL _Pragma("GCC unroll 16")
#  endif
/* (CBP_VD) lanes of the concatenation a ++ b */
#  if defined(__clang__) || __GNUC__ >= 12
#    define CBP_SHUF(a, b, ...) ((CBP_VD)__builtin_shufflevector(a, b, __VA_ARGS__))
#  else
#    define CBP_SHUF(a, b, ...) ((CBP_VD)__builtin_shuffle(a, b, (CBP_VI){__VA_ARGS__}))
#  endif
/* Vectors of 2 and 4 doubles (and int64 masks), loadable from any 8-byte
 * aligned address, aliasing doubles. */
typedef double cbp_v2d __attribute__((vector_size(16), aligned(8), may_alias));
typedef int64_t cbp_v2i __attribute__((vector_size(16), aligned(8), may_alias));
typedef double cbp_v4d __attribute__((vector_size(32), aligned(8), may_alias));
typedef int64_t cbp_v4i __attribute__((vector_size(32), aligned(8), may_alias));
typedef double cbp_p2d __attribute__((vector_size(16)));  /* plain, for builtins */
typedef double cbp_p4d __attribute__((vector_size(32)));

/* v, as the compiler must see it: a value it cannot fuse into a multiply-add
 * with what uses it (gcc and clang contract a * b + c by default where the
 * ISA has FMA). */
#  if defined(__x86_64__) || defined(__i386__)
#    define CBP_NOFUSE(v) __asm__("" : "+x"(v))
#  elif defined(__aarch64__)
#    define CBP_NOFUSE(v) __asm__("" : "+w"(v))
#  else
#    define CBP_NOFUSE(v) ((void)0)
#  endif

/* max(v, 0) as `v if v > 0 else 0` (NaN and -0 give +0): x86's maxpd
 * returns its second operand unless the first is greater, which is that. */
#  define CBP_MAX0_MASK(v, zero) ((__typeof__(v))((__typeof__((v) > (zero)))(v) & ((v) > (zero))))
#  define CBP_SUFFIX _base
#  define CBP_ATTR
#  define CBP_NAME "baseline"
#  if defined(__AVX__)
#    define CBP_VW 4
#    define CBP_VD cbp_v4d
#    define CBP_VI cbp_v4i
#    define CBP_MAX0(v, zero) ((CBP_VD)__builtin_ia32_maxpd256((cbp_p4d)(v), (cbp_p4d)(zero)))
#    define CBP_SQRT(v) ((CBP_VD)__builtin_ia32_sqrtpd256((cbp_p4d)(v)))
#  else  /* SSE2, NEON, ...: 128-bit registers */
#    define CBP_VW 2
#    define CBP_VD cbp_v2d
#    define CBP_VI cbp_v2i
#    if defined(__SSE2__)
#      define CBP_MAX0(v, zero) ((CBP_VD)__builtin_ia32_maxpd((cbp_p2d)(v), (cbp_p2d)(zero)))
#      define CBP_SQRT(v) ((CBP_VD)__builtin_ia32_sqrtpd((cbp_p2d)(v)))
#    else
#      define CBP_MAX0(v, zero) CBP_MAX0_MASK(v, zero)
#      define CBP_SQRT(v) ((CBP_VD){sqrt((v)[0]), sqrt((v)[1])})
#    endif
#  endif
#  if defined(__GNUC__) && !defined(__clang__)
#    pragma GCC diagnostic ignored "-Wpsabi"  /* vectors pass only between inlined calls */
#  endif
#  include "_simd_body.h"
static const int cbp_base_vw = CBP_VW;  /* the baseline table's lanes */
#  undef CBP_VW
#  undef CBP_VD
#  undef CBP_VI
#  undef CBP_MAX0
#  undef CBP_SQRT
/* the table in use, upgraded by cbp_simd_select() */
static cbp_simd_table cbp_simd = {cbp_mm_nn_base, cbp_mm_nt_base, cbp_mm_tn_base,
                                  cbp_vexp_base, cbp_vsigmoid_base, cbp_feature_major_forward_base,
                                  cbp_feature_major_backward_base, cbp_sgd_base,
                                  cbp_adam_sk_base, "baseline"};
#  undef CBP_SUFFIX
#  undef CBP_ATTR
#  undef CBP_NAME
#  define CBP_BASE_TABLE cbp_simd_table_base

#  if (defined(__x86_64__) || defined(_M_X64)) && !defined(__AVX2__) && !defined(CBP_NO_AVX2)
#    define CBP_HAVE_AVX2 1
#    define CBP_SUFFIX _avx2
#    define CBP_ATTR __attribute__((target("avx2,fma")))
#    define CBP_NAME "avx2+fma"
#    define CBP_VW 4
#    define CBP_VD cbp_v4d
#    define CBP_VI cbp_v4i
#    define CBP_MAX0(v, zero) ((CBP_VD)__builtin_ia32_maxpd256((cbp_p4d)(v), (cbp_p4d)(zero)))
#    define CBP_SQRT(v) ((CBP_VD)__builtin_ia32_sqrtpd256((cbp_p4d)(v)))
#    include "_simd_body.h"
#    undef CBP_VW
#    undef CBP_VD
#    undef CBP_VI
#    undef CBP_MAX0
#    undef CBP_SQRT
#    undef CBP_SUFFIX
#    undef CBP_ATTR
#    undef CBP_NAME
#    if !defined(CBP_NO_AVX512)
#      define CBP_HAVE_AVX512_LANES 1
#      include "_simd_lanes.h"
#    endif
#  endif

#else /* no vector extensions: plain loops, same contracts; this build's "baseline" */

static double cbp_epi_plain(int epi, double v, const double* g)
{
    if (epi == CBP_EPI_RELU) return v > 0.0 ? v : 0.0;
    if (epi == CBP_EPI_GATE) return *g > 0.0 ? v : 0.0;
    return v;
}

static void cbp_mm_nn_plain(cbp_ix m, cbp_ix K, cbp_ix N, const double* A, cbp_ix lda,
                            const double* B, cbp_ix ldb, const double* bias, double* C,
                            cbp_ix ldc, int epi, const double* gate)
{
    cbp_ix i, k, j;
    for (i = 0; i < m; i++) {
        double* c = C + i * ldc;
        for (j = 0; j < N; j++) c[j] = 0.0;
        for (k = 0; k < K; k++) {
            double a = A[i * lda + k];
            const double* b = B + k * ldb;
            for (j = 0; j < N; j++) c[j] += a * b[j];
        }
        if (bias) for (j = 0; j < N; j++) c[j] += bias[j];
        for (j = 0; j < N; j++)
            c[j] = cbp_epi_plain(epi, c[j], epi == CBP_EPI_GATE ? gate + i * ldc + j : c + j);
    }
}

static void cbp_mm_nt_plain(cbp_ix m, cbp_ix K, cbp_ix N, const double* A, cbp_ix lda,
                            const double* Bt, cbp_ix ldb, const double* bias, double* C,
                            cbp_ix ldc, int epi, const double* gate)
{
    cbp_ix i, k, j;
    for (i = 0; i < m; i++)
        for (j = 0; j < N; j++) {
            double s = 0.0;
            for (k = 0; k < K; k++) s += A[i * lda + k] * Bt[j * ldb + k];
            if (bias) s += bias[j];
            C[i * ldc + j] = cbp_epi_plain(epi, s, epi == CBP_EPI_GATE ? gate + i * ldc + j : &s);
        }
}

static void cbp_mm_tn_plain(cbp_ix m, cbp_ix K, cbp_ix N, const double* A, cbp_ix lda,
                            const double* B, cbp_ix ldb, double* C, cbp_ix ldc, int trans,
                            double* colsum, double* asum)
{
    cbp_ix r, k, j;
    for (k = 0; k < K; k++)
        for (j = 0; j < N; j++) {
            double s = 0.0;
            for (r = 0; r < m; r++) s += A[r * lda + k] * B[r * ldb + j];
            if (trans) C[j * ldc + k] = s; else C[k * ldc + j] = s;
        }
    if (colsum)
        for (j = 0; j < N; j++) {
            double s = 0.0;
            for (r = 0; r < m; r++) s += B[r * ldb + j];
            colsum[j] = s;
        }
    if (asum)
        for (k = 0; k < K; k++) {
            double s = 0.0;
            for (r = 0; r < m; r++) s += A[r * lda + k];
            asum[k] = s;
        }
}

static void cbp_vexp_plain(cbp_ix n, const double* x, double* y)
{
    cbp_ix i;
    for (i = 0; i < n; i++) y[i] = exp(x[i]);
}

static void cbp_vsigmoid_plain(cbp_ix n, const double* z, double* a)
{
    cbp_ix i;
    for (i = 0; i < n; i++) a[i] = 1.0 / (1.0 + exp(-z[i]));
}

static void cbp_feature_major_forward_plain(cbp_ix ld, cbp_ix K, cbp_ix N, const double* xT,
                                            const double* W, const double* bias, double* out,
                                            int act)
{
    cbp_ix j, k, v;
    for (j = 0; j < N; j++)
        for (v = 0; v < ld; v++) {
            double s = bias ? bias[j] : 0.0;
            for (k = 0; k < K; k++) s += W[k * N + j] * xT[k * ld + v];
            if (act == CBP_FEATURE_MAJOR_RELU) s = s > 0.0 ? s : 0.0;
            else if (act == CBP_FEATURE_MAJOR_SIGMOID) s = 1.0 / (1.0 + exp(-s));
            out[j * ld + v] = s;
        }
}

static void cbp_feature_major_backward_plain(cbp_ix ld, cbp_ix K, cbp_ix N, const double* xT,
                                             const double* dT, const double* W, double* gW,
                                             double* gb, double* dxT, const double* A, int act)
{
    cbp_ix j, k, v;
    for (k = 0; k < K; k++)
        for (j = 0; j < N; j++) {
            double s = 0.0;
            for (v = 0; v < ld; v++) s += xT[k * ld + v] * dT[j * ld + v];
            gW[k * N + j] = s;
        }
    if (gb)
        for (j = 0; j < N; j++) {
            double s = 0.0;
            for (v = 0; v < ld; v++) s += dT[j * ld + v];
            gb[j] = s;
        }
    if (dxT)
        for (k = 0; k < K; k++)
            for (v = 0; v < ld; v++) {
                double s = 0.0, a = act != CBP_FEATURE_MAJOR_NONE ? A[k * ld + v] : 0.0;
                for (j = 0; j < N; j++) s += W[k * N + j] * dT[j * ld + v];
                if (act == CBP_FEATURE_MAJOR_RELU) s = a > 0.0 ? s : 0.0;
                else if (act == CBP_FEATURE_MAJOR_SIGMOID) s = s * (a * (1.0 - a));
                dxT[k * ld + v] = s;
            }
}

static int cbp_sgd_plain(cbp_ix n, double lr, double* p, const double* g, double* snap)
{
    cbp_ix i;
    int bad = 0;
    for (i = 0; i < n; i++) {
        volatile double t = lr * g[i];  /* rounded on its own, as in NumPy */
        double q;
        if (snap) snap[i] = p[i];
        q = p[i] - t;
        p[i] = q;
        bad |= (q - q) != (q - q);
    }
    return bad;
}

static int cbp_adam_sk_plain(cbp_ix n, double lr_t, double b1, double b2, double eps,
                             double* p, const double* g, double* m, double* v)
{
    cbp_ix i;
    int bad = 0;
    for (i = 0; i < n; i++) {
        volatile double a = b1 * m[i], b = (1.0 - b1) * g[i];  /* each rounded, as NumPy */
        volatile double c = b2 * v[i], d = (1.0 - b2) * (g[i] * g[i]);
        double mi = a + b, vi = c + d, q;
        m[i] = mi;
        v[i] = vi;
        q = p[i] + -lr_t * mi / (sqrt(vi) + eps);
        p[i] = q;
        bad |= ((q - q) + (mi - mi) + (vi - vi)) != ((q - q) + (mi - mi) + (vi - vi));
    }
    return bad;
}

#  define CBP_PLAIN_INIT {cbp_mm_nn_plain, cbp_mm_nt_plain, cbp_mm_tn_plain, \
                          cbp_vexp_plain, cbp_vsigmoid_plain, cbp_feature_major_forward_plain, \
                          cbp_feature_major_backward_plain, cbp_sgd_plain, cbp_adam_sk_plain, \
                          "baseline"}
static const cbp_simd_table cbp_simd_table_plain = CBP_PLAIN_INIT;
static cbp_simd_table cbp_simd = CBP_PLAIN_INIT;
#  define CBP_BASE_TABLE cbp_simd_table_plain
#endif

/* 1 if this CPU and OS can run the AVX2+FMA table. */
static int cbp_cpu_has_avx2(void)
{
#if defined(CBP_HAVE_AVX2)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* 1: run no 512-bit code, as on a CPU without AVX-512 (CBP_NO_AVX512=1 at
 * import, read by _tuning.pxi before the table is chosen) */
static int cbp_avx512_off = 0;

/* 1 if this build has the AVX-512 code (the table, the 8-lane run), this CPU
 * and OS can run it and it is not turned off. */
static int cbp_simd_has_avx512(void)
{
#if defined(CBP_HAVE_AVX512_LANES)
    return !cbp_avx512_off && cbp_cpu_has_avx2() && cbp_cpu_has_avx512();
#else
    return 0;
#endif
}

/* 1 if the table in force is the AVX2 table or the AVX-512 one, which
 * shares its feature-major kernels (and so its whole-epoch, lane and
 * per-sample runs). */
static int cbp_simd_fm_avx2(void)
{
    return strcmp(cbp_simd.name, "avx2+fma") == 0 || strcmp(cbp_simd.name, "avx512") == 0;
}

/* Select a table: "auto" (the best this CPU runs), "baseline", "avx2+fma"
 * or "avx512".  Returns 0, or -1 (table unchanged) when the request cannot
 * be met. */
static int cbp_simd_select(const char* want)
{
    if (strcmp(want, "auto") == 0) {
#if defined(CBP_HAVE_AVX512_LANES)
        if (cbp_simd_has_avx512()) {
            cbp_simd = cbp_simd_table_avx512;
            return 0;
        }
#endif
#if defined(CBP_HAVE_AVX2)
        if (cbp_cpu_has_avx2()) { cbp_simd = cbp_simd_table_avx2; return 0; }
#endif
        cbp_simd = CBP_BASE_TABLE;
        return 0;
    }
    if (strcmp(want, "baseline") == 0 || strcmp(want, CBP_BASE_TABLE.name) == 0) {
        cbp_simd = CBP_BASE_TABLE;
        return 0;
    }
#if defined(CBP_HAVE_AVX2)
    if (strcmp(want, "avx2+fma") == 0 && cbp_cpu_has_avx2()) {
        cbp_simd = cbp_simd_table_avx2;
        return 0;
    }
#endif
#if defined(CBP_HAVE_AVX512_LANES)
    if (strcmp(want, "avx512") == 0 && cbp_simd_has_avx512()) {
        cbp_simd = cbp_simd_table_avx512;
        return 0;
    }
#endif
    return -1;
}

#endif /* CBP_SIMD_H */
