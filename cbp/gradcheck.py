"""Check backprop against finite differences.

:func:`gradcheck` compares every analytic gradient of a network (the one
:func:`cbp.trace.trace` computes with the backend's kernels, which is what
``net.backward`` leaves in ``layer.dweights``) with the central difference

    (L(p + eps) - L(p - eps)) / (2 eps)

of the loss, penalties included, one parameter at a time.  It works on
copies: the network is left unchanged.
"""

from dataclasses import dataclass, field

import numpy as np

from . import _validation
from ._explain import fmt
from .trace import _inputs, _loss, _specs, _values, trace, weight_names

__all__ = ["gradcheck", "GradcheckResult", "ParameterCheck"]

#: default tolerance of :attr:`GradcheckResult.ok`
TOLERANCE = 1e-6


@dataclass(repr=False)
class ParameterCheck:
    """The check of one layer's weights or bias.

    ``rel_error`` is ``|analytic - numeric| / max(|analytic|, |numeric|,
    floor)`` elementwise: relative where the gradient is larger than the
    floor, and absolute divided by the floor below it, where the rounding of
    the finite difference (about 2**-52 |L| / eps) would dominate a relative
    error.
    """

    layer: int
    name: str  # "weights" or "bias"
    analytic: np.ndarray
    numeric: np.ndarray
    abs_error: np.ndarray
    rel_error: np.ndarray
    labels: list[str]  # default parameter names (w1, ..., bias1, ...), flat order

    @property
    def max_rel_error(self):
        return float(self.rel_error.max()) if self.rel_error.size else 0.0

    @property
    def max_abs_error(self):
        return float(self.abs_error.max()) if self.abs_error.size else 0.0

    @property
    def worst(self):
        """The name of the parameter with the largest relative error."""
        return self.labels[int(np.argmax(self.rel_error.reshape(-1)))]

    def __repr__(self):
        return (
            f"ParameterCheck(layer={self.layer}, {self.name}, "
            f"max_rel_error={self.max_rel_error:.3g})"
        )


@dataclass(repr=False)
class GradcheckResult:
    """What :func:`gradcheck` found.  ``print(result)`` writes a table."""

    checks: list[ParameterCheck] = field(default_factory=list)
    eps: float = 1e-6
    floor: float = 0.0
    loss: float = 0.0
    backend: str = ""
    network: str = ""

    @property
    def max_rel_error(self):
        return max((c.max_rel_error for c in self.checks), default=0.0)

    @property
    def max_abs_error(self):
        return max((c.max_abs_error for c in self.checks), default=0.0)

    def passed(self, tol=TOLERANCE):
        """True when every relative error is below ``tol``."""
        return self.max_rel_error < tol

    @property
    def ok(self):
        """``passed()`` at the default tolerance, 1e-6."""
        return self.passed()

    def layer(self, index, name="weights"):
        """The check of layer ``index``'s ``"weights"`` or ``"bias"``."""
        for c in self.checks:
            if c.layer == index and c.name == name:
                return c
        raise KeyError(f"no {name} check for layer {index}")

    def __str__(self):
        head = ["layer", "params", "n", "max |analytic|", "max abs error", "max rel error", "worst"]
        rows = [head]
        for c in self.checks:
            rows.append(
                [
                    str(c.layer),
                    c.name,
                    str(c.analytic.size),
                    fmt(np.abs(c.analytic).max()) if c.analytic.size else "",
                    f"{c.max_abs_error:.3g}",
                    f"{c.max_rel_error:.3g}",
                    c.worst,
                ]
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = [
            f"gradcheck of {self.network}: central differences, "
            f"eps {self.eps:g}, loss {fmt(self.loss)}",
            "",
        ]
        for r in rows:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        verdict = "OK" if self.ok else "MISMATCH"
        lines += [
            "",
            f"max relative error {self.max_rel_error:.3g} "
            f"(floor {self.floor:g}): {verdict} at tolerance {TOLERANCE:g}",
        ]
        return "\n".join(lines)

    def __repr__(self):
        return (
            f"GradcheckResult(max_rel_error={self.max_rel_error:.3g}, "
            f"checks={len(self.checks)}, ok={self.ok})"
        )


def gradcheck(net, X, y, eps=1e-6, gradients=None, floor=None):
    """Compare every analytic gradient of ``net`` on (X, y) with central
    finite differences; the network is left unchanged.

    Parameters
    ----------
    net : cbp.Network
    X, y : array_like
        A batch and its targets, as for :meth:`Network.backward`.
    eps : float, default 1e-6
        The step of the central difference.
    gradients : array_like (n_params,), optional
        Analytic gradients to check instead of the network's own, flat in the
        order of ``net.parameters`` (for instance gradients worked by hand).
    floor : float, optional
        Gradients smaller than this are compared absolutely (see
        :class:`ParameterCheck`).  By default, the size below which the
        rounding of the difference itself, about ``2**-52 * max(L, 1) / eps``
        for a loss L, is more than 1e-6 of the gradient:
        ``2**-52 * max(L, 1) / eps / 1e-6`` (2.2e-4 for a loss below 1 and
        the default eps).

    Returns
    -------
    GradcheckResult
        ``max_rel_error``, ``ok`` (below 1e-6) and one check a layer's
        weights and bias.

    Notes
    -----
    Finite differences are wrong across a kink: keep pre-activations away
    from 0 for relu-like activations, weights away from 0 with an L1
    penalty, and predictions away from the clipping of the cross-entropies
    (1e-7 and 1 - 1e-7).
    """
    X, Y, loss, reduction = _inputs(net, X, y)
    eps = _validation.real(eps, "eps", minimum=0.0, strict=True)
    K = net._kernels
    with net._guard.using:  # a consistent copy: no other thread trains meanwhile
        specs = _specs(net)
        values = _values(net)
    base = trace(net, X, Y)
    if floor is None:
        floor = np.finfo(np.float64).eps * max(abs(base.loss), 1.0) / eps / TOLERANCE
    floor = _validation.real(floor, "floor", minimum=0.0, strict=True)
    if gradients is None:
        flat = base.gradients
    else:
        flat = np.asarray(gradients, dtype=np.float64)
        if flat.shape != (net.parameters.size,):
            raise ValueError(
                f"gradients must have shape ({net.parameters.size},), got {flat.shape}"
            )
    labels = weight_names(net)
    checks = []
    off = 0
    with np.errstate(all="ignore"):
        for spec, wb in zip(specs, values):
            if wb is None:
                continue
            for name, P in (("weights", wb[0]), ("bias", wb[1])):
                if P is None:
                    continue
                view = P.reshape(-1)  # P is a private copy: perturbing it touches nothing
                numeric = np.empty(view.size)
                for k in range(view.size):
                    old = view[k]
                    view[k] = old + eps
                    up = _loss(K, specs, values, X, Y, loss, reduction)[0]
                    view[k] = old - eps
                    down = _loss(K, specs, values, X, Y, loss, reduction)[0]
                    view[k] = old
                    numeric[k] = (up - down) / (2.0 * eps)
                analytic = flat[off : off + view.size].copy()
                err = np.abs(analytic - numeric)
                scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
                checks.append(
                    ParameterCheck(
                        layer=spec["index"],
                        name=name,
                        analytic=analytic.reshape(P.shape),
                        numeric=numeric.reshape(P.shape),
                        abs_error=err.reshape(P.shape),
                        rel_error=(err / scale).reshape(P.shape),
                        labels=labels[off : off + view.size],
                    )
                )
                off += view.size
    return GradcheckResult(
        checks=checks, eps=eps, floor=floor, loss=base.loss, backend=net.backend, network=repr(net)
    )
