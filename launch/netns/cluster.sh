#!/usr/bin/env bash
# Runs an MPI job across N hosts simulated on this machine (root only), so that multi-host
# behaviour — TCP between hosts, a host's link cut, slow or lossy links, a host lost — can be
# tested without a cluster. Each host is a network namespace (its own interfaces and address) with
# its own UTS host name, joined to the others through a veth pair on a private bridge with no
# uplink; mpirun runs on a launch node of its own (one more namespace on the bridge, address .2)
# and starts its daemons through agent.sh (which enters a namespace where ssh would log in). Open
# MPI is limited to TCP between the hosts' addresses: no shared memory, no other interface.
#
#   launch/netns/cluster.sh [--hosts N] [--ranks-per-host K] [--state DIR] [-x VAR[=VALUE]]...
#                           [--mca NAME VALUE]... [--tcp-retries2 R] -- PROGRAM [ARGS...]
#   launch/netns/cluster.sh --check        # exit 0 if namespaces can be made here, else 77
#
# Names carry a per-invocation id (this script's PID), and each invocation takes its own /24 of
# 198.18.0.0/15 (reserved for network benchmarks; it never leaves the machine), so jobs can run in
# parallel. While the job runs, DIR/hosts lists "INDEX HOSTNAME NAMESPACE ADDRESS LINK" per host
# and DIR/ready exists, DIR/launch_node names mpirun's namespace and DIR/mpirun_pid its process;
# launch/netns/fault.sh acts on that. Everything created (namespaces, veths, bridge, the state folder unless --state was given) is
# removed on every exit; a run killed with SIGKILL leaves its namespaces behind, and the next
# invocation removes them.
# The launch node's TCP gives up on unacknowledged data after net.ipv4.tcp_retries2 = R
# retransmissions (default 3: about 3 s; Linux's own 15 is about 15 minutes). That is what ends a
# job whose host dropped off the network: after a rank reports the lost collective and aborts,
# mpirun tells every daemon to stop and waits until each has gone or its connection has failed; a
# cut-off host's connection fails only at this limit. On a real cluster it is the same setting on
# the node that runs mpirun (machine-wide there); see the README, "Several hosts on one machine".
# Exit status: mpirun's; 77 when namespaces cannot be created here (not root, say; 1 in CI), 2 for
# usage.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage="usage: launch/netns/cluster.sh [--hosts N] [--ranks-per-host K] [--state DIR] [-x VAR[=VALUE]]... -- PROGRAM [ARGS...]"

hosts=2
per_host=1
state=""
tcp_retries2=3
check_only=0
mpi_env=()
while [ $# -gt 0 ]; do
  case "$1" in
    --hosts) hosts="${2:?--hosts needs a number}"; shift 2 ;;
    --ranks-per-host) per_host="${2:?--ranks-per-host needs a number}"; shift 2 ;;
    --state) state="${2:?--state needs a folder}"; shift 2 ;;
    -x) mpi_env+=(-x "${2:?-x needs VAR[=VALUE]}"); shift 2 ;;
    --mca) mpi_env+=(--mca "${2:?--mca needs a name}" "${3:?--mca needs a value}"); shift 3 ;;
    --tcp-retries2) tcp_retries2="${2:?--tcp-retries2 needs a number}"; shift 2 ;;
    --check) check_only=1; shift ;;
    --) shift; break ;;
    *) echo "cluster.sh: unknown argument '$1'; $usage" >&2; exit 2 ;;
  esac
done
for n in "$hosts" "$per_host" "$tcp_retries2"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "cluster.sh: '$n' is not a positive number" >&2; exit 2; }
done
[ "$hosts" -le 200 ] || { echo "cluster.sh: at most 200 hosts (one /24)" >&2; exit 2; }
if [ "$check_only" -eq 0 ] && [ $# -eq 0 ]; then echo "$usage" >&2; exit 2; fi

id="$$"
prefix="rf${id}"  # every name this invocation creates starts with it (interface names: <= 15 bytes)
bridge="${prefix}br"
head="${prefix}hd"  # the launch node: mpirun's namespace and the bridge's end of its cable
created_state=0
made_namespaces=()
made_links=()
mpirun_pid=""

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # mpirun first (it may be waiting for a host that was cut off): asked, then made to stop.
  if [ -n "$mpirun_pid" ] && kill -0 "$mpirun_pid" 2>/dev/null; then
    kill -TERM "$mpirun_pid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$mpirun_pid" 2>/dev/null || break; sleep 0.3; done
    kill -KILL "$mpirun_pid" 2>/dev/null || true
  fi
  local ns
  for ns in ${made_namespaces[@]+"${made_namespaces[@]}"}; do
    # Whatever still runs in a host (a rank cut off from mpirun, its daemon) goes with it.
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns delete "$ns" 2>/dev/null || true
  done
  local link
  for link in ${made_links[@]+"${made_links[@]}"}; do ip link delete "$link" 2>/dev/null || true; done
  ip link delete "$bridge" 2>/dev/null || true
  [ -n "$state" ] && rm -f "$state/ready" "$state/mpirun_pid"
  [ "$created_state" -eq 1 ] && rm -rf "$state"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Exit 77 (ctest's skip) where hosts cannot be simulated; in CI (CI=true) that is a failure.
cannot() {
  echo "cluster.sh: cannot simulate hosts here: $*" >&2
  case "${CI:-}" in ""|false|0) exit 77 ;; *) echo "cluster.sh: CI is set: failing" >&2; exit 1 ;; esac
}
[ "$(id -u)" -eq 0 ] || cannot "network namespaces need root (this is uid $(id -u))"
command -v ip >/dev/null || cannot "the 'ip' command (iproute2) is missing"
command -v unshare >/dev/null || cannot "the 'unshare' command (util-linux) is missing"

