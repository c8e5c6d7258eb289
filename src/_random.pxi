# Included by _core.pyx.  Random numbers (the counter-based generator of
# _kernels.pxd), the epoch's sample order, and dropout masks.
#
# One generator (splitmix64 on a counter) is shared with the twin, in
# streams: the shuffle of epoch e uses stream 2e; dropout layer l in epoch e
# uses 2(e * n_layers + l) + 1.

def random_bits(uint64_t seed, uint64_t stream, uint64_t start, Py_ssize_t n):
    """uint64 draws number start .. start + n - 1 of stream ``stream``."""
    out = np.empty(n, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    cdef uint64_t base = kernels.stream_base(seed, stream)
    cdef Py_ssize_t i
    for i in range(n):
        o[i] = kernels.draw(base, start + <uint64_t>i)
    return out


cdef struct KeyIdx:
    uint64_t key
    long long idx


cdef int _cmp_keyidx(const void* a, const void* b) noexcept nogil:
    cdef const KeyIdx* x = <const KeyIdx*>a
    cdef const KeyIdx* y = <const KeyIdx*>b
    if x.key < y.key:
        return -1
    if x.key > y.key:
        return 1
    return -1 if x.idx < y.idx else (1 if x.idx > y.idx else 0)


cdef void _epoch_order(uint64_t seed, uint64_t epoch, long long* order,
                       KeyIdx* tmp, Py_ssize_t n) noexcept nogil:
    """order := argsort of the epoch's hashed keys, ties broken by index."""
    cdef Py_ssize_t i
    cdef uint64_t base = kernels.stream_base(seed, 2 * epoch)
    for i in range(n):
        tmp[i].key = kernels.draw(base, <uint64_t>i)
        tmp[i].idx = i
    qsort(tmp, n, sizeof(KeyIdx), _cmp_keyidx)
    for i in range(n):
        order[i] = tmp[i].idx


def shuffle_order(uint64_t seed, uint64_t epoch, Py_ssize_t n):
    """The sample order of an epoch: argsort of hashed keys, ties by index."""
    out = np.empty(n, dtype=np.int64)
    if n == 0:
        return out
    cdef long long[::1] o = out
    cdef KeyIdx* tmp = <KeyIdx*>PyMem_Malloc(n * sizeof(KeyIdx))
    if tmp == NULL:
        raise MemoryError()
    with nogil:
        _epoch_order(seed, epoch, &o[0], tmp, n)
    PyMem_Free(tmp)
    return out


def dropout_mask(uint64_t seed, uint64_t stream, uint64_t start, double rate,
                 double[:, ::1] out):
    """out := 1 / (1 - rate) where a uniform draw >= rate, else 0 (inverted dropout)."""
    if out.shape[0] and out.shape[1]:
        kernels.dropout_mask(seed, stream, start, rate, &out[0, 0], out.shape[0] * out.shape[1])
    return out.base
