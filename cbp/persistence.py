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
import os
import tempfile

import numpy as np

from . import _backend, optim
from . import _validation as V
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
        "optimizer": None if opt is None else {
            "name": opt.name, "config": opt.get_config(), "iterations": opt.iterations},
    }


def snapshot(net):
    """(state, parameters, optimizer state) copied under the network's guard,
    so that no other thread trains meanwhile."""
    with net._guard.using:
        opt = net._optimizer
        return (network_state(net), net.parameters.copy(),
                opt.state.copy() if opt is not None and opt.state is not None else np.empty(0))


def from_state(state, parameters, opt_state, backend=None):
    """Build a network from :func:`network_state` and its arrays, checking them."""
    cfg = state["config"]
    if parameters.ndim != 1:
        raise FormatError(f"the file's parameters must be 1-D, got shape {parameters.shape}")
    declared = 0
    for spec in cfg["layers"]:  # check the size before allocating anything
        if spec.get("type") not in LAYER_TYPES:
            raise FormatError("unknown layer type in the file")
        if spec.get("type") == "Dense":
            ni = V.positive_int(spec["n_inputs"], "n_inputs")  # ValueError/TypeError:
            no = V.positive_int(spec["n_neurons"], "n_neurons")  # an invalid description
            declared += ni * no + (no if spec.get("use_bias", True) else 0)
    if declared != parameters.size:
        raise FormatError(
            f"the file holds {parameters.size} parameters, its architecture needs {declared}")
    layers = []
    for spec in cfg["layers"]:
        spec = dict(spec)
        kind = LAYER_TYPES.get(spec.pop("type", None))
        if kind is None:
            raise FormatError("unknown layer type in the file")
        layers.append(kind(**spec))
    from .network import Network

    net = Network(layers, loss=cfg["loss"], reduction=cfg["reduction"], backend=backend,
                  seed=cfg["seed"])
    if parameters.shape != net.parameters.shape:
        raise FormatError(
            f"the file holds {parameters.size} parameters, its architecture needs "
            f"{net.parameters.size}")
    if not np.isfinite(parameters).all():
        raise FormatError("the file's parameters contain NaN or infinite values")
    np.copyto(net.parameters, parameters)
    net.epochs_trained = _count(state["epochs_trained"], "epochs_trained")
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
    """Write the network to a portable ``.npz`` file, atomically.

    The file holds the architecture (JSON), the parameters, the optimizer
    and its state, and the epoch count, so that training can resume.  It
    is written to a temporary file in the same folder and then renamed,
    so a crash mid-save never destroys an earlier file at ``path``.
    """
    path = os.fspath(path)
    state, parameters, opt_state = snapshot(net)
    arrays = {
        "format": np.array([FORMAT_VERSION], dtype=np.int64),
        "meta": np.array(json.dumps(state)),
        "parameters": parameters,
        "optimizer_state": opt_state,
    }
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".cbp-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


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
    """Read a network written by :meth:`Network.save`.

    Parameters
    ----------
    path : str or path-like
    backend : {"native", "numpy"}, optional
        Default: the backend the network was saved with, if available here.

    Raises
    ------
    FormatError
        If the file is truncated, corrupted, not a cbp file, or from a newer
        format version.
    """
    path = os.fspath(path)
    try:
        # open the file here so that it is closed even when numpy fails
        with open(path, "rb") as fh, _npz(np.load(fh, allow_pickle=False), path) as f:
            files = set(f.files)
            need = {"format", "meta", "parameters", "optimizer_state"}
            if not need <= files:
                raise FormatError(f"{path} is not a cbp network file (missing {sorted(need - files)})")
            version = f["format"]
            if version.shape != (1,) or version.dtype.kind not in "iu" or int(version[0]) < 1:
                raise FormatError(f"{path}: bad format field")
            if int(version[0]) > FORMAT_VERSION:
                raise FormatError(
                    f"{path} was written in format {int(version[0])} by a newer cbp; "
                    f"this cbp reads format {FORMAT_VERSION} and older")
            meta = str(f["meta"][()])
            parameters = np.asarray(f["parameters"], dtype=np.float64)
            opt_state = np.asarray(f["optimizer_state"], dtype=np.float64)
    except (FormatError, FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # zipfile, numpy's header parser, ... on a damaged file
        raise FormatError(
            f"{path} is not a readable cbp network file: {type(exc).__name__}: {exc}"
        ) from None
    try:
        state = json.loads(meta)
        if backend is None:
            backend = _pick_backend(state.get("backend"))
        return from_state(state, parameters, opt_state, backend=backend)
    except FormatError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise FormatError(f"{path} holds an invalid network description: {exc}") from None


def _npz(obj, path):
    """np.load's result, if it is an .npz archive (a context manager)."""
    if not isinstance(obj, np.lib.npyio.NpzFile):
        raise FormatError(f"{path} is a single .npy array, not a cbp network file")
    return obj


