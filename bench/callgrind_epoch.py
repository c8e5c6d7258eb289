"""Instructions per epoch of fit, counted by callgrind: the measure that
stays put on a shared machine, for comparing two builds.

    python bench/callgrind_epoch.py [TREE ...]

For each source tree (default: this one; each must have its core built in
place, or be the installed one when TREE is "."), XOR 2-4-1 sigmoid and
spiral 300x2 -> 64 -> 3 are fitted for N and 2N full-batch epochs at one
thread under ``valgrind --tool=callgrind``; the difference of the program
totals, divided by N, is one epoch's instructions (the process start-up
cancels out).  Needs valgrind.
"""

import os
import re
import subprocess
import sys
import tempfile

WORK = """
import sys
import cbp
which, n = sys.argv[1], int(sys.argv[2])
if which == "xor":
    X, y = cbp.datasets.xor()
    net = cbp.Network([cbp.Dense(2, 4, "sigmoid", seed=0), cbp.Dense(4, 1, "sigmoid", seed=1)])
else:
    X, y = cbp.datasets.spiral_data(100, 3)
    net = cbp.Network([cbp.Dense(2, 64, "relu", seed=0), cbp.Dense(64, 3, "softmax", seed=1)],
                      loss="categorical_crossentropy")
net.fit(X, y, epochs=n, lr=0.1)
"""
EPOCHS = {"xor": 2000, "spiral": 100}


def total(tree, workload, n, folder):
    out = os.path.join(folder, f"cg-{workload}-{n}.out")
    env = dict(
        os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0", PYTHONPATH=os.path.abspath(tree)
    )
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-c",
            WORK,
            workload,
            str(n),
        ],
        env=env,
        check=True,
        capture_output=True,
        cwd=folder,
    )
    report = subprocess.run(
        ["callgrind_annotate", out], check=True, capture_output=True, text=True
    ).stdout
    return int(re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", report)[1].replace(",", ""))


def main(argv=None):
    trees = (argv if argv is not None else sys.argv[1:]) or ["."]
    print("| tree | XOR, instructions/epoch | spiral, instructions/epoch |")
    print("|---|---:|---:|")
    for tree in trees:
        with tempfile.TemporaryDirectory() as folder:
            per = {
                w: (total(tree, w, 2 * n, folder) - total(tree, w, n, folder)) / n
                for w, n in EPOCHS.items()
            }
        print(f"| {tree} | {per['xor']:.0f} | {per['spiral']:.0f} |")


if __name__ == "__main__":
    main()
