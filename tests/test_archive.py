"""The .npz container (cbp/_archive.py): hostile files are refused cheaply,
and save behaves like a careful editor's save.

load must refuse a crafted file from its headers and declared sizes, before
inflating or allocating anything that the architecture in its ``meta`` does
not need, with a cbp.FormatError naming the file and the problem; files that
save writes (now and in earlier versions) must still load identically.
save must add ``.npz`` to a name without a suffix, write through symbolic
links, honour the umask and keep a replaced file's mode, and leave no
temporary files behind even when it is killed.
"""

import errno
import io
import json
import os
import random
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile

import numpy as np
import pytest

import cbp
from cbp import _archive, optim

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

POSIX = os.name == "posix"
ROOT = POSIX and os.geteuid() == 0


# ---------------------------------------------------------------------------
# Building files by hand
# ---------------------------------------------------------------------------
def small_net(optimizer=None):
    return cbp.Network(
        [cbp.Dense(2, 4, "tanh", seed=1), cbp.Dense(4, 3, seed=2)],
        backend="numpy",
        optimizer=optimizer,
        seed=5,
    )


@pytest.fixture
def base(tmp_path):
    """A saved network with Adam state, and the raw .npy bytes of its members."""
    net = small_net(optim.Adam(0.01))
    X, y = cbp.datasets.spiral_data(5, 3)
    net.fit(X, np.eye(3)[y], epochs=2, batch_size=5)
    path = tmp_path / "base.npz"
    net.save(path)
    with zipfile.ZipFile(path) as z:
        members = {i.filename[:-4]: z.read(i) for i in z.infolist()}
    return net, path, members


def npy(array=None, *, descr=None, shape=None, fortran=False, data=b""):
    """An .npy member's bytes: an array's, or a hand-made header and data."""
    buf = io.BytesIO()
    if array is not None:
        np.lib.format.write_array(buf, np.asanyarray(array), allow_pickle=True)
    else:
        np.lib.format.write_array_header_1_0(
            buf, {"descr": descr, "fortran_order": fortran, "shape": shape}
        )
        buf.write(data)
    return buf.getvalue()


def meta_npy(members, edit=None, raw=None):
    meta = json.loads(str(np.load(io.BytesIO(members["meta"]))[()]))
    if edit is not None:
        edit(meta)
    return npy(np.array(json.dumps(meta) if raw is None else raw))


