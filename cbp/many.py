"""``cbp.fit_many``: train several networks of one architecture in one call.

A sweep over learning rates, a set of seeds for error bars, an ensemble:
the networks share X, y and fit's settings, and may differ in their initial
weights, learning rates, seeds and optimizers.  Each network's result is
the one its own :meth:`Network.fit` gives.

Three paths, the first that applies:

- **lanes**: a full batch in order with plain SGD (``lr``), on a network
  that fit's whole-epoch run takes (src/_fm_epochs.h: a few narrow dense
  layers, ReLU or sigmoid, one output under a squared error), on the
  native core: the networks train together in one native call, one
  network a SIMD lane (src/_fm_lanes_body.h), each lane computing its own
  fit's numbers bit for bit.  Each network's fit then commits those epochs
  (its history, counters) and runs any it has left (the one that diverged).
- **threads**: every network runs its own fit loop (``cbp._fit.run``), the
  networks spread over threads up to the native core's thread limit.
- **sequential**: one thread, the NumPy twin, or a callback: one fit after
  another, in the calling thread.

``_paths`` counts the calls each path ran (private: for the tests).
"""

import copy
import threading

import numpy as np

from . import _codes, _fit, _validation, optim, schedules
from ._errors import DivergenceError
from .network import MAX_CHUNK, REPORT_SECONDS, Network, _fast_applies, fit_settings

__all__ = ["fit_many"]

#: calls of fit_many by the path that ran them (private: for the tests)
_paths = {"lanes": 0, "threads": 0, "sequential": 0, "fast": 0}

#: the threads the last lane run took (private: for the tests)
_lane_threads = 0

#: how often the native loop of a network on a worker thread returns to read
#: the stop event (seconds)
_STOP_SECONDS = 0.05


def fit_many(
    networks,
    X,
    y,
    epochs=200,
    lr=None,
    batch_size="auto",
    *,
    shuffle="auto",
    seed=None,
    optimizer=None,
    validation_data=None,
    early_stopping=None,
    callback=None,
    callback_every=100,
    verbose=False,
    history_every=1,
    schedule=None,
):
    """Train several networks of the same architecture on the same data.

    Every network trains as its own :meth:`Network.fit` would with the same
    arguments: its history, parameters, optimizer state and counters come out
    the same, exactly.  The networks run their own fit loops, spread over
    threads up to the thread limit.

    Parameters
    ----------
    networks : sequence of Network
        At least one, each once, all with the same layers (widths,
        activations, settings), loss, reduction and backend.  Their
        parameters, and so their initial weights, may differ.
    X, y : array_like
        As for :meth:`Network.fit`, shared by every network.
    epochs, batch_size, shuffle, validation_data, early_stopping, \
callback_every, verbose, history_every
        As for :meth:`Network.fit`, the same for every network.
    lr : float or sequence of float, optional
        Plain gradient descent, as for :meth:`Network.fit`: one rate for
        every network, or one per network.
    seed : int or sequence of int, optional
        The shuffle's and dropout's seed, as for :meth:`Network.fit`: one
        for every network, or one per network (default: each network's
        seed, else 0).
    optimizer : Optimizer, str or sequence, optional
        As for :meth:`Network.fit`.  A name makes a new optimizer for each
        network; a sequence gives one per network (each object at most
        once).  One Optimizer object for several networks is refused: its
        state belongs to one network.
    schedule : cbp.schedules.Schedule, optional
        As for :meth:`Network.fit`; each network runs on its own copy, so
        that a schedule with state (``ReduceLROnPlateau``) starts every
        network from the state given, which stays as it was.
    callback : callable, optional
        As for :meth:`Network.fit`, called for each network in turn as its
        own fit calls it (the networks then train one after another, in the
        calling thread).

    Returns
    -------
    list of dict
        The history of each network, in order, as :meth:`Network.fit`
        returns it (also kept as each network's ``history``).

    Raises
    ------
    DivergenceError
        After every network has trained, if some diverged.  Each diverged
        network is left as its own fit leaves it (parameters from the start
        of the failing epoch); the others trained on.  ``.diverged`` holds
        the indices of the diverged networks, ``.histories`` every
        network's history.
    RuntimeError
        If a network (or an optimizer) is in use by another thread, as fit.
    """
    nets = _check_networks(networks)
    if len(nets) == 1 and _fast_applies(
        epochs,
        optimizer,
        validation_data,
        early_stopping,
        callback,
        callback_every,
        verbose,
        history_every,
        schedule,
    ):  # one network: its fit's fast path, where that applies (as fit decides)
        diverged = None
        try:
            history = _fit.fast(nets[0], X, y, epochs, lr, batch_size, shuffle, seed)
        except DivergenceError as err:  # raised below, as the other paths raise it
            history, diverged = err.history, err
        if history is not None:
            _paths["fast"] += 1
            if diverged is not None:
                _raise_diverged([0], [history])
            return [history]
    first = nets[0]
    count = len(nets)
    lrs = _per_network(
        lr, count, "lr", lambda v: _validation.real(v, "lr", minimum=0.0, strict=True)
    )
    X, Y, epochs, bs, shuffle, Xv, Yv, early_stopping, every, keep_every = fit_settings(
        first,
        X,
        y,
        epochs,
        lrs is not None,
        batch_size,
        shuffle,
        validation_data,
        early_stopping,
        callback,
        callback_every,
        history_every,
    )
    seeds = _per_network(seed, count, "seed", _validation.seed)
    if seeds is None:  # (each network's seed was checked when it was built)
        seeds = [net._seed if net._seed is not None else 0 for net in nets]
    if optimizer is not None and lrs is not None:
        raise ValueError("give either lr or optimizer, not both")
    opts = _optimizers(optimizer, nets, lrs is not None)
    schedule = schedules.resolve(schedule)
    settings = dict(
        X=X,
        Y=Y,
        Xv=Xv,
        Yv=Yv,
        epochs=epochs,
        bs=bs,
        shuffle=shuffle,
        early_stopping=early_stopping,
        callback=callback,
        every=every,
        keep_every=keep_every,
        verbose=bool(verbose),
        schedule=schedule,
    )
    held = []
    guards = [[net._guard] for net in nets]  # what each network's run holds
    try:
        for net in nets:  # the same RuntimeError as fit for a busy network
            net._guard.enter(trains=True)
            held.append(net._guard)
        for i, (net, opt) in enumerate(zip(nets, opts)):
            train_opt = opt if opt is not None else (None if lrs else net._optimizer)
            if train_opt is not None:
                train_opt._guard.enter(trains=True)
                held.append(train_opt._guard)
                guards[i].append(train_opt._guard)
        return _train(nets, lrs, seeds, opts, settings, guards)
    finally:
        for guard in reversed(held):
            guard.exit()


