"""A table of a network's layers: :func:`summary`."""

__all__ = ["summary", "Summary"]


class Summary(str):
    """The text of :func:`summary`: a ``str`` whose repr is the text itself,
    so that ``net.summary()`` at the prompt shows the table."""

    __slots__ = ()

    def __repr__(self):
        return str(self)


def _trainable(layer):
    if type(layer).__name__ != "Dense":
        return "-"
    if not layer.trainable:
        return "no"
    if layer.use_bias and not getattr(layer, "bias_trainable", True):
        return "weights only"
    return "yes"


def summary(net):
    """A table of the layers of ``net``: index, type, activation, input and
    output shapes, weight and bias parameter counts, what is trainable; then
    the total and trainable parameter counts.

    Returns
    -------
    Summary
        A ``str`` (its repr is the table).
    """
    head = ["#", "layer", "activation", "input", "output", "weights", "bias", "trainable"]
    rows = [head]
    total = trainable = 0
    for i, layer in enumerate(net.layers):
        kind = type(layer).__name__
        if kind == "Dense":
            nw = layer.n_inputs * layer.n_neurons
            nb = layer.n_neurons if layer.use_bias else 0
            act = layer.activation
            if layer.activation in ("leaky_relu", "prelu", "elu"):
                act += f" (alpha {layer.alpha:g})"
            name = "Dense"
            total += nw + nb
            if layer.trainable:
                trainable += nw
                if nb and getattr(layer, "bias_trainable", True):
                    trainable += nb
            cells = [str(nw), str(nb) if layer.use_bias else "-"]
        else:
            name, act, cells = f"{kind}({layer.rate:g})", "-", ["0", "-"]
        rows.append(
            [
                str(i),
                name,
                act,
                f"(batch, {layer.n_inputs})",
                f"(batch, {layer.n_neurons})",
                *cells,
                _trainable(layer),
            ]
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    right = {0, 5, 6}  # numbers
    lines = []
    for r in rows:
        lines.append(
            "  ".join(
                cell.rjust(w) if c in right else cell.ljust(w)
                for c, (cell, w) in enumerate(zip(r, widths))
            ).rstrip()
        )
    rule = "-" * max(len(line) for line in lines)
    lines.insert(1, rule)
    opt = net.optimizer
    lines += [
        rule,
        f"total parameters: {total}",
        f"trainable parameters: {trainable}",
        f"non-trainable parameters: {total - trainable}",
        f"loss: {net.loss} ({net.reduction}); backend: {net.backend}; "
        f"optimizer: {'none' if opt is None else type(opt).__name__}; "
        f"epochs trained: {net.epochs_trained}",
    ]
    return Summary("\n".join(lines))
