"""The peers: every implementation the benchmark times against cbp.

A :class:`Problem` says what is trained (layers, loss, data, learning rate,
batch size, initial weights); a :class:`Peer` trains it its own way.  Every
peer has the same three methods:

``reset()``
    start again from the problem's initial weights;
``train(n)``
    n epochs over the problem's data (a full-batch epoch is one step);
``params()``
    the current weights as ``[(W, b), ...]`` in cbp's layout, W of shape
    (n_in, n_out) and b of shape (n_out,) or None, so that any two peers
    can be compared parameter by parameter.

Peers only use public APIs: ``cbp.Network``/``cbp.Dense``, NumPy, torch's
``nn``/``optim`` and scikit-learn's estimator methods.
"""

import math
from dataclasses import dataclass, field

import numpy as np

import cbp

from .timing import TORCH_DEFAULT_THREADS, torch

try:
    import sklearn
    from sklearn.neural_network import MLPClassifier
except ImportError:
    sklearn = None


# ---------------------------------------------------------------------------
# What is trained
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Layer:
    """One dense layer, as cbp.Dense takes it."""

    n_in: int
    n_out: int
    activation: str
    use_bias: bool = True
    init: str = "glorot"


@dataclass
class Problem:
    """One training problem that every peer of a workload runs identically.

    ``y`` holds integer class labels for ``categorical_crossentropy`` and
    float64 targets of shape (n, n_out) for the squared-error losses.
    ``batch_size`` None means full batch: one update per epoch.
    """

    layers: tuple
    loss: str
    X: np.ndarray
    y: np.ndarray
    lr: float
    reduction: str = "mean"
    batch_size: int = None
    seed: int = 0
    init: list = field(default=None)

    def __post_init__(self):
        self.X = np.ascontiguousarray(self.X, dtype=np.float64)
        if self.init is None:
            self.init = initial_params(self.layers, self.seed)

    @property
    def n_samples(self):
        return self.X.shape[0]

    @property
    def bs(self):
        return self.n_samples if self.batch_size is None else min(self.batch_size, self.n_samples)

    @property
    def steps_per_epoch(self):
        return math.ceil(self.n_samples / self.bs)

    def batches(self):
        """The epoch's batches as a list of (X, y) views, made once per peer.

        Every loop-based peer iterates over this list, so none of them pays
        for slicing inside its timed loop (cbp's fit slices natively).
        """
        return [
            (self.X[s : s + self.bs], self.y[s : s + self.bs])
            for s in range(0, self.n_samples, self.bs)
        ]


def initial_params(layers, seed):
    """Initial weights drawn by cbp itself (each layer's ``init``), as [(W, b)]."""
    net = cbp.Network(
        [cbp.Dense(l.n_in, l.n_out, l.activation, l.use_bias, init=l.init) for l in layers],
        seed=seed,
    )
    return [(d.weights.copy(), None if d.bias is None else d.bias.copy()) for d in net.layers]


def train_step_flops(layers, n):
    """Floating-point operations of one forward + backward pass on n samples.

    Counts the matrix products only (2 flops per multiply-add): X @ W forward,
    X.T @ dZ for dW, and dZ @ W.T for dX in every layer but the first (no
    gradient is needed for the input).  Activations, loss and update are
    O(n * width) and left out.
    """
    total = 0
    for i, l in enumerate(layers):
        mm = 2 * n * l.n_in * l.n_out
        total += mm + mm + (mm if i > 0 else 0)
    return total


# ---------------------------------------------------------------------------
# The peer interface
# ---------------------------------------------------------------------------
class Peer:
    """Base class; see the module docstring."""

    #: the name shown in the results table
    label = "peer"
    #: the peer's parameters are compared with the reference before timing
    check = True
    #: why ``check`` is False, for the table
    no_check_reason = ""

    def __init__(self, problem, threads=1):
        self.problem = problem
        #: threads for BLAS/OpenMP/torch while this peer runs; None = library default
        self.threads = threads

    def unavailable(self):
        """None if the peer can run here, else the reason it cannot (it is skipped)."""
        return None

    @property
    def threads_label(self):
        return str(self.threads) if self.threads is not None else "default"

    def reset(self):
        raise NotImplementedError

    def train(self, n):
        raise NotImplementedError

    def params(self):
        raise NotImplementedError


