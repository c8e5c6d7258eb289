/* The kernels of _simd.h, instantiated once per instruction set.
 *
 * Included by _simd.h with CBP_SUFFIX (name suffix), CBP_ATTR (function
 * attributes: empty, or a target ISA), CBP_NAME, and the vector types
 * CBP_VD (CBP_VW doubles) and CBP_VI (CBP_VW int64) defined.  With
 * CBP_SIMD_NARROW defined (the suffix of a 4-wide table), the table takes
 * that table's feature-major kernels instead of building its own, builds no
 * whole-epoch or lane run (the AVX-512 table: feature-major buffers hold 4
 * rows a vector), and runs a remainder of 4 to 7 columns of mm_nn and mm_tn
 * with that table's tiles (the same sums per column).  Not a public header: no include guard on purpose.
 */
#define CBP_FN(name) CBP_CAT(name, CBP_SUFFIX)
#define CBP_INL CBP_ATTR static inline __attribute__((always_inline))
#define CBP_LD(p) (*(const CBP_VD*)(p))
#define CBP_ST(p, v) (*(CBP_VD*)(p) = (v))
#include "_simd_elem.h"

CBP_INL double CBP_FN(cbp_hsum)(CBP_VD v)
{
    double t = v[0];
    int l;
    CBP_UNROLL for (l = 1; l < CBP_VW; l++) t += v[l];
    return t;
}

/* The lane sums of s[0], ..., s[CBP_VW - 1], as one vector: pairs of
 * lanes added, then the pairs (a transpose-and-add, no scalar chain). */
CBP_INL CBP_VD CBP_FN(cbp_hsumv)(const CBP_VD* s)
{
#if CBP_VW == 8
    CBP_VD t0 = CBP_SHUF(s[0], s[1], 0, 8, 2, 10, 4, 12, 6, 14)
                + CBP_SHUF(s[0], s[1], 1, 9, 3, 11, 5, 13, 7, 15);
    CBP_VD t1 = CBP_SHUF(s[2], s[3], 0, 8, 2, 10, 4, 12, 6, 14)
                + CBP_SHUF(s[2], s[3], 1, 9, 3, 11, 5, 13, 7, 15);
    CBP_VD t2 = CBP_SHUF(s[4], s[5], 0, 8, 2, 10, 4, 12, 6, 14)
                + CBP_SHUF(s[4], s[5], 1, 9, 3, 11, 5, 13, 7, 15);
    CBP_VD t3 = CBP_SHUF(s[6], s[7], 0, 8, 2, 10, 4, 12, 6, 14)
                + CBP_SHUF(s[6], s[7], 1, 9, 3, 11, 5, 13, 7, 15);
    CBP_VD u0 = CBP_SHUF(t0, t1, 0, 1, 8, 9, 4, 5, 12, 13) + CBP_SHUF(t0, t1, 2, 3, 10, 11, 6, 7, 14, 15);
    CBP_VD u1 = CBP_SHUF(t2, t3, 0, 1, 8, 9, 4, 5, 12, 13) + CBP_SHUF(t2, t3, 2, 3, 10, 11, 6, 7, 14, 15);
    return CBP_SHUF(u0, u1, 0, 1, 2, 3, 8, 9, 10, 11) + CBP_SHUF(u0, u1, 4, 5, 6, 7, 12, 13, 14, 15);
#elif CBP_VW == 4
    CBP_VD t0 = CBP_SHUF(s[0], s[1], 0, 4, 2, 6) + CBP_SHUF(s[0], s[1], 1, 5, 3, 7);
    CBP_VD t1 = CBP_SHUF(s[2], s[3], 0, 4, 2, 6) + CBP_SHUF(s[2], s[3], 1, 5, 3, 7);
    return CBP_SHUF(t0, t1, 0, 1, 4, 5) + CBP_SHUF(t0, t1, 2, 3, 6, 7);
#else
    return CBP_SHUF(s[0], s[1], 0, 2) + CBP_SHUF(s[0], s[1], 1, 3);
#endif
}

/* The epilogue of every product: CBP_EPI_RELU keeps v where v > 0,
 * CBP_EPI_GATE keeps v where the gate (C's shape and stride) is > 0; both
 * give 0 elsewhere, NaN included, like `v if g > 0 else 0`. */
CBP_INL CBP_VD CBP_FN(cbp_epiv)(int epi, CBP_VD v, const double* g)
{
    const CBP_VD zero = CBP_FN(cbp_splat)(0.0);
    if (epi == CBP_EPI_RELU) return CBP_MAX0(v, zero);
    if (epi == CBP_EPI_GATE) return (CBP_VD)((CBP_VI)v & (CBP_VI)(CBP_LD(g) > zero));
    return v;
}

CBP_INL double CBP_FN(cbp_epi1)(int epi, double v, const double* g)
{
    if (epi == CBP_EPI_RELU) return v > 0.0 ? v : 0.0;
    if (epi == CBP_EPI_GATE) return *g > 0.0 ? v : 0.0;
    return v;
}

/* ---------------------------------------------------------------- mm_nn --
 * A tile of RB rows x CBP_VW*JV columns of C := (bias +) A @ B, summed over
 * K in order. */
