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

#if CBP_RW == 4
/* cbp_fm_lanes_e for NG groups of CBP_VW networks at once (NG 1 or 2), on
 * two layers K-H-1 on one vector of 4 rows (K <= 2, H 2, 4 or 8, the
 * activations and hb, both layers biased or neither, constants), with every value one epoch hands
 * the next in local variables, across epochs too, and the groups' passes
 * interleaved: one group's chain of dependent steps (the output layer,
 * the deltas, the update: the epoch's critical path) overlaps the other's
 * independent work.  The same operations in the same order for each lane,
 * so the same numbers, bit for bit.  Group g's parameters are Pg[g] (P of
 * cbp_fm_lanes_e), its work Wg[g], its rates, done and losses lrg[g],
 * doneg[g] and lossg[g].  The activations and deltas are not written (the
 * engine reads neither: _engine_fm.pxi); P and the last epoch's gradient G
 * are written when the call ends, R where a lane stops.  An epoch with a
 * sigmoid outside exp's range on a lane still training is left to
 * cbp_fm_lanes_e (a call to libm in the loop would put the values back in
 * memory): *libm is set to 1, and *e_at is where this call stopped.
 * Returns the lanes still training, over the groups. */
#define CBP_LR_NP (2 * 8 + 8 + 8 + 1)
CBP_INL int CBP_FN(cbp_fm_lanes_reg)(const int NG, const int K, const int H, const int fh,
                                     const int fo, const int out_act, const int hb,
                                     const cbp_fm_net* net, const double* Y,
                                     CBP_VD* const* Pg, CBP_VD* const* Wg,
                                     const double* const* lrg, cbp_ix* const* doneg,
                                     double* const* const* lossg, cbp_ix e0, cbp_ix e1,
                                     cbp_ix stride, cbp_ix* e_at, int* libm)
{
    const CBP_VD zero = CBP_FN(cbp_splat)(0.0), one = CBP_FN(cbp_splat)(1.0);
    const cbp_ix n = net->n;
    const double s = net->scale;
    const CBP_VD gs = CBP_FN(cbp_splat)(net->loss == CBP_FM_LOSS_SE ? 2.0 * s : s);
    const CBP_VD sv = CBP_FN(cbp_splat)(s), half = CBP_FN(cbp_splat)(0.5);
    const int hl = net->loss == CBP_FM_LOSS_HALF_SE;
    const int ob = K * H, ov = ob + (hb ? H : 0), oc = ov + H, np = oc + (hb ? 1 : 0);
    /* parameters, gradient, the epoch's start: the four blocks W1, b1, W2,
     * b2 at offsets 0, ob, ov, oc, each loop over one of them of constant
     * length (<= 16, fully unrolled), so that every index is a constant */
    CBP_VD p[2][CBP_LR_NP], gr[2][CBP_LR_NP], sn[2][CBP_LR_NP];
    CBP_VD xv[2][4], yv[4], a0[2][8][4], d0[2][8][4], a1[2][4], d1[2][4], acc[4];
    CBP_VD lrv[2], value[2];
    CBP_VI live[2], bad[2], dead[2], oor;
    double* ls[2][CBP_VW];
    cbp_ix e;
    int c, g, i, j, k, q, r, alive[2] = {0, 0}, ran = 0;
#define CBP_LR_EACH(...)                                                                     \
    do {                                                                                     \
        CBP_UNROLL for (q = 0; q < ob; q++) { __VA_ARGS__ }                                  \
        CBP_UNROLL for (q = ob; q < ov; q++) { __VA_ARGS__ }                                 \
        CBP_UNROLL for (q = ov; q < oc; q++) { __VA_ARGS__ }                                 \
        CBP_UNROLL for (q = oc; q < np; q++) { __VA_ARGS__ }                                 \
    } while (0)
    CBP_UNROLL for (k = 0; k < K; k++)
        CBP_UNROLL for (r = 0; r < 4; r++) xv[k][r] = CBP_FN(cbp_splat)(net->xt[k * 4 + r]);
    CBP_UNROLL for (i = 0; i < 4; i++) yv[i] = CBP_FN(cbp_splat)(i < n ? Y[i] : 0.0);
    CBP_UNROLL for (g = 0; g < NG; g++) {
        CBP_LR_EACH(p[g][q] = Pg[g][q];);
        lrv[g] = zero;
        live[g] = (CBP_VI)zero;
        CBP_UNROLL for (c = 0; c < CBP_VW; c++) {
            lrv[g][c] = doneg[g][c] < 0 ? lrg[g][c] : 0.0;
            live[g][c] = doneg[g][c] < 0 ? -1 : 0;
            alive[g] += doneg[g][c] < 0;
            ls[g][c] = lossg[g][c];
        }
    }
    for (e = e0; e < e1 && (alive[0] || alive[NG - 1]); e++) {
        /* forward */
        oor = (CBP_VI)zero;
        CBP_UNROLL for (g = 0; g < NG; g++)
            CBP_UNROLL for (j = 0; j < H; j++)
                CBP_UNROLL for (r = 0; r < 4; r++) {
                    CBP_VD t = hb ? p[g][ob + j] : zero;
                    CBP_UNROLL for (k = 0; k < K; k++) t += p[g][k * H + j] * xv[k][r];
                    if (fh == CBP_FEATURE_MAJOR_RELU) {
                        t = CBP_MAX0(t, zero);
                    } else {
                        CBP_VD x = -t;
                        oor |= CBP_FN(cbp_exp_out)(x) & live[g];
                        t = CBP_FN(cbp_logistic)(x);
                    }
                    a0[g][j][r] = t;
                }
        CBP_UNROLL for (g = 0; g < NG; g++)
            CBP_UNROLL for (r = 0; r < 4; r++) {
                CBP_VD t = hb ? p[g][oc] : zero;
                CBP_UNROLL for (k = 0; k < H; k++) t += p[g][ov + k] * a0[g][k][r];
                if (fo == CBP_FEATURE_MAJOR_SIGMOID) {
                    CBP_VD x = -t;
                    oor |= CBP_FN(cbp_exp_out)(x) & live[g];
                    t = CBP_FN(cbp_logistic)(x);
                }
                a1[g][r] = t;
            }
        if (CBP_FN(cbp_any)(oor)) {
            *libm = 1;
            break;
        }
        /* the output delta and the loss */
        CBP_UNROLL for (g = 0; g < NG; g++) {
            CBP_VD sum = zero, dd;
            CBP_UNROLL for (i = 0; i < 4; i++) {
                if (i < n) {
                    CBP_VD sq;
                    dd = a1[g][i] - yv[i];
                    sq = dd * dd;
                    CBP_NOFUSE(sq);
                    sum += sq;
                    d1[g][i] = CBP_FN(cbp_fm_out_delta)(out_act, gs * dd, a1[g][i]);
                } else {
                    d1[g][i] = zero;
                }
            }
            if (hl) sum = half * sum;
            value[g] = sum * sv;
            dd = value[g] - value[g];  /* NaN exactly where value is not finite */
            dead[g] = (CBP_VI)(dd != dd) & live[g];
            if (CBP_FN(cbp_any)(dead[g])) {  /* these stop at this epoch's start */
                CBP_VD* R = Wg[g] + 2 * np;
                CBP_LR_EACH(R[q] = CBP_FN(cbp_lanes_keep)(dead[g], p[g][q], R[q]););
                live[g] &= ~dead[g];
            }
        }
        /* backward: the output layer's gradients, the hidden delta, the
         * first layer's gradients */
        CBP_UNROLL for (g = 0; g < NG; g++) {
            CBP_UNROLL for (k = 0; k < H; k++) {
                CBP_UNROLL for (r = 0; r < 4; r++) {
                    acc[r] = zero;
                    acc[r] += a0[g][k][r] * d1[g][r];
                }
                gr[g][ov + k] = CBP_FN(cbp_lanes_sum)(k < H - H % 4, acc);
            }
            if (hb) {
                CBP_UNROLL for (r = 0; r < 4; r++) {
                    acc[r] = zero;
                    acc[r] += d1[g][r];
                }
                gr[g][oc] = CBP_FN(cbp_lanes_sum)(0, acc);
            }
            CBP_UNROLL for (k = 0; k < H; k++)
                CBP_UNROLL for (r = 0; r < 4; r++) {
                    CBP_VD t = zero;
                    t += p[g][ov + k] * d1[g][r];
                    if (fh == CBP_FEATURE_MAJOR_RELU) {
                        t = (CBP_VD)((CBP_VI)t & (CBP_VI)(a0[g][k][r] > zero));
                    } else {
                        CBP_VD a = a0[g][k][r];
                        t = t * (a * (one - a));
                    }
                    d0[g][k][r] = t;
                }
        }
        CBP_UNROLL for (g = 0; g < NG; g++) {
            CBP_UNROLL for (q = 0; q < ob; q++) {
                k = q / H;
                j = q % H;
                CBP_UNROLL for (r = 0; r < 4; r++) {
                    acc[r] = zero;
                    acc[r] += xv[k][r] * d0[g][j][r];
                }
                gr[g][q] = CBP_FN(cbp_lanes_sum)(q < ob - ob % 4, acc);
            }
            if (hb)
                CBP_UNROLL for (j = 0; j < H; j++) {
                    CBP_UNROLL for (r = 0; r < 4; r++) {
                        acc[r] = zero;
                        acc[r] += d0[g][j][r];
                    }
                    gr[g][ob + j] = CBP_FN(cbp_lanes_sum)(j < H - H % 4, acc);
                }
        }
        ran = 1;
        /* the update: cbp_sgd_e, each lane with its rate */
        CBP_UNROLL for (g = 0; g < NG; g++) {
            bad[g] = (CBP_VI)zero;
            CBP_LR_EACH({
                CBP_VD t = lrv[g] * gr[g][q], u, d;
                CBP_NOFUSE(t);
                sn[g][q] = p[g][q];
                u = p[g][q] - t;
                p[g][q] = u;
                d = u - u;
                bad[g] |= (CBP_VI)(d != d);
            });
            CBP_UNROLL for (c = 0; c < CBP_VW; c++) ls[g][c][e * stride] = value[g][c];
            bad[g] &= live[g];
            dead[g] |= bad[g];
            if (CBP_FN(cbp_any)(dead[g])) {  /* as cbp_fm_lanes_e */
                CBP_VD* R = Wg[g] + 2 * np;
                CBP_LR_EACH({
                    R[q] = CBP_FN(cbp_lanes_keep)(bad[g], sn[g][q], R[q]);
                    p[g][q] = (CBP_VD)((CBP_VI)p[g][q] & ~dead[g]);
                });
                lrv[g] = (CBP_VD)((CBP_VI)lrv[g] & ~dead[g]);
                CBP_UNROLL for (c = 0; c < CBP_VW; c++)
                    if (dead[g][c]) {
                        doneg[g][c] = e;
                        alive[g]--;
                    }
                live[g] &= ~dead[g];
            }
        }
    }
    CBP_UNROLL for (g = 0; g < NG; g++) {
        CBP_LR_EACH(Pg[g][q] = p[g][q];);
        if (ran) CBP_LR_EACH(Wg[g][q] = gr[g][q];);
    }
#undef CBP_LR_EACH
    *e_at = e;
    return alive[0] + (NG > 1 ? alive[1] : 0);
}
#undef CBP_LR_NP
#endif

