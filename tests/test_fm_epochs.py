"""fit()'s whole-epoch runs on the feature-major layout (src/_fm_epochs.h,
src/_engine_fm.pxi) against the same fits on the general passes
(``cbp._core._fm_epochs_path(False)``): the same parameters, gradients,
history and counters, bit for bit, on every SIMD table this build and CPU
run; the runs taken where they are meant to be and only there; divergence,
chunks of a fit and Ctrl-C as on the general passes.
"""

import numpy as np
import pytest

import cbp
from cbp._errors import DivergenceError


@pytest.fixture
def core(native_core):
    """The compiled module, the run on, the SIMD table restored after."""
    saved, saved_simd = native_core._fm_epochs_path(True), native_core._simd()
    yield native_core
    native_core._fm_epochs_path(saved)
    native_core._simd(saved_simd)


def _data(n_in, n, seed=0, n_out=1):
    rng = np.random.default_rng([seed, n_in, n])
    X = rng.standard_normal((n, n_in))
    y = np.tanh(X.sum(axis=1, keepdims=True)) * 0.5 + 0.5
    return X, np.repeat(y, n_out, axis=1)


def _net(widths, acts, loss="squared_error", reduction="mean", bias=True):
    layers = [
        cbp.Dense(
            widths[i],
            widths[i + 1],
            a,
            seed=i + 1,
            use_bias=bias is True or (bias == "alternate" and i % 2 == 1),
        )
        for i, a in enumerate(acts)
    ]
    return cbp.Network(layers, loss=loss, reduction=reduction)


def _fit(core, on, widths, acts, n=4, epochs=300, lr=0.5, data=None, **kw):
    core._fm_epochs_path(on)
    X, y = _data(widths[0], n, n_out=widths[-1]) if data is None else data
    net = _net(
        widths, acts, kw.pop("loss", "squared_error"), kw.pop("reduction", "mean"),
        kw.pop("bias", True),
    )  # fmt: skip
    try:
        hist = net.fit(X, y, epochs=epochs, lr=lr, **kw)
        error = None
    except DivergenceError as exc:
        hist, error = exc.history, (exc.epoch, str(exc))
    return net, hist, error


def _state(run):
    net, hist, error = run
    return {
        "parameters": net.parameters.tobytes(),
        "gradients": net.gradients.tobytes(),
        "history": {k: getattr(v, "tobytes", lambda v=v: v)() for k, v in hist.items()},
        "epochs": net.epochs_trained,
        "error": error,
    }


def _same(core, widths, acts, **kw):
    """The fit with the runs and without, on every table; returns the epochs
    the runs took on the last table."""
    taken = None
    for table in core._simd_levels():
        core._simd(table)
        got = _fit(core, True, widths, acts, **kw)
        taken = got[0]._engine.fm_epochs
        ref = _fit(core, False, widths, acts, **kw)
        assert ref[0]._engine.fm_epochs == 0
        assert _state(got) == _state(ref), table
    return taken


CASES = [
    ((2, 4, 1), ("sigmoid", "sigmoid"), dict(loss="half_squared_error", reduction="sum")),  # 004
    ((2, 4, 1), ("sigmoid", "sigmoid"), {}),
    ((2, 4, 1), ("sigmoid", "sigmoid"), dict(bias=False, loss="half_squared_error")),  # bench A
    ((3, 3, 2, 1), ("relu", "sigmoid", "sigmoid"), dict(bias="alternate")),
    ((2, 2, 1), ("relu", "identity"), {}),  # tutorial 001's shape
    ((2, 2, 1), ("relu", "relu"), dict(loss="half_squared_error")),
    ((1, 4, 1), ("relu", "sigmoid"), dict(reduction="sum", lr=0.05)),
    ((1, 4, 1), ("sigmoid", "identity"), dict(bias="alternate", loss="half_squared_error")),
    ((2, 3, 1), ("sigmoid", "identity"), {}),  # a shape without its own instance
    ((3, 3, 2, 1), ("relu", "sigmoid", "sigmoid"), {}),  # three layers
    ((4, 4, 4, 4, 1), ("sigmoid", "relu", "sigmoid", "identity"), dict(lr=0.1)),
]


