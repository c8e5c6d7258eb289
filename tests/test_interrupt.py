"""Ctrl-C during fit: SIGINT is honoured while the native loop runs, and the
network is left describing its last completed epoch, so that training
resumes as if it had never been interrupted.

Each case runs in a subprocess (a signal goes to a whole process) whose fit
would take hours if the signal were ignored; the subprocess's timeout is the
only time bound, and a generous one.
"""

import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import os, signal, sys, threading, time
    import numpy as np
    import cbp

    backend, mode = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((96, 8))
    y = np.tanh(X[:, :2] @ np.array([[0.5], [-0.3]]))

    def make():
        return cbp.Network([cbp.Dense(8, 16, "tanh", seed=1), cbp.Dropout(0.1),
                            cbp.Dense(16, 1, "identity", seed=2)], backend=backend,
                           optimizer=cbp.optim.Adam(lr=1e-3))

    kw = dict(batch_size=16, shuffle=True, seed=3, validation_data=(X[:8], y[:8]))
    if mode == "callback":
        kw.update(callback=lambda epoch, logs: None, callback_every=7)
    elif mode == "verbose":
        kw.update(verbose=True)

    def sched():  # plateau: a reduction after every epoch, its state checked below
        if mode == "plateau":
            return cbp.schedules.ReduceLROnPlateau(factor=0.9, patience=0, threshold=0.5)
        return None

    kw["schedule"] = sched()
    net = make()
    sent = {}

    def interrupt():
        time.sleep(0.4)
        sent["at"] = time.perf_counter()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    try:
        net.fit(X, y, epochs=10**9, **kw)
    except KeyboardInterrupt:
        latency = time.perf_counter() - sent["at"]
    else:
        raise SystemExit("fit ended without the interrupt")
    done = net.epochs_trained
    assert done > 0, "no epoch completed before the interrupt"
    assert net.optimizer.iterations == done * 6, (net.optimizer.iterations, done)
    assert len(net.history["loss"]) == done == len(net.history["val_loss"])
    assert np.isfinite(net.history["loss"]).all()

    # the same epochs, uninterrupted: the same parameters, state and history
    ref = make()
    ref_sched = sched()
    ref_hist = ref.fit(X, y, epochs=done, batch_size=16, shuffle=True, seed=3,
                       validation_data=(X[:8], y[:8]), schedule=ref_sched)
    if mode == "plateau":
        assert vars(kw["schedule"]) == vars(ref_sched), (vars(kw["schedule"]), vars(ref_sched))
        assert net.history["lr"].tobytes() == ref_hist["lr"].tobytes()
    assert net.parameters.tobytes() == ref.parameters.tobytes()
    assert net.optimizer.state.tobytes() == ref.optimizer.state.tobytes()
    assert net.history["loss"].tobytes() == ref_hist["loss"].tobytes()

    # and the rest of the run equals an uninterrupted run of the whole
    rest = 5
    net.fit(X, y, epochs=rest, **{k: v for k, v in kw.items() if k != "verbose"})
    whole = make()
    whole.fit(X, y, epochs=done + rest, batch_size=16, shuffle=True, seed=3,
              validation_data=(X[:8], y[:8]), schedule=sched())
    assert net.parameters.tobytes() == whole.parameters.tobytes()
    assert net.epochs_trained == whole.epochs_trained == done + rest
    assert net.optimizer.iterations == whole.optimizer.iterations
    print(f"{latency:.6f} {done}")
""")


@pytest.mark.parametrize("mode", ["plain", "callback", "verbose", "plateau"])
def test_ctrl_c_stops_fit_at_an_epoch_boundary(backend, mode):
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, backend, mode], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    latency, done = proc.stdout.split()[-2:]
    assert int(done) > 0
