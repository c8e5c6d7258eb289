"""The loop of :meth:`cbp.Network.fit` around the engine, once its
arguments are checked: the network's guard (and its optimizer's), the
chunks of epochs that each run in one ``Engine.fit`` call, the counters and
the history committed after every chunk (even one that raised), the
callback and the progress display between chunks, early stopping's restore
of the best parameters, and the DivergenceError of a diverged run.
"""

import math

import numpy as np

from . import _codes, optim, schedules
from ._errors import DivergenceError
from ._guard import _NO_GUARD, training_with
from .callbacks import Progress


def run(
    net,
    X,
    Y,
    Xv,
    Yv,
    epochs,
    lr,
    bs,
    shuffle,
    seed,
    optimizer,
    early_stopping,
    callback,
    every,
    keep_every,
    verbose,
    schedule,
    max_chunk,
    report_seconds,
    owned=False,
    stop=None,
):
    """Train ``net`` as :meth:`Network.fit` documents; return the history.

    The arguments are fit's, checked and converted: X, Y (and Xv, Yv, or
    None) float64 C-contiguous, ``bs`` the batch size (<= rows), ``seed``
    an int, ``optimizer`` an Optimizer or None, ``early_stopping`` an
    EarlyStopping or None, ``every`` and ``keep_every`` fit's
    ``callback_every`` and ``history_every``, ``schedule`` a Schedule or
    None.  At most ``max_chunk`` epochs run in one engine call, and with
    ``verbose`` the engine returns every ``report_seconds``.  ``owned``: the
    caller already holds the guards of the network and of the optimizer it
    trains with (:func:`cbp.fit_many`), so they are not taken here.
    ``stop``: an object whose ``is_set()`` asks the run to end (a
    ``threading.Event``, set by fit_many's calling thread on Ctrl-C for the
    networks on other threads, which receive no signals); the engine then
    returns every ``report_seconds`` to read it, and the run ends as when a
    callback returns False, its counters and history committed.
    """
    columns = history_columns(net, Xv is not None, schedule is not None)
    # The native loop runs at most `chunk` epochs a call, ending at every
    # callback epoch; its rows land in one buffer and are copied out.
    reports = callback is not None or verbose
    chunk = min(every if reports else epochs, max_chunk)
    part_buf = np.empty((chunk, _codes.N_HISTORY))
    cols = {name: [] for name in columns}

    with _NO_GUARD if owned else net._guard.training:
        opt = optimizer if optimizer is not None else (None if lr is not None else net._optimizer)
        with _NO_GUARD if owned else training_with(opt):
            if optimizer is not None:  # only once this call owns the network
                optimizer._bind(net._parameters.shape[0])  # checks it fits
                net._optimizer = optimizer
            kind, h, state, t, opt = net._resolve(lr, 0.001, own=True)
            early_stop = np.zeros(_codes.N_EARLY_STOP)
            early_stop[_codes.EARLY_STOP_BEST_LOSS] = np.inf
            early_stop[_codes.EARLY_STOP_BEST_EPOCH] = -1
            if early_stopping is not None:
                early_stop[_codes.EARLY_STOP_ENABLED] = 1.0
                early_stop[_codes.EARLY_STOP_PATIENCE] = early_stopping.patience
                early_stop[_codes.EARLY_STOP_TOLERANCE] = early_stopping.tol
                best = net._parameters.copy()
            else:
                best = np.empty(net._parameters.shape[0])
            bar = Progress(epochs) if verbose else None
            done, status, interrupted, pending, calls = 0, _codes.FIT_DONE, True, None, 0
            epoch0 = net._epochs_trained
            progress = np.zeros(2, dtype=np.int64)  # written by the engine per epoch
            report = report_seconds if verbose or stop is not None else 0.0
            sched = (schedule if schedule is not None else schedules.Schedule())._vector()
            try:
                while done < epochs:
                    k = min(chunk, epochs - done)
                    if reports:  # end the call on the next callback epoch
                        k = min(k, every - done % every)
                    part = part_buf[:k]
                    returned = False
                    before = (net._epochs_trained, opt.iterations if opt is not None else 0)
                    progress[:] = 0
                    try:
                        status = net._engine.fit(
                            X,
                            Y,
                            Xv,
                            Yv,
                            kind,
                            h,
                            state,
                            t,
                            epoch0 + done,
                            k,
                            bs,
                            shuffle,
                            seed,
                            early_stop,
                            best,
                            part,
                            progress,
                            report,
                            sched,
                        )[2]
                        returned = True
                    finally:
                        # what the engine completed, even if it raised (Ctrl-C):
                        # the counters must describe the parameters.  A Ctrl-C
                        # can also land in this commit, at any call: each of its
                        # steps sets a value from `before` and `progress`, so
                        # it runs again in full, and the interrupt is raised
                        # once it is through.
                        while True:
                            try:
                                ran, steps = commit(
                                    net, opt, schedule, sched, before, progress, cols,
                                    columns, part, done, keep_every,
                                    not returned or status != _codes.FIT_DONE, epochs, calls,
                                )  # fmt: skip
                                break
                            except KeyboardInterrupt as exc:
                                pending = exc
                        t += steps
                        done += ran
                        calls += 1
                        if pending is not None:
                            raise pending
                    if status == _codes.FIT_DIVERGED:
                        break
                    if bar is not None and ran:
                        bar.update(ran, logs(part[ran - 1], columns))
                    if (
                        callback is not None
                        and ran
                        and (done % every == 0 or done == epochs or status)
                    ):
                        # this thread keeps the network: the callback may read
                        # it, other threads stay refused
                        answer = callback(done, logs(part[ran - 1], columns))
                        if isinstance(answer, (bool, np.bool_)) and not answer:
                            break
                        if opt is not None:  # the callback may have set opt.lr & co:
                            h = opt._hyper()  # they apply from the next epoch
                            state = opt._bind(net._parameters.shape[0])
                        if schedule is not None:  # and the schedule's settings
                            sched = schedule._vector()
                    if status == _codes.FIT_STOPPED:
                        break
                    if stop is not None and stop.is_set():
                        break
                interrupted = False
            finally:
                if bar is not None:
                    bar.close()
                while True:  # as the commit above: again in full if a Ctrl-C lands in it
                    try:
                        result = finish(
                            net, cols, early_stopping, early_stop, epoch0, done, status,
                            interrupted, best,
                        )  # fmt: skip
                        break
                    except KeyboardInterrupt as exc:
                        pending = exc
                if pending is not None:
                    raise pending
    if status == _codes.FIT_DIVERGED:
        raise diverged(done, epochs, result)
    return result


