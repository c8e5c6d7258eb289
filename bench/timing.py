"""Timing helpers: an autotimeit-style timer and the thread-count switch.

``autotimeit(func)`` times ``func(n)``, a callable that does ``n`` units of
work (``n`` epochs, ``n`` steps, ``n`` calls).  Like bottleneck's
``autotimeit`` it first grows ``n`` until one call takes at least ``target``
seconds (those calibration calls double as the warm-up), then repeats the
call ``repeats`` times with that ``n`` and reports the *median* time per unit.
Passing the unit count into the callable, rather than calling a one-unit
function in a Python loop, lets a peer run its own loop: ``net.fit(epochs=n)``
is one native call, while a seed-style NumPy loop runs ``for _ in range(n)``.

``thread_limits(n)`` is the context every peer is timed in: BLAS and OpenMP
pools limited to ``n`` threads through threadpoolctl, and torch's intra-op
pool set to ``n``; ``n=None`` leaves every library at its default.
"""

import contextlib
import gc
import math
import statistics
import time
from dataclasses import asdict, dataclass, field

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - reported by run.py
    threadpool_limits = None

try:
    import torch
except ImportError:  # pragma: no cover - the torch peers are skipped
    torch = None

#: torch's own thread count, read once at import before anything changes it.
TORCH_DEFAULT_THREADS = torch.get_num_threads() if torch is not None else None


@dataclass
class Timing:
    """The outcome of :func:`autotimeit`; all times are seconds per unit."""

    number: int  # units of work per timed call
    per_unit: list = field(default_factory=list)  # wall-clock, one entry per repeat
    cpu_per_unit: list = field(default_factory=list)  # process CPU time, likewise

    def add(self, wall, cpu):
        """Record one timed call of ``number`` units (seconds for the whole call)."""
        self.per_unit.append(wall / self.number)
        self.cpu_per_unit.append(cpu / self.number)

    @property
    def median(self):
        return statistics.median(self.per_unit)

    @property
    def best(self):
        return min(self.per_unit)

    @property
    def spread(self):
        """(max - min) / median over the repeats: how steady the timing was."""
        return (max(self.per_unit) - min(self.per_unit)) / self.median

    @property
    def cpu_median(self):
        """Median process CPU time per unit.  Unlike the wall-clock time it does
        not grow while other processes hold the CPU; for a single-threaded
        peer on a quiet machine the two agree."""
        return statistics.median(self.cpu_per_unit) if self.cpu_per_unit else None

    def as_dict(self):
        d = asdict(self)
        d.update(median=self.median, best=self.best, spread=self.spread, cpu_median=self.cpu_median)
        return d


def _timed(func, n, cpu=False):
    """Wall seconds taken by func(n) (and process CPU seconds, with cpu=True),
    with the garbage collector off, as timeit does."""
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        func(n)
        t1, c1 = time.perf_counter(), time.process_time()
        return (t1 - t0, c1 - c0) if cpu else t1 - t0
    finally:
        if gc_was_on:
            gc.enable()


def _rung(x, down=False):
    """The 1-2-5 number (1, 2, 5, 10, 20, ...) nearest x: the smallest one
    >= x, or with down=True the largest one <= x (never below 1)."""
    x = max(1.0, x)
    decade = 10 ** math.floor(math.log10(x) + 1e-12)
    ladder = [m * decade for m in (1, 2, 5, 10)]
    if down:
        return int(max(r for r in ladder if r <= x * (1 + 1e-12)))
    return int(min(r for r in ladder if r >= x * (1 - 1e-12)))


def calibrate(func, *, target=0.2, min_number=1, max_seconds=None, max_number=10**9):
    """Find n such that func(n) lasts at least ``target`` seconds.

    n starts at ``min_number`` and climbs the 1-2-5 ladder (jumping close to
    the target when a call was much too short).  Every call made here is
    also a warm-up.  With ``max_seconds``, a probe call first estimates the
    time per unit, and if ``min_number`` units would take longer than
    ``max_seconds`` the minimum is lowered (a slow peer is then timed over
    fewer units than the others; Timing.number records how many).

    Returns (n, seconds of the last call).
    """
    if max_seconds and min_number > 1:
        probe = max(1, min_number // 100)
        per = _timed(func, probe) / probe
        if per * min_number > max_seconds:
            min_number = _rung(max_seconds / per, down=True)
    n = min_number
    t = _timed(func, n)
    while t < target and n < max_number:
        grow = 10.0 if t <= 0 else min(10.0, max(2.0, 1.1 * target / t))
        n = min(max_number, min_number * _rung(n / min_number * grow))
        t = _timed(func, n)
    return n, t


def time_call(func, n):
    """(wall seconds, process CPU seconds) of one call func(n)."""
    return _timed(func, n, cpu=True)


def autotimeit(func, *, target=0.2, repeats=7, min_number=1, max_seconds=None):
    """Median seconds per unit of ``func(n)``, a callable doing n units of work.

    ``calibrate`` picks n (at least ``min_number``, e.g. 10_000 to time whole
    10,000-epoch trainings) so that one call lasts ``target`` seconds; then
    func(n) is timed ``repeats`` times.  Returns a :class:`Timing`.
    """
    n, _ = calibrate(func, target=target, min_number=min_number, max_seconds=max_seconds)
    timing = Timing(number=n)
    for _ in range(repeats):
        timing.add(*time_call(func, n))
    return timing


@contextlib.contextmanager
def thread_limits(n):
    """Run the body with every thread pool limited to n threads (None: defaults).

    Without threadpoolctl the BLAS pools cannot be limited here; run.py then
    sets OPENBLAS_NUM_THREADS & co. before NumPy loads, as a fallback.
    """
    if torch is not None:
        before = torch.get_num_threads()
    with contextlib.ExitStack() as stack:
        if n is not None and threadpool_limits is not None:
            stack.enter_context(threadpool_limits(limits=n))
        if torch is not None:
            # set_num_threads after threadpoolctl: torch's own pool wins.
            torch.set_num_threads(n if n is not None else TORCH_DEFAULT_THREADS)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(before)
