"""The ``cbp`` command line.

    cbp [demo] [--epochs N] [--lr LR] [--seed S]   train the XOR tutorial, native vs NumPy
    cbp --version
    cbp info                                       versions, native core, SIMD, OpenMP, BLAS
    cbp train DATA.csv --target COLUMN [...]       train a network on a CSV file
    cbp predict MODEL DATA.csv [--output FILE]     write the predictions as CSV
    cbp evaluate MODEL DATA.csv                    print the metrics on labelled data
    cbp explain EXAMPLE | MODEL --x .. --y ..      one training step, worked number by number
    cbp bench [--quick]                            run bench/run.py of the source tree

Bad input ends with one line on stderr: exit status 2 for a usage error (an
unknown option, a bad option value, a command this installation cannot run)
and 1 for a data error (a missing or malformed file, an unknown column).

CSV files are read with the standard library's :mod:`csv`: a header line,
then one row a line, every row as wide as the header.  Feature columns must
be numeric (a text feature column is an error naming it; leave it out with
``--drop``); the target may be text (class labels) or numeric.
"""

import argparse
import copy
import importlib
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import cbp

from ._tabular import (
    META_KEY,
    CLIError,
    Preprocessing,
    Table,  # noqa: F401
    _load_network,
    _number,
    format_metrics,
    load_model,
    metrics,
    read_csv,
    write_csv,
)

#: --lr when it is not given, by optimizer
DEFAULT_LR = {"adam": 0.001, "rmsprop": 0.001, "sgd": 0.01, "adagrad": 0.01}

_PLOT_EXTRA = 'pip install "cbp[plot]"'


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors raised as CLIError (one line, status 2)."""

    def error(self, message):
        raise CLIError(f"{message} (see '{self.prog} --help')", 2, self.prog)


# -- option values ---------------------------------------------------------
def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _nonneg_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _hidden(text):
    """'64,32' -> [64, 32]; '' or 'none' -> [] (no hidden layer)."""
    if text.strip().lower() in ("", "none"):
        return []
    sizes = []
    for part in text.split(","):
        try:
            size = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected layer sizes like 64,32, got {text!r}"
            ) from None
        if size < 1:
            raise argparse.ArgumentTypeError(f"layer sizes must be at least 1, got {size}")
        sizes.append(size)
    return sizes


def _names(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def _numbers(text, what):
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise CLIError(f"{what}: expected comma-separated numbers, got {text!r}", 2) from None
    if not all(math.isfinite(v) for v in values):
        raise CLIError(f"{what}: the numbers must be finite, got {text!r}", 2)
    return values


# -- CSV -------------------------------------------------------------------
def _check_folder(path, option):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CLIError(f"{option} {path}: the folder {folder} does not exist")


def cmd_demo(args, out):
    if args.epochs < 1:
        raise CLIError(f"argument --epochs: must be at least 1, got {args.epochs}", 2, "cbp demo")
    demo(args.epochs, args.lr, args.seed, out=out)
    return 0


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


def demo(epochs=10_000, lr=0.1, seed=1, out=sys.stdout):
    """Train seed 004's XOR network on each backend; return {backend: (seconds, net, history)}.

    Seed 004's network: 2-4-1 sigmoid, no biases, half squared error summed
    over the batch, full batch; the same initial weights on every backend.
    Prints the final loss, the predictions and the time of each backend
    against the NumPy twin.
    """
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


def info_lines():
    """The lines ``cbp info`` prints."""
    lines = [
        f"cbp {cbp.__version__} ({os.path.dirname(os.path.abspath(cbp.__file__))})",
        f"Python {sys.version.split()[0]} ({sys.executable})",
        f"NumPy {np.__version__}",
    ]
    try:
        import scipy

        lines.append(f"SciPy {scipy.__version__}")
    except ImportError:
        lines.append("SciPy not installed")
    core = cbp._backend._core
    if core is None:
        lines.append(
            f"native core: not loaded ({cbp._backend._why_not}); the NumPy twin runs instead"
        )
    else:
        lines.append(f"native core: loaded ({getattr(core, '__file__', '?')})")
        simd, levels = getattr(core, "_simd", None), getattr(core, "_simd_levels", None)
        if callable(simd):
            table = simd()
            runs = f" (this build and CPU run: {', '.join(levels())})" if callable(levels) else ""
            lines.append(f"SIMD kernel table: {table}{runs}")
        else:
            lines.append("SIMD kernel table: unknown (this core does not report it)")
    if cbp.openmp_available():
        state = getattr(core, "_thread_state", None)
        limit = state()["limit"] if callable(state) else "?"
        lines.append(f"OpenMP: yes, a limit of {limit} threads")
    else:
        lines.append("OpenMP: no (steps run on one thread)")
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        lines.append("BLAS: unknown (pip install threadpoolctl to find it)")
    else:
        found = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if not found:
            lines.append("BLAS: none found by threadpoolctl")
        for p in found:
            lines.append(
                f"BLAS: {p.get('internal_api')} {p.get('version')}, "
                f"{p.get('num_threads')} threads ({p.get('filepath')})"
            )
    return lines


def cmd_info(args, out):
    print("\n".join(info_lines()), file=out)
    return 0


def _plot_module():
    try:
        return importlib.import_module("cbp.plot")
    except ImportError as exc:
        raise CLIError(f"--plot needs matplotlib: {_PLOT_EXTRA} ({exc})", 2) from None


def _split(n, fraction, seed, path):
    """(train rows, validation rows): a seeded shuffle, the last part for validation."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fraction))
    if fraction > 0:
        n_val = max(n_val, 1)
    if n - n_val < 1:
        raise CLIError(f"{path} has {n} data rows: too few for a validation split of {fraction}")
    return np.sort(order[: n - n_val]), np.sort(order[n - n_val :])


