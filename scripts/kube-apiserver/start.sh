#!/usr/bin/env bash
# Start a throw-away etcd + kube-apiserver (+ kube-controller-manager) on free 127.0.0.1 ports.
#
# Usage: start.sh DIR
#   DIR      runtime directory (created if missing); must not hold a running instance.
# Environment:
#   KUBE_BIN_DIR         dir with kube-apiserver, kube-controller-manager, etcd
#                        (default: the last stdout line of build.sh, a cache hit after the first build)
#   KUBE_CONTROLLER_MANAGER=0   do not start kube-controller-manager (no namespace deletion,
#                        no garbage collection then)
#   KUBE_READY_TIMEOUT   seconds to wait for /readyz (default 90)
#
# Writes:
#   DIR/env         shell-sourceable: APISERVER, CA_CERT, ADMIN_TOKEN, ALICE_TOKEN, BOB_TOKEN,
#                   AGENT_TOKEN, API_TOKEN (podcap's service accounts),
#                   KUBECONFIG, ETCD_URL, BIN_DIR, ETCD_PID, APISERVER_PID, CONTROLLER_MANAGER_PID
#   DIR/kubeconfig  admin (system:masters) kubeconfig
#   DIR/pids        the PIDs this script started, one per line (what stop.sh kills)
#   DIR/*.log       process logs
# Stop with stop.sh DIR. On any failure this script stops what it started.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
DIR=$(cd "$1" && pwd)   # absolute: the PIDs are later matched against paths under DIR
READY_TIMEOUT=${KUBE_READY_TIMEOUT:-90}

