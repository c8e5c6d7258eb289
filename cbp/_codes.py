"""Names and integer codes shared by the native core and its NumPy twin.

The engine works on small integer codes; the public API speaks in names.
This module is the one place where the two meet, so that an unknown name is
rejected with the list of the known ones before anything reaches a kernel.

The integer constants (codes, and the columns of the tables the engine
reads) are declared for the C side in src/_codes.pxd, with the same names
and values; ``tests/test_equivalence.py`` checks the two name by name
against ``cbp._core._columns()``.
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
# scikit-learn's losses, of Engine.sklearn_epoch / sklearn_loss_grad only
LOSS_SK_SQUARED, LOSS_SK_LOG, LOSS_SK_BINARY_LOG, LOSS_SK_POISSON = range(4, 8)

REDUCTIONS = {"mean": 0, "sum": 1}
RED_MEAN, RED_SUM = range(2)

#: clipping of predicted probabilities in the cross-entropy losses (seed 003).
CLIP_EPS = 1e-7

# Layer kinds, and the columns of the Engine's two layer tables, one row a
# layer: the int64 ``layer_ints`` and the float64 ``layer_floats``.
KIND_DENSE, KIND_DROPOUT = 0, 1
(
    LAYER_KIND,
    LAYER_N_IN,
    LAYER_N_OUT,
    LAYER_ACTIVATION,
    LAYER_WEIGHT_OFFSET,
    LAYER_BIAS_OFFSET,
    LAYER_TRAINABLE,
) = range(7)
LAYER_BIAS_TRAINABLE = 7
N_LAYER_INTS = 8
(
    LAYER_ALPHA,
    LAYER_WEIGHT_L1,
    LAYER_WEIGHT_L2,
    LAYER_BIAS_L1,
    LAYER_BIAS_L2,
    LAYER_DROPOUT_RATE,
) = range(6)
N_LAYER_FLOATS = 6


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


# Optimizers: codes, and the entries of the hyper-parameter vector ``hyper``.
OPT_SGD, OPT_ADAGRAD, OPT_RMSPROP, OPT_ADAM = range(4)
OPT_ADAM_SK = 4  # scikit-learn's Adam (eps added to sqrt(v)): sklearn_epoch only
(
    HYPER_LEARNING_RATE,
    HYPER_DECAY,
    HYPER_MOMENTUM,
    HYPER_NESTEROV,
    HYPER_BETA1,
    HYPER_BETA2,
    HYPER_RHO,
    HYPER_EPSILON,
) = range(8)
N_OPTIMIZER_HYPER = 8

# Engine.fit: the columns of ``history``, the entries of ``early_stop``, the
# status it returns.
HISTORY_LOSS, HISTORY_ACCURACY, HISTORY_VAL_LOSS, HISTORY_VAL_ACCURACY = range(4)
HISTORY_LR = 4
N_HISTORY = 5
(
    EARLY_STOP_BEST_LOSS,
    EARLY_STOP_WAIT,
    EARLY_STOP_BEST_EPOCH,
    EARLY_STOP_PATIENCE,
    EARLY_STOP_TOLERANCE,
    EARLY_STOP_ENABLED,
) = range(6)
N_EARLY_STOP = 6
FIT_DONE, FIT_STOPPED, FIT_DIVERGED = range(3)

# Learning-rate schedules of Engine.fit: the codes, and the entries of its
# ``schedule`` vector (parameters, then the plateau state it updates).
SCHEDULE_NONE, SCHEDULE_STEP, SCHEDULE_EXPONENTIAL, SCHEDULE_COSINE, SCHEDULE_PLATEAU = range(5)
(
    SCHEDULE_KIND,
    SCHEDULE_STEP_SIZE,
    SCHEDULE_GAMMA,
    SCHEDULE_T_MAX,
    SCHEDULE_ETA_MIN,
    SCHEDULE_FACTOR,
    SCHEDULE_PATIENCE,
    SCHEDULE_THRESHOLD,
    SCHEDULE_COOLDOWN,
    SCHEDULE_MIN_LR,
    SCHEDULE_EPS,
    SCHEDULE_SCALE,
    SCHEDULE_BEST,
    SCHEDULE_BAD_EPOCHS,
    SCHEDULE_COOLDOWN_LEFT,
) = range(15)
N_SCHEDULE = 15
