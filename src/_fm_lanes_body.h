/* Whole epochs for CBP_VW networks at once, one network a SIMD lane
 * (cbp.fit_many; declared in _fm_epochs.h, instantiated once per table of
 * _simd.h like _fm_epochs_body.h, whose fits these are, and once more with
 * 8 lanes under AVX-512 by _simd_lanes.h).  CBP_RW is the rows a vector of
 * the table whose fits these are (its feature-major kernels' CBP_VW): the
 * grouping of its sums over rows.
 *
 * The networks share the architecture, the inputs (net->xt) and the
 * targets; each has its own parameters, lane-major in P (P[q][lane],
 * n_params vectors), and its own rate (lr[lane]).  Lane `lane` computes
 * what cbp_fm_epochs computes for that network alone, bit for bit: every
 * sum in the same order with the same multiply-adds (the products of the
 * feature-major kernels have the lanes of a vector as batch rows; here a
 * row is a loop step and the lanes are networks, so each lane's operations
 * are those of the row it stands for), the sums over rows split into the
 * CBP_RW partial sums and added as cbp_hsumv and cbp_hsum add them, the
 * sigmoid's libm fallback taken for the same vector of rows.
 *
 * work holds 3 n_params + (the widest layer) + 2 ld (the widths of the
 * layers) vectors.  The loss of epoch e of lane `lane` goes to
 * losses[lane][e * stride], for every lane (padding lanes point to a
 * scratch row).  A lane whose epoch e is not finite (loss or update) stops
 * there: done[lane] = e, and its parameters as cbp_fm_epochs leaves them
 * (those of e's start) in the work's third block, R, lane-major; the lane
 * then trains on as a network of zeros at rate 0, its results unused.
 * done[lane] < 0: still training; >= 0 on entry: a padding lane or one that
 * stopped.  Returns the lanes still training after the last epoch. */
#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC diagnostic push
#  pragma GCC diagnostic ignored "-Waggressive-loop-optimizations"
#endif

/* the sum of the CBP_RW partial sums a, as cbp_hsumv (tree) or cbp_hsum
 * (in order) adds a vector's lanes */
CBP_INL CBP_VD CBP_FN(cbp_lanes_sum)(const int tree, const CBP_VD* a)
{
    CBP_VD t;
    int c;
#if CBP_RW == 4
    if (tree) return (a[0] + a[1]) + (a[2] + a[3]);
#else
    if (tree) return a[0] + a[1];
#endif
    t = a[0];
    CBP_UNROLL for (c = 1; c < CBP_RW; c++) t += a[c];
    return t;
}

CBP_INL CBP_VD CBP_FN(cbp_lanes_keep)(CBP_VI live, CBP_VD now, CBP_VD before)
{
    return (CBP_VD)(((CBP_VI)now & live) | ((CBP_VI)before & ~live));
}