CBP_INL void CBP_FN(cbp_nn_tile)(const int RB, const int JV, cbp_ix K, const double* A,
                                 cbp_ix lda, const double* B, cbp_ix ldb,
                                 const double* bias, double* C, cbp_ix ldc, int epi,
                                 const double* gate)
{
    CBP_VD s[4][4];
    CBP_VD b[4];
    cbp_ix k;
    int r, v;
    /* the sums start from the bias */
    CBP_UNROLL for (v = 0; v < JV; v++)
        b[v] = bias ? CBP_LD(bias + CBP_VW * v) : CBP_FN(cbp_splat)(0.0);
    CBP_UNROLL for (r = 0; r < RB; r++)
        CBP_UNROLL for (v = 0; v < JV; v++) s[r][v] = b[v];
    for (k = 0; k < K; k++) {
        CBP_UNROLL for (v = 0; v < JV; v++) b[v] = CBP_LD(B + k * ldb + CBP_VW * v);
        CBP_UNROLL for (r = 0; r < RB; r++) {
            CBP_VD a = CBP_FN(cbp_splat)(A[r * lda + k]);
            CBP_UNROLL for (v = 0; v < JV; v++) s[r][v] += a * b[v];
        }
    }
    CBP_UNROLL for (r = 0; r < RB; r++)
        CBP_UNROLL for (v = 0; v < JV; v++)
            CBP_ST(C + r * ldc + CBP_VW * v,
                   CBP_FN(cbp_epiv)(epi, s[r][v], gate + r * ldc + CBP_VW * v));
}

/* RB rows of C, columns [j0, N) one at a time (the last N % CBP_VW). */
CBP_INL void CBP_FN(cbp_nn_cols)(const int RB, cbp_ix j0, cbp_ix K, cbp_ix N, const double* A,
                                 cbp_ix lda, const double* B, cbp_ix ldb,
                                 const double* bias, double* C, cbp_ix ldc, int epi,
                                 const double* gate)
{
    cbp_ix j, k;
    int r;
    for (j = j0; j < N; j++) {
        double s[4];
        CBP_UNROLL for (r = 0; r < RB; r++) s[r] = bias ? bias[j] : 0.0;
        for (k = 0; k < K; k++) {
            double bk = B[k * ldb + j];
            CBP_UNROLL for (r = 0; r < RB; r++) s[r] += A[r * lda + k] * bk;
        }
        CBP_UNROLL for (r = 0; r < RB; r++)
            C[r * ldc + j] = CBP_FN(cbp_epi1)(epi, s[r], gate + r * ldc + j);
    }
}

/* Columns [0, CBP_VW*JV) of all m rows of C := (bias +) A @ B for KC (1 to
 * 4) rows of B: those rows stay in registers while the rows of A stream
 * past, for a thin K, where a tile of RB rows would load B again for every
 * block of rows.  Each entry is the nn tile's sum (the bias, then k in
 * order), so the two give the same numbers. */
CBP_INL void CBP_FN(cbp_nn_stream)(const int KC, const int JV, cbp_ix m, const double* A,
                                   cbp_ix lda, const double* B, cbp_ix ldb,
                                   const double* bias, double* C, cbp_ix ldc, int epi,
                                   const double* gate)
{
    CBP_VD b[4][4], b0[4], s[4];
    cbp_ix i;
    int k, v;
    CBP_UNROLL for (v = 0; v < JV; v++) {
        b0[v] = bias ? CBP_LD(bias + CBP_VW * v) : CBP_FN(cbp_splat)(0.0);
        CBP_UNROLL for (k = 0; k < KC; k++) b[k][v] = CBP_LD(B + k * ldb + CBP_VW * v);
    }
    for (i = 0; i < m; i++) {
        CBP_UNROLL for (v = 0; v < JV; v++) s[v] = b0[v];
        CBP_UNROLL for (k = 0; k < KC; k++) {
            CBP_VD a = CBP_FN(cbp_splat)(A[i * lda + k]);
            CBP_UNROLL for (v = 0; v < JV; v++) s[v] += a * b[k][v];
        }
        CBP_UNROLL for (v = 0; v < JV; v++)
            CBP_ST(C + i * ldc + CBP_VW * v,
                   CBP_FN(cbp_epiv)(epi, s[v], gate + i * ldc + CBP_VW * v));
    }
}

/* cbp_nn_stream for the columns [0, j) that whole vectors cover, K <= 4;
 * returns j.  (JV: 4 vectors a pass at 8 lanes (25 of 32 registers), 2 at
 * 4 and 2, whose tables have 16.) */
CBP_INL cbp_ix CBP_FN(cbp_nn_streams)(const int KC, cbp_ix m, cbp_ix N, const double* A,
                                      cbp_ix lda, const double* B, cbp_ix ldb,
                                      const double* bias, double* C, cbp_ix ldc, int epi,
                                      const double* gate)
{
    const int JW = CBP_VW == 8 ? 4 : 2;
    const double* g = gate ? gate : C;  /* read only for CBP_EPI_GATE */
    cbp_ix j = 0;
    for (; j + JW * CBP_VW <= N; j += JW * CBP_VW)
        CBP_FN(cbp_nn_stream)(KC, JW, m, A, lda, B + j, ldb, bias ? bias + j : NULL, C + j, ldc,
                              epi, g + j);
    for (; j + CBP_VW <= N; j += CBP_VW)
        CBP_FN(cbp_nn_stream)(KC, 1, m, A, lda, B + j, ldb, bias ? bias + j : NULL, C + j, ldc,
                              epi, g + j);
    return j;
}

CBP_INL void CBP_FN(cbp_mm_nn_e)(cbp_ix m, cbp_ix K, cbp_ix N, const double* A,
                                      cbp_ix lda, const double* B, cbp_ix ldb,
                                      const double* bias, double* C, cbp_ix ldc, const int epi,
                                      const double* gate)
{
    cbp_ix i = 0, j, j0 = 0;
#define CBP_NN(RB, JV) CBP_FN(cbp_nn_tile)(RB, JV, K, a, lda, B + j, ldb, bias ? bias + j : NULL, \
                                           c + j, ldc, epi, g + j)
#if defined(CBP_SIMD_NARROW)  /* 4 more columns with the 4-wide table's tile */
#  define CBP_NN_HALF(RB)                                                                    \
    for (; j + 4 <= N; j += 4)                                                               \
    CBP_CAT(cbp_nn_tile, CBP_SIMD_NARROW)(RB, 1, K, a, lda, B + j, ldb,                      \
                                          bias ? bias + j : NULL, c + j, ldc, epi, g + j)