# Namespaces, veths and the bridge left by invocations that were killed outright (their PID is
# gone): removed, so that leftovers do not pile up.
remove_leftovers() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^rf[0-9]+h([0-9]+|d)$' || true); do
    pid="${ns#rf}"; pid="${pid%%h*}"
    if ! kill -0 "$pid" 2>/dev/null; then
      ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
      ip netns delete "$ns" 2>/dev/null || true
    fi
  done
  local link
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 |
                grep -E '^rf[0-9]+(br|h[0-9]+|hd)$' || true); do
    pid="${link#rf}"; pid="${pid%%[bh]*}"
    kill -0 "$pid" 2>/dev/null || ip link delete "$link" 2>/dev/null || true
  done
}

# Takes a free /24 of 198.18.0.0/15 (one whose .1 no interface holds), under a lock so that two
# invocations starting at once cannot take the same one. Prints "A.B.C" of the subnet.
take_subnet() {
  local i start third second
  start=$(( id % 512 ))
  for (( i = 0; i < 512; ++i )); do
    third=$(( (start + i) % 512 ))
    second=$(( 18 + third / 256 ))
    third=$(( third % 256 ))
    if ! ip -4 -o addr show | grep -q " 198\.${second}\.${third}\.1/"; then
      echo "198.${second}.${third}"
      return 0
    fi
  done
  return 1
}

# The braces keep `2>/dev/null` to the attempt: on `exec` itself it would silence this script's
# stderr, and mpirun's (which inherits it), for the rest of the run.
if ! { exec 9>/run/lock/rf-netns.lock; } 2>/dev/null; then exec 9>/tmp/rf-netns.lock; fi
flock 9
remove_leftovers
probe="${prefix}h0"
made_namespaces+=("$probe")
ip netns add "$probe" 2>/dev/null || cannot "'ip netns add' failed (no CAP_SYS_ADMIN, or no network namespaces in this kernel)"
if [ "$check_only" -eq 1 ]; then flock -u 9; exit 0; fi
net="$(take_subnet)" || { echo "cluster.sh: no free /24 left in 198.18.0.0/15" >&2; exit 1; }
subnet="${net}.0/24"
ip link add "$bridge" type bridge
ip addr add "${net}.1/24" dev "$bridge"
ip link set "$bridge" up
flock -u 9

if [ -z "$state" ]; then state="$(mktemp -d /tmp/rf-netns.XXXXXX)"; created_state=1; fi
mkdir -p "$state"
rm -f "$state/ready"
: > "$state/hosts"
# plug NS LINK PEER ADDRESS: a cable from the bridge (its end LINK) into namespace NS (its end PEER,
# renamed eth0 there, with ADDRESS/24).
plug() {
  local ns="$1" link="$2" peer="$3" address="$4"
  ip link add "$link" type veth peer name "$peer"
  made_links+=("$link")
  ip link set "$peer" netns "$ns"
  ip -n "$ns" link set "$peer" name eth0
  ip -n "$ns" addr add "${address}/24" dev eth0
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  ip link set "$link" master "$bridge"
  ip link set "$link" up
}

: > "$state/hostfile"
for (( i = 0; i < hosts; ++i )); do
  ns="${prefix}h${i}"
  [ "$i" -eq 0 ] || { ip netns add "$ns"; made_namespaces+=("$ns"); }
  link="${prefix}h${i}"       # the bridge's end of the host's cable
  peer="${prefix}p${i}"       # the host's end, renamed eth0 inside
  address="${net}.$(( 10 + i ))"
  plug "$ns" "$link" "$peer" "$address"
  echo "$i host$i $ns $address $link" >> "$state/hosts"
  echo "$address slots=$per_host" >> "$state/hostfile"
done
ip netns add "$head"
made_namespaces+=("$head")
plug "$head" "$head" "${prefix}ph" "${net}.2"
ip netns exec "$head" sysctl -q -w net.ipv4.tcp_retries2="$tcp_retries2"
echo "$head" > "$state/launch_node"
echo "$subnet" > "$state/subnet"
touch "$state/ready"

# Sanitizer builds (launch/sanitize.sh): ranks on the simulated hosts get the caller's sanitizer
# and Open MPI settings, as ranks started on this host inherit them.
for var in ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS \
  OMPI_MCA_mca_base_component_disable_dlclose PMIX_MCA_mca_base_component_disable_dlclose; do
  if [ -n "${!var:-}" ]; then mpi_env+=(-x "$var"); fi
done
mpi_args=(--allow-run-as-root --hostfile "$state/hostfile" -np $(( hosts * per_host ))
  --map-by slot --bind-to none
  --mca plm_rsh_agent "$here/agent.sh"
  --mca btl tcp,self --mca btl_tcp_if_include "$subnet" --mca oob_tcp_if_include "$subnet"
  -x RF_NETNS_STATE="$state" ${mpi_env[@]+"${mpi_env[@]}"})
# mpirun in the background, so that INT/TERM reach the traps (which clean up) at once. Ranks'
# stdout and stderr arrive on mpirun's (this script's) stdout and stderr, as on a real cluster.
# (`ip netns exec` execs mpirun: the PID is mpirun's.)
RF_NETNS_STATE="$state" ip netns exec "$head" mpirun "${mpi_args[@]}" "$@" &
mpirun_pid=$!
echo "$mpirun_pid" > "$state/mpirun_pid"
set +e
wait "$mpirun_pid"
status=$?
set -e
exit "$status"