CBP_INL int CBP_FN(cbp_fm_lanes_e)(const cbp_ix L, const cbp_ix ld, const cbp_ix* width,
                                   const int* fact, const int out_act, const cbp_fm_net* net,
                                   const double* Y, CBP_VD* P, CBP_VD* work, const double* lr,
                                   cbp_ix* done, cbp_ix e0, cbp_ix e1, double* const* losses,
                                   cbp_ix stride)
{
    const CBP_VD zero = CBP_FN(cbp_splat)(0.0), one = CBP_FN(cbp_splat)(1.0);
    const cbp_ix n = net->n, np = net->n_params;
    const double s = net->scale;
    const CBP_VD gs = CBP_FN(cbp_splat)(net->loss == CBP_FM_LOSS_SE ? 2.0 * s : s);
    const CBP_VD sv = CBP_FN(cbp_splat)(s), half = CBP_FN(cbp_splat)(0.5);
    const double* xt = net->xt;
    CBP_VD* G = work;
    CBP_VD* S = G + np;          /* the epoch's start */
    CBP_VD* R = S + np;          /* where each stopped lane stopped */
    CBP_VD* Z = R + np;          /* zeros: the bias of a layer without one */
    CBP_VD* A[CBP_FM_MAX_LAYERS];
    CBP_VD* D[CBP_FM_MAX_LAYERS];
    CBP_VD lrv, acc[CBP_RW], x[CBP_RW];
    CBP_VI live, bad, dead;
    cbp_ix e, i, j, k, l, q, r, v, wmax = 1;
    int c, alive = 0;
    CBP_VD* at;
    if (L < 1 || L > CBP_FM_MAX_LAYERS) return 0;  /* (never: _fm_run's networks) */
    for (l = 0; l < L; l++) wmax = width[l + 1] > wmax ? width[l + 1] : wmax;
    at = Z + wmax;
    for (l = 0; l < L; l++) {
        A[l] = at;
        D[l] = at + width[l + 1] * ld;
        at += 2 * width[l + 1] * ld;
    }
    CBP_UNROLL for (c = 0; c < CBP_VW; c++) {
        lrv[c] = done[c] < 0 ? lr[c] : 0.0;
        live[c] = done[c] < 0 ? -1 : 0;
        alive += done[c] < 0;
    }
    CBP_UNROLL for (c = 0; c < CBP_RW; c++) x[c] = zero;
    for (e = e0; e < e1 && alive; e++) {
        CBP_VD value;
        /* forward: feature_major_forward, a row a step */
        CBP_UNROLL for (l = 0; l < L; l++) {
            const cbp_ix K = width[l], N = width[l + 1];
            const int fa = fact[l];
            const CBP_VD* W = P + net->w_off[l];
            const CBP_VD* B = net->b_off[l] >= 0 ? P + net->b_off[l] : Z;
            CBP_VD* out = A[l];
            CBP_UNROLL for (j = 0; j < N; j++)
                CBP_UNROLL for (v = 0; v < ld; v += CBP_RW) {
                    bad = (CBP_VI)zero;
                    CBP_UNROLL for (c = 0; c < CBP_RW; c++) {
                        CBP_VD t = B[j];
                        r = v + c;
                        if (l == 0)
                            CBP_UNROLL for (k = 0; k < K; k++)
                                t += W[k * N + j] * CBP_FN(cbp_splat)(xt[k * ld + r]);
                        else
                            CBP_UNROLL for (k = 0; k < K; k++) t += W[k * N + j] * A[l - 1][k * ld + r];
                        if (fa == CBP_FEATURE_MAJOR_RELU) {
                            t = CBP_MAX0(t, zero);
                        } else if (fa == CBP_FEATURE_MAJOR_SIGMOID) {
                            x[c] = -t;
                            bad |= CBP_FN(cbp_exp_out)(x[c]);
                            t = CBP_FN(cbp_logistic)(x[c]);
                        }
                        out[j * ld + r] = t;
                    }
                    if (fa == CBP_FEATURE_MAJOR_SIGMOID && CBP_FN(cbp_any)(bad & live)) {
                        /* libm for the vector of rows of each lane with one out of range */
                        int lane;
                        for (lane = 0; lane < CBP_VW; lane++)
                            if (bad[lane])
                                for (c = 0; c < CBP_RW; c++)
                                    out[j * ld + v + c][lane] = 1.0 / (1.0 + exp(x[c][lane]));
                    }
                }
        }
        /* the output delta and the loss, as cbp_fm_epochs */
        {
            const CBP_VD* Pout = A[L - 1];
            CBP_VD* Dout = D[L - 1];
            CBP_VD sum = zero, d;
            CBP_UNROLL for (i = 0; i < n; i++) {
                CBP_VD p = Pout[i], sq, g;
                d = p - CBP_FN(cbp_splat)(Y[i]);
                sq = d * d;
                CBP_NOFUSE(sq);
                sum += sq;
                g = CBP_FN(cbp_fm_out_delta)(out_act, gs * d, p);
                Dout[i] = g;
            }
            CBP_UNROLL for (i = n; i < ld; i++) Dout[i] = zero;
            if (net->loss == CBP_FM_LOSS_HALF_SE) sum = half * sum;
            value = sum * sv;
            d = value - value;  /* NaN exactly where value is not finite */
            dead = (CBP_VI)(d != d) & live;
            if (CBP_FN(cbp_any)(dead)) {  /* these stop at this epoch's start */
                CBP_UNROLL for (q = 0; q < np; q++) R[q] = CBP_FN(cbp_lanes_keep)(dead, P[q], R[q]);
                live &= ~dead;
            }
        }
        /* backward: feature_major_backward, the sums over rows in CBP_RW parts */
        CBP_UNROLL for (l = L - 1; l >= 0; l--) {
            const cbp_ix K = width[l], N = width[l + 1], KN = K * N;
            const CBP_VD* Dl = D[l];
            const CBP_VD* W = P + net->w_off[l];
            CBP_VD* gW = G + net->w_off[l];
            CBP_UNROLL for (q = 0; q < KN; q++) {
                k = q / N;
                j = q % N;
                CBP_UNROLL for (c = 0; c < CBP_RW; c++) acc[c] = zero;
                CBP_UNROLL for (v = 0; v < ld; v += CBP_RW)
                    CBP_UNROLL for (c = 0; c < CBP_RW; c++) {
                        if (l == 0)
                            acc[c] += CBP_FN(cbp_splat)(xt[k * ld + v + c]) * Dl[j * ld + v + c];
                        else
                            acc[c] += A[l - 1][k * ld + v + c] * Dl[j * ld + v + c];
                    }
                gW[q] = CBP_FN(cbp_lanes_sum)(q < KN - KN % CBP_RW, acc);
            }
            if (net->b_off[l] >= 0) {
                CBP_VD* gb = G + net->b_off[l];
                CBP_UNROLL for (j = 0; j < N; j++) {
                    CBP_UNROLL for (c = 0; c < CBP_RW; c++) acc[c] = zero;
                    CBP_UNROLL for (v = 0; v < ld; v += CBP_RW)
                        CBP_UNROLL for (c = 0; c < CBP_RW; c++) acc[c] += Dl[j * ld + v + c];
                    gb[j] = CBP_FN(cbp_lanes_sum)(j < N - N % CBP_RW, acc);
                }
            }
            if (l > 0) {
                const int fb = fact[l - 1];
                CBP_UNROLL for (k = 0; k < K; k++)
                    CBP_UNROLL for (r = 0; r < ld; r++) {
                        CBP_VD t = zero;
                        CBP_UNROLL for (j = 0; j < N; j++) t += W[k * N + j] * Dl[j * ld + r];
                        if (fb == CBP_FEATURE_MAJOR_RELU) {
                            t = (CBP_VD)((CBP_VI)t & (CBP_VI)(A[l - 1][k * ld + r] > zero));
                        } else if (fb == CBP_FEATURE_MAJOR_SIGMOID) {
                            CBP_VD a = A[l - 1][k * ld + r];
                            t = t * (a * (one - a));
                        }
                        D[l - 1][k * ld + r] = t;
                    }
            }
        }
        /* the update: cbp_sgd_e, each lane with its rate */
        bad = (CBP_VI)zero;
        CBP_UNROLL for (q = 0; q < np; q++) {
            CBP_VD pv = P[q], t = lrv * G[q], u, d;
            CBP_NOFUSE(t);
            S[q] = pv;
            u = pv - t;
            P[q] = u;
            d = u - u;
            bad |= (CBP_VI)(d != d);
        }
        CBP_UNROLL for (c = 0; c < CBP_VW; c++) losses[c][e * stride] = value[c];
        bad &= live;
        dead |= bad;
        if (CBP_FN(cbp_any)(dead)) {
            /* a lane whose update is not finite stops at the epoch's start, as
             * cbp_fm_epochs; every lane that stopped here trains on as a
             * network of zeros at rate 0, finite and unchanged, its results
             * unused */
            CBP_UNROLL for (q = 0; q < np; q++) {
                R[q] = CBP_FN(cbp_lanes_keep)(bad, S[q], R[q]);
                P[q] = (CBP_VD)((CBP_VI)P[q] & ~dead);
            }
            lrv = (CBP_VD)((CBP_VI)lrv & ~dead);
            CBP_UNROLL for (c = 0; c < CBP_VW; c++)
                if (dead[c]) {
                    done[c] = e;
                    alive--;
                }
            live &= ~dead;
        }
    }
    return alive;
}