def build(
    path, members, order=("format", "meta", "parameters", "optimizer_state"), compress=(), extra=()
):
    """A zip of ``members`` (name -> bytes) in ``order``, plus (name, bytes)
    pairs of ``extra`` (names may repeat); members named in ``compress`` deflated."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of a duplicate name
        with zipfile.ZipFile(path, "w") as z:
            for name in order:
                if name in members:
                    z.writestr(
                        name + ".npy",
                        members[name],
                        zipfile.ZIP_DEFLATED if name in compress else zipfile.ZIP_STORED,
                    )
            for name, data in extra:
                z.writestr(name, data)
    return path


def expect_format_error(path, *fragments):
    with pytest.raises(cbp.FormatError) as info:
        cbp.load(path)
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def assert_same(a, b):
    assert a.get_config() == b.get_config()
    np.testing.assert_array_equal(a.parameters, b.parameters)
    assert a.parameters.dtype == np.float64 and a.parameters.dtype.isnative
    assert a.epochs_trained == b.epochs_trained
    assert (a.optimizer is None) == (b.optimizer is None)
    if a.optimizer is not None:
        assert a.optimizer.get_config() == b.optimizer.get_config()
        assert a.optimizer.iterations == b.optimizer.iterations
        np.testing.assert_array_equal(a.optimizer.state, b.optimizer.state)


# ---------------------------------------------------------------------------
# Files that must still load
# ---------------------------------------------------------------------------
def test_the_rebuilt_base_file_loads(base, tmp_path):
    """The builder itself makes loadable files (so the refusals below come
    from the change made)."""
    net, _, members = base
    assert_same(cbp.load(build(tmp_path / "same.npz", members)), net)


def test_a_file_written_as_earlier_versions_wrote_it_loads(base, tmp_path):
    """Earlier saves were np.savez of these four arrays in native byte order."""
    net, _, _ = base
    path = tmp_path / "old.npz"
    with open(path, "wb") as f:
        np.savez(
            f,
            format=np.array([1], dtype=np.int64),
            meta=np.array(json.dumps(cbp.persistence.network_state(net))),
            parameters=net.parameters.copy(),
            optimizer_state=net.optimizer.state.copy(),
        )
    assert_same(cbp.load(path), net)


def test_a_big_endian_file_loads(base, tmp_path):
    """What save wrote on a big-endian machine: every array big-endian."""
    net, _, members = base
    swapped = {}
    for name, raw in members.items():
        a = np.load(io.BytesIO(raw))
        swapped[name] = npy(a.astype(a.dtype.newbyteorder(">")))
    assert b"'>f8'" in swapped["parameters"] and b"'>U" in swapped["meta"]
    assert_same(cbp.load(build(tmp_path / "be.npz", swapped)), net)


def test_save_writes_little_endian(base):
    _, _, members = base
    for name, descr in [
        ("format", b"'<i8'"),
        ("meta", b"'<U"),
        ("parameters", b"'<f8'"),
        ("optimizer_state", b"'<f8'"),
    ]:
        assert descr in members[name][:128], name


# ---------------------------------------------------------------------------
# Hostile files: refused from headers and declared sizes, in bounded memory
# ---------------------------------------------------------------------------
def deflated_bomb(path, members, descr, n, meta=None):
    """A zip whose parameters member inflates to n items of ``descr``,
    streamed so that this test never holds them."""
    with zipfile.ZipFile(path, "w") as z:
        for name in ("format", "meta", "optimizer_state"):
            z.writestr(
                name + ".npy", meta if name == "meta" and meta is not None else members[name]
            )
        info = zipfile.ZipInfo("parameters.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as m:
            np.lib.format.write_array_header_1_0(
                m, {"descr": descr, "fortran_order": False, "shape": (n,)}
            )
            left, zero = n * np.dtype(descr).itemsize, bytes(1 << 20)
            while left:
                m.write(zero[: min(left, len(zero))])
                left -= min(left, len(zero))
    return path


def one_layer_meta(members, n_inputs, n_neurons):
    def edit(m):
        m["config"]["layers"] = [
            dict(m["config"]["layers"][1], n_inputs=n_inputs, n_neurons=n_neurons, use_bias=False)
        ]
        m["optimizer"] = None

    return meta_npy(members, edit)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A valid file, and name -> (path, fragment of the expected message) of crafted ones."""
    folder = tmp_path_factory.mktemp("hostile")
    small_net().save(folder / "valid.npz")
    with zipfile.ZipFile(folder / "valid.npz") as z:
        members = {i.filename[:-4]: z.read(i) for i in z.infolist()}
    files = {
        # the probe's bomb: 262 KB inflating to 256 MiB of uint8
        "uint8-bomb": (deflated_bomb(folder / "b1.npz", members, "|u1", 1 << 28), "dtype |u1"),
        # float64 zeros, 32 MiB, against the real (small) architecture
        "f8-bomb": (
            deflated_bomb(folder / "b2.npz", members, "<f8", 1 << 22),
            f"holds {1 << 22} parameters, its architecture needs {N}",
        ),
        # ... and against an architecture of exactly that size: stored members only
        "consistent-bomb": (
            deflated_bomb(
                folder / "b3.npz",
                members,
                "<f8",
                1 << 22,
                meta=one_layer_meta(members, 1 << 11, 1 << 11),
            ),
            "parameters.npy is compressed",
        ),
        # a header declaring 2**40 values (8 TiB) over 64 bytes of data, consistent meta
        "huge-shape": (
            build(
                folder / "h.npz",
                dict(
                    members,
                    meta=one_layer_meta(members, 1 << 20, 1 << 20),
                    parameters=npy(descr="<f8", shape=(1 << 40,), data=bytes(64)),
                ),
            ),
            "declares",
        ),
        "many-members": (
            build(folder / "many.npz", members, extra=[(f"x{i}.npy", b"") for i in range(5000)]),
            "lists 5004 members",
        ),
    }
    return folder / "valid.npz", files


