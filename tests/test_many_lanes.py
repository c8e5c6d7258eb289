"""fit_many's lane run (src/_fm_lanes_body.h, src/_simd_lanes.h,
``cbp._core._fm_lanes``): networks trained together, one a SIMD lane, each
with its own fit's numbers bit for bit (parameters, history, counters), on
every SIMD table this build and CPU run and at every lane width; the run
taken where it is meant to be and only there; a lane that diverges, an
interrupt in the run and in the commits after it, a second thread on one
of the networks, and bad arguments to the native entry point.  The shapes
the run keeps in registers (cbp_fm_lanes_reg), a group of lanes or two at
once, against the same run on its buffers and against their own fits.
"""

import _thread
import os
import threading

import numpy as np
import pytest

import cbp
from cbp import many


@pytest.fixture
def core(native_core):
    """The compiled module; the SIMD table, the whole-epoch run and the
    lane width restored after."""
    saved = (
        native_core._simd(),
        native_core._fm_epochs_path(True),
        native_core._fm_lanes_width(),
        native_core._fm_lanes_reg(),
    )
    yield native_core
    native_core._simd(saved[0])
    native_core._fm_epochs_path(saved[1])
    native_core._fm_lanes_width(saved[2] == 8)
    native_core._fm_lanes_reg(saved[3])


def tables(core):
    """(table, wide) pairs this build and CPU run: the baseline, AVX2+FMA
    at its own 4 lanes and, where the CPU has AVX-512, at 8, and the
    AVX-512 table (whose fits are AVX2's) at 4 and 8."""
    out = []
    for name in ("baseline", "avx2+fma", "avx512"):
        try:
            core._simd(name)
        except (ValueError, RuntimeError):
            continue
        core._fm_lanes_width(False)
        narrow = core._fm_lanes_width()
        wide = core._fm_lanes_width(True)
        if narrow:
            out.append((name, False))
        if wide != narrow and os.environ.get("CBP_LANES") != "narrow":
            out.append((name, True))
    assert out, "no lane run on this build"
    return out


def data(n_in, n, seed=0):
    rng = np.random.default_rng([seed, n_in, n])
    X = rng.standard_normal((n, n_in))
    return X, np.tanh(X.sum(axis=1)) * 0.5 + 0.5


def make(widths, acts, seed, bias=True, loss="squared_error", reduction="mean", cls=cbp.Network):
    layers = [
        cbp.Dense(
            widths[i],
            widths[i + 1],
            a,
            seed=1000 * seed + i,
            use_bias=bias is True or (bias == "alternate" and i % 2 == 1),
        )
        for i, a in enumerate(acts)
    ]
    return cls(layers, loss=loss, reduction=reduction)


def same_history(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], (list, np.ndarray)):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k], k


def check(core, table, wide, widths, acts, count, n, epochs=120, lrs=None, xy=None, **kw):
    """fit_many on the lanes of (table, wide) equals every network's own
    fit on that table, exactly (on data(), or xy = (X, y) of n rows);
    returns the networks."""
    core._simd(table)
    core._fm_lanes_width(wide)
    X, y = data(widths[0], n) if xy is None else xy
    lrs = lrs if lrs is not None else [0.05 + 0.1 * i for i in range(count)]
    opts = {k: kw.pop(k) for k in ("bias", "loss", "reduction") if k in kw}
    nets = [make(widths, acts, i, **opts) for i in range(count)]
    refs = [make(widths, acts, i, **opts) for i in range(count)]
    before = many._paths["lanes"]
    try:
        out = cbp.fit_many(nets, X, y, epochs=epochs, lr=lrs, **kw)
        diverged = None
    except cbp.DivergenceError as err:
        out, diverged = err.histories, err.diverged
    assert many._paths["lanes"] == before + 1, "the lane run did not take these fits"
    own_diverged = []
    for i, (net, ref) in enumerate(zip(nets, refs)):
        try:
            expected = ref.fit(X, y, epochs=epochs, lr=lrs[i], **kw)
        except cbp.DivergenceError as err:
            expected = err.history
            own_diverged.append(i)
        same_history(out[i], expected)
        np.testing.assert_array_equal(net.parameters, ref.parameters)
        np.testing.assert_array_equal(net.gradients, ref.gradients)
        assert net.epochs_trained == ref.epochs_trained
        assert not net._guard.held
    assert (diverged or []) == own_diverged
    return nets