#else
#  define CBP_NN_HALF(RB) ((void)0)
#endif
    /* a thin K on enough rows: the vector columns streamed (cbp_nn_stream) */
    if (m >= CBP_NN_STREAM_ROWS && K <= 4 && N >= CBP_VW) {
        if (K == 1) j0 = CBP_FN(cbp_nn_streams)(1, m, N, A, lda, B, ldb, bias, C, ldc, epi, gate);
        else if (K == 2) j0 = CBP_FN(cbp_nn_streams)(2, m, N, A, lda, B, ldb, bias, C, ldc, epi, gate);
        else if (K == 3) j0 = CBP_FN(cbp_nn_streams)(3, m, N, A, lda, B, ldb, bias, C, ldc, epi, gate);
        else if (K == 4) j0 = CBP_FN(cbp_nn_streams)(4, m, N, A, lda, B, ldb, bias, C, ldc, epi, gate);
    }
    for (; i + 4 <= m; i += 4) {
        const double* a = A + i * lda;
        double* c = C + i * ldc;
        const double* g = (gate ? gate : C) + i * ldc;  /* read only for CBP_EPI_GATE */
        for (j = j0; j + 2 * CBP_VW <= N; j += 2 * CBP_VW) CBP_NN(4, 2);
        for (; j + CBP_VW <= N; j += CBP_VW) CBP_NN(4, 1);
        CBP_NN_HALF(4);
        CBP_FN(cbp_nn_cols)(4, j, K, N, a, lda, B, ldb, bias, c, ldc, epi, g);
    }
    for (; i < m; i++) {
        const double* a = A + i * lda;
        double* c = C + i * ldc;
        const double* g = (gate ? gate : C) + i * ldc;  /* read only for CBP_EPI_GATE */
        for (j = j0; j + 4 * CBP_VW <= N; j += 4 * CBP_VW) CBP_NN(1, 4);
        for (; j + CBP_VW <= N; j += CBP_VW) CBP_NN(1, 1);
        CBP_NN_HALF(1);
        CBP_FN(cbp_nn_cols)(1, j, K, N, a, lda, B, ldb, bias, c, ldc, epi, g);
    }
#undef CBP_NN_HALF
#undef CBP_NN
}

/* F(args..., epi, gate) with the epilogue as a constant, so that each
 * variant is compiled without the tests of the others */
#define CBP_EPI_CONST(F, ...)                                                   \
    do {                                                                        \
        if (epi == CBP_EPI_RELU) F(__VA_ARGS__, CBP_EPI_RELU, gate);            \
        else if (epi == CBP_EPI_GATE) F(__VA_ARGS__, CBP_EPI_GATE, gate);       \
        else F(__VA_ARGS__, CBP_EPI_NONE, gate);                                \
    } while (0)

CBP_ATTR static void CBP_FN(cbp_mm_nn)(cbp_ix m, cbp_ix K, cbp_ix N, const double* A,
                                      cbp_ix lda, const double* B, cbp_ix ldb,
                                      const double* bias, double* C, cbp_ix ldc, int epi,
                                      const double* gate)
{
    CBP_EPI_CONST(CBP_FN(cbp_mm_nn_e), m, K, N, A, lda, B, ldb, bias, C, ldc);
}

/* ---------------------------------------------------------------- mm_nt --
 * A tile of RB rows x JB columns of C := A @ Bt.T (+ bias): dot products
 * along K, CBP_VW lanes each, then the K % CBP_VW tail. */
CBP_INL void CBP_FN(cbp_nt_tile)(const int RB, const int JB, cbp_ix K, const double* A,
                                 cbp_ix lda, const double* Bt, cbp_ix ldb,
                                 const double* bias, double* C, cbp_ix ldc, int epi,
                                 const double* gate)
{
    CBP_VD s[4][4];
    CBP_VD b[4];
    double t[4][4];
    cbp_ix k;
    int r, j;
    CBP_UNROLL for (r = 0; r < RB; r++)
        CBP_UNROLL for (j = 0; j < JB; j++) s[r][j] = CBP_FN(cbp_splat)(0.0);
    for (k = 0; k + CBP_VW <= K; k += CBP_VW) {
        CBP_UNROLL for (j = 0; j < JB; j++) b[j] = CBP_LD(Bt + j * ldb + k);
        CBP_UNROLL for (r = 0; r < RB; r++) {
            CBP_VD a = CBP_LD(A + r * lda + k);
            CBP_UNROLL for (j = 0; j < JB; j++) s[r][j] += a * b[j];
        }
    }
    CBP_UNROLL for (r = 0; r < RB; r++)
        CBP_UNROLL for (j = 0; j < JB; j++) t[r][j] = CBP_FN(cbp_hsum)(s[r][j]);
    for (; k < K; k++)
        CBP_UNROLL for (r = 0; r < RB; r++)
            CBP_UNROLL for (j = 0; j < JB; j++) t[r][j] += A[r * lda + k] * Bt[j * ldb + k];
    CBP_UNROLL for (r = 0; r < RB; r++)
        CBP_UNROLL for (j = 0; j < JB; j++)
            C[r * ldc + j] = CBP_FN(cbp_epi1)(epi, bias ? t[r][j] + bias[j] : t[r][j],
                                              gate + r * ldc + j);
}

/* CBP_VW rows x all N (1 to 3) columns of C := A @ Bt.T (+ bias) where C's
 * rows are contiguous (ldc == N): the CBP_VW * N dot products along K, the
 * last K % CBP_VW zero-padded to a vector, then their lane sums CBP_VW at
 * a time (cbp_hsumv), which are CBP_VW consecutive entries of C, so N
 * vector stores.  bp: N * CBP_VW doubles, the bias of each of those
 * entries (bias[q % N]), or NULL. */