def zip64_end_records(monkeypatch, build_it):
    """What build_it() writes when zipfile must use zip64 end records (as it
    does past 4 GiB or 65535 members): the limits lowered while it writes."""
    with monkeypatch.context() as m:
        m.setattr(zipfile, "ZIP64_LIMIT", 0)
        m.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 0)
        path = build_it()
    raw = bytearray(path.read_bytes())
    assert raw[-98:-94] == b"PK\x06\x06" and raw[-42:-38] == b"PK\x06\x07"  # record, locator
    # the classic end record then says "see zip64" in every field, as past the limits
    assert raw[-22:-18] == b"PK\x05\x06"
    raw[-14:-2] = struct.pack("<HHLL", 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    path.write_bytes(bytes(raw))
    return path


def test_zip64_end_records(base, tmp_path, monkeypatch):
    net, _, members = base
    assert_same(
        cbp.load(zip64_end_records(monkeypatch, lambda: build(tmp_path / "z64.npz", members))), net
    )
    many = zip64_end_records(
        monkeypatch,
        lambda: build(
            tmp_path / "many64.npz", members, extra=[(f"x{i}.npy", b"") for i in range(5000)]
        ),
    )
    expect_format_error(many, "lists 5004 members")


def test_hostile_files_in_process(hostile):
    _, files = hostile
    for path, fragment in files.values():
        expect_format_error(path, fragment)
    assert os.path.getsize(files["uint8-bomb"][0]) < 400_000


MEASURE = textwrap.dedent("""
    import json, sys
    import cbp

    def status(key):  # kB
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])

    def reset_peak():  # Linux 4.0+; else the peak so far stands (an upper bound)
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass

    cbp.load(sys.argv[1])  # a valid file first: every code path imported
    out = {}
    for path in sys.argv[2:]:
        reset_peak()
        before = status("VmRSS")
        try:
            cbp.load(path)
            error = None
        except cbp.FormatError as exc:
            error = str(exc)
        out[path] = [status("VmHWM") - before, error]
    print(json.dumps(out))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc/self/status")
def test_hostile_files_take_little_memory(hostile):
    """Each refused file raises its peak RSS by less than 20 MB (the uint8
    bomb took 2.4 GB and 8 s before); measured in a fresh process, as the
    growth of the high-water mark over the resident size just before."""
    path, files = hostile
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)] + [str(p) for p, _ in files.values()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    for name, (p, fragment) in files.items():
        growth_kb, error = out[str(p)]
        assert error is not None and fragment in error, (name, error)
        assert growth_kb < 20_000, f"{name}: peak RSS grew by {growth_kb} kB"
    print({name: out[str(p)][0] for name, (p, _) in files.items()}, "kB")


def test_damaged_deflate_stream_is_a_format_error(base, tmp_path):
    """The header of a compressed member is read (a few bytes inflated): a
    broken stream there is zlib.error, mapped."""
    _, _, members = base
    path = build(tmp_path / "z.npz", members, compress=("parameters",))
    raw = bytearray(path.read_bytes())
    at = raw.index(b"parameters.npy") + len("parameters.npy") + 20  # past the zip64 extra
    raw[at : at + 8] = b"\xff" * 8
    path.write_bytes(bytes(raw))
    expect_format_error(path, "not a readable cbp network file")


def test_savez_compressed_is_refused(base, tmp_path):
    net, _, _ = base
    path = tmp_path / "c.npz"
    np.savez_compressed(
        path,
        format=np.array([1]),
        meta=np.array(json.dumps(cbp.persistence.network_state(net))),
        parameters=net.parameters,
        optimizer_state=net.optimizer.state,
    )
    expect_format_error(path, "is compressed; cbp stores members uncompressed")


def test_truncated_member(base, tmp_path):
    """Eight bytes of the parameters' data cut out of the archive: the
    members after it no longer sit where the directory says."""
    net, path, _ = base
    raw = path.read_bytes()
    tail = net.parameters[-1].tobytes()
    at = raw.index(tail)
    (tmp_path / "t.npz").write_bytes(raw[:at] + raw[at + 8 :])
    expect_format_error(tmp_path / "t.npz", "not a readable cbp network file")


def test_member_shorter_than_its_header(base, tmp_path):
    net, _, members = base
    n = net.parameters.size
    header = len(npy(descr="<f8", shape=(n,)))
    cut = dict(members, parameters=npy(descr="<f8", shape=(n,), data=net.parameters[:-1].tobytes()))
    expect_format_error(
        build(tmp_path / "s.npz", cut),
        f"parameters.npy declares {header + 8 * (n - 1)} bytes",
        f"its .npy header needs {header + 8 * n}",
    )


def test_member_longer_than_its_header(base, tmp_path):
    net, _, members = base
    n = net.parameters.size
    long = dict(
        members, parameters=npy(descr="<f8", shape=(n,), data=net.parameters.tobytes() + bytes(8))
    )
    expect_format_error(build(tmp_path / "l.npz", long), "declares")


def test_duplicate_member_names(base, tmp_path):
    net, _, members = base
    dup = build(tmp_path / "d.npz", members, extra=[("parameters.npy", npy(net.parameters * 2))])
    expect_format_error(dup, "duplicate members ['parameters.npy']")


def test_huge_zip_directory(base, tmp_path):
    """Few entries, but names of 60000 bytes: refused from the end record."""
    _, _, members = base
    path = build(
        tmp_path / "names.npz", members, extra=[("n" * 60000 + str(i), b"") for i in range(3)]
    )
    expect_format_error(path, "its zip directory takes")


def test_unexpected_member(base, tmp_path):
    _, _, members = base
    expect_format_error(
        build(tmp_path / "u.npz", members, extra=[("notes.txt", b"hi")]),
        "unexpected members ['notes.txt']",
    )


def test_a_file_far_bigger_than_its_members(base, tmp_path):
    """Bytes no member refers to (here 1 MiB before the zip, which zipfile
    accepts as a self-extractor's stub) are refused, unread."""
    _, path, _ = base
    (tmp_path / "pad.npz").write_bytes(bytes(1 << 20) + path.read_bytes())
    expect_format_error(tmp_path / "pad.npz", "its members need")


class _Marker:
    """Unpickling this creates a folder: proof that a pickle ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


N = 27  # parameters of small_net


@pytest.mark.parametrize(
    "array, fragment",
    [
        (np.zeros((1, N)), f"shape (1, {N}); cbp stores it 1-D"),
        (np.zeros(N, dtype=np.complex128), "dtype <c16"),
        (np.zeros(N, dtype=np.int64), "dtype <i8"),
        (np.zeros(N, dtype=np.float32), "dtype <f4"),
        (np.array(["1.0"] * N), "dtype <U3"),
        (np.zeros(N, dtype=[("a", "<f8")]), "dtype"),
    ],
    ids=["2-D", "complex", "int", "float32", "string", "structured"],
)
def test_parameters_of_another_kind(base, tmp_path, array, fragment):
    net, _, members = base
    assert net.parameters.size == N
    expect_format_error(build(tmp_path / "p.npz", dict(members, parameters=npy(array))), fragment)


def test_fortran_order_is_refused(base, tmp_path):
    net, _, members = base
    f = npy(descr="<f8", shape=(N,), fortran=True, data=net.parameters.tobytes())
    expect_format_error(build(tmp_path / "f.npz", dict(members, parameters=f)), "Fortran order")


@pytest.mark.parametrize("member", ["parameters", "optimizer_state", "meta"])
def test_object_arrays_are_never_unpickled(base, tmp_path, member):
    _, _, members = base
    marker = tmp_path / "pickle-ran"
    evil = npy(np.array([_Marker(str(marker))] * 3, dtype=object))
    expect_format_error(build(tmp_path / "o.npz", dict(members, **{member: evil})), "|O")
    assert not marker.exists()


@pytest.mark.parametrize(
    "state, fragment",
    [
        (np.zeros(N), "optimizer state does not fit"),  # one slot, Adam has two
        (np.zeros((2, N)), f"shape (2, {N})"),
        (np.zeros(2 * N, dtype=np.float32), "dtype <f4"),
    ],
    ids=["one-slot", "2-D", "float32"],
)
def test_optimizer_state_of_another_kind(base, tmp_path, state, fragment):
    _, _, members = base
    expect_format_error(
        build(tmp_path / "s.npz", dict(members, optimizer_state=npy(state))), fragment
    )


def test_optimizer_state_without_an_optimizer(base, tmp_path):
    _, _, members = base
    meta = meta_npy(members, lambda m: m.update(optimizer=None))
    expect_format_error(
        build(tmp_path / "s.npz", dict(members, meta=meta)), "optimizer state does not fit"
    )
    # without one, an empty state is what save writes
    fine = dict(members, meta=meta, optimizer_state=npy(np.empty(0)))
    assert cbp.load(build(tmp_path / "ok.npz", fine)).optimizer is None


def _nested(depth):
    return json.dumps({"config": json.loads("[" * depth + "]" * depth)})


@pytest.mark.parametrize(
    "meta, fragment",
    [
        ("{not json", "invalid network description: JSONDecodeError"),
        ("[" * 100000, "invalid network description: RecursionError"),
        ("[1, 2]", "a JSON list, not an object"),
        ("3", "a JSON int, not an object"),
        ('"text"', "a JSON str, not an object"),
        (_nested(100), "nested deeper than 32 levels"),
        ('{"config": ' + "1" * 5000 + "}", "invalid network description"),  # int digit limit
        ("x" * 300_000, "more than the 1048576 a network description may take"),
        ("", "invalid network description"),
    ],
    ids=["not-json", "deep-brackets", "list", "int", "str", "nested", "long-int", "huge", "empty"],
)
def test_bad_meta(base, tmp_path, meta, fragment):
    _, _, members = base
    expect_format_error(
        build(tmp_path / "m.npz", dict(members, meta=npy(np.array(meta)))), fragment
    )


@pytest.mark.parametrize(
    "meta, fragment",
    [
        (np.array(b"{}"), "meta has dtype |S2"),
        (np.array(["{}"]), "shape (1,)"),
        (np.array(1.0), "meta has dtype <f8"),
    ],
    ids=["bytes", "1-D", "float"],
)
def test_meta_of_another_kind(base, tmp_path, meta, fragment):
    _, _, members = base
    expect_format_error(build(tmp_path / "m.npz", dict(members, meta=npy(meta))), fragment)


def test_meta_that_is_not_utf32(base, tmp_path):
    """A code point beyond U+10FFFF: UnicodeDecodeError, mapped."""
    _, _, members = base
    bad = npy(descr="<U2", shape=(), data=b"{\0\0\0" + (0x110000).to_bytes(4, "little"))
    expect_format_error(build(tmp_path / "m.npz", dict(members, meta=bad)), "UnicodeDecodeError")


def test_huge_layer_in_meta_allocates_nothing(base, tmp_path):
    """A description of a 10**12-parameter network over the real 27
    parameters is refused from the header's shape."""
    _, _, members = base
    meta = one_layer_meta(members, 10**6, 10**6)
    expect_format_error(
        build(tmp_path / "m.npz", dict(members, meta=meta)),
        f"holds {N} parameters, its architecture needs 1000000000000",
    )


@pytest.mark.parametrize("member", ["format", "meta", "parameters", "optimizer_state"])
def test_npy_format_version_3_is_refused(base, tmp_path, member):
    _, _, members = base
    raw = bytearray(members[member])
    raw[6] = 3  # the major version byte after b"\x93NUMPY"
    expect_format_error(
        build(tmp_path / "v.npz", dict(members, **{member: bytes(raw)})), ".npy format version 3.0"
    )


def test_open_errors_are_unchanged(tmp_path):
    with pytest.raises(FileNotFoundError):
        cbp.load(tmp_path / "absent.npz")
    with pytest.raises(IsADirectoryError):
        cbp.load(tmp_path)


@pytest.mark.skipif(not POSIX or ROOT, reason="root reads any file")
def test_unreadable_file_is_a_permission_error(base, tmp_path):
    _, path, _ = base
    os.chmod(path, 0)
    with pytest.raises(PermissionError):
        cbp.load(path)


# ---------------------------------------------------------------------------
# Names: the .npz suffix
# ---------------------------------------------------------------------------
def test_save_adds_npz_to_a_name_without_suffix(tmp_path, monkeypatch):
    net = small_net()
    monkeypatch.chdir(tmp_path)
    assert net.save("m") == "m.npz"
    assert net.save(tmp_path / "sub") == str(tmp_path / "sub.npz")
    assert net.save(os.fsencode(str(tmp_path / "b"))) == str(tmp_path / "b.npz")
    assert net.save("m.bin") == "m.bin"  # another suffix is kept
    assert net.save("w.npz") == "w.npz"
    assert sorted(os.listdir(tmp_path)) == ["b.npz", "m.bin", "m.npz", "sub.npz", "w.npz"]
    for name in ("m", "m.npz", "m.bin", tmp_path / "sub", "b", "w"):
        assert_same(cbp.load(name), net)


def test_load_prefers_the_name_as_given(tmp_path):
    """A suffixless file written by an earlier save is read before m.npz."""
    old, new = small_net(), cbp.Network([cbp.Dense(1, 1, seed=9)], backend="numpy")
    new.save(tmp_path / "m")
    os.replace(tmp_path / "m.npz", tmp_path / "m")  # as an earlier version named it
    old.save(tmp_path / "m")
    assert sorted(os.listdir(tmp_path)) == ["m", "m.npz"]
    assert_same(cbp.load(tmp_path / "m"), new)
    assert_same(cbp.load(tmp_path / "m.npz"), old)
    with pytest.raises(FileNotFoundError):
        cbp.load(tmp_path / "other")
    with pytest.raises(FileNotFoundError):
        cbp.load(tmp_path / "m.bin")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs")
def test_save_to_a_fifo_is_refused(tmp_path):
    """A rename would replace the FIFO (or a device, such as /dev/null for
    root) with a regular file."""
    os.mkfifo(tmp_path / "pipe.npz")
    with pytest.raises(OSError) as info:
        small_net().save(tmp_path / "pipe.npz")
    assert info.value.errno == errno.EINVAL
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe.npz").st_mode)
    assert sorted(os.listdir(tmp_path)) == ["pipe.npz"]


def test_save_to_an_empty_path_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError):
        small_net().save("")
    assert os.listdir(tmp_path) == []


def test_save_to_a_directory_is_refused(tmp_path):
    net = small_net()
    (tmp_path / "models").mkdir()
    for path in (tmp_path / "models", str(tmp_path / "models") + os.sep):
        with pytest.raises(IsADirectoryError):
            net.save(path)
    assert sorted(os.listdir(tmp_path)) == ["models"]
    assert os.listdir(tmp_path / "models") == []


# ---------------------------------------------------------------------------
# Symbolic links: written through
# ---------------------------------------------------------------------------
needs_symlinks = pytest.mark.skipif(not POSIX, reason="POSIX symbolic links")


def litter(*folders):
    return [n for f in folders for n in os.listdir(f) if n.startswith(".cbp-")]


@needs_symlinks
def test_save_through_a_link(tmp_path):
    old, new = small_net(), cbp.Network([cbp.Dense(1, 2, seed=3)], backend="numpy")
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "real.npz"
    old.save(target)
    link = tmp_path / "link.npz"
    link.symlink_to(os.path.join("data", "real.npz"))
    assert new.save(link) == str(link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("data", "real.npz")
    assert_same(cbp.load(target), new)
    assert_same(cbp.load(link), new)
    assert not litter(tmp_path, tmp_path / "data")
    assert sorted(os.listdir(tmp_path / "data")) == ["real.npz"]


@needs_symlinks
def test_save_through_a_dangling_link(tmp_path):
    net = small_net()
    link = tmp_path / "link.npz"
    link.symlink_to("absent.npz")
    net.save(link)
    assert link.is_symlink()
    assert_same(cbp.load(tmp_path / "absent.npz"), net)


@needs_symlinks
def test_save_through_a_chain_of_links(tmp_path):
    old, new = small_net(), cbp.Network([cbp.Dense(1, 2, seed=3)], backend="numpy")
    old.save(tmp_path / "real.npz")
    (tmp_path / "b.npz").symlink_to("real.npz")
    (tmp_path / "a.npz").symlink_to("b.npz")
    new.save(tmp_path / "a.npz")
    assert os.readlink(tmp_path / "a.npz") == "b.npz"
    assert os.readlink(tmp_path / "b.npz") == "real.npz"
    assert not (tmp_path / "real.npz").is_symlink()
    assert_same(cbp.load(tmp_path / "real.npz"), new)


@needs_symlinks
def test_save_through_a_loop_of_links(tmp_path):
    (tmp_path / "a.npz").symlink_to("b.npz")
    (tmp_path / "b.npz").symlink_to("a.npz")
    with pytest.raises(OSError) as info:
        small_net().save(tmp_path / "a.npz")
    assert info.value.errno == errno.ELOOP
    assert os.readlink(tmp_path / "a.npz") == "b.npz"
    assert sorted(os.listdir(tmp_path)) == ["a.npz", "b.npz"]


# ---------------------------------------------------------------------------
# Modes: the umask for a new file, the old mode for a replaced one
# ---------------------------------------------------------------------------
UMASK = textwrap.dedent("""
    import os, stat, sys
    import cbp
    os.umask(int(sys.argv[1], 8))
    folder = sys.argv[2]
    net = cbp.Network([cbp.Dense(1, 1, seed=0)], backend="numpy")
    net.save(os.path.join(folder, "new.npz"))
    with open(os.path.join(folder, "plain"), "w"):
        pass
    old = os.path.join(folder, "old.npz")
    net.save(old)
    os.chmod(old, 0o640)
    net.save(old)
    print(" ".join(oct(stat.S_IMODE(os.stat(os.path.join(folder, n)).st_mode))
                   for n in ("new.npz", "plain", "old.npz")))
""")


@pytest.mark.skipif(not POSIX, reason="POSIX modes")
@pytest.mark.parametrize("umask, mode", [("022", 0o644), ("077", 0o600), ("002", 0o664)])
def test_new_files_honour_the_umask(tmp_path, umask, mode):
    run = subprocess.run(
        [sys.executable, "-c", UMASK, umask, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    new, plain, old = (int(m, 8) for m in run.stdout.split())
    assert new == plain == mode  # what open() gives a new file under this umask
    assert old == 0o640  # a replaced file keeps its mode


# ---------------------------------------------------------------------------
# Atomicity and temporary files
# ---------------------------------------------------------------------------
@pytest.mark.skipif(not POSIX, reason="POSIX folder fsync")
def test_save_fsyncs_the_file_then_the_folder(tmp_path, monkeypatch):
    net = small_net()
    synced, replaced = [], []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        synced.append(("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file", len(replaced)))
        real_fsync(fd)

    def replace(src, dst):
        replaced.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    net.save(tmp_path / "n.npz")
    assert synced == [("file", 0), ("folder", 1)]
    assert replaced == [str(tmp_path / "n.npz")]


needs_flock = pytest.mark.skipif(_archive.fcntl is None, reason="flock")


@needs_flock
def test_sweep_deletes_only_unlocked_files_of_its_own_scheme(tmp_path):
    import fcntl

    def touch(name):
        (tmp_path / name).write_bytes(b"partial")
        return tmp_path / name

    dead = touch(".cbp-save-0123456789abcdef.tmp")
    live = touch(".cbp-save-fedcba9876543210.tmp")
    older_scheme = touch(".cbp-k3j2h1g0.tmp")  # mkstemp names of earlier versions
    other = touch(".cbp-save-notmine.tmp")
    (tmp_path / ".cbp-save-00000000deadbeef.tmp").symlink_to(dead.name)
    with open(live, "rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # a writer still at work
        small_net().save(tmp_path / "n.npz")
        assert not dead.exists()
        assert live.exists() and older_scheme.exists() and other.exists()
        assert (tmp_path / ".cbp-save-00000000deadbeef.tmp").is_symlink()
    small_net().save(tmp_path / "n.npz")
    assert not live.exists()


KILLED = textwrap.dedent("""
    import os, sys, time
    import cbp
    path = sys.argv[1]
    net = cbp.Network([cbp.Dense(1000, 1000, use_bias=False, seed=0)], backend="numpy")
    print("ready", flush=True)
    while sys.stdin.readline():  # one saver per line, killed by the test
        pid = os.fork()
        if pid == 0:
            k, stop = 0, time.monotonic() + 30  # never outlives a broken test
            while time.monotonic() < stop:
                k += 1
                net.parameters[:] = k
                net.save(path)
            os._exit(0)
        print(pid, flush=True)
        sys.stdin.readline()
        os.waitpid(pid, 0)
        print("reaped", flush=True)
""")


@pytest.mark.skipif(not hasattr(os, "fork") or _archive.fcntl is None, reason="fork and flock")
def test_killed_saves_leave_no_litter(tmp_path):
    """20 savers of an 8 MB network SIGKILLed at random moments: the file is
    always a complete one, and the next save clears every temporary file."""
    path = tmp_path / "big.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    rng = random.Random(1234)
    seen_litter, completes, saver = 0, set(), None
    try:
        assert proc.stdout.readline() == "ready\n"
        for _ in range(20):
            proc.stdin.write("go\n")
            proc.stdin.flush()
            saver = int(proc.stdout.readline())
            time.sleep(rng.uniform(0.05, 0.6))  # a save takes ~0.1 s
            os.kill(saver, signal.SIGKILL)
            proc.stdin.write("reap\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "reaped\n"
            saver = None
            seen_litter += len(litter(tmp_path))
            if path.exists():
                back = cbp.load(path)  # complete, never partial
                k = back.parameters[0]
                assert (back.parameters == k).all()
                completes.add(k)
    finally:
        if saver is not None:  # forked and not yet reaped: still ours
            os.kill(saver, signal.SIGKILL)
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert seen_litter > 0  # the kills did land mid-save
    assert len(completes) > 1
    net = cbp.Network([cbp.Dense(1000, 1000, use_bias=False, seed=0)], backend="numpy")
    net.parameters[:] = -1.0
    net.save(path)
    assert litter(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["big.npz"]
    assert (cbp.load(path).parameters == -1.0).all()
