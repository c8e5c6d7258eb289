"""Saving, loading and pickling networks; evaluate.

A saved network must come back whole (architecture, parameters, optimizer
and its state, epoch count), training resumed from a file must be training
never interrupted, a damaged or foreign file must raise cbp.FormatError (a
ValueError) with a message that says what is wrong, and a failed save must
never damage an earlier file.
"""

import copy
import gc
import json
import os
import pickle
import struct
import warnings
import zipfile

import numpy as np
import pytest

import cbp
from cbp import optim
from cbp.persistence import FORMAT_VERSION


def spiral():
    return cbp.datasets.spiral_data(10, 3)


def rich_net(backend, optimizer=None, seed=3):
    """Every layer option that the file must carry."""
    layers = [
        cbp.Dense(2, 6, "leaky_relu", alpha=0.05, init="he", weight_l2=1e-3, bias_l1=1e-4),
        cbp.Dropout(0.2),
        cbp.Dense(6, 5, "elu", use_bias=False, init="nnfs", seed=42, weight_l1=2e-4),
        cbp.Dense(5, 4, "tanh", trainable=False, init="uniform"),
        cbp.Dense(4, 3, "softmax", bias_l2=5e-4),
    ]
    return cbp.Network(
        layers,
        loss="categorical_crossentropy",
        reduction="sum",
        backend=backend,
        seed=seed,
        optimizer=optimizer,
    )


def trained(backend, optimizer=None, epochs=4):
    net = rich_net(backend, optimizer if optimizer is not None else optim.Adam(0.01))
    X, y = spiral()
    net.fit(X, y, epochs=epochs, batch_size=7, shuffle=True)
    return net


def assert_same_network(a, b):
    assert a.get_config() == b.get_config()
    np.testing.assert_array_equal(a.parameters, b.parameters)
    assert a.epochs_trained == b.epochs_trained
    assert (a.optimizer is None) == (b.optimizer is None)
    if a.optimizer is not None:
        assert type(a.optimizer) is type(b.optimizer)
        assert a.optimizer.get_config() == b.optimizer.get_config()
        assert a.optimizer.iterations == b.optimizer.iterations
        np.testing.assert_array_equal(a.optimizer.state, b.optimizer.state)
    X, _ = spiral()
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "opt",
    [
        None,
        optim.SGD(0.1),
        optim.SGD(0.05, momentum=0.9, nesterov=True, decay=0.01),
        optim.Adagrad(0.1, epsilon=1e-6, decay=0.1),
        optim.RMSprop(0.01, rho=0.8, epsilon=1e-6),
        optim.Adam(0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-8, decay=0.02),
    ],
    ids=["no-optimizer", "sgd", "nesterov", "adagrad", "rmsprop", "adam"],
)
def test_save_load_round_trip(backend, tmp_path, opt):
    net = rich_net(backend, copy.deepcopy(opt))
    X, y = spiral()
    net.fit(X, y, epochs=3, batch_size=8, lr=0.01 if opt is None else None)
    path = tmp_path / "net.npz"
    net.save(path)
    back = cbp.load(path)
    assert back.backend == backend
    assert_same_network(back, net)
    assert back.epochs_trained == 3
    if opt is not None:
        assert back.optimizer.iterations == 3 * 4 > 0
        if opt.slots:
            assert np.abs(back.optimizer.state).sum() > 0
    # the loaded network is its own: layers are views of *its* buffers
    assert all(layer.network is back for layer in back.layers)
    back.parameters[:] = 0.0
    assert np.abs(net.parameters).sum() > 0
    # str paths work too; a name without a suffix gets ".npz"
    other = tmp_path / "no-suffix"
    assert net.save(str(other)) == str(other) + ".npz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.npz", "no-suffix.npz"]
    assert_same_network(cbp.load(str(other)), net)


def test_load_with_another_backend(native, tmp_path):
    net = trained("native")
    net.save(tmp_path / "n.npz")
    back = cbp.load(tmp_path / "n.npz", backend="numpy")
    assert back.backend == "numpy"
    np.testing.assert_array_equal(back.parameters, net.parameters)
    X, _ = spiral()
    np.testing.assert_allclose(back.predict(X), net.predict(X), rtol=1e-12)


