"""The text of :meth:`cbp.trace.Trace.explain`: the chain rule with the
numbers of one pass filled in, in the style of the seed tutorials.

Every number printed is read from the trace's arrays (the backend's kernels
computed them); the symbolic expressions around them are for reading only.
"""

import numpy as np

#: the most weights a detailed explanation writes out (more: a table)
MAX_DETAIL_WEIGHTS = 12

_ASCII = {
    "ŷ": "y_hat",
    "·": "*",
    "←": "<-",
    "−": "-",
    "²": "^2",
    "½": "0.5*",
    "Σ": "sum",
    "→": "->",
    "λ₁": "l1",
    "λ₂": "l2",
    "‖": "|",
}


def fmt(x):
    """A number as the tutorials print it: at most 9 significant digits,
    no trailing zeros (0.985, not 0.98499999999)."""
    x = float(x)
    if x == 0.0:
        return "0"
    s = f"{x:.9g}"
    if "e" in s:
        mant, exp = s.split("e")
        s = f"{mant}e{int(exp)}"
    return s


def par(x):
    """fmt(x), in parentheses when negative (a factor of a product)."""
    s = fmt(x)
    return f"({s})" if s.startswith("-") else s


def _dot(parts):
    return " · ".join(parts)


class _Names:
    def __init__(self, names):
        self.names = dict(names or {})

    def __call__(self, sym):
        return self.names.get(sym, sym)


def _symbols(tr):
    """Default symbols: inputs, per dense layer its units, pre-activations,
    weights [i][j] and biases [j]; targets."""
    dense = tr.dense_layers
    n_hidden = len(dense) - 1
    inputs = [f"x{i + 1}" for i in range(tr.X.shape[1])]
    layers = []
    w, unit = 0, 0
    for k, lt in enumerate(dense):
        n_in, n_out = lt.weights.shape
        if k == len(dense) - 1:
            units = ["ŷ"] if n_out == 1 else [f"o{j + 1}" for j in range(n_out)]
        elif n_hidden == 1:
            units = [f"h{j + 1}" for j in range(n_out)]
        else:
            units = [f"h{k + 1}_{j + 1}" for j in range(n_out)]
        zs = ["z" if u == "ŷ" else f"z_{u}" for u in units]
        W = [[f"w{w + i * n_out + j + 1}" for j in range(n_out)] for i in range(n_in)]
        w += n_in * n_out
        b = None if lt.bias is None else [f"bias{unit + j + 1}" for j in range(n_out)]
        unit += n_out
        layers.append({"units": units, "z": zs, "W": W, "b": b})
    n_out = dense[-1].weights.shape[1]
    targets = ["y"] if n_out == 1 else [f"t{j + 1}" for j in range(n_out)]
    return inputs, layers, targets


def _all_symbols(tr):
    """Every default symbol an explanation of this trace can use."""
    inputs, layers, targets = _symbols(tr)
    out = set(inputs) | set(targets) | {"L"}
    for s in layers:
        out.update(s["units"], s["z"], (w for row in s["W"] for w in row), s["b"] or ())
    return out


def explain(tr, names=None, detail=None, ascii=False):
    n_weights = sum(lt.weights.size for lt in tr.dense_layers)
    if detail is None:
        detail = tr.batch_size == 1 and n_weights <= MAX_DETAIL_WEIGHTS
    elif detail and tr.batch_size != 1:
        raise ValueError(
            f"a detailed explanation is written for one sample; this trace has "
            f"{tr.batch_size} (trace a single row, X[i:i+1])"
        )
    if names:
        unknown = sorted(set(names) - _all_symbols(tr))
        if unknown:
            raise ValueError(
                f"names: {', '.join(map(repr, unknown))} "
                f"{'is not a symbol' if len(unknown) == 1 else 'are not symbols'}"
                " of this network's explanation"
            )
    text = _detail(tr, _Names(names)) if detail else _table(tr)
    if ascii:
        for k, v in _ASCII.items():
            text = text.replace(k, v)
    return text


# --------------------------------------------------------------------------
# the loss and its derivative, written for one sample
# --------------------------------------------------------------------------
def _scale_text(tr, j):
    """The reduction's divisor for one sample ("" when it is 1)."""
    if tr.reduction == "sum" or tr.loss_name == "categorical_crossentropy" or j == 1:
        return ""
    return f"/{j}"


