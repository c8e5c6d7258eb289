"""Ownership of a network (or an optimizer) by one thread at a time.

A :class:`Guard` is held by the thread inside a method of the object it
protects.  Taking it is one atomic operation, a non-blocking
``Lock.acquire``; a thread that finds it held by another thread gets a
``RuntimeError`` at once and changes nothing.  The owner may enter again to
read (a ``fit`` callback that predicts, evaluates or saves), but never to
train: training calls do not nest.

Every entry point that reads or changes the protected object goes through
``with guard.using:`` (re-entrant for the owner: reads, and edits such as a
setter, which a callback may make) or ``with guard.training:`` (never
nested), setters included.  The
owner's thread id is written only by the thread that holds the lock, so the
re-entry test (``owner == me``) cannot be fooled by another thread's stale
write.
"""

import contextlib
import threading

_get_ident = threading.get_ident

__all__ = ["Guard", "training_with"]


class Guard:
    """One thread at a time owns the protected object.

    Parameters
    ----------
    what : str
        How error messages name the object ("Network", "optimizer").
    """

    __slots__ = ("lock", "owner", "depth", "what", "using", "training")

    def __init__(self, what):
        self.lock = threading.Lock()
        self.owner = None  # thread id of the holder
        self.depth = 0
        self.what = what
        self.using = _Use(self, False)
        self.training = _Use(self, True)

    def enter(self, trains=False):
        """Take the guard for the calling thread, or raise ``RuntimeError``."""
        me = _get_ident()
        if self.owner == me:
            if trains:
                raise RuntimeError(self._nested())
            self.depth += 1
            return
        if not self.lock.acquire(False):
            raise RuntimeError(self._busy())
        self.owner, self.depth = me, 1

    def try_enter(self):
        """Take the guard for a training call if no one holds it: True, or
        False having changed nothing (the caller then takes the path that
        raises :meth:`enter`'s errors)."""
        if not self.lock.acquire(False):
            return False
        self.owner, self.depth = _get_ident(), 1
        return True

    def exit(self):
        """Give back one level of :meth:`enter`."""
        self.depth -= 1
        if self.depth == 0:
            self.owner = None
            self.lock.release()

    def refuse(self):
        """Raise the error for a training call whose ``lock.acquire(False)`` failed."""
        raise RuntimeError(self._nested() if self.owner == _get_ident() else self._busy())

    def _nested(self):
        return (
            f"this {self.what} is already training in this thread: a fit callback "
            "may read it (predict, evaluate, save) but not train or change it"
        )

    def _busy(self):
        return (
            f"this {self.what} is in use by another thread; it may be used from one "
            f"thread at a time (give each thread its own {self.what})"
        )

    @property
    def held(self):
        """True while some thread owns the guard."""
        return self.lock.locked()

    def held_by_me(self):
        """True if the calling thread owns the guard."""
        return self.owner == _get_ident()


class _Use:
    """``with guard.using:`` / ``with guard.training:``."""

    __slots__ = ("guard", "trains")

    def __init__(self, guard, trains):
        self.guard = guard
        self.trains = trains

    def __enter__(self):
        self.guard.enter(self.trains)
        return self.guard

    def __exit__(self, *exc):
        self.guard.exit()
        return False


def training_with(opt):
    """The optimizer's guard, taken for training (nothing for None), so that
    two networks cannot train with one optimizer at the same time."""
    return _NO_GUARD if opt is None else opt._guard.training


_NO_GUARD = contextlib.nullcontext()
