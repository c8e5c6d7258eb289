"""Threads when the cores are shared: the OpenMP wait policy cbp sets up
(``cbp._backend``) and the back-off of ``src/_threads.h``.

* Importing the core puts ``OMP_WAIT_POLICY=PASSIVE`` in the environment
  while the OpenMP runtime loads, unless the user set a wait policy, and
  takes it out again; the runtime's own report (``OMP_DISPLAY_ENV``, in a
  fresh interpreter) says which policy is in force.
* The back-off is driven through its private hooks with made-up times, so
  that no test depends on how fast anything ran.
* Training beside a busy process and in a pool of spawned processes gives
  the same bits as the same thread limit's chunks run on one thread.

Without OpenMP in the build these tests are skipped (CBP_REQUIRE_OPENMP=1
makes that a failure).
"""

import multiprocessing as mp
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import cbp

MS = 1_000_000  # ns
POLICY_VARS = cbp._backend.WAIT_POLICY_VARS


@pytest.fixture
def core(openmp_core):
    """The compiled module, built with OpenMP (see conftest.py)."""
    return openmp_core


@pytest.fixture
def backoff(core):
    """The back-off at its start, on; put back as it was afterwards."""
    saved = core._thread_backoff(reset=True, on=True)["on"]
    yield core
    core._thread_backoff(reset=True, on=saved)