def _loss_lines(tr, N, outs, targets):
    o, t = tr.output[0], tr.y[0]
    j = len(o)
    L = N("L")
    div = _scale_text(tr, j)
    name = tr.loss_name
    if name in ("squared_error", "half_squared_error"):
        half = "½" if name == "half_squared_error" else ""
        sym = [f"{half}({N(u)} − {N(y)})²" for u, y in zip(outs, targets)]
        num = [f"{half}({fmt(a)} − {par(b)})²" for a, b in zip(o, t)]
    elif name == "categorical_crossentropy":
        sym = [f"{N(y)}·log({N(u)})" for u, y in zip(outs, targets)]
        num = [f"{fmt(b)}·log({fmt(a)})" for a, b in zip(o, t)]
        sym, num = [f"−({' + '.join(sym)})"], [f"−({' + '.join(num)})"]
    else:  # binary cross-entropy
        sym = [f"{N(y)}·log({N(u)}) + (1 − {N(y)})·log(1 − {N(u)})" for u, y in zip(outs, targets)]
        num = [f"{fmt(b)}·log({fmt(a)}) + (1 − {fmt(b)})·log(1 − {fmt(a)})" for a, b in zip(o, t)]
        sym, num = [f"−({' + '.join(sym)})"], [f"−({' + '.join(num)})"]
    s, n = " + ".join(sym), " + ".join(num)
    if div and name in ("squared_error", "half_squared_error"):
        s, n = f"[{s}]{div}", f"[{n}]{div}"
    elif div:
        s, n = s + div, n + div
    one = f"  {L} = {s} = {n} = {fmt(tr.data_loss)}"
    lines = [one] if len(one) <= 100 else [f"  {L} = {s}", f"    = {n} = {fmt(tr.data_loss)}"]
    if tr.penalty:
        lines.append(
            f"  {L} = data loss + penalties = {fmt(tr.data_loss)} + "
            f"{fmt(tr.penalty)} = {fmt(tr.loss)}"
        )
    return lines


def _dloss(tr, N, u, y, a, b, j):
    """(symbolic, with numbers) dL/du of one output unit."""
    div = _scale_text(tr, j)
    name = tr.loss_name
    if name == "squared_error":
        return f"2({N(u)} − {N(y)}){div}", f"2({fmt(a)} − {par(b)}){div}"
    if name == "half_squared_error":
        return f"({N(u)} − {N(y)}){div}", f"({fmt(a)} − {par(b)}){div}"
    if name == "categorical_crossentropy":
        return f"−{N(y)}/{N(u)}", f"−{par(b)}/{fmt(a)}"
    return (
        f"({N(u)} − {N(y)})/({N(u)}(1 − {N(u)})){div}",
        f"({fmt(a)} − {par(b)})/({fmt(a)}(1 − {fmt(a)})){div}",
    )


def _derivative(act, u, zsym, a, z, N):
    """(symbolic, with numbers) of du/dz for an elementwise activation."""
    if act == "identity":
        return "1", None
    if act == "sigmoid":
        return f"{N(u)}(1 − {N(u)})", f"{fmt(a)}(1 − {fmt(a)})"
    if act == "tanh":
        return f"1 − {N(u)}²", f"1 − {par(a)}²"
    return f"{act}'({N(zsym)})", f"{act}'({fmt(z)})"


def _fused(tr, out_lt):
    return (out_lt.activation == "softmax" and tr.loss_name == "categorical_crossentropy") or (
        out_lt.activation == "sigmoid" and tr.loss_name == "binary_crossentropy"
    )


def _penalty_terms(lt, wname, value, is_bias, N):
    """(' + symbolic', ' + numbers') of a parameter's penalty gradient."""
    l1 = lt.bias_l1 if is_bias else lt.weight_l1
    l2 = lt.bias_l2 if is_bias else lt.weight_l2
    sym, num = "", ""
    if l1 > 0:
        sym += f" + λ₁·sign({N(wname)})"
        num += f" + {fmt(l1)}·{par(np.sign(value))}"
    if l2 > 0:
        sym += f" + 2λ₂·{N(wname)}"
        num += f" + 2·{fmt(l2)}·{par(value)}"
    return sym, num


