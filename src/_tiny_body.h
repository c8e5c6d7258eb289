/* The fused step of _tiny.h, instantiated once per instruction set.
 *
 * Included by _tiny.h with CBP_TINY_SUFFIX (name suffix), CBP_TINY_ATTR
 * (function attributes: empty, or a target ISA) and CBP_TINY_VW (the lanes
 * of the matching _simd.h table) defined.  Not a public header: no include
 * guard on purpose.  CBP_TINY_FMA is 1 where that table's products fuse
 * multiply-adds.  The four are undefined at the end, for the next instance.
 *
 * Which kernel of the general passes each part replays, for a batch of one
 * row (src/_engine_passes.pxi, _engine_update.pxi):
 *   forward     dense_forward -> mm_nn (relu fused as its epilogue), then
 *               activation_forward
 *   loss        output_delta (loss_gradient, loss_value, activation_backward)
 *   dW, db      dense_backward -> mm_tn: 0 + x * dz, 0 + dz
 *   dX          dense_backward -> mm_nt (CBP_TINY_VW lanes), gated by the
 *               ReLU below or followed by activation_backward
 *   update      _sgd -> sgd: p - (lr * g) over the trainable ranges (but
 *               cbp_tiny_111 on a table with FMA: see there)
 *   accuracy    correct
 */
#define TF(name) CBP_TINY_CAT(name, CBP_TINY_SUFFIX)
#define TINL CBP_TINY_ATTR static inline __attribute__((always_inline))
#define TW CBP_TINY_MAX_WIDTH

/* acc + a * b as the kernels of _simd.h compute it: fused into one
 * rounding where their instruction set has FMA (the compiler contracts
 * theirs; these are written out, so that no vectorisation of the loops here
 * can keep the compiler from fusing the same ones) */
#if CBP_TINY_FMA
#  define TMADD(acc, a, b) __builtin_fma((a), (b), (acc))
#else
#  define TMADD(acc, a, b) ((acc) + (a) * (b))
#endif

/* v, rounded on its own where the compiler could fuse it into an add */
#if CBP_TINY_FMA
#  define TROUND(v) CBP_TINY_ROUND(v)
#else
#  define TROUND(v) ((void)0)
#endif

/* a * b, rounded on its own (as in the Cython kernels: never fused) */
TINL double TF(cbp_tiny_mul)(double a, double b)
{
    double p = a * b;
    TROUND(p);
    return p;
}

TINL double TF(cbp_tiny_clip)(double p)
{
    if (p < CBP_TINY_CLIP_EPS) return CBP_TINY_CLIP_EPS;
    if (p > 1.0 - CBP_TINY_CLIP_EPS) return 1.0 - CBP_TINY_CLIP_EPS;
    return p;
}

/* activation_forward of one row of n; without ``calls``, act is one that
 * calls no function (identity, leaky_relu: see cbp_tiny_calls) */
TINL void TF(cbp_tiny_act)(const cbp_tiny_net* net, const int calls, int act, double alpha,
                           const double* z, double* a, int n)
{
    int j;
    double mx, s;
    if (!calls) {
        if (act == CBP_TINY_ACT_LEAKY)
            for (j = 0; j < n; j++) a[j] = z[j] > 0.0 ? z[j] : TF(cbp_tiny_mul)(alpha, z[j]);
        else
            for (j = 0; j < n; j++) a[j] = z[j];
        return;
    }
    switch (act) {
    case CBP_TINY_ACT_IDENTITY:
        for (j = 0; j < n; j++) a[j] = z[j];
        break;
    case CBP_TINY_ACT_LEAKY:
        for (j = 0; j < n; j++) a[j] = z[j] > 0.0 ? z[j] : TF(cbp_tiny_mul)(alpha, z[j]);
        break;
    case CBP_TINY_ACT_ELU:
        for (j = 0; j < n; j++) a[j] = z[j] > 0.0 ? z[j] : TF(cbp_tiny_mul)(alpha, expm1(z[j]));
        break;
    case CBP_TINY_ACT_SIGMOID:
        net->vsigmoid(n, z, a);
        break;
    case CBP_TINY_ACT_TANH:
        for (j = 0; j < n; j++) a[j] = tanh(z[j]);
        break;
    case CBP_TINY_ACT_SOFTMAX:
        mx = z[0];
        for (j = 1; j < n; j++)
            if (z[j] > mx) mx = z[j];
        for (j = 0; j < n; j++) a[j] = z[j] - mx;
        net->vexp(n, a, a);
        s = 0.0;
        for (j = 0; j < n; j++) s += a[j];
        for (j = 0; j < n; j++) a[j] = a[j] / s;
        break;
    default: /* relu: fused into the product */
        for (j = 0; j < n; j++) a[j] = z[j] > 0.0 ? z[j] : 0.0;
    }
}

