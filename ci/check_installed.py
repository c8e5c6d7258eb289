"""Assert that ``cbp`` comes from an installed distribution, natively built.

Run it from a directory outside the source tree, with the interpreter of the
environment under test::

    python ci/check_installed.py [--expect NAME==VERSION ...]

It fails unless

* ``cbp`` is imported from that interpreter's site-packages (not from a
  source checkout that happens to be on ``sys.path``),
* the compiled core ``cbp._core`` is loaded and lives beside it, and
* with ``--expect NAME==VERSION``, that distribution is installed at exactly
  that version (``1.25`` and ``1.25.0`` are the same version).

Used by ci/wheels.sh and by cibuildwheel's test-command (pyproject.toml).
"""

import argparse
import importlib.metadata
import os
import re
import sys
import sysconfig


def _norm(path):
    return os.path.normcase(os.path.realpath(path))


def _inside(path, directory):
    return _norm(path).startswith(_norm(directory) + os.sep)


def _release(version):
    """The release numbers of a version, trailing zeros dropped."""
    parts = [int(x) for x in re.match(r"\d+(?:\.\d+)*", version).group(0).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="NAME==VERSION",
        help="a distribution that must be installed at exactly that version",
    )
    args = parser.parse_args(argv)

    import numpy

    import cbp

    paths = sysconfig.get_paths()
    site_dirs = sorted({paths["purelib"], paths["platlib"]})
    problems = []

    if not any(_inside(cbp.__file__, d) for d in site_dirs):
        problems.append(
            f"cbp was imported from {cbp.__file__}, which is not inside this "
            f"interpreter's site-packages ({', '.join(site_dirs)}): a source "
            "tree is shadowing the installed package"
        )
    if not cbp.native_available():
        problems.append(f"the compiled core is not loaded: {cbp._backend._why_not}")
    else:
        core_file = cbp._backend._core.__file__
        if os.path.dirname(_norm(core_file)) != os.path.dirname(_norm(cbp.__file__)):
            problems.append(f"cbp._core ({core_file}) is not beside cbp ({cbp.__file__})")
    for pin in args.expect:
        name, _, want = pin.partition("==")
        try:
            have = importlib.metadata.version(name.strip())
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name} is not installed, expected {want}")
            continue
        print(f"{name.strip():10s} {have} (expected {want})")
        if _release(have) != _release(want.strip()):
            problems.append(f"{name} {have} is installed, expected exactly {want}")

    print(f"python     {sys.version.split()[0]} ({sys.executable})")
    print(f"numpy      {numpy.__version__} ({os.path.dirname(numpy.__file__)})")
    print(f"cbp        {cbp.__version__} ({cbp.__file__})")
    if cbp.native_available():
        print(f"cbp._core  {cbp._backend._core.__file__}")
    if problems:
        for problem in problems:
            print(f"check_installed: FAIL: {problem}", file=sys.stderr)
        return 1
    print("check_installed: OK (installed package, native core loaded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
