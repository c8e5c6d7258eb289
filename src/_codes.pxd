# The integer codes and table columns shared by the native core and its NumPy
# twin, declared once for the C side; cbp/_codes.py holds the same names with
# the same values for the Python side, and tests/test_equivalence.py checks
# the two against each other name by name (through cbp._core._columns()).
#
# Everything that crosses from Python into the engine as a number is here:
# what a code means, and which column of which table holds what.

# ---------------------------------------------------------------- codes ----
cdef enum:  # activations
    ACT_IDENTITY = 0
    ACT_RELU = 1
    ACT_LEAKY = 2
    ACT_ELU = 3
    ACT_SIGMOID = 4
    ACT_TANH = 5
    ACT_SOFTMAX = 6

cdef enum:  # losses
    LOSS_SE = 0
    LOSS_HALF_SE = 1
    LOSS_CCE = 2
    LOSS_BCE = 3

cdef enum:  # scikit-learn's losses, of Engine.sklearn_epoch / sklearn_loss_grad only
    LOSS_SK_SQUARED = 4       # 0.5 * mean over outputs of the weighted row mean of (y - p)**2
    LOSS_SK_LOG = 5           # softmax output, p clipped to [eps, 1 - eps]
    LOSS_SK_BINARY_LOG = 6    # logistic outputs, p clipped to [eps, 1 - eps]
    LOSS_SK_POISSON = 7       # exp output, half Poisson deviance

cdef enum:  # reductions of a loss over the batch
    RED_MEAN = 0
    RED_SUM = 1

cdef enum:  # optimizers
    OPT_SGD = 0
    OPT_ADAGRAD = 1
    OPT_RMSPROP = 2
    OPT_ADAM = 3
    OPT_ADAM_SK = 4           # scikit-learn's Adam (eps added to sqrt(v)): sklearn_epoch only

cdef enum:  # layer kinds
    KIND_DENSE = 0
    KIND_DROPOUT = 1

cdef enum:  # what Engine.fit returns as its status
    FIT_DONE = 0        # every epoch ran
    FIT_STOPPED = 1     # early stopping ended the run
    FIT_DIVERGED = 2    # a loss or a parameter stopped being finite

# --------------------------------------------------------------- tables ----
cdef enum:  # columns of the int64 layer table ``layer_ints`` (n_layers, N_LAYER_INTS)
    LAYER_KIND = 0            # KIND_DENSE or KIND_DROPOUT
    LAYER_N_IN = 1            # inputs of the layer
    LAYER_N_OUT = 2           # outputs of the layer
    LAYER_ACTIVATION = 3      # activation code
    LAYER_WEIGHT_OFFSET = 4   # offset of W (n_in, n_out) in the parameter buffer
    LAYER_BIAS_OFFSET = 5     # offset of b (n_out,), right after W; -1: no bias
    LAYER_TRAINABLE = 6       # 1 if the optimizer updates the layer, else 0
    LAYER_BIAS_TRAINABLE = 7  # 1 if the optimizer updates the bias (of a trainable layer), else 0
    N_LAYER_INTS = 8

cdef enum:  # columns of the float64 layer table ``layer_floats`` (n_layers, N_LAYER_FLOATS)
    LAYER_ALPHA = 0           # alpha of leaky_relu / prelu / elu
    LAYER_WEIGHT_L1 = 1       # L1 penalty factor on the weights
    LAYER_WEIGHT_L2 = 2       # L2 penalty factor on the weights
    LAYER_BIAS_L1 = 3         # L1 penalty factor on the bias
    LAYER_BIAS_L2 = 4         # L2 penalty factor on the bias
    LAYER_DROPOUT_RATE = 5    # the rate of a dropout layer
    N_LAYER_FLOATS = 6