/* activation_backward of one row of n, d := d * f'(z) in place (z is a for relu) */
TINL void TF(cbp_tiny_act_back)(int act, double alpha, const double* z, const double* a,
                                double* d, int n)
{
    int j;
    double s;
    switch (act) {
    case CBP_TINY_ACT_IDENTITY:
        break;
    case CBP_TINY_ACT_RELU:
        for (j = 0; j < n; j++) d[j] = z[j] > 0.0 ? d[j] : 0.0;
        break;
    case CBP_TINY_ACT_LEAKY:
        for (j = 0; j < n; j++) d[j] = z[j] > 0.0 ? d[j] : TF(cbp_tiny_mul)(alpha, d[j]);
        break;
    case CBP_TINY_ACT_ELU:
        for (j = 0; j < n; j++) d[j] = z[j] > 0.0 ? d[j] : TF(cbp_tiny_mul)(d[j], a[j] + alpha);
        break;
    case CBP_TINY_ACT_SIGMOID:
        for (j = 0; j < n; j++) d[j] = TF(cbp_tiny_mul)(d[j], TF(cbp_tiny_mul)(a[j], 1.0 - a[j]));
        break;
    case CBP_TINY_ACT_TANH:
        for (j = 0; j < n; j++) d[j] = TF(cbp_tiny_mul)(d[j], 1.0 - TF(cbp_tiny_mul)(a[j], a[j]));
        break;
    default: /* softmax */
        s = 0.0;
        for (j = 0; j < n; j++) s += TF(cbp_tiny_mul)(d[j], a[j]);
        for (j = 0; j < n; j++) d[j] = TF(cbp_tiny_mul)(a[j], d[j] - s);
    }
}

/* loss_value of one row of n; without ``calls``, a squared error */
TINL double TF(cbp_tiny_loss)(const cbp_tiny_net* net, const int calls, const double* p,
                              const double* y, int n)
{
    int j;
    double acc = 0.0, d, q;
    switch (calls ? net->loss : CBP_TINY_LOSS_SE + (net->loss == CBP_TINY_LOSS_HALF_SE)) {
    case CBP_TINY_LOSS_SE:
    case CBP_TINY_LOSS_HALF_SE:
        for (j = 0; j < n; j++) {
            d = p[j] - y[j];
            acc += TF(cbp_tiny_mul)(d, d);
        }
        if (net->loss == CBP_TINY_LOSS_HALF_SE) acc = 0.5 * acc;
        break;
    case CBP_TINY_LOSS_CCE:
        for (j = 0; j < n; j++)
            if (y[j] != 0.0) acc += TF(cbp_tiny_mul)(y[j], log(TF(cbp_tiny_clip)(p[j])));
        acc = -acc;
        break;
    default: /* bce */
        for (j = 0; j < n; j++) {
            q = TF(cbp_tiny_clip)(p[j]);
            acc += -(TF(cbp_tiny_mul)(y[j], log(q)) + TF(cbp_tiny_mul)(1.0 - y[j], log(1.0 - q)));
        }
    }
    acc = acc * net->scale;
    TROUND(acc);  /* rounded before the caller adds it up */
    return acc;
}

