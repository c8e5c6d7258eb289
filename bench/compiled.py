"""JAX and numba as peers: the training loop compiled whole.

A performance-minded user who outgrows NumPy either jits the whole training
loop in JAX (``jax.jit`` over ``lax.fori_loop``, gradients by ``jax.grad``,
``jax.vmap`` for many networks) or writes it in numba (``@njit`` loops;
``np.dot`` inside ``njit`` for the wider layers).  Both run in float64 and
follow the :class:`bench.peers.Peer` interface, so the harness checks their
parameters against cbp's before timing them.

Importing this module imports numba when it is installed; jax is imported
(and ``jax_enable_x64`` turned on) when a JAX peer is first reset, by
:func:`load_jax`.  Once JAX has run, the process must not fork (JAX's
threads): the tests run the JAX peers in a subprocess.  Time these peers only
in the pinned process of ``bench/pinned.py``, which sets ``XLA_FLAGS`` and
the CPU affinity before jax is imported.  A missing library makes its peers
report themselves unavailable (the harness skips them with a note).
"""

import importlib.util

import numpy as np

import cbp

from .peers import Peer

try:
    import numba
    from numba import njit
except ImportError:
    numba = None

#: jax, jax.numpy and jax.lax once load_jax has run
jax = jnp = lax = None
HAVE_JAX = importlib.util.find_spec("jax") is not None
NO_JAX = "jax not installed (pip install 'cbp[peers]')"


def load_jax():
    """Import jax (float64 on) into this module's globals; returns jax."""
    global jax, jnp, lax
    if jax is None:
        import jax as _jax

        _jax.config.update("jax_enable_x64", True)
        import jax.numpy as _jnp
        from jax import lax as _lax

        jax, jnp, lax = _jax, _jnp, _lax
    return jax


def jax_version():
    if not HAVE_JAX:
        return None
    from importlib.metadata import version

    return version("jax")


def numba_version():
    return None if numba is None else numba.__version__


# ---------------------------------------------------------------------------
# JAX: the loss written once, jax.grad for the gradient, the loop jitted
# ---------------------------------------------------------------------------
def _jax_activation(name):
    return {
        "relu": jax.nn.relu,
        "sigmoid": lambda z: 1.0 / (1.0 + jnp.exp(-z)),
        "tanh": jnp.tanh,
        "identity": lambda z: z,
        "softmax": lambda z: z,
    }[name]


def _jax_loss_fn(problem):
    """loss(params, X, y) of the problem's network; a softmax output with
    categorical cross-entropy is written as log_softmax of the logits (its
    gradient is (p - onehot) / N, cbp's)."""
    acts = [_jax_activation(l.activation) for l in problem.layers]
    n_out = problem.layers[-1].n_out
    loss, reduction = problem.loss, problem.reduction

    def forward(params, X):
        a = X
        for (W, b), act in zip(params, acts):
            z = a @ W
            if b is not None:
                z = z + b
            a = act(z)
        return a

    def fn(params, X, y):
        out = forward(params, X)
        if loss == "categorical_crossentropy":
            per = -jnp.sum(jax.nn.log_softmax(out, axis=1) * jax.nn.one_hot(y, n_out), axis=1)
        elif loss == "half_squared_error":
            per = 0.5 * jnp.sum((out - y) ** 2, axis=1)
        elif loss == "squared_error":
            per = jnp.sum((out - y) ** 2, axis=1)
        else:
            raise ValueError(f"no JAX loss for {loss}")
        return jnp.sum(per) if reduction == "sum" else jnp.mean(per)

    return fn


