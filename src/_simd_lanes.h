/* The AVX-512 table (8 doubles a vector), and the lane run of
 * _fm_lanes_body.h with 8 lanes.  Included by _simd.h where the AVX2 table
 * is built.  Not a public header: no include guard on purpose.
 *
 * The table: the products, exp, sigmoid and the updates of _simd_body.h
 * at 8 lanes, with the AVX2 table's feature-major kernels, whole-epoch run
 * and fused per-sample step (the feature-major buffers hold 4 rows a
 * vector), so that a network on the feature-major path computes the same
 * numbers under both tables.  cbp_simd_select("auto") picks it where the
 * CPU and the OS run AVX-512F and AVX-512DQ.
 *
 * The lane run: 8 networks a vector for the fits of the AVX2 table and of
 * this one (CBP_RW 4, their feature-major rows a vector).  Each lane's
 * arithmetic is the 4-lane run's, so the numbers are the same, bit for
 * bit; a vector holds twice the networks.
 */
typedef double cbp_v8d __attribute__((vector_size(64), aligned(8), may_alias));
typedef int64_t cbp_v8i __attribute__((vector_size(64), aligned(8), may_alias));

#define CBP_SUFFIX _avx512
#define CBP_ATTR __attribute__((target("avx512f,avx512dq,avx2,fma")))
#define CBP_NAME "avx512"
#define CBP_VW 8
#define CBP_VD cbp_v8d
#define CBP_VI cbp_v8i
#define CBP_MAX0(v, zero) ((CBP_VD)_mm512_max_pd((__m512d)(v), (__m512d)(zero)))
#define CBP_SQRT(v) ((CBP_VD)_mm512_sqrt_pd((__m512d)(v)))
/* its feature-major kernels, and its tiles for a remainder of 4 to 7 columns */
#define CBP_SIMD_NARROW _avx2
#include "_simd_body.h"
#undef CBP_SIMD_NARROW
#undef CBP_NAME
#undef CBP_SQRT

#define CBP_RW 4
#define CBP_FN(name) CBP_CAT(name, CBP_SUFFIX)
#define CBP_INL CBP_ATTR static inline __attribute__((always_inline))
#include "_fm_lanes_body.h"
#undef CBP_FN
#undef CBP_INL
#undef CBP_MAX0
#undef CBP_VI
#undef CBP_VD
#undef CBP_RW
#undef CBP_VW
#undef CBP_ATTR
#undef CBP_SUFFIX

/* The AVX2 table's whole-epoch run (4 rows a vector), built again for
 * AVX-512VL for the fits of this table: its 32 vector registers hold what
 * the run keeps from one epoch to the next (cbp_fm_epochs_reg), where 16
 * spill to the stack.  The same source on the AVX2 table's kernels, so the
 * same numbers, bit for bit (tests/test_fm_epochs.py). */
#define CBP_SUFFIX _avx512n
#define CBP_ATTR __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma")))
#define CBP_VW 4
#define CBP_VD cbp_v4d
#define CBP_VI cbp_v4i
#define CBP_MAX0(v, zero) ((CBP_VD)__builtin_ia32_maxpd256((cbp_p4d)(v), (cbp_p4d)(zero)))
#define CBP_FN(name) CBP_CAT(name, CBP_SUFFIX)
#define CBP_FK(name) CBP_CAT(name, _avx2)
#define CBP_INL CBP_ATTR static inline __attribute__((always_inline))
#define CBP_LD(p) (*(const CBP_VD*)(p))
#define CBP_ST(p, v) (*(CBP_VD*)(p) = (v))
#define CBP_FM_ZMM 1  /* a sigmoid hidden layer's vectors at 8 lanes */
#include "_fm_epochs_body.h"
#undef CBP_FM_ZMM
#undef CBP_ST
#undef CBP_LD
#undef CBP_INL
#undef CBP_FK
#undef CBP_FN
#undef CBP_MAX0
#undef CBP_VI
#undef CBP_VD
#undef CBP_VW
#undef CBP_ATTR
#undef CBP_SUFFIX

/* 1 if this CPU and OS can run the AVX-512 table and the 8-lane run. */
static int cbp_cpu_has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
}
