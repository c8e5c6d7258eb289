"""Learning-rate schedules applied inside fit's loop (cbp.schedules).

Each epoch's rate (history["lr"]) is checked against an independent NumPy
computation of the schedule and, where torch is installed, against
torch.optim.lr_scheduler stepped once an epoch; the rate is the one the step
kernel uses (a run equals one-epoch fits at the scheduled rates), composes
with decay and with a callback's new lr; native and twin agree.
"""

import math

import numpy as np
import pytest

import cbp
from cbp import _codes, optim
from cbp import schedules as S

EPOCHS = 40


def make(backend, seed=0):
    return cbp.Network(
        [cbp.Dense(3, 8, "tanh"), cbp.Dense(8, 1, "identity")], backend=backend, seed=seed
    )


def data(n=64):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(n, 3))
    y = np.sin(X[:, :1]) + 0.5 * X[:, 1:2] * X[:, 2:] + 0.1 * rng.normal(size=(n, 1))
    return X, y


def run(backend, schedule, epochs=EPOCHS, opt=None, **kw):
    X, y = data()
    net = make(backend)
    kw.setdefault("batch_size", 16)
    kw.setdefault("shuffle", True)
    hist = net.fit(X, y, epochs=epochs, optimizer=opt or optim.SGD(0.1), schedule=schedule, **kw)
    return net, hist


# ------------------------------------------------ the schedules, in NumPy ---
def numpy_rates(schedule, lr, epochs, monitored=None):
    """The rate of each epoch, computed here from the formulas."""
    e = np.arange(epochs, dtype=np.float64)
    if isinstance(schedule, S.StepLR):
        return lr * np.power(schedule.gamma, np.floor_divide(e, schedule.step_size))
    if isinstance(schedule, S.ExponentialLR):
        return lr * np.power(schedule.gamma, e)
    if isinstance(schedule, S.CosineLR):
        t = np.minimum(e, schedule.T_max)
        return (
            schedule.eta_min
            + (lr - schedule.eta_min) * (1 + np.cos(np.pi * t / schedule.T_max)) / 2
        )
    assert isinstance(schedule, S.ReduceLROnPlateau)
    rates, rate, best, bad, cool = [], lr, np.inf, 0, 0
    for loss in monitored[:epochs]:
        rates.append(rate)
        if loss < best * (1 - schedule.threshold):
            best, bad = loss, 0
        else:
            bad += 1
        if cool > 0:
            cool, bad = cool - 1, 0
        if bad > schedule.patience:
            new = max(rate * schedule.factor, schedule.min_lr)
            if rate - new > schedule.eps:
                rate = new
            cool, bad = schedule.cooldown, 0
    return np.array(rates)


SCHEDULES = {
    "step": lambda: S.StepLR(7, gamma=0.5),
    "exponential": lambda: S.ExponentialLR(0.93),
    "cosine": lambda: S.CosineLR(25, eta_min=0.01),
    "cosine0": lambda: S.CosineLR(EPOCHS),
    "plateau": lambda: S.ReduceLROnPlateau(
        factor=0.5, patience=2, threshold=0.01, cooldown=1, min_lr=0.01
    ),
}


def monitored(hist):
    return hist["val_loss"] if "val_loss" in hist else hist["loss"]


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_rates_match_numpy(backend, name):
    schedule = SCHEDULES[name]()
    net, hist = run(backend, schedule)
    expected = numpy_rates(schedule, 0.1, EPOCHS, monitored(hist))
    np.testing.assert_allclose(hist["lr"], expected, rtol=1e-14, atol=0)
    if name == "plateau":
        assert len(set(hist["lr"])) >= 3, "the test should see reductions"
        assert hist["lr"][-1] == pytest.approx(0.01, rel=1e-12)  # down to min_lr


