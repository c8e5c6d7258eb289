"""What runs beside :meth:`Network.fit <cbp.Network.fit>`'s loop: early
stopping, and the progress display of ``verbose=True``."""

import time

from . import _validation

__all__ = ["EarlyStopping", "Progress"]


class EarlyStopping:
    """Stop :meth:`Network.fit` when the monitored loss stops improving.

    In the spirit of scikit-learn's ``n_iter_no_change``/``tol``: an epoch
    whose loss is not below ``best - tol`` counts as no improvement, and
    training stops after ``patience`` such epochs in a row.  The monitored
    loss is ``val_loss`` when validation data is given, else the training
    loss.  With ``restore_best`` the parameters of the best epoch are put
    back when training ends (stopped early or not).
    """

    def __init__(self, patience=10, tol=1e-4, restore_best=True):
        self.patience = _validation.positive_int(patience, "patience")
        self.tol = _validation.real(tol, "tol", minimum=0.0)
        self.restore_best = bool(restore_best)

    def __repr__(self):
        return (
            f"EarlyStopping(patience={self.patience}, tol={self.tol}, "
            f"restore_best={self.restore_best})"
        )


class Progress:
    """A progress bar over epochs: tqdm if installed, else plain lines."""

    #: seconds between two lines of the plain-text fallback
    INTERVAL = 1.0

    def __init__(self, total):
        self.total = total
        self.done = 0
        self.last = None
        try:
            from tqdm.auto import tqdm  # type: ignore[import-untyped]
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, unit="epoch")

    def update(self, n, logs):
        """``n`` more epochs done; ``logs``: the latest epoch's figures by name."""
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(refresh=False, **{k: f"{v:.4g}" for k, v in logs.items()})
        else:  # at most a line a second, and the last epoch
            now = time.monotonic()
            if self.last is None or now - self.last >= self.INTERVAL or self.done >= self.total:
                self.last = now
                figures = "  ".join(f"{k} {v:.6g}" for k, v in logs.items())
                print(f"epoch {self.done}/{self.total}  {figures}", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