#: fit's batch size with an optimizer and batch_size="auto"
DEFAULT_BATCH_SIZE = 32
#: the fast path's batch size for one full batch (the engine takes min(size, rows))
_FULL_BATCH = 1 << 62
#: the optimizers the fast path trains with (hyper-parameters and counter as it knows them)
_FAST_OPTIMIZERS = frozenset((optim.SGD, optim.Adagrad, optim.RMSprop, optim.Adam))


def fast(net, X, y, epochs, lr, batch_size, shuffle, seed):
    """``net.fit`` in one engine call (``Engine.fit_fast``), for a call
    without validation data, early stopping, callback, display or
    schedule, of at most MAX_CHUNK epochs, keeping every epoch's row, with
    arguments of the plain types (X and y ndarrays the engine takes as they
    are, ints, a float lr, bools).  Returns the history; or None having
    changed nothing, and ``fit`` then takes its general path, which
    validates and converts, and raises what it raises: also when a guard
    is held, when the network has no optimizer yet (the first call makes
    its Adam) or its optimizer no state.  Does what the general path does,
    step for step."""
    if lr is None:
        opt = net._optimizer
        if type(opt) not in _FAST_OPTIMIZERS or opt.state is None:  # (None: _bind makes it)
            return None
    elif type(lr) is float and 0.0 < lr < math.inf:
        opt = None
    else:
        return None
    if batch_size is None:
        bs = _FULL_BATCH
    elif type(batch_size) is int:
        if batch_size < 1:
            return None
        bs = min(batch_size, _FULL_BATCH)  # (the engine takes a C size)
    elif type(batch_size) is str and batch_size == "auto":
        bs = DEFAULT_BATCH_SIZE if opt is not None else _FULL_BATCH
    else:
        return None
    if shuffle is None or (type(shuffle) is str and shuffle == "auto"):
        shuffle = lr is None
    elif shuffle is not True and shuffle is not False:
        return None
    if seed is None:
        seed = net._seed if net._seed is not None else 0
    elif type(seed) is not int or not 0 <= seed < 1 << 64:
        return None
    guard = net._guard
    if not guard.try_enter():
        return None
    og = None
    engine = net._engine
    try:
        if opt is None:
            kind, h, state, t = _codes.OPT_SGD, net._sgd_hyper, net._no_state, 0
            h[_codes.HYPER_LEARNING_RATE] = lr  # (the guard's holder may write it)
        else:
            og = opt._guard
            if not og.try_enter():
                og = None
                return None
            try:
                h = opt._hyper_vector()
                state = opt._bind(net._parameters.shape[0])
            except Exception:  # raised by the general path, after its checks
                return None
            kind, t = opt.kind, opt.iterations
        engine.fast_out = None
        pending = None
        try:
            out = engine.fit_fast(
                X, y, kind, h, state, t, net._epochs_trained, epochs, bs, shuffle, seed
            )
        except KeyboardInterrupt as exc:  # landed as the call returned: its work stands
            out, pending = engine.fast_out, exc
            if out is None:
                raise
        if out is None:
            return None
        # the commit, with no call that a Ctrl-C could land in before it is through
        loss, accuracy, ran, steps, status, error = out
        net._epochs_trained += ran
        if og is not None:  # (checked and held: what its setter would store)
            opt.__dict__["iterations"] += steps
        result = {"loss": loss} if accuracy is None else {"loss": loss, "accuracy": accuracy}
        net._history = result
    finally:
        if og is not None:
            og.exit()
        guard.exit()
    if pending is not None:
        raise pending
    if error is not None:
        raise error
    if status == _codes.FIT_DIVERGED:
        raise diverged(ran, epochs, result)
    return result


