"""The toy data sets: shapes, dtypes, seeding and the nnfs constructions."""

import numpy as np
import pytest

import cbp
from cbp import datasets
from cbp.datasets import sine_data, spiral_data, vertical_data, xor

RANDOM = [spiral_data, vertical_data]
SIZES = [(1, 1), (1, 3), (5, 1), (7, 2), (100, 3)]


# -- nnfs's formulas, written out independently, with the noise passed in ------
def nnfs_spiral(samples, classes, noise):
    """nnfs.datasets.spiral_data with ``noise[k]`` in place of np.random.randn(samples)."""
    X = np.zeros((samples * classes, 2))
    y = np.zeros(samples * classes, dtype="uint8")
    for class_number in range(classes):
        ix = range(samples * class_number, samples * (class_number + 1))
        r = np.linspace(0.0, 1, samples)
        t = (
            np.linspace(class_number * 4, (class_number + 1) * 4, samples)
            + noise[class_number] * 0.2
        )
        X[ix] = np.c_[r * np.sin(t * 2.5), r * np.cos(t * 2.5)]
        y[ix] = class_number
    return X, y


def nnfs_vertical(samples, classes, noise):
    """nnfs.datasets.vertical_data with ``noise[k, 0]``, ``noise[k, 1]`` for the two randn calls."""
    X = np.zeros((samples * classes, 2))
    y = np.zeros(samples * classes, dtype="uint8")
    for class_number in range(classes):
        ix = range(samples * class_number, samples * (class_number + 1))
        X[ix] = np.c_[
            noise[class_number, 0] * 0.1 + class_number / 3, noise[class_number, 1] * 0.1 + 0.5
        ]
        y[ix] = class_number
    return X, y


def nnfs_sine(samples=1000):
    X = np.arange(samples).reshape(-1, 1) / samples
    y = np.sin(2 * np.pi * X).reshape(-1, 1)
    return X, y


# -- shapes, dtypes, labels ------------------------------------------------------
def test_public_names():
    assert sorted(datasets.__all__) == ["sine_data", "spiral_data", "vertical_data", "xor"]
    for name in datasets.__all__:
        assert callable(getattr(datasets, name))


@pytest.mark.parametrize("make", RANDOM)
@pytest.mark.parametrize("samples, classes", SIZES)
def test_classification_shapes_dtypes_and_balance(make, samples, classes):
    X, y = make(samples, classes)
    n = samples * classes
    assert X.shape == (n, 2) and X.dtype == np.float64 and X.flags.c_contiguous
    assert y.shape == (n,) and y.dtype == np.int64 and y.flags.c_contiguous
    assert np.isfinite(X).all()
    # class by class, each exactly `samples` times
    np.testing.assert_array_equal(y, np.repeat(np.arange(classes), samples))
    np.testing.assert_array_equal(np.bincount(y, minlength=classes), np.full(classes, samples))


@pytest.mark.parametrize("make", RANDOM)
def test_numpy_integers_are_accepted(make):
    X, y = make(np.int64(4), np.int32(2))
    assert X.shape == (8, 2)
    np.testing.assert_array_equal(X, make(4, 2)[0])


def test_sine_shapes_values_and_default():
    X, y = sine_data(8)
    assert X.shape == (8, 1) and y.shape == (8, 1)
    assert X.dtype == np.float64 and y.dtype == np.float64
    np.testing.assert_array_equal(X.ravel(), np.arange(8) / 8)
    np.testing.assert_allclose(y.ravel(), np.sin(2 * np.pi * np.arange(8) / 8), atol=1e-15)
    X, y = sine_data()
    assert X.shape == (1000, 1) and y.shape == (1000, 1)
    assert X.min() == 0.0 and X.max() < 1.0
    assert np.all(np.diff(X.ravel()) > 0)
    assert np.abs(y).max() <= 1.0


@pytest.mark.parametrize("samples", [1, 2, 5, 1000])
def test_sine_matches_nnfs_formula(samples):
    X, y = sine_data(samples)
    Xn, yn = nnfs_sine(samples)
    np.testing.assert_array_equal(X, Xn)
    np.testing.assert_array_equal(y, yn)