def cmd_train(args, out):
    if args.plot is not None:
        plot = _plot_module()
        _check_folder(args.plot, "--plot")
    _check_folder(args.output, "--output")
    table = read_csv(args.data)
    table.index(args.target, "the target")
    for name in args.drop:
        table.index(name, "--drop")
    features = [c for c in table.header if c != args.target and c not in args.drop]
    if not features:
        raise CLIError(f"{args.data}: no feature column is left besides the target")
    X = table.numbers(features)
    raw = table.strings(args.target)
    numeric = [_number(v) for v in raw]
    is_numeric = all(v is not None for v in numeric)
    task = args.task
    if task == "auto":
        task = "regression" if is_numeric else "classification"
    labels = y_values = None
    if task == "regression":
        if not is_numeric:
            r = next(r for r, v in enumerate(numeric) if v is None)
            raise CLIError(
                f"{args.data}, line {table.lines[r]}: target {args.target!r} holds "
                f"{raw[r]!r}, not a number (a regression needs numbers)"
            )
        y_values = np.array(numeric)
    else:
        distinct = set(raw)
        key = (lambda s: (_number(s), s)) if is_numeric else None
        labels = sorted(distinct, key=key)
        if len(labels) < 2:
            raise CLIError(
                f"{args.data}: target {args.target!r} has a single class "
                f"({labels[0]!r}); a classifier needs two or more"
            )
    tr, va = _split(len(table.rows), args.validation_split, args.seed, args.data)
    pre = Preprocessing.fit(
        task, features, args.target, X[tr], None if y_values is None else y_values[tr], labels
    )
    Y = pre.encode(table)
    Xs = pre.transform(X)

    layers, width = [], len(features)
    try:
        for size in args.hidden:
            layers.append(cbp.Dense(width, size, args.activation))
            width = size
    except ValueError as exc:
        raise CLIError(f"argument --activation: {exc}", 2, "cbp train") from None
    if task == "classification":
        layers.append(cbp.Dense(width, len(labels), "softmax"))
        loss = "categorical_crossentropy"
    else:
        layers.append(cbp.Dense(width, 1, "identity"))
        loss = "squared_error"
    net = cbp.Network(layers, loss=loss, seed=args.seed)
    net.metadata = {META_KEY: pre.to_dict()}
    lr = DEFAULT_LR[args.optimizer] if args.lr is None else args.lr
    optimizer = cbp.optim.get(args.optimizer, lr=lr)
    sizes = "-".join(str(s) for s in [len(features), *args.hidden, net.n_outputs])
    if not args.quiet:
        what = (
            f"classification of {args.target!r} into {len(labels)} classes"
            if labels
            else f"regression of {args.target!r}"
        )
        print(
            f"{what}: {len(tr)} training rows, {len(va)} validation rows, {len(features)} features",
            file=out,
        )
        print(
            f"network {sizes} ({args.activation}, output "
            f"{net.layers[-1].activation}), {loss}, {args.optimizer} lr {lr}, "
            f"batch {args.batch_size}, {args.epochs} epochs",
            file=out,
        )
    validation = (Xs[va], Y[va]) if len(va) else None
    stopping = cbp.EarlyStopping(patience=args.patience) if args.patience else None
    start = time.perf_counter()
    hist = net.fit(
        Xs[tr],
        Y[tr],
        epochs=args.epochs,
        batch_size=args.batch_size,
        shuffle=True,
        seed=args.seed,
        optimizer=optimizer,
        validation_data=validation,
        early_stopping=stopping,
        verbose=not args.quiet,
        callback_every=max(1, args.epochs // 100),
    )
    seconds = time.perf_counter() - start
    rows = [("train", metrics(net, pre, Xs[tr], Y[tr]))]
    if len(va):
        rows.append(("validation", metrics(net, pre, Xs[va], Y[va])))
    ran = len(hist["loss"])
    stopped = (
        "" if ran == args.epochs else f" (early stopping: best epoch {hist['best_epoch'] + 1})"
    )
    print(f"trained {ran} epochs in {seconds:.2f} s{stopped}", file=out)
    print(format_metrics(rows), file=out)
    net.save(args.output)
    print(f"model saved to {args.output}", file=out)
    if args.plot is not None:
        plot.history(hist).savefig(args.plot, dpi=100)
        print(f"training curves saved to {args.plot}", file=out)
    return 0


def _features_of(table, pre):
    return pre.transform(table.numbers(pre.features))


def cmd_predict(args, out):
    net, pre = load_model(args.model)
    if args.output is not None:
        _check_folder(args.output, "--output")
    table = read_csv(args.data)
    pred = pre.decode(net.predict(_features_of(table, pre)))
    if pre.task == "regression":
        pred = [repr(float(v)) for v in pred]
    if args.output is None:
        write_csv(pre.target, pred, None)
    else:
        write_csv(pre.target, pred, args.output)
        print(f"{len(pred)} predictions of {pre.target!r} written to {args.output}", file=out)
    return 0


def cmd_evaluate(args, out):
    net, pre = load_model(args.model)
    table = read_csv(args.data)
    table.index(pre.target, "the model's target")
    Xs = _features_of(table, pre)
    row = metrics(net, pre, Xs, pre.encode(table))
    print(format_metrics([(os.path.basename(args.data), row)]), file=out)
    return 0


def _import_explainers(need_examples):
    names = ["cbp.trace"] + (["cbp.examples"] if need_examples else [])
    try:
        return [importlib.import_module(name) for name in names]
    except ImportError as exc:
        raise CLIError(
            f"cbp explain needs {' and '.join(names)}, which this cbp cannot import ({exc})", 2
        ) from None


def _explain_target_y(net, pre, text):
    """--y as the network's target for one row."""
    if pre is not None and pre.task == "classification":
        if text not in pre.labels:
            raise CLIError(
                f"argument --y: {text!r} is not a label of the model ({', '.join(pre.labels)})", 2
            )
        return np.array([pre.labels.index(text)])
    if pre is None and net.loss == "categorical_crossentropy":
        try:
            k = int(text)
        except ValueError:
            raise CLIError(f"argument --y: expected a class index, got {text!r}", 2) from None
        if not 0 <= k < net.n_outputs:
            raise CLIError(
                f"argument --y: class {k} is out of range for {net.n_outputs} outputs", 2
            )
        return np.array([k])
    y = _numbers(text, "argument --y")
    if len(y) != net.n_outputs:
        raise CLIError(
            f"argument --y: the network has {net.n_outputs} outputs, got {len(y)} values", 2
        )
    y = np.array([y])
    return y if pre is None else (y - pre.y_mean) / pre.y_scale


def cmd_explain(args, out):
    target = args.target
    is_file = os.path.isfile(target)
    modules = _import_explainers(need_examples=not is_file)
    tracing = modules[0]
    if args.plot is not None:
        plot = _plot_module()
        _check_folder(args.plot, "--plot")
    if (args.x is None) != (args.y is None):
        raise CLIError("give --x and --y together", 2)
    pre = None
    explain_kw = {}
    if is_file:
        net = _load_network(target)
        meta = (net.metadata or {}).get(META_KEY)
        if meta is not None:
            net, pre = load_model(target)
        if args.x is None:
            raise CLIError(
                f"explaining a model needs an input and its target: "
                f"cbp explain {target} --x 1,0 --y 1",
                2,
            )
        lr = args.lr
    else:
        examples = modules[1]
        names = tuple(examples.NAMES)
        name = target
        if name not in names and name.isdigit() and name.zfill(3) in names:
            name = name.zfill(3)
        if name not in names:
            raise CLIError(
                f"{target!r} is neither an example ({', '.join(names)}) nor a model file", 2
            )
        net, X, y, lr = examples.get(name)
        explain_kw["names"] = examples.names(name)
        print(examples.titles()[name] + "\n", file=out)
        if args.lr is not None:
            lr = args.lr
    if args.x is not None:
        x = _numbers(args.x, "argument --x")
        if len(x) != net.n_inputs:
            raise CLIError(
                f"argument --x: the network takes {net.n_inputs} inputs, got {len(x)} values", 2
            )
        X = np.array([x])
        if pre is not None:
            X = pre.transform(X)
            print(
                f"the model standardises its inputs: x = "
                f"{np.array2string(X[0], precision=4, separator=', ')}",
                file=out,
            )
        y = _explain_target_y(net, pre, args.y)
    before = copy.deepcopy(net)  # the weights the gradients were taken at
    result = tracing.trace(net, X, y, lr=lr)
    print(result.explain(**explain_kw), file=out)
    if args.plot is not None:
        plot.network(before, trace=result).savefig(args.plot, dpi=100)
        print(f"network drawing saved to {args.plot}", file=out)
    return 0


def bench_script():
    """bench/run.py of the source tree this cbp was imported from."""
    return Path(cbp.__file__).resolve().parent.parent / "bench" / "run.py"


def cmd_bench(args, out):
    script = bench_script()
    if not script.is_file():
        raise CLIError(
            f"no benchmarks here: {script} does not exist (they live in cbp's "
            "source tree, not in the installed package)",
            2,
        )
    cmd = [sys.executable, str(script)]
    if args.quick:
        cmd.append("--quick")
    if args.out is not None:
        cmd += ["--out", args.out]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    if args.only:
        cmd += ["--only", *args.only]
    out.flush()
    return subprocess.call(cmd)


# -- the parser ------------------------------------------------------------
def _add_demo_options(p):
    p.add_argument("--epochs", type=int, default=10_000, help="epochs (default 10000)")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    p.add_argument("--seed", type=int, default=1, help="seed of the initial weights (default 1)")


def build_parser():
    parser = _Parser(
        prog="cbp",
        description="Backpropagation for small dense networks at "
        "native speed. Without a command, runs the demo.",
    )
    parser.add_argument("--version", action="version", version=f"cbp {cbp.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "demo",
        help="train the XOR tutorial on each backend and compare (default)",
        description="Train seed 004's XOR network (2-4-1 sigmoid) on the native "
        "core and the NumPy twin, from the same weights, and compare.",
    )
    _add_demo_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "info",
        help="versions, native core, SIMD, OpenMP and BLAS",
        description="Print what this cbp runs on.",
    )
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "train",
        help="train a network on a CSV file",
        description="Train a network on a CSV file with a header line. A text "
        "target is classified (softmax, cross-entropy); a numeric target is "
        "regressed (identity output, squared error, target standardised) "
        "unless --task classification. Features must be numeric and are "
        "standardised with the training part's mean and deviation.",
    )
    p.add_argument("data", metavar="DATA.csv")
    p.add_argument("--target", required=True, metavar="COLUMN", help="the column to predict")
    p.add_argument(
        "--drop",
        type=_names,
        default=[],
        metavar="COLUMNS",
        help="comma-separated columns that are not features (an id, a name)",
    )
    p.add_argument(
        "--hidden",
        type=_hidden,
        default=[64, 32],
        metavar="SIZES",
        help="hidden layer sizes (default 64,32; 'none' for no hidden layer)",
    )
    p.add_argument("--activation", default="relu", help="of the hidden layers (default relu)")
    p.add_argument("--epochs", type=_positive_int, default=300, help="(default 300)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="(default 32)")
    p.add_argument("--optimizer", default="adam", choices=sorted(DEFAULT_LR), help="(default adam)")
    p.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help="learning rate (default 0.001 for adam and rmsprop, 0.01 for sgd and adagrad)",
    )
    p.add_argument(
        "--validation-split",
        type=_fraction,
        default=0.2,
        metavar="FRACTION",
        help="share of the rows held out, drawn with --seed (default 0.2)",
    )
    p.add_argument(
        "--patience",
        type=_nonneg_int,
        default=0,
        help="stop after this many epochs without improvement and keep the best (default 0: off)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the weights, the split and the shuffle (default 0)",
    )
    p.add_argument("--task", default="auto", choices=("auto", "classification", "regression"))
    p.add_argument(
        "--output",
        default="model.npz",
        metavar="MODEL.npz",
        help="where to save the model (default model.npz)",
    )
    p.add_argument("--plot", metavar="PNG", help=f"save the training curves ({_PLOT_EXTRA})")
    p.add_argument("--quiet", action="store_true", help="no progress, only the metrics")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "predict",
        help="predict with a model of cbp train",
        description="Write a CSV of the predictions, one column named as the "
        "target. Features are matched by name; other columns are ignored.",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA.csv")
    p.add_argument("--output", metavar="FILE", help="CSV to write (default: stdout)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "evaluate",
        help="metrics of a model of cbp train on labelled data",
        description="Print the loss and the accuracy (classification) or "
        "RMSE and R^2 (regression) of a model on a CSV with its target column.",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA.csv")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "explain",
        help="one training step worked number by number",
        description="Trace one training step (forward, backward, update) of a "
        "tutorial example (000-004, mazur) or of a saved model on one input.",
    )
    p.add_argument("target", metavar="EXAMPLE|MODEL")
    p.add_argument("--x", metavar="X1,X2,...", help="the input (a model needs it)")
    p.add_argument("--y", metavar="Y", help="its target: a label name, a class index or values")
    p.add_argument("--lr", type=_positive_float, default=None, help="learning rate of the step")
    p.add_argument(
        "--plot", metavar="PNG", help=f"draw the network and its gradients ({_PLOT_EXTRA})"
    )
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser(
        "bench",
        help="run the benchmarks (bench/run.py, source tree only)",
        description="Run bench/run.py of cbp's source tree.",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run of about 20 seconds")
    p.add_argument("--out", metavar="DIR", help="output folder (default bench/results)")
    p.add_argument("--threads", type=_positive_int, default=None)
    p.add_argument("--only", nargs="+", metavar="NAME", help="xor spiral mnist seed000 sweep")
    p.set_defaults(func=cmd_bench)
    return parser


_COMMANDS = ("demo", "info", "train", "predict", "evaluate", "explain", "bench")


def main(argv=None, out=None):
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out = sys.stdout if out is None else out
    # no command (or only the demo's options, as before there were commands): the demo
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["demo", *argv]
    parser = build_parser()
    prog = "cbp"
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version
            return exc.code if isinstance(exc.code, int) else 0
        prog = f"cbp {args.command}"
        return args.func(args, out)
    except CLIError as exc:
        print(f"{prog if exc.prog == 'cbp' else exc.prog}: error: {exc}", file=sys.stderr)
        return exc.code
    except cbp.DivergenceError as exc:
        print(f"{prog}: error: {exc}; try a smaller --lr", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of stdout left (cbp predict ... | head)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 141  # 128 + SIGPIPE, as a shell reports a process that SIGPIPE ended
    except (ValueError, OSError, ArithmeticError) as exc:  # from the data, not the options
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
