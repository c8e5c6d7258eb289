"""Learning-rate schedules for :meth:`Network.fit <cbp.Network.fit>`,
applied inside the native training loop, one rate an epoch.

``net.fit(X, y, optimizer=SGD(0.1), schedule=StepLR(10, gamma=0.5))``: epoch
``e`` runs at the schedule's rate for ``e``, computed from the optimizer's
base rate ``lr`` (the ``lr`` of :meth:`fit`, or the optimizer's ``lr``).  The
optimizer's ``decay`` then applies on top, step by step, as without a
schedule: a step ``t`` of epoch ``e`` uses ``rate(e) / (1 + decay * t)``.

Epochs are numbered by the network's ``epochs_trained``, so ``fit(epochs=5)``
twice runs the same rates as ``fit(epochs=10)`` once.  Per epoch, each one
computes what its ``torch.optim.lr_scheduler`` namesake gives (stepped once
an epoch), to rounding:

=====================  ===================================================
``StepLR``             ``StepLR``: ``lr * gamma ** (epoch // step_size)``
``ExponentialLR``      ``ExponentialLR``: ``lr * gamma ** epoch``
``CosineLR``           ``CosineAnnealingLR`` up to ``T_max``, then flat at
                       ``eta_min`` (torch's rises again after ``T_max``)
``ReduceLROnPlateau``  ``ReduceLROnPlateau`` with ``mode="min"``,
                       ``threshold_mode="rel"``
=====================  ===================================================

A callback that sets the optimizer's ``lr`` changes the base rate from the
next epoch on, and the schedule goes on from it: StepLR and ExponentialLR
multiply the new ``lr`` by the epoch's factor, CosineLR runs from the new
``lr`` towards ``eta_min``, and ReduceLROnPlateau multiplies it by the
reductions made so far.

``fit``'s history gains an ``lr`` column: the rate each epoch ran at (before
``decay``).
"""

import numpy as np

from . import _codes, _validation

__all__ = ["Schedule", "StepLR", "ExponentialLR", "CosineLR", "ReduceLROnPlateau"]


def _factor(value, name):
    value = _validation.real(value, name, minimum=0.0, strict=True)
    if value >= 1.0:
        raise ValueError(f"{name} must be < 1, got {value}")
    return value


#: setting -> its check (the value to store, or an exception), for every schedule
_CHECKS = {
    "step_size": lambda v: _validation.positive_int(v, "step_size"),
    "gamma": lambda v: _validation.real(v, "gamma", minimum=0.0, strict=True),
    "T_max": lambda v: _validation.positive_int(v, "T_max"),
    "eta_min": lambda v: _validation.real(v, "eta_min", minimum=0.0),
    "factor": lambda v: _factor(v, "factor"),
    "patience": lambda v: _validation.positive_int(v, "patience", minimum=0),
    "threshold": lambda v: _validation.real(v, "threshold", minimum=0.0),
    "cooldown": lambda v: _validation.positive_int(v, "cooldown", minimum=0),
    "min_lr": lambda v: _validation.real(v, "min_lr", minimum=0.0),
    "eps": lambda v: _validation.real(v, "eps", minimum=0.0),
}


class Schedule:
    """Base class: a schedule is a float64 vector for the engine
    (``cbp._codes.SCHEDULE_*`` columns), built from its settings.  Every
    setting is checked when it is set, as in the constructor; a change
    applies from the next ``fit`` call (or the next epoch, from a callback).
    """

    code = _codes.SCHEDULE_NONE

    def __setattr__(self, name, value):
        check = _CHECKS.get(name)
        object.__setattr__(self, name, value if check is None else check(value))

    def _vector(self):
        """The engine's schedule vector: the settings (and, for a plateau
        schedule, its state)."""
        s = np.zeros(_codes.N_SCHEDULE)
        s[_codes.SCHEDULE_KIND] = self.code
        return s

    def _keep(self, vector):
        """Take back the state the engine left in ``vector`` (nothing to keep
        for a schedule without state)."""

    def get_config(self):
        """The constructor arguments, as a dict."""
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class StepLR(Schedule):
    """``lr * gamma ** (epoch // step_size)``: the rate multiplied by
    ``gamma`` every ``step_size`` epochs."""

    code = _codes.SCHEDULE_STEP

    def __init__(self, step_size, gamma=0.1):
        self.step_size = step_size
        self.gamma = gamma

    def _vector(self):
        s = super()._vector()
        s[_codes.SCHEDULE_STEP_SIZE] = self.step_size
        s[_codes.SCHEDULE_GAMMA] = self.gamma
        return s

    def get_config(self):
        return {"step_size": self.step_size, "gamma": self.gamma}


