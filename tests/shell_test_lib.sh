# What the shell tests share (sourced, after `set -euo pipefail`): root, the repository; tmp, a
# folder removed when the test ends; fail WHAT; expect_in FILE REGEX WHAT.
# shellcheck shell=bash
# shellcheck disable=SC2034  # (the tests that source this use it)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
expect_in() {  # the file's text when REGEX is not in it
  grep -qE "$2" "$1" || {
    echo "--- $1:" >&2
    cat "$1" >&2
    fail "$3"
  }
}