def _check_networks(networks):
    """The networks as a list, checked: at least one, each a Network, each
    once, one architecture."""
    if isinstance(networks, Network):
        raise TypeError("networks must be a sequence of Network, got one Network (wrap it: [net])")
    try:
        nets = list(networks)
    except TypeError:
        raise TypeError(
            f"networks must be a sequence of Network, got {type(networks).__name__}"
        ) from None
    if not nets:
        raise ValueError("networks is empty: give at least one Network")
    seen = {}
    for i, net in enumerate(nets):
        if not isinstance(net, Network):
            raise TypeError(f"networks[{i}] is a {type(net).__name__}, not a cbp.Network")
        if id(net) in seen:
            raise ValueError(
                f"networks[{i}] is the same network as networks[{seen[id(net)]}]: "
                "each network may appear once (build another to train a copy)"
            )
        seen[id(net)] = i
    first = nets[0]
    key = first._table_key
    for i, net in enumerate(nets):
        if net._table_key == key:  # (the common case: alike)
            continue
        what = _differs(first, net)
        if what:
            raise ValueError(
                f"networks[{i}] differs from networks[0]: {what}; fit_many trains networks "
                "of one architecture (train the others in their own call)"
            )
    return nets


_INT_NAMES = {
    _codes.LAYER_KIND: "its kind",
    _codes.LAYER_N_IN: "its inputs",
    _codes.LAYER_N_OUT: "its width",
    _codes.LAYER_ACTIVATION: "its activation",
    _codes.LAYER_BIAS_OFFSET: "whether it has a bias",
    _codes.LAYER_TRAINABLE: "whether it is trainable",
    _codes.LAYER_BIAS_TRAINABLE: "whether its bias is trainable",
}