/* output_delta of one row: d := dL/dz of the output layer; returns the loss */
TINL double TF(cbp_tiny_delta)(const cbp_tiny_net* net, const int calls, int act, double alpha,
                               const double* z, const double* a, const double* y, double* d,
                               int n)
{
    const double s = net->scale;
    int j;
    double ysum, q;
    if (calls && act == CBP_TINY_ACT_SOFTMAX && net->loss == CBP_TINY_LOSS_CCE) {
        ysum = 0.0;
        for (j = 0; j < n; j++) ysum += y[j];
        for (j = 0; j < n; j++) d[j] = (TF(cbp_tiny_mul)(a[j], ysum) - y[j]) * s;
        return TF(cbp_tiny_loss)(net, calls, a, y, n);
    }
    if (calls && act == CBP_TINY_ACT_SIGMOID && net->loss == CBP_TINY_LOSS_BCE) {
        for (j = 0; j < n; j++) d[j] = (a[j] - y[j]) * s;
        return TF(cbp_tiny_loss)(net, calls, a, y, n);
    }
    switch (calls ? net->loss : CBP_TINY_LOSS_SE + (net->loss == CBP_TINY_LOSS_HALF_SE)) {
    case CBP_TINY_LOSS_SE:
        for (j = 0; j < n; j++) d[j] = 2.0 * s * (a[j] - y[j]);
        break;
    case CBP_TINY_LOSS_HALF_SE:
        if (s == 1.0)  /* the mean of one output: s * v is v, one multiply less */
            for (j = 0; j < n; j++) d[j] = a[j] - y[j];
        else
            for (j = 0; j < n; j++) d[j] = s * (a[j] - y[j]);
        break;
    case CBP_TINY_LOSS_CCE:
        for (j = 0; j < n; j++) d[j] = -s * (y[j] / TF(cbp_tiny_clip)(a[j]));
        break;
    default: /* bce */
        for (j = 0; j < n; j++) {
            q = TF(cbp_tiny_clip)(a[j]);
            d[j] = -s * (y[j] / q - (1.0 - y[j]) / (1.0 - q));
        }
    }
    TF(cbp_tiny_act_back)(act, alpha, act == CBP_TINY_ACT_RELU ? a : z, a, d, n);
    return TF(cbp_tiny_loss)(net, calls, a, y, n);
}

/* correct of one row: adds the hits and the outputs judged */
TINL void TF(cbp_tiny_correct)(const cbp_tiny_net* net, const double* a, const double* y, int n,
                               cbp_ix* hit, cbp_ix* seen)
{
    int j, ja = 0, jy = 0;
    if (net->loss == CBP_TINY_LOSS_CCE) {
        for (j = 1; j < n; j++) {
            if (a[j] > a[ja]) ja = j;
            if (y[j] > y[jy]) jy = j;
        }
        *hit += ja == jy;
        *seen += 1;
    } else if (net->loss == CBP_TINY_LOSS_BCE) {
        for (j = 0; j < n; j++) *hit += (a[j] > 0.5) == (y[j] > 0.5);
        *seen += n;
    }
}

/* mm_nn of one row, layer (K, N): each sum from the bias, over k in order;
 * the activation into a (relu fused, as the epilogue) */
TINL void TF(cbp_tiny_fwd)(const cbp_tiny_net* net, const int calls, const int K, const int N,
                           const int act, const double alpha, const double* in, const double* W,
                           const double* b, double* z, double* a)
{
    int j, k;
    double s[TW];
    for (j = 0; j < N; j++) s[j] = b ? b[j] : 0.0;
    for (k = 0; k < K; k++)  /* k outer: the N sums side by side, each in k order */
        for (j = 0; j < N; j++) s[j] = TMADD(s[j], in[k], W[k * N + j]);
    if (act == CBP_TINY_ACT_RELU) {
        for (j = 0; j < N; j++) a[j] = s[j] > 0.0 ? s[j] : 0.0;
    } else {
        for (j = 0; j < N; j++) z[j] = s[j];
        TF(cbp_tiny_act)(net, calls, act, alpha, z, a, N);
    }
}

/* dense_backward of one row, layer (K, N), delta d, and the layer's sgd
 * update: with dx, first mm_nt's dx := W @ d (lane sums added in order,
 * then the tail; W before the update), gated by the ReLU below (act) or
 * times its derivative; then mm_tn's gW := 0 + x * d and gb := 0 + d, and
 * W -= lr * gW (if tw), b -= lr * gb (if tb), lr * g rounded first, as
 * _sgd computes them */
