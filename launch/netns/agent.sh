#!/usr/bin/env bash
# mpirun's remote-shell agent for launch/netns/cluster.sh: called as `agent.sh HOST COMMAND...`
# where ssh would be, it runs COMMAND in HOST's network namespace under HOST's own host name
# (a UTS namespace), so that each simulated host looks like a machine of its own to the job.
# HOST is an address from $RF_NETNS_STATE/hosts.
#
# Like ssh with ServerAliveInterval, it probes the host over the network while the command runs
# (a TCP connection attempt, answered at once with a refusal by a live host) and, after
# RF_NETNS_ALIVE_COUNT probes in a row without an answer, RF_NETNS_ALIVE_INTERVAL seconds apart,
# says so and exits 255 as ssh does. That is how mpirun learns that a host dropped off the network:
# its own connection to the host's daemon would wait for TCP's retransmission limit (~15 min).
set -euo pipefail
[ $# -ge 2 ] || { echo "agent.sh: usage: agent.sh HOST COMMAND..." >&2; exit 2; }
host="$1"
shift
hosts_file="${RF_NETNS_STATE:?agent.sh: RF_NETNS_STATE is not set (run through cluster.sh)}/hosts"
read -r _ name ns address _ < <(awk -v a="$host" '$4 == a || $2 == a' "$hosts_file") ||
  { echo "agent.sh: no simulated host '$host' in $hosts_file" >&2; exit 255; }
interval="${RF_NETNS_ALIVE_INTERVAL:-4}"
count="${RF_NETNS_ALIVE_COUNT:-3}"

# ssh hands the remote shell one command line: do the same.
ip netns exec "$ns" unshare --uts sh -c 'hostname "$0" && eval "$1"' "$name" "$*" &
session=$!
trap 'kill -TERM "$session" 2>/dev/null || true' INT TERM

# True when the host answers: an accepted or refused connection within 2 s (a lost SYN is resent
# after 1 s, so one dropped packet does not count as a miss). Any other failure is silence: "No
# route to host" comes from this side when the host's address stopped resolving (ARP unanswered,
# or a router's ICMP host-unreachable), and counting it as an answer let a powered-off host's
# session end as if the host had reported it (mpirun then stopped the job before any rank's line).
answers() {
  local reply status=0
  reply="$(LC_ALL=C timeout 2 bash -c ": < /dev/tcp/$address/9" 2>&1)" || status=$?
  [ "$status" -eq 0 ] || [[ "$reply" == *"Connection refused"* ]]
}

give_up() {
  echo "agent.sh: Timeout, host $name ($address) not responding for $(( misses * interval )) s; ending its session" >&2
  exit 255
}

misses=0
while kill -0 "$session" 2>/dev/null; do
  sleep "$interval" & wait $! || true
  kill -0 "$session" 2>/dev/null || break
  if answers; then misses=0; else misses=$(( misses + 1 )); fi
  [ "$misses" -lt "$count" ] || give_up
done
set +e
wait "$session"
status=$?
set -e
# ssh learns that the remote command ended over the network: from a host that has gone silent
# (fault.sh down pulls the cable, then kills everything on it) no exit status would arrive, only
# the missed probes. Here the command's end is seen locally, so it counts only if the host answers.
while ! answers; do
  misses=$(( misses + 1 ))
  [ "$misses" -lt "$count" ] || give_up
  sleep "$interval" & wait $! || true
done
exit "$status"
