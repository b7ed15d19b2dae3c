#!/usr/bin/env bash
# launch/test_costs.py: `seed` gives a fresh build folder ctest's cost file from one column of the
# committed times and leaves a folder's own times alone; `save` writes the times in ctest's output
# into its column, keeping the other; bad arguments are a one-line error and exit 2.
set -euo pipefail
# shellcheck source=tests/shell_test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/shell_test_lib.sh"
script="$root/launch/test_costs.py"
export RF_TEST_COSTS="$tmp/costs.txt"
cat > "$RF_TEST_COSTS" << 'COSTS'
# a comment
Long.Test 20.5 300.0
Plain.Only 12.0 -
Asan.Only - 7.5
COSTS

mkdir -p "$tmp/fresh" "$tmp/asan"
"$script" seed "$tmp/fresh" plain
recorded="$tmp/fresh/Testing/Temporary/CTestCostData.txt"
printf 'Long.Test 1 20.5\nPlain.Only 1 12.0\n---\n' > "$tmp/want"
cmp -s "$recorded" "$tmp/want" || { cat "$recorded" >&2; fail "plain seed"; }
"$script" seed "$tmp/asan" asan
printf 'Long.Test 1 300.0\nAsan.Only 1 7.5\n---\n' > "$tmp/want"
cmp -s "$tmp/asan/Testing/Temporary/CTestCostData.txt" "$tmp/want" || fail "asan seed"

# A folder with times of its own keeps them.
printf 'Long.Test 4 1.5\nNew.Test 2 3.25\nShort.Test 2 0.2\n---\nShort.Test\n' > "$recorded"
cp "$recorded" "$tmp/own"
"$script" seed "$tmp/fresh" plain
cmp -s "$recorded" "$tmp/own" || fail "seed overwrote a build folder's own times"

# save: the plain column becomes the times of a second or more in ctest's output; the asan column
# stays; rows with no time left go; longest first.
cat > "$tmp/ctest.log" << 'LOG'
        Start 2: Long.Test
  1/4 Test  #2: Long.Test ........................   Passed    1.52 sec
  2/4 Test  #7: New.Test .........................***Failed    3.25 sec
  3/4 Test  #9: Short.Test .......................   Passed    0.20 sec
  4/4 Test #11: Skipped.Test .....................***Skipped   0.00 sec
LOG
"$script" save plain "$tmp/ctest.log" > "$tmp/save.log"
grep -q "2 plain times" "$tmp/save.log" || { cat "$tmp/save.log" >&2; fail "save's count"; }
printf '# a comment\nLong.Test 1.5 300.0\nAsan.Only - 7.5\nNew.Test 3.2 -\n' > "$tmp/want"
cmp -s "$RF_TEST_COSTS" "$tmp/want" || { cat "$RF_TEST_COSTS" >&2; fail "save"; }

# Bad arguments, and a log with no results (the costs file is left as it was).
echo "no results here" > "$tmp/empty.log"
cp "$RF_TEST_COSTS" "$tmp/before"
for args in "seed $tmp/fresh tsan" "seed $tmp/missing plain" "sow $tmp/fresh plain" "seed" \
  "save plain" "save tsan $tmp/ctest.log" "save plain $tmp/missing.log" "save plain $tmp/empty.log"; do
  # shellcheck disable=SC2086  # (the words of args are the arguments)
  if "$script" $args > "$tmp/out" 2>&1; then fail "accepted: $args"; fi
  [ "$(wc -l < "$tmp/out")" -eq 1 ] || { cat "$tmp/out" >&2; fail "not one line: $args"; }
done
cmp -s "$RF_TEST_COSTS" "$tmp/before" || fail "a refused call changed the costs file"
echo "test costs: ok"