TINL void TF(cbp_tiny_bwd)(const int K, const int N, const int act, const double alpha,
                           const double* in, double* W, double* b, const double* d, double* gW,
                           double* gb, const int tw, const int tb, const double lr, double* dx,
                           const double* z, const double* a)
{
    int j, k, o, v;
    double t, g, lane[CBP_TINY_VW];
    if (dx) {
        for (k = 0; k < K; k++) {
            for (v = 0; v < CBP_TINY_VW; v++) lane[v] = 0.0;
            for (o = 0; o + CBP_TINY_VW <= N; o += CBP_TINY_VW)
                for (v = 0; v < CBP_TINY_VW; v++)
                    lane[v] = TMADD(lane[v], d[o + v], W[k * N + o + v]);
            t = lane[0];
            for (v = 1; v < CBP_TINY_VW; v++) t += lane[v];
            for (; o < N; o++) t = TMADD(t, d[o], W[k * N + o]);
            dx[k] = t;
        }
        if (act == CBP_TINY_ACT_RELU) {  /* the gate of mm_nt's epilogue */
            for (k = 0; k < K; k++) dx[k] = a[k] > 0.0 ? dx[k] : 0.0;
        } else {
            TF(cbp_tiny_act_back)(act, alpha, z, a, dx, K);
        }
    }
    for (k = 0; k < K; k++)
        for (j = 0; j < N; j++) {
            g = TMADD(0.0, in[k], d[j]);
            gW[k * N + j] = g;
            if (tw) {
                t = lr * g;
                TROUND(t);
                W[k * N + j] = W[k * N + j] - t;
            }
        }
    if (gb)
        for (j = 0; j < N; j++) {
            g = 0.0 + d[j];
            gb[j] = g;
            if (tb) {
                t = lr * g;
                TROUND(t);
                b[j] = b[j] - t;
            }
        }
}

/* The loss of the output a (n) against y, its delta into d, the hits */
TINL double TF(cbp_tiny_out)(const cbp_tiny_net* net, const int calls, const int L, const int n,
                             const double* z,
                             const double* a, const double* y, double* d, cbp_ix* hit,
                             cbp_ix* seen)
{
    double value = TF(cbp_tiny_delta)(net, calls, net->act[L - 1], net->alpha[L - 1], z, a, y,
                                      d, n);
    TF(cbp_tiny_correct)(net, a, y, n, hit, seen);
    return value;
}

/* One step on the sample (x, y) of any network the path takes; P and G
 * are the parameters and gradients, laid out as the engine's.  Returns
 * the sample's loss. */
TINL double TF(cbp_tiny_step)(const cbp_tiny_net* net, const int calls, double* P, double* G,
                              const double* x, const double* y, double lr, cbp_ix* hit,
                              cbp_ix* seen)
{
    double Z[CBP_TINY_MAX_LAYERS][TW], A[CBP_TINY_MAX_LAYERS][TW], D[CBP_TINY_MAX_LAYERS][TW];
    const int L = net->n_layers;
    const int* wd = net->width;
    const cbp_ix* wo = net->w_off;
    const cbp_ix* bo = net->b_off;
    double value;
    int l;
    for (l = 0; l < L; l++)
        TF(cbp_tiny_fwd)(net, calls, wd[l], wd[l + 1], net->act[l], net->alpha[l],
                         l ? A[l - 1] : x,
                         P + wo[l], bo[l] >= 0 ? P + bo[l] : NULL, Z[l], A[l]);
    value = TF(cbp_tiny_out)(net, calls, L, wd[L], Z[L - 1], A[L - 1], y, D[L - 1], hit, seen);
    for (l = L - 1; l >= 0; l--)
        TF(cbp_tiny_bwd)(wd[l], wd[l + 1], l ? net->act[l - 1] : 0, l ? net->alpha[l - 1] : 0.0,
                         l ? A[l - 1] : x, P + wo[l], bo[l] >= 0 ? P + bo[l] : NULL, D[l],
                         G + wo[l], bo[l] >= 0 ? G + bo[l] : NULL, net->w_train[l],
                         net->b_train[l], lr, l ? D[l - 1] : NULL, l ? Z[l - 1] : NULL,
                         l ? A[l - 1] : NULL);
    return value;
}

/* The step of a two-layer network n0-n1-n2 in the standard layout (every
 * layer biased and trainable, packed from 0), its shape constants */
TINL double TF(cbp_tiny_step2)(const cbp_tiny_net* net, const int calls, const int n0,
                               const int n1, const int n2, double* P, double* G, const double* x,
                               const double* y, double lr, cbp_ix* hit, cbp_ix* seen)
{
    double Z0[TW], A0[TW], D0[TW], Z1[TW], A1[TW], D1[TW], value;
    const int w1 = n0 * n1 + n1;
    TF(cbp_tiny_fwd)(net, calls, n0, n1, net->act[0], net->alpha[0], x, P, P + n0 * n1, Z0, A0);
    TF(cbp_tiny_fwd)(net, calls, n1, n2, net->act[1], net->alpha[1], A0, P + w1,
                     P + w1 + n1 * n2, Z1, A1);
    value = TF(cbp_tiny_out)(net, calls, 2, n2, Z1, A1, y, D1, hit, seen);
    TF(cbp_tiny_bwd)(n1, n2, net->act[0], net->alpha[0], A0, P + w1, P + w1 + n1 * n2, D1,
                     G + w1, G + w1 + n1 * n2, 1, 1, lr, D0, Z0, A0);
    TF(cbp_tiny_bwd)(n0, n1, 0, 0.0, x, P, P + n0 * n1, D0, G, G + n0 * n1, 1, 1, lr, NULL, NULL,
                     NULL);
    return value;
}