def _jax_trainer(problem):
    """run(params, X, y, n) -> (params, last loss): n epochs of plain SGD,
    every batch of every epoch inside one ``lax.fori_loop`` (n is traced, so
    one compilation serves every n)."""
    grad = jax.value_and_grad(_jax_loss_fn(problem))
    lr, bs, steps = problem.lr, problem.bs, problem.steps_per_epoch
    if problem.n_samples % bs:
        raise ValueError("the JAX peer needs batches of equal size")

    def step(params, Xb, yb):
        loss, g = grad(params, Xb, yb)
        return jax.tree.map(lambda p, d: p - lr * d, params, g), loss

    def epoch(_, carry):
        params, X, y, _loss = carry
        if steps == 1:
            params, loss = step(params, X, y)
        else:

            def one(i, c):
                p, _l = c
                Xb = lax.dynamic_slice_in_dim(X, i * bs, bs)
                yb = lax.dynamic_slice_in_dim(y, i * bs, bs)
                return step(p, Xb, yb)

            params, loss = lax.fori_loop(0, steps, one, (params, jnp.zeros((), X.dtype)))
        return params, X, y, loss

    def run(params, X, y, n):
        params, _, _, loss = lax.fori_loop(0, n, epoch, (params, X, y, jnp.zeros((), X.dtype)))
        return params, loss

    return run


def _jax_arrays(problem):
    X = jnp.asarray(problem.X)
    if problem.loss == "categorical_crossentropy":
        y = jnp.asarray(np.asarray(problem.y, dtype=np.int64))
    else:
        y = jnp.asarray(np.asarray(problem.y, dtype=np.float64).reshape(problem.n_samples, -1))
    return X, y


def _jax_params(init):
    return tuple((jnp.asarray(W), None if b is None else jnp.asarray(b)) for W, b in init)


class JaxPeer(Peer):
    """The whole training loop under one ``jax.jit``: ``lax.fori_loop`` over
    epochs (and over the batches of an epoch), ``jax.value_and_grad`` of the
    loss, plain SGD; float64.  ``train(n)`` is one call of the jitted
    function, waited for with ``block_until_ready``."""

    family = "jax"

    def __init__(self, problem, threads=1):
        super().__init__(problem, threads)
        self.label = "JAX jit(fori_loop)"
        self._run = None

    def unavailable(self):
        return None if HAVE_JAX else NO_JAX

    def reset(self):
        if self._run is None:
            load_jax()
            self._run = jax.jit(_jax_trainer(self.problem))
            self._X, self._y = _jax_arrays(self.problem)
        self.state = _jax_params(self.problem.init)

    def train(self, n):
        self.state, loss = self._run(self.state, self._X, self._y, n)
        loss.block_until_ready()

    def params(self):
        return [(np.asarray(W), None if b is None else np.asarray(b)) for W, b in self.state]


class PerCall(Peer):
    """Another peer, one epoch a call: ``train(n)`` makes n calls of its
    ``train(1)``, so the time per unit is one call's (for cbp a 1-epoch
    ``fit``, for JAX one dispatch of the jitted loop, for numba one call of
    the compiled function)."""

    def __init__(self, inner):
        super().__init__(inner.problem, inner.threads)
        self.inner = inner
        self.family = getattr(inner, "family", None) or "cbp"
        self.label = f"{inner.label}, 1 epoch a call"

    def unavailable(self):
        return self.inner.unavailable()

    def reset(self):
        self.inner.reset()

    def train(self, n):
        one = self.inner.train
        for _ in range(n):
            one(1)

    def params(self):
        return self.inner.params()


