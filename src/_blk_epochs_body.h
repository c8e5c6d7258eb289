/* Whole epochs of full-batch plain SGD for a thin two-layer network on the
 * row-major path, the rows in blocks (cbp_blk_epochs; _simd.h declares
 * the network, _fm_epochs.h selects the run, src/_engine_blk.pxi decides).
 * Instantiated once per table of _simd.h, at the end of _simd_body.h.
 *
 * The network: K inputs -> H hidden units (ReLU or sigmoid) -> O outputs
 * (softmax under categorical cross-entropy, or the identity under a
 * squared error), K and O at most CBP_BLK_MAX_SIDE, biases or none.  The
 * general passes run such a batch as five matrix products, each of which
 * writes or reads the whole (n, H) activation and its delta: for spiral's
 * 300 x 64 that is 150 KB a pass, out of L1.  Here the rows go through
 * forward, loss and backward CBP_BLK_RV vectors at a time (a lane a row),
 * and the block's activations never leave L1: its hidden units are formed,
 * used for the output, kept for the backward pass of the same block, and
 * its gradient terms are added to lane-wise sums held across the blocks.
 * Those sums are added up once an epoch, lane by lane.
 *
 * The numbers are those of the general passes to within rounding, not bit
 * for bit: the gradients and the loss are summed over the rows in another
 * order (each lane holds 1 / CBP_VW of the rows, the lanes added at the
 * end of the epoch), and the cross-entropy's log is cbp_blk_log's (within
 * 1 ulp of libm's).  The products, the softmax, the output delta and the
 * update (cbp_sgd_e) are the general passes' operations.  On spiral (300 x
 * 2 -> 64 -> 3) an epoch takes about 6 us here against 11 on the general
 * passes (one thread, AVX-512).  tests/test_blk_epochs.py holds this run
 * to the general passes and to the NumPy twin.
 *
 * Returns the epochs completed; each one's loss goes to losses[e * stride]
 * and, for the cross-entropy, its accuracy (argmax as kernels.correct) to
 * losses[e * stride + acc_at].  It stops before an epoch whose loss or
 * update is not finite, the parameters left at that epoch's start, for the
 * general passes to run and report it.  Not a public header. */
#if defined(__GNUC__) && !defined(__clang__)
/* (the runs on sides read at run time use the first K or O entries of
 * arrays sized for CBP_BLK_MAX_SIDE, which GCC cannot follow) */
#  pragma GCC diagnostic push
#  pragma GCC diagnostic ignored "-Waggressive-loop-optimizations"
#  pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

/* exp of every lane of t (t <= 0: a softmax's z - max), libm's for the
 * lanes out of cbp_expv's range (the vexp contract) */
CBP_INL CBP_VD CBP_FN(cbp_blk_exp)(CBP_VD t)
{
    CBP_VD e = CBP_FN(cbp_expv)(t);
    CBP_VI out = CBP_FN(cbp_exp_out)(t);
    int l;
    if (CBP_FN(cbp_any)(out))
        for (l = 0; l < CBP_VW; l++)
            if (out[l]) e[l] = exp(t[l]);
    return e;
}

/* (m ? a : b) lane by lane, m all ones or zeros (on the baseline table the
 * mask is made opaque: GCC 12 cannot expand the select it would form) */
CBP_INL CBP_VD CBP_FN(cbp_blk_sel)(CBP_VI m, CBP_VD a, CBP_VD b)
{
#if CBP_VW == 2
    CBP_NOFUSE(m);
#endif
    return (CBP_VD)(((CBP_VI)a & m) | ((CBP_VI)b & ~m));
}

/* log(x) of every lane, x a positive normal double (the clipped
 * probabilities of the cross-entropy): fdlibm's e_log.c algorithm, x = 2^k
 * m with m in [sqrt(2) / 2, sqrt(2)), f = m - 1, s = f / (2 + f), log(1 +
 * f) from s^2 by its minimax polynomial (Lg1..Lg7), k ln2 in two parts.
 * Within 1 ulp of libm's log (tests/test_blk_epochs.py). */
