"""Training: Network.fit against its pieces, the two backends against each other.

Where the expected values come from:

* ``fit`` is checked against loops of the public single-step API
  (``forward`` / ``train_step``) over the batches it documents, in the order
  given by the shuffle generator re-implemented here in plain Python integers
  (splitmix64, itself checked against the generator's published reference
  outputs);
* dropout masks are read off a probe network whose updated weights *are* the
  mask, and compared with masks drawn by the same Python generator;
* penalties, optimizer updates, initial draws and early stopping are checked
  against their documented formulas, re-computed here in NumPy, or against
  values worked out by hand;
* the native and NumPy backends are compared with each other after tens of
  epochs over a grid of optimizers, batch sizes, shuffle, tasks, penalties
  and dropout.
"""

import math
import sys
import types

import numpy as np
import pytest

import cbp
from cbp import _reference as ref
from cbp import optim


def kernels(backend):
    return cbp._backend.module(backend)


def assert_close(actual, desired, rtol=1e-12, atol=0.0, err_msg=""):
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=err_msg)


# The training tests decorated with these run on the native core's other code
# paths as well (tests/conftest.py: the row chunks on two threads, the
# feature-major passes of fit), against the same expected values: the NumPy
# twin, or loops of train_step calls, which take neither path.
#: backend: native, numpy, and native on both paths
ON_EVERY_PATH = pytest.mark.parametrize(
    "backend", ["native", "numpy", "native-two_threads", "native-feature_major"], indirect=True
)
#: native (side by side with the twin) on both paths
NATIVE_ON_EVERY_PATH = pytest.mark.parametrize(
    "native", ["native", "native-two_threads", "native-feature_major"], indirect=True
)
#: dropout is never trained feature-major: the two-thread path only
ON_TWO_THREADS = pytest.mark.parametrize(
    "backend", ["native", "numpy", "native-two_threads"], indirect=True
)
NATIVE_ON_TWO_THREADS = pytest.mark.parametrize(
    "native", ["native", "native-two_threads"], indirect=True
)


# ---------------------------------------------------------------------------
# splitmix64 in plain Python integers: an independent twin of the generator
# that drives the shuffle and the dropout masks (cbp/_codes.py: the shuffle of
# epoch e uses stream 2e; dropout layer l of L in epoch e uses stream
# 2(e * L + l) + 1, draws from row * width on).
# ---------------------------------------------------------------------------
MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
M1, M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB

#: the first outputs of SplitMix64 seeded with 1234567 (Rosetta Code,
#: "Pseudo-random numbers/Splitmix64"; also Vigna's splitmix64.c).
SPLITMIX_1234567 = [
    6457827717110365317,
    3203168211198807973,
    9817491932198370423,
    4593380528125082431,
    16408922859458223821,
]


def py_mix(z):
    z = ((z ^ (z >> 30)) * M1) & MASK64
    z = ((z ^ (z >> 27)) * M2) & MASK64
    return z ^ (z >> 31)


