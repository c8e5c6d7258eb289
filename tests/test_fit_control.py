"""How fit is cut into native calls: callbacks at every ``callback_every``
epochs whatever the size of a native call, a callback that stops training,
and a history thinned by ``history_every``."""

import numpy as np
import pytest

import cbp
import cbp.network


def xor_net(backend, seed=0):
    return cbp.Network(
        [cbp.Dense(2, 3, "sigmoid", seed=seed), cbp.Dense(3, 1, "sigmoid", seed=seed + 1)],
        backend=backend,
    )


X, Y = cbp.datasets.xor()


@pytest.mark.parametrize("chunk", [7, 1 << 16])
@pytest.mark.parametrize("every,epochs", [(10, 35), (3, 9), (25, 24)])
def test_callbacks_fire_at_every_multiple(backend, monkeypatch, chunk, every, epochs):
    """The callback runs after epochs every, 2*every, ... and the last one,
    whether a native call holds more or fewer epochs than callback_every."""
    monkeypatch.setattr(cbp.network, "MAX_CHUNK", chunk)
    seen = []
    net = xor_net(backend)
    net.fit(
        X, Y, epochs=epochs, lr=0.5, callback=lambda e, logs: seen.append(e), callback_every=every
    )
    want = list(range(every, epochs + 1, every))
    if not want or want[-1] != epochs:
        want.append(epochs)
    assert seen == want


@pytest.mark.parametrize("chunk", [7, 1 << 16])
def test_callback_stop_takes_effect_at_its_epoch(backend, monkeypatch, chunk):
    """A callback returning False at epoch 30 leaves a network trained for
    exactly 30 epochs, equal to fit(epochs=30)."""
    monkeypatch.setattr(cbp.network, "MAX_CHUNK", chunk)
    net = xor_net(backend)
    hist = net.fit(X, Y, epochs=1000, lr=0.5, callback=lambda e, logs: e < 30, callback_every=15)
    ref = xor_net(backend)
    ref_hist = ref.fit(X, Y, epochs=30, lr=0.5)
    assert net.epochs_trained == 30 and len(hist["loss"]) == 30
    np.testing.assert_array_equal(net.parameters, ref.parameters)
    np.testing.assert_array_equal(hist["loss"], ref_hist["loss"])


def test_callback_every_beyond_a_native_call(native_core):
    """callback_every larger than the most epochs one native call runs
    (65,536): a callback returning False at epoch 100,000 of 1,000,000 stops
    the run there."""
    seen = []

    def stop_at_first(epoch, logs):
        seen.append(epoch)
        return False

    net = xor_net("native")
    net.fit(X, Y, epochs=1_000_000, lr=0.5, callback=stop_at_first, callback_every=100_000)
    assert seen == [100_000]
    assert net.epochs_trained == 100_000


@pytest.mark.parametrize("keep", [1, 3, 10, 11])
def test_history_every_keeps_every_kth_epoch_and_the_last(backend, monkeypatch, keep):
    monkeypatch.setattr(cbp.network, "MAX_CHUNK", 4)
    full = xor_net(backend).fit(X, Y, epochs=10, lr=0.5, validation_data=(X, Y))
    net = xor_net(backend)
    thin = net.fit(X, Y, epochs=10, lr=0.5, validation_data=(X, Y), history_every=keep)
    rows = sorted(set(range(keep - 1, 10, keep)) | {9})
    assert set(thin) == set(full)
    for name in full:
        np.testing.assert_array_equal(thin[name], full[name][rows], err_msg=name)
    with pytest.raises(ValueError, match="history_every"):
        net.fit(X, Y, epochs=1, lr=0.5, history_every=0)


@pytest.mark.parametrize(
    "name,cls",
    [
        ("sgd", cbp.optim.SGD),
        ("adam", cbp.optim.Adam),
        ("RMSprop", cbp.optim.RMSprop),
        ("adagrad", cbp.optim.Adagrad),
    ],
)
def test_optimizers_by_name(backend, name, cls):
    """Wherever an optimizer is taken, its name makes one with its defaults."""
    a = xor_net(backend)
    a.fit(X, Y, epochs=5, optimizer=name)
    b = xor_net(backend)
    b.fit(X, Y, epochs=5, optimizer=cls())
    assert type(a.optimizer) is cls
    np.testing.assert_array_equal(a.parameters, b.parameters)
    assert type(cbp.Network([cbp.Dense(2, 1)], optimizer=name).optimizer) is cls
    net = xor_net(backend)
    net.optimizer = name
    assert type(net.optimizer) is cls
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'.*sgd"):
        net.optimizer = "adamw"
    with pytest.raises(TypeError, match="optimizer must be"):
        net.fit(X, Y, epochs=1, optimizer=3)


