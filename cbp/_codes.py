"""Names and integer codes shared by the native core and its NumPy twin.

The engine works on small integer codes; the public API speaks in names.
This module is the one place where the two meet, so that an unknown name is
rejected with the list of the known ones before anything reaches a kernel.
"""

#: activation name -> code.  Aliases map to the same code.
ACTIVATIONS = {
    "identity": 0,
    "linear": 0,
    "relu": 1,
    "leaky_relu": 2,
    "prelu": 2,
    "elu": 3,
    "sigmoid": 4,
    "logistic": 4,
    "tanh": 5,
    "softmax": 6,
}
ACT_IDENTITY, ACT_RELU, ACT_LEAKY, ACT_ELU, ACT_SIGMOID, ACT_TANH, ACT_SOFTMAX = range(7)

#: default ``alpha`` of the activations that take one.
DEFAULT_ALPHA = {"leaky_relu": 0.01, "prelu": 0.25, "elu": 1.0}

#: loss name -> code.
LOSSES = {
    "squared_error": 0,
    "half_squared_error": 1,
    "categorical_crossentropy": 2,
    "binary_crossentropy": 3,
}
LOSS_SE, LOSS_HALF_SE, LOSS_CCE, LOSS_BCE = range(4)

REDUCTIONS = {"mean": 0, "sum": 1}
RED_MEAN, RED_SUM = range(2)

#: clipping of predicted probabilities in the cross-entropy losses (seed 003).
CLIP_EPS = 1e-7

# Layer table columns (int64 ``meta`` and float64 ``hyper``), one row a layer.
KIND_DENSE, KIND_DROPOUT = 0, 1
M_KIND, M_NIN, M_NOUT, M_ACT, M_WOFF, M_BOFF, M_TRAIN = range(7)
N_META = 7
H_ALPHA, H_WL1, H_WL2, H_BL1, H_BL2, H_RATE = range(6)
N_HYPER = 6


def _lookup(table, name, what):
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a string, got {type(name).__name__}")
    try:
        return table[name.lower()]
    except KeyError:
        known = ", ".join(sorted(table))
        raise ValueError(f"unknown {what} {name!r}; expected one of: {known}") from None


def activation_code(name):
    """Return the integer code of an activation name (case-insensitive)."""
    return _lookup(ACTIVATIONS, name, "activation")


def loss_code(name):
    """Return the integer code of a loss name."""
    return _lookup(LOSSES, name, "loss")


def reduction_code(name):
    """Return the integer code of a reduction name ("mean" or "sum")."""
    return _lookup(REDUCTIONS, name, "reduction")

# Optimizers: codes, hyper-parameter vector columns, state slots a parameter.
OPT_SGD, OPT_ADAGRAD, OPT_RMSPROP, OPT_ADAM = range(4)
O_LR, O_DECAY, O_MOMENTUM, O_NESTEROV, O_BETA1, O_BETA2, O_RHO, O_EPS = range(8)
N_OPT = 8

# fit(): history columns, early-stopping state, return status.
HIST_LOSS, HIST_ACC, HIST_VAL_LOSS, HIST_VAL_ACC = range(4)
N_HIST = 4
ES_BEST, ES_WAIT, ES_BEST_EPOCH, ES_PATIENCE, ES_TOL, ES_ON = range(6)
N_ES = 6
FIT_DONE, FIT_STOPPED, FIT_DIVERGED = range(3)

# Streams of the shared counter-based generator (splitmix64): the shuffle of
# epoch e uses stream 2e; dropout layer l in epoch e uses 2(e * n_layers + l) + 1.
