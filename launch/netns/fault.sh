#!/usr/bin/env bash
# Network and host faults for a job that launch/netns/cluster.sh is running (root only):
#   launch/netns/fault.sh STATE cut HOST            # the host's link goes down (cable pulled)
#   launch/netns/fault.sh STATE restore HOST        # ... and comes back
#   launch/netns/fault.sh STATE cap HOST RATE       # both directions limited to RATE (tc tbf: 8mbit)
#   launch/netns/fault.sh STATE drop HOST PERCENT   # each packet in or out dropped with PERCENT %
#   launch/netns/fault.sh STATE signal HOST SIGNAL  # SIGNAL (TERM, KILL, ...) to the host's ranks
#   launch/netns/fault.sh STATE kill HOST           # the host's ranks killed (SIGKILL)
#   launch/netns/fault.sh STATE down HOST           # the host powered off: cable pulled, then every
#                                                   # process on it (daemon too) killed
#   launch/netns/fault.sh STATE unroutable HOST     # the launch node's route to the host answers
#                                                   # "No route to host" at once, as a router's
#                                                   # ICMP host-unreachable does for a host that
#                                                   # stopped answering ARP
#   launch/netns/fault.sh STATE settle HOST         # not a fault: waits (at most 10 s) until
#                                                   # mpirun has nothing unacknowledged in flight
#                                                   # to the host's daemon; see below
#   launch/netns/fault.sh STATE mpirun-signal all SIGNAL  # SIGNAL to mpirun itself, which sends
#                                                   # its daemons an order to pass USR1 or USR2
#                                                   # on to every rank
# STATE is cluster.sh's --state folder; HOST is an index from STATE/hosts or `all`. Loss uses
# nftables' random numbers (this kernel has no netem qdisc); caps and rules vanish with the
# namespaces and veths when cluster.sh cleans up.
# Why settle: a cut that catches one of mpirun's own messages to the host unacknowledged (the last
# one MPI_Init's fence sends, say, or a forwarded signal) makes the launch node's TCP give up on that
# daemon after its retransmissions (about 7 s with cluster.sh's tcp_retries2 = 3), and mpirun ends
# the job with "ORTE has lost communication with a remote daemon" before any rank's deadline. A
# test of the ranks' own deadline line settles first; the in-flight case has a test of its own.
set -euo pipefail
usage="usage: launch/netns/fault.sh STATE cut|restore|cap|drop|signal|kill|down|unroutable|settle|mpirun-signal HOST|all [RATE|PERCENT|SIGNAL]"
[ $# -ge 3 ] || { echo "$usage" >&2; exit 2; }
state="$1" action="$2" which="$3"
shift 3
[ -f "$state/ready" ] || { echo "fault.sh: no running cluster in '$state' (no ready file)" >&2; exit 1; }

# "INDEX HOSTNAME NAMESPACE ADDRESS LINK" of the hosts meant.
selected="$(awk -v h="$which" 'h == "all" || $1 == h' "$state/hosts")"
[ -n "$selected" ] || { echo "fault.sh: no host '$which' in $state/hosts" >&2; exit 1; }

# The ranks of a host: the processes its Open MPI daemon (orted) started.
ranks_of() {
  local pid parent
  for pid in $(ip netns pids "$1"); do
    parent="$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null)" || continue
    [ "$(cat "/proc/$parent/comm" 2>/dev/null)" = orted ] && echo "$pid"
  done
  return 0
}

launch_node="$(cat "$state/launch_node")"  # mpirun's namespace

# True when mpirun's connections to ADDRESS hold nothing unsent or unacknowledged.
mpirun_quiet_towards() {
  ip netns exec "$launch_node" ss -tinH state established dst "$1" |
    awk '$2 ~ /^[0-9]+$/ && $2 > 0 { busy = 1 } /unacked:/ { busy = 1 } END { exit busy }'
}

if [ "$action" = mpirun-signal ]; then
  [ "$which" = all ] || { echo "fault.sh: mpirun-signal acts on the whole job: give 'all', not '$which'" >&2; exit 2; }
  signal="${1:?fault.sh: mpirun-signal needs a signal name, e.g. USR1}"
  [ -s "$state/mpirun_pid" ] || { echo "fault.sh: mpirun has not started yet in '$state' (no mpirun_pid file)" >&2; exit 1; }
  kill -s "$signal" "$(cat "$state/mpirun_pid")"
  exit 0
fi

# Signals: every selected host's ranks are listed first and then signalled one right after
# another, as SLURM signals all tasks of a step at once. A rank that has ended between the
# listing and its kill (the job's agreed stop can end it within milliseconds of the first rank's
# signal) is not an error: it has nothing left to receive.
if [ "$action" = signal ] || [ "$action" = kill ]; then
  signal="KILL"
  [ "$action" = signal ] && signal="${1:?fault.sh: signal needs a signal name, e.g. TERM}"
  pids=""
  while read -r _ name ns _ _; do
    host_pids="$(ranks_of "$ns")"
    [ -n "$host_pids" ] || { echo "fault.sh: no ranks running on $name" >&2; exit 1; }
    pids="$pids $host_pids"
  done <<< "$selected"
  for pid in $pids; do
    kill -s "$signal" "$pid" 2>/dev/null || [ ! -e "/proc/$pid" ] ||
      { echo "fault.sh: could not send SIG$signal to rank process $pid" >&2; exit 1; }
  done
  exit 0
fi

while read -r _ name ns address link; do
  case "$action" in
    cut) ip link set "$link" down ;;
    restore) ip link set "$link" up ;;
    cap)
      rate="${1:?fault.sh: cap needs a rate, e.g. 8mbit}"
      # burst: at least one full-size packet plus headroom; latency bounds the queue.
      ip netns exec "$ns" tc qdisc replace dev eth0 root tbf rate "$rate" burst 32kb latency 500ms
      tc qdisc replace dev "$link" root tbf rate "$rate" burst 32kb latency 500ms ;;
    drop)
      percent="${1:?fault.sh: drop needs a percentage, e.g. 1}"
      command -v nft >/dev/null || { echo "fault.sh: drop needs nftables (apt-get install nftables)" >&2; exit 1; }
      per_million="$(awk -v p="$percent" 'BEGIN { if (p < 0 || p > 100) exit 1; printf "%d", p * 10000 }')" ||
        { echo "fault.sh: '$percent' is not a percentage" >&2; exit 1; }
      ip netns exec "$ns" nft -f - <<NFT
table inet rf_loss
delete table inet rf_loss
table inet rf_loss {
  chain in { type filter hook input priority 0; iifname "eth0" numgen random mod 1000000 < $per_million drop; }
  chain out { type filter hook output priority 0; oifname "eth0" numgen random mod 1000000 < $per_million drop; }
}
NFT
      ;;
    down)
      # The link first: a machine that loses power sends no FIN or RST, so its peers learn of it
      # only from silence, as they would from a pulled cable.
      ip link set "$link" down
      ip netns pids "$ns" | xargs -r kill -KILL ;;
    settle)
      settled=0
      for _ in $(seq 200); do
        if mpirun_quiet_towards "$address"; then settled=1; break; fi
        sleep 0.05
      done
      [ "$settled" -eq 1 ] || { echo "fault.sh: mpirun still has data in flight to $name ($address) after 10 s" >&2; exit 1; } ;;
    unroutable)
      ip -n "$launch_node" route replace unreachable "$address/32" ;;
    *) echo "fault.sh: unknown action '$action'; $usage" >&2; exit 2 ;;
  esac
done <<< "$selected"