log() { printf 'start.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ -f $DIR/pids ]]; then
  while read -r pid; do
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && die "$DIR already has a running instance (pid $pid); run stop.sh first"
  done <"$DIR/pids"
fi

BIN_DIR=${KUBE_BIN_DIR:-$("$here/build.sh" | tail -n1)}
for b in etcd kube-apiserver kube-controller-manager; do
  [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b not found (run build.sh as root first)"
done

# Clear leftovers of an earlier, stopped instance (fresh CA, tokens and etcd data every time).
rm -rf "$DIR/pki" "$DIR/etcd-data" "$DIR/apiserver-certs"
rm -f "$DIR/env" "$DIR/kubeconfig" "$DIR/pids" "$DIR/tokens.csv" "$DIR"/*.log
: >"$DIR/pids"

# Anything that goes wrong from here on stops the processes already started.
on_exit() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    log "failed (rc $rc); stopping what was started"
    for f in kube-controller-manager kube-apiserver etcd; do
      [[ -s $DIR/$f.log ]] && { log "--- tail of $f.log"; tail -n 15 "$DIR/$f.log" >&2; }
    done
    KUBE_KEEP_LOGS=1 "$here/stop.sh" "$DIR" >&2 || true
    log "logs kept in $DIR/*.log"
  fi
}
trap on_exit EXIT

# ---- free ports --------------------------------------------------------------------------------
# Pick random ports below the kernel's ephemeral range (outgoing connections cannot steal them
# there) that nothing listens on. Another process could still grab one before we bind it; the
# readiness checks below then fail loudly instead of talking to a stranger's server.
eph_lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
used_ports=" "
free_port() {
  local p _
  for _ in $(seq 1 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % (eph_lo - 20000) ))
    [[ $used_ports == *" $p "* ]] && continue
    if [[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]]; then
      echo "$p"
      return 0
    fi
  done
  die "no free port found"
}
ETCD_PORT=$(free_port); used_ports+="$ETCD_PORT "
PEER_PORT=$(free_port); used_ports+="$PEER_PORT "
API_PORT=$(free_port);  used_ports+="$API_PORT "

# ---- PKI and tokens ----------------------------------------------------------------------------
pki="$DIR/pki"
mkdir -p "$pki"
chmod 700 "$pki"
# A minimal config of our own, so the result does not depend on the system's openssl.cnf.
cat >"$pki/openssl.cnf" <<'EOF'
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
subjectAltName = IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier = keyid
EOF
ossl() { openssl "$@" 2>>"$pki/openssl.log"; }
ossl req -x509 -new -config "$pki/openssl.cnf" -extensions ca -newkey rsa:2048 -nodes \
  -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 7 -subj "/CN=podcap-test-ca"
ossl req -new -config "$pki/openssl.cnf" -newkey rsa:2048 -nodes \
  -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" -subj "/CN=kube-apiserver"
ossl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 7 -extfile "$pki/openssl.cnf" -extensions serving -out "$pki/apiserver.crt"
# Service-account token signing key pair.
ossl genrsa -out "$pki/sa.key" 2048
ossl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

token() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }
ADMIN_TOKEN=$(token); ALICE_TOKEN=$(token); BOB_TOKEN=$(token)
# podcap's own identities, named as their service accounts so deploy/'s RBAC bindings (to the
# ServiceAccounts podcap-system/capture-agent and capture-api) apply to them unchanged: no kubelet
# mounts service-account tokens here, so static tokens stand in for them.
AGENT_TOKEN=$(token); API_TOKEN=$(token)
# --token-auth-file format: token,user,uid,"group1,group2". alice and bob get no groups beyond
# system:authenticated, so RBAC denies them everything not granted explicitly.
cat >"$DIR/tokens.csv" <<EOF
$ADMIN_TOKEN,admin,admin,"system:masters"
$ALICE_TOKEN,alice,alice
$BOB_TOKEN,bob,bob
$AGENT_TOKEN,system:serviceaccount:podcap-system:capture-agent,capture-agent,"system:serviceaccounts,system:serviceaccounts:podcap-system"
$API_TOKEN,system:serviceaccount:podcap-system:capture-api,capture-api,"system:serviceaccounts,system:serviceaccounts:podcap-system"
EOF
chmod 600 "$DIR/tokens.csv"

APISERVER="https://127.0.0.1:$API_PORT"
ETCD_URL="http://127.0.0.1:$ETCD_PORT"
cat >"$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: podcap-test
  cluster:
    server: $APISERVER
    certificate-authority: $pki/ca.crt
users:
- name: admin
  user:
    token: $ADMIN_TOKEN
contexts:
- name: podcap-test
  context:
    cluster: podcap-test
    user: admin
current-context: podcap-test
EOF
chmod 600 "$DIR/kubeconfig"

# ---- processes ---------------------------------------------------------------------------------
# Each is started in the background with stdin/stdout/stderr detached from our caller (so a
# `$(start.sh ...)` or a pipe does not wait for them) and its PID is recorded at once, in
# DIR/pids, before anything else can fail. Not called in $(...): the PID is returned in
# $spawned so the process stays our direct child.
spawned=
spawn() {
  local name=$1; shift
  "$@" </dev/null >"$DIR/$name.log" 2>&1 &
  spawned=$!
  echo "$spawned" >>"$DIR/pids"
}

# Poll CMD until it succeeds, PID dies, or SECONDS_MAX elapse.
wait_for() {
  local what=$1 pid=$2 max=$3; shift 3
  local deadline=$(( $(date +%s) + max ))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || die "$what exited during startup"
    (( $(date +%s) < deadline )) || die "$what not ready after ${max}s"
    sleep 0.5
  done
}

# --unsafe-no-fsync: test data is disposable and fsync dominates etcd latency on shared disks.
spawn etcd "$BIN_DIR/etcd" \
  --name podcap-test \
  --data-dir "$DIR/etcd-data" \
  --listen-client-urls "$ETCD_URL" \
  --advertise-client-urls "$ETCD_URL" \
  --listen-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-cluster "podcap-test=http://127.0.0.1:$PEER_PORT" \
  --unsafe-no-fsync
ETCD_PID=$spawned
wait_for etcd "$ETCD_PID" 30 curl -fsS --max-time 2 "$ETCD_URL/health"

# Flags per the recipe. ServiceAccount admission is off because tests create pods before (or
# without) a default service account and no kubelet mounts tokens anyway. The `kubernetes`
# service gets no endpoints (a loopback address is not a valid endpoint); nothing here needs it.
spawn kube-apiserver "$BIN_DIR/kube-apiserver" \
  --etcd-servers "$ETCD_URL" \
  --bind-address 127.0.0.1 \
  --advertise-address 127.0.0.1 \
  --secure-port "$API_PORT" \
  --insecure-port 0 \
  --cert-dir "$DIR/apiserver-certs" \
  --tls-cert-file "$pki/apiserver.crt" \
  --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --token-auth-file "$DIR/tokens.csv" \
  --authorization-mode Node,RBAC \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" \
  --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range 10.0.0.0/24 \
  --allow-privileged \
  --disable-admission-plugins ServiceAccount \
  --profiling=false
APISERVER_PID=$spawned
wait_for kube-apiserver "$APISERVER_PID" "$READY_TIMEOUT" \
  curl -fsS --max-time 5 --cacert "$pki/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$APISERVER/readyz"

# Optional controller-manager: namespace deletion and garbage collection need it. Controllers
# that only make sense with a cloud, real nodes or a kubelet are disabled; podgc is disabled
# because tests bind pods to Node objects that may not exist and it would delete those pods.
CONTROLLER_MANAGER_PID=
if [[ ${KUBE_CONTROLLER_MANAGER:-1} != 0 ]]; then
  spawn kube-controller-manager "$BIN_DIR/kube-controller-manager" \
    --kubeconfig "$DIR/kubeconfig" \
    --leader-elect=false \
    --port 0 \
    --secure-port 0 \
    --controllers '*,-cloud-node-lifecycle,-nodeipam,-nodelifecycle,-route,-service,-podgc,-attachdetach,-persistentvolume-binder,-persistentvolume-expander' \
    --service-account-private-key-file "$pki/sa.key" \
    --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" \
    --cluster-signing-key-file "$pki/ca.key" \
    --profiling=false
  CONTROLLER_MANAGER_PID=$spawned
  # It serves nothing (ports 0), so "ready" = still alive after a short grace period.
  sleep 2
  kill -0 "$CONTROLLER_MANAGER_PID" 2>/dev/null || die "kube-controller-manager exited during startup"
fi

cat >"$DIR/env" <<EOF
APISERVER=$APISERVER
CA_CERT=$pki/ca.crt
ADMIN_TOKEN=$ADMIN_TOKEN
ALICE_TOKEN=$ALICE_TOKEN
BOB_TOKEN=$BOB_TOKEN
AGENT_TOKEN=$AGENT_TOKEN
API_TOKEN=$API_TOKEN
KUBECONFIG=$DIR/kubeconfig
ETCD_URL=$ETCD_URL
BIN_DIR=$BIN_DIR
ETCD_PID=$ETCD_PID
APISERVER_PID=$APISERVER_PID
CONTROLLER_MANAGER_PID=$CONTROLLER_MANAGER_PID
EOF
chmod 600 "$DIR/env"
log "ready: $APISERVER (env in $DIR/env)"
printf '%s\n' "$DIR/env"
