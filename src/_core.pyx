"""The native core of cbp.

``def`` functions here are thin wrappers over the ``noexcept nogil`` kernels
of ``_kernels.pxd``: each has the same signature as its NumPy twin in
``cbp/_reference.py``, and exists so that the two can be compared.  The
``Engine`` class runs whole forward / backward / update passes over a network
without touching Python objects between layers.

Nothing here validates user input: ``cbp.network`` does that before calling.
The memoryview signatures still reject wrong dtypes, dimensions and memory
layouts with a ``ValueError``/``TypeError``, never a crash.
"""
cimport cython
from cython.parallel cimport parallel
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.math cimport isfinite, NAN
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memcpy

import numpy as np

cdef object ndarray = np.ndarray

from cbp._errors import DivergenceError

from _kernels cimport *

include "_tuning.pxi"
include "_threads.pxi"
include "_wrappers.pxi"
include "_random.pxi"
include "_engine.pxi"
include "_engine_inputs.pxi"
include "_engine_passes.pxi"
include "_engine_chunks.pxi"
include "_engine_update.pxi"
