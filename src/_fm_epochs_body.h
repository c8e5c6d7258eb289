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
 * its start. */
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
            CBP_FN(cbp_feature_major_forward_e)(ld, width[l], width[l + 1], xT,
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
            CBP_FN(cbp_feature_major_backward_e)(
                ld, width[l], width[l + 1], l > 0 ? net->at[l - 1] : net->xt, net->dt[l],
                params + net->w_off[l], grads + net->w_off[l],
                net->b_off[l] >= 0 ? grads + net->b_off[l] : NULL,
                l > 0 ? net->dt[l - 1] : NULL, l > 0 ? net->at[l - 1] : NULL,
                l > 0 ? net->fact[l - 1] : CBP_FEATURE_MAJOR_NONE);
        if (CBP_FN(cbp_sgd_e)(1, net->n_params, lr, params, grads, snap)) {
            memcpy(params, snap, (size_t)net->n_params * sizeof(double));
            return e;  /* the general passes find the step and roll it back */
        }
        losses[e * stride] = value;
    }
    return n_epochs;
}

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