/* count steps on the samples row .. row + count - 1 (through order unless
 * NULL), on local copies of the network and of its n_params parameters;
 * n0 > 0: the standard two-layer n0-n1-n2 (constants) */
TINL void TF(cbp_tiny_steps)(const cbp_tiny_net* net_, const int calls, const int n0,
                             const int n1, const int n2,
                             double* params, double* grads, const double* X, const double* Y,
                             const int64_t* order, cbp_ix row, cbp_ix count, double lr,
                             double* total, cbp_ix* hit, cbp_ix* seen)
{
    const cbp_tiny_net net = *net_;  /* local: the compiler sees it never change */
    const int L = net.n_layers, ni = net.width[0], no = net.width[L];
    const cbp_ix np = n0 > 0 ? n0 * n1 + n1 + n1 * n2 + n2 : net.n_params;
    double P[CBP_TINY_MAX_PARAMS], G[CBP_TINY_MAX_PARAMS];
    double tot = *total;
    cbp_ix r, e, i, h = *hit, sn = *seen;
    int l;
    for (i = 0; i < np; i++) P[i] = params[i];
    for (r = row; r < row + count; r++) {
        e = order ? (cbp_ix)order[r] : r;
        if (n0 > 0)
            tot += TF(cbp_tiny_step2)(&net, calls, n0, n1, n2, P, G, X + e * ni, Y + e * no, lr,
                                      &h, &sn);
        else
            tot += TF(cbp_tiny_step)(&net, calls, P, G, X + e * ni, Y + e * no, lr, &h, &sn);
    }
    for (i = 0; i < np; i++) params[i] = P[i];
    for (l = 0; l < L; l++)  /* the last step's gradients, as the general passes leave them */
        memcpy(grads + net.w_off[l], G + net.w_off[l],
               (size_t)(net.width[l] * net.width[l + 1]
                        + (net.b_off[l] >= 0 ? net.width[l + 1] : 0)) * sizeof(double));
    *total = tot;
    *hit = h;
    *seen = sn;
}

#if CBP_TINY_FMA
/* cbp_tiny_111's loop where multiply-adds fuse.
 *
 * The chain from one sample to the next is the step's latency, so it is
 * two multiply-adds and the ReLU: the error e = h * v + (c - y), then the
 * next sample's first product from this one's parameters and e,
 *     z1 = x1 * (w - kx * e) + (b - kv * e) = (x1 * w + b) - (x1 * kx + kv) * e,
 * as fma(-e, A, B) with A = v * (k * (x * x1 + 1)) and B = x1 * w + b formed
 * off the chain (k: lr times the loss's scale; kx = k * v * x and kv = k * v
 * the factors of w's and b's updates, 0 where the ReLU is shut); likewise
 * c - y1 as fma(-k, e, c - y1), and v's update.  The updates of w, b and c,
 * each p - (k * a) * e in one multiply-add, and the loss's sum of squares
 * are made one step late (cbp_tiny_111_catch_up), so that they come after
 * the chain's operations and do not hold up its multiply-adds.  The
 * gradients are formed once, for the last step.
 *
 * The general path's order takes about 23 cycles a sample, this about 11
 * (2.7 ns at 4.2 GHz): within rounding of it (tests/test_tiny.py, rtol
 * 1e-12), as z1 and c - y1 are the next step's, rounded differently, and
 * each loss is scaled as ls * t * t.
 *
 * The engine splits an epoch into calls where it reads the clock, so a
 * call that ends inside the epoch leaves the next row's z and c - y in
 * net->carry, and the call that goes on from that row starts from them: the
 * numbers are those of one call over the epoch, however it is split
 * (tests/test_tiny.py caps the split).  An epoch's first row, or a row the
 * carry does not hold, or parameters other than those it was formed with,
 * start from z = x * w + b.
 *
 * ordered: the samples come through order (else row on, in order); the
 * epoch's last step has no next sample, so its x1, y1 are its own
 * (unused). */
