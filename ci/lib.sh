# shellcheck shell=bash
# Shared by .ci/run and ci/wheels.sh (sourced, not run): section headers and
# a timing table printed on exit, which also names the section that failed.
#
#   source ci/lib.sh
#   ci_begin "name of this script"
#   section "What happens next"
#   ...

_ci_name=""
_ci_start=0
_ci_current=""
_ci_current_start=0
_ci_rows=()

_ci_close_section() {
    if [ -n "$_ci_current" ]; then
        _ci_rows+=("$(printf '%6ds  %s' "$((SECONDS - _ci_current_start))" "$_ci_current")")
        _ci_current=""
    fi
}

section() {
    _ci_close_section
    _ci_current="$1"
    _ci_current_start=$SECONDS
    printf '\n'
    printf '=%.0s' {1..78}
    printf '\n== [%s] %s   (%s UTC, +%ds)\n' "$_ci_name" "$1" "$(date -u +%H:%M:%S)" "$((SECONDS - _ci_start))"
    printf '=%.0s' {1..78}
    printf '\n'
}

_ci_on_exit() {
    local rc=$?
    local failed="$_ci_current"
    _ci_close_section
    printf '\n---- %s: time per section ----\n' "$_ci_name"
    if [ "${#_ci_rows[@]}" -gt 0 ]; then
        printf '%s\n' "${_ci_rows[@]}"
    fi
    printf '%6ds  total\n' "$((SECONDS - _ci_start))"
    if [ "$rc" -ne 0 ]; then
        printf '%s: FAILED (exit %d) in section: %s\n' "$_ci_name" "$rc" "${failed:-<before the first section>}" >&2
    else
        printf '%s: all sections passed\n' "$_ci_name"
    fi
    # Extra clean-up registered by the caller (a function name), if any.
    if [ -n "${CI_CLEANUP:-}" ]; then
        "$CI_CLEANUP" || true
    fi
    return "$rc"
}

ci_begin() {
    _ci_name="$1"
    _ci_start=$SECONDS
    trap _ci_on_exit EXIT
}

die() {
    printf '\nERROR: %s\n' "$*" >&2
    exit 1
}