def _update_line(tr, N, wname, old, grad, new, changes):
    if tr.lr is None:
        return []
    if not changes:
        return [f"      {N(wname)} stays {fmt(old)} (not trainable)"]
    return [f"      {N(wname)} ← {fmt(old)} − {fmt(tr.lr)} · {par(grad)} = {fmt(new)}"]


# --------------------------------------------------------------------------
# every partial derivative of a one-sample pass
# --------------------------------------------------------------------------
def _detail(tr, N):
    inputs, syms, targets = _symbols(tr)
    dense = tr.dense_layers
    d = lambda a, b: f"d{N(a)}/d{N(b)}"  # noqa: E731
    lines = [
        f"{tr.network}: one sample, loss {tr.loss_name} ({tr.reduction}), backend {tr.backend}",
        "",
        "Forward pass",
    ]
    # forward
    ins = inputs
    k = 0
    for lt in tr.layers:
        if lt.kind == "Dropout":
            lines.append(
                f"  Dropout({fmt(lt.rate)}) is off outside fit: "
                f"{', '.join(N(s) for s in ins)} pass through unchanged"
            )
            continue
        s = syms[k]
        x = lt.inputs[0]
        for j, (u, zs) in enumerate(zip(s["units"], s["z"])):
            terms = [f"{N(ins[i])}·{N(s['W'][i][j])}" for i in range(len(ins))]
            nums = [f"{par(x[i])}·{par(lt.weights[i, j])}" for i in range(len(ins))]
            if s["b"] is not None:
                terms.append(N(s["b"][j]))
                nums.append(par(lt.bias[j]))
            lines.append(
                f"  {N(zs)} = {' + '.join(terms)} = {' + '.join(nums)} = {fmt(lt.z[0, j])}"
            )
            a = lt.a[0, j]
            if lt.activation == "identity":
                lines.append(f"  {N(u)} = {N(zs)} = {fmt(a)}")
            elif lt.activation == "softmax":
                all_z = ", ".join(N(z) for z in s["z"])
                lines.append(f"  {N(u)} = softmax({all_z})[{j + 1}] = {fmt(a)}")
            else:
                lines.append(
                    f"  {N(u)} = {lt.activation}({N(zs)}) = "
                    f"{lt.activation}({fmt(lt.z[0, j])}) = {fmt(a)}"
                )
        ins = s["units"]
        k += 1
    lines += ["", "Loss"] + _loss_lines(tr, N, syms[-1]["units"], targets)

    # backward, output layer first
    lines += [
        "",
        "Backward pass (chain rule)"
        + (f", and the gradient-descent step with lr = {fmt(tr.lr)}" if tr.lr is not None else ""),
    ]
    for k in range(len(dense) - 1, -1, -1):
        lt, s = dense[k], syms[k]
        ins = inputs if k == 0 else syms[k - 1]["units"]
        last = k == len(dense) - 1
        x = lt.inputs[0]
        fused = last and _fused(tr, lt)
        elementwise = lt.activation != "softmax" and not fused
        for j, (u, zs) in enumerate(zip(s["units"], s["z"])):
            da, dz = lt.da[0, j], lt.dz[0, j]
            # dL/du
            if last:
                first_sym, first_num = _dloss(
                    tr, N, u, targets[j], lt.a[0, j], tr.y[0, j], lt.a.shape[1]
                )
                if not fused:
                    lines.append(f"  {d('L', u)} = {first_sym} = {first_num} = {fmt(da)}")
            else:
                nxt, ns = dense[k + 1], syms[k + 1]
                terms = [f"{d('L', z2)} · {N(ns['W'][j][m])}" for m, z2 in enumerate(ns["z"])]
                nums = [
                    f"{par(nxt.dz[0, m])} · {par(nxt.weights[j, m])}" for m in range(len(ns["z"]))
                ]
                lines.append(
                    f"  {d('L', u)} = {' + '.join(terms)} = {' + '.join(nums)} = {fmt(da)}"
                )
                first_sym = first_num = fmt(da)
            # dL/dz
            if fused:
                what = (
                    "softmax with categorical cross-entropy"
                    if lt.activation == "softmax"
                    else "sigmoid with binary cross-entropy"
                )
                div = (
                    ""
                    if tr.reduction == "sum" or lt.activation == "softmax"
                    else _scale_text(tr, lt.a.shape[1])
                )
                if j == 0:
                    lines.append(f"  ({what}: the fused dL/dz = output − target)")
                lines.append(
                    f"  {d('L', zs)} = ({N(u)} − {N(targets[j])}){div} = "
                    f"({fmt(lt.a[0, j])} − {par(tr.y[0, j])}){div} = {fmt(dz)}"
                )
            elif lt.activation == "softmax":
                total = " + ".join(f"{d('L', uk)}·{N(uk)}" for uk in s["units"])
                lines.append(
                    f"  {d('L', zs)} = {N(u)}·({d('L', u)} − ({total}))"
                    f" = {fmt(lt.a[0, j])}·({par(da)} − "
                    f"{par(float(np.dot(lt.da[0], lt.a[0])))}) = {fmt(dz)}"
                )
            else:
                dsym, dnum = _derivative(lt.activation, u, zs, lt.a[0, j], lt.z[0, j], N)
                der = lt.derivative[0, j]
                if dnum is None:
                    lines.append(f"  {d(u, zs)} = {dsym}")
                else:
                    lines.append(f"  {d(u, zs)} = {dsym} = {dnum} = {fmt(der)}")
                lines.append(
                    f"  {d('L', zs)} = {d('L', u)} · {d(u, zs)} = "
                    f"{par(da)} · {par(der)} = {fmt(dz)}"
                )
            # the parameters into this unit
            params = [
                (
                    s["W"][i][j],
                    lt.weights[i, j],
                    lt.dweights[i, j],
                    None if lt.updated_weights is None else lt.updated_weights[i, j],
                    x[i],
                    N(ins[i]),
                    False,
                    lt.trainable,
                )
                for i in range(len(ins))
            ]
            if s["b"] is not None:
                params.append(
                    (
                        s["b"][j],
                        lt.bias[j],
                        lt.dbias[j],
                        None if lt.updated_bias is None else lt.updated_bias[j],
                        1.0,
                        "1",
                        True,
                        lt.bias_trainable,
                    )
                )
            for wname, value, grad, new, xin, _xsym, is_bias, changes in params:
                psym, pnum = _penalty_terms(lt, wname, value, is_bias, N)
                if elementwise:
                    chain = f"{d('L', u)} · {d(u, zs)} · {d(zs, wname)}"
                    nums = _dot(
                        [first_num if last else par(da), par(lt.derivative[0, j]), par(xin)]
                    )
                else:
                    chain = f"{d('L', zs)} · {d(zs, wname)}"
                    nums = _dot([par(dz), par(xin)])
                lines.append(f"  {d('L', wname)} = {chain}{psym} = {nums}{pnum} = {fmt(grad)}")
                lines += _update_line(tr, N, wname, value, grad, new, changes)
    return "\n".join(lines)