typedef struct {
    double w, b, v, c;  /* the parameters, w, b and c before the last step's update */
    double z, cy;       /* the next sample's first product and error offset */
    double e, t, kx, kv, kc;  /* the last step's error, loss error and update factors */
    double h, v0;       /* its hidden unit and v */
    double ls, tot;     /* the loss's scale; the sum of the losses, ls * t * t each */
    int open;
} TF(cbp_tiny_111_state);

/* The update of w, b and c and the loss of the step before, one step late:
 * off the chain, where they would take the multiply-add units from it. */
TINL void TF(cbp_tiny_111_catch_up)(TF(cbp_tiny_111_state)* st)
{
    st->w = __builtin_fma(-st->kx, st->e, st->w);
    CBP_TINY_ROUND(st->w);  /* (kept scalar: packing them costs shuffles) */
    st->b = __builtin_fma(-st->kv, st->e, st->b);
    CBP_TINY_ROUND(st->b);
    st->c = __builtin_fma(-st->kc, st->e, st->c);
    CBP_TINY_ROUND(st->c);
    st->tot = __builtin_fma(st->ls * st->t, st->t, st->tot);
}

TINL void TF(cbp_tiny_111_step)(const int a0, const int a1, const double k, const double x,
                                const double y, const double x1, const double y1,
                                TF(cbp_tiny_111_state)* st)
{
    const double z = st->z, v = st->v;
    const int open = a0 != CBP_TINY_ACT_RELU || z > 0.0;
    const double h = a0 == CBP_TINY_ACT_RELU ? (z > 0.0 ? z : 0.0) : z;
    double e = __builtin_fma(h, v, st->cy), o, t, kv, A;
    TF(cbp_tiny_111_catch_up)(st);
    if (a1 == CBP_TINY_ACT_RELU) {
        o = TMADD(st->c, h, v);
        t = (o > 0.0 ? o : 0.0) - y;  /* the loss's error */
        e = o > 0.0 ? e : 0.0;        /* the gradients' */
    } else {
        t = e;
    }
    kv = k * v;
    A = v * (k * __builtin_fma(x, x1, 1.0));
    if (a0 == CBP_TINY_ACT_RELU) {
        kv = open ? kv : 0.0;
        A = open ? A : 0.0;
    }
    /* on the chain: the next sample's z and c - y, and v */
    st->z = __builtin_fma(-e, A, __builtin_fma(x1, st->w, st->b));
    st->cy = __builtin_fma(-k, e, st->c - y1);
    st->v = __builtin_fma(-(k * h), e, v);
    CBP_TINY_ROUND(st->v);
    st->e = e;
    st->t = t;
    st->kx = kv * x;
    st->kv = kv;
    st->kc = k;
    st->h = h;
    st->v0 = v;
    st->open = open;
}

TINL void TF(cbp_tiny_111_fused)(cbp_tiny_net* net, const int a0, const int a1,
                                 const int ordered, const double k, const double ls,
                                 const double ds, double* params, double* grads,
                                 const double* X, const double* Y, const int64_t* order,
                                 cbp_ix row, cbp_ix count, double* total)
{
    TF(cbp_tiny_111_state) st;
    cbp_tiny_carry* carry = &net->carry;
    const cbp_ix last = row + count - 1;
    const int more = last + 1 < net->n_rows;  /* the epoch goes on past this call */
    cbp_ix r, i, i1;
    double x, y, x1, y1, t;
    if (count <= 0) {  /* nothing run: the gradients of no step */
        memset(grads, 0, 4 * sizeof(double));
        return;
    }
    st.w = params[0];
    st.b = params[1];
    st.v = params[2];
    st.c = params[3];
    st.e = st.t = st.kx = st.kv = st.kc = 0.0;  /* (nothing to catch up: p - 0 * 0 is p) */
    st.ls = ls;
    st.tot = *total;
    i = ordered ? (cbp_ix)order[row] : row;
    x = X[i];
    y = Y[i];
    if (row > 0 && carry->row == row && memcmp(carry->p, params, 4 * sizeof(double)) == 0) {
        st.z = carry->z;  /* where the call before left off */
        st.cy = carry->cy;
    } else {
        st.z = TMADD(st.b, x, st.w);  /* mm_nn, relu as its epilogue */
        st.cy = st.c - y;
    }
    carry->row = -1;
    for (r = row; r < last; r++) {
        i1 = ordered ? (cbp_ix)order[r + 1] : r + 1;
        x1 = X[i1];
        y1 = Y[i1];
        TF(cbp_tiny_111_step)(a0, a1, k, x, y, x1, y1, &st);
        x = x1;
        y = y1;
    }
    if (more) {  /* the next row's start, for the call that goes on from it */
        i1 = ordered ? (cbp_ix)order[last + 1] : last + 1;
        TF(cbp_tiny_111_step)(a0, a1, k, x, y, X[i1], Y[i1], &st);
    } else {
        TF(cbp_tiny_111_step)(a0, a1, k, x, y, x, y, &st);
    }
    TF(cbp_tiny_111_catch_up)(&st);
    params[0] = st.w;
    params[1] = st.b;
    params[2] = st.v;
    params[3] = st.c;
    if (more) {
        carry->row = last + 1;
        carry->z = st.z;
        carry->cy = st.cy;
        memcpy(carry->p, params, 4 * sizeof(double));
    }
    *total = st.tot;
    /* the last step's gradients, as the general path forms them */
    t = ds * st.e;  /* (ds 1: e itself) */
    grads[3] = t;
    grads[2] = st.h * t;
    t = st.open ? t * st.v0 : 0.0;
    grads[1] = t;
    grads[0] = x * t;
}
#endif

