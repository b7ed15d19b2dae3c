#!/usr/bin/env bash
# Trains an experiment: installs what is missing, builds if needed, then runs `reformer train`.
#   launch/train.sh CONFIG [--set section.key=value ...] [--resume auto]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 1 ] || [ ! -f "$1" ]; then
  echo "usage: launch/train.sh CONFIG.yaml [--set section.key=value ...] [--resume auto]" >&2
  [ $# -ge 1 ] && echo "train.sh: config file '$1' not found" >&2
  exit 2
fi
config="$1"
shift
"$root/launch/setup.sh"
"$root/launch/build.sh"
exec "${RF_BUILD_DIR:-$root/build}/reformer" train --config "$config" "$@"