#if CBP_RW == 4
/* cbp_fm_lanes_reg for NG groups from e0 to e1, the epochs that need
 * libm's exp one at a time by cbp_fm_lanes_e (each group's) */
CBP_INL int CBP_FN(cbp_fm_lanes_regs)(const int NG, const int K, const int H, const int fh,
                                      const int fo, const int out_act, const int hb,
                                      const cbp_fm_net* net, const double* Y,
                                      CBP_VD* const* Pg, CBP_VD* const* Wg,
                                      const double* const* lrg, cbp_ix* const* doneg,
                                      double* const* const* lossg, cbp_ix e0, cbp_ix e1,
                                      cbp_ix stride)
{
    const cbp_ix cw[3] = {K, H, 1};
    const int cf[2] = {fh, fo};
    cbp_ix at = e0;
    int alive, libm, g;
    __atomic_fetch_add(&cbp_fm_lanes_reg_calls[NG - 1], 1, __ATOMIC_RELAXED);
    for (;;) {
        libm = 0;
        alive = CBP_FN(cbp_fm_lanes_reg)(NG, K, H, fh, fo, out_act, hb, net, Y, Pg, Wg, lrg, doneg,
                                         lossg, at, e1, stride, &at, &libm);
        if (!libm) return alive;
        __atomic_fetch_add(&cbp_fm_lanes_reg_calls[2], 1, __ATOMIC_RELAXED);
        alive = 0;
        for (g = 0; g < NG; g++)
            alive += CBP_FN(cbp_fm_lanes_e)(2, 4, cw, cf, out_act, net, Y, Pg[g], Wg[g], lrg[g],
                                            doneg[g], at, at + 1, lossg[g], stride);
        if (++at >= e1 || !alive) return alive;
    }
}

