"""The ``.npz`` container of a cbp file: a bounded reader and a careful writer.

A cbp file is a zip archive of exactly four ``.npy`` members, stored
uncompressed (as ``np.savez`` writes them):

===================  ================================================
``format``           int64, shape (1,): the format version
``meta``             a unicode scalar: the network's description, JSON
``parameters``       float64, shape (n,)
``optimizer_state``  float64, shape (0,) or (slots * n,)
===================  ================================================

:func:`read` trusts nothing in the file.  It reads the zip's directory and
each member's ``.npy`` header (a few hundred bytes) before any data; it reads
``meta`` (at most :data:`MAX_META_BYTES`) and asks its caller which array
lengths that description implies; and only when every header and every size
the zip declares agrees with those lengths does it read the arrays' data.
A compressed member is refused once its header is read (a few bytes
inflated), so a load never allocates more than the file's own size.  Every failure after the file is
open is a :class:`cbp.FormatError` naming the file and the problem.

Arrays must have exactly the dtype ``save`` writes: float64, int64 or
unicode, in either byte order (``save`` writes little-endian; files written
on a big-endian machine by earlier versions hold big-endian arrays), 1-D in
C order (a unicode scalar for ``meta``).  Object arrays are refused from the
header, before anything could be unpickled.

:func:`write` writes atomically and behaves like an editor's save: see its
docstring.
"""

import errno
import json
import os
import secrets
import stat
import struct
import sys
import zipfile

import numpy as np

from ._errors import FormatError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["read", "write", "resolve_for_reading", "MAX_META_BYTES"]

#: the members of a cbp file
MEMBERS = ("format", "meta", "parameters", "optimizer_state")
#: the most bytes the ``meta`` member's data may hold (a quarter of that in characters)
MAX_META_BYTES = 1 << 20
#: the most entries a zip may list before its directory is even parsed
_MAX_ENTRIES = 16
#: the most bytes its central directory may take
_MAX_DIRECTORY = 1 << 16
#: the most bytes of a member's .npy header (numpy's own are 64 or 128)
_MAX_HEADER = 1024
#: deeper JSON is not a network description (a real one is 4 levels deep)
_MAX_DEPTH = 32
#: bytes a zip may hold beyond its members' data: the per-member headers, the
#: central directory, the end records and a comment of at most 64 KiB
_SLACK = len(MEMBERS) * 1024 + (1 << 16) + 1024
_CHUNK = 1 << 20

_FLOAT = np.dtype(np.float64)
_INT = np.dtype(np.int64)


def _failure(path, what):
    return FormatError(f"{path} is not a readable cbp network file: {what}")


def resolve_for_reading(path):
    """``path`` (str), or ``path + ".npz"`` when ``path`` has no suffix,
    does not exist and that file does: :func:`write` adds the suffix."""
    path = os.fsdecode(os.fspath(path))
    if not os.path.lexists(path) and not _suffix(path):
        withsuffix = path + ".npz"
        if os.path.lexists(withsuffix):
            return withsuffix
    return path


def read(path, lengths, newest):
    """The description and arrays of the cbp file at ``path``, read within bounds.

    Parameters
    ----------
    path : str
        An existing file (see :func:`resolve_for_reading`).
    lengths : callable
        ``lengths(meta) -> {"parameters": (n,), "optimizer_state": (0, m)}``:
        the array lengths that the parsed description ``meta`` (a dict)
        allows.  It may raise ValueError, TypeError, KeyError or
        AttributeError for an invalid description.
    newest : int
        The newest format version this cbp reads.

    Returns
    -------
    meta : dict
    parameters, optimizer_state : ndarray of float64 (native byte order)

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        From opening the file, unchanged.
    FormatError
        For anything wrong inside it.
    """
    with open(path, "rb") as fh:  # errors opening the file are the caller's
        try:
            return _read(fh, path, lengths, newest)
        except FormatError:
            raise
        except Exception as exc:  # zipfile, zlib, numpy's header parser, a short read, ...
            raise _failure(path, f"{type(exc).__name__}: {exc}") from None