# ---------------------------------------------------------------------------
# numba: explicit loops for the tiny nets, np.dot for the wider ones
# ---------------------------------------------------------------------------
if numba is not None:

    @njit(cache=False, fastmath=False)
    def _nb_xor_epochs(X, Y, W1, W2, lr, n):  # pragma: no cover - compiled
        """n full-batch epochs of a no-bias sigmoid 2-layer net, loss
        0.5 * sum((y - out)^2), ``W += lr * a.T @ delta``; W1, W2 in place.
        Returns the last epoch's loss."""
        N, I = X.shape
        H = W1.shape[1]
        O = W2.shape[1]
        h = np.empty((N, H))
        dh = np.empty((N, H))
        do = np.empty((N, O))
        loss = 0.0
        for _ in range(n):
            loss = 0.0
            for s in range(N):
                for j in range(H):
                    z = 0.0
                    for i in range(I):
                        z += X[s, i] * W1[i, j]
                    h[s, j] = 1.0 / (1.0 + np.exp(-z))
                for k in range(O):
                    z = 0.0
                    for j in range(H):
                        z += h[s, j] * W2[j, k]
                    o = 1.0 / (1.0 + np.exp(-z))
                    e = Y[s, k] - o
                    loss += 0.5 * e * e
                    do[s, k] = e * o * (1.0 - o)
                for j in range(H):
                    g = 0.0
                    for k in range(O):
                        g += do[s, k] * W2[j, k]
                    dh[s, j] = g * h[s, j] * (1.0 - h[s, j])
            for j in range(H):
                for k in range(O):
                    g = 0.0
                    for s in range(N):
                        g += h[s, j] * do[s, k]
                    W2[j, k] += lr * g
            for i in range(I):
                for j in range(H):
                    g = 0.0
                    for s in range(N):
                        g += X[s, i] * dh[s, j]
                    W1[i, j] += lr * g
        return loss

    @njit(cache=False, fastmath=False)
    def _nb_xor_population(X, Y, W1s, W2s, lr, n):  # pragma: no cover - compiled
        """_nb_xor_epochs for every network k of W1s[k], W2s[k], one after another."""
        total = 0.0
        for k in range(W1s.shape[0]):
            total += _nb_xor_epochs(X, Y, W1s[k], W2s[k], lr, n)
        return total

    @njit(cache=False, fastmath=False)
    def _nb_scalar_sgd(xs, ys, p, lr, n):  # pragma: no cover - compiled
        """Tutorial 000's loop: y = v * relu(w * x + b) + c, one update per
        sample, cost 0.5 * (y - t)^2; p = [w, b, v, c] updated in place."""
        w, b, v, c = p[0], p[1], p[2], p[3]
        cost = 0.0
        for _ in range(n):
            for i in range(xs.shape[0]):
                x, t = xs[i], ys[i]
                z = w * x + b
                h = z if z > 0.0 else 0.0
                y = v * h + c
                dy = y - t
                cost = 0.5 * dy * dy
                dz = dy * v if z > 0.0 else 0.0
                v -= lr * dy * h
                c -= lr * dy
                w -= lr * dz * x
                b -= lr * dz
        p[0], p[1], p[2], p[3] = w, b, v, c
        return cost

    @njit(cache=False, fastmath=False)
    def _nb_softmax_mlp(X, y, W1, b1, W2, b2, lr, n):  # pragma: no cover - compiled
        """n full-batch SGD steps of dense -> ReLU -> dense -> softmax with
        mean categorical cross-entropy (probabilities clipped to [1e-7,
        1 - 1e-7] for the loss), the combined gradient (p - onehot) / N;
        np.dot for the products, parameters in place.  Returns the last loss."""
        N = X.shape[0]
        C = W2.shape[1]
        loss = 0.0
        for _ in range(n):
            z1 = np.dot(X, W1) + b1
            a1 = np.maximum(z1, 0.0)
            z2 = np.dot(a1, W2) + b2
            dz2 = np.empty((N, C))
            loss = 0.0
            for s in range(N):
                m = z2[s, 0]
                for k in range(1, C):
                    m = max(m, z2[s, k])
                tot = 0.0
                for k in range(C):
                    e = np.exp(z2[s, k] - m)
                    dz2[s, k] = e
                    tot += e
                for k in range(C):
                    dz2[s, k] /= tot
                pk = min(max(dz2[s, y[s]], 1e-7), 1.0 - 1e-7)
                loss -= np.log(pk)
                dz2[s, y[s]] -= 1.0
                for k in range(C):
                    dz2[s, k] /= N
            loss /= N
            dW2 = np.dot(a1.T, dz2)
            db2 = dz2.sum(axis=0)
            dz1 = np.dot(dz2, W2.T)
            for s in range(N):
                for j in range(dz1.shape[1]):
                    if z1[s, j] <= 0.0:
                        dz1[s, j] = 0.0
            dW1 = np.dot(X.T, dz1)
            db1 = dz1.sum(axis=0)
            W1 -= lr * dW1
            b1 -= lr * db1
            W2 -= lr * dW2
            b2 -= lr * db2
        return loss