CBP_INL CBP_VD CBP_FN(cbp_blk_log)(CBP_VD x)
{
    const CBP_VD one = CBP_FN(cbp_splat)(1.0), half = CBP_FN(cbp_splat)(0.5);
    const CBP_VD two52 = CBP_FN(cbp_splat)(4503599627370496.0);
    const CBP_VI frac = (CBP_VI)CBP_FN(cbp_splat)(0.0) + 0x000fffffffffffffLL;
    const CBP_VI expo = (CBP_VI)two52;  /* 2^52's bits: an exponent field to add to */
    CBP_VI b = (CBP_VI)x, big;
    CBP_VD m = (CBP_VD)((b & frac) | (CBP_VI)one), dk, f, sv, z, w, t1, t2, R, hfsq;
    /* the biased exponent, exactly, as the low bits of 2^52 + e */
    dk = (CBP_VD)(((b >> 52) & 0x7ff) | expo) - two52 - CBP_FN(cbp_splat)(1023.0);
    big = (CBP_VI)(m > CBP_FN(cbp_splat)(1.4142135623730951));
    m = CBP_FN(cbp_blk_sel)(big, m * half, m);
    dk = dk + (CBP_VD)(big & (CBP_VI)one);
    f = m - one;
    sv = f / (CBP_FN(cbp_splat)(2.0) + f);
    z = sv * sv;
    w = z * z;
    t1 = w * (CBP_FN(cbp_splat)(3.999999999940941908e-01)
              + w * (CBP_FN(cbp_splat)(2.222219843214978396e-01)
                     + w * CBP_FN(cbp_splat)(1.531383769920937332e-01)));
    t2 = z * (CBP_FN(cbp_splat)(6.666666666666735130e-01)
              + w * (CBP_FN(cbp_splat)(2.857142874366239149e-01)
                     + w * (CBP_FN(cbp_splat)(1.818357216161805012e-01)
                            + w * CBP_FN(cbp_splat)(1.479819860511658591e-01))));
    R = t2 + t1;
    hfsq = half * f * f;
    return dk * CBP_FN(cbp_splat)(6.93147180369123816490e-01)
           - ((hfsq - (sv * (hfsq + R) + dk * CBP_FN(cbp_splat)(1.90821492927058770002e-10)))
              - f);
}

/* out[q] := the sum of the lanes of acc[q], q < m (CBP_VW at a time) */
CBP_INL void CBP_FN(cbp_blk_sums)(const CBP_VD* acc, cbp_ix m, double* out)
{
    cbp_ix q = 0;
    for (; q + CBP_VW <= m; q += CBP_VW) CBP_ST(out + q, CBP_FN(cbp_hsumv)(acc + q));
    for (; q < m; q++) out[q] = CBP_FN(cbp_hsum)(acc[q]);
}

/* log(clip(p)), clip as the cross-entropy's (kernels.clip) */
CBP_INL CBP_VD CBP_FN(cbp_blk_logc)(CBP_VD p)
{
    const CBP_VD lo = CBP_FN(cbp_splat)(CBP_BLK_CLIP), hi = CBP_FN(cbp_splat)(1.0 - CBP_BLK_CLIP);
    CBP_VD c = CBP_FN(cbp_blk_sel)((CBP_VI)(p < lo), lo, p);
    c = CBP_FN(cbp_blk_sel)((CBP_VI)(c > hi), hi, c);
    return CBP_FN(cbp_blk_log)(c);
}

/* the hidden layer's activation of z: ReLU (mm_nn's epilogue), or the
 * sigmoid as vsigmoid takes it (libm lane by lane out of exp's range) */
CBP_INL CBP_VD CBP_FN(cbp_blk_act)(const int act, CBP_VD z)
{
    CBP_VD mx, t;
    CBP_VI out;
    int l;
    if (act == CBP_FM_ACT_RELU) return CBP_MAX0(z, CBP_FN(cbp_splat)(0.0));
    mx = -z;
    out = CBP_FN(cbp_exp_out)(mx);
    t = CBP_FN(cbp_logistic)(mx);
    if (CBP_FN(cbp_any)(out))
        for (l = 0; l < CBP_VW; l++)
            if (out[l]) t[l] = 1.0 / (1.0 + exp(mx[l]));
    return t;
}