def test_plateau_monitors_the_validation_loss(backend):
    X, y = data()
    Xv, yv = X[:16] + 0.3, y[:16]
    schedule = S.ReduceLROnPlateau(factor=0.5, patience=1, threshold=0.0)
    net = make(backend)
    hist = net.fit(
        X,
        y,
        epochs=30,
        batch_size=16,
        optimizer=optim.Adam(0.05),
        validation_data=(Xv, yv),
        schedule=schedule,
    )
    np.testing.assert_allclose(
        hist["lr"], numpy_rates(schedule, 0.05, 30, hist["val_loss"]), rtol=1e-14
    )
    assert len(set(hist["lr"])) >= 2
    train = numpy_rates(
        S.ReduceLROnPlateau(factor=0.5, patience=1, threshold=0.0), 0.05, 30, hist["loss"]
    )
    assert not np.array_equal(train, hist["lr"])  # it is not the training loss


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_rates_match_torch(backend, name):
    torch = pytest.importorskip("torch")
    schedule = SCHEDULES[name]()
    net, hist = run(backend, schedule)
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=0.1)
    if name == "step":
        sch = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5)
    elif name == "exponential":
        sch = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.93)
    elif name.startswith("cosine"):
        sch = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=schedule.T_max, eta_min=schedule.eta_min
        )
    else:
        sch = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt,
            mode="min",
            factor=0.5,
            patience=2,
            threshold=0.01,
            threshold_mode="rel",
            cooldown=1,
            min_lr=0.01,
            eps=1e-8,
        )
    rates = []
    for e in range(EPOCHS):
        rates.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        if name == "plateau":
            sch.step(float(monitored(hist)[e]))
        else:
            sch.step()
    n = EPOCHS if not name.startswith("cosine") else schedule.T_max + 1  # torch's rises after
    np.testing.assert_allclose(hist["lr"][:n], rates[:n], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_native_equals_twin(native_core, name):
    runs = {
        b: run(b, SCHEDULES[name](), opt=optim.Adam(0.02, decay=0.001)) for b in ("native", "numpy")
    }
    (a, ha), (b, hb) = runs["native"], runs["numpy"]
    np.testing.assert_allclose(a.parameters, b.parameters, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-9)
    np.testing.assert_array_equal(ha["lr"], hb["lr"])  # the rates exactly


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_two_fits_equal_one(backend, name):
    """Epochs are numbered by epochs_trained and the plateau state carries
    over: fit(15) then fit(25) with the same schedule is fit(40)."""
    one, h1 = run(backend, SCHEDULES[name](), opt=optim.Adam(0.02))
    schedule = SCHEDULES[name]()
    X, y = data()
    two = make(backend)
    two.optimizer = optim.Adam(0.02)
    first = two.fit(X, y, epochs=15, batch_size=16, shuffle=True, schedule=schedule)
    second = two.fit(X, y, epochs=25, batch_size=16, shuffle=True, schedule=schedule)
    np.testing.assert_array_equal(np.concatenate([first["lr"], second["lr"]]), h1["lr"])
    np.testing.assert_array_equal(two.parameters, one.parameters)


@pytest.mark.parametrize("opt", ["sgd", "sgd_decay", "adam_decay"])
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_the_rate_is_the_steps_rate(backend, name, opt):
    """A scheduled run equals one-epoch fits with the optimizer's lr set to
    each epoch's rate; decay applies on top, step by step."""
    make_opt = {
        "sgd": lambda: optim.SGD(0.1),
        "sgd_decay": lambda: optim.SGD(0.1, decay=0.01),
        "adam_decay": lambda: optim.Adam(0.02, decay=0.01),
    }[opt]
    net, hist = run(backend, SCHEDULES[name](), epochs=20, opt=make_opt())
    X, y = data()
    ref = make(backend)
    ref.optimizer = o = make_opt()
    for rate in hist["lr"]:
        o.lr = rate
        ref.fit(X, y, epochs=1, batch_size=16, shuffle=True)
    np.testing.assert_array_equal(ref.parameters, net.parameters)
    assert o.iterations == net.optimizer.iterations == 20 * 4


def test_the_rate_with_fit_lr(backend):
    """fit(lr=...) is the base rate of the schedule too."""
    X, y = data()
    net = make(backend)
    hist = net.fit(X, y, epochs=10, lr=0.05, schedule=S.ExponentialLR(0.5))
    np.testing.assert_allclose(hist["lr"], 0.05 * 0.5 ** np.arange(10), rtol=1e-15)


@pytest.mark.parametrize("name", ["step", "cosine", "plateau"])
def test_a_callback_lr_composes_with_the_schedule(backend, name):
    """A callback that sets opt.lr changes the base rate from the next epoch;
    the schedule goes on from it."""
    schedule = SCHEDULES[name]()
    X, y = data()
    net = make(backend)
    opt = optim.SGD(0.1)

    def callback(epoch, logs):
        assert logs["lr"] > 0
        if epoch == 12:
            opt.lr = 0.04

    hist = net.fit(
        X,
        y,
        epochs=30,
        batch_size=16,
        shuffle=True,
        optimizer=opt,
        schedule=schedule,
        callback=callback,
        callback_every=6,
    )
    if name == "plateau":  # the reductions so far, times the new base
        state, mon = SCHEDULES["plateau"](), hist["loss"]
        rates, rate, best, bad, cool = [], 0.1, np.inf, 0, 0
        for e in range(30):
            if e == 12:
                rate = rate / 0.1 * 0.04
            rates.append(rate)
            if mon[e] < best * (1 - state.threshold):
                best, bad = mon[e], 0
            else:
                bad += 1
            if cool > 0:
                cool, bad = cool - 1, 0
            if bad > state.patience:
                new = max(rate * state.factor, state.min_lr)
                if rate - new > state.eps:
                    rate = new
                cool, bad = state.cooldown, 0
        expected = np.array(rates)
    else:
        expected = np.concatenate(
            [numpy_rates(schedule, 0.1, 30)[:12], numpy_rates(schedule, 0.04, 30)[12:]]
        )
    np.testing.assert_allclose(hist["lr"], expected, rtol=1e-13)
    assert hist["lr"][12] != hist["lr"][11]


def test_plateau_state_after_a_divergence(backend):
    """The diverging epoch is rolled back, and the plateau state describes
    the epochs completed before it."""
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(20, 3)), rng.normal(size=(20, 1))

    def net_():
        return cbp.Network([cbp.Dense(3, 1, "identity", seed=4)], backend=backend)

    def sched():  # the rate stays above the divergence threshold
        return S.ReduceLROnPlateau(factor=0.5, patience=0, min_lr=2.9)

    schedule = sched()
    net = net_()
    with pytest.raises(cbp.DivergenceError) as err:
        net.fit(X, y, epochs=500, lr=3.0, schedule=schedule)
    done = err.value.epoch - 1
    assert done > 3
    ref_sched = sched()
    ref = net_()
    hist = ref.fit(X, y, epochs=done, lr=3.0, schedule=ref_sched)
    assert (schedule.scale, schedule.best, schedule.num_bad_epochs, schedule.cooldown_counter) == (
        ref_sched.scale,
        ref_sched.best,
        ref_sched.num_bad_epochs,
        ref_sched.cooldown_counter,
    )
    assert schedule.scale == pytest.approx(2.9 / 3.0, rel=1e-15)
    np.testing.assert_array_equal(net.parameters, ref.parameters)
    np.testing.assert_array_equal(err.value.history["lr"], hist["lr"])