# ---------------------------------------------------------------------------
# cbp itself, native core or NumPy backend
# ---------------------------------------------------------------------------
class CbpPeer(Peer):
    """cbp through its public API.

    via="fit": ``net.fit(X, y, epochs=n)``, one call for all n epochs (the
    loop that is moving into the native core).  via="train_step": a Python
    loop of ``net.train_step`` calls, one per batch, as a user who steps by
    hand writes it.
    """

    def __init__(self, problem, backend="native", via="fit", threads=1):
        super().__init__(problem, threads)
        self.backend, self.via = backend, via
        self.label = f"cbp {backend} {via}" + (" (default threads)" if threads is None else "")
        if via == "train_step":
            self._batches = problem.batches()

    def unavailable(self):
        if self.backend == "native" and not cbp.native_available():
            return "cbp's native core is not loaded"
        return None

    def reset(self):
        p = self.problem
        layers = [
            cbp.Dense(l.n_in, l.n_out, l.activation, l.use_bias, weights=W, bias=b)
            for l, (W, b) in zip(p.layers, p.init)
        ]
        self.net = cbp.Network(layers, loss=p.loss, reduction=p.reduction, backend=self.backend)

    def train(self, n):
        p, net = self.problem, self.net
        if self.via == "fit":
            net.fit(p.X, p.y, epochs=n, lr=p.lr, batch_size=p.batch_size)
        else:
            batches, lr, step = self._batches, p.lr, net.train_step
            for _ in range(n):
                for Xb, yb in batches:
                    step(Xb, yb, lr)

    def params(self):
        return [
            (d.weights.copy(), None if d.bias is None else d.bias.copy()) for d in self.net.layers
        ]


# ---------------------------------------------------------------------------
# Seed-style NumPy loops: the code the tutorials teach, kept as they write it
# ---------------------------------------------------------------------------
class SeedPeer(Peer):
    """Common parts of the seed-style loops: copies of the initial weights."""

    label = "seed-style NumPy"

    def reset(self):
        self.W = [W.copy() for W, _ in self.problem.init]
        # the tutorials keep biases as (1, n) rows
        self.B = [None if b is None else b.reshape(1, -1).copy() for _, b in self.problem.init]

    def params(self):
        return [(W.copy(), None if b is None else b.ravel().copy()) for W, b in zip(self.W, self.B)]


class SeedXorPeer(SeedPeer):
    """Seed 004, line for line: 2-H-1 sigmoid, no biases, full batch,
    loss 0.5 * sum((y - output)^2), ``w += X.T.dot(delta) * learning_rate``.

    The only change: X and y are float64 arrays (the seed writes int arrays,
    which NumPy would convert in every np.dot).
    """

    def __init__(self, problem, threads=1):
        super().__init__(problem, threads)
        assert [l.activation for l in problem.layers] == ["sigmoid", "sigmoid"]
        assert problem.batch_size is None and problem.reduction == "sum"
        self.Y = np.asarray(problem.y, dtype=np.float64)

    def train(self, n):
        def sigmoid(x):
            return 1 / (1 + np.exp(-x))

        def sigmoid_derivative(x):
            return x * (1 - x)

        X, y, learning_rate = self.problem.X, self.Y, self.problem.lr
        w1, w2 = self.W
        for _ in range(n):  # the seed's `for i in range(epochs)`
            # Forward propagation
            layer1_output = sigmoid(np.dot(X, w1))
            output = sigmoid(np.dot(layer1_output, w2))
            # Backpropagation
            error = y - output
            output_delta = error * sigmoid_derivative(output)
            layer1_error = output_delta.dot(w2.T)
            layer1_delta = layer1_error * sigmoid_derivative(layer1_output)
            # Update weights
            w2 += layer1_output.T.dot(output_delta) * learning_rate
            w1 += X.T.dot(layer1_delta) * learning_rate


