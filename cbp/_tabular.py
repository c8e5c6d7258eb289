"""Tables for the command line: CSV files read and written with the standard
library's :mod:`csv`, the preprocessing ``cbp train`` keeps with a model, and
the metrics it prints.

CSV files have a header line, then one row a line, every row as wide as the
header.  Feature columns must be numeric; the target may be text (class
labels) or numeric.
"""

import csv
import math
import os
import sys

import numpy as np

import cbp

#: ``metadata["cbp.cli"]`` of a model written by ``cbp train``: the version of its layout
META_KEY = "cbp.cli"
META_VERSION = 1


class CLIError(Exception):
    """A failure reported as one line on stderr, with an exit status."""

    def __init__(self, message, code=1, prog="cbp"):
        super().__init__(message)
        self.code = code
        self.prog = prog


class Table:
    """A CSV file read into strings: ``header`` (names), ``rows``, ``lines``."""

    def __init__(self, path, header, rows, lines):
        self.path, self.header, self.rows, self.lines = path, header, rows, lines

    def index(self, name, role="column"):
        try:
            return self.header.index(name)
        except ValueError:
            raise CLIError(
                f"{self.path} has no column {name!r} ({role}); its columns are "
                f"{', '.join(self.header)}"
            ) from None

    def strings(self, name):
        i = self.index(name)
        return [row[i] for row in self.rows]

    def numbers(self, names, role="feature"):
        """float64 (rows, len(names)): every value must be a finite number."""
        out = np.empty((len(self.rows), len(names)))
        for j, name in enumerate(names):
            i = self.index(name, role)
            for r, row in enumerate(self.rows):
                value = _number(row[i])
                if value is None:
                    raise CLIError(
                        f"{self.path}, line {self.lines[r]}: {role} column {name!r} holds "
                        f"{row[i]!r}, not a number"
                        + (
                            ""
                            if role != "feature"
                            else f" (features must be numeric; leave it out with --drop {name})"
                        )
                    )
                out[r, j] = value
        return out