def test_history_and_logs(backend):
    X, y = data()
    net = make(backend)
    assert "lr" not in net.fit(X, y, epochs=2, lr=0.1)
    seen = []
    hist = net.fit(
        X,
        y,
        epochs=6,
        lr=0.1,
        schedule=S.StepLR(1, 0.5),
        history_every=2,
        callback=lambda e, logs: seen.append(logs["lr"]),
        callback_every=3,
    )
    np.testing.assert_allclose(hist["lr"], 0.1 * 0.5 ** np.array([3.0, 5.0, 7.0]), rtol=1e-15)
    np.testing.assert_allclose(seen, 0.1 * 0.5 ** np.array([4.0, 7.0]), rtol=1e-15)


def test_settings_are_checked():
    for bad, exc in (
        (lambda: S.StepLR(0), ValueError),
        (lambda: S.StepLR(2.5), TypeError),
        (lambda: S.StepLR(2, gamma=0), ValueError),
        (lambda: S.ExponentialLR(-1), ValueError),
        (lambda: S.CosineLR(0), ValueError),
        (lambda: S.CosineLR(5, eta_min=-1), ValueError),
        (lambda: S.ReduceLROnPlateau(factor=1.0), ValueError),
        (lambda: S.ReduceLROnPlateau(patience=-1), ValueError),
        (lambda: S.ReduceLROnPlateau(threshold=math.nan), ValueError),
        (lambda: S.ReduceLROnPlateau(min_lr=math.inf), ValueError),
    ):
        with pytest.raises(exc):
            bad()
    s = S.StepLR(3)
    with pytest.raises(ValueError):
        s.gamma = 0.0
    assert s.gamma == 0.1
    assert repr(s) == "StepLR(step_size=3, gamma=0.1)"
    net = make("numpy")
    with pytest.raises(TypeError, match="schedule must be"):
        net.fit(*data(), epochs=1, lr=0.1, schedule="step")


@pytest.mark.parametrize(
    "column, value",
    [
        (_codes.SCHEDULE_KIND, 9.0),
        (_codes.SCHEDULE_GAMMA, math.nan),
        (_codes.SCHEDULE_STEP_SIZE, 0.0),
        (_codes.SCHEDULE_STEP_SIZE, 1.5),
    ],
)
def test_engine_checks_the_vector(backend, column, value):
    """A bad schedule vector is a ValueError from both engines, before any epoch."""
    X, y = data()
    net = make(backend)
    vec = S.StepLR(2)._vector()
    vec[column] = value
    before = net.parameters.copy()
    h = np.zeros(_codes.N_OPTIMIZER_HYPER)
    h[_codes.HYPER_LEARNING_RATE] = 0.1
    with pytest.raises(ValueError, match="schedule"):
        net._engine.fit(
            X,
            y,
            None,
            None,
            _codes.OPT_SGD,
            h,
            np.empty(0),
            0.0,
            0,
            2,
            64,
            False,
            0,
            np.zeros(_codes.N_EARLY_STOP),
            np.empty(net.parameters.size),
            np.empty((2, _codes.N_HISTORY)),
            np.zeros(2, dtype=np.int64),
            0.0,
            vec,
        )
    np.testing.assert_array_equal(net.parameters, before)