/* The steps of tutorial 000's 1-1-1 network in the standard layout, with
 * a call-free activation (identity or relu: a0, a1) in each layer and a
 * squared error (half: 1, else 0), all constants: cbp_tiny_step2 for these
 * shapes, written out on four scalars (w, b, v, c: the layers' weight and
 * bias), so that the whole step runs in registers; where multiply-adds
 * fuse, cbp_tiny_111_fused's loop, within rounding of it. */
TINL void TF(cbp_tiny_111)(cbp_tiny_net* net, const int a0, const int a1, const int half,
                           double* params, double* grads, const double* X, const double* Y,
                           const int64_t* order, cbp_ix row, cbp_ix count, double lr,
                           double* total, cbp_ix* hit, cbp_ix* seen)
{
    const double s = net->scale;
#if CBP_TINY_FMA
    const double ds = half ? s : 2.0 * s;  /* the loss's scale */
    (void)hit;  /* a squared error judges no accuracy */
    (void)seen;
    if (order)
        TF(cbp_tiny_111_fused)(net, a0, a1, 1, lr * ds, half ? 0.5 * s : s, ds, params, grads,
                               X, Y, order, row, count, total);
    else
        TF(cbp_tiny_111_fused)(net, a0, a1, 0, lr * ds, half ? 0.5 * s : s, ds, params, grads,
                               X, Y, order, row, count, total);
#else
    double tot = *total, x, y;
    cbp_ix r, i;
    double w = params[0], b = params[1], v = params[2], c = params[3];
    double gw = 0.0, gb = 0.0, gv = 0.0, gc = 0.0, z, h, o, e, d, dh, t;
    (void)hit;  /* a squared error judges no accuracy */
    (void)seen;
    for (r = row; r < row + count; r++) {
        i = order ? (cbp_ix)order[r] : r;
        x = X[i];
        y = Y[i];
        z = TMADD(b, x, w);  /* mm_nn, relu as its epilogue */
        h = a0 == CBP_TINY_ACT_RELU ? (z > 0.0 ? z : 0.0) : z;
        o = TMADD(c, h, v);
        if (a1 == CBP_TINY_ACT_RELU) o = o > 0.0 ? o : 0.0;
        e = o - y;  /* output_delta: loss_gradient, activation_backward; loss_value */
        if (half) d = s == 1.0 ? e : s * e;
        else d = 2.0 * s * e;
        if (a1 == CBP_TINY_ACT_RELU) d = o > 0.0 ? d : 0.0;
        t = 0.0 + TF(cbp_tiny_mul)(e, e);
        t = half ? 0.5 * t * s : t * s;
        TROUND(t);  /* the loss, rounded before it is added up */
        tot += t;
        t = 0.0;  /* mm_nt: the lanes' sum, then the tail */
        dh = TMADD(t, d, v);
        if (a0 == CBP_TINY_ACT_RELU) dh = h > 0.0 ? dh : 0.0;
        gv = TMADD(0.0, h, d);  /* mm_tn; then sgd */
        gc = 0.0 + d;
        t = lr * gv;
        TROUND(t);
        v = v - t;
        CBP_TINY_ROUND(v);  /* (kept scalar: a vector of the four is slower) */
        t = lr * gc;
        TROUND(t);
        c = c - t;
        CBP_TINY_ROUND(c);
        gw = TMADD(0.0, x, dh);
        gb = 0.0 + dh;
        t = lr * gw;
        TROUND(t);
        w = w - t;
        CBP_TINY_ROUND(w);
        t = lr * gb;
        TROUND(t);
        b = b - t;
        CBP_TINY_ROUND(b);
    }
    params[0] = w;
    params[1] = b;
    params[2] = v;
    params[3] = c;
    grads[0] = gw;
    grads[1] = gb;
    grads[2] = gv;
    grads[3] = gc;
    *total = tot;
#endif
}