def _unshift(z, s):
    x = z
    for _ in range(64 // s + 1):
        x = z ^ (x >> s)
    return x


def py_unmix(z):
    """The inverse of py_mix (each step is a bijection of 64-bit words)."""
    z = _unshift(z, 31)
    z = (z * pow(M2, -1, 1 << 64)) & MASK64
    z = _unshift(z, 27)
    z = (z * pow(M1, -1, 1 << 64)) & MASK64
    return _unshift(z, 30)


def py_random_bits(seed, stream, start, n):
    """Draws start .. start+n-1 of a stream: splitmix64 started at mix(seed ^ stream*G)."""
    base = py_mix(seed ^ ((stream * GOLDEN) & MASK64))
    return [py_mix((base + (start + i + 1) * GOLDEN) & MASK64) for i in range(n)]


def py_shuffle_order(seed, epoch, n):
    """The documented order: indices sorted by their key, ties by index."""
    keys = py_random_bits(seed, 2 * epoch, 0, n)
    return np.array(sorted(range(n), key=lambda i: (keys[i], i)), dtype=np.int64)


def py_dropout_mask(seed, stream, start, rate, size):
    """Inverted dropout: 1/(1-rate) where the 53-bit uniform draw is >= rate, else 0."""
    u = np.array([b >> 11 for b in py_random_bits(seed, stream, start, size)], dtype=np.float64)
    u *= 2.0**-53
    return np.where(u >= rate, 1.0 / (1.0 - rate), 0.0)


def test_python_splitmix_matches_published_reference():
    """Our Python twin is splitmix64: seeded so that its base is 1234567, it
    gives Rosetta Code's reference outputs, and unmix inverts mix."""
    for z in (0, 1, 1234567, GOLDEN, MASK64, 2**63):
        assert py_mix(py_unmix(z)) == z
    seed = py_unmix(1234567)  # stream 0: base = mix(seed) = 1234567
    assert py_random_bits(seed, 0, 0, 5) == SPLITMIX_1234567
    assert py_mix(GOLDEN) == 0xE220A8397B1DCDAF  # splitmix64 seeded with 0


def test_random_bits_are_splitmix64(backend):
    """Both backends' random_bits give splitmix64's reference outputs, and
    ``start`` skips draws."""
    mod = kernels(backend)
    seed = py_unmix(1234567)
    bits = mod.random_bits(seed, 0, 0, 5)
    assert bits.dtype == np.uint64
    assert [int(b) for b in bits] == SPLITMIX_1234567
    assert [int(b) for b in mod.random_bits(seed, 0, 2, 3)] == SPLITMIX_1234567[2:]


SEEDS = [0, 1, 2, 7, 12345, 2**31 - 1, 2**32, 2**32 + 1, 2**53 + 3, 2**63 - 1, 2**63, 2**64 - 1]


def test_random_bits_and_shuffle_order_agree_across_backends(native):
    """cbp._reference and cbp._core draw the same numbers and the same orders,
    and both equal the plain-Python splitmix64, over many seeds, epochs/streams
    and offsets."""
    for seed in SEEDS:
        for epoch in (0, 1, 2, 3, 17, 1000, 2**40):
            for n in (1, 2, 9, 64):
                a = ref.shuffle_order(seed, epoch, n)
                b = native.shuffle_order(seed, epoch, n)
                assert a.dtype == b.dtype == np.int64
                np.testing.assert_array_equal(a, b, err_msg=f"seed={seed} epoch={epoch} n={n}")
            np.testing.assert_array_equal(
                ref.shuffle_order(seed, epoch, 64), py_shuffle_order(seed, epoch, 64)
            )
        for stream in (0, 1, 2, 5, 2**33 + 1):
            for start in (0, 3, 1000):
                a = ref.random_bits(seed, stream, start, 16)
                b = native.random_bits(seed, stream, start, 16)
                np.testing.assert_array_equal(a, b, err_msg=f"seed={seed} stream={stream}")
                assert [int(v) for v in a] == py_random_bits(seed, stream, start, 16)


def test_shuffle_order_is_a_permutation_that_changes_every_epoch(backend):
    mod = kernels(backend)
    for n in (1, 2, 3, 10, 257):
        for epoch in range(4):
            order = mod.shuffle_order(3, epoch, n)
            np.testing.assert_array_equal(np.sort(order), np.arange(n))
    orders = [tuple(mod.shuffle_order(3, epoch, 50)) for epoch in range(20)]
    assert len(set(orders)) == 20  # a new order every epoch
    assert tuple(range(50)) not in orders
    other_seed = [tuple(mod.shuffle_order(4, epoch, 50)) for epoch in range(20)]
    assert not set(orders) & set(other_seed)


# ---------------------------------------------------------------------------
# Tasks: small networks on the nnfs data sets
# ---------------------------------------------------------------------------
PENALTIES = dict(weight_l1=1e-4, weight_l2=5e-4, bias_l1=2e-4, bias_l2=1e-3)


def _binary():
    X, labels = cbp.datasets.spiral_data(18, 2)
    return X, np.eye(2)[labels]  # two sigmoid outputs, one-hot targets


DATA = {
    "spiral": cbp.datasets.spiral_data(12, 3),  # 36 samples, labels
    "vertical": cbp.datasets.vertical_data(12, 3),
    "binary": _binary(),
    "sine": cbp.datasets.sine_data(36),
}
#: n_in, hidden width, hidden activation, n_out, output activation, loss
SPECS = {
    "spiral": (2, 12, "relu", 3, "softmax", "categorical_crossentropy"),
    "vertical": (2, 10, "tanh", 3, "softmax", "categorical_crossentropy"),
    "binary": (2, 10, "relu", 2, "sigmoid", "binary_crossentropy"),
    "sine": (1, 12, "tanh", 1, "identity", "squared_error"),
}
TASKS = list(SPECS)


def build(task, backend, *, dropout=0.0, penalties=False, seed=11, optimizer=None):
    n_in, width, act, n_out, out_act, loss = SPECS[task]
    pen = PENALTIES if penalties else {}
    layers = [cbp.Dense(n_in, width, act, **pen)]
    if dropout:
        layers.append(cbp.Dropout(dropout))
    layers.append(cbp.Dense(width, n_out, out_act, **pen))
    return cbp.Network(layers, loss=loss, backend=backend, seed=seed, optimizer=optimizer)


def targets_2d(task, y):
    """The targets as the network sees them: one-hot rows for class labels."""
    y = np.asarray(y)
    if task in ("spiral", "vertical"):
        return np.eye(SPECS[task][3])[y]
    return y.reshape(len(y), -1).astype(float)


def correct(task, out, Y):
    """(hits, judged) of a batch: argmax for softmax, each output vs 0.5 for sigmoid."""
    if task in ("spiral", "vertical"):
        return int(np.sum(out.argmax(1) == Y.argmax(1))), len(Y)
    if task == "binary":
        return int(np.sum((out > 0.5) == (Y > 0.5))), Y.size
    return 0, 0


@pytest.mark.parametrize("native", ["native-two_threads"], indirect=True)
def test_the_networks_here_train_on_two_threads(native):
    """On the two-thread path, the networks of these tests split their steps
    in fit, in train_step's fast path and in its validated path."""
    X, y = DATA["spiral"]
    net = build("spiral", "native")
    net.fit(X, y, epochs=2, batch_size=9)  # 36 rows: 4 batches of 9
    assert net._engine.threads_used == 2
    net.train_step(X[:5], y[:5], lr=0.1)  # the fast path
    assert net._engine.threads_used == 2
    net.train_step(X[:5].tolist(), y[:5].tolist())  # the validated path, optimizer
    assert net._engine.threads_used == 2
    net.fit(X, y, epochs=1, batch_size=1)  # one row: one thread
    assert net._engine.threads_used == 1


@pytest.mark.parametrize("native", ["native-feature_major"], indirect=True)
@pytest.mark.parametrize("task", TASKS)
def test_the_networks_here_train_feature_major(native, task):
    """On the feature-major path, the networks of these tests take it in fit;
    with dropout they stay on the row-major passes."""
    X, y = DATA[task]
    net = build(task, "native")
    net.fit(X, y, epochs=1, lr=0.01)
    assert net._engine.ld > 0
    net = build(task, "native", dropout=0.25)
    net.fit(X, y, epochs=1, lr=0.01)
    assert net._engine.ld == 0


# Moderate learning rates: per-sample steps with large ones turn chaotic (a
# weight that L1 and RMSprop keep bouncing around zero flips sign on a
# rounding difference), and then no two summation orders agree to 1e-9.
OPTIMIZERS = {
    "sgd": lambda decay: optim.SGD(0.05, decay=decay),
    "momentum": lambda decay: optim.SGD(0.02, momentum=0.9, decay=decay),
    "nesterov": lambda decay: optim.SGD(0.02, momentum=0.9, nesterov=True, decay=decay),
    "adagrad": lambda decay: optim.Adagrad(0.05, epsilon=1e-7, decay=decay),
    "rmsprop": lambda decay: optim.RMSprop(0.003, rho=0.9, epsilon=1e-7, decay=decay),
    "adam": lambda decay: optim.Adam(0.003, beta_1=0.9, beta_2=0.999, epsilon=1e-7, decay=decay),
}
BATCHES = [None, 1, 7, 32]  # 36 samples: full batch, per sample, 5x7+1, 32+4


def _backend_cases():
    """Every optimizer (with and without decay) x every batch size; the task,
    shuffle, penalties and dropout rotate so that each meets each of the others."""
    cases = []
    opts = [(name, decay) for name in OPTIMIZERS for decay in (0.0, 0.05)]
    for i, (name, decay) in enumerate(opts):
        for j, bs in enumerate(BATCHES):
            task = TASKS[(i + j) % 4]
            shuffle = (i + j // 2) % 2 == 1
            dropout = 0.25 if (i // 2 + j) % 2 else 0.0
            penalties = (i + j) % 3 != 0
            ident = "-".join(
                [
                    name + ("-decay" if decay else ""),
                    f"bs{bs}",
                    task,
                    "shuffle" if shuffle else "inorder",
                    "dropout" if dropout else "nodrop",
                    "l1l2" if penalties else "nopen",
                ]
            )
            cases.append(pytest.param(name, decay, bs, task, shuffle, dropout, penalties, id=ident))
    return cases


EPOCHS = 20


@NATIVE_ON_EVERY_PATH
@pytest.mark.parametrize(
    "opt, decay, batch_size, task, shuffle, dropout, penalties", _backend_cases()
)
def test_backends_agree_after_training(
    native, opt, decay, batch_size, task, shuffle, dropout, penalties
):
    """Native and NumPy fits give the same parameters, optimizer state and
    history (1e-9) after 20 epochs."""
    X, y = DATA[task]
    Xv, yv = X[1::3], y[1::3]
    runs = []
    for backend in ("native", "numpy"):
        net = build(task, backend, dropout=dropout, penalties=penalties)
        start = net.parameters.copy()
        hist = net.fit(
            X,
            y,
            epochs=EPOCHS,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=5,
            optimizer=OPTIMIZERS[opt](decay),
            validation_data=(Xv, yv),
        )
        runs.append((net, hist))
        assert np.isfinite(net.parameters).all()
        assert not np.allclose(net.parameters, start, rtol=0, atol=1e-6), "nothing was trained"
    (a, ha), (b, hb) = runs
    assert a.backend == "native" and b.backend == "numpy"
    assert set(ha) == set(hb)
    for key in ha:
        assert ha[key].shape == (EPOCHS,)
        assert_close(ha[key], hb[key], rtol=1e-9, err_msg=key)
    # 1e-9 of each value, or of the largest one for values that cross zero
    assert_close(a.parameters, b.parameters, rtol=1e-9, atol=1e-9 * np.abs(b.parameters).max())
    assert_close(
        a.optimizer.state,
        b.optimizer.state,
        rtol=1e-9,
        atol=1e-9 * np.abs(b.optimizer.state).max(initial=0.0),
    )
    steps = EPOCHS * math.ceil(len(X) / (batch_size or len(X)))
    assert a.optimizer.iterations == b.optimizer.iterations == steps
    assert a.epochs_trained == b.epochs_trained == EPOCHS


# ---------------------------------------------------------------------------
# fit == a loop of train_step over the batches it documents
# ---------------------------------------------------------------------------
@ON_EVERY_PATH
@pytest.mark.parametrize("task", ["spiral", "binary", "sine"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["inorder", "shuffle"])
@pytest.mark.parametrize("batch_size", [None, 1, 7, 32, 100])
def test_fit_equals_train_step_loop(backend, batch_size, shuffle, task):
    """Every epoch of fit is train_step over consecutive slices of the
    (shuffled) samples: per sample for batch_size=1 (seed 000), one full batch
    for None (seed 004), batches of k with a partial last one, and one batch
    when k exceeds the sample count.  hist["loss"] is the mean of the
    train_step losses and hist["accuracy"] the share of correct outputs of
    those same (pre-update) batches."""
    X, y = DATA[task]
    Y = targets_2d(task, y)
    n, seed, epochs = len(X), 21, 4
    new_opt = lambda: optim.Adam(0.02, decay=0.01)  # noqa: E731

    fitted = build(task, backend, penalties=True)
    seen = []
    hist = fitted.fit(
        X,
        y,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        optimizer=new_opt(),
        callback=lambda e, logs: seen.append(fitted.parameters.copy()),
        callback_every=1,
    )

    looped = build(task, backend, penalties=True, optimizer=new_opt())
    step = n if batch_size is None else min(batch_size, n)
    losses, accuracies = [], []
    for epoch in range(epochs):
        order = py_shuffle_order(seed, epoch, n) if shuffle else np.arange(n)
        batch_losses, hits, judged = [], 0, 0
        for lo in range(0, n, step):
            idx = order[lo : lo + step]
            h, j = correct(task, looped.forward(X[idx]), Y[idx])
            hits, judged = hits + h, judged + j
            batch_losses.append(looped.train_step(X[idx], y[idx]))
        losses.append(np.mean(batch_losses))
        accuracies.append(hits / judged if judged else np.nan)
        assert_close(seen[epoch], looped.parameters, atol=1e-15, err_msg=f"epoch {epoch}")

    assert_close(hist["loss"], losses)
    if task == "sine":
        assert "accuracy" not in hist
    else:
        assert_close(hist["accuracy"], accuracies)
    assert_close(fitted.optimizer.state, looped.optimizer.state, atol=1e-15)
    assert (
        fitted.optimizer.iterations == looped.optimizer.iterations == epochs * math.ceil(n / step)
    )


def test_fit_in_order_is_not_shuffled_and_shuffle_matters(backend):
    """Without shuffle the samples go in order (so a reversed data set trains
    differently with batch_size=1); with shuffle the order of the rows given
    no longer matters for the batches drawn, only the seed does."""
    X, y = DATA["sine"]
    rev = slice(None, None, -1)
    runs = {}
    for name, (Xs, ys, shuffle) in {
        "in_order": (X, y, False),
        "reversed": (X[rev], y[rev], False),
        "shuffled": (X, y, True),
    }.items():
        net = build("sine", backend)
        net.fit(Xs, ys, epochs=3, batch_size=1, lr=0.05, shuffle=shuffle, seed=1)
        runs[name] = net.parameters
    assert not np.allclose(runs["in_order"], runs["reversed"])
    assert not np.allclose(runs["in_order"], runs["shuffled"])


def test_fit_defaults(backend):
    """No lr and no optimizer: Adam(0.001), which stays the network's
    optimizer, on shuffled batches of 32; with lr, plain gradient descent on
    the full batch in order (the tutorials' loop).  A batch_size above the
    sample count is one full batch; seed defaults to the network's seed,
    else 0."""
    X, y = DATA["sine"]
    a, b = build("sine", backend), build("sine", backend)
    a.fit(X, y, epochs=5)
    b.fit(X, y, epochs=5, optimizer=cbp.optim.Adam(lr=0.001), batch_size=32, shuffle=True)
    np.testing.assert_array_equal(a.parameters, b.parameters)
    assert type(a.optimizer) is cbp.optim.Adam and a.optimizer.lr == 0.001
    assert a.optimizer.iterations == b.optimizer.iterations == 5 * -(-len(X) // 32)
    a.fit(X, y, epochs=2)  # the same Adam carries on
    b.fit(X, y, epochs=2, batch_size=32, shuffle=True)
    np.testing.assert_array_equal(a.parameters, b.parameters)

    c, d = build("sine", backend), build("sine", backend)
    c.fit(X, y, epochs=5, lr=0.001)
    d.fit(X, y, epochs=5, lr=0.001, batch_size=None, shuffle=False)
    np.testing.assert_array_equal(c.parameters, d.parameters)
    e = build("sine", backend)
    e.fit(X, y, epochs=5, lr=0.001, batch_size=10_000)
    np.testing.assert_array_equal(c.parameters, e.parameters)
    assert c.optimizer is None and c.epochs_trained == 5
    with pytest.raises(TypeError, match="shuffle"):
        c.fit(X, y, epochs=1, lr=0.1, shuffle="yes")


# ---------------------------------------------------------------------------
# Shuffle: seeds and epochs
# ---------------------------------------------------------------------------
def seeded_layers_net(backend, net_seed=None):
    """Layers with their own seeds, so that the network seed only drives fit."""
    return cbp.Network(
        [cbp.Dense(2, 8, "relu", seed=100), cbp.Dropout(0.2), cbp.Dense(8, 3, "softmax", seed=101)],
        loss="categorical_crossentropy",
        backend=backend,
        seed=net_seed,
    )


def test_shuffle_seed_decides_the_run(backend):
    X, y = DATA["spiral"]

    def run(net_seed=None, **kw):
        net = seeded_layers_net(backend, net_seed)
        hist = net.fit(X, y, epochs=6, batch_size=5, lr=0.1, shuffle=True, **kw)
        return net.parameters.copy(), hist["loss"]

    same_a, same_b = run(seed=3), run(seed=3)
    np.testing.assert_array_equal(same_a[0], same_b[0])
    np.testing.assert_array_equal(same_a[1], same_b[1])
    other = run(seed=4)
    assert not np.allclose(same_a[0], other[0])
    # the network's seed is fit's default seed, and 0 without one
    np.testing.assert_array_equal(run(net_seed=3)[0], same_a[0])
    np.testing.assert_array_equal(run()[0], run(seed=0)[0])
    assert not np.allclose(run()[0], same_a[0])


@ON_EVERY_PATH
def test_epochs_are_numbered_across_fit_calls(backend):
    """fit(10) then fit(10) is fit(20): same shuffles, dropout masks and Adam
    state; epochs_trained counts both calls."""
    X, y = DATA["spiral"]
    kw = dict(batch_size=7, shuffle=True, seed=8)
    whole = build("spiral", backend, dropout=0.3, optimizer=optim.Adam(0.01))
    h20 = whole.fit(X, y, epochs=20, **kw)
    split = build("spiral", backend, dropout=0.3, optimizer=optim.Adam(0.01))
    h1 = split.fit(X, y, epochs=10, **kw)
    assert split.epochs_trained == 10
    h2 = split.fit(X, y, epochs=10, **kw)
    assert split.epochs_trained == whole.epochs_trained == 20
    assert split.optimizer.iterations == whole.optimizer.iterations == 20 * 6
    np.testing.assert_array_equal(split.parameters, whole.parameters)
    np.testing.assert_array_equal(split.optimizer.state, whole.optimizer.state)
    np.testing.assert_array_equal(np.concatenate([h1["loss"], h2["loss"]]), h20["loss"])
    assert split.history is h2  # the latest call's history
    # a network that restarts its epoch count would repeat epoch 0's shuffle
    fresh = build("spiral", backend, dropout=0.3, optimizer=optim.Adam(0.01))
    fresh.fit(X, y, epochs=10, **kw)
    fresh.epochs_trained = 0
    fresh.fit(X, y, epochs=10, **kw)
    assert not np.allclose(fresh.parameters, whole.parameters)


# ---------------------------------------------------------------------------
# Dropout, read off a probe: one input 1 -> K identity units of weight 1
# (frozen) -> Dropout -> a linear unit with zero weights and target 1.  One
# update with lr 0.5 sets the output weights to 0.5 * 2 * mask = mask, exactly.
# ---------------------------------------------------------------------------
K = 20_000


def probe(backend, rate):
    first = cbp.Dense(1, K, "identity", weights=np.ones((1, K)), bias=np.zeros(K), trainable=False)
    last = cbp.Dense(K, 1, "identity", weights=np.zeros((K, 1)), bias=[0.0])
    return cbp.Network([first, cbp.Dropout(rate), last], backend=backend)


def probe_mask(net, seed, **fit_kw):
    """Fit one epoch from zero output weights; the new weights are the mask."""
    last = net.layers[-1]
    last.weights = np.zeros((K, 1))
    last.bias = [0.0]
    hist = net.fit([[1.0]], [[1.0]], epochs=1, lr=0.5, seed=seed, **fit_kw)
    return last.weights[:, 0].copy(), hist


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_masks_in_fit(backend, rate):
    net = probe(backend, rate)
    masks = [probe_mask(net, seed=9)[0] for _ in range(3)]  # epochs 0, 1, 2
    keep = 1.0 / (1.0 - rate)
    for epoch, mask in enumerate(masks):
        assert set(np.unique(mask)) <= {0.0, keep}
        dropped = np.mean(mask == 0.0)
        assert abs(dropped - rate) < 0.02, dropped  # ~6 standard deviations
        assert abs(mask.mean() - 1.0) < 0.05  # inverted scaling keeps the expectation
        # the documented stream: layer 1 of 3, epoch e -> 2 (3e + 1) + 1, from draw 0
        np.testing.assert_array_equal(mask, py_dropout_mask(9, 2 * (3 * epoch + 1) + 1, 0, rate, K))
    assert not np.array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[1], masks[2])
    other = probe(backend, rate)
    assert not np.array_equal(probe_mask(other, seed=10)[0], masks[0])


@ON_TWO_THREADS
def test_dropout_rows_draw_consecutive_blocks(backend):
    """In a batch, row r of a dropout layer of width K uses draws r*K .. r*K+K-1."""
    rate = 0.3
    net = probe(backend, rate)
    last = net.layers[-1]
    last.weights = np.zeros((K, 1))
    net.fit([[1.0], [1.0]], [[1.0], [1.0]], epochs=1, lr=0.5, seed=2)
    # mean over 2 rows: each row's dL/dout = 2 * (0 - 1) / 2 = -1, so W = 0.5 (m0 + m1)
    stream = 2 * (3 * 0 + 1) + 1
    expected = 0.5 * (
        py_dropout_mask(2, stream, 0, rate, K) + py_dropout_mask(2, stream, K, rate, K)
    )
    assert_close(last.weights[:, 0], expected, rtol=1e-15)


def test_dropout_rate_zero_keeps_everything(backend):
    mask, _ = probe_mask(probe(backend, 0.0), seed=0)
    np.testing.assert_array_equal(mask, np.ones(K))


def test_dropout_is_off_outside_fit(backend):
    """forward, predict, train_step, evaluate and validation pass through."""
    net = probe(backend, 0.5)
    last = net.layers[-1]
    last.weights = np.ones((K, 1))
    np.testing.assert_array_equal(net.forward([[1.0]]), [[K]])
    np.testing.assert_array_equal(net.predict([[1.0]]), [[K]])
    last.weights = np.zeros((K, 1))
    assert net.evaluate([[1.0]], [[1.0]])["loss"] == 1.0
    net.train_step([[1.0]], [[1.0]], lr=0.5)
    np.testing.assert_array_equal(last.weights, np.ones((K, 1)))  # no unit dropped
    # validation after a fit epoch: output = sum(mask) + bias, with bias 0 + 0.5 * 2 = 1
    mask, hist = probe_mask(net, seed=4, validation_data=([[1.0]], [[float(K)]]))
    assert last.bias[0] == 1.0
    assert hist["val_loss"][0] == (mask.sum() + 1.0 - K) ** 2
    assert hist["loss"][0] == 1.0  # the pre-update output is 0, target 1


@NATIVE_ON_TWO_THREADS
def test_dropout_masks_agree_across_backends(native):
    masks = [probe_mask(probe(b, 0.4), seed=123456789)[0] for b in ("native", "numpy")]
    np.testing.assert_array_equal(masks[0], masks[1])


# ---------------------------------------------------------------------------
# L1 / L2 penalties
# ---------------------------------------------------------------------------
def test_penalties_in_loss_and_gradients(backend):
    """backward's loss gains l1*sum|v| + l2*sum(v**2) for every weight and bias
    block, and the gradients l1*sign(v) + 2*l2*v; the data part is the
    hand-written backprop of a tanh-linear network."""
    rng = np.random.default_rng(0)
    W1, b1 = rng.standard_normal((3, 4)), rng.standard_normal(4)
    W2, b2 = rng.standard_normal((4, 2)), rng.standard_normal(2)
    W1[0, 0] = 0.0  # sign(0) = 0
    b1[1] = 0.0
    X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    pen1 = dict(weight_l1=0.01, weight_l2=0.02, bias_l1=0.03, bias_l2=0.04)
    pen2 = dict(weight_l1=0.05, weight_l2=0.0, bias_l1=0.0, bias_l2=0.06)

    def make(p1, p2):
        return cbp.Network(
            [
                cbp.Dense(3, 4, "tanh", weights=W1, bias=b1, **p1),
                cbp.Dense(4, 2, "identity", weights=W2, bias=b2, **p2),
            ],
            backend=backend,
        )

    # independent forward and backward (squared error, mean over all elements)
    H = np.tanh(X @ W1 + b1)
    P = H @ W2 + b2
    data_loss = np.mean((P - Y) ** 2)
    dP = 2.0 * (P - Y) / P.size
    dW2, db2 = H.T @ dP, dP.sum(0)
    dZ1 = (dP @ W2.T) * (1.0 - H**2)
    dW1, db1 = X.T @ dZ1, dZ1.sum(0)

    def pen(v, p, kind):
        l1, l2 = p[f"{kind}_l1"], p[f"{kind}_l2"]
        return l1 * np.abs(v).sum() + l2 * (v**2).sum(), l1 * np.sign(v) + 2.0 * l2 * v

    blocks = [(W1, pen1, "weight"), (b1, pen1, "bias"), (W2, pen2, "weight"), (b2, pen2, "bias")]
    penalty = sum(pen(v, p, k)[0] for v, p, k in blocks)
    expected_grad = np.concatenate(
        [(g + pen(v, p, k)[1]).ravel() for g, (v, p, k) in zip((dW1, db1, dW2, db2), blocks)]
    )

    net = make(pen1, pen2)
    net.forward(X)
    loss = net.backward(Y)
    assert loss == pytest.approx(data_loss + penalty, rel=1e-12)
    assert_close(net.gradients, expected_grad, atol=1e-15)
    assert net.evaluate(X, Y)["loss"] == pytest.approx(data_loss + penalty, rel=1e-12)

    plain = make({}, {})
    plain.forward(X)
    assert plain.backward(Y) == pytest.approx(data_loss, rel=1e-12)
    # the network without penalties really has none: the difference is the penalty
    assert loss - plain.evaluate(X, Y)["loss"] == pytest.approx(penalty, rel=1e-10)


@ON_EVERY_PATH
def test_penalties_are_in_the_fit_history(backend):
    """hist["loss"] with penalties = data loss + penalty at the pre-update
    parameters (one full-batch epoch)."""
    X, y = DATA["sine"]
    net = build("sine", backend, penalties=True)
    twin = build("sine", backend, penalties=False)
    np.testing.assert_array_equal(net.parameters, twin.parameters)
    hist = net.fit(X, y, epochs=1, lr=1e-3)
    p = PENALTIES
    penalty = 0.0
    for layer in twin.layers:
        penalty += (
            p["weight_l1"] * np.abs(layer.weights).sum() + p["weight_l2"] * (layer.weights**2).sum()
        )
        penalty += p["bias_l1"] * np.abs(layer.bias).sum() + p["bias_l2"] * (layer.bias**2).sum()
    data_loss = np.mean((twin.predict(X) - y) ** 2)
    assert hist["loss"][0] == pytest.approx(data_loss + penalty, rel=1e-12)
    assert penalty > 1e-3 * data_loss  # large enough to be seen


# ---------------------------------------------------------------------------
# History keys, accuracy and validation
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_history_keys(backend, task):
    X, y = DATA[task]
    classifier = task != "sine"
    net = build(task, backend)
    hist = net.fit(X, y, epochs=3, lr=0.01)
    assert set(hist) == ({"loss", "accuracy"} if classifier else {"loss"})
    assert net.history is hist
    hist = net.fit(X, y, epochs=3, lr=0.01, validation_data=(X[:5], y[:5]))
    expected = {"loss", "val_loss"} | ({"accuracy", "val_accuracy"} if classifier else set())
    assert set(hist) == expected
    hist = net.fit(X, y, epochs=3, lr=0.01, early_stopping=cbp.EarlyStopping(patience=50))
    assert set(hist) == ({"loss", "accuracy"} if classifier else {"loss"}) | {
        "best_epoch",
        "stopped_epoch",
    }
    assert hist["stopped_epoch"] is None  # ran all 3 epochs
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if key in hist:
            assert hist[key].dtype == np.float64 and hist[key].shape == (3,)


@ON_EVERY_PATH
@pytest.mark.parametrize("task", TASKS)
def test_validation_history_equals_evaluate(backend, task):
    """val_loss / val_accuracy of each epoch are evaluate() on the validation
    set with that epoch's final parameters (dropout off), and evaluate's
    accuracy matches the predictions."""
    X, y = DATA[task]
    Xv, yv = X[::4], y[::4]
    Yv = targets_2d(task, yv)
    net = build(task, backend, dropout=0.2)
    snaps = []
    hist = net.fit(
        X,
        y,
        epochs=5,
        batch_size=9,
        shuffle=True,
        optimizer=optim.Adam(0.02),
        validation_data=(Xv, yv),
        callback=lambda e, l: snaps.append(net.parameters.copy()),
        callback_every=1,
    )
    final = net.evaluate(Xv, yv)
    assert final["loss"] == pytest.approx(hist["val_loss"][-1], rel=1e-12)
    for epoch, params in enumerate(snaps):
        np.copyto(net.parameters, params)
        ev = net.evaluate(Xv, yv)
        assert ev["loss"] == pytest.approx(hist["val_loss"][epoch], rel=1e-12)
        if task != "sine":
            hits, judged = correct(task, net.predict(Xv), Yv)
            assert ev["accuracy"] == hist["val_accuracy"][epoch] == hits / judged
        else:
            assert "accuracy" not in ev


# ---------------------------------------------------------------------------
# Early stopping
# ---------------------------------------------------------------------------
def test_early_stopping_on_a_plateau(backend):
    """With lr tiny the loss moves by ~1e-12 an epoch, far below tol: the first
    epoch improves on +inf, then ``patience`` epochs without improvement stop
    training after patience + 1 epochs."""
    X, y = DATA["spiral"]
    snaps = []
    net = build("spiral", backend)
    hist = net.fit(
        X,
        y,
        epochs=100,
        lr=1e-12,
        early_stopping=cbp.EarlyStopping(patience=4, tol=1e-4, restore_best=False),
        callback=lambda e, l: snaps.append(net.parameters.copy()),
        callback_every=1,
    )
    assert hist["stopped_epoch"] == 5 == len(hist["loss"]) == len(snaps) == net.epochs_trained
    np.testing.assert_array_equal(net.parameters, snaps[-1])  # nothing restored
    # the same in one native call; a callback is still called when training stops
    other = build("spiral", backend)
    calls = []
    h2 = other.fit(
        X,
        y,
        epochs=100,
        lr=1e-12,
        early_stopping=cbp.EarlyStopping(patience=4, tol=1e-4),
        callback=lambda e, logs: calls.append(e),
        callback_every=100,
    )
    assert h2["stopped_epoch"] == 5 and calls == [5]
    # True means the defaults (patience 10)
    third = build("spiral", backend)
    assert third.fit(X, y, epochs=100, lr=1e-12, early_stopping=True)["stopped_epoch"] == 11


def one_weight_net(backend):
    """out = w * x, w = 0, trained towards y = 1 at x = 1: w_t = 1 - 0.8**t with lr 0.1."""
    return cbp.Network(
        [cbp.Dense(1, 1, "identity", use_bias=False, weights=[[0.0]])], backend=backend
    )


@ON_EVERY_PATH
def test_early_stopping_monitors_val_loss_and_restores_best(backend):
    """Training pulls w to 1, the validation target is 0.5: the training loss
    keeps falling while val_loss = (w_t - 0.5)**2 is smallest at t = 3
    (w = 0.488), then grows.  With patience 3, epochs 4-6 do not improve and
    training stops after epoch 6; restore_best puts back w_3."""
    w = [1.0 - 0.8**t for t in range(1, 7)]
    val = [(wt - 0.5) ** 2 for wt in w]
    assert int(np.argmin(val)) == 2
    for restore in (True, False):
        net = one_weight_net(backend)
        snaps = []
        hist = net.fit(
            [[1.0]],
            [[1.0]],
            epochs=50,
            lr=0.1,
            validation_data=([[1.0]], [[0.5]]),
            early_stopping=cbp.EarlyStopping(patience=3, tol=0.0, restore_best=restore),
            callback=lambda e, l: snaps.append(net.parameters.copy()),
            callback_every=1,
        )
        assert hist["stopped_epoch"] == 6 == len(hist["loss"]) == len(snaps)
        assert np.all(np.diff(hist["loss"]) < 0)  # the training loss never stopped improving
        assert_close(hist["val_loss"], val, rtol=1e-12)
        assert hist["best_epoch"] == 2  # an index into the history arrays
        if restore:
            np.testing.assert_array_equal(net.parameters, snaps[hist["best_epoch"]])
            assert net.parameters[0] == pytest.approx(w[2], rel=1e-14)
        else:
            np.testing.assert_array_equal(net.parameters, snaps[-1])
            assert net.parameters[0] == pytest.approx(w[5], rel=1e-14)


def test_early_stopping_tol(backend):
    """An improvement smaller than tol counts as none, but still moves the best:
    with tol 0.5 every epoch after the first is 'no improvement', so patience
    3 stops after epoch 4, and the best (smallest) val_loss is epoch 3's."""
    net = one_weight_net(backend)
    hist = net.fit(
        [[1.0]],
        [[1.0]],
        epochs=50,
        lr=0.1,
        validation_data=([[1.0]], [[0.5]]),
        early_stopping=cbp.EarlyStopping(patience=3, tol=0.5),
    )
    assert hist["stopped_epoch"] == 4
    assert hist["best_epoch"] == 2
    assert net.parameters[0] == pytest.approx(1 - 0.8**3, rel=1e-14)


def test_early_stopping_best_epoch_counts_this_call(backend):
    """best_epoch indexes this call's history, also after earlier calls."""
    net = one_weight_net(backend)
    net.fit([[1.0]], [[1.0]], epochs=1, lr=0.1)  # w = 0.2
    hist = net.fit(
        [[1.0]],
        [[1.0]],
        epochs=50,
        lr=0.1,
        validation_data=([[1.0]], [[0.5]]),
        early_stopping=cbp.EarlyStopping(patience=3, tol=0.0),
    )
    # w_t = 1 - 0.8**(t+1) now: best is w = 0.488 after this call's 2nd epoch
    assert hist["best_epoch"] == 1
    assert hist["stopped_epoch"] == 5
    assert net.epochs_trained == 6
    assert net.parameters[0] == pytest.approx(1 - 0.8**3, rel=1e-14)


def test_early_stopping_tol_zero_on_an_exact_plateau(backend):
    net = cbp.Network([cbp.Dense(1, 1, "identity", weights=[[2.0]], bias=[0.0])], backend=backend)
    hist = net.fit(
        [[1.0], [2.0]],
        [[2.0], [4.0]],
        epochs=50,
        lr=0.1,
        early_stopping=cbp.EarlyStopping(patience=3, tol=0.0),
    )
    assert hist["loss"][0] == 0.0
    assert hist["stopped_epoch"] == 4


# ---------------------------------------------------------------------------
# Divergence
# ---------------------------------------------------------------------------
def diverging_run(backend, record):
    """sine regression, SGD momentum with lr 30: overflows after ~15 epochs."""
    X, y = cbp.datasets.sine_data(16)
    net = cbp.Network(
        [cbp.Dense(1, 8, "tanh"), cbp.Dense(8, 1, "identity")], seed=3, backend=backend
    )
    opt = optim.SGD(30.0, momentum=0.5)
    snaps = [(net.parameters.copy(), np.zeros(net.parameters.size), 0)]

    def cb(epoch, logs):
        snaps.append((net.parameters.copy(), opt.state.copy(), opt.iterations))

    kw = dict(callback=cb, callback_every=1) if record else {}
    with pytest.raises(cbp.DivergenceError) as info:
        net.fit(X, y, epochs=200, batch_size=4, optimizer=opt, **kw)
    return net, opt, info.value, snaps


@ON_EVERY_PATH
def test_fit_divergence_rolls_back_the_epoch(backend):
    net, opt, err, snaps = diverging_run(backend, record=True)
    assert isinstance(err, ArithmeticError)
    epoch = err.epoch
    assert epoch > 3  # several epochs trained fine first
    assert f"epoch {epoch} of 200" in str(err)
    assert len(snaps) == epoch  # the start state, then epochs 1 .. epoch-1
    assert np.isfinite(net.parameters).all()
    params, state, iterations = snaps[epoch - 1]  # the state at the start of that epoch
    np.testing.assert_array_equal(net.parameters, params)
    np.testing.assert_array_equal(opt.state, state)
    assert opt.iterations == iterations == 4 * (epoch - 1)
    assert net.epochs_trained == epoch - 1
    assert set(err.history) == {"loss"}
    assert len(err.history["loss"]) == epoch - 1 and np.isfinite(err.history["loss"]).all()
    assert net.history is err.history
    # the same run in one native call diverges in the same epoch, same rollback
    net2, opt2, err2, _ = diverging_run(backend, record=False)
    assert err2.epoch == epoch
    np.testing.assert_array_equal(net2.parameters, params)
    np.testing.assert_array_equal(opt2.state, state)
    # and the network is still usable
    net.fit(*cbp.datasets.sine_data(16), epochs=1, lr=1e-3)


@ON_EVERY_PATH
@pytest.mark.parametrize("batch_size", [4, 16])
def test_plain_sgd_divergence_rolls_back_exactly(backend, batch_size):
    """Plain SGD saves the epoch's start inside its first update (no separate
    copy); the rollback must still be exact, and a frozen layer, changed by
    hand between fits, must keep the value it was given."""
    X, y = cbp.datasets.sine_data(16)
    net = cbp.Network(
        [cbp.Dense(1, 6, "tanh", seed=0, trainable=False), cbp.Dense(6, 1, "identity", seed=1)],
        backend=backend,
    )
    net.fit(X, y, epochs=2, batch_size=batch_size, lr=1e-3)
    net.layers[0].weights[...] = 0.25  # the frozen layer, changed by hand
    snaps = [net.parameters.copy()]
    with pytest.raises(cbp.DivergenceError) as info:
        net.fit(
            X,
            y,
            epochs=500,
            batch_size=batch_size,
            lr=50.0,
            callback=lambda e, logs: snaps.append(net.parameters.copy()),
            callback_every=1,
        )
    epoch = info.value.epoch
    assert epoch > 1
    np.testing.assert_array_equal(net.parameters, snaps[epoch - 1])
    assert (net.layers[0].weights == 0.25).all()


@NATIVE_ON_EVERY_PATH
def test_fit_divergence_is_the_same_on_both_backends(native):
    X, y = cbp.datasets.sine_data(16)
    out = []
    for backend in ("native", "numpy"):
        net = cbp.Network([cbp.Dense(1, 1, "identity", seed=0)], backend=backend)
        with pytest.raises(cbp.DivergenceError) as info:
            net.fit(X, y, epochs=100, batch_size=4, lr=1e3)
        out.append((info.value, net))
    (ea, a), (eb, b) = out
    assert ea.epoch == eb.epoch > 3
    assert_close(a.parameters, b.parameters, rtol=1e-9)
    assert_close(ea.history["loss"], eb.history["loss"], rtol=1e-9)


def test_step_divergence_changes_nothing(backend):
    """An overflowing train_step or step leaves parameters, optimizer state and
    the step count as they were."""
    X, y = DATA["sine"]
    net = build("sine", backend, optimizer=optim.SGD(1e300, momentum=0.9))
    net.train_step(X, y, lr=0.01)  # fills the gradients; plain SGD
    net.forward(X)
    net.backward(1e10 * y)
    before, state = net.parameters.copy(), net.optimizer.state.copy()
    with pytest.raises(cbp.DivergenceError):
        net.step()
    with pytest.raises(cbp.DivergenceError):
        net.train_step(X, 1e10 * y)
    np.testing.assert_array_equal(net.parameters, before)
    np.testing.assert_array_equal(net.optimizer.state, state)
    assert net.optimizer.iterations == 0


# ---------------------------------------------------------------------------
# Callbacks and progress
# ---------------------------------------------------------------------------
def test_callback_schedule_and_logs(backend):
    X, y = DATA["spiral"]
    calls = []
    net = build("spiral", backend)
    hist = net.fit(
        X,
        y,
        epochs=10,
        lr=0.05,
        validation_data=(X[:6], y[:6]),
        callback=lambda epoch, logs: calls.append((epoch, dict(logs))),
        callback_every=3,
    )
    assert [e for e, _ in calls] == [3, 6, 9, 10]
    for epoch, logs in calls:
        assert set(logs) == {"loss", "accuracy", "val_loss", "val_accuracy"}
        for key, value in logs.items():
            assert isinstance(value, float)
            assert value == hist[key][epoch - 1]


def test_callback_sees_the_parameters_of_its_epoch(backend):
    """Parameters read in the callback after epoch 3 are those of fit(3)."""
    X, y = DATA["spiral"]
    snaps = {}
    net = build("spiral", backend)
    net.fit(
        X,
        y,
        epochs=7,
        batch_size=5,
        lr=0.05,
        shuffle=True,
        callback=lambda e, l: snaps.setdefault(e, net.parameters.copy()),
        callback_every=3,
    )
    short = build("spiral", backend)
    short.fit(X, y, epochs=3, batch_size=5, lr=0.05, shuffle=True)
    np.testing.assert_array_equal(snaps[3], short.parameters)
    # and chunking the loop for callbacks changes nothing
    whole = build("spiral", backend)
    whole.fit(X, y, epochs=7, batch_size=5, lr=0.05, shuffle=True)
    np.testing.assert_array_equal(net.parameters, whole.parameters)


def test_callback_returning_false_stops(backend):
    X, y = DATA["sine"]
    net = build("sine", backend)
    calls = []

    def cb(epoch, logs):
        calls.append(epoch)
        if epoch == 6:
            return False
        return None  # None (like 0 or True) does not stop

    hist = net.fit(X, y, epochs=20, lr=0.01, callback=cb, callback_every=2)
    assert calls == [2, 4, 6]
    assert len(hist["loss"]) == 6 and net.epochs_trained == 6
    six = build("sine", backend)
    six.fit(X, y, epochs=6, lr=0.01)
    np.testing.assert_array_equal(net.parameters, six.parameters)


def test_verbose_without_tqdm_prints_lines(backend, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ImportError
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    monkeypatch.setattr(cbp.callbacks.Progress, "INTERVAL", 0.0)  # a line every chunk
    X, y = DATA["sine"]
    net = build("sine", backend)
    hist = net.fit(X, y, epochs=10, lr=0.01, verbose=True, callback_every=4)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"epoch {e}/10  loss {hist['loss'][e - 1]:.6g}" for e in (4, 8, 10)]
    quiet = build("sine", backend)
    quiet.fit(X, y, epochs=10, lr=0.01)
    assert capsys.readouterr().out == ""
    np.testing.assert_array_equal(quiet.parameters, net.parameters)


def test_verbose_with_tqdm_uses_the_bar(backend, capsys, monkeypatch):
    bars = []

    class FakeTqdm:
        def __init__(self, total, unit):
            self.total, self.unit, self.updates, self.postfix, self.closed = (
                total,
                unit,
                [],
                [],
                False,
            )
            bars.append(self)

        def update(self, n):
            self.updates.append(n)

        def set_postfix(self, **kw):
            self.postfix.append(kw)

        def close(self):
            self.closed = True

    auto = types.ModuleType("tqdm.auto")
    auto.tqdm = FakeTqdm
    package = types.ModuleType("tqdm")
    package.auto = auto
    monkeypatch.setitem(sys.modules, "tqdm", package)
    monkeypatch.setitem(sys.modules, "tqdm.auto", auto)
    X, y = DATA["sine"]
    net = build("sine", backend)
    hist = net.fit(X, y, epochs=10, lr=0.01, verbose=True, callback_every=4)
    (bar,) = bars
    assert (bar.total, bar.unit) == (10, "epoch")
    assert bar.updates == [4, 4, 2] and bar.closed
    assert len(bar.postfix) == 3
    assert bar.postfix[-1]["loss"] == f"{hist['loss'][-1]:.4g}"
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------------------
# Bad arguments
# ---------------------------------------------------------------------------
X_SINE, Y_SINE = DATA["sine"]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(epochs=0), ValueError, "epochs must be >= 1"),
        (dict(epochs=2.5), TypeError, "epochs must be an integer"),
        (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
        (dict(batch_size=True), TypeError, "batch_size must be an integer"),
        (dict(seed=-1), ValueError, "seed must be >= 0"),
        (dict(lr=0.1, optimizer=optim.SGD(0.1)), ValueError, "either lr or optimizer"),
        (dict(lr=-0.1), ValueError, "lr must be > 0"),
        (dict(lr=0.0), ValueError, "lr must be > 0"),
        (
            dict(validation_data=(np.zeros((3, 2)), np.zeros((3, 1)))),
            ValueError,
            "validation X has 2 columns, the network expects 1",
        ),
        (
            dict(validation_data=(np.zeros((3, 1)), np.zeros((4, 1)))),
            ValueError,
            "validation y has 4 samples",
        ),
        (dict(validation_data=np.zeros((3, 1))), TypeError, "validation_data must be a pair"),
        (dict(callback=5), TypeError, "callback must be callable"),
        (dict(callback_every=0), ValueError, "callback_every must be >= 1"),
        (dict(early_stopping="yes"), TypeError, "early_stopping must be an EarlyStopping"),
        (dict(optimizer=3), TypeError, "optimizer must be a cbp.optim optimizer or its name"),
        (dict(optimizer="adamw"), ValueError, "unknown optimizer 'adamw'"),
    ],
    ids=lambda v: None,
)
def test_bad_fit_arguments(backend, kwargs, error, match):
    """Each is rejected with a clear message before anything changes."""
    net = build("sine", backend)
    before = net.parameters.copy()
    with pytest.raises(error, match=match):
        net.fit(X_SINE, Y_SINE, **{"epochs": 3, **kwargs})
    np.testing.assert_array_equal(net.parameters, before)
    assert net.epochs_trained == 0 and net.history is None and net.optimizer is None


def test_fit_rejects_seeds_beyond_64_bits(backend):
    net = build("sine", backend)
    with pytest.raises(ValueError, match="seed"):
        net.fit(X_SINE, Y_SINE, epochs=1, seed=2**64)


def test_bad_data_to_fit(backend):
    net = build("sine", backend)
    with pytest.raises(ValueError, match="X has 2 columns"):
        net.fit(np.zeros((4, 2)), np.zeros(4), epochs=1)
    with pytest.raises(ValueError, match="y has 3 samples but X has 4"):
        net.fit(np.zeros((4, 1)), np.zeros(3), epochs=1)


# ---------------------------------------------------------------------------
# Initialisation
# ---------------------------------------------------------------------------
NI, NO = 200, 300  # 60,000 weights: sample statistics within a percent or two


@pytest.mark.parametrize(
    "init, act, check",
    [
        ("nnfs", "relu", "normal:0.01"),
        ("he", "relu", f"normal:{math.sqrt(2 / NI)}"),
        ("uniform", "relu", "uniform:0:1"),
        ("glorot", "relu", f"uniform:{-math.sqrt(6 / (NI + NO))}:{math.sqrt(6 / (NI + NO))}"),
        ("glorot", "tanh", f"uniform:{-math.sqrt(6 / (NI + NO))}:{math.sqrt(6 / (NI + NO))}"),
        ("glorot", "sigmoid", f"uniform:{-math.sqrt(2 / (NI + NO))}:{math.sqrt(2 / (NI + NO))}"),
        ("glorot", "logistic", f"uniform:{-math.sqrt(2 / (NI + NO))}:{math.sqrt(2 / (NI + NO))}"),
    ],
)
def test_init_distributions(init, act, check):
    layer = cbp.Dense(NI, NO, act, init=init, seed=0)
    W = layer.weights
    assert W.shape == (NI, NO)
    kind, *args = check.split(":")
    if kind == "normal":
        std = float(args[0])
        assert abs(W.std() / std - 1) < 0.02
        assert abs(W.mean()) < 5 * std / math.sqrt(W.size)
        assert np.abs(W).max() > 3 * std  # unbounded, not uniform
    else:
        lo, hi = map(float, args)
        assert W.min() >= lo and W.max() < hi
        width = hi - lo
        assert W.min() < lo + 0.001 * width and W.max() > hi - 0.001 * width  # fills the range
        assert abs(W.mean() - (lo + hi) / 2) < 0.01 * width
        assert abs(W.std() / (width / math.sqrt(12)) - 1) < 0.02
    if init != "glorot":
        np.testing.assert_array_equal(layer.bias, np.zeros(NO))
    else:  # scikit-learn's glorot draws the biases from the same U(-r, r)
        assert lo <= layer.bias.min() and layer.bias.max() < hi
        assert layer.bias.std() > 0.4 * width / math.sqrt(12)


def test_unknown_init_is_rejected():
    with pytest.raises(
        ValueError, match="unknown init 'xavier'; expected one of: glorot, he, nnfs, uniform"
    ):
        cbp.Dense(2, 2, init="xavier")


def test_network_seed_gives_reproducible_draws(backend):
    """Layer i (dropout layers count) draws from default_rng([seed, i])."""

    def make(seed):
        return cbp.Network(
            [cbp.Dense(2, 5, "relu"), cbp.Dropout(0.1), cbp.Dense(5, 3, "sigmoid")],
            backend=backend,
            seed=seed,
        )

    a, b, c = make(7), make(7), make(8)
    np.testing.assert_array_equal(a.parameters, b.parameters)
    assert not np.allclose(a.parameters, c.parameters)
    rng0, rng2 = np.random.default_rng([7, 0]), np.random.default_rng([7, 2])
    r0, r2 = math.sqrt(6 / 7), math.sqrt(2 / 8)  # relu, then sigmoid
    expected = np.concatenate(
        [
            rng0.uniform(-r0, r0, (2, 5)).ravel(),
            rng0.uniform(-r0, r0, 5),
            rng2.uniform(-r2, r2, (5, 3)).ravel(),
            rng2.uniform(-r2, r2, 3),
        ]
    )
    np.testing.assert_array_equal(a.parameters, expected)
    # without any seed, every network is a fresh draw
    assert not np.allclose(make(None).parameters, make(None).parameters)


def test_given_values_and_layer_seeds_are_not_redrawn(backend):
    W, bias = np.arange(6.0).reshape(2, 3), np.array([0.5, -0.5, 1.5])
    given = cbp.Dense(2, 3, "relu", weights=W, bias=bias)
    own_seed = cbp.Dense(3, 2, "relu", seed=5, init="he")
    drawn = cbp.Dense(2, 3, "relu")
    net = cbp.Network([given, own_seed], backend=backend, seed=1)
    np.testing.assert_array_equal(given.weights, W)
    np.testing.assert_array_equal(given.bias, bias)
    standalone = cbp.Dense(3, 2, "relu", seed=5, init="he")
    np.testing.assert_array_equal(own_seed.weights, standalone.weights)
    expected = np.random.default_rng(5).standard_normal((3, 2)) * math.sqrt(2 / 3)
    np.testing.assert_array_equal(own_seed.weights, expected)
    np.testing.assert_array_equal(own_seed.bias, np.zeros(2))
    # a layer without values or seed takes the network's draw
    other = cbp.Network(
        [drawn, cbp.Dense(3, 2, "relu", seed=5, init="he")], backend=backend, seed=1
    )
    assert not np.allclose(other.parameters[:6], net.parameters[:6])
    np.testing.assert_array_equal(other.parameters[9:], net.parameters[9:])


def test_a_layer_given_only_weights_or_only_bias_starts_the_rest_at_zero(backend):
    """'A layer given either is never drawn: what is not given starts at zero'."""
    for seed in (None, 0):
        net = cbp.Network(
            [
                cbp.Dense(2, 3, "relu", weights=np.ones((2, 3))),
                cbp.Dense(3, 1, "relu", bias=[2.0], seed=4),
            ],
            backend=backend,
            seed=seed,
        )
        np.testing.assert_array_equal(net.parameters, [1.0] * 6 + [0.0] * 3 + [0.0] * 3 + [2.0])


# ---------------------------------------------------------------------------
# Optimizer state and updates
# ---------------------------------------------------------------------------
SLOTS = {"sgd": 0, "momentum": 1, "nesterov": 1, "adagrad": 1, "rmsprop": 1, "adam": 2}


def np_update(name, opt, p, g, state, t):
    """The documented update of each optimizer, in NumPy; returns new (p, state)."""
    lr = opt.lr / (1.0 + opt.decay * t)
    p, s = p.copy(), [row.copy() for row in state]
    if name == "sgd":
        p -= lr * g
    elif name in ("momentum", "nesterov"):
        s[0] = opt.momentum * s[0] - lr * g
        p += opt.momentum * s[0] - lr * g if name == "nesterov" else s[0]
    elif name == "adagrad":
        s[0] = s[0] + g * g
        p -= lr * g / (np.sqrt(s[0]) + opt.epsilon)
    elif name == "rmsprop":
        s[0] = opt.rho * s[0] + (1 - opt.rho) * g * g
        p -= lr * g / (np.sqrt(s[0]) + opt.epsilon)
    elif name == "adam":
        s[0] = opt.beta_1 * s[0] + (1 - opt.beta_1) * g
        s[1] = opt.beta_2 * s[1] + (1 - opt.beta_2) * g * g
        mhat = s[0] / (1 - opt.beta_1 ** (t + 1))
        vhat = s[1] / (1 - opt.beta_2 ** (t + 1))
        p -= lr * mhat / (np.sqrt(vhat) + opt.epsilon)
    return p, s


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_steps_follow_the_documented_formulas(backend, name):
    """net.step() applies the network's optimizer: each step matches the
    formula with lr / (1 + decay * t), the state buffer holds the slots row
    after row, frozen parameters and their state never move, and
    iterations / current_lr count the steps."""
    rng = np.random.default_rng(1)
    opt = OPTIMIZERS[name](0.3)
    frozen = cbp.Dense(3, 4, "tanh", trainable=False, seed=1)
    net = cbp.Network([frozen, cbp.Dense(4, 2, "identity", seed=2)], backend=backend, optimizer=opt)
    n = net.parameters.size
    n_frozen = frozen.size
    assert opt.state.shape == (SLOTS[name] * n,)
    p = net.parameters.copy()
    state = [np.zeros(n) for _ in range(SLOTS[name])]
    for t in range(5):
        assert opt.iterations == t
        assert opt.current_lr == pytest.approx(opt.lr / (1 + 0.3 * t), rel=1e-15)
        net.forward(rng.standard_normal((6, 3)))
        net.backward(rng.standard_normal((6, 2)))
        g = net.gradients.copy()
        assert np.abs(g[:n_frozen]).sum() > 0  # frozen layers still get gradients
        g_train = np.where(np.arange(n) < n_frozen, 0.0, g)  # ... but are not updated
        p_new, state = np_update(name, opt, p, g_train, state, t)
        net.step()
        assert_close(net.parameters, p_new, rtol=1e-13, atol=1e-16)
        np.testing.assert_array_equal(net.parameters[:n_frozen], p[:n_frozen])
        if SLOTS[name]:
            S = opt.state.reshape(SLOTS[name], n)
            assert_close(S, np.array(state), rtol=1e-13, atol=1e-16)
            assert not S[:, :n_frozen].any()
        p = net.parameters.copy()
    assert opt.iterations == 5


def test_train_step_lr_is_plain_sgd_and_leaves_the_optimizer_alone(backend):
    X, y = DATA["sine"]
    net = build("sine", backend, optimizer=optim.Adam(0.01))
    net.fit(X, y, epochs=2, batch_size=12)
    state, iterations = net.optimizer.state.copy(), net.optimizer.iterations
    assert iterations == 6
    net.forward(X)
    net.backward(y)
    p, g = net.parameters.copy(), net.gradients.copy()
    loss_before = net.evaluate(X, y)["loss"]
    assert net.train_step(X, y, lr=0.3) == pytest.approx(loss_before, rel=1e-12)
    assert_close(net.parameters, p - 0.3 * g, rtol=1e-15, atol=1e-17)
    np.testing.assert_array_equal(net.optimizer.state, state)
    assert net.optimizer.iterations == iterations
    net.forward(X)
    net.backward(y)
    p, g = net.parameters.copy(), net.gradients.copy()
    net.step(0.2)
    assert_close(net.parameters, p - 0.2 * g, rtol=1e-15, atol=1e-17)
    assert net.optimizer.iterations == iterations
    net.step()  # the network's Adam
    assert net.optimizer.iterations == iterations + 1
    assert not np.array_equal(net.optimizer.state, state)


def test_default_step_lr_without_optimizer(backend):
    """step() and train_step() without lr or optimizer use plain SGD, lr 0.1."""
    X, y = DATA["sine"]
    net = build("sine", backend)
    net.forward(X)
    net.backward(y)
    p, g = net.parameters.copy(), net.gradients.copy()
    net.step()
    assert_close(net.parameters, p - 0.1 * g, rtol=1e-15, atol=1e-17)
    twin = build("sine", backend)
    twin.train_step(X, y)
    assert_close(twin.parameters, p - 0.1 * g, rtol=1e-15, atol=1e-17)


def test_optimizer_state_carries_over_between_fit_calls(backend):
    X, y = DATA["spiral"]
    a = build("spiral", backend)
    a.fit(X, y, epochs=8, batch_size=7, optimizer=optim.RMSprop(0.01, decay=0.1))
    assert a.optimizer.iterations == 8 * 6
    assert a.optimizer.current_lr == pytest.approx(0.01 / (1 + 0.1 * 48), rel=1e-15)
    b = build("spiral", backend)
    b.fit(X, y, epochs=3, batch_size=7, optimizer=optim.RMSprop(0.01, decay=0.1))
    b.fit(X, y, epochs=5, batch_size=7)  # the network's optimizer, its state kept
    np.testing.assert_array_equal(a.parameters, b.parameters)
    np.testing.assert_array_equal(a.optimizer.state, b.optimizer.state)


def test_optimizer_bound_to_another_size_is_rejected(backend):
    opt = optim.Adam()
    build("sine", backend, optimizer=opt)
    with pytest.raises(ValueError, match="holds state for 37 parameters, the network has"):
        build("spiral", backend, optimizer=opt)
    opt.reset()
    assert opt.state is None and opt.iterations == 0
    build("spiral", backend, optimizer=opt)
    assert opt.state.shape == (2 * (2 * 12 + 12 + 12 * 3 + 3),)


def test_callback_may_use_the_network(backend):
    """predict and evaluate work inside a callback (the network is not locked there)."""
    X, y = DATA["spiral"]
    net = build("spiral", backend)
    seen = []

    def cb(epoch, logs):
        seen.append((net.predict(X[:3]).shape, net.evaluate(X, y)["loss"]))

    net.fit(X, y, epochs=4, lr=0.01, callback=cb, callback_every=2)
    assert [s[0] for s in seen] == [(3, net.n_outputs)] * 2
    assert all(np.isfinite(s[1]) for s in seen)


def test_numpy_false_from_a_callback_stops(backend):
    X, y = DATA["sine"]
    net = build("sine", backend)
    hist = net.fit(X, y, epochs=20, lr=0.01, callback=lambda e, l: np.False_, callback_every=5)
    assert len(hist["loss"]) == 5


@ON_EVERY_PATH
def test_divergence_with_early_stopping_keeps_the_rollback(backend):
    """A diverging run leaves the parameters of the start of the diverging
    epoch, even with restore_best early stopping."""
    X, y = cbp.datasets.sine_data(16)
    net = cbp.Network([cbp.Dense(1, 1, "identity", weights=[[0.5]], bias=[0.0])], backend=backend)
    starts = {}

    def record(epoch, logs):
        starts[epoch] = net.parameters.copy()

    with pytest.raises(cbp.DivergenceError) as info:
        net.fit(
            X,
            y,
            epochs=500,
            batch_size=4,
            lr=1e3,
            callback=record,
            callback_every=1,
            early_stopping=cbp.EarlyStopping(patience=1000),
        )
    diverged = info.value.epoch
    assert diverged > 1
    np.testing.assert_array_equal(net.parameters, starts[diverged - 1])


def test_plain_progress_is_throttled(backend, capsys, monkeypatch):
    """Without tqdm, at most a line a second plus the last epoch: a long run
    with a callback every epoch does not flood the output."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    monkeypatch.setattr(cbp.callbacks.Progress, "INTERVAL", 3600.0)
    X, y = DATA["sine"]
    net = build("sine", backend)
    net.fit(X, y, epochs=50, lr=0.01, verbose=True, callback_every=1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["1/50", "50/50"]