def _read(fh, path, lengths, newest):
    size = os.fstat(fh.fileno()).st_size
    if fh.read(6) == b"\x93NUMPY":
        raise _failure(path, "it is a single .npy array, not a .npz archive")
    end = _zip_directory(fh, size)
    if end is None:
        raise _failure(path, "it is not a zip archive")
    entries, directory = end
    if entries > _MAX_ENTRIES:
        raise _failure(path, f"its zip lists {entries} members; a cbp file holds {len(MEMBERS)}")
    if directory > _MAX_DIRECTORY:
        raise _failure(
            path, f"its zip directory takes {directory} bytes; a cbp file's takes a few hundred"
        )
    with zipfile.ZipFile(fh) as z:
        infos = z.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise _failure(path, f"its zip holds duplicate members {dup}")
        members = {n[:-4]: i for n, i in zip(names, infos) if n.endswith(".npy")}
        missing = [m for m in MEMBERS if m not in members]
        if missing:
            raise FormatError(f"{path} is not a cbp network file (missing {sorted(missing)})")

        version = _small(z, members["format"], path, _INT, (1,))[0]
        if version < 1:
            raise FormatError(f"{path}: bad format field")
        if version > newest:
            raise FormatError(
                f"{path} was written in format {version} by a newer cbp; "
                f"this cbp reads format {newest} and older"
            )
        extra = sorted(set(names) - {m + ".npy" for m in MEMBERS})
        if extra:
            raise _failure(path, f"unexpected members {extra}")

        meta = _meta(z, members["meta"], path)
        try:
            allowed = lengths(meta)
        except FormatError as exc:
            raise FormatError(f"{path}: {exc}") from None
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise FormatError(f"{path} holds an invalid network description: {exc}") from None

        # every header and declared size before any data
        plans = {}
        for name in ("parameters", "optimizer_state"):
            info = members[name]
            with z.open(info) as f:
                shape, dtype, offset = _header(f, info, path)
            _check_array(path, name, info, shape, dtype, offset, allowed[name])
            plans[name] = (info, shape[0], dtype, offset)
        needed = sum(i.file_size for i in infos)
        if size > needed + _SLACK:
            raise _failure(path, f"it is {size} bytes, its members need {needed}")
        return (meta,) + tuple(_data(z, path, *plans[n]) for n in ("parameters", "optimizer_state"))


def _zip_directory(fh, size):
    """(entries, bytes) of the zip's central directory, from its end record
    (None if there is none): read before zipfile parses a directory of any size."""
    tail = min(size, 22 + 0xFFFF)
    fh.seek(size - tail)
    data = fh.read(tail)
    at = data.rfind(b"PK\x05\x06")
    if at < 0 or len(data) - at < 22:
        return None
    _, _, _, _, count, cd_size, cd_offset, _ = struct.unpack("<4s4H2LH", data[at : at + 22])
    if count == 0xFFFF or 0xFFFFFFFF in (cd_size, cd_offset):  # a zip64 end record
        loc = at - 20
        if loc < 0 or data[loc : loc + 4] != b"PK\x06\x07":
            return None
        (offset,) = struct.unpack("<Q", data[loc + 8 : loc + 16])
        if offset > size - 56:
            return None
        fh.seek(offset)
        rec = fh.read(56)
        if rec[:4] != b"PK\x06\x06":
            return None
        count, cd_size = struct.unpack("<QQ", rec[32:48])
    return count, cd_size


def _header(f, info, path):
    """(shape, dtype, header length) of an .npy member, from its first bytes."""
    major, minor = np.lib.format.read_magic(f)
    if (major, minor) == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=_MAX_HEADER)
    elif (major, minor) == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=_MAX_HEADER)
    else:
        raise _failure(path, f"{info.filename} has .npy format version {major}.{minor}")
    if fortran:
        raise _failure(path, f"{info.filename} is in Fortran order; cbp writes C order")
    return shape, dtype, f.tell()


def _dtype_ok(dtype, kind):
    """``dtype`` is ``kind`` (float64, int64) in either byte order."""
    return (
        dtype.kind == kind.kind
        and dtype.itemsize == kind.itemsize
        and not dtype.fields
        and dtype.shape == ()
    )


