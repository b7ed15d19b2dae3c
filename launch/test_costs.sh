#!/usr/bin/env bash
# How long the long tests take, for ctest's scheduler. `ctest -j` starts the tests it expects to
# take longest first, from the times it recorded in the build folder
# (Testing/Temporary/CTestCostData.txt); a fresh build folder (every CI run) has none, so ctest
# went down the list in order and met the longest tests last, with one core idle while they
# finished. tests/test_costs.txt keeps their times from a measured run, for each suite.
#   launch/test_costs.sh seed BUILD_DIR plain|asan   gives ctest those times, where the build
#                                                    folder has no times of its own (test.sh and
#                                                    sanitize.sh run this)
#   launch/test_costs.sh save plain|asan LOG...      makes that column the times of the tests of a
#                                                    second or more in LOGs, ctest's output of that
#                                                    suite alone (launch/test.sh 2>&1 | tee LOG;
#                                                    launch/sanitize.sh address 2>&1 | tee LOG)
# RF_TEST_COSTS names another file than tests/test_costs.txt (tests/test_costs_test.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage="usage: launch/test_costs.sh seed BUILD_DIR plain|asan | save plain|asan LOG..."
fail_usage() {
  echo "test_costs: $1; $usage" >&2
  exit 2
}
check_suite() {
  [ "$1" = plain ] || [ "$1" = asan ] || fail_usage "suite '$1' is neither plain nor asan"
}
costs="${RF_TEST_COSTS:-$root/tests/test_costs.txt}"

seed() {
  local build="$1" suite="$2"
  local recorded="$build/Testing/Temporary/CTestCostData.txt"
  [ -f "$recorded" ] && return 0  # (ctest's own times for this build are better)
  mkdir -p "$(dirname "$recorded")"
  # ctest's format: "name runs seconds" per test, then "---" and the tests that last failed.
  python3 - "$costs" "$suite" > "$recorded.tmp" << 'PY'
import sys
column = 1 if sys.argv[2] == "plain" else 2
for line in open(sys.argv[1]):
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        continue
    if fields[column] != "-":
        print(fields[0], 1, fields[column])
print("---")
PY
  mv "$recorded.tmp" "$recorded"
}

save() {
  local suite="$1"
  shift
  python3 - "$costs" "$suite" "$@" << 'PY'
import re, sys
costs_path, suite, logs = sys.argv[1], sys.argv[2], sys.argv[3:]
column = 1 if suite == "plain" else 2
header, rows = [], {}
for line in open(costs_path):
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        header.append(line)
    elif len(fields) == 3:
        rows[fields[0]] = fields[1:]
# ctest's lines "  12/380 Test  #81: Name .......   Passed   14.36 sec" (a name with a space is
# not one ctest reads back from its cost file; tests/ names none so).
result = re.compile(r"Test +#\d+: (\S+) [. ]*.*?([\d.]+) sec")
measured = {}
for log in logs:
    for line in open(log, errors="replace"):
        m = result.search(line)
        if m:
            measured[m.group(1)] = float(m.group(2))
if not measured:
    sys.exit(f"test_costs: no ctest results in {' '.join(logs)}")
for name in rows:
    rows[name][column - 1] = "-"
for name, seconds in measured.items():
    if seconds >= 1.0:
        rows.setdefault(name, ["-", "-"])[column - 1] = f"{seconds:.1f}"
kept = {n: r for n, r in rows.items() if r != ["-", "-"]}
longest = lambda n: -max(float(v) for v in kept[n] if v != "-")
with open(costs_path, "w") as out:
    out.writelines(header)
    for name in sorted(kept, key=longest):
        out.write(f"{name} {kept[name][0]} {kept[name][1]}\n")
print(f"test_costs: {sum(1 for r in kept.values() if r[column - 1] != '-')} {suite} times in "
      f"{costs_path}")
PY
}

case "${1:-}" in
  seed)
    [ $# -eq 3 ] || fail_usage "seed takes a build folder and a suite"
    check_suite "$3"
    [ -d "$2" ] || fail_usage "no build folder '$2'"
    seed "$2" "$3"
    ;;
  save)
    [ $# -ge 3 ] || fail_usage "save takes a suite and ctest's output"
    check_suite "$2"
    for log in "${@:3}"; do [ -f "$log" ] || fail_usage "no log '$log'"; done
    save "$2" "${@:3}"
    ;;
  *) fail_usage "no action '${1:-}'" ;;
esac