@pytest.mark.parametrize("how", ["file", "pickle", "deepcopy"])
def test_resumed_training_equals_uninterrupted(backend, tmp_path, how):
    """fit 10 + save + load + fit 10 == fit 20, with Adam, shuffle and dropout:
    the epoch count, the seed and the optimizer state all travel."""
    X, y = spiral()
    kw = dict(batch_size=7, shuffle=True)
    whole = rich_net(backend, optim.Adam(0.01))
    h20 = whole.fit(X, y, epochs=20, **kw)

    first = rich_net(backend, optim.Adam(0.01))
    h1 = first.fit(X, y, epochs=10, **kw)
    if how == "file":
        first.save(tmp_path / "half.npz")
        resumed = cbp.load(tmp_path / "half.npz")
    elif how == "pickle":
        resumed = pickle.loads(pickle.dumps(first))
    else:
        resumed = copy.deepcopy(first)
    del first
    h2 = resumed.fit(X, y, epochs=10, **kw)
    assert resumed.epochs_trained == 20
    np.testing.assert_array_equal(resumed.parameters, whole.parameters)
    np.testing.assert_array_equal(resumed.optimizer.state, whole.optimizer.state)
    assert resumed.optimizer.iterations == whole.optimizer.iterations == 20 * 5
    np.testing.assert_array_equal(np.concatenate([h1["loss"], h2["loss"]]), h20["loss"])


def test_resuming_without_the_epoch_count_would_differ(backend, tmp_path):
    """The check above can fail: a file whose epoch count is reset replays the
    first epochs' shuffles and dropout masks."""
    X, y = spiral()
    whole = rich_net(backend, optim.Adam(0.01))
    whole.fit(X, y, epochs=4, batch_size=7, shuffle=True)
    first = rich_net(backend, optim.Adam(0.01))
    first.fit(X, y, epochs=2, batch_size=7, shuffle=True)
    first.epochs_trained = 0
    first.save(tmp_path / "f.npz")
    back = cbp.load(tmp_path / "f.npz")
    back.fit(X, y, epochs=2, batch_size=7, shuffle=True)
    assert not np.allclose(back.parameters, whole.parameters)


def test_resume_across_backends(native, tmp_path):
    X, y = spiral()
    whole = rich_net("numpy", optim.Adam(0.01))
    whole.fit(X, y, epochs=12, batch_size=7, shuffle=True)
    half = rich_net("native", optim.Adam(0.01))
    half.fit(X, y, epochs=6, batch_size=7, shuffle=True)
    half.save(tmp_path / "h.npz")
    back = cbp.load(tmp_path / "h.npz", backend="numpy")
    back.fit(X, y, epochs=6, batch_size=7, shuffle=True)
    np.testing.assert_allclose(back.parameters, whole.parameters, rtol=1e-9, atol=1e-12)


def test_native_file_loads_where_the_core_is_missing(native, tmp_path, monkeypatch):
    """A file (or pickle) made with backend='native' opens on the NumPy backend
    where the compiled core is not loaded, instead of failing."""
    net = cbp.Network([cbp.Dense(2, 3, seed=1)], backend="native")
    net.save(tmp_path / "n.npz")
    blob = pickle.dumps(net)
    monkeypatch.setattr(cbp._backend, "_core", None)
    assert not cbp.native_available()
    for back in (cbp.load(tmp_path / "n.npz"), pickle.loads(blob)):
        assert back.backend == "numpy"
        np.testing.assert_array_equal(back.parameters, net.parameters)
    with pytest.raises(cbp.NativeUnavailableError):
        cbp.load(tmp_path / "n.npz", backend="native")


def test_pickle_round_trip(backend):
    net = trained(backend)
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        back = pickle.loads(pickle.dumps(net, protocol=protocol))
        assert back.backend == backend
        assert_same_network(back, net)
        assert all(layer.network is back for layer in back.layers)
        assert not np.shares_memory(back.parameters, net.parameters)
        assert back.optimizer is not net.optimizer
        X, y = spiral()
        back.train_step(X, y)  # usable, and independent of the original
        assert not np.array_equal(back.parameters, net.parameters)


# ---------------------------------------------------------------------------
# Damaged and foreign files
# ---------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    """A small trained network and the path of its file."""
    net = trained(None, epochs=2)
    path = tmp_path / "net.npz"
    net.save(path)
    return net, path


