#!/usr/bin/env bash
# Run a representative part of the test suite against an AddressSanitizer
# build of the native core.
#
#   bash ci/sanitize.sh            # ASan build in a scratch copy and venv
#
# What it does, by hand:
#   CBP_SANITIZE=address pip install --no-build-isolation .   (-O0 -g, bounds
#       checks on, -fsanitize=address -fno-omit-frame-pointer)
#   LD_PRELOAD=$(gcc -print-file-name=libasan.so) \
#   ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 PYTHONMALLOC=malloc \
#       python -m pytest <subset>
# CPython itself is not built with ASan, so the runtime is preloaded and
# leak detection (which would report the interpreter's own allocations) is
# off; every invalid read or write in cbp's code aborts the run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "== copy the tree to $WORK/src (the checkout's own build is left alone)"
mkdir "$WORK/src"
git -C "$ROOT" ls-files -z | (cd "$ROOT" && xargs -0 cp --parents -t "$WORK/src")

echo "== venv with the build and test requirements"
"$PY" -m venv "$WORK/venv"
# shellcheck disable=SC1091
source "$WORK/venv/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q "setuptools>=77" "Cython>=3.1" "numpy>=2" "scipy>=1.11.1" pytest hypothesis

echo "== build with CBP_SANITIZE=address"
(cd "$WORK/src" && CBP_SANITIZE=address python -m pip install -q --no-build-isolation .)

LIBASAN=$(gcc -print-file-name=libasan.so)
[ -e "$LIBASAN" ] || { echo "libasan not found (gcc -print-file-name=libasan.so)"; exit 1; }

echo "== the subset under AddressSanitizer"
cd "$WORK"   # import the installed (sanitized) cbp, not the source folder
cp -r "$WORK/src/tests" "$WORK/tests"
cp "$WORK/src/pyproject.toml" "$WORK/src/README.md" "$WORK/"
SO=$(ls "$(python -c "import sysconfig; print(sysconfig.get_paths()['platlib'])")"/cbp/_core*.so)
SYMS=$(nm -D "$SO"); grep -q "__asan_init" <<<"$SYMS" || { echo "$SO is not instrumented by ASan"; exit 1; }
echo "instrumented: $SO"
LD_PRELOAD="$LIBASAN" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1 \
PYTHONMALLOC=malloc CBP_REQUIRE_NATIVE=1 \
    python -m pytest -q -p no:cacheprovider \
        tests/test_seeds.py tests/test_api.py tests/test_equivalence.py \
        tests/test_blas_paths.py tests/test_training.py tests/test_persistence.py \
        tests/test_backend.py
echo "== AddressSanitizer: no invalid access"
