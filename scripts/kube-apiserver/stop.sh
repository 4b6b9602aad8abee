#!/usr/bin/env bash
# Stop what start.sh DIR started and remove DIR's runtime files.
#
# Usage: stop.sh DIR
# Only the PIDs listed in DIR/pids are signalled, and only while their command line still
# mentions DIR (guards against a PID having been reused by an unrelated process). Idempotent.
# Environment: KUBE_STOP_TIMEOUT seconds to wait after SIGTERM before SIGKILL (default 15);
#              KUBE_KEEP_LOGS=1 keeps DIR/*.log (start.sh sets it when startup fails).
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
[[ -d $1 ]] || exit 0   # nothing was ever started there
DIR=$(cd "$1" && pwd)
TIMEOUT=${KUBE_STOP_TIMEOUT:-15}

log() { printf 'stop.sh: %s\n' "$*" >&2; }

# Is PID alive and still one of ours? Every process start.sh launches has DIR in its arguments.
ours() {
  local pid=$1 cmdline
  [[ -r /proc/$pid/cmdline ]] || return 1
  cmdline=$( { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || return 1
  [[ $cmdline == *"$DIR/"* ]]
}

pids=()
if [[ -f $DIR/pids ]]; then
  while read -r pid; do
    [[ $pid =~ ^[0-9]+$ ]] && pids+=("$pid")
  done <"$DIR/pids"
fi

# Reverse start order: controller-manager and apiserver first, etcd last, so the apiserver does
# not spend its shutdown retrying a vanished etcd.
for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
  pid=${pids[i]}
  ours "$pid" || continue
  kill -TERM "$pid" 2>/dev/null || continue
  deadline=$(( $(date +%s) + TIMEOUT ))
  while ours "$pid" && (( $(date +%s) < deadline )); do sleep 0.2; done
  if ours "$pid"; then
    log "pid $pid ignored SIGTERM for ${TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$(( $(date +%s) + 5 ))
    while ours "$pid" && (( $(date +%s) < deadline )); do sleep 0.2; done
  fi
  # A zombie (if our caller is the parent and has not reaped it) has an empty cmdline, so it no
  # longer counts as ours; anything else still matching is a real failure.
  if ours "$pid"; then log "error: pid $pid still running"; exit 1; fi
done

# Dead processes whose parent (often PID 1, start.sh having exited) has not reaped them yet show
# up as <defunct> in ps for a moment. Give the reaper a bounded grace period so a caller that
# checks "nothing left running" right after stop.sh sees a clean table; never fail on this.
deadline=$(( $(date +%s) + 5 ))
for pid in "${pids[@]}"; do
  while [[ -e /proc/$pid ]] && ! ours "$pid" && (( $(date +%s) < deadline )); do sleep 0.2; done
done

# Runtime files written by start.sh (keeps DIR itself and anything else the caller put there).
rm -rf "$DIR/pki" "$DIR/etcd-data" "$DIR/apiserver-certs"
rm -f "$DIR/env" "$DIR/kubeconfig" "$DIR/pids" "$DIR/tokens.csv"
if [[ ${KUBE_KEEP_LOGS:-0} != 1 ]]; then
  rm -f "$DIR/etcd.log" "$DIR/kube-apiserver.log" "$DIR/kube-controller-manager.log"
fi
rmdir "$DIR" 2>/dev/null || true   # only if now empty
