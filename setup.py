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
CBP_OPENMP=auto|0|1
    Build the core with OpenMP, so that training steps of layers below the
    dgemm crossover can run on several threads: ``auto`` (the default) when
    the compiler can compile and link an OpenMP program, ``0`` never, ``1``
    always (the build fails without it).  Without OpenMP the core runs every
    step on one thread.
"""

import glob
import os
import sys
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


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
    macros = []
    if not DEBUG:
        macros.append(("CYTHON_WITHOUT_ASSERTIONS", None))
    ext = Extension(
        "cbp._core",
        sources=["src/_core.pyx"],
        depends=sorted(glob.glob("src/*.pxi") + glob.glob("src/*.pxd") + glob.glob("src/*.h")),
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


OPENMP_TEST = r"""
#include <omp.h>
int main(void) {
    int n = 0;
#pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 && omp_get_max_threads() > 0 ? 0 : 1;
}
"""


def _openmp_flags(compiler):
    """(compile, link) flags for OpenMP with this compiler."""
    if compiler.compiler_type == "msvc":
        return ["/openmp"], []
    return ["-fopenmp"], ["-fopenmp"]


def _compiles_openmp(compiler, cflags, ldflags):
    """True if the compiler compiles and links an OpenMP program with these
    flags (the program is not run: cross builds must work too)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp_test.c")
        with open(src, "w") as f:
            f.write(OPENMP_TEST)
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
            compiler.link_executable(objs, os.path.join(tmp, "omp_test"), extra_postargs=ldflags)
        except Exception:  # CompileError, LinkError, a missing tool
            return False
    return True


class BuildExt(build_ext):
    """build_ext that adds OpenMP where the compiler has it (CBP_OPENMP)."""

    def build_extensions(self):
        want = os.environ.get("CBP_OPENMP", "auto").strip().lower() or "auto"
        if want not in ("auto", "0", "1"):
            raise SystemExit(f"CBP_OPENMP must be auto, 0 or 1, not {want!r}")
        use = False
        if want != "0":
            cflags, ldflags = _openmp_flags(self.compiler)
            use = _compiles_openmp(self.compiler, cflags, ldflags)
            if want == "1" and not use:
                raise SystemExit(
                    "CBP_OPENMP=1, but this compiler cannot build OpenMP code "
                    f"with {cflags} {ldflags}"
                )
        print(f"cbp: building the core {'with' if use else 'without'} OpenMP")
        if use:
            for ext in self.extensions:
                ext.extra_compile_args = list(ext.extra_compile_args or []) + cflags
                ext.extra_link_args = list(ext.extra_link_args or []) + ldflags
        super().build_extensions()


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
