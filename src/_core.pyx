"""The native core of cbp: one extension module, ``cbp._core``, built from
this file and the ``.pxi`` files it includes.

The data path, from the public API down::

    cbp/network.py, cbp/optim.py    the API: Network, layers, optimizers
    cbp/_validation.py              user input checked and converted
    cbp/_fit.py                     fit's loop: chunks of epochs, one Engine.fit each
    src/_engine.pxi                 Engine: its state and entry points
      _engine_inputs.pxi            the entry points' own array checks
      _engine_passes.pxi            workspace, forward/backward passes
      _engine_chunks.pxi            row chunks of a step, on threads
      _engine_update.pxi            optimizer step, snapshot, rollback
      _engine_fit.pxi               fit's epoch loop, fit_fast's checks
      _engine_tiny.pxi              fit's fused per-sample step (src/_tiny.h)
      _engine_fm.pxi                fit's whole-epoch run, feature-major (src/_fm_epochs.h)
      _engine_schedule.pxi          fit's learning-rate schedules
      _engine_sklearn.pxi           scikit-learn's epoch and lbfgs loss/gradient
      _signals.pxi                  the clock and Ctrl-C inside fit
    src/_kernels.pxd                the nogil C routines of the passes
    src/_simd.h, _simd_body.h       their SIMD tables; BLAS dgemm
    src/_threads.h                  the process-wide thread budget

Beside the engine: ``_wrappers.pxi`` (a Python wrapper of each kernel, with
its NumPy twin's signature in ``cbp/_reference_kernels.py``, so that the two can be
compared), ``_random.pxi`` (the counter-based generator, shuffles, dropout
masks), ``_tuning.pxi`` (SIMD table, BLAS and feature-major thresholds),
``_threads.pxi`` (thread and chunk thresholds, the budget), and
``_codes.pxd`` (every code and table column, mirrored by ``cbp/_codes.py``).

Validation: ``cbp.network`` checks user input before it reaches the engine,
except on two fast paths: ``Engine.train_step_sgd`` and ``Engine.fit_fast``
take raw arrays and check them themselves (dtype, shape, contiguity,
finiteness, range), returning None, having touched nothing, for anything
they do not take.
Elsewhere the memoryview signatures still reject wrong dtypes, dimensions
and memory layouts with a ``ValueError``/``TypeError``, and the wrappers and
entry points check shapes and codes, so no input crashes the interpreter.
"""
cimport cython
from cython.parallel cimport parallel
from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS,
                             PyBUF_FORMAT, PyBUF_WRITABLE)
from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.math cimport isfinite, INFINITY, NAN
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memcpy, memset

import numpy as np

cdef object ndarray = np.ndarray
cdef object _F64 = np.dtype(np.float64)  # (NumPy's builtin float64 descriptor)

from cbp._errors import DivergenceError
from cbp._memory import aligned_empty, aligned_zeros

from _codes cimport *
# The C routines by their module's name (kernels.dense_forward, ...): the
# plain names belong to the Python wrappers, which carry the twin's names.
cimport _kernels as kernels
from _kernels cimport (cbp_simd, cbp_simd_select, cbp_cpu_has_avx2, cbp_simd_has_avx512,
                       cbp_avx512_off, cbp_blas_min_work,
                       cbp_blas_min_side, FEATURE_MAJOR_NONE, FEATURE_MAJOR_RELU,
                       FEATURE_MAJOR_SIGMOID)
from _fm_epochs cimport (cbp_fm_net, cbp_fm_epochs_fn, cbp_fm_select, cbp_fm_lanes_fn,
                         cbp_fm_lanes_select, cbp_fm_lanes_wide, cbp_fm_lanes_reg_on,
                         cbp_fm_lanes_reg_calls,
                         cbp_fm_lanes_pair_select, cbp_fm_lanes_work, cbp_fm_lanes_reg_shape,
                         CBP_FM_MAX_LAYERS,
                         CBP_FM_ACT_RELU, CBP_FM_ACT_SIGMOID, cbp_blk_net, cbp_blk_epochs_fn,
                         cbp_blk_select, cbp_blk_vlog_fn, cbp_blk_vlog_select,
                         CBP_BLK_MAX_SIDE, CBP_BLK_LD, CBP_BLK_MIN_ROWS, CBP_BLK_WORK,
                         CBP_BLK_LOSS_SE, CBP_BLK_LOSS_HALF_SE, CBP_BLK_LOSS_CCE)
from _tiny cimport (cbp_tiny_net, cbp_tiny_run_fn, cbp_tiny_select, CBP_TINY_MAX_LAYERS,
                    CBP_TINY_MAX_WIDTH, CBP_TINY_MAX_PARAMS)