CBP_ATTR static int CBP_FN(cbp_fm_lanes)(const cbp_fm_net* net, const double* Y, double* P,
                                         double* work, const double* lr, cbp_ix* done,
                                         cbp_ix e0, cbp_ix e1, double* const* losses,
                                         cbp_ix stride)
{
    const cbp_ix* w = net->width;
    const int* f = net->fact;
    CBP_VD* Pv = (CBP_VD*)P;
    CBP_VD* Wv = (CBP_VD*)work;
    /* two layers on 4 rows (tutorials 001 and 004, bench workload A), the
     * sizes and activations constants the compiler sees */
#define CBP_LANES_RUN(L, LD, CW, CF, OUT)                                                     \
    return CBP_FN(cbp_fm_lanes_e)(L, LD, CW, CF, OUT, net, Y, Pv, Wv, lr, done, e0, e1,      \
                                  losses, stride)
#define CBP_LANES_ACTS(H, FH)                                                                 \
    if (f[0] == FH && f[1] == CBP_FEATURE_MAJOR_SIGMOID) {                                    \
        const int cf[2] = {FH, CBP_FEATURE_MAJOR_SIGMOID};                                    \
        CBP_LANES_RUN(2, 4, cw, cf, CBP_FM_ACT_SIGMOID);                                      \
    }                                                                                         \
    if (f[0] == FH && f[1] == CBP_FEATURE_MAJOR_NONE && net->out_act == CBP_FM_ACT_IDENTITY) { \
        const int cf[2] = {FH, CBP_FEATURE_MAJOR_NONE};                                       \
        CBP_LANES_RUN(2, 4, cw, cf, CBP_FM_ACT_IDENTITY);                                     \
    }
#define CBP_LANES_SHAPE(K, H)                                                                 \
    if (w[0] == K && w[1] == H) {                                                             \
        const cbp_ix cw[3] = {K, H, 1};                                                       \
        CBP_LANES_ACTS(H, CBP_FEATURE_MAJOR_SIGMOID)                                          \
        CBP_LANES_ACTS(H, CBP_FEATURE_MAJOR_RELU)                                             \
    }
    if (net->n_layers == 2 && net->ld == 4) {
        CBP_LANES_SHAPE(2, 4)
        CBP_LANES_SHAPE(2, 2)
        CBP_LANES_SHAPE(2, 8)
    }
#undef CBP_LANES_SHAPE
#undef CBP_LANES_ACTS
    CBP_LANES_RUN(net->n_layers, net->ld, w, f, net->out_act);
#undef CBP_LANES_RUN
}
#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC diagnostic pop
#endif
