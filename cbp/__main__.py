"""``python -m cbp``: train the XOR seed on the native core and compare.

Trains seed 004's network (2-4-1 sigmoid, no biases, half squared error
summed over the batch, lr 0.1, full batch) from the same initial weights on
every available backend, then prints the final loss, the predictions and the
time of each backend against the NumPy twin.
"""
import argparse
import sys
import time

import numpy as np

import cbp


def _xor_network(W1, W2, backend):
    return cbp.Network(
        [
            cbp.Dense(2, 4, "sigmoid", use_bias=False, weights=W1),
            cbp.Dense(4, 1, "sigmoid", use_bias=False, weights=W2),
        ],
        loss="half_squared_error",
        reduction="sum",
        backend=backend,
    )


def xor(epochs=10_000, lr=0.1, seed=1, out=sys.stdout):
    """Train XOR on each backend; return {backend: (seconds, network, history)}."""
    X, labels = cbp.datasets.xor()
    y = labels.reshape(-1, 1).astype(np.float64)
    rng = np.random.default_rng(seed)
    W1, W2 = rng.uniform(size=(2, 4)), rng.uniform(size=(4, 1))
    backends = ["native", "numpy"] if cbp.native_available() else ["numpy"]
    results = {}
    for backend in backends:
        net = _xor_network(W1, W2, backend)
        start = time.perf_counter()
        hist = net.fit(X, y, epochs=epochs, lr=lr)
        results[backend] = (time.perf_counter() - start, net, hist)

    print(f"XOR, 2-4-1 sigmoid, {epochs} full-batch epochs, lr {lr} (seed 004)", file=out)
    if not cbp.native_available():
        print(f"native core not loaded ({cbp._backend._why_not}); NumPy twin only", file=out)
    _, net, hist = results[backends[0]]
    pred = net.predict(X)[:, 0]
    print(f"final loss: {hist['loss'][-1]:.6g}", file=out)
    for x, p, t in zip(X, pred, labels):
        print(f"  {x.astype(int)} -> {p:.4f}  (target {t})", file=out)
    ok = np.array_equal((pred > 0.5).astype(int), labels)
    print("XOR learned" if ok else "XOR NOT learned from this start", file=out)
    t_ref = results["numpy"][0]
    for backend in backends:
        t = results[backend][0]
        print(
            f"{backend:>6}: {t * 1e3:9.2f} ms  {t / epochs * 1e6:8.3f} us/epoch  "
            f"{t_ref / t:7.1f}x the NumPy twin",
            file=out,
        )
    if len(backends) == 2:
        diff = np.max(np.abs(results["native"][1].parameters - results["numpy"][1].parameters))
        print(f"native vs NumPy twin, largest parameter difference: {diff:.2e}", file=out)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m cbp", description="Train seed 004's XOR network with cbp."
    )
    parser.add_argument("--epochs", type=int, default=10_000)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1, help="seed of the initial weights")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    xor(args.epochs, args.lr, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
