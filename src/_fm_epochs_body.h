/* Whole epochs of full-batch plain SGD on the feature-major layout, one
 * call for many epochs: the fused run of _fm_epochs.h, instantiated once
 * per table of _simd.h (included at the end of _simd_body.h, which defines
 * CBP_FN, CBP_VD, ... for the table).
 *
 * Each epoch is the general passes' step for the whole batch, computed by
 * the same kernels of this table (feature_major_forward and _backward,
 * sgd) on the engine's own feature-major buffers, with the output delta and
 * the loss of _kernels.pxd (output_delta, loss_value) written out for the
 * squared errors and a one-unit output layer: the same numbers, bit for
 * bit, without the per-epoch set-up of the Cython loop.  Returns the epochs
 * completed, each one's loss in losses[e * stride]; fewer than n_epochs
 * when the next one's loss or update is not finite, the parameters left at
 * its start.
 *
 * CBP_FK names the kernels it calls: those of the table it is built for
 * (CBP_FN), unless the includer says otherwise (_simd_lanes.h: the AVX2
 * table's kernels in a build for AVX-512VL). */
#ifndef CBP_FK
#  define CBP_FK(name) CBP_FN(name)
#  define CBP_FK_OWN 1
#endif
#if defined(__GNUC__) && !defined(__clang__)
/* (the tails of feature_major_backward are dead code at the sizes below,
 * and GCC warns about the trip counts it cannot have) */
#  pragma GCC diagnostic push
#  pragma GCC diagnostic ignored "-Waggressive-loop-optimizations"
#endif
CBP_INL cbp_ix CBP_FN(cbp_fm_epochs_e)(const cbp_ix L, const cbp_ix ld, const cbp_ix* width,
                                      const cbp_fm_net* net, const double* Y, double* params,
                                      double* grads, double* snap, cbp_ix n_epochs, double lr,
                                      double* losses, cbp_ix stride)
{
    const cbp_ix n = net->n;
    const double s = net->scale;
    const double two_s = 2.0 * s;
    const double* xT;
    double* P = net->at[L - 1];
    double* D = net->dt[L - 1];
    double* Z = net->zt_out;  /* the output's pre-activation, when it is not fused */
    cbp_ix e, i, l;
    for (e = 0; e < n_epochs; e++) {
        double acc = 0.0, value;
        xT = net->xt;
        CBP_UNROLL for (l = 0; l < L; l++) {  /* _forward_feature_major */
            const int fa = net->fact[l];
            CBP_FK(cbp_feature_major_forward_e)(ld, width[l], width[l + 1], xT,
                                                params + net->w_off[l],
                                                net->b_off[l] >= 0 ? params + net->b_off[l] : NULL,
                                                fa == CBP_FEATURE_MAJOR_NONE ? Z : net->at[l], fa);
            xT = net->at[l];
        }
        if (net->fact[L - 1] == CBP_FEATURE_MAJOR_NONE)  /* the identity, on the n rows */
            memcpy(P, Z, (size_t)n * sizeof(double));
        /* output_delta for one output: loss_gradient, then activation_backward;
         * the loss as loss_value sums it, each square rounded on its own */
        for (i = 0; i < n; i++) {
            double p = P[i], d = p - Y[i], sq = d * d, g;
            CBP_NOFUSE(sq);
            acc += sq;
            g = net->loss == CBP_FM_LOSS_SE ? two_s * d : s * d;
            if (net->out_act == CBP_FM_ACT_SIGMOID) {
                double a1 = p * (1.0 - p);
                CBP_NOFUSE(a1);
                g = g * a1;
            } else if (net->out_act == CBP_FM_ACT_RELU) {
                g = p > 0.0 ? g : 0.0;
            }
            D[i] = g;
        }
        for (i = n; i < ld; i++) D[i] = 0.0;
        if (net->loss == CBP_FM_LOSS_HALF_SE) acc = 0.5 * acc;
        value = acc * s;
        if (!isfinite(value)) return e;  /* the general passes stop here */
        CBP_UNROLL for (l = L - 1; l >= 0; l--)  /* _backward_feature_major */
            CBP_FK(cbp_feature_major_backward_e)(
                ld, width[l], width[l + 1], l > 0 ? net->at[l - 1] : net->xt, net->dt[l],
                params + net->w_off[l], grads + net->w_off[l],
                net->b_off[l] >= 0 ? grads + net->b_off[l] : NULL,
                l > 0 ? net->dt[l - 1] : NULL, l > 0 ? net->at[l - 1] : NULL,
                l > 0 ? net->fact[l - 1] : CBP_FEATURE_MAJOR_NONE);
        if (CBP_FK(cbp_sgd_e)(1, net->n_params, lr, params, grads, snap)) {
            memcpy(params, snap, (size_t)net->n_params * sizeof(double));
            return e;  /* the general passes find the step and roll it back */
        }
        losses[e * stride] = value;
    }
    return n_epochs;
}

