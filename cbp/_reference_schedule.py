"""The learning-rate schedules of the twin's ``Engine.fit`` (the native ones
are ``src/_engine_schedule.pxi``): the check of the schedule vector, the
rate of an epoch, and the plateau state updated after it.

The same operations in the same order, on Python floats (libm's pow and
cos), so that both backends give the same rates bit for bit.  The vector's
entries are the ``SCHEDULE_*`` columns of ``cbp._codes``.
"""

import math

import numpy as np

from . import _codes as C

__all__ = ["check_schedule", "schedule_rate", "schedule_end_epoch"]


def check_schedule(s):
    """ValueError unless ``s`` is a schedule vector fit can run."""
    if s.shape != (C.N_SCHEDULE,):
        raise ValueError("Engine: the schedule vector has the wrong size")
    finite = np.isfinite(s)
    finite[C.SCHEDULE_BEST] = True
    if not finite.all():
        raise ValueError("Engine: the schedule holds NaN or inf")
    kind = s[C.SCHEDULE_KIND]
    if kind not in (
        C.SCHEDULE_NONE,
        C.SCHEDULE_STEP,
        C.SCHEDULE_EXPONENTIAL,
        C.SCHEDULE_COSINE,
        C.SCHEDULE_PLATEAU,
    ):
        raise ValueError("Engine: bad schedule code")
    if kind == C.SCHEDULE_STEP and not (
        s[C.SCHEDULE_STEP_SIZE] >= 1.0
        and s[C.SCHEDULE_STEP_SIZE] == math.floor(s[C.SCHEDULE_STEP_SIZE])
        and s[C.SCHEDULE_GAMMA] > 0.0
    ):
        raise ValueError("Engine: bad step schedule")
    if kind == C.SCHEDULE_EXPONENTIAL and not s[C.SCHEDULE_GAMMA] > 0.0:
        raise ValueError("Engine: bad exponential schedule")
    if kind == C.SCHEDULE_COSINE and not (
        s[C.SCHEDULE_T_MAX] >= 1.0
        and s[C.SCHEDULE_T_MAX] == math.floor(s[C.SCHEDULE_T_MAX])
        and s[C.SCHEDULE_ETA_MIN] >= 0.0
    ):
        raise ValueError("Engine: bad cosine schedule")
    if kind == C.SCHEDULE_PLATEAU and not (
        0.0 < s[C.SCHEDULE_FACTOR] < 1.0
        and s[C.SCHEDULE_PATIENCE] >= 0.0
        and s[C.SCHEDULE_THRESHOLD] >= 0.0
        and s[C.SCHEDULE_COOLDOWN] >= 0.0
        and s[C.SCHEDULE_MIN_LR] >= 0.0
        and s[C.SCHEDULE_EPS] >= 0.0
        and s[C.SCHEDULE_SCALE] > 0.0
        and s[C.SCHEDULE_BAD_EPOCHS] >= 0.0
        and s[C.SCHEDULE_COOLDOWN_LEFT] >= 0.0
        and not math.isnan(s[C.SCHEDULE_BEST])
    ):
        raise ValueError("Engine: bad plateau schedule")


def schedule_rate(s, lr, epoch):
    """The learning rate of epoch ``epoch`` for base rate ``lr``."""
    kind, lr, e = int(s[C.SCHEDULE_KIND]), float(lr), float(epoch)
    if kind == C.SCHEDULE_STEP:
        return lr * math.pow(
            float(s[C.SCHEDULE_GAMMA]), math.floor(e / float(s[C.SCHEDULE_STEP_SIZE]))
        )
    if kind == C.SCHEDULE_EXPONENTIAL:
        return lr * math.pow(float(s[C.SCHEDULE_GAMMA]), e)
    if kind == C.SCHEDULE_COSINE:
        t, eta_min = float(s[C.SCHEDULE_T_MAX]), float(s[C.SCHEDULE_ETA_MIN])
        e = min(e, t)
        return eta_min + (lr - eta_min) * (1.0 + math.cos(math.pi * e / t)) / 2.0
    if kind == C.SCHEDULE_PLATEAU:
        return lr * float(s[C.SCHEDULE_SCALE])
    return lr


def schedule_end_epoch(s, monitored, lr, rate):
    """After an epoch run at ``rate`` (base rate ``lr``) whose monitored loss
    is ``monitored``: the plateau state, updated in place as torch's
    ReduceLROnPlateau (mode 'min', threshold_mode 'rel') steps it."""
    if int(s[C.SCHEDULE_KIND]) != C.SCHEDULE_PLATEAU:
        return
    if monitored < s[C.SCHEDULE_BEST] * (1.0 - s[C.SCHEDULE_THRESHOLD]):
        s[C.SCHEDULE_BEST] = monitored
        s[C.SCHEDULE_BAD_EPOCHS] = 0.0
    else:
        s[C.SCHEDULE_BAD_EPOCHS] += 1.0
    if s[C.SCHEDULE_COOLDOWN_LEFT] > 0.0:  # bad epochs in the cooldown do not count
        s[C.SCHEDULE_COOLDOWN_LEFT] -= 1.0
        s[C.SCHEDULE_BAD_EPOCHS] = 0.0
    if s[C.SCHEDULE_BAD_EPOCHS] > s[C.SCHEDULE_PATIENCE]:
        new = max(float(rate) * float(s[C.SCHEDULE_FACTOR]), float(s[C.SCHEDULE_MIN_LR]))
        if rate - new > s[C.SCHEDULE_EPS]:
            s[C.SCHEDULE_SCALE] = new / lr
        s[C.SCHEDULE_COOLDOWN_LEFT] = s[C.SCHEDULE_COOLDOWN]
        s[C.SCHEDULE_BAD_EPOCHS] = 0.0
