"""Optimizers, with nnfs semantics.

Each optimizer keeps its state in one contiguous float64 buffer parallel to
the network's parameters (``slots`` rows of ``n_params``), and its update is
a fused native kernel over the trainable parameters.  The learning rate
decays as ``lr / (1 + decay * t)``, where ``t`` counts the steps taken.

With ``decay=0`` each one computes what its ``torch.optim`` namesake
computes (to rounding):

============  =====================================================
``SGD``       ``torch.optim.SGD`` (momentum, nesterov, dampening 0)
``Adagrad``   ``torch.optim.Adagrad`` with ``eps=epsilon``
``RMSprop``   ``torch.optim.RMSprop`` with ``alpha=rho``
``Adam``      ``torch.optim.Adam`` with ``betas=(beta_1, beta_2)``
============  =====================================================
"""

import numpy as np

from . import _codes, _validation
from ._guard import Guard

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "get", "resolve"]


class Optimizer:
    """Base class: hyper-parameters, the step counter and the state buffer.

    Attributes
    ----------
    iterations : int
        Steps taken so far (``t`` in the decay and in Adam's bias correction).
    state : ndarray (slots * n_params,)
        The per-parameter state, allocated when the optimizer is first used
        with a network; empty for plain SGD.

    Every attribute is checked when it is set, as in the constructor.  While
    a network trains with the optimizer, setting one from another thread
    raises ``RuntimeError``; from a ``fit`` callback (the training thread)
    it is allowed, and a new ``lr`` takes effect from the next epoch.
    """

    kind: int = -1  # optimizer code, set by each subclass
    name: str = ""

    def __init__(self, lr, decay):
        object.__setattr__(self, "_guard", Guard("optimizer"))
        self.lr = lr
        self.decay = decay
        self.iterations = 0
        self.state = None

    def _check(self, name, value):
        """The value to store for attribute ``name`` (checked), or raise."""
        if name == "lr":
            return _validation.real(value, "lr", minimum=0.0, strict=True)
        if name == "decay":
            return _validation.real(value, "decay", minimum=0.0)
        if name == "iterations":
            return _validation.positive_int(value, "iterations", minimum=0)
        if name == "state":
            return None if value is None else _state_buffer(value)
        return value

    def __setattr__(self, name, value):
        value = self._check(name, value)
        with self._guard.using:  # refused while another thread trains with it
            object.__setattr__(self, name, value)
            if name != "iterations" and name != "state":  # a hyper-parameter
                self.__dict__.pop("_hyper_cache", None)

    def _hyper_vector(self):
        """:meth:`_hyper`, read-only, kept until a hyper-parameter is set
        (for ``fit``'s fast path, which calls it on every call)."""
        h = self.__dict__.get("_hyper_cache")
        if h is None:
            h = self._hyper()
            h.flags.writeable = False
            object.__setattr__(self, "_hyper_cache", h)
        return h

    def __getstate__(self):
        with self._guard.using:
            d = dict(self.__dict__)
        del d["_guard"]
        d.pop("_hyper_cache", None)
        if d.get("state") is not None:
            d["state"] = d["state"].copy()
        return d

    def __setstate__(self, d):
        object.__setattr__(self, "_guard", Guard("optimizer"))
        self.__dict__.update(d)

    @property
    def slots(self):
        """State rows a parameter needs."""
        return 1

    @property
    def current_lr(self):
        """The learning rate of the next step, after decay."""
        return self.lr / (1.0 + self.decay * self.iterations)

    def _hyper(self):
        h = np.zeros(_codes.N_OPTIMIZER_HYPER)
        h[_codes.HYPER_LEARNING_RATE] = self.lr
        h[_codes.HYPER_DECAY] = self.decay
        return h

    def _bind(self, n_params):
        """Allocate (or check) the state for a network of n_params parameters."""
        size = self.slots * n_params
        if self.state is None:
            self.state = np.zeros(size)
        elif self.state.shape != (size,):
            raise ValueError(
                f"this {type(self).__name__} holds state for "
                f"{self.state.size // max(self.slots, 1)} parameters, the network has "
                f"{n_params}; use a new optimizer"
            )
        return self.state

    def reset(self):
        """Forget the state and the step count."""
        self.iterations = 0
        self.state = None

    def get_config(self):
        """The constructor arguments, as a dict."""
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum.

    Without momentum: ``p -= lr_t * g``.  With momentum ``mu``:
    ``u = mu * u - lr_t * g``, then ``p += u`` (or ``p += mu * u - lr_t * g``
    with ``nesterov=True``).

    ``momentum`` may be changed between calls, or from a ``fit`` callback.
    Turned on for an optimizer that has trained without it, the velocity
    ``u`` starts from zero at the next step, as ``torch.optim.SGD`` starts
    its momentum buffer; turned off, the velocity is dropped (``state``
    becomes empty), so turning it on again starts from zero once more
    (torch would resume its old buffer).
    """

    kind = _codes.OPT_SGD
    name = "sgd"

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, decay=0.0):
        object.__setattr__(self, "nesterov", False)
        super().__init__(lr, decay)
        self.momentum = momentum
        self.nesterov = nesterov

    def _check(self, name, value):
        if name == "momentum":
            value = _validation.real(value, "momentum", minimum=0.0)
            if value == 0.0 and self.nesterov:
                raise ValueError("nesterov=True needs a momentum > 0")
            return value
        if name == "nesterov":
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"nesterov must be a bool, got {type(value).__name__}")
            if value and self.momentum == 0.0:
                raise ValueError("nesterov=True needs a momentum > 0")
            return bool(value)
        return super()._check(name, value)

    @property
    def slots(self):
        return 1 if self.momentum > 0.0 else 0

    def _bind(self, n_params):
        # momentum switched on (no velocity yet) or off (one velocity, now
        # unused) since the state was made: a zero velocity, or none
        state = self.state
        if state is not None:
            size = self.slots * n_params
            if state.size == 0 and size == n_params:
                self.state = np.zeros(size)
            elif state.size == n_params and size == 0:
                self.state = np.zeros(0)
        return super()._bind(n_params)

    def _hyper(self):
        h = super()._hyper()
        h[_codes.HYPER_MOMENTUM] = self.momentum
        h[_codes.HYPER_NESTEROV] = float(self.nesterov)
        return h

    def get_config(self):
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "decay": self.decay,
        }


class Adagrad(Optimizer):
    """Adagrad: ``c += g**2; p -= lr_t * g / (sqrt(c) + epsilon)``."""

    kind = _codes.OPT_ADAGRAD
    name = "adagrad"

    def __init__(self, lr=0.01, epsilon=1e-7, decay=0.0):
        super().__init__(lr, decay)
        self.epsilon = epsilon

    def _check(self, name, value):
        if name == "epsilon":
            return _validation.real(value, "epsilon", minimum=0.0, strict=True)
        return super()._check(name, value)

    def _hyper(self):
        h = super()._hyper()
        h[_codes.HYPER_EPSILON] = self.epsilon
        return h

    def get_config(self):
        return {"lr": self.lr, "epsilon": self.epsilon, "decay": self.decay}


class RMSprop(Optimizer):
    """RMSprop: ``c = rho * c + (1 - rho) * g**2; p -= lr_t * g / (sqrt(c) + epsilon)``."""

    kind = _codes.OPT_RMSPROP
    name = "rmsprop"

    def __init__(self, lr=0.001, rho=0.9, epsilon=1e-7, decay=0.0):
        super().__init__(lr, decay)
        self.rho = rho
        self.epsilon = epsilon

    def _check(self, name, value):
        if name == "rho":
            return _validation.real(value, "rho", minimum=0.0, maximum=1.0)
        if name == "epsilon":
            return _validation.real(value, "epsilon", minimum=0.0, strict=True)
        return super()._check(name, value)

    def _hyper(self):
        h = super()._hyper()
        h[_codes.HYPER_RHO] = self.rho
        h[_codes.HYPER_EPSILON] = self.epsilon
        return h

    def get_config(self):
        return {"lr": self.lr, "rho": self.rho, "epsilon": self.epsilon, "decay": self.decay}


class Adam(Optimizer):
    """Adam with bias correction:
    ``m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g**2;
    p -= lr_t * (m / (1 - b1**t')) / (sqrt(v / (1 - b2**t')) + epsilon)``
    with ``t' = t + 1``.
    """

    kind = _codes.OPT_ADAM
    name = "adam"

    def __init__(self, lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, decay=0.0):
        super().__init__(lr, decay)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def _check(self, name, value):
        if name in ("beta_1", "beta_2"):
            value = _validation.real(value, name, minimum=0.0)
            if value >= 1.0:
                raise ValueError("beta_1 and beta_2 must be < 1")
            return value
        if name == "epsilon":
            return _validation.real(value, "epsilon", minimum=0.0, strict=True)
        return super()._check(name, value)

    @property
    def slots(self):
        return 2

    def _hyper(self):
        h = super()._hyper()
        h[_codes.HYPER_BETA1] = self.beta_1
        h[_codes.HYPER_BETA2] = self.beta_2
        h[_codes.HYPER_EPSILON] = self.epsilon
        return h

    def get_config(self):
        return {
            "lr": self.lr,
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "decay": self.decay,
        }


def _state_buffer(value):
    """An optimizer state given by the user: a finite float64 vector, copied."""
    A = np.asarray(value)
    if A.dtype.kind not in "iuf":
        raise TypeError(f"state must hold real numbers, got dtype {A.dtype}")
    if A.ndim != 1:
        raise ValueError(f"state must be 1-D (slots * n_params,), got shape {A.shape}")
    A = np.array(A, dtype=np.float64)  # a private copy: the engine writes into it
    if not np.isfinite(A).all():
        raise ValueError("state contains NaN or infinite values")
    return A


_BY_NAME = {cls.name: cls for cls in (SGD, Adagrad, RMSprop, Adam)}


def resolve(value, what="optimizer"):
    """An Optimizer, or one made by name (``"adam"`` -> ``Adam()``), or None."""
    if value is None or isinstance(value, Optimizer):
        return value
    if isinstance(value, str):
        return get(value)
    raise TypeError(
        f"{what} must be a cbp.optim optimizer or its name ({', '.join(_BY_NAME)}), "
        f"got {type(value).__name__}"
    )


def get(name, **kwargs):
    """An optimizer by name: ``get("adam", lr=0.01)``."""
    cls = _BY_NAME.get(str(name).lower())
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; expected one of: {', '.join(_BY_NAME)}")
    return cls(**kwargs)