#if CBP_VW == 4
/* cbp_fm_epochs_e for two layers K-H-1 on one vector of 4 rows (n 4, K <= 2,
 * H 4 or 8, constants; biased or not), with every value that one pass hands to
 * the next kept in registers, across epochs too: the same operations in
 * the same order, so the same numbers, bit for bit (the products' sums
 * from the bias over k in order, the gradients' lane sums as cbp_hsumv and
 * cbp_hsum add them, the update as cbp_sgd_e forms it).  The buffers
 * (activations, deltas, gradients, snapshot, parameters) are written as
 * the general kernels write them, but never read back: the chain from one
 * epoch to the next has no store and load in it.  The weights are held as
 * the parameters lie, H to a row, and broadcast where a product takes one.
 * Returns the epochs completed, as cbp_fm_epochs_e; *libm is set to 1 where
 * the next epoch needs libm's exp (its parameters left at its start).
 * Built with CBP_FM_ZMM (AVX-512VL, _simd_lanes.h), a sigmoid hidden layer
 * runs two units a 512-bit vector, on the AVX-512 table's exp and logistic:
 * the same operations lane for lane, so the same numbers. */
#define CBP_BCAST(w, j) CBP_FK(cbp_splat)((w)[(j) / 4][(j) % 4])
/* the sigmoid of cbp_feature_major_forward_e where every lane is in exp's
 * range; the lanes that are not are added to out (their epoch is left to
 * cbp_fm_epochs_e, which takes libm's exp for them: a call in the loop
 * would have the compiler keep its values in memory across it) */
CBP_INL CBP_VD CBP_FN(cbp_fm_sigmoid)(CBP_VD z, CBP_VI* out)
{
    CBP_VD x = -z;
    *out |= CBP_FK(cbp_exp_out)(x);
    return CBP_FK(cbp_logistic)(x);
}
#if defined(CBP_FM_ZMM)
/* cbp_fm_sigmoid at 8 lanes, on the AVX-512 table's exp and logistic (the
 * same operations lane for lane as the AVX2 table's) */
CBP_INL cbp_v8d CBP_FN(cbp_fm_sigmoid8)(cbp_v8d z, cbp_v8i* out)
{
    cbp_v8d x = -z;
    *out |= cbp_exp_out_avx512(x);
    return cbp_logistic_avx512(x);
}
#endif

/* q := p - (lr * g) as cbp_sgd_e, stored, its lanes not finite added to bad */
#define CBP_FM_SGD(q, pv, gv, at)              \
    do {                                       \
        CBP_VD t_ = lv * (gv), d_;             \
        CBP_NOFUSE(t_);                        \
        CBP_ST(snap + (at), (pv));             \
        q = (pv) - t_;                         \
        CBP_ST(params + (at), q);              \
        d_ = q - q;                            \
        bad |= (CBP_VI)(d_ != d_);             \
    } while (0)

