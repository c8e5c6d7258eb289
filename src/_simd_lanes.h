/* The lane run of _fm_lanes_body.h with 8 lanes under AVX-512, for the
 * fits of the AVX2+FMA table (whose feature-major kernels hold 4 rows a
 * vector: CBP_RW 4).  Each lane's arithmetic is the 4-lane run's, so the
 * numbers are the same, bit for bit; a vector holds twice the networks.
 * Included by _simd.h where the AVX2 table is built.  Not a public header:
 * no include guard on purpose.
 */
typedef double cbp_v8d __attribute__((vector_size(64), aligned(8), may_alias));
typedef int64_t cbp_v8i __attribute__((vector_size(64), aligned(8), may_alias));

#define CBP_SUFFIX _avx512
#define CBP_ATTR __attribute__((target("avx512f,avx512dq,avx2,fma")))
#define CBP_VW 8
#define CBP_RW 4
#define CBP_VD cbp_v8d
#define CBP_VI cbp_v8i
#define CBP_MAX0(v, zero) CBP_MAX0_MASK(v, zero)
#define CBP_FN(name) CBP_CAT(name, CBP_SUFFIX)
#define CBP_INL CBP_ATTR static inline __attribute__((always_inline))
#include "_simd_elem.h"
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

/* 1 if this CPU and OS can run the 8-lane run. */
static int cbp_cpu_has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
}