def _number(text):
    """The finite float written as ``text``, else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_csv(path):
    """The Table of a CSV file with a header line; blank lines are skipped."""
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise CLIError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CLIError(f"{path} is a folder, not a CSV file") from None
    except OSError as exc:
        raise CLIError(f"{path}: {exc.strerror}") from None
    rows, lines = [], []
    with f:
        reader = csv.reader(f, strict=True)
        try:
            header = None
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                row = [cell.strip() for cell in row]
                if header is None:
                    header = row
                    continue
                if len(row) != len(header):
                    raise CLIError(
                        f"{path}, line {reader.line_num}: {len(row)} fields, "
                        f"the header has {len(header)}"
                    )
                rows.append(row)
                lines.append(reader.line_num)
        except UnicodeDecodeError:
            raise CLIError(f"{path} is not a UTF-8 text (CSV) file") from None
        except csv.Error as exc:
            raise CLIError(f"{path}, line {reader.line_num}: not valid CSV: {exc}") from None
    if header is None:
        raise CLIError(f"{path} is empty: a header line and data rows are needed")
    for k, name in enumerate(header):
        if not name:
            raise CLIError(f"{path}: column {k + 1} of the header has no name")
    seen = set()
    for name in header:
        if name in seen:
            raise CLIError(f"{path}: the header names column {name!r} twice")
        seen.add(name)
    if not rows:
        raise CLIError(f"{path} has a header but no data rows")
    return Table(path, header, rows, lines)


def write_csv(name, values, output):
    """One column ``name`` of ``values`` to the file ``output`` (stdout if None)."""
    f = sys.stdout if output is None else open(output, "w", newline="", encoding="utf-8")
    try:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([name])
        w.writerows([v] for v in values)
    finally:
        if output is not None:
            f.close()


# -- models ----------------------------------------------------------------
def _load_network(path):
    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a folder, not a model file")
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                raise CLIError(f"{path} is not a cbp model file (not an .npz archive)")
        return cbp.load(path)
    except cbp.FormatError as exc:
        raise CLIError(f"not a cbp model: {exc}") from None
    except OSError as exc:
        raise CLIError(f"{path}: {exc.strerror}") from None


def load_model(path):
    """(network, preprocessing) of a model written by ``cbp train``."""
    net = _load_network(path)
    meta = (net.metadata or {}).get(META_KEY)
    if not isinstance(meta, dict):
        raise CLIError(
            f"{path} is a cbp network but not one written by 'cbp train' "
            "(it has no preprocessing metadata)"
        )
    try:
        pre = Preprocessing.from_dict(meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise CLIError(f"{path}: its 'cbp train' metadata is invalid ({exc})") from None
    if len(pre.features) != net.n_inputs or (
        pre.labels is not None and len(pre.labels) != net.n_outputs
    ):
        raise CLIError(f"{path}: its 'cbp train' metadata does not fit its network")
    return net, pre


class Preprocessing:
    """What ``cbp train`` keeps with a model to read new data the same way.

    Features are standardised with ``(x - x_mean) / x_scale`` (the mean and
    the standard deviation of the training part; a constant column has scale
    1).  Classification targets are indices into ``labels``; regression
    targets are standardised with ``y_mean`` and ``y_scale`` for training,
    and predictions are mapped back.
    """

    def __init__(
        self, task, features, target, x_mean, x_scale, labels=None, y_mean=0.0, y_scale=1.0
    ):
        self.task, self.features, self.target = task, list(features), target
        self.x_mean = np.asarray(x_mean, dtype=np.float64)
        self.x_scale = np.asarray(x_scale, dtype=np.float64)
        self.labels = None if labels is None else [str(v) for v in labels]
        self.y_mean, self.y_scale = float(y_mean), float(y_scale)

    @classmethod
    def fit(cls, task, features, target, X, y_values=None, labels=None):
        mean = X.mean(axis=0)
        std = X.std(axis=0)
        scale = np.where(std > 0, std, 1.0)
        y_mean, y_scale = 0.0, 1.0
        if task == "regression":
            y_mean = float(np.mean(y_values))
            y_std = float(np.std(y_values))
            y_scale = y_std if y_std > 0 else 1.0
        return cls(task, features, target, mean, scale, labels, y_mean, y_scale)

    def to_dict(self):
        return {
            "version": META_VERSION,
            "task": self.task,
            "features": self.features,
            "target": self.target,
            "x_mean": self.x_mean.tolist(),
            "x_scale": self.x_scale.tolist(),
            "labels": self.labels,
            "y_mean": self.y_mean,
            "y_scale": self.y_scale,
        }

    @classmethod
    def from_dict(cls, d):
        if d["version"] > META_VERSION:
            raise ValueError(f"written by a newer cbp (layout {d['version']})")
        if d["task"] not in ("classification", "regression"):
            raise ValueError(f"unknown task {d['task']!r}")
        pre = cls(
            d["task"],
            d["features"],
            d["target"],
            d["x_mean"],
            d["x_scale"],
            d["labels"],
            d["y_mean"],
            d["y_scale"],
        )
        n = len(pre.features)
        if pre.x_mean.shape != (n,) or pre.x_scale.shape != (n,) or not (pre.x_scale > 0).all():
            raise ValueError("the feature scaling does not fit the features")
        if (pre.task == "classification") != (pre.labels is not None):
            raise ValueError("labels go with classification only")
        if not pre.y_scale > 0:
            raise ValueError("the target scale must be positive")
        return pre

    def transform(self, X):
        return (X - self.x_mean) / self.x_scale

    def encode(self, table):
        """The targets of ``table`` as the network's training targets."""
        raw = table.strings(self.target)
        if self.task == "classification":
            index = {name: k for k, name in enumerate(self.labels)}
            out = np.empty(len(raw), dtype=np.int64)
            for r, value in enumerate(raw):
                if value not in index:
                    raise CLIError(
                        f"{table.path}, line {table.lines[r]}: label {value!r} of "
                        f"{self.target!r} is not one the model knows "
                        f"({', '.join(self.labels)})"
                    )
                out[r] = index[value]
            return out
        y = table.numbers([self.target], role="target")
        return (y - self.y_mean) / self.y_scale

    def decode(self, out):
        """Network outputs -> predictions: label names, or target values."""
        if self.task == "classification":
            return [self.labels[k] for k in np.argmax(out, axis=1)]
        return out[:, 0] * self.y_scale + self.y_mean


def metrics(net, pre, Xs, y):
    """The metrics of a model on standardised inputs and encoded targets."""
    out = {"rows": Xs.shape[0], **net.evaluate(Xs, y)}
    if pre.task == "regression":
        pred = net.predict(Xs)[:, 0] * pre.y_scale + pre.y_mean
        true = y[:, 0] * pre.y_scale + pre.y_mean
        residual = float(np.sum((pred - true) ** 2))
        total = float(np.sum((true - true.mean()) ** 2))
        out["rmse"] = math.sqrt(residual / true.size)
        out["r2"] = 1.0 - residual / total if total > 0 else math.nan
    return out


def format_metrics(rows):
    """A small table: one line per (name, metrics dict)."""
    formats = {"loss": ".4g", "accuracy": ".4f", "rmse": ".4g", "r2": ".4f"}
    keys = [k for k in formats if k in rows[0][1]]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'':<{width}}  {'rows':>6}" + "".join(f"  {k:>10}" for k in keys)]
    for name, m in rows:
        cells = "".join(
            f"  {m[k]:>10{formats[k]}}" if not math.isnan(m[k]) else f"  {'n/a':>10}" for k in keys
        )
        lines.append(f"{name:<{width}}  {m['rows']:>6}{cells}")
    return "\n".join(lines)


# -- commands --------------------------------------------------------------
