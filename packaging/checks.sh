# shellcheck shell=bash
# Sourced by the packaging tests: one line per check, a count of failures, polling with a deadline.
failures=0
pass() { echo "  ok    $*"; }
fail() { echo "  FAIL  $*"; failures=$((failures + 1)); }
check() { # description, command...
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then pass "$what"; else fail "$what"; fi
}
wait_for() { # seconds, command...
    local seconds=$1
    shift
    for _ in $(seq $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}
finish() { # the script's name: its verdict and exit status
    if [ "$failures" -gt 0 ]; then
        echo "$1: $failures check(s) failed"
        exit 1
    fi
    echo "$1: every check passed"
}
