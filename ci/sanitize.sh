#!/usr/bin/env bash
# cbp's tests under memory checkers.  Every build is made in a scratch copy of
# the working tree (tracked and untracked, non-ignored files) with its own
# virtualenv, so the checkout's shared editable build is never touched.
#
#   bash ci/sanitize.sh [asan|valgrind|debug|all] [extra pytest arguments]
#
#   asan      (default) AddressSanitizer build; a representative subset of
#             the suite.  Any invalid read or write aborts with a report.
#   valgrind  the normal (release, -O3) build; a smaller subset under
#             valgrind memcheck.
#   debug     CBP_DEBUG=1 build (-O0 -g, Cython bounds/wraparound/
#             initialisation/None checks on); the WHOLE suite.
#   all       the three, in that order.
#
# The exact commands, run in the scratch copy $WORK/<mode>/src with the
# scratch venv's python ($WORK/venv: made once with its own pip, setuptools,
# Cython, NumPy, SciPy, pytest, hypothesis, threadpoolctl and scikit-learn, see
# VENV_REQUIREMENTS, so an old setuptools in the base interpreter does not
# matter; remade when that list changes):
#
#   asan:
#     CBP_SANITIZE=address python setup.py build_ext --inplace --force
#     LD_PRELOAD=$(gcc -print-file-name=libasan.so) PYTHONMALLOC=malloc \
#     ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86:allocator_may_return_null=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:log_path=$WORK/asan/asan \
#     CBP_REQUIRE_NATIVE=1 CBP_FUZZ_MAX_EXAMPLES=40 CBP_FUZZ_NO_SHRINK=1 CBP_NO_AVX512=1 \
#         python -m pytest -p no:cacheprovider -q $ASAN_TESTS
#     then, the same with detect_stack_use_after_return=0 and without
#     CBP_NO_AVX512, python -m pytest -p no:cacheprovider -q $ASAN_WIDE_TESTS
#     (ASan's fake stack misaligns the -O0 build's 64-byte spills).
#     CPython is not instrumented, so the ASan runtime is preloaded and
#     PYTHONMALLOC=malloc sends Python's allocations through it too.  The
#     report goes to $WORK/asan/asan.<pid> (log_path): on stderr it would land
#     in pytest's capture of the failing test and die with the process.  Leak
#     detection is off: the interpreter's own start-up allocations would all
#     be reported (leaks are covered by tests/test_memory.py instead).
#     allocator_may_return_null: tests that ask for absurd sizes get a
#     MemoryError, as without ASan, instead of an ASan abort.
#
#   valgrind:
#     python setup.py build_ext --inplace --force
#     PYTHONMALLOC=malloc CBP_REQUIRE_NATIVE=1 CBP_FUZZ_MAX_EXAMPLES=4 CBP_FUZZ_NO_SHRINK=1 \
#     valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
#         --show-leak-kinds=definite --errors-for-leak-kinds=none \
#         --suppressions=$WORK/valgrind/python.supp --num-callers=40 --trace-children=yes \
#         --log-file=$WORK/valgrind/valgrind.%p.log \
#         python -m pytest -p no:cacheprovider -q $VALGRIND_TESTS
#     Exit 99 on any invalid read or write, use of uninitialised memory,
#     bad free or overlap.  The suppressions (written below) cover only known
#     false positives of glibc's vectorised string functions and uninitialised
#     values inside CPython itself (each is explained there).  Python, NumPy
#     and SciPy "definitely" leak at start-up, so leaks are not counted by
#     valgrind: the script fails if a definitely-lost block was allocated by
#     cbp's extension (cbp/_core in its stack).  Every process the tests
#     start runs under memcheck and writes its own log (%p: its pid): a
#     forked child (tests/test_parallel.py trains in one), and a program
#     started with exec (--trace-children=yes; tests/test_backend.py runs a
#     python).  Every log is checked and must end with memcheck's summary.  A
#     forked child exits 99 as well if memcheck counted an error in it or,
#     before the fork, in its parent.
#
#   debug:
#     CBP_DEBUG=1 python setup.py build_ext --inplace --force
#     CBP_REQUIRE_NATIVE=1 python -m pytest -p no:cacheprovider -q
#
# Environment: CBP_SANITIZE_WORK (default /tmp/cbp-sanitize) is rebuilt per
# mode and kept afterwards (logs: $WORK/<mode>/*.log); PYTHON (default
# python3) is the interpreter the venv is made from.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
WORK=${CBP_SANITIZE_WORK:-/tmp/cbp-sanitize}
MODE=${1:-asan}
[ $# -gt 0 ] && shift
EXTRA=("$@")

# A representative subset: the seeds, the public API, native/NumPy
# equivalence, the BLAS and loop paths, training, persistence, gradients,
# threads (the guard; two trainings at once) and the fuzz (scaled down).
ASAN_TESTS="tests/test_seeds.py tests/test_api.py tests/test_backend.py tests/test_equivalence.py
 tests/test_blas_paths.py tests/test_training.py tests/test_persistence.py tests/test_gradients.py
 tests/test_threads.py tests/test_parallel.py tests/test_guard.py tests/test_fit_control.py
 tests/test_fuzz.py tests/test_tiny.py tests/test_sklearn_kernels.py tests/test_sklearn_engine.py
 tests/test_fm_epochs.py tests/test_blk_epochs.py tests/test_fit_fast.py tests/test_many.py
 tests/test_many_lanes.py"
# the second ASan pass: the 512-bit code (the AVX-512 table, the 8-lane run)
ASAN_WIDE_TESTS="tests/test_simd.py tests/test_sklearn_kernels.py tests/test_tiny.py
 tests/test_equivalence.py tests/test_fm_epochs.py tests/test_blk_epochs.py tests/test_many.py
 tests/test_many_lanes.py"
# valgrind is some 30-50 times slower: fewer files, a much smaller fuzz
VALGRIND_TESTS="tests/test_seeds.py tests/test_api.py tests/test_backend.py
 tests/test_persistence.py tests/test_parallel.py tests/test_fit_control.py tests/test_fuzz.py
 tests/test_many_lanes.py"

log() { printf '\n== [sanitize %s] %s\n' "$MODE_NOW" "$*"; }

# What the scratch venv installs: the build requirements of pyproject.toml
# and the test requirements, whatever the base interpreter has.
VENV_REQUIREMENTS=("setuptools>=77" "Cython>=3.1" "numpy>=2" "scipy>=1.11.1" "pytest>=7"
                   "hypothesis>=6.80" "threadpoolctl>=3.1" "scikit-learn>=1.9")

venv() {
    local stamp=$WORK/venv/.cbp-requirements want
    want=$(printf '%s\n' "${VENV_REQUIREMENTS[@]}")
    if [ ! -x "$WORK/venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        mkdir -p "$WORK"
        rm -rf "$WORK/venv"
        "$PYTHON" -m venv "$WORK/venv"
        "$WORK/venv/bin/python" -m pip install -q --upgrade pip
        "$WORK/venv/bin/python" -m pip install -q "${VENV_REQUIREMENTS[@]}"
        printf '%s' "$want" > "$stamp"
    fi
    VPY="$WORK/venv/bin/python"
}

copy_tree() {  # $1: destination
    rm -rf "$1"
    mkdir -p "$1"
    git -C "$ROOT" ls-files -z -co --exclude-standard |
        (cd "$ROOT" && tar --null -T - -cf -) | tar -xf - -C "$1"
    # the copy must not pick up a build of the checkout
    find "$1/cbp" -name '*.so' -delete
}

build() {  # $1: source dir; the environment selects the flavour
    (cd "$1" && "$VPY" setup.py -q build_ext --inplace --force) > "$1/../build.log" 2>&1 || {
        tail -n 40 "$1/../build.log"
        echo "build failed (log: $1/../build.log)" >&2
        return 1
    }
}

check_import() {  # $1: source dir; the core must come from the copy
    (cd "$1" && "$VPY" - "$1" <<'EOF')
import sys, cbp, cbp._core as core
src = sys.argv[1]
assert cbp.native_available(), cbp._backend._why_not
assert core.__file__.startswith(src), f"imported {core.__file__}, not the copy in {src}"
print("cbp._core from", core.__file__)
EOF
}

run_pytest() {  # $1: source dir, $2: log file, rest: command prefix ... -- tests
    local src=$1 logf=$2
    shift 2
    set +e
    (cd "$src" && "$@") 2>&1 | tee "$logf"
    local rc=${PIPESTATUS[0]}
    set -e
    return "$rc"
}

mode_asan() {
    MODE_NOW=asan
    local dir=$WORK/asan src=$WORK/asan/src
    local libasan
    libasan=$(gcc -print-file-name=libasan.so)
    [ -e "$libasan" ] || { echo "libasan not found (gcc -print-file-name=libasan.so)" >&2; return 1; }
    log "copy the tree to $src, build with CBP_SANITIZE=address"
    copy_tree "$src"
    CBP_SANITIZE=address build "$src"
    # (grep -c reads all of nm's output: with pipefail, grep -q's early exit
    # would fail the pipeline on nm's SIGPIPE)
    nm -D "$src"/cbp/_core*.so | grep -c __asan_report > /dev/null ||
        { echo "the core is not instrumented" >&2; return 1; }
    # CBP_NO_AVX512=1: no 512-bit code in the main pass, neither the AVX-512
    # table nor fit_many's 8-lane run (the tests that run every table see
    # none).  ASan's fake stack (detect_stack_use_after_return) aligns
    # frames to 32 bytes, and the -O0 build spills 64-byte vectors to 64-byte
    # aligned slots.  The second pass below runs them, without the fake stack.
    export LD_PRELOAD=$libasan PYTHONMALLOC=malloc CBP_REQUIRE_NATIVE=1 CBP_FUZZ_MAX_EXAMPLES=40 \
        CBP_FUZZ_NO_SHRINK=1 CBP_NO_AVX512=1
    export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86:allocator_may_return_null=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:log_path=$dir/asan
    rm -f "$dir"/asan.*
    check_import "$src"
    log "pytest under AddressSanitizer: $(echo $ASAN_TESTS)"
    local rc=0
    # shellcheck disable=SC2086
    run_pytest "$src" "$dir/pytest.log" "$VPY" -m pytest -p no:cacheprovider -q $ASAN_TESTS "${EXTRA[@]}" || rc=$?
    if [ "$rc" -eq 0 ]; then
        log "pytest under AddressSanitizer, the 512-bit code: $ASAN_WIDE_TESTS"
        unset CBP_NO_AVX512
        ASAN_OPTIONS=${ASAN_OPTIONS/detect_stack_use_after_return=1/detect_stack_use_after_return=0}
        # shellcheck disable=SC2086
        run_pytest "$src" "$dir/pytest-wide.log" "$VPY" -m pytest -p no:cacheprovider -q \
            $ASAN_WIDE_TESTS || rc=$?
    fi
    unset LD_PRELOAD PYTHONMALLOC ASAN_OPTIONS CBP_FUZZ_MAX_EXAMPLES CBP_FUZZ_NO_SHRINK \
        CBP_NO_AVX512
    local reports
    reports=$(grep -l "ERROR: AddressSanitizer" "$dir"/asan.* 2>/dev/null || true)
    if [ -n "$reports" ]; then
        # shellcheck disable=SC2086  # one word per file
        head -n 40 $reports >&2
        echo "AddressSanitizer reported an error (see $(echo $reports))" >&2
        return 1
    fi
    [ "$rc" -eq 0 ] || { echo "pytest under ASan failed (exit $rc; 86: an ASan report)" >&2; return 1; }
    log "AddressSanitizer: no invalid access"
}

write_valgrind_suppressions() {  # $1: file
    {
        # glibc's vectorised comparisons read whole words past the end of
        # their (valid) strings: valgrind's classic false positives
        for size in 1 2 4 8 16 32; do
            for fn in __wmemcmp_avx2_movbe __memcmp_avx2_movbe __strncmp_avx2 __strcmp_avx2 \
                      __wcsnlen_avx2 __strlen_avx2; do
                printf '{\n   glibc-%s-%s\n   Memcheck:Addr%s\n   fun:%s\n}\n' "$fn" "$size" "$size" "$fn"
            done
        done
        printf '{\n   ld.so-strncmp-is_dst\n   Memcheck:Addr8\n   fun:strncmp\n   fun:is_dst\n}\n'
        # CPython 3.11's _json (a module of its own, so not covered by the
        # libpython entries below): json.loads of an object whose values are
        # small integers reports a pointer-sized uninitialised value in
        # _parse_object_unicode's Py_DECREF, originating in the PyLong that
        # PyLong_FromString allocates (_PyLong_New, from _match_number_unicode).
        # It needs no cbp: `python -c "import json; [json.loads(json.dumps(
        # {'s': v, 'a': {'s': v}})) for v in (0, 7, 300, 2**15)]"` under
        # memcheck with PYTHONMALLOC=malloc reports it; cbp/_core is in neither
        # the stack nor the origin.  (cbp reads its files' meta with json.loads.)
        printf '{\n   cpython-json-parse-object-decref\n   Memcheck:Value8\n   fun:Py_DECREF\n'
        printf '   fun:_parse_object_unicode\n   fun:scan_once_unicode\n}\n'
        # uninitialised values inside the (uninstrumented) interpreter itself
        for kind in Value1 Value2 Value4 Value8 Value16 Value32 Cond; do
            printf '{\n   cpython-%s\n   Memcheck:%s\n   obj:*/libpython3*.so*\n}\n' "$kind" "$kind"
        done
    } > "$1"
}

mode_valgrind() {
    MODE_NOW=valgrind
    local dir=$WORK/valgrind src=$WORK/valgrind/src
    command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; return 1; }
    log "copy the tree to $src, normal (release) build"
    copy_tree "$src"
    (unset CBP_DEBUG CBP_SANITIZE; build "$src")
    check_import "$src"
    write_valgrind_suppressions "$dir/python.supp"
    rm -f "$dir"/valgrind.*log
    log "pytest under valgrind memcheck (slow): $(echo $VALGRIND_TESTS)"
    local rc=0
    # shellcheck disable=SC2086
    PYTHONMALLOC=malloc CBP_REQUIRE_NATIVE=1 CBP_FUZZ_MAX_EXAMPLES=4 CBP_FUZZ_NO_SHRINK=1 \
        run_pytest "$src" "$dir/pytest.log" \
        valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
        --show-leak-kinds=definite --errors-for-leak-kinds=none \
        --suppressions="$dir/python.supp" --num-callers=40 --trace-children=yes \
        --log-file="$dir/valgrind.%p.log" \
        "$VPY" -m pytest -p no:cacheprovider -q $VALGRIND_TESTS "${EXTRA[@]}" || rc=$?
    local parse_rc=0
    "$VPY" - "$dir" <<'EOF' || parse_rc=$?
import glob, os, re, sys
core = re.compile(r"cbp/_core|_core\.c:|_core\.pyx:|_kernels\.pxd:")
error = re.compile(r"(Invalid (read|write|free)|Mismatched free|Conditional jump|"
                   r"Use of uninitialised|Source and destination overlap|Syscall param)")
logs = sorted(glob.glob(os.path.join(sys.argv[1], "valgrind.*.log")), key=os.path.getmtime)
if not logs:
    sys.exit("valgrind wrote no log")
shown, failed = 0, False
for path in logs:
    records, cur = [], []
    for line in open(path, errors="replace"):
        m = re.match(r"==\d+== ?(.*)", line.rstrip("\n"))
        if not m:
            continue
        body = m.group(1)
        if body.strip():
            cur.append(body)
        elif cur:
            records.append(cur)
            cur = []
    if cur:
        records.append(cur)
    errors = [r for r in records if error.match(r[0])]
    core_leaks = [r for r in records
                  if "definitely lost" in r[0] and any(core.search(x) for x in r)]
    summary = [x for r in records for x in r if x.startswith("ERROR SUMMARY")]
    counted = int(re.match(r"ERROR SUMMARY: (\d+)", summary[-1]).group(1)) if summary else -1
    print(f"valgrind {os.path.basename(path)}:",
          summary[-1] if summary else "NO SUMMARY (memcheck did not finish)",
          f"| {len(errors)} error records | {len(core_leaks)} definite leaks from cbp/_core")
    failed = failed or counted != 0 or bool(errors) or bool(core_leaks)
    for r in errors + core_leaks:
        if shown < 10:
            shown += 1
            print("\n".join(r[:25]), "\n---")
sys.exit(1 if failed else 0)
EOF
    [ "$rc" -eq 0 ] || { echo "valgrind run failed (exit $rc; 99: memcheck errors; logs $dir/valgrind.*.log)" >&2; return 1; }
    [ "$parse_rc" -eq 0 ] || { echo "memcheck errors or cbp leaks in $dir/valgrind.*.log" >&2; return 1; }
    log "valgrind: no invalid access, no leak from cbp/_core"
}

mode_debug() {
    MODE_NOW=debug
    local dir=$WORK/debug src=$WORK/debug/src
    log "copy the tree to $src, build with CBP_DEBUG=1"
    copy_tree "$src"
    CBP_DEBUG=1 build "$src"
    # the last -O flag gcc recorded for the core must be -O0
    local opt
    opt=$({ readelf --debug-dump=info "$src"/cbp/_core*.so 2>/dev/null || true; } |
          grep -m1 DW_AT_producer | grep -o -- ' -O[0-9sgz]*' | tail -n 1 || true)
    [ "$opt" = " -O0" ] || { echo "the core was not built at -O0 (got '$opt')" >&2; return 1; }
    check_import "$src"
    log "the whole suite on the CBP_DEBUG=1 build"
    local rc=0
    CBP_REQUIRE_NATIVE=1 run_pytest "$src" "$dir/pytest.log" \
        "$VPY" -m pytest -p no:cacheprovider -q "${EXTRA[@]}" || rc=$?
    [ "$rc" -eq 0 ] || { echo "the suite failed on the debug build (exit $rc)" >&2; return 1; }
    log "CBP_DEBUG=1: the whole suite passed"
}

MODE_NOW=setup
venv
case "$MODE" in
    asan) mode_asan ;;
    valgrind) mode_valgrind ;;
    debug) mode_debug ;;
    all)
        status=0
        mode_asan || status=1
        mode_valgrind || status=1
        mode_debug || status=1
        exit $status
        ;;
    *) echo "usage: $0 [asan|valgrind|debug|all] [pytest args]" >&2; exit 2 ;;
esac
