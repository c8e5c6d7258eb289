"""The learning-rate schedules of the twin's ``Engine.fit`` (the native ones
are ``src/_engine_schedule.pxi``): the check of the schedule vector, the
rate of an epoch, and the plateau state updated after it.

The same operations in the same order, on Python floats (libm's pow and
cos), so that both backends give the same rates bit for bit.  The vector's
entries are the ``SCHEDULE_*`` columns of ``cbp._codes``.
"""

import math

import numpy as np

from . import _codes

__all__ = ["check_schedule", "schedule_rate", "schedule_end_epoch"]


def check_schedule(s):
    """ValueError unless ``s`` is a schedule vector fit can run."""
    if s.shape != (_codes.N_SCHEDULE,):
        raise ValueError("Engine: the schedule vector has the wrong size")
    finite = np.isfinite(s)
    finite[_codes.SCHEDULE_BEST] = True
    if not finite.all():
        raise ValueError("Engine: the schedule holds NaN or inf")
    kind = s[_codes.SCHEDULE_KIND]
    if kind not in (
        _codes.SCHEDULE_NONE,
        _codes.SCHEDULE_STEP,
        _codes.SCHEDULE_EXPONENTIAL,
        _codes.SCHEDULE_COSINE,
        _codes.SCHEDULE_PLATEAU,
    ):
        raise ValueError("Engine: bad schedule code")
    if kind == _codes.SCHEDULE_STEP and not (
        s[_codes.SCHEDULE_STEP_SIZE] >= 1.0
        and s[_codes.SCHEDULE_STEP_SIZE] == math.floor(s[_codes.SCHEDULE_STEP_SIZE])
        and s[_codes.SCHEDULE_GAMMA] > 0.0
    ):
        raise ValueError("Engine: bad step schedule")
    if kind == _codes.SCHEDULE_EXPONENTIAL and not s[_codes.SCHEDULE_GAMMA] > 0.0:
        raise ValueError("Engine: bad exponential schedule")
    if kind == _codes.SCHEDULE_COSINE and not (
        s[_codes.SCHEDULE_T_MAX] >= 1.0
        and s[_codes.SCHEDULE_T_MAX] == math.floor(s[_codes.SCHEDULE_T_MAX])
        and s[_codes.SCHEDULE_ETA_MIN] >= 0.0
    ):
        raise ValueError("Engine: bad cosine schedule")
    if kind == _codes.SCHEDULE_PLATEAU and not (
        0.0 < s[_codes.SCHEDULE_FACTOR] < 1.0
        and s[_codes.SCHEDULE_PATIENCE] >= 0.0
        and s[_codes.SCHEDULE_THRESHOLD] >= 0.0
        and s[_codes.SCHEDULE_COOLDOWN] >= 0.0
        and s[_codes.SCHEDULE_MIN_LR] >= 0.0
        and s[_codes.SCHEDULE_EPS] >= 0.0
        and s[_codes.SCHEDULE_SCALE] > 0.0
        and s[_codes.SCHEDULE_BAD_EPOCHS] >= 0.0
        and s[_codes.SCHEDULE_COOLDOWN_LEFT] >= 0.0
        and not math.isnan(s[_codes.SCHEDULE_BEST])
    ):
        raise ValueError("Engine: bad plateau schedule")


def schedule_rate(s, lr, epoch):
    """The learning rate of epoch ``epoch`` for base rate ``lr``."""
    kind, lr, e = int(s[_codes.SCHEDULE_KIND]), float(lr), float(epoch)
    if kind == _codes.SCHEDULE_STEP:
        return lr * math.pow(
            float(s[_codes.SCHEDULE_GAMMA]), math.floor(e / float(s[_codes.SCHEDULE_STEP_SIZE]))
        )
    if kind == _codes.SCHEDULE_EXPONENTIAL:
        return lr * math.pow(float(s[_codes.SCHEDULE_GAMMA]), e)
    if kind == _codes.SCHEDULE_COSINE:
        t, eta_min = float(s[_codes.SCHEDULE_T_MAX]), float(s[_codes.SCHEDULE_ETA_MIN])
        e = min(e, t)
        return eta_min + (lr - eta_min) * (1.0 + math.cos(math.pi * e / t)) / 2.0
    if kind == _codes.SCHEDULE_PLATEAU:
        return lr * float(s[_codes.SCHEDULE_SCALE])
    return lr


def schedule_end_epoch(s, monitored, lr, rate):
    """After an epoch run at ``rate`` (base rate ``lr``) whose monitored loss
    is ``monitored``: the plateau state, updated in place as torch's
    ReduceLROnPlateau (mode 'min', threshold_mode 'rel') steps it."""
    if int(s[_codes.SCHEDULE_KIND]) != _codes.SCHEDULE_PLATEAU:
        return
    if monitored < s[_codes.SCHEDULE_BEST] * (1.0 - s[_codes.SCHEDULE_THRESHOLD]):
        s[_codes.SCHEDULE_BEST] = monitored
        s[_codes.SCHEDULE_BAD_EPOCHS] = 0.0
    else:
        s[_codes.SCHEDULE_BAD_EPOCHS] += 1.0
    if s[_codes.SCHEDULE_COOLDOWN_LEFT] > 0.0:  # bad epochs in the cooldown do not count
        s[_codes.SCHEDULE_COOLDOWN_LEFT] -= 1.0
        s[_codes.SCHEDULE_BAD_EPOCHS] = 0.0
    if s[_codes.SCHEDULE_BAD_EPOCHS] > s[_codes.SCHEDULE_PATIENCE]:
        new = max(float(rate) * float(s[_codes.SCHEDULE_FACTOR]), float(s[_codes.SCHEDULE_MIN_LR]))
        if rate - new > s[_codes.SCHEDULE_EPS]:
            s[_codes.SCHEDULE_SCALE] = new / lr
        s[_codes.SCHEDULE_COOLDOWN_LEFT] = s[_codes.SCHEDULE_COOLDOWN]
        s[_codes.SCHEDULE_BAD_EPOCHS] = 0.0
