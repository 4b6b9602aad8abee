#!/usr/bin/env bash
# Start a real single-node Kubernetes v1.20.2 cluster for podcap's tests: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kube-proxy (iptables mode), containerd + runc and a
# real kubelet, all inside one private network + mount namespace held by a holder process.
# Pods are wired by the bridge or the ptp CNI plugin. Follows /work/shared/recipes/real-node.md;
# README.md next to this script documents the interface.
#
# Usage: start.sh DIR [--cni bridge|ptp]          (root)
#   DIR      runtime directory (created if missing); must not hold a running cluster.
#            Keep it short (unix socket paths under it must stay below 108 bytes).
#   --cni    bridge (default): host-local IPAM in 10.244.0.0/24 on the bridge cni0, which carries
#            the node IP 10.244.0.1/24; pods' host-side veths are bridge ports.
#            ptp: every pod gets a veth pair and a /32 route on its host-side veth (as Calico
#            does); the node IP 10.244.0.1/32 sits on lo.
# Environment:
#   REAL_NODE_BUILD        output of build.sh (KEY=value lines); default: run build.sh
#   REAL_NODE_NAME         Node name (default podcap-node)
#   REAL_NODE_READY_TIMEOUT seconds to wait for the Node to be Ready (default 180)
#   REAL_NODE_VERBOSITY    klog -v for the Kubernetes components (default 1)
#
# Writes DIR/env (shell-sourceable, see README.md), DIR/kubeconfig (admin, server inside the
# namespace), DIR/kubeconfig-host (admin, through a 127.0.0.1 forward on the host), DIR/run
# (runs a command inside the namespaces), DIR/pids ("PID NAME" per line: what stop.sh stops),
# DIR/logs/*.log. Prints DIR/env on stdout. On any failure it stops what it started.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
usage() { echo "usage: $0 DIR [--cni bridge|ptp]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
dir_arg=$1; shift
CNI=bridge
while [[ $# -gt 0 ]]; do
  case $1 in
    --cni) [[ $# -ge 2 ]] || usage; CNI=$2; shift 2 ;;
    --cni=*) CNI=${1#--cni=}; shift ;;
    *) usage ;;
  esac
done
[[ $CNI == bridge || $CNI == ptp ]] || { echo "start.sh: --cni must be bridge or ptp" >&2; exit 2; }

t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf 'real-node/start.sh [+%ss]: %s\n' "$(elapsed)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (namespaces, cgroups, containerd)"
mkdir -p "$dir_arg"
DIR=$(cd "$dir_arg" && pwd)
(( ${#DIR} <= 64 )) || die "DIR path too long (${#DIR} > 64 bytes): unix socket paths under it would overflow"

NODE=${REAL_NODE_NAME:-podcap-node}
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.244.128.0/24
KUBERNETES_SERVICE_IP=10.244.128.1
API_PORT=6443
READY_TIMEOUT=${REAL_NODE_READY_TIMEOUT:-180}
V=${REAL_NODE_VERBOSITY:-1}

if [[ -f $DIR/pids ]]; then
  while read -r pid _; do
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
      die "$DIR already has a running cluster (pid $pid); run stop.sh first"
  done <"$DIR/pids"
fi

# ---- build outputs -------------------------------------------------------------------------------
build_out=${REAL_NODE_BUILD:-$("$here/build.sh")}
declare KUBE_BIN_DIR='' NODE_BIN_DIR='' KUBECTL='' PAUSE_IMAGE='' PAUSE_IMAGE_TAR='' TEST_IMAGE='' TEST_IMAGE_TAR=''
while IFS='=' read -r k v; do
  case $k in
    KUBE_BIN_DIR|NODE_BIN_DIR|KUBECTL|PAUSE_IMAGE|PAUSE_IMAGE_TAR|TEST_IMAGE|TEST_IMAGE_TAR) printf -v "$k" '%s' "$v" ;;
  esac
done <<<"$build_out"
for f in "$KUBE_BIN_DIR"/{etcd,kube-apiserver,kube-controller-manager} \
         "$NODE_BIN_DIR"/{kubelet,kube-scheduler,kube-proxy} "$KUBECTL" \
         /usr/bin/containerd /usr/bin/ctr /usr/sbin/runc /usr/lib/cni/"$CNI" /usr/lib/cni/host-local \
         /usr/lib/cni/portmap /usr/lib/cni/loopback /usr/bin/python3; do
  [[ -x $f ]] || die "$f missing (run scripts/real-node/build.sh as root first)"
done
for f in "$PAUSE_IMAGE_TAR" "$TEST_IMAGE_TAR"; do [[ -f $f ]] || die "$f missing"; done

# ---- fresh runtime tree --------------------------------------------------------------------------
# Leftovers of an earlier, stopped cluster (files, logs) are removed the way stop.sh removes them.
REAL_NODE_KEEP_LOGS=0 "$here/stop.sh" "$DIR" >&2
mkdir -p "$DIR"
mkdir -p "$DIR"/{logs,pki,bin,kubeconfigs,etcd-data,containerd,kubelet,cni/net.d,cni/ipam,var-lib,var-log,kubectl-cache,flexvolume}
chmod 700 "$DIR/pki" "$DIR/kubeconfigs"
: >"$DIR/pids"
SOCK=$DIR/containerd/containerd.sock
CG_NAME="podcap-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
CGROUP_ROOT=/$CG_NAME
echo "$CG_NAME" >"$DIR/cgroup-name"   # stop.sh removes exactly these cgroups

on_exit() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    log "failed (rc $rc); stopping what was started"
    for f in "$DIR"/logs/*.log; do
      [[ -s $f ]] || continue
      log "--- tail of $(basename "$f")"
      tail -n 12 "$f" >&2
    done
    REAL_NODE_KEEP_LOGS=1 "$here/stop.sh" "$DIR" >&2 || true
    log "logs kept in $DIR/logs"
  fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM HUP   # so an interrupted start also stops what it started

# spawn NAME CMD...: start in the background, detached from our stdio, PID recorded at once.
spawned=
spawn() {
  local name=$1; shift
  "$@" </dev/null >>"$DIR/logs/$name.log" 2>&1 &
  spawned=$!
  echo "$spawned $name" >>"$DIR/pids"
}

# wait_for WHAT PID SECONDS CMD...: poll CMD until it succeeds; fail if PID dies or time is up.
wait_for() {
  local what=$1 pid=$2 max=$3; shift 3
  local deadline=$(( $(date +%s) + max ))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || die "$what exited during startup (see $DIR/logs)"
    (( $(date +%s) < deadline )) || die "$what not ready after ${max}s"
    sleep 0.3
  done
}

# ---- PKI, tokens, kubeconfigs --------------------------------------------------------------------
pki=$DIR/pki
cat >"$pki/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[serving]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF
ossl() { openssl "$@" 2>>"$pki/openssl.log"; }
ossl req -x509 -new -config "$pki/openssl.cnf" -extensions ca -newkey rsa:2048 -nodes \
  -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 7 -subj "/CN=podcap-real-node-ca"
signed() {  # NAME SUBJECT EXTENSIONS
  ossl req -new -config "$pki/openssl.cnf" -newkey rsa:2048 -nodes \
    -keyout "$pki/$1.key" -out "$pki/$1.csr" -subj "$2"
  ossl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 7 -extfile "$pki/openssl.cnf" -extensions "$3" -out "$pki/$1.crt"
}
signed apiserver "/CN=kube-apiserver" serving
# The apiserver's client identity towards the kubelet (exec, logs, node proxy).
signed apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" client
ossl genrsa -out "$pki/sa.key" 2048
ossl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

token() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }
ADMIN_TOKEN=$(token); ALICE_TOKEN=$(token); BOB_TOKEN=$(token)
AGENT_TOKEN=$(token); API_TOKEN=$(token)
KUBELET_TOKEN=$(token); SCHEDULER_TOKEN=$(token); CM_TOKEN=$(token); PROXY_TOKEN=$(token)
# As scripts/kube-apiserver/start.sh: admin, two ordinary users, and podcap's two service
# accounts by name (static tokens for tests acting as them from outside; pods get real
# service-account tokens here). Plus the components' own identities.
cat >"$pki/tokens.csv" <<EOF
$ADMIN_TOKEN,admin,admin,"system:masters"
$ALICE_TOKEN,alice,alice
$BOB_TOKEN,bob,bob
$AGENT_TOKEN,system:serviceaccount:podcap-system:capture-agent,capture-agent,"system:serviceaccounts,system:serviceaccounts:podcap-system"
$API_TOKEN,system:serviceaccount:podcap-system:capture-api,capture-api,"system:serviceaccounts,system:serviceaccounts:podcap-system"
$KUBELET_TOKEN,system:node:$NODE,kubelet,"system:nodes"
$SCHEDULER_TOKEN,system:kube-scheduler,kube-scheduler
$CM_TOKEN,system:kube-controller-manager,kube-controller-manager
$PROXY_TOKEN,system:kube-proxy,kube-proxy
EOF
chmod 600 "$pki/tokens.csv"

APISERVER="https://$NODE_IP:$API_PORT"
kubeconfig() {  # FILE SERVER TOKEN
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: podcap-real-node
  cluster:
    server: $2
    certificate-authority: $pki/ca.crt
users:
- name: user
  user:
    token: $3
contexts:
- name: podcap-real-node
  context:
    cluster: podcap-real-node
    user: user
current-context: podcap-real-node
EOF
  chmod 600 "$1"
}
kubeconfig "$DIR/kubeconfig" "$APISERVER" "$ADMIN_TOKEN"
kubeconfig "$DIR/kubeconfigs/kubelet" "$APISERVER" "$KUBELET_TOKEN"
kubeconfig "$DIR/kubeconfigs/scheduler" "$APISERVER" "$SCHEDULER_TOKEN"
kubeconfig "$DIR/kubeconfigs/controller-manager" "$APISERVER" "$CM_TOKEN"
kubeconfig "$DIR/kubeconfigs/proxy" "$APISERVER" "$PROXY_TOKEN"

# ---- the holder: private network + mount namespace -------------------------------------------------
# exec -a puts DIR into the holder's command line, which is how stop.sh recognises it.
# shellcheck disable=SC2016  # $0 is expanded by the inner bash
spawn holder unshare --net --mount --propagation private -- \
  bash -c 'exec -a "$0" sleep infinity' "podcap-real-node-holder $DIR/"
HOLDER=$spawned
deadline=$(( $(date +%s) + 10 ))
until [[ $(readlink "/proc/$HOLDER/ns/net" 2>/dev/null) != "$(readlink /proc/self/ns/net)" &&
         $(tr '\0' ' ' <"/proc/$HOLDER/cmdline" 2>/dev/null) == podcap-real-node-holder* ]]; do
  kill -0 "$HOLDER" 2>/dev/null || die "holder exited"
  (( $(date +%s) < deadline )) || die "holder did not enter its namespaces"
  sleep 0.05
done
inside() { nsenter -t "$HOLDER" -n -m -- "$@"; }
NETNS=/proc/$HOLDER/ns/net
log "holder pid $HOLDER ($(readlink "$NETNS"))"

# Mounts inside: a fresh /run (containerd's shim sockets, xtables lock), and our own /var/lib
# (libcni cache, kubelet's device-plugin socket) and /var/log (/var/log/pods, /var/log/containers).
inside mount -t tmpfs -o mode=0755 podcap-run /run
inside mount --bind "$DIR/var-lib" /var/lib
inside mount --bind "$DIR/var-log" /var/log

# Network inside. The kubelet refuses a loopback --node-ip, so the node address lives on the CNI
# bridge (bridge) or on lo (ptp). Services' ClusterIPs get a route so processes in
# the node namespace (not only pods) can reach them; kube-proxy DNATs them.
inside ip link set lo up
if [[ $CNI == bridge ]]; then
  NODE_IF=cni0
  inside ip link add cni0 type bridge
  inside ip addr add "$NODE_IP/24" dev cni0
  inside ip link set cni0 up
else
  # No dummy interface in this kernel (CONFIG_DUMMY is off); a /32 on lo is just as local and the
  # kubelet accepts it (it refuses only 127/8). The ptp plugin also puts the gateway address
  # (the same 10.244.0.1) on every host-side veth, each with a /32 route to its pod.
  NODE_IF=lo
  inside ip addr add "$NODE_IP/32" dev lo
fi
inside ip route add "$SERVICE_CIDR" dev "$NODE_IF" src "$NODE_IP"
inside sysctl -qw net.ipv4.ip_forward=1
# Bridged pod-to-pod traffic must pass iptables so a Service's DNAT is undone on the reply.
inside sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null ||
  log "warning: net.bridge.bridge-nf-call-iptables not available (Service replies between pods on the bridge may fail)"

# CNI config (containerd reads conf_dir; the binaries are Debian's in /usr/lib/cni).
if [[ $CNI == bridge ]]; then
  main_plugin='{"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,'
else
  main_plugin='{"type": "ptp", "ipMasq": false, "mtu": 1500,'
fi
cat >"$DIR/cni/net.d/10-podcap.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "podcap",
  "plugins": [
    $main_plugin
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$DIR/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

# ---- cgroups -----------------------------------------------------------------------------------------
# The kubelet's --cgroup-root: one directory of ours in every v1 hierarchy, so several clusters
# can run side by side and stop.sh removes exactly what this cluster made.
for h in /sys/fs/cgroup/*/; do
  h=${h%/}
  [[ -f $h/cgroup.procs && ! -f $h/cgroup.controllers ]] || continue   # v1 hierarchies only
  mkdir "$h/$CG_NAME"
  if [[ -f $h/cpuset.cpus ]]; then
    cat "$h/cpuset.cpus" >"$h/$CG_NAME/cpuset.cpus"
    cat "$h/cpuset.mems" >"$h/$CG_NAME/cpuset.mems"
  fi
done

# ---- etcd + kube-apiserver ---------------------------------------------------------------------------
spawn etcd nsenter -t "$HOLDER" -n -m -- "$KUBE_BIN_DIR/etcd" \
  --name podcap-real-node \
  --data-dir "$DIR/etcd-data" \
  --listen-client-urls http://127.0.0.1:2379 \
  --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 \
  --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster podcap-real-node=http://127.0.0.1:2380 \
  --listen-metrics-urls '' \
  --unsafe-no-fsync
ETCD_PID=$spawned

spawn kube-apiserver nsenter -t "$HOLDER" -n -m -- "$KUBE_BIN_DIR/kube-apiserver" \
  --etcd-servers http://127.0.0.1:2379 \
  --bind-address 0.0.0.0 \
  --advertise-address "$NODE_IP" \
  --secure-port "$API_PORT" \
  --insecure-port 0 \
  --cert-dir "$DIR/pki/apiserver-generated" \
  --tls-cert-file "$pki/apiserver.crt" \
  --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP,Hostname \
  --token-auth-file "$pki/tokens.csv" \
  --authorization-mode Node,RBAC \
  --enable-admission-plugins NodeRestriction \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" \
  --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --allow-privileged \
  --profiling=false \
  --v "$V"
APISERVER_PID=$spawned

# containerd meanwhile (it needs nothing from the apiserver).
mkdir -p "$DIR/containerd"/{root,state,runc}
cat >"$DIR/containerd/config.toml" <<EOF
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
oom_score = 0
# "opt" would create /opt/containerd on the host; the others are snapshotters not used here.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  level = "info"
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # root here lacks CAP_SYS_RESOURCE: runc cannot set the pause container's oom_score_adj -998.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "$DIR/containerd/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni/net.d"
    max_conf_num = 1
EOF
spawn containerd nsenter -t "$HOLDER" -n -m -- /usr/bin/containerd --config "$DIR/containerd/config.toml"
CONTAINERD_PID=$spawned

wait_for etcd "$ETCD_PID" 30 inside curl -fsS --max-time 2 http://127.0.0.1:2379/health
wait_for containerd "$CONTAINERD_PID" 30 inside /usr/bin/ctr --address "$SOCK" version
log "containerd up; importing images"
for tar in "$PAUSE_IMAGE_TAR" "$TEST_IMAGE_TAR"; do
  inside /usr/bin/ctr --address "$SOCK" -n k8s.io images import "$tar" >>"$DIR/logs/ctr-import.log" 2>&1 ||
    die "ctr image import $tar failed (see $DIR/logs/ctr-import.log)"
done

wait_for kube-apiserver "$APISERVER_PID" 90 \
  inside curl -fsS --max-time 5 --cacert "$pki/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$APISERVER/readyz"
log "kube-apiserver ready"

# ---- controller-manager, scheduler, kube-proxy, kubelet ------------------------------------------------
spawn kube-controller-manager nsenter -t "$HOLDER" -n -m -- "$KUBE_BIN_DIR/kube-controller-manager" \
  --kubeconfig "$DIR/kubeconfigs/controller-manager" \
  --use-service-account-credentials \
  --leader-elect=false \
  --port 0 \
  --secure-port 0 \
  --controllers '*,-cloud-node-lifecycle,-nodeipam,-route,-service' \
  --service-account-private-key-file "$pki/sa.key" \
  --root-ca-file "$pki/ca.crt" \
  --cluster-signing-cert-file "$pki/ca.crt" \
  --cluster-signing-key-file "$pki/ca.key" \
  --flex-volume-plugin-dir "$DIR/flexvolume" \
  --profiling=false \
  --v "$V"
CONTROLLER_MANAGER_PID=$spawned

spawn kube-scheduler nsenter -t "$HOLDER" -n -m -- "$NODE_BIN_DIR/kube-scheduler" \
  --kubeconfig "$DIR/kubeconfigs/scheduler" \
  --leader-elect=false \
  --port 0 \
  --bind-address 127.0.0.1 \
  --cert-dir "$DIR/pki/scheduler-generated" \
  --profiling=false \
  --v "$V"
SCHEDULER_PID=$spawned

# conntrack settings 0 = leave the kernel's values alone (nf_conntrack_max is not per-namespace).
spawn kube-proxy nsenter -t "$HOLDER" -n -m -- "$NODE_BIN_DIR/kube-proxy" \
  --kubeconfig "$DIR/kubeconfigs/proxy" \
  --hostname-override "$NODE" \
  --bind-address "$NODE_IP" \
  --cluster-cidr "$POD_CIDR" \
  --proxy-mode iptables \
  --conntrack-max-per-core 0 \
  --conntrack-min 0 \
  --conntrack-tcp-timeout-established 0 \
  --conntrack-tcp-timeout-close-wait 0 \
  --oom-score-adj 0 \
  --metrics-bind-address 127.0.0.1:10249 \
  --healthz-bind-address 127.0.0.1:10256 \
  --profiling=false \
  --v "$V"
PROXY_PID=$spawned

printf '# no DNS in this test cluster\noptions ndots:1\n' >"$DIR/resolv.conf"
spawn kubelet nsenter -t "$HOLDER" -n -m -- "$NODE_BIN_DIR/kubelet" \
  --kubeconfig "$DIR/kubeconfigs/kubelet" \
  --container-runtime remote \
  --container-runtime-endpoint "unix://$SOCK" \
  --containerd "$SOCK" \
  --cgroup-driver cgroupfs \
  --cgroup-root "$CGROUP_ROOT" \
  --fail-swap-on=false \
  --hostname-override "$NODE" \
  --node-ip "$NODE_IP" \
  --node-labels "podcap.test/cni=$CNI" \
  --root-dir "$DIR/kubelet" \
  --cert-dir "$DIR/kubelet/pki" \
  --volume-plugin-dir "$DIR/flexvolume" \
  --pod-infra-container-image "$PAUSE_IMAGE" \
  --resolv-conf "$DIR/resolv.conf" \
  --read-only-port 0 \
  --eviction-hard 'memory.available<100Mi,nodefs.available<2%,imagefs.available<2%' \
  --image-gc-high-threshold 100 \
  --image-gc-low-threshold 99 \
  --authorization-mode Webhook \
  --anonymous-auth=false \
  --client-ca-file "$pki/ca.crt" \
  --oom-score-adj 0 \
  --v "$V"
KUBELET_PID=$spawned

# ---- helpers: DIR/run, DIR/bin/{kubectl,ctr}, the host forward ----------------------------------------
cat >"$DIR/bin/kubectl" <<EOF
#!/bin/sh
# kubectl v1.20.2 for this cluster (run inside the namespace: $DIR/run kubectl ...)
exec "$KUBECTL" --kubeconfig "$DIR/kubeconfig" --cache-dir "$DIR/kubectl-cache" "\$@"
EOF
cat >"$DIR/bin/ctr" <<EOF
#!/bin/sh
# ctr on this cluster's containerd, Kubernetes' namespace (run inside: $DIR/run ctr ...)
exec /usr/bin/ctr --address "$SOCK" --namespace k8s.io "\$@"
EOF
cat >"$DIR/run" <<EOF
#!/bin/sh
# Run a command inside this cluster's network + mount namespace, with kubectl and ctr for it
# first on PATH. The working directory is kept unless it is one the namespace replaces.
case "\$PWD" in /run|/run/*|/var/lib|/var/lib/*|/var/log|/var/log/*) wd=/ ;; *) wd=\$PWD ;; esac
[ -e /proc/$HOLDER/ns/net ] || { echo "$DIR/run: the cluster is not running" >&2; exit 1; }
exec nsenter -t $HOLDER -n -m --wd="\$wd" -- env PATH="$DIR/bin:\$PATH" KUBECONFIG="$DIR/kubeconfig" "\$@"
EOF
chmod 755 "$DIR/run" "$DIR/bin/kubectl" "$DIR/bin/ctr"

# A host-side 127.0.0.1 port forwarded to the apiserver inside (for clients in the host
# namespace, e.g. a test process; the serving certificate carries 127.0.0.1).
eph_lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
HOST_PORT=
for _ in $(seq 1 200); do
  p=$(( 20000 + (RANDOM * 32768 + RANDOM) % (eph_lo - 20000) ))
  if [[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]]; then HOST_PORT=$p; break; fi
done
[[ -n $HOST_PORT ]] || die "no free host port for the apiserver forward"
spawn apiserver-forward /usr/bin/python3 "$here/forward.py" "$NETNS" "$HOST_PORT" "$NODE_IP" "$API_PORT" "$DIR/"
FORWARD_PID=$spawned
APISERVER_HOST="https://127.0.0.1:$HOST_PORT"
kubeconfig "$DIR/kubeconfig-host" "$APISERVER_HOST" "$ADMIN_TOKEN"

# ---- Ready ---------------------------------------------------------------------------------------------
k() { inside "$DIR/bin/kubectl" "$@"; }
node_ready() {
  [[ $(k get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
wait_for "Node $NODE Ready (kubelet)" "$KUBELET_PID" "$READY_TIMEOUT" node_ready
t_ready=$(elapsed)
# Pods need the default ServiceAccount (ServiceAccount admission); Services need kube-proxy's rules.
wait_for "default ServiceAccount" "$CONTROLLER_MANAGER_PID" 60 k get serviceaccount default -n default
wait_for "kube-proxy rules" "$PROXY_PID" 60 \
  sh -c "nsenter -t $HOLDER -n -m -- iptables -w -t nat -S KUBE-SERVICES | grep -q -- '-d $KUBERNETES_SERVICE_IP/32'"
curl -fsS --max-time 5 --cacert "$pki/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$APISERVER_HOST/readyz" >/dev/null ||
  die "apiserver not reachable through the host forward $APISERVER_HOST"
for p in "$ETCD_PID" "$APISERVER_PID" "$CONTAINERD_PID" "$CONTROLLER_MANAGER_PID" "$SCHEDULER_PID" "$PROXY_PID" "$KUBELET_PID" "$FORWARD_PID"; do
  kill -0 "$p" 2>/dev/null || die "pid $p exited during startup"
done

cat >"$DIR/env" <<EOF
CNI=$CNI
NODE=$NODE
NODE_IP=$NODE_IP
NODE_IF=$NODE_IF
POD_CIDR=$POD_CIDR
SERVICE_CIDR=$SERVICE_CIDR
KUBERNETES_SERVICE_IP=$KUBERNETES_SERVICE_IP
APISERVER=$APISERVER
APISERVER_HOST=$APISERVER_HOST
CA_CERT=$pki/ca.crt
ADMIN_TOKEN=$ADMIN_TOKEN
ALICE_TOKEN=$ALICE_TOKEN
BOB_TOKEN=$BOB_TOKEN
AGENT_TOKEN=$AGENT_TOKEN
API_TOKEN=$API_TOKEN
KUBECONFIG=$DIR/kubeconfig
KUBECONFIG_HOST=$DIR/kubeconfig-host
RUN=$DIR/run
KUBECTL=$DIR/bin/kubectl
CTR=$DIR/bin/ctr
HOLDER_PID=$HOLDER
NETNS=$NETNS
CONTAINERD_SOCK=$SOCK
CONTAINERD_NAMESPACE=k8s.io
CNI_CONF=$DIR/cni/net.d/10-podcap.conflist
CGROUP_ROOT=$CGROUP_ROOT
KUBELET_ROOT=$DIR/kubelet
POD_LOG_DIR=$DIR/var-log/pods
LOG_DIR=$DIR/logs
PAUSE_IMAGE=$PAUSE_IMAGE
TEST_IMAGE=$TEST_IMAGE
ETCD_PID=$ETCD_PID
APISERVER_PID=$APISERVER_PID
CONTAINERD_PID=$CONTAINERD_PID
CONTROLLER_MANAGER_PID=$CONTROLLER_MANAGER_PID
SCHEDULER_PID=$SCHEDULER_PID
PROXY_PID=$PROXY_PID
KUBELET_PID=$KUBELET_PID
FORWARD_PID=$FORWARD_PID
EOF
chmod 600 "$DIR/env"
log "Node $NODE Ready after ${t_ready}s; cluster ready after $(elapsed)s (cni $CNI; env in $DIR/env)"
printf '%s\n' "$DIR/env"