class ExponentialLR(Schedule):
    """``lr * gamma ** epoch``."""

    code = _codes.SCHEDULE_EXPONENTIAL

    def __init__(self, gamma):
        self.gamma = gamma

    def _vector(self):
        s = super()._vector()
        s[_codes.SCHEDULE_GAMMA] = self.gamma
        return s

    def get_config(self):
        return {"gamma": self.gamma}


class CosineLR(Schedule):
    """``eta_min + (lr - eta_min) * (1 + cos(pi * e / T_max)) / 2`` with
    ``e = min(epoch, T_max)``: half a cosine from ``lr`` down to ``eta_min``
    over ``T_max`` epochs, then ``eta_min``."""

    code = _codes.SCHEDULE_COSINE

    def __init__(self, T_max, eta_min=0.0):
        self.T_max = T_max
        self.eta_min = eta_min

    def _vector(self):
        s = super()._vector()
        s[_codes.SCHEDULE_T_MAX] = self.T_max
        s[_codes.SCHEDULE_ETA_MIN] = self.eta_min
        return s

    def get_config(self):
        return {"T_max": self.T_max, "eta_min": self.eta_min}


class ReduceLROnPlateau(Schedule):
    """Multiply the rate by ``factor`` when the monitored loss stops improving.

    The monitored loss is ``val_loss`` when :meth:`fit` has validation data,
    else the training loss.  An epoch improves when its loss is below
    ``best * (1 - threshold)``; after more than ``patience`` epochs in a row
    without improvement the rate becomes ``max(rate * factor, min_lr)``
    (unless that lowers it by ``eps`` or less), and the next ``cooldown``
    epochs count no bad epochs.  The rate is the base ``lr`` times
    :attr:`scale`, the reductions so far.

    The state (:attr:`scale`, :attr:`best`, :attr:`num_bad_epochs`,
    :attr:`cooldown_counter`) carries over between ``fit`` calls given the
    same schedule, like an optimizer's; after an interrupted or diverged
    epoch it describes the last completed one.  :meth:`reset` forgets it.
    """

    code = _codes.SCHEDULE_PLATEAU

    def __init__(self, factor=0.1, patience=10, threshold=1e-4, cooldown=0, min_lr=0.0, eps=1e-8):
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.eps = eps
        self.reset()

    def reset(self):
        """Forget the state: scale 1, no best loss yet, no bad epochs."""
        self.scale = 1.0
        self.best = float("inf")
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _vector(self):
        s = super()._vector()
        s[_codes.SCHEDULE_FACTOR] = self.factor
        s[_codes.SCHEDULE_PATIENCE] = self.patience
        s[_codes.SCHEDULE_THRESHOLD] = self.threshold
        s[_codes.SCHEDULE_COOLDOWN] = self.cooldown
        s[_codes.SCHEDULE_MIN_LR] = self.min_lr
        s[_codes.SCHEDULE_EPS] = self.eps
        s[_codes.SCHEDULE_SCALE] = self.scale
        s[_codes.SCHEDULE_BEST] = self.best
        s[_codes.SCHEDULE_BAD_EPOCHS] = self.num_bad_epochs
        s[_codes.SCHEDULE_COOLDOWN_LEFT] = self.cooldown_counter
        return s

    def _keep(self, vector):
        self.scale = float(vector[_codes.SCHEDULE_SCALE])
        self.best = float(vector[_codes.SCHEDULE_BEST])
        self.num_bad_epochs = int(vector[_codes.SCHEDULE_BAD_EPOCHS])
        self.cooldown_counter = int(vector[_codes.SCHEDULE_COOLDOWN_LEFT])

    def get_config(self):
        return {
            "factor": self.factor,
            "patience": self.patience,
            "threshold": self.threshold,
            "cooldown": self.cooldown,
            "min_lr": self.min_lr,
            "eps": self.eps,
        }


def resolve(value):
    """A Schedule, or None; anything else is a TypeError."""
    if value is None or isinstance(value, Schedule):
        return value
    raise TypeError(
        f"schedule must be a cbp.schedules schedule (StepLR, ExponentialLR, CosineLR, "
        f"ReduceLROnPlateau) or None, got {type(value).__name__}"
    )
