#!/usr/bin/env bash
# Stop the cluster start.sh DIR started and remove what it made. Idempotent.
#
# Usage: stop.sh DIR            (root)
# Order (the recipe's clean stop): delete the workloads and wait until no container runs; stop
# the kubelet, scheduler, controller-manager, kube-proxy and the host forward; kill and delete
# the containerd tasks; stop any shim of this containerd still running; containerd;
# kube-apiserver; etcd; then whatever is still in this cluster's cgroups or network namespace;
# the holder (the namespaces, with every mount and iptables rule in them, go with it); the
# cgroups under the kubelet's --cgroup-root; DIR's runtime files.
#
# Only processes recorded in DIR/pids, and shims started with this cluster's containerd socket,
# are signalled, and only while their command line still mentions DIR (guard against PID
# reuse); the final sweep kills only processes inside this cluster's own cgroups, or in its
# network namespace while the holder that owns it is alive.
# Environment: REAL_NODE_STOP_TIMEOUT seconds after SIGTERM before SIGKILL (default 15);
#              REAL_NODE_DRAIN_TIMEOUT seconds to wait for the pods' containers to stop (default 30);
#              REAL_NODE_KEEP_LOGS=1 keeps DIR/logs (start.sh sets it when startup fails).
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
[[ -d $1 ]] || exit 0   # nothing was ever started there
DIR=$(cd "$1" && pwd)
TIMEOUT=${REAL_NODE_STOP_TIMEOUT:-15}
DRAIN_TIMEOUT=${REAL_NODE_DRAIN_TIMEOUT:-30}
t0=$(date +%s.%N)
log() { printf 'real-node/stop.sh [+%ss]: %s\n' "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" "$*" >&2; }

