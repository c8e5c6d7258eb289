"""Smoke test of an installed cbp: one training step on the native core.

Trains one step of a small 2-4-1 network on XOR with the compiled core and
the same step with the NumPy twin, and checks that the native step changed
the parameters, gave a finite loss, and agrees with the NumPy one.
"""

import sys

import numpy as np

import cbp


def one_step(backend):
    net = cbp.Network(
        [cbp.Dense(2, 4, "tanh"), cbp.Dense(4, 1, "sigmoid")],
        loss="squared_error",
        backend=backend,
        seed=0,
    )
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    before = net.parameters.copy()
    loss = net.train_step(X, y, lr=0.5)
    return net, before, loss


def main():
    if not cbp.native_available():
        print(f"smoke: FAIL: native core not loaded: {cbp._backend._why_not}", file=sys.stderr)
        return 1
    net, before, loss = one_step("native")
    assert net.backend == "native", net.backend
    assert type(net._engine).__module__ == "cbp._core", type(net._engine).__module__
    assert np.isfinite(loss), loss
    assert not np.array_equal(before, net.parameters), "the step changed nothing"
    ref, ref_before, ref_loss = one_step("numpy")
    np.testing.assert_array_equal(before, ref_before)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net.parameters, ref.parameters, rtol=1e-12, atol=1e-12)
    print(f"smoke: OK: one native step, loss {loss:.6f}, matches the NumPy twin")
    return 0


if __name__ == "__main__":
    sys.exit(main())