/* return the run of cbp_fm_lanes_regs where cbp_fm_lanes_reg_shape(net) says
 * it applies, NG groups: their parameters P0 (and P0 + n_params vectors),
 * work W0 (and W0 + cbp_fm_lanes_work(net) vectors), rates, done, losses */
#  define CBP_LANES_REG_A(NG, H, FH, FO, OUT)                                                 \
    if (w[1] == H && f[0] == FH && f[1] == FO) {                                               \
        if (net->b_off[0] >= 0)                                                                \
            return CBP_FN(cbp_fm_lanes_regs)(NG, 2, H, FH, FO, OUT, 1, net, Y, Pg, Wg, lrg, dg, \
                                             lg, e0, e1, stride);                              \
        return CBP_FN(cbp_fm_lanes_regs)(NG, 2, H, FH, FO, OUT, 0, net, Y, Pg, Wg, lrg, dg, lg, \
                                         e0, e1, stride);                                      \
    }
#  define CBP_LANES_REG_H(NG, H)                                                              \
    CBP_LANES_REG_A(NG, H, CBP_FEATURE_MAJOR_SIGMOID, CBP_FEATURE_MAJOR_SIGMOID,               \
                    CBP_FM_ACT_SIGMOID)                                                        \
    CBP_LANES_REG_A(NG, H, CBP_FEATURE_MAJOR_RELU, CBP_FEATURE_MAJOR_SIGMOID,                  \
                    CBP_FM_ACT_SIGMOID)                                                        \
    CBP_LANES_REG_A(NG, H, CBP_FEATURE_MAJOR_SIGMOID, CBP_FEATURE_MAJOR_NONE,                  \
                    CBP_FM_ACT_IDENTITY)                                                       \
    CBP_LANES_REG_A(NG, H, CBP_FEATURE_MAJOR_RELU, CBP_FEATURE_MAJOR_NONE, CBP_FM_ACT_IDENTITY)
