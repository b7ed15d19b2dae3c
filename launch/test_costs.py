#!/usr/bin/env python3
"""How long the long tests take, for ctest's scheduler.

`ctest -j` starts the tests it expects to take longest first, from the times it recorded in the
build folder (Testing/Temporary/CTestCostData.txt); a fresh build folder (every CI run) has none,
so ctest went down the list in order and met the longest tests last, with one core idle while
they finished. tests/test_costs.txt keeps their times from a measured run, for each suite.

  launch/test_costs.py seed BUILD_DIR plain|asan   gives ctest those times, where the build
                                                   folder has no times of its own (test.sh and
                                                   sanitize.sh run this)
  launch/test_costs.py save plain|asan LOG...      makes that column the times of the tests of a
                                                   second or more in LOGs, ctest's output of that
                                                   suite alone (launch/test.sh 2>&1 | tee LOG;
                                                   launch/sanitize.sh address 2>&1 | tee LOG)

RF_TEST_COSTS names another file than tests/test_costs.txt (tests/test_costs_test.sh).
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COSTS = os.environ.get("RF_TEST_COSTS") or os.path.join(ROOT, "tests", "test_costs.txt")
USAGE = "usage: launch/test_costs.py seed BUILD_DIR plain|asan | save plain|asan LOG..."
SUITES = ("plain", "asan")  # the file's columns after the name, in this order
# ctest's lines "  12/380 Test  #81: Name .......   Passed   14.36 sec" (a name with a space is
# not one ctest reads back from its cost file; tests/ names none so).
RESULT = re.compile(r"Test +#\d+: (\S+) [. ]*.*?([\d.]+) sec")


def fail_usage(what):
    print(f"test_costs: {what}; {USAGE}", file=sys.stderr)
    sys.exit(2)


def read_costs():
    """The comment lines, and {name: [plain, asan]} with "-" where a suite does not run it."""
    header, rows = [], {}
    with open(COSTS) as f:
        for line in f:
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                header.append(line)
            elif len(fields) == 3:
                rows[fields[0]] = fields[1:]
    return header, rows


def seed(build, suite):
    recorded = os.path.join(build, "Testing", "Temporary", "CTestCostData.txt")
    if os.path.exists(recorded):
        return  # (ctest's own times for this build are better)
    os.makedirs(os.path.dirname(recorded), exist_ok=True)
    column = SUITES.index(suite)
    _, rows = read_costs()
    # ctest's format: "name runs seconds" per test, then "---" and the tests that last failed.
    with open(recorded + ".tmp", "w") as out:
        for name, times in rows.items():
            if times[column] != "-":
                out.write(f"{name} 1 {times[column]}\n")
        out.write("---\n")
    os.replace(recorded + ".tmp", recorded)


def save(suite, logs):
    column = SUITES.index(suite)
    header, rows = read_costs()
    measured = {}
    for log in logs:
        with open(log, errors="replace") as f:
            for line in f:
                m = RESULT.search(line)
                if m:
                    measured[m.group(1)] = float(m.group(2))
    if not measured:
        sys.exit(f"test_costs: no ctest results in {' '.join(logs)}")
    for times in rows.values():
        times[column] = "-"
    for name, seconds in measured.items():
        if seconds >= 1.0:
            rows.setdefault(name, ["-", "-"])[column] = f"{seconds:.1f}"
    kept = {n: t for n, t in rows.items() if t != ["-", "-"]}
    longest = lambda n: -max(float(v) for v in kept[n] if v != "-")
    with open(COSTS, "w") as out:
        out.writelines(header)
        for name in sorted(kept, key=longest):
            out.write(f"{name} {kept[name][0]} {kept[name][1]}\n")
    saved = sum(1 for t in kept.values() if t[column] != "-")
    print(f"test_costs: {saved} {suite} times in {COSTS}")


def main(args):
    action = args[0] if args else ""
    if action == "seed":
        if len(args) != 3:
            fail_usage("seed takes a build folder and a suite")
        if args[2] not in SUITES:
            fail_usage(f"suite '{args[2]}' is neither plain nor asan")
        if not os.path.isdir(args[1]):
            fail_usage(f"no build folder '{args[1]}'")
        seed(args[1], args[2])
    elif action == "save":
        if len(args) < 3:
            fail_usage("save takes a suite and ctest's output")
        if args[1] not in SUITES:
            fail_usage(f"suite '{args[1]}' is neither plain nor asan")
        for log in args[2:]:
            if not os.path.isfile(log):
                fail_usage(f"no log '{log}'")
        save(args[1], args[2:])
    else:
        fail_usage(f"no action '{action}'")


if __name__ == "__main__":
    main(sys.argv[1:])