def _columns():
    """{name: value} of every code and table column of src/_codes.pxd, as
    this build compiled them.  Private: the tests check it against
    cbp/_codes.py name by name."""
    return {
        "ACT_IDENTITY": ACT_IDENTITY,
        "ACT_RELU": ACT_RELU,
        "ACT_LEAKY": ACT_LEAKY,
        "ACT_ELU": ACT_ELU,
        "ACT_SIGMOID": ACT_SIGMOID,
        "ACT_TANH": ACT_TANH,
        "ACT_SOFTMAX": ACT_SOFTMAX,
        "LOSS_SE": LOSS_SE,
        "LOSS_HALF_SE": LOSS_HALF_SE,
        "LOSS_CCE": LOSS_CCE,
        "LOSS_BCE": LOSS_BCE,
        "LOSS_SK_SQUARED": LOSS_SK_SQUARED,
        "LOSS_SK_LOG": LOSS_SK_LOG,
        "LOSS_SK_BINARY_LOG": LOSS_SK_BINARY_LOG,
        "LOSS_SK_POISSON": LOSS_SK_POISSON,
        "RED_MEAN": RED_MEAN,
        "RED_SUM": RED_SUM,
        "OPT_SGD": OPT_SGD,
        "OPT_ADAGRAD": OPT_ADAGRAD,
        "OPT_RMSPROP": OPT_RMSPROP,
        "OPT_ADAM": OPT_ADAM,
        "OPT_ADAM_SK": OPT_ADAM_SK,
        "KIND_DENSE": KIND_DENSE,
        "KIND_DROPOUT": KIND_DROPOUT,
        "FIT_DONE": FIT_DONE,
        "FIT_STOPPED": FIT_STOPPED,
        "FIT_DIVERGED": FIT_DIVERGED,
        "LAYER_KIND": LAYER_KIND,
        "LAYER_N_IN": LAYER_N_IN,
        "LAYER_N_OUT": LAYER_N_OUT,
        "LAYER_ACTIVATION": LAYER_ACTIVATION,
        "LAYER_WEIGHT_OFFSET": LAYER_WEIGHT_OFFSET,
        "LAYER_BIAS_OFFSET": LAYER_BIAS_OFFSET,
        "LAYER_TRAINABLE": LAYER_TRAINABLE,
        "LAYER_BIAS_TRAINABLE": LAYER_BIAS_TRAINABLE,
        "N_LAYER_INTS": N_LAYER_INTS,
        "LAYER_ALPHA": LAYER_ALPHA,
        "LAYER_WEIGHT_L1": LAYER_WEIGHT_L1,
        "LAYER_WEIGHT_L2": LAYER_WEIGHT_L2,
        "LAYER_BIAS_L1": LAYER_BIAS_L1,
        "LAYER_BIAS_L2": LAYER_BIAS_L2,
        "LAYER_DROPOUT_RATE": LAYER_DROPOUT_RATE,
        "N_LAYER_FLOATS": N_LAYER_FLOATS,
        "HYPER_LEARNING_RATE": HYPER_LEARNING_RATE,
        "HYPER_DECAY": HYPER_DECAY,
        "HYPER_MOMENTUM": HYPER_MOMENTUM,
        "HYPER_NESTEROV": HYPER_NESTEROV,
        "HYPER_BETA1": HYPER_BETA1,
        "HYPER_BETA2": HYPER_BETA2,
        "HYPER_RHO": HYPER_RHO,
        "HYPER_EPSILON": HYPER_EPSILON,
        "N_OPTIMIZER_HYPER": N_OPTIMIZER_HYPER,
        "HISTORY_LOSS": HISTORY_LOSS,
        "HISTORY_ACCURACY": HISTORY_ACCURACY,
        "HISTORY_VAL_LOSS": HISTORY_VAL_LOSS,
        "HISTORY_VAL_ACCURACY": HISTORY_VAL_ACCURACY,
        "HISTORY_LR": HISTORY_LR,
        "N_HISTORY": N_HISTORY,
        "EARLY_STOP_BEST_LOSS": EARLY_STOP_BEST_LOSS,
        "EARLY_STOP_WAIT": EARLY_STOP_WAIT,
        "EARLY_STOP_BEST_EPOCH": EARLY_STOP_BEST_EPOCH,
        "EARLY_STOP_PATIENCE": EARLY_STOP_PATIENCE,
        "EARLY_STOP_TOLERANCE": EARLY_STOP_TOLERANCE,
        "EARLY_STOP_ENABLED": EARLY_STOP_ENABLED,
        "N_EARLY_STOP": N_EARLY_STOP,
        "SCHEDULE_NONE": SCHEDULE_NONE,
        "SCHEDULE_STEP": SCHEDULE_STEP,
        "SCHEDULE_EXPONENTIAL": SCHEDULE_EXPONENTIAL,
        "SCHEDULE_COSINE": SCHEDULE_COSINE,
        "SCHEDULE_PLATEAU": SCHEDULE_PLATEAU,
        "SCHEDULE_KIND": SCHEDULE_KIND,
        "SCHEDULE_STEP_SIZE": SCHEDULE_STEP_SIZE,
        "SCHEDULE_GAMMA": SCHEDULE_GAMMA,
        "SCHEDULE_T_MAX": SCHEDULE_T_MAX,
        "SCHEDULE_ETA_MIN": SCHEDULE_ETA_MIN,
        "SCHEDULE_FACTOR": SCHEDULE_FACTOR,
        "SCHEDULE_PATIENCE": SCHEDULE_PATIENCE,
        "SCHEDULE_THRESHOLD": SCHEDULE_THRESHOLD,
        "SCHEDULE_COOLDOWN": SCHEDULE_COOLDOWN,
        "SCHEDULE_MIN_LR": SCHEDULE_MIN_LR,
        "SCHEDULE_EPS": SCHEDULE_EPS,
        "SCHEDULE_SCALE": SCHEDULE_SCALE,
        "SCHEDULE_BEST": SCHEDULE_BEST,
        "SCHEDULE_BAD_EPOCHS": SCHEDULE_BAD_EPOCHS,
        "SCHEDULE_COOLDOWN_LEFT": SCHEDULE_COOLDOWN_LEFT,
        "N_SCHEDULE": N_SCHEDULE,
    }


include "_tuning.pxi"
include "_threads.pxi"
include "_wrappers.pxi"
include "_random.pxi"
include "_engine.pxi"
include "_signals.pxi"
include "_engine_inputs.pxi"
include "_engine_passes.pxi"
include "_engine_chunks.pxi"
include "_engine_update.pxi"
include "_engine_tiny.pxi"
include "_engine_fm.pxi"
include "_engine_blk.pxi"
include "_engine_fit.pxi"
include "_engine_schedule.pxi"
include "_engine_sklearn.pxi"