def rewrite(path, out, **changes):
    """Write a copy of a cbp file with some arrays replaced (None: removed)."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    with open(out, "wb") as fh:
        np.savez(fh, **arrays)
    return out


def meta_of(path):
    with np.load(path) as f:
        return json.loads(str(f["meta"][()]))


def edited_meta(path, edit):
    meta = meta_of(path)
    edit(meta)
    return np.array(json.dumps(meta))


def test_saved_file_layout(saved):
    """The documented fields: format, meta (JSON), parameters, optimizer_state."""
    net, path = saved
    assert zipfile.is_zipfile(path)
    with np.load(path) as f:
        assert set(f.files) == {"format", "meta", "parameters", "optimizer_state"}
        assert f["format"].tolist() == [FORMAT_VERSION] == [1]
        np.testing.assert_array_equal(f["parameters"], net.parameters)
        np.testing.assert_array_equal(f["optimizer_state"], net.optimizer.state)
    meta = meta_of(path)
    assert meta["epochs_trained"] == 2
    assert meta["optimizer"]["name"] == "adam" and meta["optimizer"]["iterations"] == 10
    assert meta["config"] == net.get_config()


def test_an_unchanged_rewrite_loads(saved, tmp_path):
    """The rewriting helper itself keeps a file loadable (so the failures
    below come from the change made, not from the rewrite)."""
    net, path = saved
    assert_same_network(cbp.load(rewrite(path, tmp_path / "same.npz")), net)


def try_load(path):
    """(network, None) or (None, the exception load raised, without tracebacks)."""
    try:
        return cbp.load(path), None
    except Exception as exc:  # noqa: BLE001 - the caller judges it
        chained = exc
        while chained is not None:  # what the frames hold (a file) is released, and warns, here
            chained.__traceback__ = None
            chained = chained.__context__
        return None, exc


def expect_format_error(path, *fragments):
    _, exc = try_load(path)
    assert isinstance(exc, cbp.FormatError), f"expected FormatError, got {exc!r}"
    assert isinstance(exc, ValueError)
    message = str(exc)
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("keep", [0, 1, 10, 100, 0.5, 0.9, -1])
def test_truncated_file(saved, tmp_path, keep):
    _, path = saved
    raw = path.read_bytes()
    n = (
        keep
        if isinstance(keep, int) and keep >= 0
        else int(len(raw) * keep)
        if keep > 0
        else len(raw) - 1
    )
    cut = tmp_path / "cut.npz"
    cut.write_bytes(raw[:n])
    expect_format_error(cut, str(cut))


def test_flipped_bytes_never_load_another_network(saved, tmp_path):
    """Flip bytes all over the file (zip headers, npy headers, JSON,
    parameters, optimizer state, central directory): each load raises
    FormatError or, where zip ignores the byte (a timestamp), gives back the
    very same network; never a different one."""
    net, path = saved
    raw = path.read_bytes()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(raw)
    outcomes = {"FormatError": 0, "same": 0}
    with open(bad, "r+b", buffering=0) as patch:  # flip in place: rewriting whole files is slow
        for i in range(0, len(raw), 5):
            patch.seek(i)
            patch.write(bytes([raw[i] ^ (0xFF if i % 2 else 0x01)]))
            back, exc = try_load(bad)
            patch.seek(i)
            patch.write(raw[i : i + 1])
            outcomes[judge(i, back, exc, net)] += 1
    assert outcomes["FormatError"] > 0.9 * sum(outcomes.values()), outcomes


def judge(i, back, exc, net):
    """How a load of a damaged file went: FormatError or the very same network."""
    if exc is None:
        assert_same_network(back, net)
        return "same"
    assert isinstance(exc, cbp.FormatError), f"byte {i}: {exc!r}"
    return "FormatError"


def test_flipped_byte_in_the_parameters(saved, tmp_path):
    """The zip CRC catches a changed parameter value."""
    net, path = saved
    raw = bytearray(path.read_bytes())
    needle = net.parameters[3].tobytes()
    at = bytes(raw).index(needle)
    raw[at + 2] ^= 0x01
    (tmp_path / "p.npz").write_bytes(bytes(raw))
    expect_format_error(tmp_path / "p.npz", "not a readable cbp network file")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"hello, world\n",
        bytes(range(256)) * 8,
        b"PK\x03\x04" + b"\0" * 60,
    ],
    ids=["empty", "text", "binary", "zip-magic"],
)
def test_not_an_npz_file(tmp_path, content):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    expect_format_error(path, str(path))


def test_a_pickle_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(pickle.dumps({"format": 1}))
    expect_format_error(path, "not a readable cbp network file")


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        cbp.load(tmp_path / "nothing.npz")


def test_npz_without_cbp_fields(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.ones(3), bias=np.zeros(2))
    expect_format_error(
        path, "not a cbp network file", "format", "meta", "optimizer_state", "parameters"
    )


@pytest.mark.parametrize("field", ["format", "meta", "parameters", "optimizer_state"])
def test_npz_missing_one_field(saved, tmp_path, field):
    _, path = saved
    expect_format_error(rewrite(path, tmp_path / "m.npz", **{field: None}), "missing", field)


def test_hand_edited_files(saved, tmp_path):
    net, path = saved
    n = net.parameters.size
    out = tmp_path / "edited.npz"

    def check(fragment, **changes):
        return expect_format_error(rewrite(path, out, **changes), fragment)

    check(
        f"holds {n + 1} parameters, its architecture needs {n}",
        parameters=np.append(net.parameters, 1.0),
    )
    check(f"holds {n - 1} parameters", parameters=net.parameters[:-1])
    nan = net.parameters.copy()
    nan[5] = np.nan
    check("NaN or infinite", parameters=nan)
    inf = net.parameters.copy()
    inf[0] = -np.inf
    check("NaN or infinite", parameters=inf)
    msg = check(f"format {FORMAT_VERSION + 1}", format=np.array([FORMAT_VERSION + 1]))
    assert "newer" in msg
    check("bad format field", format=np.array([1.0]))
    check("bad format field", format=np.array([1, 1]))
    check("optimizer state does not fit", optimizer_state=net.optimizer.state[:-1])
    check("invalid network description", meta=np.array("{not json"))
    check("invalid network description", meta=np.array("[1, 2]"))
    check(
        "unknown layer type",
        meta=edited_meta(path, lambda m: m["config"]["layers"][0].update(type="Conv2D")),
    )
    check(
        "invalid network description",
        meta=edited_meta(path, lambda m: m["config"]["layers"][0].update(n_inputs=-2)),
    )
    check(
        "invalid network description",
        meta=edited_meta(path, lambda m: m["config"].update(loss="hinge")),
    )
    check("invalid network description", meta=edited_meta(path, lambda m: m.pop("epochs_trained")))
    check(
        "invalid network description",
        meta=edited_meta(path, lambda m: m["optimizer"].update(name="lbfgs")),
    )
    check("not a readable cbp network file", meta=np.array([{"a": 1}], dtype=object))


def test_format_versions(saved, tmp_path):
    """Versions 1 to FORMAT_VERSION are read, as int64 (what save writes) in
    either byte order; 0, a newer one or another integer type is refused."""
    net, path = saved
    for version in range(1, FORMAT_VERSION + 1):
        for dtype in ("<i8", ">i8"):
            back = cbp.load(
                rewrite(path, tmp_path / "v.npz", format=np.array([version], dtype=dtype))
            )
            assert_same_network(back, net)
    expect_format_error(
        rewrite(path, tmp_path / "v.npz", format=np.array([0], dtype=np.int64)), "bad format field"
    )
    expect_format_error(
        rewrite(path, tmp_path / "v.npz", format=np.array([FORMAT_VERSION], dtype=np.int32)),
        "bad format field",
    )


# A .npy file, a damaged zip directory or flag, a damaged .npy header: FormatErrors too
def test_npy_file_is_a_format_error(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.arange(3.0))
    expect_format_error(path)


def central_directory(raw):
    at = struct.unpack("<I", raw[-6:-2])[0]  # the end record's offset of the central directory
    assert raw[at : at + 4] == b"PK\x01\x02"
    return at


def test_damaged_central_directory_is_a_format_error(saved, tmp_path):
    _, path = saved
    raw = bytearray(path.read_bytes())
    raw[central_directory(raw) + 10] ^= 0xFF  # the compression method of the first entry
    (tmp_path / "cd.npz").write_bytes(bytes(raw))
    expect_format_error(tmp_path / "cd.npz")


def test_encrypted_flag_is_a_format_error(saved, tmp_path):
    _, path = saved
    raw = bytearray(path.read_bytes())
    raw[central_directory(raw) + 8] |= 0x01  # general purpose flag bit 0: encrypted
    (tmp_path / "enc.npz").write_bytes(bytes(raw))
    expect_format_error(tmp_path / "enc.npz")


def test_damaged_npy_header_is_a_format_error(saved, tmp_path):
    _, path = saved
    raw = path.read_bytes()
    end = raw.index(b"}", raw.index(b"{'descr': '<U"))  # the meta member's npy header dict
    (tmp_path / "hdr.npz").write_bytes(raw[:end] + b" " + raw[end + 1 :])
    expect_format_error(tmp_path / "hdr.npz")


def test_failed_load_closes_its_file(saved, tmp_path):
    _, path = saved
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[:-10])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(cbp.FormatError):
            cbp.load(cut)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize("edit", ["nan-state", "negative-iterations", "negative-epochs"])
def test_invalid_optimizer_state_or_counts_are_format_errors(saved, tmp_path, edit):
    net, path = saved
    if edit == "nan-state":
        state = net.optimizer.state.copy()
        state[1] = np.nan
        changes = dict(optimizer_state=state)
    elif edit == "negative-iterations":
        changes = dict(meta=edited_meta(path, lambda m: m["optimizer"].update(iterations=-3)))
    else:
        changes = dict(meta=edited_meta(path, lambda m: m.update(epochs_trained=-3)))
    expect_format_error(rewrite(path, tmp_path / "e.npz", **changes))


def test_reset_optimizer_round_trips(tmp_path):
    net = rich_net(None, optim.Adam(0.01))
    net.optimizer.reset()
    net.save(tmp_path / "r.npz")
    back = cbp.load(tmp_path / "r.npz")
    assert back.optimizer.iterations == 0


# ---------------------------------------------------------------------------
# Atomic saves
# ---------------------------------------------------------------------------
def dir_listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("failure", ["savez", "savez-interrupt", "replace"])
def test_failed_save_keeps_the_old_file(saved, monkeypatch, failure):
    net, path = saved
    folder = path.parent
    before, params = path.read_bytes(), net.parameters.copy()
    listing = dir_listing(folder)
    real_savez = np.savez

    def broken_savez(file, **arrays):
        real_savez(file, **arrays)  # write a whole file's worth of bytes, then fail
        file.write(b"garbage")
        if failure == "savez-interrupt":
            raise KeyboardInterrupt
        raise OSError(28, "No space left on device")

    def broken_replace(src, dst):
        assert os.path.exists(src) and os.path.dirname(os.path.abspath(src)) == str(folder)
        raise OSError(13, "Permission denied")

    if failure == "replace":
        monkeypatch.setattr(os, "replace", broken_replace)
        expected = OSError
    else:
        monkeypatch.setattr(np, "savez", broken_savez)
        expected = KeyboardInterrupt if failure == "savez-interrupt" else OSError
    net.parameters[:] += 1.0  # what a successful save would write
    with pytest.raises(expected):
        net.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert dir_listing(folder) == listing  # no temporary file left behind
    np.testing.assert_array_equal(cbp.load(path).parameters, params)


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    net = rich_net(None)

    def broken(file, **arrays):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="I/O error"):
        net.save(tmp_path / "new.npz")
    assert dir_listing(tmp_path) == []


def test_save_replaces_an_existing_file(saved):
    net, path = saved
    net.parameters[:] *= 2.0
    net.save(path)
    np.testing.assert_array_equal(cbp.load(path).parameters, net.parameters)
    assert dir_listing(path.parent) == ["net.npz"]


# ---------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------
def softmax(Z):
    E = np.exp(Z - Z.max(1, keepdims=True))
    return E / E.sum(1, keepdims=True)


def test_evaluate_categorical(backend):
    """Mean (or summed) clipped cross-entropy plus penalties, and the share of
    rows whose argmax is the label; dropout off."""
    rng = np.random.default_rng(0)
    W1, b1 = rng.standard_normal((2, 5)), rng.standard_normal(5)
    W2, b2 = 6 * rng.standard_normal((5, 3)), rng.standard_normal(3)
    X, y = cbp.datasets.vertical_data(7, 3)
    for reduction in ("mean", "sum"):
        net = cbp.Network(
            [
                cbp.Dense(2, 5, "relu", weights=W1, bias=b1, weight_l2=0.01),
                cbp.Dropout(0.5),
                cbp.Dense(5, 3, "softmax", weights=W2, bias=b2, bias_l1=0.02),
            ],
            loss="categorical_crossentropy",
            reduction=reduction,
            backend=backend,
        )
        P = softmax(np.maximum(X @ W1 + b1, 0) @ W2 + b2)
        p_true = np.clip(P[np.arange(len(y)), y], 1e-7, 1 - 1e-7)
        ce = -np.log(p_true)
        data = ce.mean() if reduction == "mean" else ce.sum()
        penalty = 0.01 * (W1**2).sum() + 0.02 * np.abs(b2).sum()
        out = net.evaluate(X, y)
        assert set(out) == {"loss", "accuracy"}
        assert out["loss"] == pytest.approx(data + penalty, rel=1e-12)
        assert out["accuracy"] == np.mean(P.argmax(1) == y)
        assert 0.0 < out["accuracy"] < 1.0  # informative data: some right, some wrong
        # one-hot rows are the same targets as labels
        assert net.evaluate(X, np.eye(3)[y]) == out


def test_evaluate_clips_probabilities(backend):
    """A confidently wrong softmax row costs -log(1e-7), not infinity."""
    net = cbp.Network(
        [cbp.Dense(1, 2, "softmax", weights=[[0.0, 0.0]], bias=[100.0, -100.0])],
        loss="categorical_crossentropy",
        backend=backend,
    )
    out = net.evaluate([[1.0]], [1])
    assert out["loss"] == pytest.approx(-np.log(1e-7), rel=1e-12)
    assert out["accuracy"] == 0.0


def test_evaluate_binary(backend):
    """Binary cross-entropy over every output, accuracy per output vs 0.5."""
    rng = np.random.default_rng(1)
    W, b = 2 * rng.standard_normal((3, 2)), rng.standard_normal(2)
    X = rng.standard_normal((9, 3))
    Y = (rng.random((9, 2)) < 0.5).astype(float)
    net = cbp.Network(
        [cbp.Dense(3, 2, "sigmoid", weights=W, bias=b)], loss="binary_crossentropy", backend=backend
    )
    P = np.clip(1 / (1 + np.exp(-(X @ W + b))), 1e-7, 1 - 1e-7)
    bce = -(Y * np.log(P) + (1 - Y) * np.log(1 - P))
    out = net.evaluate(X, Y)
    assert out["loss"] == pytest.approx(bce.mean(), rel=1e-12)
    assert out["accuracy"] == np.mean((P > 0.5) == (Y > 0.5))
    assert 0.0 < out["accuracy"] < 1.0


@pytest.mark.parametrize("loss, factor", [("squared_error", 1.0), ("half_squared_error", 0.5)])
def test_evaluate_regression(backend, loss, factor):
    rng = np.random.default_rng(2)
    W, b = rng.standard_normal((3, 2)), rng.standard_normal(2)
    X, Y = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    net = cbp.Network(
        [cbp.Dense(3, 2, "identity", weights=W, bias=b, weight_l1=0.1)],
        loss=loss,
        backend=backend,
        optimizer=optim.Adam(),
    )
    before = net.parameters.copy(), net.optimizer.state.copy()
    net.forward(X[:4])
    out = net.evaluate(X, Y)
    assert set(out) == {"loss"}
    expected = factor * np.mean((X @ W + b - Y) ** 2) + 0.1 * np.abs(W).sum()
    assert out["loss"] == pytest.approx(expected, rel=1e-12)
    # evaluate changes nothing, not even the forward cache that backward uses
    np.testing.assert_array_equal(net.parameters, before[0])
    np.testing.assert_array_equal(net.optimizer.state, before[1])
    assert net.optimizer.iterations == 0
    head = factor * np.mean((X[:4] @ W + b - Y[:4]) ** 2) + 0.1 * np.abs(W).sum()
    assert net.backward(Y[:4]) == pytest.approx(head, rel=1e-12)