/* Whether a step calls a function: an activation of libm or of the table,
 * or a cross-entropy's log (else the loop body has no call, and the
 * compiler keeps its values in registers) */
TINL int TF(cbp_tiny_calls)(const cbp_tiny_net* net)
{
    int l, a;
    if (net->loss != CBP_TINY_LOSS_SE && net->loss != CBP_TINY_LOSS_HALF_SE) return 1;
    for (l = 0; l < net->n_layers; l++) {
        a = net->act[l];
        if (a != CBP_TINY_ACT_IDENTITY && a != CBP_TINY_ACT_RELU && a != CBP_TINY_ACT_LEAKY)
            return 1;
    }
    return 0;
}

CBP_TINY_ATTR static void TF(cbp_tiny_run)(cbp_tiny_net* net, double* params,
                                           double* grads, const double* X, const double* Y,
                                           const int64_t* order, cbp_ix row, cbp_ix count,
                                           double lr, double* total, cbp_ix* hit, cbp_ix* seen)
{
    const int* w = net->width;
    const int calls = TF(cbp_tiny_calls)(net);
#define CBP_TINY_RUN(c, a, b, d)                                                            \
    TF(cbp_tiny_steps)(net, c, a, b, d, params, grads, X, Y, order, row, count, lr, total, hit, \
                       seen)
#define CBP_TINY_111(a0, a1, half)                                                         \
    if (net->act[0] == a0 && net->act[1] == a1 && (net->loss == CBP_TINY_LOSS_HALF_SE) == half) { \
        TF(cbp_tiny_111)(net, a0, a1, half, params, grads, X, Y, order, row, count, lr, total,  \
                         hit, seen);                                                           \
        return;                                                                                \
    }
    if (net->standard && net->n_layers == 2 && w[0] == 1 && w[1] == 1 && w[2] == 1) {
        /* tutorial 000's network */
        if (!calls) {
            CBP_TINY_111(CBP_TINY_ACT_RELU, CBP_TINY_ACT_IDENTITY, 1)
            CBP_TINY_111(CBP_TINY_ACT_RELU, CBP_TINY_ACT_IDENTITY, 0)
            CBP_TINY_111(CBP_TINY_ACT_RELU, CBP_TINY_ACT_RELU, 1)
            CBP_TINY_111(CBP_TINY_ACT_RELU, CBP_TINY_ACT_RELU, 0)
            CBP_TINY_111(CBP_TINY_ACT_IDENTITY, CBP_TINY_ACT_IDENTITY, 1)
            CBP_TINY_111(CBP_TINY_ACT_IDENTITY, CBP_TINY_ACT_IDENTITY, 0)
            CBP_TINY_111(CBP_TINY_ACT_IDENTITY, CBP_TINY_ACT_RELU, 1)
            CBP_TINY_111(CBP_TINY_ACT_IDENTITY, CBP_TINY_ACT_RELU, 0)
        }
        if (calls) CBP_TINY_RUN(1, 1, 1, 1);
        else CBP_TINY_RUN(0, 1, 1, 1);
    } else if (calls) {
        CBP_TINY_RUN(1, 0, 0, 0);
    } else {
        CBP_TINY_RUN(0, 0, 0, 0);
    }
#undef CBP_TINY_RUN
#undef CBP_TINY_111
}

#undef TF
#undef TINL
#undef TW
#undef TMADD
#undef TROUND
/* (this instance's parameters, consumed) */
#undef CBP_TINY_SUFFIX
#undef CBP_TINY_ATTR
#undef CBP_TINY_VW
#undef CBP_TINY_FMA
