#!/usr/bin/env bash
# Prove a cluster started by start.sh works: a 3-replica Deployment of the test-pod image
# (imagePullPolicy: Never) becomes Running; every pod pings every other pod; a ClusterIP Service
# (kube-proxy) answers from a pod, as does the `kubernetes` Service; UDP and TCP from pnet cross
# between pods; and the CNI wiring is what --cni asked for (bridge: host-side veths on the bridge;
# ptp: a /32 route per pod in the node namespace). Removes its namespace at the end.
#
# Usage: smoke-test.sh DIR        (root; DIR as given to start.sh)
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$(cd "$1" && pwd)
[[ -f $DIR/env ]] || { echo "smoke-test.sh: $DIR/env missing (start.sh first)" >&2; exit 1; }
# shellcheck source=/dev/null
. "$DIR/env"
NS=podcap-smoke
t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf 'smoke-test.sh [+%ss]: %s\n' "$(elapsed)" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
k() { "$RUN" kubectl "$@"; }
ex() { local pod=$1; shift; k -n "$NS" exec "$pod" -- "$@"; }

# Scratch files on the host's /tmp, which the cluster's mount namespace shares.
tmp=$(mktemp -d /tmp/podcap-smoke.XXXXXX)
cleanup() {
  k delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

manifest=$tmp/smoke-test.yaml
cat >"$manifest" <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $NS}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: $NS}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: $TEST_IMAGE
        imagePullPolicy: Never
        command: ["/bin/sh", "-c", "mkdir -p /tmp/www && hostname >/tmp/www/index.html && httpd -p 8080 -h /tmp/www && trap 'exit 0' TERM && while :; do sleep 1; done"]
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $NS}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
EOF

log "kubectl apply (cni $CNI)"
k apply -f "$manifest" >/dev/null
t_apply=$(date +%s.%N)
k -n "$NS" rollout status deployment/web --timeout 120s >/dev/null || fail "Deployment not rolled out"
t_run=$(date +%s.%N)
log "3 pods Running $(awk -v a="$t_apply" -v b="$t_run" 'BEGIN { printf "%.1f", b - a }')s after apply"
k -n "$NS" get pods -o wide >&2

mapfile -t pods < <(k -n "$NS" get pods -l app=web -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
mapfile -t ips < <(k -n "$NS" get pods -l app=web -o jsonpath='{range .items[*]}{.status.podIP}{"\n"}{end}')
[[ ${#pods[@]} -eq 3 && ${#ips[@]} -eq 3 ]] || fail "expected 3 pods with IPs, got ${#pods[@]}/${#ips[@]}"
for p in "${pods[@]}"; do
  phase=$(k -n "$NS" get pod "$p" -o jsonpath='{.status.phase}')
  [[ $phase == Running ]] || fail "pod $p is $phase"
done

# Every pod pings every other pod.
for i in 0 1 2; do
  for j in 0 1 2; do
    [[ $i == "$j" ]] && continue
    ex "${pods[i]}" ping -c 2 -W 2 "${ips[j]}" >/dev/null || fail "${pods[i]} cannot ping ${ips[j]}"
  done
done
log "ping: each of the 3 pods reaches the other 2"

# ClusterIP Service through kube-proxy, from a pod (and from the node namespace).
svc_ip=$(k -n "$NS" get service web -o jsonpath='{.spec.clusterIP}')
declare -A seen=()
for n in $(seq 1 12); do
  from=${pods[n % 3]}
  host=$(ex "$from" timeout 5 wget -q -O - "http://$svc_ip/") || fail "$from: wget http://$svc_ip/ failed"
  seen[$host]=1
done
log "Service web ($svc_ip:80) answered 12 requests from pods, served by ${#seen[@]} distinct pods: ${!seen[*]}"
"$RUN" curl -fsS --max-time 3 "http://$svc_ip/" >/dev/null ||
  fail "Service $svc_ip not reachable from the node namespace"
ex "${pods[0]}" nc -w 3 "$KUBERNETES_SERVICE_IP" 443 </dev/null || fail "kubernetes Service $KUBERNETES_SERVICE_IP:443 not reachable from a pod"
log "kubernetes Service ($KUBERNETES_SERVICE_IP:443) reachable from a pod; Service web from the node namespace"

# UDP and TCP with pnet between two pods.
k -n "$NS" exec "${pods[1]}" -- pnet listen udp 9999 -n 5 >"$tmp/udp.out" 2>&1 &
lpid=$!
sleep 1
ex "${pods[0]}" pnet send udp "${ips[1]}" 9999 -n 5 -i 50 >/dev/null || fail "pnet send udp failed"
for _ in $(seq 1 20); do kill -0 "$lpid" 2>/dev/null || break; sleep 0.25; done
kill "$lpid" 2>/dev/null || true
wait "$lpid" 2>/dev/null || true
grep -q '^received 5$' "$tmp/udp.out" || fail "UDP: listener did not get 5 datagrams: $(cat "$tmp/udp.out")"
k -n "$NS" exec "${pods[2]}" -- pnet listen tcp 9998 -n 1 >"$tmp/tcp.out" 2>&1 &
lpid=$!
sleep 1
ex "${pods[0]}" pnet send tcp "${ips[2]}" 9998 -n 4 -s 100 -i 20 >/dev/null || fail "pnet send tcp failed"
for _ in $(seq 1 20); do kill -0 "$lpid" 2>/dev/null || break; sleep 0.25; done
kill "$lpid" 2>/dev/null || true
wait "$lpid" 2>/dev/null || true
grep -q '^tcp 400 bytes from' "$tmp/tcp.out" || fail "TCP: listener did not get 400 bytes: $(cat "$tmp/tcp.out")"
log "pnet: 5 UDP datagrams and a 400-byte TCP stream crossed between pods"

# CNI wiring in the node namespace.
if [[ $CNI == bridge ]]; then
  ports=$("$RUN" ip -o link show master "$NODE_IF" | awk -F': ' '{ print $2 }' | cut -d@ -f1 | paste -sd' ' -)
  n=$(wc -w <<<"$ports")
  (( n >= 3 )) || fail "expected >= 3 host-side veths on $NODE_IF, found $n: $ports"
  log "bridge: $n host-side veths on $NODE_IF: $ports"
  "$RUN" ip -o link show master "$NODE_IF" >&2
else
  for ip in "${ips[@]}"; do
    route=$("$RUN" ip route show "$ip/32")
    [[ $route == *"dev veth"* ]] || fail "no /32 route for pod $ip in the node namespace"
    log "ptp: route $ip/32: $route"
  done
  "$RUN" ip route show >&2
fi

t_del=$(date +%s.%N)
k delete namespace "$NS" --timeout 90s >/dev/null || fail "namespace $NS not deleted"
log "namespace $NS deleted in $(awk -v a="$t_del" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
trap - EXIT
rm -rf "$tmp"
log "PASS (cni $CNI)"