# Is PID alive and one of ours? Every process start.sh launches has DIR in its arguments.
ours() {
  local cmdline
  [[ -r /proc/$1/cmdline ]] || return 1
  cmdline=$( { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null) || return 1
  [[ $cmdline == *"$DIR/"* ]]
}

# stop_pid NAME PID: SIGTERM, wait, SIGKILL; only while it is ours.
stop_pid() {
  local name=$1 pid=$2 deadline
  [[ -n $pid ]] && ours "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$(( $(date +%s) + TIMEOUT ))
  while ours "$pid" && (( $(date +%s) < deadline )); do sleep 0.1; done
  if ours "$pid"; then
    log "$name (pid $pid) ignored SIGTERM for ${TIMEOUT}s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$(( $(date +%s) + 5 ))
    while ours "$pid" && (( $(date +%s) < deadline )); do sleep 0.1; done
  fi
  if ours "$pid"; then log "error: $name (pid $pid) still running"; return 1; fi
  log "stopped $name (pid $pid)"
}

declare -A pid_of=()
all_pids=()
if [[ -f $DIR/pids ]]; then
  while read -r pid name; do
    [[ $pid =~ ^[0-9]+$ ]] || continue
    pid_of[${name:-unknown}]=$pid
    all_pids+=("$pid")
  done <"$DIR/pids"
fi
HOLDER=${pid_of[holder]:-}
holder_alive() { [[ -n $HOLDER ]] && ours "$HOLDER"; }
inside() { nsenter -t "$HOLDER" -n -m -- "$@"; }
SOCK=$DIR/containerd/containerd.sock
alive() { [[ -n ${pid_of[$1]:-} ]] && ours "${pid_of[$1]}"; }

# ---- 1. workloads ---------------------------------------------------------------------------------
if holder_alive && alive kube-apiserver && alive kubelet && [[ -x $DIR/bin/kubectl ]]; then
  k() { inside "$DIR/bin/kubectl" --request-timeout 10s "$@"; }
  log "deleting workloads"
  k delete deployments,replicasets,statefulsets,daemonsets,jobs,cronjobs,replicationcontrollers \
    --all --all-namespaces --wait=false >/dev/null 2>&1 || true
  k delete pods --all --all-namespaces --wait=false >/dev/null 2>&1 || true
  # Drained once no container runs any more: every pod then got its SIGTERM, its grace period
  # and its sandbox (network) teardown. The API objects may linger a few seconds more until the
  # kubelet's status sync confirms them; they go with etcd's data.
  deadline=$(( $(date +%s) + DRAIN_TIMEOUT ))
  while (( $(date +%s) < deadline )); do
    running=$(inside /usr/bin/ctr --address "$SOCK" -n k8s.io tasks ls 2>/dev/null | awk 'NR > 1 && $3 == "RUNNING"' | wc -l) || running='?'
    [[ $running == 0 ]] && break
    sleep 0.5
  done
  pods=$(k get pods --all-namespaces --no-headers 2>/dev/null | wc -l) || pods='?'
  if [[ ${running:-?} == 0 ]]; then
    log "workloads stopped ($pods pod objects not yet removed)"
  else
    log "workloads still running after ${DRAIN_TIMEOUT}s ($running running tasks); stopping anyway"
  fi
fi

# ---- 2. node and control-plane clients ----------------------------------------------------------------
for name in kubelet kube-scheduler kube-controller-manager kube-proxy apiserver-forward; do
  stop_pid "$name" "${pid_of[$name]:-}" || true
done

# ---- 3. containerd tasks, shims, containerd ----------------------------------------------------------
if holder_alive && alive containerd; then
  for ns in $(inside /usr/bin/ctr --address "$SOCK" namespaces ls -q 2>/dev/null); do
    for id in $(inside /usr/bin/ctr --address "$SOCK" -n "$ns" tasks ls -q 2>/dev/null); do
      inside /usr/bin/ctr --address "$SOCK" -n "$ns" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    for id in $(inside /usr/bin/ctr --address "$SOCK" -n "$ns" tasks ls -q 2>/dev/null); do
      inside timeout 10 /usr/bin/ctr --address "$SOCK" -n "$ns" tasks delete -f "$id" >/dev/null 2>&1 || true
    done
  done
fi
# Shims exit once their tasks are deleted; stop any that did not. containerd 1.6 keeps no shim
# pid file, so they are found by their command line, which names this cluster's socket:
# `containerd-shim-runc-v2 -namespace NS -id ID -address DIR/containerd/containerd.sock`.
for p in /proc/[0-9]*; do
  cmd=$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
  [[ $cmd == */containerd-shim* && "$cmd " == *" -address $SOCK "* ]] || continue
  id=${cmd#* -id }
  stop_pid "shim ${id:0:12}" "${p#/proc/}" || true
done
stop_pid containerd "${pid_of[containerd]:-}" || true
stop_pid kube-apiserver "${pid_of[kube-apiserver]:-}" || true
stop_pid etcd "${pid_of[etcd]:-}" || true

# ---- 4. anything left: in our cgroups, or (while the holder owns it) in our network namespace ---------
CG_NAME=$(cat "$DIR/cgroup-name" 2>/dev/null || true)
[[ -z $CG_NAME || $CG_NAME =~ ^podcap-[0-9a-f]+$ ]] || { log "error: bad $DIR/cgroup-name"; CG_NAME=; }
cgroup_dirs() {
  local h
  [[ -n $CG_NAME ]] || return 0
  for h in /sys/fs/cgroup/*/"$CG_NAME"; do if [[ -d $h ]]; then printf '%s\n' "$h"; fi; done
}
leftovers() {
  local d p netns
  {
    while read -r d; do find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null; done < <(cgroup_dirs)
    if holder_alive; then
      netns=$(readlink "/proc/$HOLDER/ns/net" 2>/dev/null || true)
      for p in /proc/[0-9]*; do
        p=${p#/proc/}
        if [[ $p != "$HOLDER" && -n $netns && $(readlink "/proc/$p/ns/net" 2>/dev/null) == "$netns" ]]; then echo "$p"; fi
      done
    fi
  } | sort -un
}
for round in 1 2 3; do
  left=$(leftovers | paste -sd' ' -)
  [[ -z $left ]] && break
  log "killing leftover processes of this cluster (round $round): $left"
  for p in $left; do
    log "  $p: $( { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | cut -c1-120)"
    kill -KILL "$p" 2>/dev/null || true
  done
  sleep 0.5
done

# ---- 5. the holder (its namespaces, mounts and iptables rules go with the last process) --------------
stop_pid holder "$HOLDER" || true

# ---- 6. cgroups -------------------------------------------------------------------------------------
for _ in $(seq 1 20); do
  dirs=$(cgroup_dirs)
  [[ -z $dirs ]] && break
  while read -r d; do
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done <<<"$dirs"
  sleep 0.25
done
if [[ -n $(cgroup_dirs) ]]; then
  log "error: cgroups left: $(cgroup_dirs | paste -sd' ' -)"
  cg_left=1
elif [[ -n $CG_NAME ]]; then
  log "removed cgroups /$CG_NAME"
fi

# Dead children of a parent that has not reaped them yet (PID 1 here) linger as zombies for a
# moment; wait a little so "nothing left running" checks right after stop.sh are clean.
zombie() { [[ $(sed -n 's/.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null) == Z ]]; }
deadline=$(( $(date +%s) + 5 ))
for pid in "${all_pids[@]}"; do
  while zombie "$pid" && (( $(date +%s) < deadline )); do sleep 0.1; done
done

# ---- 7. files ---------------------------------------------------------------------------------------
# Nothing start.sh mounted is visible outside the private mount namespace; refuse to delete
# through a mount point all the same.
if grep -qF " $DIR/" /proc/self/mountinfo; then
  log "error: mounts under $DIR in the host namespace; not deleting files"
  exit 1
fi
for f in pki kubeconfigs etcd-data containerd kubelet cni var-lib var-log kubectl-cache flexvolume bin; do
  [[ -e $DIR/$f ]] && { chmod -R u+w "$DIR/$f" 2>/dev/null || true; rm -rf --one-file-system "${DIR:?}/$f"; }
done
rm -f "$DIR/env" "$DIR/kubeconfig" "$DIR/kubeconfig-host" "$DIR/run" "$DIR/resolv.conf" "$DIR/pids"
[[ -n ${cg_left:-} ]] || rm -f "$DIR/cgroup-name"
if [[ ${REAL_NODE_KEEP_LOGS:-0} != 1 ]]; then rm -rf "$DIR/logs"; fi
rmdir "$DIR" 2>/dev/null || true   # only if now empty
[[ -z ${cg_left:-} ]] || exit 1
log "stopped"