CBP_INL void CBP_FN(cbp_nt_block)(const int N, cbp_ix K, const double* A, cbp_ix lda,
                                  const double* Bt, cbp_ix ldb, const double* bp, double* C,
                                  int epi, const double* gate)
{
    CBP_VD s[3 * CBP_VW], b[3];
    double t[CBP_VW];
    cbp_ix k;
    int r, j, l;
    CBP_UNROLL for (r = 0; r < CBP_VW; r++)  /* (loops of at most 8: each unrolled) */
        CBP_UNROLL for (j = 0; j < N; j++) s[r * N + j] = CBP_FN(cbp_splat)(0.0);
    for (k = 0; k + CBP_VW <= K; k += CBP_VW) {
        CBP_UNROLL for (j = 0; j < N; j++) b[j] = CBP_LD(Bt + j * ldb + k);
        CBP_UNROLL for (r = 0; r < CBP_VW; r++) {
            CBP_VD a = CBP_LD(A + r * lda + k);
            CBP_UNROLL for (j = 0; j < N; j++) s[r * N + j] += a * b[j];
        }
    }
    if (k < K) {  /* both sides padded with zeros: the padding adds 0 * 0 */
        CBP_UNROLL for (j = 0; j < N; j++) {
            CBP_UNROLL for (l = 0; l < CBP_VW; l++) t[l] = k + l < K ? Bt[j * ldb + k + l] : 0.0;
            b[j] = CBP_LD(t);
        }
        CBP_UNROLL for (r = 0; r < CBP_VW; r++) {
            CBP_UNROLL for (l = 0; l < CBP_VW; l++) t[l] = k + l < K ? A[r * lda + k + l] : 0.0;
            CBP_VD a = CBP_LD(t);
            CBP_UNROLL for (j = 0; j < N; j++) s[r * N + j] += a * b[j];
        }
    }
    CBP_UNROLL for (j = 0; j < N; j++) {
        CBP_VD v = CBP_FN(cbp_hsumv)(s + j * CBP_VW);
        if (bp) v += CBP_LD(bp + j * CBP_VW);
        CBP_ST(C + j * CBP_VW, CBP_FN(cbp_epiv)(epi, v, gate + j * CBP_VW));
    }
}

CBP_INL void CBP_FN(cbp_mm_nt_e)(cbp_ix m, cbp_ix K, cbp_ix N, const double* A,
                                      cbp_ix lda, const double* Bt, cbp_ix ldb,
                                      const double* bias, double* C, cbp_ix ldc, const int epi,
                                      const double* gate)
{
    cbp_ix i = 0, j;
    if (N <= 3 && ldc == N && m >= CBP_VW) {  /* a thin C: blocks of CBP_VW rows */
        double bp[3 * CBP_VW];
        const double* g = gate ? gate : C;  /* read only for CBP_EPI_GATE */
        if (bias)
            for (j = 0; j < N * CBP_VW; j++) bp[j] = bias[j % N];
        for (; i + CBP_VW <= m; i += CBP_VW) {
            const double* a = A + i * lda;
            if (N == 3)
                CBP_FN(cbp_nt_block)(3, K, a, lda, Bt, ldb, bias ? bp : NULL, C + i * 3, epi, g + i * 3);
            else if (N == 2)
                CBP_FN(cbp_nt_block)(2, K, a, lda, Bt, ldb, bias ? bp : NULL, C + i * 2, epi, g + i * 2);
            else
                CBP_FN(cbp_nt_block)(1, K, a, lda, Bt, ldb, bias ? bp : NULL, C + i, epi, g + i);
        }
    }
#define CBP_NT(RB, JB) CBP_FN(cbp_nt_tile)(RB, JB, K, a, lda, Bt + j * ldb, ldb, \
                                           bias ? bias + j : NULL, c + j, ldc, epi, g + j)
    for (; i + 4 <= m; i += 4) {
        const double* a = A + i * lda;
        double* c = C + i * ldc;
        const double* g = (gate ? gate : C) + i * ldc;  /* read only for CBP_EPI_GATE */
        for (j = 0; j + 3 <= N; j += 3) CBP_NT(4, 3);
        if (j + 2 <= N) { CBP_NT(4, 2); j += 2; }
        if (j < N) CBP_NT(4, 1);
    }
    for (; i < m; i++) {
        const double* a = A + i * lda;
        double* c = C + i * ldc;
        const double* g = (gate ? gate : C) + i * ldc;  /* read only for CBP_EPI_GATE */
        for (j = 0; j + 4 <= N; j += 4) CBP_NT(1, 4);
        for (; j < N; j++) CBP_NT(1, 1);
    }
#undef CBP_NT
}

CBP_ATTR static void CBP_FN(cbp_mm_nt)(cbp_ix m, cbp_ix K, cbp_ix N, const double* A,
                                      cbp_ix lda, const double* Bt, cbp_ix ldb,
                                      const double* bias, double* C, cbp_ix ldc, int epi,
                                      const double* gate)
{
    CBP_EPI_CONST(CBP_FN(cbp_mm_nt_e), m, K, N, A, lda, Bt, ldb, bias, C, ldc);
}
#undef CBP_EPI_CONST

/* ---------------------------------------------------------------- mm_tn --
 * A tile of KB rows x CBP_VW*JV columns of R := A.T @ B, summed over the m rows
 * of A and B; stored into C as R (trans = 0) or as R.T (trans = 1).  With
 * SUM, also colsum[0:CBP_VW*JV] := the column sums of B over the m rows; with
 * asum, asum[0:KB] := the column sums of A. */