class NumbaPeer(Peer):
    """``@njit`` training loops, float64: explicit loops for the XOR net
    (kind "xor") and tutorial 000's scalar net (kind "scalar"), np.dot inside
    njit for the softmax classifiers (kind "softmax").  ``train(n)`` is one
    call of the compiled function, which updates the weights in place."""

    family = "numba"

    def __init__(self, problem, kind, threads=1):
        super().__init__(problem, threads)
        self.kind = kind
        self.label = {
            "xor": "numba njit loops",
            "scalar": "numba njit loops",
            "softmax": "numba njit + np.dot",
        }[kind]
        p = problem
        if kind == "xor":
            assert [l.activation for l in p.layers] == ["sigmoid", "sigmoid"]
            assert not any(l.use_bias for l in p.layers) and p.batch_size is None
            assert p.loss == "half_squared_error" and p.reduction == "sum"
            self.Y = np.ascontiguousarray(p.y, dtype=np.float64).reshape(p.n_samples, -1)
        elif kind == "scalar":
            assert [(l.n_in, l.n_out) for l in p.layers] == [(1, 1), (1, 1)] and p.bs == 1
            assert [l.activation for l in p.layers] == ["relu", "identity"]
            self.xs = np.ascontiguousarray(p.X[:, 0])
            self.ys = np.ascontiguousarray(np.ravel(p.y), dtype=np.float64)
        else:
            assert [l.activation for l in p.layers] == ["relu", "softmax"]
            assert p.loss == "categorical_crossentropy" and p.reduction == "mean"
            assert p.batch_size is None
            self.y = np.ascontiguousarray(p.y, dtype=np.int64)

    def unavailable(self):
        return None if numba is not None else "numba not installed (pip install 'cbp[peers]')"

    def reset(self):
        init = self.problem.init
        if self.kind == "scalar":
            (W1, b1), (W2, b2) = init
            self.p = np.array([W1[0, 0], b1[0], W2[0, 0], b2[0]], dtype=np.float64)
        else:
            self.W = [np.array(W, dtype=np.float64, order="C") for W, _ in init]
            self.B = [None if b is None else np.array(b, dtype=np.float64) for _, b in init]

    def train(self, n):
        p = self.problem
        if self.kind == "xor":
            _nb_xor_epochs(p.X, self.Y, self.W[0], self.W[1], p.lr, n)
        elif self.kind == "scalar":
            _nb_scalar_sgd(self.xs, self.ys, self.p, p.lr, n)
        else:
            _nb_softmax_mlp(p.X, self.y, self.W[0], self.B[0], self.W[1], self.B[1], p.lr, n)

    def params(self):
        if self.kind == "scalar":
            w, b, v, c = self.p
            return [(np.array([[w]]), np.array([b])), (np.array([[v]]), np.array([c]))]
        return [(W.copy(), None if b is None else b.copy()) for W, b in zip(self.W, self.B)]


# ---------------------------------------------------------------------------
# Many networks at once: XOR with different initial weights
# ---------------------------------------------------------------------------
class Population:
    """``count`` copies of one problem's architecture with the initial
    weights cbp draws for seeds 0 .. count - 1; all train on the same data."""

    def __init__(self, problem, count):
        from .peers import initial_params

        self.problem, self.count = problem, count
        self.inits = [initial_params(problem.layers, seed) for seed in range(count)]


class _PopulationPeer(Peer):
    """Base: params() is every network's [(W, b)] list, concatenated, so the
    harness compares the whole population at once."""

    def __init__(self, population, threads=1):
        super().__init__(population.problem, threads)
        self.population = population