def test_a_learning_rate_set_in_a_callback_applies_from_the_next_epoch(backend):
    """opt.lr changed by a callback after epoch 3 trains epochs 4.. at the new
    rate: the run equals fit(3) at the old rate, then fit(3) at the new one."""
    opt = cbp.optim.SGD(lr=0.5, momentum=0.9)
    net = xor_net(backend)

    def halve(epoch, logs):
        opt.lr = 0.25

    net.fit(X, Y, epochs=6, optimizer=opt, callback=halve, callback_every=3)
    ref_opt = cbp.optim.SGD(lr=0.5, momentum=0.9)
    ref = xor_net(backend)
    ref.fit(X, Y, epochs=3, optimizer=ref_opt)
    ref_opt.lr = 0.25
    ref.fit(X, Y, epochs=3)
    np.testing.assert_array_equal(net.parameters, ref.parameters)
    np.testing.assert_array_equal(opt.state, ref_opt.state)
    assert opt.iterations == ref_opt.iterations == 6


def test_verbose_shows_every_figure(backend, capsys, monkeypatch):
    """Without tqdm, verbose prints the loss, accuracy and validation figures."""
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *args, **kw):
        if name.startswith("tqdm"):
            raise ImportError("no tqdm here")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    net = cbp.Network(
        [cbp.Dense(2, 3, "tanh", seed=0), cbp.Dense(3, 2, "softmax", seed=1)],
        loss="categorical_crossentropy",
        backend=backend,
    )
    labels = np.array([0, 1, 1, 0])
    net.fit(X, labels, epochs=3, lr=0.1, validation_data=(X, labels), verbose=True)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    for key in ("epoch 3/3", "loss", "accuracy", "val_loss", "val_accuracy"):
        assert key in last, last


def test_hints_for_common_target_mistakes(backend):
    net = cbp.Network(
        [cbp.Dense(2, 3, "tanh"), cbp.Dense(3, 3, "softmax")],
        loss="categorical_crossentropy",
        backend=backend,
    )
    with pytest.raises(ValueError, match=r"y.ravel\(\)"):
        net.fit(X, np.array([[0], [1], [2], [1]]), epochs=1, lr=0.1)
    reg = cbp.Network([cbp.Dense(2, 3, "tanh"), cbp.Dense(3, 3, "identity")], backend=backend)
    with pytest.raises(ValueError, match="categorical_crossentropy"):
        reg.fit(X, np.array([0, 1, 2, 1]), epochs=1, lr=0.1)
    with pytest.raises(ValueError, match="one-hot"):
        reg.fit(X, np.array([[0], [1], [2], [1]]), epochs=1, lr=0.1)


def test_cross_entropies_need_their_output_activation(backend, tmp_path):
    """Categorical cross-entropy on a non-softmax output, or binary
    cross-entropy on a non-sigmoid one, is refused with a message that says
    what to change; check_output=False allows it (and is saved)."""
    for loss, good, bad in [
        ("categorical_crossentropy", "softmax", "relu"),
        ("binary_crossentropy", "sigmoid", "identity"),
    ]:
        with pytest.raises(ValueError, match=f"needs a {good} output layer.*activation='{good}'"):
            cbp.Network([cbp.Dense(2, 3), cbp.Dense(3, 2, bad)], loss=loss, backend=backend)
        net = cbp.Network([cbp.Dense(2, 3), cbp.Dense(3, 2, good)], loss=loss, backend=backend)
        with pytest.raises(ValueError, match=f"needs a {good} output layer"):
            net.layers[-1].activation = bad
        assert net.layers[-1].activation == good
        net.layers[0].activation = bad  # a hidden layer may be anything
        free = cbp.Network(
            [cbp.Dense(2, 3), cbp.Dense(3, 2, bad)], loss=loss, backend=backend, check_output=False
        )
        free.layers[-1].activation = "tanh"
        assert cbp.load(free.save(tmp_path / f"{loss}.npz"))._check_output is False
    with pytest.raises(TypeError, match="check_output"):
        cbp.Network([cbp.Dense(2, 1)], check_output="no")


@pytest.mark.parametrize("optimizer", [None, "sgd", "momentum", "adagrad", "rmsprop", "adam"])
def test_defaults_train_digits_well(backend, optimizer):
    """A first try with the defaults trains: net.fit(X, y, epochs=100) on
    standardised digits (64 -> 64 ReLU -> 10 softmax) reaches 95% on held-out
    data (scikit-learn's MLPClassifier() reaches 98% there), and so does
    every optimizer named with its default settings (momentum: SGD's
    defaults with momentum 0.9)."""
    datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    X, y = datasets.load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = model_selection.train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y
    )
    mean, scale = Xtr.mean(0), Xtr.std(0)
    scale[scale == 0] = 1.0
    net = cbp.Network(
        [cbp.Dense(64, 64, "relu"), cbp.Dense(64, 10, "softmax")],
        loss="categorical_crossentropy",
        backend=backend,
        seed=0,
    )
    if optimizer == "momentum":
        optimizer = cbp.optim.SGD(momentum=0.9)
    net.fit((Xtr - mean) / scale, ytr, epochs=100, optimizer=optimizer)
    accuracy = (net.predict((Xte - mean) / scale).argmax(1) == yte).mean()
    assert accuracy >= 0.95, accuracy