#  define CBP_LANES_REGS(NG, P0, W0, LR, DONE, LOSSES)                                        \
    if (cbp_fm_lanes_reg_on && cbp_fm_lanes_reg_shape(net)) {                                  \
        const cbp_ix np_ = net->n_params, ws_ = cbp_fm_lanes_work(net);                        \
        CBP_VD* Pg[2] = {(CBP_VD*)(P0), (CBP_VD*)(P0) + np_};                                  \
        CBP_VD* Wg[2] = {(CBP_VD*)(W0), (CBP_VD*)(W0) + ws_};                                  \
        const double* lrg[2] = {(LR), (LR) + CBP_VW};                                          \
        cbp_ix* dg[2] = {(DONE), (DONE) + CBP_VW};                                             \
        double* const* lg[2] = {(LOSSES), (LOSSES) + CBP_VW};                                  \
        CBP_LANES_REG_H(NG, 4)                                                                 \
        CBP_LANES_REG_H(NG, 2)                                                                 \
        CBP_LANES_REG_H(NG, 8)                                                                 \
    }
#endif

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
#if CBP_RW == 4
    CBP_LANES_REGS(1, Pv, Wv, lr, done, losses)
#endif
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
#if CBP_RW == 4
/* 2 CBP_VW networks at once, two groups of CBP_VW lanes: group g's
 * parameters at P + g n_params vectors, its work at work +
 * g cbp_fm_lanes_work(net) vectors, its rates, done and losses at lr,
 * done and losses + g CBP_VW.  The shapes cbp_fm_lanes_reg takes
 * (cbp_fm_lanes_reg_shape) run both groups interleaved; any other, or a
 * group without a network training, one group after the other. */
CBP_ATTR static int CBP_FN(cbp_fm_lanes_pair)(const cbp_fm_net* net, const double* Y, double* P,
                                              double* work, const double* lr, cbp_ix* done,
                                              cbp_ix e0, cbp_ix e1, double* const* losses,
                                              cbp_ix stride)
{
    const cbp_ix* w = net->width;
    const int* f = net->fact;
    const cbp_ix np = net->n_params, ws = cbp_fm_lanes_work(net);
    int c, a0 = 0, a1 = 0;
    for (c = 0; c < CBP_VW; c++) {
        a0 += done[c] < 0;
        a1 += done[CBP_VW + c] < 0;
    }
    if (a0 && a1 && cbp_fm_lanes_reg_on == 2) {
        CBP_LANES_REGS(2, P, work, lr, done, losses)
    }
    a0 = a0 ? CBP_FN(cbp_fm_lanes)(net, Y, P, work, lr, done, e0, e1, losses, stride) : 0;
    a1 = a1 ? CBP_FN(cbp_fm_lanes)(net, Y, P + np * CBP_VW, work + ws * CBP_VW, lr + CBP_VW,
                                    done + CBP_VW, e0, e1, losses + CBP_VW, stride)
            : 0;
    return a0 + a1;
}
#  undef CBP_LANES_REGS
#  undef CBP_LANES_REG_H
#  undef CBP_LANES_REG_A
#endif
#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC diagnostic pop
#endif