def _differs(first, net):
    """How ``net`` differs from ``first`` (a phrase), or ''."""
    if net.backend != first.backend:
        return f"its backend is {net.backend!r}, not {first.backend!r}"
    if len(net.layers) != len(first.layers):
        return f"it has {len(net.layers)} layers, not {len(first.layers)}"
    ints, floats = net._layer_table()
    ints0, floats0 = first._layer_table()
    for j in range(len(ints)):
        if not (np.array_equal(ints[j], ints0[j]) and np.array_equal(floats[j], floats0[j])):
            col = next((c for c in _INT_NAMES if ints[j, c] != ints0[j, c]), None)
            detail = _INT_NAMES[col] if col is not None else "its settings (alpha, penalties, rate)"
            return f"layer {j} ({net.layers[j]!r}) differs in {detail} from {first.layers[j]!r}"
    if net.loss != first.loss:
        return f"its loss is {net.loss!r}, not {first.loss!r}"
    if net.reduction != first.reduction:
        return f"its reduction is {net.reduction!r}, not {first.reduction!r}"
    return ""


def _per_network(value, count, name, check=None):
    """None, or a list of ``count`` values: one value repeated, or a
    sequence of exactly ``count``; each passed through ``check`` (one value
    once)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        if isinstance(value, np.ndarray) and value.ndim != 1:
            raise ValueError(f"{name} must be one value or a 1-D sequence, got shape {value.shape}")
        values = list(value)
        if len(values) != count:
            raise ValueError(
                f"{name} has {len(values)} entries for {count} networks: give one per "
                "network, or a single value for all"
            )
        return values if check is None else [check(v) for v in values]
    return [value if check is None else check(value)] * count


def _optimizers(optimizer, nets, with_lr):
    """The optimizer fit_many gives each network (None: fit's default)."""
    count = len(nets)
    if optimizer is None:
        opts = [None] * count
        if not with_lr:
            for i, net in enumerate(nets):
                if net._optimizer is None:
                    opts[i] = optim.Adam()  # fit's default, kept as the network's
    elif isinstance(optimizer, str):
        opts = [optim.resolve(optimizer) for _ in nets]
    elif isinstance(optimizer, optim.Optimizer):
        if count > 1:
            raise ValueError(
                f"one optimizer object cannot train {count} networks: its state belongs to "
                "one network; give its name (a new optimizer for each network) or a list "
                "of optimizers, one per network"
            )
        opts = [optimizer]
    else:
        opts = [
            optim.resolve(o, f"optimizer[{i}]")
            for i, o in enumerate(_per_network(optimizer, count, "optimizer"))
        ]
        if any(o is None for o in opts):
            raise TypeError("a sequence of optimizers must hold an optimizer for every network")
    # each optimizer trains one network: given ones, and the networks' own
    used = {}
    for i, net in enumerate(nets):
        opt = opts[i] if opts[i] is not None else (None if with_lr else net._optimizer)
        if opt is None:
            continue
        if id(opt) in used:
            raise ValueError(
                f"networks[{used[id(opt)]}] and networks[{i}] would train with the same "
                "optimizer object, whose state belongs to one network; give each network "
                "its own"
            )
        used[id(opt)] = i
    return opts


def _thread_limit(net):
    """How many networks may train at once: the native core's thread limit
    for this thread (1 for the NumPy twin and in a fork's child)."""
    if net.backend != "native":
        return 1
    core = net._kernels
    state = core._thread_state()
    if state["off"]:
        return 1
    forced = core._thread_config()[0]
    return max(1, forced if forced > 0 else state["limit"])


def _train(nets, lrs, seeds, opts, s, guards):
    """Every network trained (the guards held); the histories, or the
    DivergenceError of the diverged ones."""
    count = len(nets)
    histories = _lanes(nets, lrs, seeds, opts, s)
    if histories is not None:
        return histories
    histories = [None] * count
    diverged = []
    threads = min(_thread_limit(nets[0]), count)
    if s["callback"] is not None or s["verbose"]:
        threads = 1

    def one(i, stop=None):
        lent = _lend(guards[i])
        try:
            histories[i] = _fit.run(
                nets[i],
                s["X"],
                s["Y"],
                s["Xv"],
                s["Yv"],
                s["epochs"],
                None if lrs is None else lrs[i],
                s["bs"],
                s["shuffle"],
                seeds[i],
                opts[i],
                s["early_stopping"],
                s["callback"],
                s["every"],
                s["keep_every"],
                s["verbose"],
                None if s["schedule"] is None else copy.deepcopy(s["schedule"]),
                MAX_CHUNK,
                REPORT_SECONDS if stop is None else _STOP_SECONDS,
                owned=True,
                stop=stop,
            )
        except DivergenceError as err:
            histories[i] = err.history
            diverged.append(i)
        finally:
            _give_back(guards[i], lent)

    if threads <= 1:
        _paths["sequential"] += 1
        for i in range(count):
            one(i)
    else:
        _paths["threads"] += 1
        _on_threads(one, count, threads)
    _raise_diverged(diverged, histories)
    return histories


def _raise_diverged(diverged, histories):
    """The DivergenceError of the networks in ``diverged`` (indices), if any."""
    if diverged:
        diverged.sort()
        err = DivergenceError(
            f"training diverged for {len(diverged)} of {len(histories)} networks (indices "
            f"{diverged}): a loss or parameter became NaN or infinite; each was left at its "
            "parameters from the start of the failing epoch, the others trained on "
            "(.histories holds every history, .diverged the indices)"
        )
        err.histories = histories
        err.diverged = diverged
        raise err


def _lanes(nets, lrs, seeds, opts, s):
    """The lane path (see the module's docstring) if it applies: every
    network trained and its history, in order (or the DivergenceError, or
    the interrupt, once every network has committed what it ran); else None,
    nothing changed."""
    X, Y = s["X"], s["Y"]
    if (
        lrs is None
        or len(nets) < 2
        or nets[0].backend != "native"
        or any(o is not None for o in opts)
        or s["Xv"] is not None
        or s["early_stopping"] is not None
        or s["callback"] is not None
        or s["verbose"]
        or s["schedule"] is not None
        or s["shuffle"]
        or s["bs"] < X.shape[0]
    ):
        return None
    count, epochs = len(nets), s["epochs"]
    losses = np.empty((count, epochs))
    done = np.zeros(count, dtype=np.intp)
    befores = [net._epochs_trained for net in nets]
    core = nets[0]._kernels
    engines = [net._engine for net in nets]
    rates = np.asarray(lrs, dtype=np.float64)
    width = core._fm_lanes_width()
    threads = min(_thread_limit(nets[0]), -(-count // width) if width else 1)
    global _lane_threads
    _lane_threads = threads
    if threads <= 1:
        taken, pending = core._fm_lanes(engines, X, Y, epochs, rates, losses, done)
    else:
        taken = core._fm_lanes(engines, X, Y, 0, rates, np.empty((count, 0)), done)[0]
        if taken:
            pending = _lanes_on_threads(core, engines, X, Y, epochs, rates, losses, done,
                                        threads, width)  # fmt: skip
    if not taken:
        return None
    _paths["lanes"] += 1
    histories = [None] * count
    diverged = []
    # The commits.  A network that completed every epoch gets the history
    # and counter its fit gives such a run (only a loss column: the squared
    # errors have no accuracy); any other runs its own fit, which takes the
    # epochs computed here (Engine._take_epochs) and runs on: the epoch that
    # diverged, and after an interrupt nothing more.  A Ctrl-C that lands
    # here is kept, the network it landed in committed again in full, and
    # raised once every network has committed what it ran.
    direct = s["keep_every"] == 1 and list(_fit.history_columns(nets[0], False)) == ["loss"]
    i = 0
    while i < count:
        net = nets[i]
        try:
            if direct and done[i] == epochs:
                histories[i] = {"loss": losses[i]}  # (a row of `losses`, not a copy)
                net._epochs_trained = befores[i] + epochs
                net._history = histories[i]
            else:  # its fit, from what it has committed (its counter says)
                ran = net._epochs_trained - befores[i]
                want = (epochs if pending is None else int(done[i])) - ran
                net._engine._take_epochs(losses[i, ran : done[i]])
                if want > 0:
                    _commit_fit(net, X, Y, want, lrs[i], seeds[i], s, histories, diverged, i)
                net._engine._take_epochs(None)
            i += 1
        except KeyboardInterrupt as exc:
            pending = exc
    if pending is not None:
        raise pending
    _raise_diverged(diverged, histories)
    return histories


def _lanes_on_threads(core, engines, X, Y, epochs, rates, losses, done, threads, width):
    """The lane run on ``threads`` threads, each on its own slice of whole
    groups of ``width`` networks, the calling thread on the first; returns
    the interrupt (Ctrl-C) that stopped them, or None.  Only the calling
    thread runs signal handlers: its run sets the shared stop byte, which
    every other run reads between its stretches of epochs."""
    count = len(engines)
    groups = -(-count // width)
    cuts = [min(count, width * (groups * k // threads)) for k in range(threads + 1)]
    stop = np.zeros(1, dtype=np.uint8)
    errors = []
    ended = [threading.Event() for _ in range(threads - 1)]

    def work(a, b, event):
        try:
            core._fm_lanes(engines[a:b], X, Y, epochs, rates[a:b], losses[a:b], done[a:b], stop)
        except BaseException as exc:  # noqa: BLE001 - raised by the caller once all stopped
            errors.append(exc)
            stop[0] = 1
        finally:
            event.set()

    workers = [
        threading.Thread(target=work, args=(cuts[k], cuts[k + 1], ended[k - 1]), daemon=True)
        for k in range(1, threads)
    ]
    pending = None
    started = []
    try:
        for t, e in zip(workers, ended):
            t.start()
            started.append(e)
        pending = core._fm_lanes(
            engines[: cuts[1]], X, Y, epochs, rates[: cuts[1]], losses[: cuts[1]], done[: cuts[1]],
            stop,
        )[1]  # fmt: skip
    except BaseException as exc:  # noqa: BLE001 - Ctrl-C between the calls, or an error:
        stop[0] = 1  # raised by the caller, once the runs have stopped and committed
        pending = exc
    while True:  # every run stopped, its counts written, before the commits
        try:
            for e in started:
                while not e.wait(0.05):
                    pass
            break
        except KeyboardInterrupt as exc:
            stop[0] = 1
            pending = exc
    if errors and pending is None:
        pending = errors[0]
    return pending


def _commit_fit(net, X, Y, epochs, lr, seed, s, histories, diverged, i):
    """Network i's own fit of ``epochs`` (the lane path's commit), its
    history into histories[i], its index into ``diverged`` if it diverged."""
    try:
        histories[i] = _fit.run(
            net, X, Y, None, None, epochs, lr, s["bs"], False, seed, None, None, None,
            s["every"], s["keep_every"], False, None, MAX_CHUNK, REPORT_SECONDS, owned=True,
        )  # fmt: skip
    except DivergenceError as err:
        histories[i] = err.history
        if i not in diverged:
            diverged.append(i)


def _lend(guards):
    """Make the calling thread the owner of guards that the thread of
    fit_many holds (the lock stays taken: no other thread gets in); return
    the previous owners, for :func:`_give_back`."""
    me = threading.get_ident()
    lent = [g.owner for g in guards]
    for g in guards:
        g.owner = me
    return lent


def _give_back(guards, lent):
    for g, owner in zip(guards, lent):
        g.owner = owner


def _on_threads(one, count, threads):
    """Run ``one(i, stop)`` for every network on ``threads`` threads.  An
    interrupt of the calling thread (Ctrl-C) sets ``stop``, which ends every
    network's run at its next check (its native loop returns every
    _STOP_SECONDS to read it; counters committed), and is raised once all
    have stopped; so is the first error of a thread."""
    stop = threading.Event()
    errors = []
    lock = threading.Lock()
    todo = iter(range(count))
    # Each worker sets its event as it ends.  The caller waits on the events,
    # not on Thread.join: a join interrupted by Ctrl-C can leave the thread
    # looking finished to the next join (CPython 3.11), which would return
    # before the workers commit their counters.
    ended = [threading.Event() for _ in range(threads)]

    def work(done):
        try:
            while not stop.is_set():
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                try:
                    one(i, stop)
                except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
                    errors.append(exc)
                    stop.set()
        finally:
            done.set()

    workers = [threading.Thread(target=work, args=(e,), daemon=True) for e in ended]
    started = []
    try:
        for t, e in zip(workers, ended):
            t.start()
            started.append(e)
        for e in started:
            while not e.wait(0.05):
                pass
    except BaseException:
        stop.set()
        for e in started:  # every network at its next check, counters committed
            e.wait()
        raise
    if errors:
        raise errors[0]