CBP_INL void CBP_FN(cbp_tn_tile)(const int KB, const int JV, const int SUM, const int ASUM,
                                 cbp_ix m,
                                 const double* A, cbp_ix lda, const double* B, cbp_ix ldb,
                                 double* C, cbp_ix ldc, int trans, double* colsum,
                                 double* asum)
{
    CBP_VD s[4][8];
    CBP_VD u[8];
    CBP_VD b[8];
    double t[4] = {0.0, 0.0, 0.0, 0.0};
    cbp_ix r;
    int q, v, l;
    CBP_UNROLL for (q = 0; q < KB; q++)
        CBP_UNROLL for (v = 0; v < JV; v++) s[q][v] = CBP_FN(cbp_splat)(0.0);
    CBP_UNROLL for (v = 0; v < JV; v++) u[v] = CBP_FN(cbp_splat)(0.0);
    for (r = 0; r < m; r++) {
        CBP_UNROLL for (v = 0; v < JV; v++) b[v] = CBP_LD(B + r * ldb + CBP_VW * v);
        if (SUM) CBP_UNROLL for (v = 0; v < JV; v++) u[v] += b[v];
        CBP_UNROLL for (q = 0; q < KB; q++) {
            double aq = A[r * lda + q];
            CBP_VD a = CBP_FN(cbp_splat)(aq);
            if (ASUM) t[q] += aq;
            CBP_UNROLL for (v = 0; v < JV; v++) s[q][v] += a * b[v];
        }
    }
    if (SUM) CBP_UNROLL for (v = 0; v < JV; v++) CBP_ST(colsum + CBP_VW * v, u[v]);
    if (ASUM) CBP_UNROLL for (q = 0; q < KB; q++) asum[q] = t[q];
    if (trans) {
        CBP_UNROLL for (q = 0; q < KB; q++)
            CBP_UNROLL for (v = 0; v < JV; v++)
                CBP_UNROLL for (l = 0; l < CBP_VW; l++) C[(CBP_VW * v + l) * ldc + q] = s[q][v][l];
    } else {
        CBP_UNROLL for (q = 0; q < KB; q++)
            CBP_UNROLL for (v = 0; v < JV; v++) CBP_ST(C + q * ldc + CBP_VW * v, s[q][v]);
    }
}

/* All K rows of R for the columns [j0, N), one column at a time, and their
 * column sums of B when colsum is given. */
CBP_INL void CBP_FN(cbp_tn_cols)(cbp_ix j0, cbp_ix m, cbp_ix K, cbp_ix N, const double* A,
                                 cbp_ix lda, const double* B, cbp_ix ldb, double* C,
                                 cbp_ix ldc, int trans, double* colsum)
{
    cbp_ix j, k, r;
    for (j = j0; j < N; j++) {
        for (k = 0; k < K; k++) {
            double s = 0.0;
            for (r = 0; r < m; r++) s += A[r * lda + k] * B[r * ldb + j];
            if (trans) C[j * ldc + k] = s; else C[k * ldc + j] = s;
        }
        if (colsum) {
            double s = 0.0;
            for (r = 0; r < m; r++) s += B[r * ldb + j];
            colsum[j] = s;
        }
    }
}

CBP_ATTR static void CBP_FN(cbp_mm_tn)(cbp_ix m, cbp_ix K, cbp_ix N, const double* A,
                                      cbp_ix lda, const double* B, cbp_ix ldb, double* C,
                                      cbp_ix ldc, int trans, double* colsum, double* asum)
{
    cbp_ix k = 0, j, r;
    /* the column sums ride along with the first block of rows of R */
#define CBP_TN(KB, JV)                                                                 \
    do {                                                                               \
        double* c_ = trans ? C + j * ldc + k : C + k * ldc + j;                       \
        double* cs_ = colsum && k == 0 ? colsum + j : NULL;                            \
        double* as_ = asum && j == 0 ? asum + k : NULL;                                \
        if (cs_ && as_)                                                                \
            CBP_FN(cbp_tn_tile)(KB, JV, 1, 1, m, A + k, lda, B + j, ldb, c_, ldc, trans, \
                                cs_, as_);                                             \
        else if (cs_)                                                                  \
            CBP_FN(cbp_tn_tile)(KB, JV, 1, 0, m, A + k, lda, B + j, ldb, c_, ldc, trans, \
                                cs_, NULL);                                            \
        else if (as_)                                                                  \
            CBP_FN(cbp_tn_tile)(KB, JV, 0, 1, m, A + k, lda, B + j, ldb, c_, ldc, trans, \
                                NULL, as_);                                            \
        else                                                                           \
            CBP_FN(cbp_tn_tile)(KB, JV, 0, 0, m, A + k, lda, B + j, ldb, c_, ldc, trans, \
                                NULL, NULL);                                           \
    } while (0)
#if defined(CBP_SIMD_NARROW)  /* 4 more columns with the 4-wide table's tile */
    const cbp_ix jh = N - N % CBP_VW + (N % CBP_VW >= 4 ? 4 : 0);  /* where the tiles end */
    const cbp_ix wmin = 4;                                          /* the narrowest tile */
#  define CBP_TN_HALF(KB)                                                                   \
    do {                                                                                    \
        if (j + 4 <= N) {                                                                   \
            double* cs_ = colsum && k == 0 ? colsum + j : NULL;                             \
            double* as_ = asum && j == 0 ? asum + k : NULL;                                 \
            CBP_CAT(cbp_tn_tile, CBP_SIMD_NARROW)(KB, 1, cs_ != NULL, as_ != NULL, m, A + k, \
                                                  lda, B + j, ldb,                          \
                                                  trans ? C + j * ldc + k : C + k * ldc + j, \
                                                  ldc, trans, cs_, as_);                    \
        }                                                                                   \
    } while (0)
#else
    const cbp_ix jh = N - N % CBP_VW, wmin = CBP_VW;
#  define CBP_TN_HALF(KB) ((void)0)
#endif
    for (; k + 4 <= K; k += 4) {
        for (j = 0; j + 2 * CBP_VW <= N; j += 2 * CBP_VW) CBP_TN(4, 2);
        for (; j + CBP_VW <= N; j += CBP_VW) CBP_TN(4, 1);
        CBP_TN_HALF(4);
    }
    /* At 8 lanes, 8 vectors a pass for 2 or 3 rows of R (16 or 24 chains,
     * and 8 of column sums): one pass over B where (3, 4) or (2, 4) tiles
     * take two.  The same sums, in the same order. */
    if (K - k == 3) {  /* 12 chains rather than a latency-bound (1, 4) pass */
        j = 0;
        if (CBP_VW == 8) for (; j + 8 * CBP_VW <= N; j += 8 * CBP_VW) CBP_TN(3, 8);
        for (; j + 4 * CBP_VW <= N; j += 4 * CBP_VW) CBP_TN(3, 4);
        for (; j + CBP_VW <= N; j += CBP_VW) CBP_TN(3, 1);
        CBP_TN_HALF(3);
        k += 3;
    }
    for (; k + 2 <= K; k += 2) {
        j = 0;
        if (CBP_VW == 8) for (; j + 8 * CBP_VW <= N; j += 8 * CBP_VW) CBP_TN(2, 8);
        for (; j + 4 * CBP_VW <= N; j += 4 * CBP_VW) CBP_TN(2, 4);
        for (; j + CBP_VW <= N; j += CBP_VW) CBP_TN(2, 1);
        CBP_TN_HALF(2);
    }
    for (; k < K; k++) {
        for (j = 0; j + 4 * CBP_VW <= N; j += 4 * CBP_VW) CBP_TN(1, 4);
        for (; j + CBP_VW <= N; j += CBP_VW) CBP_TN(1, 1);
        CBP_TN_HALF(1);
    }
#undef CBP_TN_HALF
#undef CBP_TN
    CBP_FN(cbp_tn_cols)(jh, m, K, N, A, lda, B, ldb, C, ldc, trans, colsum);
    if (asum && N < wmin)  /* no tile ran: sum the columns of A here */
        for (k = 0; k < K; k++) {
            double t = 0.0;
            for (r = 0; r < m; r++) t += A[r * lda + k];
            asum[k] = t;
        }
}

