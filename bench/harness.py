"""Check, then time, a list of peers side by side in this process.

For every workload the harness

1. trains a *reference* peer (cbp native, or cbp's NumPy backend when the
   core is missing) for ``check_epochs`` epochs from the problem's initial
   weights and keeps its parameters;
2. for every other peer: skips it with a note if its library is missing;
   otherwise trains it the same way from the same weights and compares its
   parameters with the reference (rtol 1e-9, float64 throughout): a peer
   that disagrees is still timed but flagged ``DISAGREES`` in the table and
   in the notes;
3. picks each peer's n with :func:`timing.calibrate`, then times
   ``peer.train(n)`` ``repeats`` times, round-robin over the peers, each
   call under :func:`timing.thread_limits` (one thread unless the peer asks
   for the library default); the median per epoch is reported.

A peer that raises is reported with its error; the run goes on.
"""

import statistics
import traceback
from dataclasses import dataclass, field

from .peers import compare_params
from .timing import Timing, calibrate, thread_limits, time_call


@dataclass
class Settings:
    """How hard to time: quick mode shrinks everything."""

    quick: bool = False
    threads: int = 1  # for every peer but the "default threads" ones
    target: float = 0.2  # seconds a timed call should last
    repeats: int = 11
    check_epochs: int = 5
    max_seconds: float = 3.0  # a slower peer is timed over fewer epochs than min_epochs

    @classmethod
    def make(cls, quick, threads):
        if quick:
            return cls(
                quick=True, threads=threads, target=0.01, repeats=3, check_epochs=3, max_seconds=0.1
            )
        return cls(quick=False, threads=threads)


@dataclass
class PeerResult:
    """One row of the results table."""

    workload: str
    peer: str
    threads: str
    family: str  # "cbp", "seed", "numpy" (lean loop), "torch", "sklearn", "jax", "numba"
    status: str = "ok"  # "ok", "skipped" or "error"
    note: str = ""
    agreement: str = ""  # "reference", "ok", "DISAGREES", "n/a (...)", "error"
    max_rel_diff: float = None
    timing: object = None  # timing.Timing, seconds per epoch
    unit: str = "epoch"
    per_unit: float = 1.0  # the table's unit is per_unit of the peer's epochs
    extra: dict = field(default_factory=dict)

    @property
    def seconds(self):
        """Median wall seconds per table unit, or None if not timed."""
        return None if self.timing is None else self.timing.median * self.per_unit

    @property
    def cpu_seconds(self):
        """Median process CPU seconds per table unit, or None."""
        return None if self.timing is None else self.timing.cpu_median * self.per_unit

    def as_dict(self):
        d = {k: v for k, v in self.__dict__.items() if k != "timing"}
        d["timing_s_per_epoch"] = None if self.timing is None else self.timing.as_dict()
        d["median_s"] = self.seconds
        d["cpu_median_s"] = self.cpu_seconds
        return d


def family_of(peer):
    if getattr(peer, "family", None):
        return peer.family  # the compiled peers name theirs ("cbp", "jax", "numba")
    name = type(peer).__name__
    if getattr(peer, "lean", False):
        return "numpy"  # shown beside the seed loop, not the ratios' reference
    return {"CbpPeer": "cbp", "TorchPeer": "torch", "SklearnPeer": "sklearn"}.get(name, "seed")


