"""How fit is cut into native calls: callbacks at every ``callback_every``
epochs whatever the size of a native call, a callback that stops training,
and a history thinned by ``history_every``."""
import numpy as np
import pytest

import cbp
import cbp.network


def xor_net(backend, seed=0):
    return cbp.Network([cbp.Dense(2, 3, "sigmoid", seed=seed),
                        cbp.Dense(3, 1, "sigmoid", seed=seed + 1)], backend=backend)


X, Y = cbp.datasets.xor()


@pytest.mark.parametrize("chunk", [7, 1 << 16])
@pytest.mark.parametrize("every,epochs", [(10, 35), (3, 9), (25, 24)])
def test_callbacks_fire_at_every_multiple(backend, monkeypatch, chunk, every, epochs):
    """The callback runs after epochs every, 2*every, ... and the last one,
    whether a native call holds more or fewer epochs than callback_every."""
    monkeypatch.setattr(cbp.network, "MAX_CHUNK", chunk)
    seen = []
    net = xor_net(backend)
    net.fit(X, Y, epochs=epochs, lr=0.5, callback=lambda e, logs: seen.append(e),
            callback_every=every)
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
    hist = net.fit(X, Y, epochs=1000, lr=0.5, callback=lambda e, logs: e < 30,
                   callback_every=15)
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