/* exp of each lane of v: the vector arithmetic, and libm's exp for a lane
 * outside [-708, 709] (or NaN). */
CBP_INL CBP_VD CBP_FN(cbp_expv_libm)(CBP_VD v)
{
    CBP_VD r = CBP_FN(cbp_expv)(v);
    CBP_VI out = CBP_FN(cbp_exp_out)(v);
    int l;
    if (CBP_FN(cbp_any)(out))
        CBP_UNROLL for (l = 0; l < CBP_VW; l++) if (out[l]) r[l] = exp(v[l]);
    return r;
}

/* y := exp(x); y may be x.  Each input outside [-708, 709] (or NaN) is
 * computed by libm, lane by lane; every other input by the vector
 * arithmetic, whatever its neighbours (a trained softmax meets inputs
 * below -708, a few a batch). */
CBP_ATTR static void CBP_FN(cbp_vexp)(cbp_ix n, const double* x, double* y)
{
    cbp_ix i = 0;
    for (; i + CBP_VW <= n; i += CBP_VW) CBP_ST(y + i, CBP_FN(cbp_expv_libm)(CBP_LD(x + i)));
    if (i < n) {  /* the last n % CBP_VW, through the same arithmetic */
        double buf[CBP_VW] = {0.0};
        memcpy(buf, x + i, (size_t)(n - i) * sizeof(double));
        CBP_ST(buf, CBP_FN(cbp_expv_libm)(CBP_LD(buf)));
        memcpy(y + i, buf, (size_t)(n - i) * sizeof(double));
    }
}

/* 1 / (1 + exp(x)) of each lane of x, the exp as cbp_expv_libm takes it:
 * cbp_logistic's arithmetic, and libm's exp for a lane outside [-708, 709]
 * (or NaN). */
CBP_INL CBP_VD CBP_FN(cbp_logistic_libm)(CBP_VD x)
{
    const CBP_VD one = CBP_FN(cbp_splat)(1.0);
    return one / (one + CBP_FN(cbp_expv_libm)(x));
}

/* a := 1 / (1 + exp(-z)); a may be z.  Each input whose -z is outside
 * [-708, 709] (or NaN) is computed by libm, lane by lane; every other
 * input by the vector arithmetic, whatever its neighbours (a saturated
 * unit meets such inputs, a few a batch). */
CBP_ATTR static void CBP_FN(cbp_vsigmoid)(cbp_ix n, const double* z, double* a)
{
    cbp_ix i = 0;
    for (; i + CBP_VW <= n; i += CBP_VW) CBP_ST(a + i, CBP_FN(cbp_logistic_libm)(-CBP_LD(z + i)));
    if (i < n) {  /* the last n % CBP_VW, through the same arithmetic */
        double buf[CBP_VW] = {0.0};
        memcpy(buf, z + i, (size_t)(n - i) * sizeof(double));
        CBP_ST(buf, CBP_FN(cbp_logistic_libm)(-CBP_LD(buf)));
        memcpy(a + i, buf, (size_t)(n - i) * sizeof(double));
    }
}

#if !defined(CBP_SIMD_NARROW)  /* (else the table takes that table's feature-major kernels) */
/* -------------------------------------------------------- feature-major --
 * Dense layers on activations stored feature-major: xT (K, ld) holds one
 * row of ld batch lanes per input feature, ld a multiple of 4.  When every
 * side of a network is narrow, vectorising over the batch beats vectorising
 * over a side of 8 or fewer, and the activation is applied in registers.
 *
 *   feature_major_forward:  out (N, ld) := f(W (K, N).T @ xT + bias), the sums over k
 *                in order from the bias; f is the identity (CBP_FEATURE_MAJOR_NONE),
 *                relu (CBP_FEATURE_MAJOR_RELU, as CBP_EPI_RELU) or the logistic
 *                sigmoid (CBP_FEATURE_MAJOR_SIGMOID, as vsigmoid, except that libm
 *                takes over for a vector of rows rather than for a lane)
 *   feature_major_backward: gW (K, N) := xT @ dT.T, gb (N,) := the row sums of dT
 *                (if gb), dxT (K, ld) := (W @ dT) * f'(Z), f' taken from
 *                A (K, ld), the output of f: 1 (CBP_FEATURE_MAJOR_NONE), A > 0
 *                (CBP_FEATURE_MAJOR_RELU: 0 where not, NaN included) or A * (1 - A)
 *                (CBP_FEATURE_MAJOR_SIGMOID) */