def _check_declared(path, info, offset, nbytes):
    """The zip's sizes for this member are those of its header and its array."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise _failure(path, f"{info.filename} is compressed; cbp stores members uncompressed")
    if info.file_size != offset + nbytes or info.compress_size != info.file_size:
        raise _failure(
            path,
            f"{info.filename} declares {info.file_size} bytes ({info.compress_size} "
            f"stored), its .npy header needs {offset + nbytes}",
        )


def _check_array(path, name, info, shape, dtype, offset, allowed):
    if not _dtype_ok(dtype, _FLOAT):
        raise _failure(path, f"{name} has dtype {dtype.str}; cbp stores float64")
    if len(shape) != 1:
        raise _failure(path, f"{name} has shape {shape}; cbp stores it 1-D")
    if shape[0] not in allowed:
        if name == "parameters":
            raise FormatError(
                f"{path}: the file holds {shape[0]} parameters, its architecture needs {allowed[0]}"
            )
        raise FormatError(
            f"{path}: the optimizer state does not fit the network ({shape[0]} values; "
            f"{' or '.join(map(str, allowed))} expected)"
        )
    _check_declared(path, info, offset, shape[0] * dtype.itemsize)


def _small(z, info, path, kind, shape):
    """A small member (format): checked header, then its few bytes."""
    with z.open(info) as f:
        got, dtype, offset = _header(f, info, path)
        if got != shape or not _dtype_ok(dtype, kind):
            raise FormatError(f"{path}: bad format field")
        _check_declared(path, info, offset, dtype.itemsize)
        data = f.read(dtype.itemsize)
        _at_end(f, len(data), dtype.itemsize)
    return np.frombuffer(data, dtype=dtype).astype(kind).tolist()


def _at_end(f, got, nbytes):
    """The member ended after ``nbytes`` of data (``got`` were read)."""
    if got != nbytes:
        raise EOFError(f"{f.name} ends after {got} of its {nbytes} bytes of data")
    if f.read(1):  # also makes zipfile check the CRC at the end of the member
        raise ValueError(f"{f.name} holds more bytes than its .npy header says")


def _meta(z, info, path):
    """The ``meta`` member, parsed: a JSON object of bounded size and depth."""
    with z.open(info) as f:
        shape, dtype, offset = _header(f, info, path)
        if dtype.kind != "U" or shape != ():
            raise _failure(
                path, f"meta has dtype {dtype.str} and shape {shape}; cbp stores a unicode scalar"
            )
        if dtype.itemsize > MAX_META_BYTES:
            raise _failure(
                path,
                f"meta is {dtype.itemsize} bytes, more than the "
                f"{MAX_META_BYTES} a network description may take",
            )
        _check_declared(path, info, offset, dtype.itemsize)
        data = f.read(dtype.itemsize)
        _at_end(f, len(data), dtype.itemsize)
    codec = (
        "utf-32-be"
        if dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder == "big")
        else "utf-32-le"
    )
    text = data.decode(codec).rstrip("\0")  # numpy pads with NULs
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise FormatError(
            f"{path} holds an invalid network description: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(meta, dict):
        raise FormatError(
            f"{path} holds an invalid network description: "
            f"a JSON {type(meta).__name__}, not an object"
        )
    if _depth(meta) > _MAX_DEPTH:
        raise FormatError(
            f"{path} holds an invalid network description: nested deeper than {_MAX_DEPTH} levels"
        )
    return meta


def _depth(node):
    """The nesting depth of parsed JSON (iterative: no recursion to exhaust)."""
    deepest, todo = 0, [(node, 1)]
    while todo:
        node, level = todo.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, level)
            todo.extend((v, level + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def _data(z, path, info, n, dtype, offset):
    """A checked float64 member's data, read in chunks into its array."""
    out = np.empty(n, dtype=dtype)
    view = memoryview(out).cast("B")
    with z.open(info) as f:
        if len(f.read(offset)) != offset:
            raise EOFError(f"{info.filename} ends inside its .npy header")
        done = 0
        while done < len(view):
            chunk = f.read(min(_CHUNK, len(view) - done))
            if not chunk:
                break
            view[done : done + len(chunk)] = chunk
            done += len(chunk)
        _at_end(f, done, len(view))
    del view
    return out.astype(np.float64, copy=False)


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------
#: temporary files of write(): ``.cbp-save-<16 hex>.tmp``, locked while written
_TMP_PREFIX, _TMP_SUFFIX = ".cbp-save-", ".tmp"


def _suffix(path):
    return os.path.splitext(os.path.basename(path))[1]


