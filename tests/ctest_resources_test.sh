#!/usr/bin/env bash
# launch/ctest.sh and the tests' RESOURCE_GROUPS (tests/CMakeLists.txt): on a throwaway project of
# tests that only sleep and note when they ran, two that compute (one core each) and one that
# waits run at once on two cores; two that wait never overlap; one that takes both cores runs
# with nothing else that computes. Then every test of the build folder BUILD_DIR (the argument)
# says what it takes: one core, both, or the waiting slot.
set -euo pipefail
# shellcheck source=tests/shell_test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/shell_test_lib.sh"
build="${1:?usage: ctest_resources_test.sh BUILD_DIR}"

project="$tmp/project"
mkdir -p "$project"
cat > "$project/CMakeLists.txt" << 'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(resources NONE)
enable_testing()
# name, what it takes: each test notes its start and end (seconds since the epoch, 0.01 s steps).
foreach(spec "compute_a;cores:1" "compute_b;cores:1" "wait_a;waiting:1" "wait_b;waiting:1"
    "both_cores;cores:2")
  list(GET spec 0 name)
  list(GET spec 1 takes)
  add_test(NAME ${name} COMMAND sh -c
    "date +%s.%N > ${CMAKE_BINARY_DIR}/${name}.start; sleep 2; date +%s.%N > ${CMAKE_BINARY_DIR}/${name}.end")
  set_tests_properties(${name} PROPERTIES RESOURCE_GROUPS ${takes})
endforeach()
CMAKE
cmake -S "$project" -B "$tmp/build" > "$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log" >&2; fail "configure"; }
# (the folder named relative to the current one, as a user would)
(cd "$tmp" && RF_TEST_CORES=2 "$root/launch/ctest.sh" build) > "$tmp/ctest.log" 2>&1 ||
  { cat "$tmp/ctest.log" >&2; fail "launch/ctest.sh on the throwaway project"; }
expect_in "$tmp/build/ctest_resources.json" '"slots": 2' "the resource file should offer two cores"

# overlap A B: whether tests A and B ran at the same time (by more than 0.5 s).
overlap() {
  python3 - "$tmp/build" "$1" "$2" << 'EOF'
import sys
d, a, b = sys.argv[1:]
t = lambda n, e: float(open(f"{d}/{n}.{e}").read())
sys.exit(0 if min(t(a, "end"), t(b, "end")) - max(t(a, "start"), t(b, "start")) > 0.5 else 1)
EOF
}
ran_together() { overlap "$1" "$2" || { cat "$tmp/ctest.log" >&2; fail "$1 and $2 should run at the same time"; }; }
ran_apart() { ! overlap "$1" "$2" || { cat "$tmp/ctest.log" >&2; fail "$1 and $2 should not overlap"; }; }
# Two computing tests and a waiting one together: ctest may start either waiting test first.
first_wait=wait_a
overlap compute_a wait_a || first_wait=wait_b
ran_together compute_a compute_b
ran_together compute_a "$first_wait"
ran_together compute_b "$first_wait"
ran_apart wait_a wait_b
ran_apart both_cores compute_a
ran_apart both_cores compute_b

# A bad core count or a missing folder is a one-line error.
if RF_TEST_CORES=two "$root/launch/ctest.sh" "$tmp/build" > "$tmp/bad.log" 2>&1; then fail "RF_TEST_CORES=two was accepted"; fi
expect_in "$tmp/bad.log" "RF_TEST_CORES must be a positive whole number, not 'two'" "bad core count"
if "$root/launch/ctest.sh" "$tmp/no_such_build" > "$tmp/bad.log" 2>&1; then fail "a missing build folder was accepted"; fi
expect_in "$tmp/bad.log" "no build folder '$tmp/no_such_build'" "missing build folder"

# Every test of the real build says what it takes.
(cd "$build" && ctest --show-only=json-v1) > "$tmp/tests.json"
python3 - "$tmp/tests.json" << 'EOF'
import json, sys
tests = json.load(open(sys.argv[1]))["tests"]
takes = {}
for t in tests:
    props = {p["name"]: p["value"] for p in t.get("properties", [])}
    groups = props.get("RESOURCE_GROUPS")
    # ctest reports a group as [{"requirements": [{".type": "cores", "slots": 1}]}]
    kinds = sorted({(r[".type"], r["slots"]) for g in groups or [] for r in g["requirements"]})
    if kinds not in ([("cores", 1)], [("cores", 2)], [("waiting", 1)]):
        sys.exit(f"FAIL: test {t['name']} takes {kinds or 'nothing'}: every test takes one core, both or the waiting slot")
    takes.setdefault(kinds[0][0], []).append(t["name"])
if len(tests) < 300 or "waiting" not in takes:
    sys.exit(f"FAIL: {len(tests)} tests, waiting: {takes.get('waiting')}")
print(f"{len(tests)} tests; waiting: {', '.join(sorted(takes['waiting']))}")
EOF
echo "ctest resources: ok"
