"""Plots of training runs, decision regions and networks (needs matplotlib).

    pip install "cbp[plot]"

Every function returns a :class:`matplotlib.figure.Figure` made directly,
without pyplot, so it works headless and leaves pyplot's global state alone:
save it with ``fig.savefig("out.png")``, or show it in a notebook.  ``import
cbp`` never imports matplotlib; ``import cbp.plot`` does.
"""

from collections.abc import Mapping

import numpy as np

try:
    import matplotlib  # noqa: F401  (first: a blocked matplotlib fails here)
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle
except ImportError as exc:
    raise ImportError(
        f'cbp.plot needs matplotlib, which is not installed ({exc}): pip install "cbp[plot]"'
    ) from exc

from .network import Dense, Dropout

__all__ = ["history", "decision_boundary", "network"]

#: class colours (matplotlib's tab10)
_CLASS_COLOURS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]
_POSITIVE, _NEGATIVE, _GRADIENT = "#1f5fa8", "#c0392b", "#d35400"


def _spans_decades(values):
    values = values[np.isfinite(values)]
    return values.size > 1 and values.min() > 0 and values.max() / values.min() >= 10


def history(hist, title=None):
    """Training curves: loss, and accuracy for classifiers, with validation.

    Parameters
    ----------
    hist : dict or Network
        What :meth:`Network.fit` returns (keys ``loss``, and ``accuracy``,
        ``val_loss``, ``val_accuracy``, ``best_epoch`` when present), or a
        network, whose ``history`` is used.
    title : str, optional

    Returns
    -------
    Figure
        One axes (loss) or two (loss, accuracy).  The loss axis is
        logarithmic when the losses span a factor of 10 or more; a dotted
        line marks early stopping's best epoch.
    """
    if not isinstance(hist, Mapping):
        hist = getattr(hist, "history", None)
    if not isinstance(hist, Mapping) or "loss" not in hist:
        raise ValueError("history() takes the dict that Network.fit returns (with a 'loss' key)")
    loss = np.asarray(hist["loss"], dtype=np.float64)
    if loss.ndim != 1 or loss.size == 0:
        raise ValueError("the history has no epochs")
    epochs = np.arange(1, loss.size + 1)
    panels = [("loss", "val_loss")]
    if "accuracy" in hist:
        panels.append(("accuracy", "val_accuracy"))
    fig = Figure(figsize=(4.6 * len(panels) + 0.4, 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    best = hist.get("best_epoch")
    for ax, (key, val_key) in zip(axes, panels):
        values = [np.asarray(hist[key], dtype=np.float64)]
        ax.plot(epochs, values[0], color=_CLASS_COLOURS[0], label="training")
        if val_key in hist:
            values.append(np.asarray(hist[val_key], dtype=np.float64))
            ax.plot(epochs, values[1], color=_CLASS_COLOURS[1], label="validation")
        if key == "loss" and _spans_decades(np.concatenate(values)):
            ax.set_yscale("log")
        if key == "accuracy":
            ax.set_ylim(-0.02, 1.02)
        if best is not None and 0 <= best < loss.size:
            ax.axvline(best + 1, color="0.4", linestyle=":", label=f"best epoch {best + 1}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
        if len(ax.get_lines()) > 1:
            ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def _class_labels(y, n):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2:
        y = np.argmax(y, axis=1)  # one-hot rows
    if y.shape != (n,):
        raise ValueError(f"y must hold one label per row of X ({n}), got shape {y.shape}")
    labels = np.rint(y.astype(np.float64)).astype(np.int64)
    if (labels < 0).any():
        raise ValueError("the labels must be non-negative class indices")
    return labels


def _classes(out):
    """Class of each output row: argmax, or a single output above 0.5."""
    if out.shape[1] == 1:
        return (out[:, 0] > 0.5).astype(np.int64), 2
    return np.argmax(out, axis=1), out.shape[1]


def decision_boundary(net, X, y, resolution=300, class_names=None, title=None):
    """The class regions of a network with two inputs, and the points.

    Parameters
    ----------
    net : Network
        Two inputs; its class is the argmax of its outputs, or for a single
        output whether it is above 0.5 (sigmoid outputs, the XOR seed).
    X : array_like (n, 2)
    y : array_like (n,) of class indices, (n, 1) of 0/1 values, or one-hot rows
    resolution : int, default 300
        Grid points along each axis.
    class_names : sequence of str, optional
        Legend names of the classes (default ``class 0``, ``class 1``...).

    Returns
    -------
    Figure
        One axes: filled class regions, one scatter of points per class.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2 or net.n_inputs != 2:
        raise ValueError(
            f"decision_boundary() draws networks of 2 inputs on X of shape (n, 2); got a "
            f"network of {net.n_inputs} inputs and X of shape {X.shape}"
        )
    resolution = int(resolution)
    if resolution < 2:
        raise ValueError("resolution must be at least 2")
    labels = _class_labels(y, X.shape[0])
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = np.where(hi > lo, 0.1 * (hi - lo), 0.5)
    gx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
    gy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
    xx, yy = np.meshgrid(gx, gy)
    regions, n_classes = _classes(net.predict(np.column_stack([xx.ravel(), yy.ravel()])))
    k = max(n_classes, int(labels.max()) + 1)
    if k > len(_CLASS_COLOURS):
        raise ValueError(
            f"decision_boundary() colours up to {len(_CLASS_COLOURS)} classes, got {k}"
        )
    if class_names is None:
        class_names = [f"class {c}" for c in range(k)]
    elif len(class_names) < k:
        raise ValueError(f"class_names has {len(class_names)} names for {k} classes")
    cmap = ListedColormap(_CLASS_COLOURS[:k])
    fig = Figure(figsize=(5.4, 4.8), layout="constrained")
    ax = fig.subplots()
    ax.contourf(
        xx, yy, regions.reshape(xx.shape), levels=np.arange(k + 1) - 0.5, cmap=cmap, alpha=0.25
    )
    for c in range(k):
        mine = labels == c
        if mine.any():
            ax.scatter(
                X[mine, 0],
                X[mine, 1],
                s=18,
                color=_CLASS_COLOURS[c],
                edgecolors="black",
                linewidths=0.4,
                label=class_names[c],
            )
    predicted, _ = _classes(net.predict(X))
    accuracy = float(np.mean(predicted == labels))
    ax.set_title(title or f"decision regions (accuracy {accuracy:.1%})")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.85)
    return fig


def _fmt(v):
    return f"{v:.3g}"


def _trace_layers(net, trace, dense_index):
    """The trace's entry for each dense layer (by network index or by dense index)."""
    layers = list(trace.layers)
    if len(layers) == len(net.layers):
        return [layers[i] for i in dense_index]
    if len(layers) == len(dense_index):
        return layers
    raise ValueError(f"the trace has {len(layers)} layers, the network {len(net.layers)}")


def network(net, trace=None, max_units=8, input_names=None, title=None):
    """The graph of a network's units, with every weight and bias.

    Each edge carries its weight (blue positive, red negative, its width
    growing with the magnitude); each unit shows its bias (``b``) and its
    layer's activation is named under the column.  With a ``trace`` (from
    :func:`cbp.trace.trace`: ``trace.layers[i].dweights`` and ``.dbias``),
    each edge and bias also shows its gradient (``∂``, orange).

    Parameters
    ----------
    net : Network
    trace : optional
        An object with ``layers[i].dweights`` and ``layers[i].dbias`` for
        each layer of ``net`` (or for each Dense layer).
    max_units : int, default 8
        The widest layer drawn.  Labels stay readable up to about 8 units a
        layer; a wider layer raises ValueError unless this is raised.
    input_names : sequence of str, optional
        Names of the inputs (default ``x1``, ``x2``...).

    Returns
    -------
    Figure
        One axes, with one text per weight and per bias (and one per
        gradient with a trace).
    """
    dense_index = [i for i, layer in enumerate(net.layers) if isinstance(layer, Dense)]
    widths = [net.n_inputs] + [net.layers[i].n_neurons for i in dense_index]
    if max(widths) > max_units:
        raise ValueError(
            f"network() draws at most {max_units} units a layer readably, and this network "
            f"has {max(widths)} ({'-'.join(map(str, widths))}); pass max_units={max(widths)} "
            "to draw it anyway"
        )
    grads = None if trace is None else _trace_layers(net, trace, dense_index)
    if input_names is None:
        input_names = [f"x{i + 1}" for i in range(net.n_inputs)]
    elif len(input_names) != net.n_inputs:
        raise ValueError(f"input_names has {len(input_names)} names for {net.n_inputs} inputs")

    tallest = max(widths)
    # Data units: units 1.5 apart in a column.  The labels of the edges into
    # each unit of a column sit at one position along the gap before it, a
    # different position for each unit, so the gap grows with that column.
    # With gradients a label is two lines tall: it stays nearer the sources,
    # where the edges into one unit are further apart.
    t_first, t_last = 0.14, (0.8 if grads is None else 0.6)
    stretch = 1.4 * 0.66 / (t_last - t_first)
    gaps = [3.0 + stretch * (n - 1) for n in widths[1:]]
    xs = np.concatenate([[0.0], np.cumsum(gaps)])
    spacing = 1.5
    ys = [spacing * ((n - 1) / 2 - np.arange(n)) for n in widths]
    radius = 0.3
    top = spacing * (tallest - 1) / 2
    x_lim = (-0.9, xs[-1] + 0.9)
    dropout = any(isinstance(layer, Dropout) for layer in net.layers)
    y_lim = (-top - (2.0 if dropout else 1.7), top + 0.7)  # room for 2 or 3 caption lines
    inch = 0.62  # per data unit
    fig = Figure(
        figsize=(inch * (x_lim[1] - x_lim[0]), inch * (y_lim[1] - y_lim[0]) + 0.3),
        layout="constrained",
    )
    ax = fig.subplots()
    ax.set_aspect("equal")
    ax.axis("off")
    biggest = max((np.abs(net.layers[i].weights).max() for i in dense_index), default=1.0)
    biggest = biggest if biggest > 0 else 1.0
    text_box = dict(boxstyle="round,pad=0.1", facecolor="white", edgecolor="none", alpha=0.85)

    for c, layer_i in enumerate(dense_index, start=1):
        layer = net.layers[layer_i]
        W = layer.weights
        dW = None if grads is None else np.asarray(grads[c - 1].dweights)
        n_in, n_out = W.shape
        for j in range(n_out):
            # the labels of the edges into unit j sit at one position along
            # their edges, a different one for each j
            t = 0.5 if n_out == 1 else t_first + (t_last - t_first) * j / (n_out - 1)
            for i in range(n_in):
                x0, y0 = xs[c - 1] + radius, ys[c - 1][i]
                x1, y1 = xs[c] - radius, ys[c][j]
                w = W[i, j]
                ax.plot(
                    [x0, x1],
                    [y0, y1],
                    color=_POSITIVE if w >= 0 else _NEGATIVE,
                    linewidth=0.4 + 3.0 * abs(w) / biggest,
                    alpha=0.75,
                    zorder=1,
                )
                px, py = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
                ax.text(
                    px,
                    py,
                    _fmt(w),
                    fontsize=8,
                    ha="center",
                    va="bottom" if dW is not None else "center",
                    bbox=text_box,
                    zorder=3,
                )
                if dW is not None:
                    ax.text(
                        px,
                        py,
                        f"∂{_fmt(dW[i, j])}",
                        fontsize=8,
                        color=_GRADIENT,
                        ha="center",
                        va="top",
                        bbox=text_box,
                        zorder=3,
                    )

    for c, n in enumerate(widths):
        layer = None if c == 0 else net.layers[dense_index[c - 1]]
        for k in range(n):
            x, y = xs[c], ys[c][k]
            ax.add_patch(
                Circle(
                    (x, y),
                    radius,
                    facecolor="#f4f4f4" if c == 0 else "#dbe8f6",
                    edgecolor="black",
                    linewidth=1.0,
                    zorder=2,
                )
            )
            if c == 0:
                ax.text(x, y, input_names[k], ha="center", va="center", fontsize=8, zorder=4)
                continue
            ax.text(x, y, f"{c}.{k + 1}", ha="center", va="center", fontsize=7.5, zorder=4)
            if layer.use_bias:
                ax.annotate(
                    f"b {_fmt(layer.bias[k])}",
                    (x, y - radius),
                    xytext=(0, -2),
                    textcoords="offset points",
                    ha="center",
                    va="top",
                    fontsize=8,
                    zorder=4,
                )
                if grads is not None:
                    ax.annotate(
                        f"∂{_fmt(np.asarray(grads[c - 1].dbias)[k])}",
                        (x, y - radius),
                        xytext=(0, -12),
                        textcoords="offset points",
                        ha="center",
                        va="top",
                        fontsize=8,
                        color=_GRADIENT,
                        zorder=4,
                    )
        if c == 0:
            caption = f"input\n{n} units"
        else:
            caption = f"{layer.activation}\n{n} unit{'s' if n > 1 else ''}"
            before = net.layers[dense_index[c - 1] - 1] if dense_index[c - 1] else None
            if isinstance(before, Dropout):
                caption += f"\nafter dropout {before.rate:g}"
        ax.text(xs[c], -top - 0.85, caption, ha="center", va="top", fontsize=9)
    legend = "edges: weights (blue +, red −)"
    if trace is not None:
        legend += ";  ∂: gradient of the loss"
    ax.set_title(title or legend, fontsize=9)
    ax.set_xlim(*x_lim)
    ax.set_ylim(*y_lim)
    return fig