SHAPES = {
    "xor-no-bias": ([2, 4, 1], ["sigmoid", "sigmoid"], {"bias": False}),
    "relu-sigmoid": ([2, 2, 1], ["relu", "sigmoid"], {}),
    "4-3-1": ([4, 3, 1], ["sigmoid", "sigmoid"], {}),
    "identity-out": ([1, 4, 1], ["relu", "identity"], {"loss": "half_squared_error"}),
    "three-layers": ([3, 3, 2, 1], ["sigmoid", "relu", "sigmoid"], {"bias": "alternate"}),
    "relu-out-sum": ([2, 3, 1], ["sigmoid", "relu"], {"reduction": "sum"}),
}


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request, core):
    """The thread limit fit_many spreads lane groups under."""
    if request.param > 1:
        request.getfixturevalue("openmp_core")
    saved = core._thread_config(request.param)
    yield request.param
    core._thread_config(*saved)


@pytest.mark.parametrize("n", [3, 4, 7])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_lane_is_its_own_fit(core, shape, n, threads):
    widths, acts, kw = SHAPES[shape]
    for table, wide in tables(core):
        for count in (2, 5, 9, 17):
            check(core, table, wide, widths, acts, count, n, **kw)
            groups = -(-count // core._fm_lanes_width())
            assert many._lane_threads == min(threads, groups)


def test_a_long_run_stays_exact(core, threads):
    """Many epochs in several stretches between the clock's readings."""
    for table, wide in tables(core):
        check(core, table, wide, [2, 4, 1], ["sigmoid", "sigmoid"], 9, 4, epochs=20000)


def test_lanes_that_diverge_and_the_others(core, threads):
    """Lanes stop at different epochs, some on the loss and some on the
    update; each is left as its own fit leaves it and reports the same."""
    # 1e200: epoch 0's update is finite, epoch 1's loss is not; 1e308:
    # epoch 0's loss is finite, its update is not
    lrs = [0.01, 40.0, 0.2, 400.0, 0.05, 4000.0, 0.1, 1e12, 0.3, 1e200, 1e308]
    for table, wide in tables(core):
        nets = check(
            core, table, wide, [2, 4, 1], ["relu", "identity"], len(lrs), 5, epochs=300, lrs=lrs
        )
        assert {i for i, net in enumerate(nets) if net.epochs_trained < 300} >= {1, 3, 5, 7}
        assert (nets[9].epochs_trained, nets[10].epochs_trained) == (1, 0)
    # nothing computed ahead is left for a later fit
    X, y = data(2, 5)
    net, ref = nets[0], make([2, 4, 1], ["relu", "identity"], 0)
    ref.fit(X, y, epochs=300, lr=0.01)
    net.fit(X, y, epochs=3, lr=0.01)
    ref.fit(X, y, epochs=3, lr=0.01)
    np.testing.assert_array_equal(net.parameters, ref.parameters)


def test_where_the_lane_run_does_not_apply(core):
    X, y = data(2, 6)
    cases = [
        dict(lr=0.1, batch_size=2),
        dict(lr=0.1, shuffle=True),
        dict(optimizer="sgd"),
        dict(lr=0.1, validation_data=(X, y)),
        dict(lr=0.1, callback=lambda e, logs: None),
    ]
    for kw in cases:
        before = dict(many._paths)
        nets = [make([2, 4, 1], ["sigmoid", "sigmoid"], i) for i in range(3)]
        cbp.fit_many(nets, X, y, epochs=5, **kw)
        assert many._paths["lanes"] == before["lanes"], kw
    # a network the whole-epoch run does not take, and the run switched off
    for nets, target in (
        ([make([2, 4, 1], ["tanh", "sigmoid"], i) for i in range(3)], y),
        ([make([2, 4, 2], ["sigmoid", "sigmoid"], i) for i in range(3)], np.c_[y, y]),
    ):
        before = many._paths["lanes"]
        cbp.fit_many(nets, X, target, epochs=5, lr=0.1)
        assert many._paths["lanes"] == before
    core._fm_epochs_path(False)
    before = many._paths["lanes"]
    cbp.fit_many([make([2, 4, 1], ["sigmoid", "sigmoid"], i) for i in range(3)], X, y, lr=0.1)
    assert many._paths["lanes"] == before


def test_an_interrupt_in_the_run(core, threads):
    """Ctrl-C in the native run: every network commits the epochs it
    completed (a group in the middle of its run, the groups after it none),
    each equal to its own fit of that many epochs; the interrupt is raised.
    (Later delays for a slow build, e.g. under ASan, where the first can
    land before the run starts: every attempt is checked.)"""
    X, y = data(2, 4)
    for delay in (0.3, 1.0, 3.0):
        nets = [make([2, 4, 1], ["sigmoid", "sigmoid"], i) for i in range(20)]
        timer = threading.Timer(delay, _thread.interrupt_main)
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                cbp.fit_many(nets, X, y, epochs=10**8, lr=0.1)
        finally:
            timer.cancel()
        counts = [net.epochs_trained for net in nets]
        assert max(counts) < 10**8
        for i, net in enumerate(nets):
            assert not net._guard.held
            assert net._engine._take_epochs() == 0  # nothing left computed ahead
            ref = make([2, 4, 1], ["sigmoid", "sigmoid"], i)
            if counts[i]:
                ref.fit(X, y, epochs=counts[i], lr=0.1)
            np.testing.assert_array_equal(net.parameters, ref.parameters)
        if counts[0]:
            break
    assert counts[0] > 0, "no attempt interrupted the lane run itself"


@pytest.mark.parametrize("every", [1, 2])
def test_an_interrupt_in_the_commits(core, every, threads):
    """Ctrl-C while the networks commit what the run computed (history_every
    1: the lane path's own commit; 2: each network's fit): the network it
    lands in and every one after it still commit all of it."""
    X, y = data(2, 4)
    hits = []

    class Flaky(cbp.Network):
        """A network whose history, once, takes a Ctrl-C as it is set."""

        @property
        def _history(self):
            return self.__dict__["_history"]

        @_history.setter
        def _history(self, value):
            self.__dict__["_history"] = value
            if getattr(self, "flaky", False) and not hits:
                hits.append(1)
                raise KeyboardInterrupt

    def make_flaky(i):
        net = make([2, 4, 1], ["sigmoid", "sigmoid"], i, cls=Flaky)
        net.flaky = i == 2
        return net

    nets = [make_flaky(i) for i in range(6)]
    with pytest.raises(KeyboardInterrupt):
        cbp.fit_many(nets, X, y, epochs=500, lr=0.3, history_every=every)
    assert hits
    for i, net in enumerate(nets):
        ref = make([2, 4, 1], ["sigmoid", "sigmoid"], i)
        expected = ref.fit(X, y, epochs=500, lr=0.3, history_every=every)
        assert net.epochs_trained == 500
        np.testing.assert_array_equal(net.parameters, ref.parameters)
        same_history(net.history, expected)
        assert not net._guard.held


def test_another_thread_on_one_of_the_networks(core, threads):
    """While the lane run trains, a fit of one of its networks from another
    thread is refused, and the run's results are untouched by it."""
    X, y = data(2, 4)
    nets = [make([2, 4, 1], ["sigmoid", "sigmoid"], i) for i in range(12)]
    errors, started = [], threading.Event()

    def other():
        started.wait(5)
        for _ in range(200):
            try:
                nets[5].fit(X, y, epochs=1, lr=0.1)
            except RuntimeError as exc:
                errors.append(exc)
                return

    t = threading.Thread(target=other)
    t.start()
    started.set()
    cbp.fit_many(nets, X, y, epochs=200000, lr=0.2)
    t.join(10)
    assert not t.is_alive()
    assert errors and "in use" in str(errors[0])
    ref = make([2, 4, 1], ["sigmoid", "sigmoid"], 5)
    ref.fit(X, y, epochs=200000, lr=0.2)
    np.testing.assert_array_equal(nets[5].parameters, ref.parameters)


def test_the_native_entry_point_checks_its_arguments(core):
    X, y = data(2, 4)
    Y = y[:, None].copy()
    nets = [make([2, 4, 1], ["sigmoid", "sigmoid"], i) for i in range(3)]
    engines = [net._engine for net in nets]
    losses, done, lrs = np.empty((3, 10)), np.zeros(3, dtype=np.intp), np.full(3, 0.1)
    with pytest.raises(ValueError, match="a row per engine"):
        core._fm_lanes(engines, X, Y, 10, lrs, np.empty((2, 10)), done)
    with pytest.raises(ValueError, match="a row per engine"):
        core._fm_lanes(engines, X, Y, 11, lrs, losses, done)
    with pytest.raises(ValueError, match="finite and > 0"):
        core._fm_lanes(engines, X, Y, 10, np.array([0.1, np.nan, 0.1]), losses, done)
    with pytest.raises(ValueError, match="do not fit the network"):
        core._fm_lanes(engines, np.c_[X, X], Y, 10, lrs, losses, done)
    other = make([2, 3, 1], ["sigmoid", "sigmoid"], 9)._engine
    with pytest.raises(ValueError, match="differ in their architecture"):
        core._fm_lanes(engines[:2] + [other], X, Y, 10, lrs, losses, done)
    before = [net.parameters.copy() for net in nets]
    for net, p in zip(nets, before):  # nothing trained by a refused call
        np.testing.assert_array_equal(net.parameters, p)


# ---------------------------------------------------------------- registers --
# The two-layer shapes the lane run keeps in registers (src/_simd.h,
# cbp_fm_lanes_reg_shape): 2-H-1 on at most 4 rows, H 2, 4 or 8, a ReLU or
# sigmoid hidden layer, a sigmoid output (squared error) or an identity one
# (half squared error), biased everywhere or nowhere.  Mode 2 (the default)
# runs two groups of lanes a call, interleaved, where the table has the
# pair run (its AVX2 and AVX-512 lanes); 1 a group at a time; 0 the run on
# its buffers.  Every mode gives each lane its own fit's numbers, bit for bit.
REG_SHAPES = {
    f"2-{h}-1-{act}-{out}-{'bias' if bias else 'nobias'}": (
        [2, h, 1],
        [act, out],
        {"bias": bias, "loss": "squared_error" if out == "sigmoid" else "half_squared_error"},
    )
    for h in (2, 4, 8)
    for act in ("sigmoid", "relu")
    for out in ("sigmoid", "identity")
    for bias in (True, False)
}


@pytest.fixture
def one_thread(core):
    """One thread: every group of lanes on the calling thread (at two, the
    groups of a few networks would be split over the threads, no pair left)."""
    saved = core._thread_config(1)
    yield
    core._thread_config(*saved)


def reg_calls(core):
    """The register run's calls so far, a group at a time and in pairs, and
    the epochs it handed to the run on its buffers for libm's exp."""
    return core._fm_lanes_reg_calls()


@pytest.mark.parametrize("n", [3, 4])
@pytest.mark.parametrize("shape", list(REG_SHAPES))
def test_the_register_run_is_every_lane_its_own_fit(core, shape, n, one_thread, request):
    widths, acts, kw = REG_SHAPES[shape]
    if widths[1] > 4:  # (fit takes 8 units feature-major only with its limits raised)
        request.getfixturevalue("feature_major")
    for table, wide in tables(core):
        for mode in (0, 1, 2):
            core._fm_lanes_reg(mode)
            for count in (9, 17):
                before = reg_calls(core)
                check(core, table, wide, widths, acts, count, n, epochs=60, **kw)
                after = reg_calls(core)
                if table == "baseline" or mode == 0:  # (no register run on the baseline)
                    assert after == before, (table, mode)
                elif mode == 1:
                    assert after[0] > before[0] and after[1] == before[1], (table, mode)
                else:  # a pair for the first 16 (or the 9), a group for the 17th
                    assert after[1] > before[1], (table, mode)


def test_the_register_run_takes_only_its_shapes(core, one_thread):
    """Shapes next to the register run's go to the run on its buffers."""
    X, y = data(2, 4)
    cases = [
        ([2, 4, 1], ["sigmoid", "sigmoid"], {"bias": "alternate"}),  # one layer biased
        ([2, 3, 1], ["sigmoid", "sigmoid"], {}),  # H 3
        ([1, 4, 1], ["sigmoid", "sigmoid"], {}),  # one input
        ([2, 4, 1], ["sigmoid", "relu"], {}),  # a ReLU output
    ]
    for widths, acts, kw in cases:
        nets = [make(widths, acts, i, **kw) for i in range(9)]
        before, lanes = reg_calls(core), many._paths["lanes"]
        cbp.fit_many(nets, X[:, : widths[0]], y, epochs=5, lr=0.1)
        assert many._paths["lanes"] == lanes + 1, (widths, acts, kw)
        assert reg_calls(core) == before, (widths, acts, kw)
    X5, y5 = data(2, 5)  # five rows: two vectors of them
    before = reg_calls(core)
    cbp.fit_many([make([2, 4, 1], ["sigmoid", "sigmoid"], i) for i in range(9)], X5, y5, lr=0.1)
    assert reg_calls(core) == before
    with pytest.raises(ValueError, match="0, 1 or 2"):
        core._fm_lanes_reg(3)


@pytest.mark.parametrize("act", ["sigmoid", "relu"])
def test_the_register_run_hands_epochs_past_exps_range_to_libm(core, act, one_thread):
    """Inputs in the hundreds push some lanes' sigmoids past exp's range in
    some epochs: those epochs go to the run on its buffers, which takes
    libm for them, and the run goes on in registers after."""
    rng = np.random.default_rng(7)
    xy = (rng.uniform(-1, 1, (4, 2)) * 900.0, np.array([0.0, 1.0, 1.0, 0.0]))
    lrs = [0.01 * (i + 1) for i in range(17)]
    for table, wide in tables(core):
        if table == "baseline":
            continue
        for mode in (1, 2):
            core._fm_lanes_reg(mode)
            before = reg_calls(core)
            check(core, table, wide, [2, 4, 1], [act, "sigmoid"], 17, 4, epochs=40, lrs=lrs, xy=xy)
            after = reg_calls(core)
            assert after[mode - 1] > before[mode - 1] and after[2] > before[2], (table, mode)


def test_the_register_run_with_lanes_that_diverge(core, one_thread):
    """Lanes of both groups of a pair stop, on the loss and on the update,
    at different epochs; each is left as its own fit leaves it."""
    lrs = [0.01, 40.0, 0.2, 400.0, 0.05, 4000.0, 0.1, 1e12, 0.3, 1e200, 1e308] * 2
    for table, wide in tables(core):
        for mode in (1, 2):
            core._fm_lanes_reg(mode)
            nets = check(
                core, table, wide, [2, 4, 1], ["relu", "identity"], len(lrs), 4, epochs=300,
                lrs=lrs, loss="half_squared_error",
            )  # fmt: skip
            counts = [net.epochs_trained for net in nets]
            stopped = {i for i, k in enumerate(counts) if k < 300}
            assert stopped >= {1, 3, 5, 7, 9, 10, 12, 14, 16, 18, 20, 21}  # in both groups
            assert len(set(counts)) >= 3