@pytest.mark.parametrize("widths, acts, kw", CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("n", [2, 3, 4, 5, 8])
def test_equals_the_general_passes_bit_for_bit(core, widths, acts, kw, n):
    taken = _same(core, widths, acts, n=n, **kw)
    assert taken == 300


@pytest.mark.parametrize(
    "kw",
    [
        dict(shuffle=True),
        dict(batch_size=2, n=8),
        dict(optimizer=cbp.optim.SGD(lr=0.5, momentum=0.9), lr=None),
        dict(schedule=cbp.schedules.StepLR(50, 0.5)),
        dict(early_stopping=cbp.callbacks.EarlyStopping(patience=5)),
        dict(validation_data="same"),
        dict(widths=(2, 3, 2), acts=("sigmoid", "identity")),  # two outputs
        dict(widths=(2, 3, 1), acts=("tanh", "identity")),  # a hidden tanh
        dict(widths=(2, 3, 1), acts=("sigmoid", "tanh")),
        dict(loss="binary_crossentropy"),
    ],
    ids=lambda v: ",".join(sorted(v)),
)
def test_fits_it_does_not_take_are_unchanged(core, kw):
    kw = dict(kw)
    widths, acts = kw.pop("widths", (2, 4, 1)), kw.pop("acts", ("sigmoid", "sigmoid"))
    n = kw.pop("n", 4)
    if kw.get("validation_data") == "same":
        kw["validation_data"] = _data(widths[0], n)
    if "optimizer" in kw:  # fit's own optimizer argument, one per run
        opt = kw.pop("optimizer")
        runs = []
        for on in (True, False):
            core._fm_epochs_path(on)
            X, y = _data(widths[0], n)
            net = _net(widths, acts)
            net.fit(X, y, epochs=50, optimizer=cbp.optim.SGD(**opt.get_config()))
            runs.append(net)
        assert runs[0]._engine.fm_epochs == 0
        assert runs[0].parameters.tobytes() == runs[1].parameters.tobytes()
        return
    got = _fit(core, True, widths, acts, n=n, epochs=50, **kw)
    assert got[0]._engine.fm_epochs == 0
    assert _state(got) == _state(_fit(core, False, widths, acts, n=n, epochs=50, **kw))


def test_penalties_and_frozen_layers_are_not_taken(core):
    X, y = _data(2, 4)
    for change in ("l2", "frozen", "bias"):
        net = _net((2, 4, 1), ("sigmoid", "sigmoid"))
        if change == "l2":
            net.layers[0].weight_l2 = 0.01
        elif change == "frozen":
            net.layers[0].trainable = False
        else:
            net.layers[1].bias_trainable = False
        net.fit(X, y, epochs=20, lr=0.5)
        assert net._engine.fm_epochs == 0, change


@pytest.mark.parametrize(
    "widths, acts, lr",
    [
        ((2, 4, 1), ("relu", "identity"), 50.0),  # in epoch 5
        ((2, 4, 1), ("relu", "identity"), 1e160),  # in epoch 2
        ((1, 4, 1), ("relu", "identity"), 0.5),  # in epoch 6
    ],
)
def test_divergence_is_the_general_passes(core, widths, acts, lr):
    X = np.array([[3.0, -2.0], [1.0, 4.0], [-5.0, 2.0], [2.0, 2.0]])[:, : widths[0]]
    y = np.array([[30.0], [-10.0], [20.0], [5.0]])
    got = _fit(core, True, widths, acts, lr=lr, data=(X, y))
    ref = _fit(core, False, widths, acts, lr=lr, data=(X, y))
    assert got[2] is not None and got[2] == ref[2]
    assert got[0]._engine.fm_epochs == got[2][0] - 1  # the run, then the general passes
    assert _state(got) == _state(ref)


@pytest.mark.parametrize("bias", [True, False, "alternate"])
@pytest.mark.parametrize("acts", [("sigmoid", "relu"), ("relu", "sigmoid")])
def test_eight_hidden_units_forced(core, feature_major, acts, bias):
    # fit takes feature-major only up to 4 units unless its limits are raised;
    # 2-8-1 on 4 rows then runs in registers, two vectors a row of weights
    assert _same(core, (2, 8, 1), acts, bias=bias) == 300


@pytest.mark.parametrize("acts", [("sigmoid", "sigmoid"), ("relu", "sigmoid")])
def test_sigmoids_beyond_exps_range(core, acts):
    # pre-activations past -708 and 709, where the sigmoid takes libm's exp
    # lane by lane: in the first layer from the inputs, then in the output
    X = np.array([[900.0, -2.0], [1.0, -800.0], [-3.0, 2.0], [0.5, 0.25]])
    y = np.array([[1.0], [0.0], [1.0], [0.0]])
    taken = _same(core, (2, 4, 1), acts, data=(X, y), lr=5.0, epochs=200)
    assert taken == 200


def test_chunks_and_a_display_equal_one_run(core, monkeypatch):
    from cbp import network

    X, y = _data(2, 4)
    ref = _net((2, 4, 1), ("sigmoid", "sigmoid"))
    ref.fit(X, y, epochs=3000, lr=0.5)
    net = _net((2, 4, 1), ("sigmoid", "sigmoid"))
    for epochs in (1, 7, 992, 2000):
        net.fit(X, y, epochs=epochs, lr=0.5)
    assert net.parameters.tobytes() == ref.parameters.tobytes()
    monkeypatch.setattr(network, "REPORT_SECONDS", 0.0001)  # back to Python very often
    shown = _net((2, 4, 1), ("sigmoid", "sigmoid"))
    shown.fit(X, y, epochs=3000, lr=0.5, verbose=True)
    assert shown.parameters.tobytes() == ref.parameters.tobytes()
    assert shown.history["loss"].tobytes() == ref.history["loss"].tobytes()


def test_the_twin_agrees_over_a_long_run(core):
    X, y = _data(2, 4)
    net = _net((2, 4, 1), ("sigmoid", "sigmoid"))
    hist = net.fit(X, y, epochs=5000, lr=0.5)
    assert net._engine.fm_epochs == 5000
    twin = cbp.Network(
        [cbp.Dense(2, 4, "sigmoid", seed=1), cbp.Dense(4, 1, "sigmoid", seed=2)], backend="numpy"
    )
    ref = twin.fit(X, y, epochs=5000, lr=0.5)
    np.testing.assert_allclose(hist["loss"], ref["loss"], rtol=1e-9)
    np.testing.assert_allclose(net.parameters, twin.parameters, rtol=1e-9, atol=1e-12)


def test_ctrl_c_leaves_the_last_completed_epoch(interrupted_fit):
    setup = """
        X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
        y = np.array([[0], [1], [1], [0]], float)

        def make():
            return cbp.Network(
                [cbp.Dense(2, 4, "sigmoid", seed=1), cbp.Dense(4, 1, "sigmoid", seed=2)]
            )
    """
    interrupted_fit(setup, "dict(lr=0.1)", "fm_epochs")