CBP_INL cbp_ix CBP_FN(cbp_fm_epochs_reg)(const int K, const int H, const cbp_fm_net* net,
                                        const double* Y, double* params, double* grads,
                                        double* snap, cbp_ix n_epochs, double lr,
                                        double* losses, cbp_ix stride, int* libm)
{
    const int RV = H / 4;  /* vectors a row of H */
    const double s = net->scale, two_s = 2.0 * s;
    const int hact = net->fact[0], ofact = net->fact[1], oact = net->out_act;
    const int se = net->loss == CBP_FM_LOSS_SE, half = net->loss == CBP_FM_LOSS_HALF_SE;
    const int hb = net->b_off[0] >= 0, hc = net->b_off[1] >= 0;  /* the biases */
    const cbp_ix bo = K * H, vo = bo + (hb ? H : 0), co = vo + H;  /* offsets: b1, W2, b2 */
    const cbp_ix np = co + (hc ? 1 : 0);
    const CBP_VD zero = CBP_FK(cbp_splat)(0.0), one = CBP_FK(cbp_splat)(1.0);
    const CBP_VD lv = CBP_FK(cbp_splat)(lr), yv = CBP_LD(Y);
    double* A1 = net->at[0];
    double* P = net->at[1];
    double* D1 = net->dt[0];
    double* D = net->dt[1];
    CBP_VD X[2], W[2][2], B[2], V[2], A[8], U[8], gV[2], t[4];
    double c = hc ? params[co] : 0.0;
    cbp_ix e, j, k, r;
    int l;
    for (k = 0; k < K; k++) X[k] = CBP_LD(net->xt + k * 4);
#if defined(CBP_FM_ZMM)
    /* a sigmoid hidden layer two units a vector of 8 lanes: the rows twice,
     * and the indices that broadcast units 4r + {0, 1} and 4r + {2, 3} of a
     * row of parameters to the halves of a vector */
    cbp_v8d X2[2];
    const __m512i ix0 = _mm512_set_epi64(1, 1, 1, 1, 0, 0, 0, 0);
    const __m512i ix1 = _mm512_set_epi64(3, 3, 3, 3, 2, 2, 2, 2);
    for (k = 0; k < K; k++) X2[k] = (cbp_v8d)_mm512_broadcast_f64x4((__m256d)X[k]);
#endif
    for (k = 0; k < K; k++)
        for (r = 0; r < RV; r++) W[k][r] = CBP_LD(params + k * H + 4 * r);
    for (r = 0; r < RV; r++) {
        B[r] = hb ? CBP_LD(params + bo + 4 * r) : zero;
        V[r] = CBP_LD(params + vo + 4 * r);
    }
    for (e = 0; e < n_epochs; e++) {
        CBP_VD p, g, sq, d, nW[2][2], nB[2], nV[2];
        CBP_VI bad = {0}, out = {0};
#if defined(CBP_FM_ZMM)
        cbp_v8i out2 = {0};
        int m;
#endif
        double acc = 0.0, value, gc = 0.0, tc, nc = 0.0;
        /* forward (cbp_feature_major_forward_e) */
#if defined(CBP_FM_ZMM)
        /* (each lane's operations are those below, on half the vectors:
         * the exps of four vectors at once kept the two FMA pipes busy and
         * delayed the one the output's sum needs first) */
        if (hact == CBP_FEATURE_MAJOR_SIGMOID) {
            CBP_UNROLL for (m = 0; m < H / 2; m++) {
                const __m512i ix = m % 2 ? ix1 : ix0;
                cbp_v8d z, a;
                z = (cbp_v8d)_mm512_permutexvar_pd(ix, _mm512_castpd256_pd512((__m256d)B[m / 2]));
                CBP_UNROLL for (k = 0; k < K; k++)
                    z += (cbp_v8d)_mm512_permutexvar_pd(
                             ix, _mm512_castpd256_pd512((__m256d)W[k][m / 2])) * X2[k];
                a = CBP_FN(cbp_fm_sigmoid8)(z, &out2);
                *(cbp_v8d*)(A1 + 8 * m) = a;
                A[2 * m] = (CBP_VD)_mm512_castpd512_pd256((__m512d)a);
                A[2 * m + 1] = (CBP_VD)_mm512_extractf64x4_pd((__m512d)a, 1);
            }
        } else
#endif
        CBP_UNROLL for (j = 0; j < H; j++) {
            CBP_VD z = CBP_BCAST(B, j);
            CBP_UNROLL for (k = 0; k < K; k++) z += CBP_BCAST(W[k], j) * X[k];
            A[j] = hact == CBP_FEATURE_MAJOR_RELU ? CBP_MAX0(z, zero)
                                                  : CBP_FN(cbp_fm_sigmoid)(z, &out);
            CBP_ST(A1 + 4 * j, A[j]);
        }
        p = CBP_FK(cbp_splat)(c);
        CBP_UNROLL for (j = 0; j < H; j++) p += CBP_BCAST(V, j) * A[j];
        if (ofact == CBP_FEATURE_MAJOR_RELU) p = CBP_MAX0(p, zero);
        else if (ofact == CBP_FEATURE_MAJOR_SIGMOID) p = CBP_FN(cbp_fm_sigmoid)(p, &out);
        else CBP_ST(net->zt_out, p);
#if defined(CBP_FM_ZMM)
        if (CBP_FK(cbp_any)(out) || cbp_any_avx512(out2)) {
#else
        if (CBP_FK(cbp_any)(out)) {
#endif
            *libm = 1;
            return e;
        }
        CBP_ST(P, p);
        /* the output delta and the loss (cbp_fm_epochs_e's row loop) */
        d = p - yv;
        sq = d * d;
        CBP_NOFUSE(sq);
        CBP_UNROLL for (l = 0; l < 4; l++) acc += sq[l];
        g = se ? CBP_FK(cbp_splat)(two_s) * d : CBP_FK(cbp_splat)(s) * d;
        g = CBP_FK(cbp_fm_out_delta)(oact, g, p);
        CBP_ST(D, g);
        if (half) acc = 0.5 * acc;
        value = acc * s;
        if (!isfinite(value)) return e;  /* the general passes stop here */
        /* backward (cbp_feature_major_backward_e): the hidden delta and the
         * first layer's gradients, then the output layer's (in this order
         * in the code, so that the longest chain, through the first layer's
         * weights, is the oldest work ready: 2% an epoch) */
        CBP_UNROLL for (j = 0; j < H; j++) {
            CBP_VD u = zero;
            u += CBP_BCAST(V, j) * g;
            if (hact == CBP_FEATURE_MAJOR_RELU)
                u = (CBP_VD)((CBP_VI)u & (CBP_VI)(A[j] > zero));
            else
                u = u * (A[j] * (one - A[j]));
            U[j] = u;
            CBP_ST(D1 + 4 * j, u);
        }
        /* the update (cbp_sgd_e): p - (lr * g), lr * g rounded first, into
         * the buffers; the registers take it only if every entry is finite */
        for (k = 0; k < K; k++)
            for (r = 0; r < RV; r++) {
                CBP_UNROLL for (l = 0; l < 4; l++) {
                    t[l] = zero;
                    t[l] += X[k] * U[4 * r + l];
                }
                t[0] = CBP_FK(cbp_hsumv)(t);
                CBP_ST(grads + k * H + 4 * r, t[0]);
                CBP_FM_SGD(nW[k][r], W[k][r], t[0], k * H + 4 * r);
            }
        for (r = 0; r < RV; r++) {
            CBP_UNROLL for (l = 0; l < 4; l++) {
                t[l] = zero;
                t[l] += A[4 * r + l] * g;
            }
            gV[r] = CBP_FK(cbp_hsumv)(t);
            CBP_ST(grads + vo + 4 * r, gV[r]);
        }
        if (hc) {
            t[0] = zero;
            t[0] += g;
            gc = CBP_FK(cbp_hsum)(t[0]);
            grads[co] = gc;
        }
        for (r = 0; r < RV; r++) {
            if (hb) {
                CBP_UNROLL for (l = 0; l < 4; l++) {
                    t[l] = zero;
                    t[l] += U[4 * r + l];
                }
                t[0] = CBP_FK(cbp_hsumv)(t);
                CBP_ST(grads + bo + 4 * r, t[0]);
                CBP_FM_SGD(nB[r], B[r], t[0], bo + 4 * r);
            } else {
                nB[r] = zero;
            }
            CBP_FM_SGD(nV[r], V[r], gV[r], vo + 4 * r);
        }
        if (hc) {
            tc = lr * gc;
            CBP_NOFUSE(tc);
            snap[co] = c;
            nc = c - tc;
            params[co] = nc;
        }
        if (CBP_FK(cbp_any)(bad) || isnan(nc - nc)) {
            memcpy(params, snap, (size_t)np * sizeof(double));
            return e;  /* the general passes find the step and roll it back */
        }
        for (k = 0; k < K; k++)
            for (r = 0; r < RV; r++) W[k][r] = nW[k][r];
        for (r = 0; r < RV; r++) {
            B[r] = nB[r];
            V[r] = nV[r];
        }
        c = nc;
        losses[e * stride] = value;
    }
    return n_epochs;
}
#undef CBP_FM_SGD
#undef CBP_BCAST
#endif

CBP_ATTR static cbp_ix CBP_FN(cbp_fm_epochs)(const cbp_fm_net* net, const double* Y,
                                             double* params, double* grads, double* snap,
                                             cbp_ix n_epochs, double lr, double* losses,
                                             cbp_ix stride)
{
    const cbp_ix* w = net->width;
    /* two layers on 4 rows, sizes the compiler sees (tutorials 001 and 004) */
#define CBP_FM_SHAPE(K, H)                                                                   \
    if (w[0] == K && w[1] == H) {                                                            \
        const cbp_ix cw[3] = {K, H, 1};                                                      \
        return CBP_FN(cbp_fm_epochs_e)(2, 4, cw, net, Y, params, grads, snap, n_epochs, lr,   \
                                       losses, stride);                                      \
    }
#if CBP_VW == 4
    /* in registers, but the epochs that need libm's exp (one at a time) */
#  define CBP_FM_REG(K, H)                                                                   \
    if (w[0] == K && w[1] == H) {                                                             \
        const cbp_ix cw[3] = {K, H, 1};                                                       \
        cbp_ix done = 0, got;                                                                 \
        int libm;                                                                             \
        while (done < n_epochs) {                                                             \
            libm = 0;                                                                         \
            done += CBP_FN(cbp_fm_epochs_reg)(K, H, net, Y, params, grads, snap,              \
                                              n_epochs - done, lr, losses + done * stride,    \
                                              stride, &libm);                                 \
            if (!libm) break;                                                                 \
            got = CBP_FN(cbp_fm_epochs_e)(2, 4, cw, net, Y, params, grads, snap, 1, lr,       \
                                          losses + done * stride, stride);                    \
            done += got;                                                                      \
            if (!got) break;                                                                  \
        }                                                                                     \
        return done;                                                                          \
    }
    if (net->n_layers == 2 && net->n == 4 && net->ld == 4) {
        CBP_FM_REG(2, 4)
        CBP_FM_REG(2, 8)
        CBP_FM_REG(1, 4)
    }
#  undef CBP_FM_REG
#endif
    if (net->n_layers == 2 && net->ld == 4) {
        CBP_FM_SHAPE(2, 4)
        CBP_FM_SHAPE(2, 2)
        CBP_FM_SHAPE(2, 8)
        CBP_FM_SHAPE(1, 4)
    }
#undef CBP_FM_SHAPE
    return CBP_FN(cbp_fm_epochs_e)(net->n_layers, net->ld, w, net, Y, params, grads, snap,
                                   n_epochs, lr, losses, stride);
}
#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC diagnostic pop
#endif
#if defined(CBP_FK_OWN)
#  undef CBP_FK
#  undef CBP_FK_OWN
#endif