class SeedSoftmaxPeer(SeedPeer):
    """nnfs style (seed 003's classes, flattened into one loop), as the nnfs
    code runs a training epoch: dense -> ReLU -> dense -> softmax, categorical
    cross-entropy averaged over the batch with clipped probabilities, the
    accuracy of the batch, the combined softmax/CCE gradient (p - onehot) / N,
    and every dense layer's backward as nnfs's ``Layer_Dense.backward`` writes
    it: dweights, dbiases and dinputs (seed 003's dl/dX), the first layer's
    included; plain SGD.

    ``lean=True`` drops the two things cbp does not do on this path (the
    first layer's dinputs, which nothing reads, and the accuracy): the
    tightest NumPy loop of the same training, reported beside the seed loop.
    """

    def __init__(self, problem, threads=1, lean=False):
        super().__init__(problem, threads)
        assert [l.activation for l in problem.layers] == ["relu", "softmax"]
        assert problem.loss == "categorical_crossentropy" and problem.reduction == "mean"
        self._batches = problem.batches()
        self.lean = lean
        if lean:
            self.label = "lean NumPy (no input-layer dX, no accuracy)"

    def train(self, n):
        W1, W2 = self.W
        b1, b2 = self.B
        learning_rate, lean = self.problem.lr, self.lean
        for _ in range(n):
            for X, y in self._batches:
                # Forward pass
                z1 = np.dot(X, W1) + b1
                a1 = np.maximum(0, z1)
                z2 = np.dot(a1, W2) + b2
                exp_values = np.exp(z2 - np.max(z2, axis=1, keepdims=True))
                probabilities = exp_values / np.sum(exp_values, axis=1, keepdims=True)
                # Loss
                samples = len(probabilities)
                y_pred_clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
                correct_confidences = y_pred_clipped[range(samples), y]
                loss = np.mean(-np.log(correct_confidences))  # noqa: F841 (cbp computes it too)
                if not lean:
                    predictions = np.argmax(probabilities, axis=1)
                    accuracy = np.mean(predictions == y)  # noqa: F841
                # Backward pass: softmax + categorical cross-entropy combined
                dz2 = probabilities.copy()
                dz2[range(samples), y] -= 1
                dz2 = dz2 / samples
                dW2 = np.dot(a1.T, dz2)
                db2 = np.sum(dz2, axis=0, keepdims=True)
                da1 = np.dot(dz2, W2.T)
                dz1 = da1.copy()
                dz1[z1 <= 0] = 0
                dW1 = np.dot(X.T, dz1)
                db1 = np.sum(dz1, axis=0, keepdims=True)
                if not lean:
                    dX = np.dot(dz1, W1.T)  # noqa: F841 (nnfs's dinputs of the first layer)
                # SGD update
                W1 += -learning_rate * dW1
                b1 += -learning_rate * db1
                W2 += -learning_rate * dW2
                b2 += -learning_rate * db2


