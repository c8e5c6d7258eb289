"""Networks on disk: :func:`save` and :func:`load`.

A network file is an uncompressed ``.npz`` archive of four members:

``format``
    int64 (1,): the layout's version, :data:`FORMAT_VERSION`.
``meta``
    a unicode scalar: JSON of the architecture, the backend asked for, the
    epoch count and the optimizer's name, settings and step count.
``parameters``
    float64 (n_params,): the network's flat parameter buffer.
``optimizer_state``
    float64 (slots * n_params,), or empty without optimizer state.
"""

import json

import numpy as np

from . import _archive, _backend, _validation, optim
from ._errors import FormatError
from .layers import LAYER_TYPES

__all__ = ["FORMAT_VERSION", "save", "load"]

#: version of the ``.npz`` layout written by :func:`save`.
FORMAT_VERSION = 1


def network_state(net):
    """The JSON-ready description of a network (no arrays)."""
    opt = net._optimizer
    return {
        "config": net.get_config(),
        "backend": net._backend_request,
        "epochs_trained": net.epochs_trained,
        "metadata": net.metadata,
        "optimizer": None
        if opt is None
        else {"name": opt.name, "config": opt.get_config(), "iterations": opt.iterations},
    }


def snapshot(net):
    """(state, parameters, optimizer state) copied under the network's guard,
    so that no other thread trains meanwhile."""
    with net._guard.using:
        opt = net._optimizer
        return (
            network_state(net),
            net.parameters.copy(),
            opt.state.copy() if opt is not None and opt.state is not None else np.empty(0),
        )


def from_state(state, parameters, opt_state, backend=None):
    """Build a network from :func:`network_state` and its arrays, checking them."""
    cfg = state["config"]
    if parameters.ndim != 1:
        raise FormatError(f"the file's parameters must be 1-D, got shape {parameters.shape}")
    declared = parameter_count(cfg)  # checked before anything is allocated
    if declared != parameters.size:
        raise FormatError(
            f"the file holds {parameters.size} parameters, its architecture needs {declared}"
        )
    layers = []
    for spec in cfg["layers"]:
        spec = dict(spec)
        kind = LAYER_TYPES.get(spec.pop("type", None))
        if kind is None:
            raise FormatError("unknown layer type in the file")
        layers.append(kind(**spec))
    from .network import Network

    net = Network(
        layers,
        loss=cfg["loss"],
        reduction=cfg["reduction"],
        backend=backend,
        seed=cfg["seed"],
        check_output=cfg.get("check_output", True),
    )
    if parameters.shape != net.parameters.shape:
        raise FormatError(
            f"the file holds {parameters.size} parameters, its architecture needs "
            f"{net.parameters.size}"
        )
    if not np.isfinite(parameters).all():
        raise FormatError("the file's parameters contain NaN or infinite values")
    np.copyto(net.parameters, parameters)
    net.epochs_trained = _count(state["epochs_trained"], "epochs_trained")
    net.metadata = state.get("metadata")  # None when the file has none
    if net.metadata is not None and not isinstance(net.metadata, dict):
        raise FormatError("the file's metadata must be a JSON object")
    o = state["optimizer"]
    if o is not None:
        opt = optim.get(o["name"], **o["config"])
        opt.iterations = _count(o["iterations"], "iterations")
        if opt_state.size:  # empty: a fresh (or reset) optimizer
            if opt_state.shape != (opt.slots * net.parameters.size,):
                raise FormatError("the optimizer state does not fit the network")
            if not np.isfinite(opt_state).all():
                raise FormatError("the optimizer state contains NaN or infinite values")
            if opt.slots and isinstance(opt, (optim.Adagrad, optim.RMSprop, optim.Adam)):
                # accumulated squares (Adam's second slot) are never negative
                squares = opt_state[(opt.slots - 1) * net.parameters.size :]
                if (squares < 0).any():
                    raise FormatError("the optimizer state has negative squared-gradient sums")
            opt.state = np.array(opt_state, dtype=np.float64)
        net.optimizer = opt
    return net


def save(net, path):
    """Write the network to a portable ``.npz`` file, atomically; the path written.

    The file holds the architecture (JSON), the parameters, the optimizer
    and its state, and the epoch count, so that training can resume.  It
    is written to a temporary file in the same folder and then renamed,
    so a crash mid-save never destroys an earlier file at ``path``.  A
    path without a suffix gets ``.npz``; a symbolic link is written
    through to its target; a replaced file keeps its mode and a new one
    gets the umask's.  See :func:`cbp._archive.write`.

    Returns
    -------
    str
        The path written (``path``, plus ``.npz`` if it had no suffix).
    """
    state, parameters, opt_state = snapshot(net)
    arrays = {
        "format": np.array([FORMAT_VERSION], dtype=np.int64),
        "meta": np.array(json.dumps(state)),
        "parameters": parameters,
        "optimizer_state": opt_state,
    }
    return _archive.write(path, arrays)


def _count(value, name):
    """A non-negative integer read from a file (below 2**62)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62:
        raise FormatError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _pick_backend(requested):
    """The saved backend request, or the default if that backend is missing here."""
    if requested == "native" and not _backend.native_available():
        return None
    return requested


def load(path, backend=None):
    """Read a network written by :func:`save`.

    Parameters
    ----------
    path : str or path-like
        ``"m"`` reads ``m.npz`` when ``m`` does not exist (``save`` adds the suffix).
    backend : {"native", "numpy"}, optional
        Default: the backend the network was saved with, if available here.

    Raises
    ------
    FormatError
        If the file is truncated, corrupted, not a cbp file, or from a newer
        format version.  Every header and size in the file is checked against
        the architecture it describes before its arrays are read (see
        :mod:`cbp._archive`).
    """
    path = _archive.resolve_for_reading(path)
    state, parameters, opt_state = _archive.read(path, file_lengths, FORMAT_VERSION)
    try:
        if backend is None:
            backend = _pick_backend(state.get("backend"))
        return from_state(state, parameters, opt_state, backend=backend)
    except FormatError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise FormatError(f"{path} holds an invalid network description: {exc}") from None


def parameter_count(config):
    """The parameters an architecture description needs (checked as it counts)."""
    n = 0
    for spec in config["layers"]:
        if spec.get("type") not in LAYER_TYPES:
            raise FormatError("unknown layer type in the file")
        if spec["type"] == "Dense":
            ni = _validation.positive_int(spec["n_inputs"], "n_inputs")
            no = _validation.positive_int(spec["n_neurons"], "n_neurons")
            n += ni * no + (no if spec.get("use_bias", True) else 0)
    return n


def file_lengths(state):
    """The array lengths a file with this description holds: load reads no other."""
    n = parameter_count(state["config"])
    o = state["optimizer"]
    slots = 0 if o is None else optim.get(o["name"], **o["config"]).slots
    return {"parameters": (n,), "optimizer_state": (0, slots * n) if slots else (0,)}