CBP_INL void CBP_FN(cbp_feature_major_forward_e)(cbp_ix ld, cbp_ix K, cbp_ix N,
                                                  const double* xT, const double* W,
                                                  const double* bias, double* out, int act)
{
    const CBP_VD zero = CBP_FN(cbp_splat)(0.0);
    cbp_ix j, k, v;
    int l;
    for (j = 0; j < N; j++)
        for (v = 0; v < ld; v += CBP_VW) {
            CBP_VD s = CBP_FN(cbp_splat)(bias ? bias[j] : 0.0);
            for (k = 0; k < K; k++) s += CBP_FN(cbp_splat)(W[k * N + j]) * CBP_LD(xT + k * ld + v);
            if (act == CBP_FEATURE_MAJOR_RELU) {
                s = CBP_MAX0(s, zero);
            } else if (act == CBP_FEATURE_MAJOR_SIGMOID) {
                CBP_VD x = -s;
                CBP_VD a = CBP_FN(cbp_logistic)(x);
                if (CBP_FN(cbp_any)(CBP_FN(cbp_exp_out)(x)))
                    CBP_UNROLL for (l = 0; l < CBP_VW; l++) a[l] = 1.0 / (1.0 + exp(x[l]));
                s = a;
            }
            CBP_ST(out + j * ld + v, s);
        }
}

CBP_INL void CBP_FN(cbp_feature_major_backward_e)(cbp_ix ld, cbp_ix K, cbp_ix N,
                                                   const double* xT, const double* dT,
                                                   const double* W, double* gW, double* gb,
                                                   double* dxT, const double* A, int act)
{
    const CBP_VD zero = CBP_FN(cbp_splat)(0.0), one = CBP_FN(cbp_splat)(1.0);
    CBP_VD s[CBP_VW];
    cbp_ix j, k, q, v, KN = K * N;
    int l;
    /* gW[q], q = k * N + j, CBP_VW entries at a time, on CBP_VW independent
     * chains; their sums over the lanes come out of one transpose-and-add
     * (cbp_hsumv) */
    k = 0;
    j = 0;
    for (q = 0; q + CBP_VW <= KN; q += CBP_VW) {
        const double* xp[CBP_VW];
        const double* dp[CBP_VW];
        CBP_UNROLL for (l = 0; l < CBP_VW; l++) {
            xp[l] = xT + k * ld;
            dp[l] = dT + j * ld;
            s[l] = zero;
            if (++j == N) { j = 0; k++; }
        }
        for (v = 0; v < ld; v += CBP_VW)
            CBP_UNROLL for (l = 0; l < CBP_VW; l++) s[l] += CBP_LD(xp[l] + v) * CBP_LD(dp[l] + v);
        CBP_ST(gW + q, CBP_FN(cbp_hsumv)(s));
    }
    for (; q < KN; q++) {
        s[0] = zero;
        for (v = 0; v < ld; v += CBP_VW) s[0] += CBP_LD(xT + k * ld + v) * CBP_LD(dT + j * ld + v);
        gW[q] = CBP_FN(cbp_hsum)(s[0]);
        if (++j == N) { j = 0; k++; }
    }
    if (gb) {
        for (j = 0; j + CBP_VW <= N; j += CBP_VW) {
            CBP_UNROLL for (l = 0; l < CBP_VW; l++) s[l] = zero;
            for (v = 0; v < ld; v += CBP_VW)
                CBP_UNROLL for (l = 0; l < CBP_VW; l++) s[l] += CBP_LD(dT + (j + l) * ld + v);
            CBP_ST(gb + j, CBP_FN(cbp_hsumv)(s));
        }
        for (; j < N; j++) {
            s[0] = zero;
            for (v = 0; v < ld; v += CBP_VW) s[0] += CBP_LD(dT + j * ld + v);
            gb[j] = CBP_FN(cbp_hsum)(s[0]);
        }
    }
    if (dxT)
        for (k = 0; k < K; k++)
            for (v = 0; v < ld; v += CBP_VW) {
                CBP_VD t = zero;
                for (j = 0; j < N; j++) t += CBP_FN(cbp_splat)(W[k * N + j]) * CBP_LD(dT + j * ld + v);
                if (act == CBP_FEATURE_MAJOR_RELU) {
                    t = (CBP_VD)((CBP_VI)t & (CBP_VI)(CBP_LD(A + k * ld + v) > zero));
                } else if (act == CBP_FEATURE_MAJOR_SIGMOID) {
                    CBP_VD a = CBP_LD(A + k * ld + v);
                    t = t * (a * (one - a));
                }
                CBP_ST(dxT + k * ld + v, t);
            }
}

/* The two as the table calls them; the _e bodies are also inlined with
 * constant sizes into the whole-epoch runs (_fm_epochs_body.h). */
CBP_ATTR static void CBP_FN(cbp_feature_major_forward)(cbp_ix ld, cbp_ix K, cbp_ix N,
                                                        const double* xT, const double* W,
                                                        const double* bias, double* out, int act)
{
    CBP_FN(cbp_feature_major_forward_e)(ld, K, N, xT, W, bias, out, act);
}