class CbpPopulationPeer(_PopulationPeer):
    """cbp native, the networks fitted one by one: ``net.fit(epochs=n)`` for
    each (the baseline of ``cbp.fit_many``'s target: >= 4x this)."""

    family = "cbp-one-by-one"
    label = "cbp native fit, one network after another"

    def unavailable(self):
        return None if cbp.native_available() else "cbp's native core is not loaded"

    def reset(self):
        p = self.problem
        self.nets = [
            cbp.Network(
                [
                    cbp.Dense(l.n_in, l.n_out, l.activation, l.use_bias, weights=W, bias=b)
                    for l, (W, b) in zip(p.layers, init)
                ],
                loss=p.loss,
                reduction=p.reduction,
                backend="native",
            )
            for init in self.population.inits
        ]

    def train(self, n):
        p = self.problem
        for net in self.nets:
            net.fit(p.X, p.y, epochs=n, lr=p.lr, batch_size=p.batch_size)

    def params(self):
        return [
            (d.weights.copy(), None if d.bias is None else d.bias.copy())
            for net in self.nets
            for d in net.layers
        ]


class CbpManyPeer(CbpPopulationPeer):
    """``cbp.fit_many(nets, X, y, epochs=n, lr=...)``: the networks in SIMD
    lanes (src/_fm_lanes_body.h) where fit's whole-epoch run applies, as it
    does for XOR."""

    family = "cbp"
    label = "cbp.fit_many (networks in SIMD lanes)"

    def train(self, n):
        p = self.problem
        cbp.fit_many(self.nets, p.X, p.y, epochs=n, lr=p.lr, batch_size=p.batch_size)


class JaxPopulationPeer(_PopulationPeer):
    """``jax.jit(jax.vmap(run))`` over the networks' initial weights, run
    being JaxPeer's whole-loop trainer."""

    family = "jax"
    label = "JAX jit(vmap(fori_loop))"

    def __init__(self, population, threads=1):
        super().__init__(population, threads)
        self._run = None

    def unavailable(self):
        return None if HAVE_JAX else NO_JAX

    def reset(self):
        if self._run is None:
            load_jax()
            self._run = jax.jit(jax.vmap(_jax_trainer(self.problem), in_axes=(0, None, None, None)))
            self._X, self._y = _jax_arrays(self.problem)
        stacked = [
            (
                np.stack([init[i][0] for init in self.population.inits]),
                None
                if self.population.inits[0][i][1] is None
                else np.stack([init[i][1] for init in self.population.inits]),
            )
            for i in range(len(self.problem.layers))
        ]
        self.state = _jax_params(stacked)

    def train(self, n):
        self.state, loss = self._run(self.state, self._X, self._y, n)
        loss.block_until_ready()

    def params(self):
        arrays = [(np.asarray(W), None if b is None else np.asarray(b)) for W, b in self.state]
        return [
            (W[k], None if b is None else b[k])
            for k in range(self.population.count)
            for W, b in arrays
        ]


class NumbaPopulationPeer(_PopulationPeer):
    """NumbaPeer's XOR loop applied to each network in turn, inside one njit call."""

    family = "numba"
    label = "numba njit loops, one network after another"

    def __init__(self, population, threads=1):
        super().__init__(population, threads)
        p = population.problem
        assert not any(l.use_bias for l in p.layers)
        self.Y = np.ascontiguousarray(p.y, dtype=np.float64).reshape(p.n_samples, -1)

    def unavailable(self):
        return None if numba is not None else "numba not installed (pip install 'cbp[peers]')"

    def reset(self):
        inits = self.population.inits
        self.W1s = np.stack([init[0][0] for init in inits])
        self.W2s = np.stack([init[1][0] for init in inits])

    def train(self, n):
        p = self.problem
        _nb_xor_population(p.X, self.Y, self.W1s, self.W2s, p.lr, n)

    def params(self):
        return [
            (W.copy(), None)
            for k in range(self.population.count)
            for W in (self.W1s[k], self.W2s[k])
        ]