cdef enum:  # entries of the optimizer's float64 hyper-parameter vector (N_OPTIMIZER_HYPER,)
    HYPER_LEARNING_RATE = 0
    HYPER_DECAY = 1           # the rate is HYPER_LEARNING_RATE / (1 + decay * t)
    HYPER_MOMENTUM = 2        # SGD
    HYPER_NESTEROV = 3        # SGD: 1.0 for Nesterov momentum
    HYPER_BETA1 = 4           # Adam
    HYPER_BETA2 = 5           # Adam
    HYPER_RHO = 6             # RMSprop
    HYPER_EPSILON = 7         # Adagrad, RMSprop, Adam
    N_OPTIMIZER_HYPER = 8

cdef enum:  # columns of fit's float64 history (n_epochs, N_HISTORY), one row an epoch
    HISTORY_LOSS = 0          # mean training loss of the epoch's batches
    HISTORY_ACCURACY = 1      # training accuracy (NaN for regression)
    HISTORY_VAL_LOSS = 2      # loss on the validation data (NaN without)
    HISTORY_VAL_ACCURACY = 3  # accuracy on the validation data (NaN without or for regression)
    HISTORY_LR = 4            # the epoch's learning rate (the schedule's; before decay)
    N_HISTORY = 5

cdef enum:  # entries of fit's float64 early-stopping state (N_EARLY_STOP,), updated in place
    EARLY_STOP_BEST_LOSS = 0  # the best monitored loss so far
    EARLY_STOP_WAIT = 1       # epochs since the last improvement
    EARLY_STOP_BEST_EPOCH = 2  # the epoch of the best loss
    EARLY_STOP_PATIENCE = 3   # stop when EARLY_STOP_WAIT reaches this
    EARLY_STOP_TOLERANCE = 4  # an improvement is a loss below best - tolerance
    EARLY_STOP_ENABLED = 5    # 0.0: early stopping off
    N_EARLY_STOP = 6

cdef enum:  # learning-rate schedules (SCHEDULE_KIND)
    SCHEDULE_NONE = 0         # every epoch at the optimizer's rate
    SCHEDULE_STEP = 1         # lr * gamma ** (epoch // step_size)
    SCHEDULE_EXPONENTIAL = 2  # lr * gamma ** epoch
    # SCHEDULE_COSINE: eta_min + (lr - eta_min) * (1 + cos(pi * min(epoch, T_max) / T_max)) / 2
    SCHEDULE_COSINE = 3
    SCHEDULE_PLATEAU = 4      # lr * scale, scale multiplied down when the monitored loss stalls

cdef enum:  # entries of fit's float64 schedule vector (N_SCHEDULE,): parameters, then plateau state
    SCHEDULE_KIND = 0         # a SCHEDULE_* code
    SCHEDULE_STEP_SIZE = 1    # step: epochs between two multiplications by gamma (>= 1)
    SCHEDULE_GAMMA = 2        # step, exponential: the factor (> 0)
    SCHEDULE_T_MAX = 3        # cosine: epochs of the half period (>= 1)
    SCHEDULE_ETA_MIN = 4      # cosine: the rate at T_max and after
    SCHEDULE_FACTOR = 5       # plateau: a reduction multiplies the rate by this (0 < factor < 1)
    SCHEDULE_PATIENCE = 6     # plateau: reduce after more than this many bad epochs in a row
    SCHEDULE_THRESHOLD = 7    # plateau: an improvement is a loss below best * (1 - threshold)
    SCHEDULE_COOLDOWN = 8     # plateau: epochs after a reduction whose bad epochs do not count
    SCHEDULE_MIN_LR = 9       # plateau: a reduction goes no lower than this
    SCHEDULE_EPS = 10         # plateau: a reduction by eps or less is not applied
    SCHEDULE_SCALE = 11       # plateau state: the rate is lr * scale (1.0 at the start)
    SCHEDULE_BEST = 12        # plateau state: the best monitored loss (inf at the start)
    SCHEDULE_BAD_EPOCHS = 13  # plateau state: bad epochs in a row
    SCHEDULE_COOLDOWN_LEFT = 14  # plateau state: cooldown epochs left
    N_SCHEDULE = 15