# --------------------------------------------------------------------------
# wide networks and batches: a table a layer
# --------------------------------------------------------------------------
def _norm(a):
    return "" if a is None else fmt(float(np.linalg.norm(a)))


def _table(tr):
    n = tr.batch_size
    lines = [
        f"{tr.network}: {n} sample{'s' if n != 1 else ''}, loss {tr.loss_name} "
        f"({tr.reduction}), backend {tr.backend}",
        f"loss L = {fmt(tr.loss)}"
        + (f" (data {fmt(tr.data_loss)} + penalties {fmt(tr.penalty)})" if tr.penalty else ""),
        "",
    ]
    head = ["#", "layer", "inputs", "outputs", "‖W‖", "‖dL/dW‖", "‖b‖", "‖dL/db‖", "‖dL/dz‖"]
    if tr.lr is not None:
        head += ["‖W − lr·dL/dW‖"]
    rows = [head]
    for lt in tr.layers:
        name = f"Dropout({fmt(lt.rate)})" if lt.kind == "Dropout" else f"Dense {lt.activation}"
        row = [
            str(lt.index),
            name,
            f"({n}, {lt.n_inputs})",
            f"({n}, {lt.n_neurons})",
            _norm(lt.weights),
            _norm(lt.dweights),
            _norm(lt.bias),
            _norm(lt.dbias),
            _norm(lt.dz),
        ]
        if tr.lr is not None:
            row.append(_norm(lt.updated_weights))
        rows.append(row)
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    lines += [
        "",
        "‖·‖: Frobenius norm over the batch.  Every partial derivative is "
        "written out for one sample and at most "
        f"{MAX_DETAIL_WEIGHTS} weights (trace X[i:i+1], or explain(detail=True)).",
    ]
    return "\n".join(lines)