CBP_INL cbp_ix CBP_FN(cbp_blk_run)(const int K, const int O, const int HACT,
                                   const cbp_blk_net* net,
                                   double* params, double* grads, double* snap,
                                   cbp_ix n_epochs, double lr, double* losses, cbp_ix stride)
{
#define RV CBP_BLK_RV
    const cbp_ix n = net->n, ld = net->ld, H = net->nh;
    const int cce = net->loss == CBP_BLK_LOSS_CCE, onehot = net->onehot;
    const double s = net->scale;
    const double gsc = net->loss == CBP_BLK_LOSS_SE ? 2.0 * s : s;  /* loss_gradient's factor */
    const CBP_VD zero = CBP_FN(cbp_splat)(0.0), one = CBP_FN(cbp_splat)(1.0);
    const CBP_VD sv = CBP_FN(cbp_splat)(s), gv = CBP_FN(cbp_splat)(gsc);
    const double* W1 = params + net->w_off[0];
    const double* B1 = net->b_off[0] >= 0 ? params + net->b_off[0] : net->zeros;
    const double* W2 = params + net->w_off[1];
    const double* B2 = net->b_off[1] >= 0 ? params + net->b_off[1] : net->zeros;
    /* the lane-wise sums of the gradients, then the block's activations */
    /* (each block a vector further than the last ends, and gW1's rows
     * H + 1 apart: sums 4 KiB apart would alias in the store queue) */
    const cbp_ix HS = H + 1;
    CBP_VD* gW1 = (CBP_VD*)net->work;  /* K rows of HS */
    CBP_VD* gB1 = gW1 + K * HS + 1;
    CBP_VD* gW2 = gB1 + H + 1;
    CBP_VD* gB2 = gW2 + H * O + 1;
    CBP_VD* Ab = gB2 + O + 1;  /* H x RV: the block's hidden units */
    const cbp_ix nacc = (cbp_ix)(Ab - gW1);
    CBP_VD iota;
    cbp_ix e, r0, h, q, r;
    int k, o, v, l;
    for (l = 0; l < CBP_VW; l++) iota[l] = (double)l;
    for (e = 0; e < n_epochs; e++) {
        double acc, value;
        CBP_VD lacc = zero, hits = zero;  /* the loss's and the accuracy's lane sums */
        for (q = 0; q < nacc; q++) gW1[q] = zero;
        for (r0 = 0; r0 < n; r0 += RV * CBP_VW) {
            CBP_VD x[RV][CBP_BLK_MAX_SIDE], z[RV][CBP_BLK_MAX_SIDE], d[RV][CBP_BLK_MAX_SIDE];
            CBP_VI valid[RV];
            CBP_UNROLL for (v = 0; v < RV; v++) {
                const cbp_ix rv = r0 + v * CBP_VW;
                valid[v] = (CBP_VI)(iota + CBP_FN(cbp_splat)((double)rv)
                                    < CBP_FN(cbp_splat)((double)n));
                CBP_UNROLL for (k = 0; k < K; k++) x[v][k] = CBP_LD(net->xt + k * ld + rv);
                CBP_UNROLL for (o = 0; o < O; o++) z[v][o] = CBP_FN(cbp_splat)(B2[o]);
            }
            /* forward: the hidden units (mm_nn, its epilogue), and the
             * output's products, summed over h in order */
            for (h = 0; h < H; h++) {
                CBP_VD w1[CBP_BLK_MAX_SIDE], w2[CBP_BLK_MAX_SIDE], b = CBP_FN(cbp_splat)(B1[h]);
                CBP_UNROLL for (k = 0; k < K; k++) w1[k] = CBP_FN(cbp_splat)(W1[k * H + h]);
                CBP_UNROLL for (o = 0; o < O; o++) w2[o] = CBP_FN(cbp_splat)(W2[h * O + o]);
                CBP_UNROLL for (v = 0; v < RV; v++) {
                    CBP_VD t = b;
                    CBP_UNROLL for (k = 0; k < K; k++) t += w1[k] * x[v][k];
                    t = CBP_FN(cbp_blk_act)(HACT, t);
                    Ab[h * RV + v] = t;
                    CBP_UNROLL for (o = 0; o < O; o++) z[v][o] += w2[o] * t;
                }
            }
            /* the output, the loss and the output delta (activation_forward,
             * loss_value, output_delta), the padding lanes' delta 0 */
            CBP_UNROLL for (v = 0; v < RV; v++) {
                const cbp_ix rv = r0 + v * CBP_VW;
                CBP_VD p[CBP_BLK_MAX_SIDE], y[CBP_BLK_MAX_SIDE];
                CBP_UNROLL for (o = 0; o < O; o++) {
                    p[o] = z[v][o];
                    y[o] = CBP_LD(net->yt + o * ld + rv);
                }
                if (cce) {
                    CBP_VD mx = p[0], sum = zero, ys = zero, pa, ya, ja = zero, jy = zero;
                    CBP_UNROLL for (o = 1; o < O; o++)  /* the row's max, as the general pass */
                        mx = CBP_FN(cbp_blk_sel)((CBP_VI)(p[o] > mx), p[o], mx);
                    CBP_UNROLL for (o = 0; o < O; o++) {
                        p[o] = CBP_FN(cbp_blk_exp)(p[o] - mx);
                        sum += p[o];
                    }
                    CBP_UNROLL for (o = 0; o < O; o++) {
                        p[o] = p[o] / sum;
                        ys += y[o];
                    }
                    /* -sum(Y log(clip(P))): the lanes' sums, 0 in the padding;
                     * one-hot rows take the log of their class's P only */
                    if (onehot) {
                        CBP_VD pt = zero;
                        CBP_UNROLL for (o = 0; o < O; o++) pt += y[o] * p[o];  /* (exact) */
                        lacc += (CBP_VD)((CBP_VI)CBP_FN(cbp_blk_logc)(pt) & valid[v]);
                    } else {
                        CBP_UNROLL for (o = 0; o < O; o++)
                            lacc += (CBP_VD)((CBP_VI)(y[o] * CBP_FN(cbp_blk_logc)(p[o]))
                                             & valid[v]);
                    }
                    /* the accuracy: the first argmax of P against Y's (kernels.correct) */
                    pa = p[0];
                    ya = y[0];
                    CBP_UNROLL for (o = 1; o < O; o++) {
                        const CBP_VD ov = CBP_FN(cbp_splat)((double)o);
                        CBP_VI gp = (CBP_VI)(p[o] > pa), gy = (CBP_VI)(y[o] > ya);
                        ja = CBP_FN(cbp_blk_sel)(gp, ov, ja);
                        pa = CBP_FN(cbp_blk_sel)(gp, p[o], pa);
                        jy = CBP_FN(cbp_blk_sel)(gy, ov, jy);
                        ya = CBP_FN(cbp_blk_sel)(gy, y[o], ya);
                    }
                    hits += (CBP_VD)((CBP_VI)(ja == jy) & valid[v] & (CBP_VI)one);
                    CBP_UNROLL for (o = 0; o < O; o++) {
                        CBP_VD g = (p[o] * ys - y[o]) * sv;
                        d[v][o] = (CBP_VD)((CBP_VI)g & valid[v]);
                    }
                } else {
                    CBP_VD sq[CBP_BLK_MAX_SIDE];
                    CBP_UNROLL for (o = 0; o < O; o++) {
                        CBP_VD t = p[o] - y[o];
                        sq[o] = t * t;
                        CBP_NOFUSE(sq[o]);
                        d[v][o] = (CBP_VD)((CBP_VI)(gv * t) & valid[v]);
                    }
                    CBP_UNROLL for (o = 0; o < O; o++)
                        lacc += (CBP_VD)((CBP_VI)sq[o] & valid[v]);
                }
            }
            /* backward: the output layer's gradient terms, the hidden delta
             * (mm_nt, its gate or the sigmoid's factor), the first layer's */
            CBP_UNROLL for (o = 0; o < O; o++)
                CBP_UNROLL for (v = 0; v < RV; v++) gB2[o] += d[v][o];
            for (h = 0; h < H; h++) {
                CBP_VD w2[CBP_BLK_MAX_SIDE], a[RV], u[RV], t;
                CBP_UNROLL for (o = 0; o < O; o++) w2[o] = CBP_FN(cbp_splat)(W2[h * O + o]);
                CBP_UNROLL for (v = 0; v < RV; v++) {
                    a[v] = Ab[h * RV + v];
                    t = zero;
                    CBP_UNROLL for (o = 0; o < O; o++) t += w2[o] * d[v][o];
                    if (HACT == CBP_FM_ACT_RELU) {
                        CBP_VI m = (CBP_VI)(a[v] > zero);
#if CBP_VW == 2
                        CBP_NOFUSE(m);  /* (a mask, not a select: GCC 12 cannot expand that) */
#endif
                        t = (CBP_VD)((CBP_VI)t & m);
                    } else
                        t = t * (a[v] * (one - a[v]));
                    u[v] = t;
                }
                CBP_UNROLL for (o = 0; o < O; o++) {
                    t = gW2[h * O + o];
                    CBP_UNROLL for (v = 0; v < RV; v++) t += a[v] * d[v][o];
                    gW2[h * O + o] = t;
                }
                t = gB1[h];
                CBP_UNROLL for (v = 0; v < RV; v++) t += u[v];
                gB1[h] = t;
                CBP_UNROLL for (k = 0; k < K; k++) {
                    t = gW1[k * HS + h];
                    CBP_UNROLL for (v = 0; v < RV; v++) t += x[v][k] * u[v];
                    gW1[k * HS + h] = t;
                }
            }
        }
        acc = CBP_FN(cbp_hsum)(lacc);
        if (cce) {
            acc = -acc;
        } else if (net->loss == CBP_BLK_LOSS_HALF_SE) {
            acc = 0.5 * acc;
        }
        value = acc * s;
        if (!isfinite(value)) return e;  /* the general passes stop here */
        /* the gradients, each the sum of its lanes, into grads */
        for (k = 0; k < K; k++) CBP_FN(cbp_blk_sums)(gW1 + k * HS, H, grads + net->w_off[0] + k * H);
        if (net->b_off[0] >= 0) CBP_FN(cbp_blk_sums)(gB1, H, grads + net->b_off[0]);
        CBP_FN(cbp_blk_sums)(gW2, H * O, grads + net->w_off[1]);
        if (net->b_off[1] >= 0) CBP_FN(cbp_blk_sums)(gB2, O, grads + net->b_off[1]);
        if (CBP_FN(cbp_sgd_e)(1, net->n_params, lr, params, grads, snap)) {
            for (r = 0; r < net->n_params; r++) params[r] = snap[r];
            return e;  /* the general passes find the step and roll it back */
        }
        losses[e * stride] = value;
        if (cce) losses[e * stride + net->acc_at] = CBP_FN(cbp_hsum)(hits) / (double)n;
    }
    return n_epochs;
#undef RV
}