def test_sine_takes_no_seed_and_is_deterministic():
    with pytest.raises(TypeError):
        sine_data(10, seed=0)
    a, b = sine_data(50), sine_data(50)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_xor():
    X, y = xor()
    assert X.dtype == np.float64 and X.shape == (4, 2)
    assert y.dtype == np.int64 and y.shape == (4,)
    np.testing.assert_array_equal(X, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(y, [0, 1, 1, 0])
    np.testing.assert_array_equal(y, X[:, 0].astype(int) ^ X[:, 1].astype(int))
    target = y.reshape(-1, 1).astype(float)
    assert target.shape == (4, 1) and target.dtype == np.float64


def test_xor_returns_fresh_arrays():
    X, y = xor()
    X[...] = 7.0
    y[...] = 7
    X2, y2 = xor()
    assert X2[3, 0] == 1.0 and y2[1] == 1


# -- seeding -----------------------------------------------------------------------
@pytest.mark.parametrize("make", RANDOM)
def test_same_seed_same_arrays(make):
    a, b = make(50, 3), make(50, 3, seed=0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c, d = make(50, 3, seed=12345), make(50, 3, seed=12345)
    np.testing.assert_array_equal(c[0], d[0])


@pytest.mark.parametrize("make", RANDOM)
def test_other_seed_other_arrays(make):
    a, b = make(50, 3, seed=0)[0], make(50, 3, seed=1)[0]
    assert not np.array_equal(a, b)
    c, d = make(50, 3, seed=None)[0], make(50, 3, seed=None)[0]
    assert not np.array_equal(c, d)


@pytest.mark.parametrize("make", RANDOM)
def test_generator_and_seed_sequence_are_accepted(make):
    expected = make(20, 2, seed=7)[0]
    np.testing.assert_array_equal(make(20, 2, seed=np.random.default_rng(7))[0], expected)
    np.testing.assert_array_equal(make(20, 2, seed=np.random.SeedSequence(7))[0], expected)
    # a Generator is used as is: it advances, so a second call draws afresh
    rng = np.random.default_rng(7)
    first, second = make(20, 2, seed=rng)[0], make(20, 2, seed=rng)[0]
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("make", RANDOM)
@pytest.mark.parametrize("seed", [0, 3, None])
def test_global_random_state_untouched(make, seed):
    np.random.seed(1234)
    before = np.random.get_state()
    make(30, 3, seed=seed)
    after = np.random.get_state()
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]


@pytest.mark.parametrize("make", RANDOM)
def test_global_seed_has_no_effect(make):
    np.random.seed(1)
    a = make(30, 2)[0]
    np.random.seed(2)
    b = make(30, 2)[0]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make", RANDOM)
def test_seed_is_keyword_only(make):
    with pytest.raises(TypeError):
        make(10, 2, 0)


# -- the spiral construction -------------------------------------------------------
def test_spiral_radius_is_exact_linspace():
    # the noise only moves the angle: every arm's radii are linspace(0, 1)
    samples, classes = 200, 4
    X, _ = spiral_data(samples, classes, seed=11)
    radius = np.hypot(X[:, 0], X[:, 1]).reshape(classes, samples)
    for k in range(classes):
        np.testing.assert_allclose(radius[k], np.linspace(0.0, 1.0, samples), atol=1e-12)
    assert radius.max() <= 1.0 + 1e-12
    np.testing.assert_array_equal(X[::samples], 0.0)  # each arm starts at the origin


def test_spiral_angles_follow_the_arm_with_small_noise():
    # angle = 2.5 * (linspace(4k, 4(k + 1)) + 0.2 * noise): recover the noise
    samples, classes = 2000, 3
    X, _ = spiral_data(samples, classes, seed=5)
    angle = np.arctan2(X[:, 0], X[:, 1]).reshape(classes, samples)
    noise = []
    for k in range(classes):
        base = 2.5 * np.linspace(4 * k, 4 * (k + 1), samples)
        residual = np.angle(np.exp(1j * (angle[k, 1:] - base[1:])))  # wrapped to (-pi, pi]
        noise.append(residual / (2.5 * 0.2))
    noise = np.concatenate(noise)
    assert abs(noise.mean()) < 0.1
    assert 0.9 < noise.std() < 1.1
    assert np.abs(noise).max() < 6


def test_spiral_without_noise_is_nnfs_spiral():
    # no noise: exactly the deterministic nnfs arms
    samples, classes = 50, 3
    X, _ = nnfs_spiral(samples, classes, np.zeros((classes, samples)))
    got, _ = spiral_data(samples, classes)
    # same radius everywhere, angles within the noise of the clean ones
    np.testing.assert_allclose(np.hypot(*got.T), np.hypot(*X.T), atol=1e-12)
    r = np.hypot(*X.T)
    off_origin = r > 0
    # cosine of the angle between each point and its clean position
    cos = np.einsum("ij,ij->i", got, X)[off_origin] / r[off_origin] ** 2
    assert np.median(cos) > 0.8  # most points stay close to the clean arm


@pytest.mark.parametrize("samples, classes, seed", [(1, 1, 0), (40, 3, 0), (33, 5, 9)])
def test_spiral_matches_nnfs_formula_with_the_documented_noise(samples, classes, seed):
    noise = np.random.default_rng(seed).standard_normal((classes, samples))
    Xn, yn = nnfs_spiral(samples, classes, noise)
    X, y = spiral_data(samples, classes, seed=seed)
    np.testing.assert_allclose(X, Xn, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(y, yn)


# -- the vertical construction -----------------------------------------------------
def test_vertical_blobs_are_centred_where_nnfs_puts_them():
    samples, classes = 4000, 4
    X, y = vertical_data(samples, classes, seed=2)
    for k in range(classes):
        blob = X[y == k]
        np.testing.assert_allclose(blob.mean(axis=0), [k / 3, 0.5], atol=0.01)
        np.testing.assert_allclose(blob.std(axis=0), [0.1, 0.1], atol=0.01)
    # the two features are independent
    assert abs(np.corrcoef(X[y == 0].T)[0, 1]) < 0.05


@pytest.mark.parametrize("samples, classes, seed", [(1, 1, 0), (40, 3, 0), (33, 5, 9)])
def test_vertical_matches_nnfs_formula_with_the_documented_noise(samples, classes, seed):
    noise = np.random.default_rng(seed).standard_normal((classes, 2, samples))
    Xn, yn = nnfs_vertical(samples, classes, noise)
    X, y = vertical_data(samples, classes, seed=seed)
    np.testing.assert_allclose(X, Xn, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(y, yn)


# -- bad arguments -----------------------------------------------------------------
@pytest.mark.parametrize("make", RANDOM)
@pytest.mark.parametrize("name, pos", [("samples", 0), ("classes", 1)])
@pytest.mark.parametrize("bad", [0, -3])
def test_too_small_counts_are_rejected(make, name, pos, bad):
    args = [5, 2]
    args[pos] = bad
    with pytest.raises(ValueError, match=rf"{name} must be >= 1, got {bad}"):
        make(*args)


@pytest.mark.parametrize("make", RANDOM)
@pytest.mark.parametrize("name, pos", [("samples", 0), ("classes", 1)])
@pytest.mark.parametrize("bad", [True, 2.0, "3", None, [3]])
def test_non_integer_counts_are_rejected(make, name, pos, bad):
    args = [5, 2]
    args[pos] = bad
    with pytest.raises(TypeError, match=rf"{name} must be an integer, got {type(bad).__name__}"):
        make(*args)


@pytest.mark.parametrize("bad", [0, -1])
def test_sine_bad_samples_value(bad):
    with pytest.raises(ValueError, match=rf"samples must be >= 1, got {bad}"):
        sine_data(bad)


@pytest.mark.parametrize("bad", [False, 10.0, "10", None])
def test_sine_bad_samples_type(bad):
    with pytest.raises(TypeError, match="samples must be an integer"):
        sine_data(bad)


@pytest.mark.parametrize("make", RANDOM)
def test_bad_seeds_are_rejected(make):
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        make(5, 2, seed=-1)
    for bad in (True, 1.5, "0", [1, 2]):
        with pytest.raises(TypeError, match=f"seed must be None, .*got {type(bad).__name__}"):
            make(5, 2, seed=bad)


def test_xor_takes_no_arguments():
    with pytest.raises(TypeError):
        xor(4)


# -- the data feed a network ---------------------------------------------------------
def test_labels_train_a_softmax_network(backend):
    X, y = vertical_data(30, 3)
    net = cbp.Network(
        [cbp.Dense(2, 8, "relu"), cbp.Dense(8, 3, "softmax")],
        loss="categorical_crossentropy",
        backend=backend,
        seed=0,
    )
    net.fit(X, y, epochs=3, lr=0.01)
    assert net.predict(X).shape == (90, 3)
