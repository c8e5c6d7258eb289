"""Build the native core of cbp.

The Cython sources live in ``src/`` and become extension modules inside the
``cbp`` package (``cbp._core``).  All compiler directives and flags are set
here, in one place.

Environment switches
--------------------
CBP_DEBUG=1
    Build with bounds checking, wraparound and initialisation checks on, at
    ``-O0 -g``: slow, but every out-of-range index raises instead of reading
    stray memory.
CBP_SANITIZE=address
    Add ``-fsanitize=address`` (implies the debug build); see the README for
    how to run the tests under it.
CBP_NO_EXTENSIONS=1
    Build nothing native: the package then runs on its NumPy backend only.
"""
import os
import sys

from setuptools import Extension, setup


def _flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


DEBUG = _flag("CBP_DEBUG") or bool(os.environ.get("CBP_SANITIZE"))
SANITIZE = os.environ.get("CBP_SANITIZE", "").strip()

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "nonecheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
    "binding": False,
}


def _compile_args():
    if sys.platform == "win32":
        return (["/Od", "/Zi"] if DEBUG else ["/O2"]), []
    cflags = ["-O0", "-g"] if DEBUG else ["-O3"]
    # Keep IEEE semantics: no -ffast-math, no -march=native (wheels must run
    # on any CPU of their platform, and fast-math breaks float64 equivalence).
    cflags += ["-fno-strict-aliasing"]
    ldflags = []
    if SANITIZE:
        cflags += [f"-fsanitize={SANITIZE}", "-fno-omit-frame-pointer"]
        ldflags += [f"-fsanitize={SANITIZE}"]
    return cflags, ldflags


def extensions():
    if _flag("CBP_NO_EXTENSIONS"):
        return []
    from Cython.Build import cythonize

    cflags, ldflags = _compile_args()
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    if not DEBUG:
        macros.append(("CYTHON_WITHOUT_ASSERTIONS", None))
    ext = Extension(
        "cbp._core",
        sources=["src/_core.pyx"],
        depends=["src/_kernels.pxd", "src/_simd.h", "src/_simd_body.h"],
        include_dirs=["src"],
        define_macros=macros,
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    )
    return cythonize(
        [ext],
        include_path=["src"],
        compiler_directives=DIRECTIVES,
        # Debug and release C sources differ: keep them apart so that one is
        # never compiled with the other's directives.
        build_dir="build/cython-debug" if DEBUG else "build/cython",
    )


setup(ext_modules=extensions())
