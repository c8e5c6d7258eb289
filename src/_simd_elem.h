/* The elementwise vector helpers of _simd_body.h (broadcast, exp, the
 * logistic function, lane tests), for every CBP_VW: included by
 * _simd_body.h for each table and by _simd_lanes.h for the wider lanes of
 * the lane run.  Not a public header: no include guard on purpose.
 */
CBP_INL CBP_VD CBP_FN(cbp_splat)(double a)
{
#if CBP_VW == 8
    CBP_VD v = {a, a, a, a, a, a, a, a};
#elif CBP_VW == 4
    CBP_VD v = {a, a, a, a};
#else
    CBP_VD v = {a, a};
#endif
    return v;
}

/* ------------------------------------------------------------------ exp --
 * exp(x) = 2^k * exp(r), x = k ln2 + r, |r| <= ln2 / 2 (Cody-Waite split of
 * ln2), exp(r) by a polynomial of degree 11 (below), 2^k put into the
 * exponent bits.  Valid for x in [-708, 709],
 * where every result is a normal double (callers send arrays with
 * anything else to libm).  Error: at most 1.04 ulp of the exact exp(x)
 * on 25 million inputs; tests hold it to 2 ulp of np.exp. */
CBP_INL CBP_VD CBP_FN(cbp_expv)(CBP_VD x)
{
    const CBP_VD shifter = CBP_FN(cbp_splat)(6755399441055744.0); /* 1.5 * 2^52 */
    const CBP_VD log2e = CBP_FN(cbp_splat)(1.4426950408889634);
    const CBP_VD ln2hi = CBP_FN(cbp_splat)(6.93147180369123816490e-01);
    const CBP_VD ln2lo = CBP_FN(cbp_splat)(1.90821492927058770002e-10);
    CBP_VD t = x * log2e + shifter;
    CBP_VD k = t - shifter;                  /* round(x / ln2), exactly */
    CBP_VD r = (x - k * ln2hi) - k * ln2lo;  /* k * ln2hi is exact */
    /* exp(r) = 1 + (r + r^2 u), u = sum c_{j+2} r^j, j <= 9: a Remez
     * exchange's polynomial for the relative error of exp(r) on
     * |r| <= ln2 / 2, in doubles (ci/exp_coefficients.py): error < 8.2e-18
     * there.  Degree 13 of the Taylor series, before, left 4e-18 for two
     * more multiply-adds; the last rounding (up to 1.1e-16) is most of the
     * error either way.  By Estrin's scheme (a chain of 4 multiply-adds
     * instead of Horner's 9), the 1 added last so that its rounding is the
     * last one. */
#define CBP_C(i, v) const CBP_VD c##i = CBP_FN(cbp_splat)(v)
    CBP_C(2, 0.5000000000000014); CBP_C(3, 0.16666666666666483);
    CBP_C(4, 0.04166666666650621); CBP_C(5, 0.008333333333452845);
    CBP_C(6, 0.001388888894908277); CBP_C(7, 0.00019841269592468474);
    CBP_C(8, 2.4801488055496975e-05); CBP_C(9, 2.755751240643255e-06);
    CBP_C(10, 2.7631885566917626e-07); CBP_C(11, 2.502280734250313e-08);
#undef CBP_C
    CBP_VD r2 = r * r;
    CBP_VD r4 = r2 * r2;
    CBP_VD a0 = c2 + c3 * r, a1 = c4 + c5 * r, a2 = c6 + c7 * r;
    CBP_VD a3 = c8 + c9 * r, a4 = c10 + c11 * r;
    CBP_VD b0 = a0 + a1 * r2, b1 = a2 + a3 * r2;
    CBP_VD u = b0 + (b1 + a4 * r4) * r4;
    CBP_VD p = CBP_FN(cbp_splat)(1.0) + (r + r2 * u);
    /* the low bits of t hold k: add k to the exponent field of p */
    CBP_VI ki = (CBP_VI)t - (CBP_VI)shifter;
    return (CBP_VD)((CBP_VI)p + (ki << 52));
}

/* Lanes of x outside [-708, 709], or NaN: all bits set. */
CBP_INL CBP_VI CBP_FN(cbp_exp_out)(CBP_VD x)
{
    return ~((CBP_VI)(x >= CBP_FN(cbp_splat)(-708.0)) & (CBP_VI)(x <= CBP_FN(cbp_splat)(709.0)));
}

/* 1 if any lane of m is not 0: one test instruction on x86 (AVX-512F's
 * vptestmq, AVX's vptest), else the lanes OR-ed. */
CBP_INL int CBP_FN(cbp_any)(CBP_VI m)
{
#if CBP_VW == 8 && (defined(__x86_64__) || defined(__i386__))
    return _mm512_test_epi64_mask((__m512i)m, (__m512i)m) != 0;
#elif CBP_VW == 4 && (defined(__x86_64__) || defined(__i386__))
    return !_mm256_testz_si256((__m256i)m, (__m256i)m);
#else
    int64_t t = 0;
    int l;
    CBP_UNROLL for (l = 0; l < CBP_VW; l++) t |= m[l];
    return t != 0;
#endif
}

/* The output delta of a whole-epoch run (_fm_epochs_body.h, its lanes in
 * _fm_lanes_body.h) from the loss's gradient g at the output p: g times
 * the sigmoid's p (1 - p), that product rounded on its own, or g where the
 * ReLU's p > 0 (0 elsewhere, NaN included); act a CBP_FM_ACT_ code. */
CBP_INL CBP_VD CBP_FN(cbp_fm_out_delta)(int act, CBP_VD g, CBP_VD p)
{
    if (act == CBP_FM_ACT_SIGMOID) {
        CBP_VD a1 = p * (CBP_FN(cbp_splat)(1.0) - p);
        CBP_NOFUSE(a1);
        return g * a1;
    }
    if (act == CBP_FM_ACT_RELU) return (CBP_VD)((CBP_VI)g & (CBP_VI)(p > CBP_FN(cbp_splat)(0.0)));
    return g;
}

/* 1 / (1 + exp(x)), for x within [-708, 709] */
CBP_INL CBP_VD CBP_FN(cbp_logistic)(CBP_VD x)
{
    const CBP_VD one = CBP_FN(cbp_splat)(1.0);
    return one / (one + CBP_FN(cbp_expv)(x));
}