def diverged(done, epochs, history):
    """The DivergenceError of a run that diverged after ``done`` complete
    epochs of ``epochs``, holding its history."""
    err = DivergenceError(
        f"training diverged in epoch {done + 1} of {epochs}: a loss or parameter "
        "became NaN or infinite; the parameters were left at their values from "
        "the start of that epoch (the last finite ones)"
    )
    err.epoch = done + 1
    err.history = history
    return err


def history_columns(net, with_val, with_lr=False):
    """The history's keys and their columns in the engine's rows."""
    out = {"loss": _codes.HISTORY_LOSS}
    if net.is_classifier:
        out["accuracy"] = _codes.HISTORY_ACCURACY
    if with_val:
        out["val_loss"] = _codes.HISTORY_VAL_LOSS
        if net.is_classifier:
            out["val_accuracy"] = _codes.HISTORY_VAL_ACCURACY
    if with_lr:
        out["lr"] = _codes.HISTORY_LR
    return out


def logs(row, columns):
    """The callback's and the progress display's dict of an engine row."""
    return {k: float(row[c]) for k, c in columns.items()}


def finish(net, cols, early_stopping, early_stop, epoch0, done, status, interrupted, best):
    """The history of a run from its column parts, early stopping's entries
    and restore of the best parameters, set as the network's; idempotent."""
    result = {
        name: (parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty(0))
        for name, parts in cols.items()
    }
    if early_stopping is not None:
        result["best_epoch"] = int(early_stop[_codes.EARLY_STOP_BEST_EPOCH] - epoch0)
        result["stopped_epoch"] = done if status == _codes.FIT_STOPPED else None
        # after a divergence or an interrupt the parameters stay those of
        # the last epoch run, as documented
        if (
            early_stopping.restore_best
            and early_stop[_codes.EARLY_STOP_BEST_EPOCH] >= 0
            and status != _codes.FIT_DIVERGED
            and not interrupted
        ):
            np.copyto(net._parameters, best)
    net._history = result
    return result


def commit(
    net,
    opt,
    schedule,
    sched,
    before,
    progress,
    cols,
    columns,
    part,
    done,
    every,
    ended,
    epochs,
    index,
):
    """Commit one engine call of ``fit``: the epochs and steps it completed
    (``progress``) onto the counters, from their values ``before`` it, and
    its rows onto the history (as part ``index`` of each column's list);
    returns (epochs, steps).  Idempotent, so that it can run again in full
    when a Ctrl-C lands in it; ``ended``: the run ends with this call."""
    ran, steps = int(progress[0]), int(progress[1])
    if schedule is not None:  # its state after the epochs completed
        schedule._keep(sched)
    net._epochs_trained = before[0] + ran
    if opt is not None:
        opt.iterations = before[1] + steps
    keep_rows(cols, columns, part[:ran], done, every, ended or done + ran == epochs, index)
    return ran, steps


def keep_rows(cols, columns, rows, done, every, last, index):
    """Set the history's rows of epochs done+1 .. done+len(rows) whose number
    is a multiple of ``every``, and the last row if ``last``, as part
    ``index`` of each column's list of parts (setting it again changes
    nothing)."""
    if every == 1:
        keep = rows
    else:
        numbers = np.arange(done + 1, done + len(rows) + 1)
        mask = numbers % every == 0
        if last and len(rows):
            mask[-1] = True
        keep = rows[mask]
    for name, c in columns.items():
        parts = cols[name]
        del parts[index:]
        parts.append(keep[:, c].copy())
