# Included by _core.pyx.  The learning-rate schedules of Engine.fit: the
# rate of an epoch, and the plateau state updated after it, from the float64
# ``schedule`` vector whose entries are the SCHEDULE_* columns of _codes.pxd.
# cbp/_reference_schedule.py computes the same, operation for operation (the same
# libm pow and cos), so that both backends give bit-identical rates.

from libc.math cimport pow, cos, floor, M_PI


cdef int _check_schedule(const double[::1] s) except -1:
    """ValueError unless ``s`` is a schedule vector the loop can run."""
    _check(s.shape[0] == N_SCHEDULE, "Engine: the schedule vector has the wrong size")
    cdef double kind = s[SCHEDULE_KIND]
    cdef Py_ssize_t i
    for i in range(N_SCHEDULE):
        _check(isfinite(s[i]) or i == SCHEDULE_BEST, "Engine: the schedule holds NaN or inf")
    _check(kind == SCHEDULE_NONE or kind == SCHEDULE_STEP or kind == SCHEDULE_EXPONENTIAL
           or kind == SCHEDULE_COSINE or kind == SCHEDULE_PLATEAU, "Engine: bad schedule code")
    if kind == SCHEDULE_STEP:
        _check(s[SCHEDULE_STEP_SIZE] >= 1.0
               and s[SCHEDULE_STEP_SIZE] == floor(s[SCHEDULE_STEP_SIZE])
               and s[SCHEDULE_GAMMA] > 0.0, "Engine: bad step schedule")
    elif kind == SCHEDULE_EXPONENTIAL:
        _check(s[SCHEDULE_GAMMA] > 0.0, "Engine: bad exponential schedule")
    elif kind == SCHEDULE_COSINE:
        _check(s[SCHEDULE_T_MAX] >= 1.0 and s[SCHEDULE_T_MAX] == floor(s[SCHEDULE_T_MAX])
               and s[SCHEDULE_ETA_MIN] >= 0.0, "Engine: bad cosine schedule")
    elif kind == SCHEDULE_PLATEAU:
        _check(0.0 < s[SCHEDULE_FACTOR] < 1.0 and s[SCHEDULE_PATIENCE] >= 0.0
               and s[SCHEDULE_THRESHOLD] >= 0.0 and s[SCHEDULE_COOLDOWN] >= 0.0
               and s[SCHEDULE_MIN_LR] >= 0.0 and s[SCHEDULE_EPS] >= 0.0
               and s[SCHEDULE_SCALE] > 0.0 and s[SCHEDULE_BAD_EPOCHS] >= 0.0
               and s[SCHEDULE_COOLDOWN_LEFT] >= 0.0 and not (s[SCHEDULE_BEST] != s[SCHEDULE_BEST]),
               "Engine: bad plateau schedule")
    return 0


cdef double _schedule_rate(const double* s, double lr, uint64_t epoch) noexcept nogil:
    """The learning rate of epoch ``epoch`` for base rate ``lr``."""
    cdef int kind = <int>s[SCHEDULE_KIND]
    cdef double e = <double>epoch, t
    if kind == SCHEDULE_STEP:
        return lr * pow(s[SCHEDULE_GAMMA], floor(e / s[SCHEDULE_STEP_SIZE]))
    if kind == SCHEDULE_EXPONENTIAL:
        return lr * pow(s[SCHEDULE_GAMMA], e)
    if kind == SCHEDULE_COSINE:
        t = s[SCHEDULE_T_MAX]
        if e > t:
            e = t
        return (s[SCHEDULE_ETA_MIN]
                + (lr - s[SCHEDULE_ETA_MIN]) * (1.0 + cos(M_PI * e / t)) / 2.0)
    if kind == SCHEDULE_PLATEAU:
        return lr * s[SCHEDULE_SCALE]
    return lr


cdef void _schedule_end_epoch(double* s, double monitored, double lr, double rate) noexcept nogil:
    """After an epoch run at ``rate`` (base rate ``lr``) whose monitored loss
    is ``monitored``: the plateau state, as torch's ReduceLROnPlateau (mode
    'min', threshold_mode 'rel') steps it.  Nothing for the other kinds."""
    cdef double new
    if <int>s[SCHEDULE_KIND] != SCHEDULE_PLATEAU:
        return
    if monitored < s[SCHEDULE_BEST] * (1.0 - s[SCHEDULE_THRESHOLD]):
        s[SCHEDULE_BEST] = monitored
        s[SCHEDULE_BAD_EPOCHS] = 0.0
    else:
        s[SCHEDULE_BAD_EPOCHS] += 1.0
    if s[SCHEDULE_COOLDOWN_LEFT] > 0.0:  # bad epochs in the cooldown do not count
        s[SCHEDULE_COOLDOWN_LEFT] -= 1.0
        s[SCHEDULE_BAD_EPOCHS] = 0.0
    if s[SCHEDULE_BAD_EPOCHS] > s[SCHEDULE_PATIENCE]:
        new = rate * s[SCHEDULE_FACTOR]
        if new < s[SCHEDULE_MIN_LR]:
            new = s[SCHEDULE_MIN_LR]
        if rate - new > s[SCHEDULE_EPS]:
            s[SCHEDULE_SCALE] = new / lr
        s[SCHEDULE_COOLDOWN_LEFT] = s[SCHEDULE_COOLDOWN]
        s[SCHEDULE_BAD_EPOCHS] = 0.0