class SeedScalarPeer(SeedPeer):
    """Seed 000, line for line: y = v * relu(w * x + b) + c on Python scalars,
    one update per example, cost 0.5 * (y - y_target)^2.  ``relu`` is the
    seed's ``np.maximum(0, x)``, so the scalars become NumPy scalars as in
    the seed.
    """

    def __init__(self, problem, threads=1):
        super().__init__(problem, threads)
        assert [(l.n_in, l.n_out) for l in problem.layers] == [(1, 1), (1, 1)]
        assert problem.bs == 1
        self.samples = list(zip(problem.X[:, 0].tolist(), np.ravel(problem.y).tolist()))

    def reset(self):
        (W1, b1), (W2, b2) = self.problem.init
        self.w, self.b, self.v, self.c = (
            float(W1[0, 0]),
            float(b1[0]),
            float(W2[0, 0]),
            float(b2[0]),
        )

    def params(self):
        f = lambda s: np.array([[float(s)]])  # noqa: E731
        return [(f(self.w), f(self.b).ravel()), (f(self.v), f(self.c).ravel())]

    def train(self, n):
        def relu(x):
            return np.maximum(0, x)

        w, b, v, c = self.w, self.b, self.v, self.c
        learning_rate = self.problem.lr
        for _ in range(n):
            for x, y_target in self.samples:
                # Forward pass
                z = w * x + b
                h = relu(z)
                y = v * h + c
                # Compute the cost
                cost = 0.5 * (y - y_target) ** 2  # noqa: F841 (as the seed does)
                # Compute the gradients
                dJ_dy = y - y_target
                dJ_dv = dJ_dy * h
                dJ_dc = dJ_dy
                dJ_dh = dJ_dy * v
                dJ_dz = dJ_dh if z > 0 else 0
                dJ_dw = dJ_dz * x
                dJ_db = dJ_dz
                # Update the parameters using gradient descent
                v -= learning_rate * dJ_dv
                c -= learning_rate * dJ_dc
                w -= learning_rate * dJ_dw
                b -= learning_rate * dJ_db
        self.w, self.b, self.v, self.c = w, b, v, c


# ---------------------------------------------------------------------------
# PyTorch, float64, written idiomatically
# ---------------------------------------------------------------------------
class TorchPeer(Peer):
    """``nn.Sequential`` of ``nn.Linear`` (float64) and activation modules,
    ``torch.optim.SGD``, ``zero_grad / loss.backward() / step`` per batch.
    A softmax output with categorical cross-entropy becomes logits and
    ``F.cross_entropy``; the squared errors use ``F.mse_loss`` (times 0.5 for
    the half squared error).
    """

    _ACT = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh", "identity": None}

    def __init__(self, problem, threads=1):
        super().__init__(problem, threads)
        self.label = "torch float64" + ("" if threads is not None else " (default threads)")

    @property
    def threads_label(self):
        n = self.threads if self.threads is not None else TORCH_DEFAULT_THREADS
        return "default" if n is None else str(n)

    def _tensors(self):
        """The epoch's batches as tensors sharing memory with the problem's arrays."""
        p = self.problem
        if p.loss == "categorical_crossentropy":
            assert p.layers[-1].activation == "softmax"
            y = torch.as_tensor(np.asarray(p.y), dtype=torch.long)
        else:
            y = torch.as_tensor(np.asarray(p.y, dtype=np.float64).reshape(p.n_samples, -1))
        X = torch.as_tensor(p.X)
        return [(X[s : s + p.bs], y[s : s + p.bs]) for s in range(0, p.n_samples, p.bs)]

    def unavailable(self):
        return None if torch is not None else "torch not installed"

    def reset(self):
        nn, p = torch.nn, self.problem
        modules = []
        for i, l in enumerate(p.layers):
            modules.append(nn.Linear(l.n_in, l.n_out, bias=l.use_bias, dtype=torch.float64))
            last_softmax = i == len(p.layers) - 1 and l.activation == "softmax"
            if not last_softmax and self._ACT[l.activation]:
                modules.append(getattr(nn, self._ACT[l.activation])())
        self._batches = self._tensors()
        self.model = nn.Sequential(*modules)
        self.linears = [m for m in modules if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for lin, (W, b) in zip(self.linears, p.init):
                lin.weight.copy_(torch.from_numpy(W.T))  # torch stores (out, in)
                if b is not None:
                    lin.bias.copy_(torch.from_numpy(b))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=p.lr)
        F, red = torch.nn.functional, p.reduction
        if p.loss == "categorical_crossentropy":
            self.loss_fn = lambda out, y: F.cross_entropy(out, y, reduction=red)
        elif p.loss == "half_squared_error":
            self.loss_fn = lambda out, y: 0.5 * F.mse_loss(out, y, reduction=red)
        elif p.loss == "squared_error":
            self.loss_fn = lambda out, y: F.mse_loss(out, y, reduction=red)
        else:
            raise ValueError(f"no torch loss for {p.loss}")

    def train(self, n):
        model, optimizer, loss_fn = self.model, self.optimizer, self.loss_fn
        for _ in range(n):
            for X, y in self._batches:
                optimizer.zero_grad()
                loss = loss_fn(model(X), y)
                loss.backward()
                optimizer.step()

    def params(self):
        return [
            (
                lin.weight.detach().numpy().T.copy(),
                None if lin.bias is None else lin.bias.detach().numpy().copy(),
            )
            for lin in self.linears
        ]