/* y := log(clip(x)) through cbp_blk_logc, for the tests of its accuracy */
CBP_ATTR static void CBP_FN(cbp_blk_vlog)(cbp_ix n, const double* x, double* y)
{
    cbp_ix i = 0;
    CBP_VD t;
    int l;
    for (; i + CBP_VW <= n; i += CBP_VW) CBP_ST(y + i, CBP_FN(cbp_blk_logc)(CBP_LD(x + i)));
    if (i < n) {
        t = CBP_FN(cbp_splat)(0.5);
        for (l = 0; i + l < n; l++) t[l] = x[i + l];
        t = CBP_FN(cbp_blk_logc)(t);
        for (l = 0; i + l < n; l++) y[i + l] = t[l];
    }
}

CBP_ATTR static cbp_ix CBP_FN(cbp_blk_epochs)(const cbp_blk_net* net, double* params,
                                              double* grads, double* snap, cbp_ix n_epochs,
                                              double lr, double* losses, cbp_ix stride)
{
    /* the sides and activation the compiler sees (spiral's 2 -> 3, and
     * the small ones), else sides it reads */
#define CBP_BLK_RUN(K, O, A) \
    return CBP_FN(cbp_blk_run)(K, O, A, net, params, grads, snap, n_epochs, lr, losses, stride)
#define CBP_BLK_SIDES(K, O)                                                             \
    if (net->ni == K && net->no == O) {                                                 \
        if (net->hact == CBP_FM_ACT_RELU) CBP_BLK_RUN(K, O, CBP_FM_ACT_RELU);           \
        CBP_BLK_RUN(K, O, CBP_FM_ACT_SIGMOID);                                          \
    }
    CBP_BLK_SIDES(2, 3)
    CBP_BLK_SIDES(2, 2)
    CBP_BLK_SIDES(2, 1)
    CBP_BLK_SIDES(1, 1)
#undef CBP_BLK_SIDES
    if (net->hact == CBP_FM_ACT_RELU) CBP_BLK_RUN((int)net->ni, (int)net->no, CBP_FM_ACT_RELU);
    CBP_BLK_RUN((int)net->ni, (int)net->no, CBP_FM_ACT_SIGMOID);
#undef CBP_BLK_RUN
}
#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC diagnostic pop
#endif