def measure_peers(
    workload,
    peers,
    settings,
    *,
    min_epochs=1,
    unit="epoch",
    per_unit=1.0,
    check_epochs=None,
    call_epochs=None,
    log=print,
):
    """Check and time each peer; returns a list of PeerResult (one per peer).

    The first peer that is available and runs is the reference the others
    are compared with (list cbp native first).  ``min_epochs`` is the least
    number of epochs in one timed call (e.g. 10_000 to time whole seed-length
    trainings); ``per_unit`` converts seconds per epoch into the table's unit
    (e.g. 1 / steps_per_epoch for seconds per step).  With ``call_epochs``,
    a timed sample of n epochs is n / call_epochs calls of the peer's
    ``train(call_epochs)``: the workload as stated, however many of them the
    sample needs.  (One call of a whole sample would return histories of its
    length: 40 MB for A's 5,000,000 epochs, 205 MB for 256 networks x
    100,000; above 32 MB glibc maps every block afresh, and the page faults
    of each call are then timed with the training.)

    The timed repeats are interleaved, peer after peer in every round, so
    that a burst of load from elsewhere on the machine hits all peers alike
    and the ratios stay fair.
    """
    check_epochs = settings.check_epochs if check_epochs is None else check_epochs
    train = (lambda peer: peer.train) if call_epochs is None else _in_calls(call_epochs)
    results, ready, reference = [], [], None
    for peer in peers:
        res = PeerResult(
            workload, peer.label, peer.threads_label, family_of(peer), unit=unit, per_unit=per_unit
        )
        results.append(res)
        why = peer.unavailable()
        if why:
            res.status, res.note, res.agreement = "skipped", why, "skipped"
            log(f"  {peer.label:<40} skipped: {why}")
            continue
        try:
            with thread_limits(peer.threads):
                # agreement: the same few epochs from the same weights
                peer.reset()
                peer.train(check_epochs)
                params = peer.params()
                if reference is None:
                    reference, res.agreement = params, "reference"
                elif not peer.check:
                    res.agreement = f"n/a ({peer.no_check_reason})"
                else:
                    ok, rel = compare_params(params, reference)
                    res.max_rel_diff = rel
                    res.agreement = f"ok ({rel:.0e})" if ok else f"DISAGREES ({rel:.1e})"
                # calibration (and warm-up), from the initial weights again
                peer.reset()
                n, _ = calibrate(
                    train(peer),
                    target=settings.target,
                    min_number=min_epochs,
                    max_seconds=settings.max_seconds,
                )
            res.timing = Timing(number=n)
            ready.append((peer, res))
            what = unit if per_unit == 1 else "epoch"
            calls = "" if call_epochs is None else f", as calls of {call_epochs}"
            log(
                f"  {peer.label:<40} agreement {res.agreement}; timing in samples of {n} "
                f"{what}(s){calls}"
            )
        except Exception as exc:  # report, never crash the whole run
            _failed(res, exc, log)
    # The seed-style loop runs next to the first peer (the reference, cbp
    # native) in every round, before it in one round and after it in the
    # next, so that each round's ratio of the two is taken side by side.
    seeds = [i for i, (_, res) in enumerate(ready) if res.family == "seed"]
    if seeds and seeds[0] > 0:
        ready.insert(1, ready.pop(seeds[0]))
    for k in range(settings.repeats):
        order = list(ready)
        if seeds and len(order) > 1 and k % 2:
            order[0], order[1] = order[1], order[0]
        for peer, res in order:
            if res.status != "ok":
                continue
            try:
                with thread_limits(peer.threads):
                    res.timing.add(*time_call(train(peer), res.timing.number))
            except Exception as exc:
                _failed(res, exc, log)
    for peer, res in ready:
        if res.status == "ok":
            log(
                f"  {peer.label:<40} threads={res.threads:<3} "
                f"{fmt_time(res.seconds)}/{unit}  (spread {res.timing.spread:.0%}, "
                f"CPU {fmt_time(res.cpu_seconds)})"
            )
    return results


def _in_calls(epochs):
    """peer -> a train(n) that runs n epochs as calls of peer.train(epochs)
    (and one call of the remainder)."""

    def wrap(peer):
        def train(n):
            calls, rest = divmod(n, epochs)
            for _ in range(calls):
                peer.train(epochs)
            if rest:
                peer.train(rest)

        return train

    return wrap


def _failed(res, exc, log):
    res.status, res.timing = "error", None
    res.note = f"{type(exc).__name__}: {exc}"
    res.agreement = res.agreement or "error"
    log(f"  {res.peer:<40} ERROR {res.note}")
    log("    " + traceback.format_exc().strip().replace("\n", "\n    "))


def speedup(result, results, attr="seconds"):
    """seed-style NumPy time / this peer's time: > 1 means faster than the seed loop.

    The median over the rounds of the ratio of the two peers' times in the
    same round (measure_peers runs them side by side in each), or, if one
    of them lost a round, the ratio of their medians.  attr="seconds"
    compares wall-clock times, "cpu_seconds" process CPU times.
    """
    seed = next((r for r in results if r.family == "seed" and r.seconds), None)
    if seed is None or not result.seconds:
        return None
    if result is seed:
        return 1.0
    key = "per_unit" if attr == "seconds" else "cpu_per_unit"
    a, b = getattr(seed.timing, key), getattr(result.timing, key)
    if a and len(a) == len(b) and all(x > 0 for x in b):
        scale = seed.per_unit / result.per_unit
        return statistics.median(x / y for x, y in zip(a, b)) * scale
    mine, theirs = getattr(result, attr), getattr(seed, attr)
    return theirs / mine if theirs and mine else None


def fmt_time(seconds):
    """12.3 ns / 4.56 µs / 7.89 ms / 1.23 s."""
    if seconds is None:
        return "—"
    for scale, unit in ((1e-6, "ns"), (1e-3, "µs"), (1.0, "ms")):
        if seconds < scale:
            return f"{seconds / scale * 1e3:.3g} {unit}"
    return f"{seconds:.3g} s"