# ---------------------------------------------------------------------------
# scikit-learn's MLPClassifier
# ---------------------------------------------------------------------------
class SklearnPeer(Peer):
    """``MLPClassifier(solver="sgd", momentum=0, alpha=0, shuffle=False)``,
    one ``partial_fit`` call (one epoch) at a time.

    scikit-learn draws its own initial weights; its constructor cannot take
    ours.  ``reset`` therefore makes one ``partial_fit`` call to build the
    model, then copies the problem's weights *into* ``coefs_`` and
    ``intercepts_`` in place (the SGD optimizer updates those very arrays), so
    that from then on it trains from the same start as everyone else.  This
    reaches into fitted attributes; if the comparison fails, suspect that
    first.
    """

    label = "sklearn MLPClassifier partial_fit"

    def __init__(self, problem, threads=1):
        super().__init__(problem, threads)
        p = problem
        assert p.loss == "categorical_crossentropy" and p.reduction == "mean"
        assert len(p.layers) == 2 and [l.activation for l in p.layers] == ["relu", "softmax"]
        self.classes = np.arange(p.layers[-1].n_out)
        self.y = np.asarray(p.y)

    def unavailable(self):
        return None if sklearn is not None else "scikit-learn not installed"

    def reset(self):
        p = self.problem
        self.clf = MLPClassifier(
            hidden_layer_sizes=(p.layers[0].n_out,),
            activation="relu",
            solver="sgd",
            batch_size=p.bs,
            learning_rate="constant",
            learning_rate_init=p.lr,
            momentum=0.0,
            nesterovs_momentum=False,
            alpha=0.0,
            shuffle=False,
            max_iter=1,
            random_state=0,
        )
        self.clf.partial_fit(p.X, self.y, classes=self.classes)
        for dst, (W, _) in zip(self.clf.coefs_, p.init):
            dst[...] = W
        for dst, (_, b) in zip(self.clf.intercepts_, p.init):
            dst[...] = b

    def train(self, n):
        clf, X, y = self.clf, self.problem.X, self.y
        for _ in range(n):
            clf.partial_fit(X, y)

    def params(self):
        return [(W.copy(), b.copy()) for W, b in zip(self.clf.coefs_, self.clf.intercepts_)]


# ---------------------------------------------------------------------------
# Comparing parameters
# ---------------------------------------------------------------------------
def compare_params(got, ref, rtol=1e-9, atol=1e-12):
    """(agrees, max relative difference) of two [(W, b)] lists.

    Agreement is ``np.allclose(got, ref, rtol, atol)`` on every array; the
    relative difference is |got - ref| / max(|ref|, atol), for the report.
    """
    ok, worst = True, 0.0
    for (W, b), (Wr, br) in zip(got, ref, strict=True):
        for a, r in ((W, Wr), (b, br)):
            if a is None and r is None:
                continue
            if a is None or r is None or np.shape(a) != np.shape(r):
                return False, math.inf
            a, r = np.asarray(a, dtype=np.float64), np.asarray(r, dtype=np.float64)
            if not np.isfinite(a).all():
                return False, math.inf
            ok &= bool(np.allclose(a, r, rtol=rtol, atol=atol))
            worst = max(worst, float(np.max(np.abs(a - r) / np.maximum(np.abs(r), atol))))
    return ok, worst