CBP_ATTR static void CBP_FN(cbp_feature_major_backward)(cbp_ix ld, cbp_ix K, cbp_ix N,
                                                         const double* xT, const double* dT,
                                                         const double* W, double* gW, double* gb,
                                                         double* dxT, const double* A, int act)
{
    CBP_FN(cbp_feature_major_backward_e)(ld, K, N, xT, dT, W, gW, gb, dxT, A, act);
}

#endif /* !CBP_SIMD_NARROW */

/* ------------------------------------------------------------------ sgd --
 * One pass over p, g (and snap): the flag is an OR of lane masks, so the
 * loop has no reduction chain and no scalar select to serialise it. */
CBP_INL int CBP_FN(cbp_sgd_e)(const int SNAP, cbp_ix n, double lr, double* p, const double* g,
                              double* snap)
{
    const CBP_VD lv = CBP_FN(cbp_splat)(lr);
    CBP_VI bad = {0};
    cbp_ix i = 0;
    int any;
    for (; i + CBP_VW <= n; i += CBP_VW) {
        CBP_VD pv = CBP_LD(p + i), t = lv * CBP_LD(g + i), q, d;
        CBP_NOFUSE(t);
        if (SNAP) CBP_ST(snap + i, pv);
        q = pv - t;
        CBP_ST(p + i, q);
        d = q - q;  /* NaN exactly where q is NaN or infinite */
        bad |= (CBP_VI)(d != d);
    }
    any = CBP_FN(cbp_any)(bad);
    for (; i < n; i++) {
        double t = lr * g[i], q;
        CBP_NOFUSE(t);
        if (SNAP) snap[i] = p[i];
        q = p[i] - t;
        p[i] = q;
        any |= (q - q) != (q - q);
    }
    return any;
}

CBP_ATTR static int CBP_FN(cbp_sgd)(cbp_ix n, double lr, double* p, const double* g,
                                    double* snap)
{
    return snap ? CBP_FN(cbp_sgd_e)(1, n, lr, p, g, snap)
                : CBP_FN(cbp_sgd_e)(0, n, lr, p, g, NULL);
}

/* -------------------------------------------------------------- adam_sk --
 * scikit-learn's Adam step.  Every product that feeds a sum is made opaque
 * (CBP_NOFUSE), so that no table contracts it into a multiply-add: each
 * entry is rounded as the scalar loop and NumPy round it.  sqrt and the
 * division are IEEE operations, correctly rounded in every lane.  The flag
 * is an OR of lane masks: (q - q) + (m - m) + (v - v) is NaN exactly where
 * one of the three is NaN or infinite. */
CBP_ATTR static int CBP_FN(cbp_adam_sk)(cbp_ix n, double lr_t, double b1, double b2, double eps,
                                        double* p, const double* g, double* m, double* v)
{
    const double c1 = 1.0 - b1, c2 = 1.0 - b2, nl = -lr_t;
    const CBP_VD b1v = CBP_FN(cbp_splat)(b1), b2v = CBP_FN(cbp_splat)(b2);
    const CBP_VD c1v = CBP_FN(cbp_splat)(c1), c2v = CBP_FN(cbp_splat)(c2);
    const CBP_VD nlv = CBP_FN(cbp_splat)(nl), ev = CBP_FN(cbp_splat)(eps);
    CBP_VI bad = {0};
    cbp_ix i = 0;
    int any;
    for (; i + CBP_VW <= n; i += CBP_VW) {
        CBP_VD gv = CBP_LD(g + i);
        CBP_VD a = b1v * CBP_LD(m + i), b = c1v * gv;
        CBP_VD c = b2v * CBP_LD(v + i), d = c2v * (gv * gv);
        CBP_VD mv, vv, q, z;
        CBP_NOFUSE(a);
        CBP_NOFUSE(b);
        CBP_NOFUSE(c);
        CBP_NOFUSE(d);
        mv = a + b;
        vv = c + d;
        CBP_ST(m + i, mv);
        CBP_ST(v + i, vv);
        q = CBP_LD(p + i) + nlv * mv / (CBP_SQRT(vv) + ev);
        CBP_ST(p + i, q);
        z = (q - q) + (mv - mv) + (vv - vv);
        bad |= (CBP_VI)(z != z);
    }
    any = CBP_FN(cbp_any)(bad);
    for (; i < n; i++) {
        double gi = g[i];
        double a = b1 * m[i], b = c1 * gi, c = b2 * v[i], d = c2 * (gi * gi);
        double mi, vi, q, z;
        CBP_NOFUSE(a);
        CBP_NOFUSE(b);
        CBP_NOFUSE(c);
        CBP_NOFUSE(d);
        mi = a + b;
        vi = c + d;
        m[i] = mi;
        v[i] = vi;
        q = p[i] + nl * mi / (sqrt(vi) + eps);
        p[i] = q;
        z = (q - q) + (mi - mi) + (vi - vi);
        any |= z != z;
    }
    return any;
}

#if defined(CBP_SIMD_NARROW)
#  define CBP_FM_FN(name) CBP_CAT(name, CBP_SIMD_NARROW)
#else
#  define CBP_FM_FN(name) CBP_FN(name)
#  include "_fm_epochs_body.h"
#  define CBP_RW CBP_VW  /* (the lane run mirrors this table's own rows a vector) */
#  include "_fm_lanes_body.h"
#  undef CBP_RW
#endif
#include "_blk_epochs_body.h"

static const cbp_simd_table CBP_FN(cbp_simd_table) = {
    CBP_FN(cbp_mm_nn), CBP_FN(cbp_mm_nt), CBP_FN(cbp_mm_tn), CBP_FN(cbp_vexp),
    CBP_FN(cbp_vsigmoid), CBP_FM_FN(cbp_feature_major_forward),
    CBP_FM_FN(cbp_feature_major_backward), CBP_FN(cbp_sgd), CBP_FN(cbp_adam_sk), CBP_NAME};
#undef CBP_FM_FN

#undef CBP_FN
#undef CBP_INL
#undef CBP_LD
#undef CBP_ST