def write(path, arrays):
    """Write ``arrays`` to ``path`` as an ``.npz`` archive, atomically; the path written.

    * **Name.** A path without a suffix gets ``.npz`` (``"m"`` writes
      ``m.npz``, as ``np.savez`` does); any other suffix is kept as given
      (``m.bin``).  The path written is returned, as a str.  A path that
      names a directory raises IsADirectoryError; one whose target is a
      device or a FIFO raises OSError (EINVAL), since a rename would replace
      the device itself.
    * **Atomic.** The data go to a temporary file in the destination's
      folder, which is fsynced and renamed over the destination
      (``os.replace``), and the folder is fsynced after the rename (POSIX):
      at any moment the destination is the old complete file or the new one.
    * **Symbolic links** are written through, as editors do: the final target
      (``os.path.realpath``, through chains of links, a dangling link
      included) is replaced and the link stays a link.
    * **Mode.** A file that is replaced keeps its mode (owner and group
      become the writer's, since it is a new file).  A new file gets the mode
      ``open()`` would give it: the temporary file is created with 0o666, so
      the kernel applies the umask (or the folder's default ACL) itself, with
      no need to read or change the process-wide umask.
    * **No litter.** A save killed mid-write leaves its temporary file
      (``.cbp-save-<random>.tmp``).  Each writer holds an exclusive
      ``flock`` on its temporary file from before anything is written until
      it is renamed away, and every save first deletes the temporary files of
      this scheme in the destination's folder whose lock it can take: the
      kernel drops a lock only when its holder closed the file or died, so a
      file that can be locked under that name is one whose writer is dead.
      Files of other programs (or of older cbp versions, ``.cbp-<8>.tmp``)
      are never touched.  On systems without ``flock`` (Windows) a file that
      is still open cannot be deleted there, so the same sweep just tries to
      delete.
    """
    given = os.fsdecode(os.fspath(path))
    if not given:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), given)
    if not os.path.basename(given) or os.path.isdir(given):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), given)
    if not _suffix(given):
        given += ".npz"
    target = os.path.realpath(given)
    if os.path.islink(target):  # realpath stops in a loop of links
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), given)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        mode = None  # as created
    else:
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), given)
        if not stat.S_ISREG(st.st_mode):  # a device or a FIFO is not replaced by a file
            raise OSError(
                errno.EINVAL, "not a regular file; save replaces only regular files", given
            )
        mode = stat.S_IMODE(st.st_mode)
    folder = os.path.dirname(target)
    _sweep(folder)
    fd, tmp = _create(folder)
    try:
        with os.fdopen(fd, "wb", closefd=False) as f:
            np.savez(f, **{k: _little_endian(v) for k, v in arrays.items()})
        if mode is not None:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, mode)
            else:
                os.chmod(tmp, mode)
        os.fsync(fd)
        if fcntl is None:
            os.close(fd)  # Windows renames no open file
            fd = None
        os.replace(tmp, target)  # POSIX: still locked, so no sweep can take it first
    except BaseException:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if fd is not None:
        os.close(fd)
    _fsync_folder(folder)
    return given


def _little_endian(a):
    """``a``, little-endian (what every machine reads without a swap, and save writes)."""
    a = np.asarray(a)
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big"):
        return a.astype(a.dtype.newbyteorder("<"))
    return a


def _create(folder):
    """A new temporary file in ``folder``, exclusively locked: (fd, path).

    Created with mode 0o666, so that the kernel applies the umask (or the
    folder's default ACL) exactly as it does to any new file.
    """
    flags = (
        os.O_RDWR
        | os.O_CREAT
        | os.O_EXCL
        | getattr(os, "O_CLOEXEC", 0)
        | getattr(os, "O_BINARY", 0)
    )
    while True:
        tmp = os.path.join(folder, f"{_TMP_PREFIX}{secrets.token_hex(8)}{_TMP_SUFFIX}")
        fd = os.open(tmp, flags, 0o666)
        if fcntl is None:
            return fd, tmp
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    raise
                return fd, tmp  # no locks on this file system: no sweep can take it either
            # a sweep may have locked and deleted the file between open and flock
            if os.path.samestat(os.fstat(fd), os.lstat(tmp)):
                return fd, tmp
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        os.close(fd)


def _sweep(folder):
    """Delete the temporary files of dead writers of this scheme in ``folder``."""
    try:
        names = [
            n
            for n in os.listdir(folder)
            if n.startswith(_TMP_PREFIX)
            and n.endswith(_TMP_SUFFIX)
            and len(n) == len(_TMP_PREFIX) + 16 + len(_TMP_SUFFIX)
        ]
    except OSError:
        return  # the save itself reports an unusable folder
    for name in names:
        stale = os.path.join(folder, name)
        if fcntl is None:
            try:
                os.unlink(stale)
            except OSError:
                pass  # open in a live writer, or not ours to delete
            continue
        try:
            fd = os.open(stale, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue  # gone, a link, or not readable by us
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer holds it
            if os.path.samestat(st, os.lstat(stale)):
                os.unlink(stale)
        except OSError:
            pass
        finally:
            os.close(fd)


def _fsync_folder(folder):
    """Make the rename durable (POSIX); a folder that cannot be opened or synced is skipped."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)
