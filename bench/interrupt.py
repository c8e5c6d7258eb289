"""How long Ctrl-C takes to stop a fit: SIGINT sent to a process whose fit
would run for hours, and the time until KeyboardInterrupt reaches Python.

    python bench/interrupt.py [--repeats 5]

Each case runs in its own subprocess; the report gives the median and the
largest latency of the repeats, in milliseconds.  No test asserts these.
"""

import argparse
import statistics
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import os, signal, sys, threading, time
    import numpy as np
    import cbp

    backend, workload, mode = sys.argv[1:4]
    rng = np.random.default_rng(0)
    if workload == "xor":
        X, y = cbp.datasets.xor()
        layers = [cbp.Dense(2, 4, "sigmoid", seed=0), cbp.Dense(4, 1, "sigmoid", seed=1)]
        kw = {}
    elif workload == "wide":
        X = rng.standard_normal((256, 64))
        y = np.tanh(X[:, :1])
        layers = [cbp.Dense(64, 64, "tanh", seed=0), cbp.Dense(64, 1, "identity", seed=1)]
        kw = {"batch_size": 32, "shuffle": True}
    else:  # spiral 300x2 -> 64 -> 3, full batch
        X, y = cbp.datasets.spiral_data(100, 3)
        layers = [cbp.Dense(2, 64, "relu", seed=0), cbp.Dense(64, 3, "softmax", seed=1)]
        kw = {"lr": 0.1}
    loss = "categorical_crossentropy" if workload == "spiral" else "squared_error"
    net = cbp.Network(layers, loss=loss, backend=backend)
    if mode == "callback":
        kw.update(callback=lambda e, logs: None, callback_every=1000)
    sent = {}

    def interrupt():
        time.sleep(0.5)
        sent["at"] = time.perf_counter()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    kw.setdefault("lr", 0.01)
    try:
        net.fit(X, y, epochs=10**12, **kw)
    except KeyboardInterrupt:
        print(time.perf_counter() - sent["at"])
""")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backend", default="native")
    args = ap.parse_args(argv)
    print(f"| workload | mode | median ms | max ms |  ({args.backend}, {args.repeats} repeats)")
    print("|---|---|---:|---:|")
    for workload in ("xor", "wide", "spiral"):
        for mode in ("plain", "callback"):
            times = []
            for _ in range(args.repeats):
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, args.backend, workload, mode],
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                if out.returncode != 0:
                    raise SystemExit(out.stderr)
                times.append(1e3 * float(out.stdout))
            print(f"| {workload} | {mode} | {statistics.median(times):.1f} | {max(times):.1f} |")


if __name__ == "__main__":
    main()