# ---------------------------------------------------------------------------
# the wait policy
# ---------------------------------------------------------------------------
def _import_in_child(**env):
    """Import cbp in a fresh interpreter with OMP_DISPLAY_ENV=VERBOSE and the
    given variables (None: unset); (what cbp set, the policy variables left
    in the environment after the import, the runtime's report)."""
    full = {k: v for k, v in os.environ.items() if k not in POLICY_VARS}
    full.update(OMP_DISPLAY_ENV="VERBOSE", CBP_NO_EXTENSIONS="")
    full.update({k: v for k, v in env.items() if v is not None})
    code = (
        "import os, cbp\n"
        "assert cbp.native_available()\n"
        "print(cbp._backend.wait_policy_set)\n"
        f"print({{k: os.environ[k] for k in {POLICY_VARS!r} if k in os.environ}})\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    set_here, left = out.stdout.strip().splitlines()[-2:]
    return eval(set_here), eval(left), out.stderr


def _reported(report, name):
    m = re.search(rf"\b{name}\s*=\s*'([^']*)'", report)
    assert m, f"{name} is not in the OpenMP runtime's report:\n{report}"
    return m.group(1)


def test_passive_policy_when_the_user_set_none(core):
    set_here, left, report = _import_in_child()
    assert set_here == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert left == {}  # taken out of the environment again
    assert _reported(report, "OMP_WAIT_POLICY") == "PASSIVE"
    if "GOMP_SPINCOUNT" in report:  # libgomp (which says PASSIVE when unset too)
        assert _reported(report, "GOMP_SPINCOUNT") == "0"  # no spinning at all


@pytest.mark.parametrize(
    "name, value, policy, spincount",
    [
        ("OMP_WAIT_POLICY", "ACTIVE", "ACTIVE", "30000000000"),
        ("OMP_WAIT_POLICY", "passive", "PASSIVE", "0"),
        ("GOMP_SPINCOUNT", "12345", None, "12345"),
        ("KMP_BLOCKTIME", "7", None, "300000"),  # (libgomp ignores it: its default)
    ],
)
def test_a_users_wait_policy_is_kept(core, name, value, policy, spincount):
    set_here, left, report = _import_in_child(**{name: value})
    assert set_here == {}
    assert left == {name: value}
    if policy is not None:
        assert _reported(report, "OMP_WAIT_POLICY") == policy
    if "GOMP_SPINCOUNT" in report:  # libgomp
        assert _reported(report, "GOMP_SPINCOUNT") == spincount


def test_the_import_restores_the_environment_when_it_fails(monkeypatch):
    """An import that fails still takes the policy out of the environment."""
    for name in POLICY_VARS:
        monkeypatch.delenv(name, raising=False)
    import builtins

    real = builtins.__import__

    def failing(name, globals=None, locals=None, fromlist=(), level=0):
        if fromlist and "_core" in fromlist:
            assert os.environ.get("OMP_WAIT_POLICY") == "PASSIVE"  # set while it loads
            raise ImportError("no core here")
        return real(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", failing)
    with pytest.raises(ImportError, match="no core here"):
        cbp._backend._import_core()
    assert not any(name in os.environ for name in POLICY_VARS)


# ---------------------------------------------------------------------------
# the back-off (src/_threads.h), with made-up times
# ---------------------------------------------------------------------------
def test_a_won_step_does_not_pause(backoff):
    assert backoff._thread_report(10 * MS, 20 * MS, 1000 * MS) is False
    state = backoff._thread_backoff()
    assert (state["won"], state["lost"], state["pause"]) == (1, 0, 4 * MS)
    assert not backoff._thread_paused(1000 * MS)


def test_a_lost_step_pauses_and_the_pause_doubles_up_to_a_second(backoff):
    t = 1000 * MS
    pauses = [4, 8, 16, 32, 64, 128, 256, 512, 1000, 1000]
    for i, pause in enumerate(pauses):
        assert backoff._thread_report(21 * MS, 20 * MS, t) is True  # slower than alone
        assert backoff._thread_paused(t)
        assert backoff._thread_paused(t + pause * MS - 1)
        assert not backoff._thread_paused(t + pause * MS)
        state = backoff._thread_backoff()
        assert state["until"] == t + pause * MS
        assert state["lost"] == i + 1
        t += pause * MS
    assert state["pause"] == 1000 * MS


def test_a_step_over_twice_as_slow_as_alone_pauses_for_256_ms_at_least(backoff):
    """A team step that took more than twice the caller's time alone had a
    helper that did not run (oversubscribed cores): the pause starts at 256
    ms, and doubles from there; a step exactly twice as slow is an ordinary
    loss."""
    t = 1000 * MS
    assert backoff._thread_report(41 * MS, 20 * MS, t) is True
    assert backoff._thread_backoff()["until"] == t + 256 * MS
    assert backoff._thread_paused(t + 256 * MS - 1)
    assert not backoff._thread_paused(t + 256 * MS)
    t += 256 * MS
    assert backoff._thread_report(21 * MS, 20 * MS, t) is True  # an ordinary loss now
    assert backoff._thread_backoff()["until"] == t + 512 * MS
    backoff._thread_backoff(reset=True)
    assert backoff._thread_report(40 * MS, 20 * MS, t) is True
    assert backoff._thread_backoff()["until"] == t + 4 * MS


def test_won_steps_halve_the_pause_down_to_its_minimum(backoff):
    t = 1000 * MS
    for _ in range(5):  # pauses of 4, 8, 16, 32, 64 ms: the next is 128
        backoff._thread_report(2, 1, t)
        t += 64 * MS
    assert backoff._thread_backoff()["pause"] == 128 * MS
    for pause in (64, 32, 16, 8, 4, 4):
        assert backoff._thread_report(1, 1, t) is False  # as fast as alone: won
        assert backoff._thread_backoff()["pause"] == pause * MS
    assert backoff._thread_report(2, 1, t) is True
    assert backoff._thread_backoff()["until"] == t + 4 * MS


def test_the_back_off_can_be_switched_off(backoff):
    backoff._thread_report(2, 1, 1000 * MS)
    assert backoff._thread_paused(1000 * MS)
    assert backoff._thread_backoff(on=False)["on"] is True
    assert not backoff._thread_paused(1000 * MS)
    assert backoff._thread_backoff(on=True)["on"] is False
    assert backoff._thread_paused(1000 * MS)
    assert backoff._thread_backoff(reset=True)["lost"] == 1
    assert backoff._thread_backoff() == {
        "until": 0,
        "pause": 4 * MS,
        "won": 0,
        "lost": 0,
        "on": True,
    }


@pytest.fixture(autouse=True)
def _general_passes():
    """The spiral fits below on the general passes, whose steps run in
    chunks on a team of threads (the blocked whole-epoch run, which would
    take them, runs on one)."""
    if not cbp.native_available():
        yield
        return
    core = cbp._backend._core
    saved = core._blk_epochs_path(False)
    yield
    core._blk_epochs_path(saved)


def _spiral_net():
    return cbp.Network(
        [cbp.Dense(2, 64, "relu", seed=0), cbp.Dense(64, 3, "softmax", seed=1)],
        loss="categorical_crossentropy",
    )


SPIRAL = cbp.datasets.spiral_data(100, 3)


def _alone(core, limit, epochs):
    """A spiral fit at the given thread limit with its chunks on the calling
    thread only (the budget taken, as by another training)."""
    saved = core._thread_config(limit)
    core._thread_enter()
    try:
        net = _spiral_net()
        net.fit(*SPIRAL, epochs=epochs, lr=0.1)
        assert net._engine.threads_used == 1
    finally:
        core._thread_leave()
        core._thread_config(*saved)
    return net.parameters


def test_every_team_step_reports_to_the_back_off(backoff):
    saved = backoff._thread_config(2)
    backoff._thread_backoff(on=False)  # no pause: every step runs on the team
    try:
        net = _spiral_net()
        net.fit(*SPIRAL, epochs=25, lr=0.1)
        assert net._engine.threads_used == 2
        state = backoff._thread_backoff()
        assert state["won"] + state["lost"] == 25
        net.fit(*SPIRAL[:1], SPIRAL[1], epochs=3, lr=0.1, batch_size=50)  # 50 rows: unchunked
        assert backoff._thread_backoff()["won"] + backoff._thread_backoff()["lost"] == 25
    finally:
        backoff._thread_config(*saved)


def test_a_pause_runs_the_chunks_on_one_thread_to_the_same_bits(backoff):
    saved = backoff._thread_config(2)
    try:
        backoff._thread_backoff(on=False)
        team = _spiral_net()
        team.fit(*SPIRAL, epochs=20, lr=0.1)
        assert team._engine.threads_used == 2
        backoff._thread_backoff(reset=True, on=True)
        backoff._thread_report(2, 1, 1 << 62)  # a pause until far in the future
        paused = _spiral_net()
        paused.fit(*SPIRAL, epochs=20, lr=0.1)
        assert paused._engine.threads_used == 1
        np.testing.assert_array_equal(paused.parameters, team.parameters)
        paused.train_step(*SPIRAL, lr=0.1)  # the fast path, and the validated one
        assert paused._engine.threads_used == 1
        paused.train_step(SPIRAL[0].tolist(), SPIRAL[1].tolist())
        assert paused._engine.threads_used == 1
        assert backoff._thread_backoff(reset=True)["won"] == 0  # no team step ran
        again = _spiral_net()
        again.fit(*SPIRAL, epochs=1, lr=0.1)  # no pause: one step on the team
        assert again._engine.threads_used == 2
    finally:
        backoff._thread_config(*saved)
    np.testing.assert_array_equal(team.parameters, _alone(backoff, 2, 20))


# ---------------------------------------------------------------------------
# contention: a busy process beside, a pool of spawned processes
# ---------------------------------------------------------------------------
EPOCHS = 200


def _train_default():
    """In a pool process: a spiral fit on the default thread limit; (limit,
    parameters)."""
    from cbp import _backend

    _backend._core._blk_epochs_path(False)  # (the general passes, as _general_passes)
    net = _spiral_net()
    net.fit(*SPIRAL, epochs=EPOCHS, lr=0.1)
    return _backend._core._thread_state()["limit"], net.parameters


def test_beside_a_busy_process_the_bits_are_those_of_one_thread(backoff):
    limit = backoff._thread_state()["limit"]
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        nets = [_spiral_net() for _ in range(3)]
        for net in nets:
            net.fit(*SPIRAL, epochs=EPOCHS, lr=0.1)
    finally:
        busy.kill()
        busy.wait()
    want = _alone(backoff, limit, EPOCHS)
    for net in nets:
        np.testing.assert_array_equal(net.parameters, want)


def test_in_a_spawn_pool_the_bits_are_those_of_one_thread(core):
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap_async(_train_default, [()] * 2, chunksize=1).get(timeout=120)
    for limit, params in results:
        np.testing.assert_array_equal(params, _alone(core, limit, EPOCHS))
