#!/usr/bin/env bash
# clang-tidy over the project's C++ sources, with the checks .clang-tidy names (and says why);
# any warning fails. Builds first when the build folder has no compile_commands.json.
#   launch/tidy.sh            the libraries and commands: base/ kernels/ trainer/ data/ comms/,
#                             and tests/emulated_cuda/, which compiles the CUDA kernels
#                             (kernels/cuda/*.cuh) for the host (CI runs this; each .cpp with the
#                             project headers it includes)
#   launch/tidy.sh all        also tests/, bench/ and fuzz/ (about three times as long)
#   launch/tidy.sh FILE.cpp   those files only
# The .cu files are nvcc's and not checked; the kernels' headers (.cuh) are, as the tests'
# emulation compiles them for the host (their device-only branches, under __CUDA_ARCH__, are not).
# RF_BUILD_DIR overrides the build folder; RF_TIDY_JOBS the number of clang-tidy processes
# (default: one per core); RF_TIDY_ANALYZER_NODES the static analyser's budget of states per
# function (default 75000; 225000 is clang's own depth, about 1.5x the time: see below).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/launch/setup.sh" tidy
build="${RF_BUILD_DIR:-$root/build}"
[ -f "$build/compile_commands.json" ] || "$root/launch/build.sh"
[ -f "$build/compile_commands.json" ] ||
  { echo "tidy: no $build/compile_commands.json after building" >&2; exit 1; }

# Which sources: every .cpp the build compiles under the chosen folders, or the named files.
scope="libraries"
folders="base|kernels|trainer|data|comms|tests/emulated_cuda"
files=()
if [ "${1:-}" = "all" ]; then
  scope="everything"
  folders="base|kernels|trainer|data|comms|tests|bench|fuzz"
elif [ $# -gt 0 ]; then
  scope="named"
  for f in "$@"; do
    [ -f "$f" ] || { echo "tidy: no file '$f'" >&2; exit 2; }
    files+=("$(cd "$(dirname "$f")" && pwd)/$(basename "$f")")
  done
fi
if [ ${#files[@]} -eq 0 ]; then
  mapfile -t files < <(python3 - "$build/compile_commands.json" "$root" "$folders" <<'EOF'
import json, re, sys
commands, root, folders = sys.argv[1], sys.argv[2], sys.argv[3]
pattern = re.compile(r"^" + re.escape(root) + r"/(" + folders + r")/.*\.cpp$")
print("\n".join(sorted({e["file"] for e in json.load(open(commands)) if pattern.match(e["file"])})))
EOF
  )
fi
[ ${#files[@]} -gt 0 ] || { echo "tidy: no sources to check" >&2; exit 1; }

jobs="${RF_TIDY_JOBS:-$(nproc)}"
# The static analyser explores each function's paths until it has made max-nodes states: clang's
# default (225000) is reached by ~100 of the project's functions (the launchers, the tiled
# attention, the commands), which were ~90% of its time and most of this run's. 75000 (the
# budget of clang's own "shallow" mode, whose smaller inlining is not taken: it reports false
# uninitialised reads here) keeps every path it explores as deep as before, and stops sooner on
# the functions with more. Measured in the README ("What keeps the CI run short").
analyzer_nodes="${RF_TIDY_ANALYZER_NODES:-75000}"
[[ "$analyzer_nodes" =~ ^[0-9]+$ ]] ||
  { echo "tidy: RF_TIDY_ANALYZER_NODES must be a whole number, not '$analyzer_nodes'" >&2; exit 2; }
# clang-tidy 22 (Debian's clang-tidy-22, which launch/setup.sh installs): its checks no longer walk
# the declarations of the system headers, which were most of their time with clang-tidy 14.
tidy_bin="${RF_CLANG_TIDY:-clang-tidy-22}"
command -v "$tidy_bin" > /dev/null ||
  { echo "tidy: no '$tidy_bin' (launch/setup.sh tidy installs it)" >&2; exit 1; }
log="$(mktemp -d)"
trap 'rm -rf "$log"' EXIT
# The build's commands less the GCC options clang does not know (clang-tidy would stop at them and
# check nothing in that file), and less the tests' precompiled header (clang would try to read
# GCC's .gch beside it; the sources include what they use), in $log/compile_commands.json.
python3 - "$build/compile_commands.json" "$log/compile_commands.json" <<'EOF'
import json, shlex, sys
gcc_only = {"-fno-tree-loop-distribute-patterns", "-Winvalid-pch"}
entries = json.load(open(sys.argv[1]))
for e in entries:
    args = e.pop("arguments", None) or shlex.split(e.pop("command"))
    kept = []
    for a in args:
        if kept and kept[-1] == "-include" and a.endswith("/cmake_pch.hxx"):
            kept.pop()
        elif a not in gcc_only:
            kept.append(a)
    e["arguments"] = kept
json.dump(entries, open(sys.argv[2], "w"))
EOF
echo "tidy: $("$tidy_bin" --version | grep -o 'version [0-9.]*'), ${#files[@]} files ($scope), $jobs at a time, analyser budget $analyzer_nodes states per function"
# Each file's findings go to its own log; a line per file shows progress with an ETA.
export root build log analyzer_nodes tidy_bin
start=$SECONDS
printf '%s\n' "${files[@]}" | nl -ba -w1 -s' ' |
  xargs -P "$jobs" -L 1 bash -c '
    i="$0"; f="$1"
    out="$log/$i.txt"
    "$tidy_bin" -p "$log" --quiet \
      --header-filter="^$root/(base|kernels|trainer|data|comms|tests|bench|fuzz)/" \
      --extra-arg=-Wno-unknown-warning-option --extra-arg=-Xclang --extra-arg=-analyzer-config \
      --extra-arg=-Xclang --extra-arg="max-nodes=$analyzer_nodes" "$f" > "$out" 2>&1 || true
    grep -q "warning:\|error:" "$out" && status="FINDINGS" || { status="ok"; rm -f "$out"; }
    echo "$i ${f#$root/} $status"
  ' | while read -r i f status; do
    done_count=$(( ${done_count:-0} + 1 ))
    elapsed=$(( SECONDS - start ))
    eta=$(( elapsed * (${#files[@]} - done_count) / done_count ))
    echo "tidy: [$done_count/${#files[@]}] $f $status (ETA ${eta} s)"
  done

# The findings, each once (a header's show up in every file that includes it).
findings="$(cat "$log"/*.txt 2>/dev/null | grep -E "(warning|error): " | sort -u || true)"
if [ -n "$findings" ]; then
  cat "$log"/*.txt | grep -v "^[0-9]* warnings\? generated\.$" >&2 || true
  echo "tidy: $(wc -l <<< "$findings") findings (above), in $((SECONDS - start)) s:" >&2
  sed "s|^$root/||" <<< "$findings" >&2
  exit 1
fi
echo "tidy: no findings in ${#files[@]} files, $((SECONDS - start)) s"
