#!/usr/bin/env bash
# Checks deploy/images/build.sh the way a user would consume its output, without a Docker engine:
#
#   deploy/images/test.sh [WORK_DIR]
#
#  1. builds the images twice into two directories and requires byte-identical tarballs (the same
#     manifest digests), each under 25 MiB;
#  2. skopeo: `inspect oci-archive:` shows the labels, user and entrypoint; `copy oci-archive: dir:`
#     reads every blob back and checks its digest;
#  3. containerd: starts a private containerd (its own config, root, state and socket under
#     WORK_DIR, stopped by its PID), `ctr image import`s both tarballs, `ctr run`s each binary's
#     --help in the image's own rootfs, and checks the user the image runs as (agent 0, API 65532).
#
# Needs root, skopeo, containerd, ctr and runc (Debian: apt-get install skopeo containerd).
# WORK_DIR defaults to a temporary directory, removed at the end.
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The references build.sh prints by default are the ones deploy/ runs.
unset IMAGE_REPO IMAGE_TAG

say() { echo "test.sh: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }

for tool in skopeo containerd ctr runc; do
    command -v "$tool" >/dev/null || fail "$tool not found (apt-get install skopeo containerd)"
done

if [ $# -ge 1 ]; then
    mkdir -p "$1"; WORK=$(cd "$1" && pwd); KEEP=1
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/podcap-images-test.XXXXXX"); KEEP=0
fi
CTRD_PID=
cleanup() {
    if [ -n "$CTRD_PID" ]; then
        kill "$CTRD_PID" 2>/dev/null || true
        wait "$CTRD_PID" 2>/dev/null || true
    fi
    # Snapshot mounts a crashed run may have left behind, deepest first.
    if [ -d "$WORK/containerd" ]; then
        awk -v p="$WORK/containerd/" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r |
            while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" || true; done
    fi
    [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

# ---- 1. twice, identical, small ------------------------------------------------------------
start=$(date +%s)
"$HERE/build.sh" "$WORK/a" >"$WORK/a.refs"
mid=$(date +%s)
"$HERE/build.sh" "$WORK/b" >"$WORK/b.refs"
end=$(date +%s)
say "first build.sh run $((mid - start)) s, second $((end - mid)) s"
cmp "$WORK/a.refs" "$WORK/b.refs" || fail "the two runs printed different references"
[ "$(wc -l <"$WORK/a.refs")" = 2 ] || fail "expected two references, got: $(cat "$WORK/a.refs")"

# The manifest digest of the image in an OCI archive, from its index.json.
manifest_digest() {
    tar -xOf "$1" index.json | grep -o '"digest":"sha256:[0-9a-f]*"' | head -n1 | cut -d'"' -f4
}
for name in capture-agent capture-api; do
    a=$WORK/a/$name.tar b=$WORK/b/$name.tar
    da=$(manifest_digest "$a") db=$(manifest_digest "$b")
    say "$name: manifest $da (first) $db (second); tar sha256 $(sha256sum <"$a" | cut -c1-64)"
    [ "$da" = "$db" ] || fail "$name: manifest digests differ"
    cmp "$a" "$b" || fail "$name: tarballs differ"
    bytes=$(stat -c %s "$a")
    say "$name: $bytes bytes ($(( (bytes + 1048575) / 1048576 )) MiB)"
    [ "$bytes" -lt $((25 * 1024 * 1024)) ] || fail "$name: $bytes bytes is not under 25 MiB"
done

mapfile -t REFS <"$WORK/a.refs"

# deploy/ runs exactly these references, and an overlay's `images:` retargets them.
if command -v kubectl >/dev/null; then
    kubectl kustomize "$HERE/.." >"$WORK/deploy.yaml" 2>"$WORK/deploy.err" ||
        { cat "$WORK/deploy.err" >&2; fail "kubectl kustomize deploy"; }
    mkdir -p "$WORK/overlay"
    {   # as deploy/README.md shows it
        echo "bases: [$(realpath --relative-to="$WORK/overlay" "$HERE/..")]"
        echo "images:"
        for ref in "${REFS[@]}"; do
            name=${ref##*/}; name=${name%%:*}
            echo "- {name: ${ref%:*}, newName: registry.example/test/$name, newTag: t1}"
        done
    } >"$WORK/overlay/kustomization.yaml"
    kubectl kustomize "$WORK/overlay" >"$WORK/overlay.yaml" 2>"$WORK/overlay.err" ||
        { cat "$WORK/overlay.err" >&2; fail "kubectl kustomize of an overlay"; }
    for ref in "${REFS[@]}"; do
        grep -qxF "        image: $ref" "$WORK/deploy.yaml" || fail "deploy/ does not run $ref"
        name=${ref##*/}; name=${name%%:*}
        grep -qxF "        image: registry.example/test/$name:t1" "$WORK/overlay.yaml" ||
            fail "an images: override does not retarget $ref"
    done
    say "deploy/ runs ${REFS[*]}; an overlay's images: retargets both: OK"
else
    for ref in "${REFS[@]}"; do
        grep -rqF "image: $ref" "$HERE/../base" || fail "deploy/base does not run $ref"
    done
    say "deploy/base names ${REFS[*]} (no kubectl: overlay not rendered)"
fi

# ---- 2. skopeo -----------------------------------------------------------------------------
for ref in "${REFS[@]}"; do
    name=${ref##*/}; name=${name%%:*}
    tarball=$WORK/a/$name.tar
    skopeo inspect "oci-archive:$tarball" >"$WORK/$name.inspect.json"
    skopeo inspect --config "oci-archive:$tarball" >"$WORK/$name.config.json"
    for key in source version revision title description; do
        grep -q "\"org.opencontainers.image.$key\": \"[^\"]" "$WORK/$name.inspect.json" ||
            fail "$name: label org.opencontainers.image.$key missing"
    done
    case $name in capture-agent) user=0:0 ;; *) user=65532:65532 ;; esac
    tr -d ' \n' <"$WORK/$name.config.json" | grep -q "\"User\":\"$user\"" || fail "$name: User is not $user"
    tr -d ' \n' <"$WORK/$name.config.json" | grep -q "\"Entrypoint\":\[\"/usr/local/bin/$name\"\]" ||
        fail "$name: Entrypoint is not /usr/local/bin/$name"
    rm -rf "$WORK/$name.dir"
    skopeo copy --quiet "oci-archive:$tarball" "dir:$WORK/$name.dir"
    say "$name: skopeo inspect and copy to dir: OK (labels, User $user, Entrypoint)"
done

# ---- 3. a private containerd ---------------------------------------------------------------
C=$WORK/containerd
mkdir -p "$C/root" "$C/state" "$C/runc" "$C/fifo"
cat >"$C/config.toml" <<EOF
version = 2
root = "$C/root"
state = "$C/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$C/containerd.sock"
[ttrpc]
  address = "$C/containerd.sock.ttrpc"
[debug]
  address = "$C/debug.sock"
EOF
containerd --config "$C/config.toml" >"$C/containerd.log" 2>&1 &
CTRD_PID=$!
for _ in $(seq 100); do
    [ -S "$C/containerd.sock" ] && ctr --address "$C/containerd.sock" version >/dev/null 2>&1 && break
    kill -0 "$CTRD_PID" 2>/dev/null || { cat "$C/containerd.log" >&2; fail "containerd exited"; }
    sleep 0.1
done
NS=podcap-images-test
ctr_() { ctr --address "$C/containerd.sock" --namespace "$NS" "$@" </dev/null; }

for ref in "${REFS[@]}"; do
    name=${ref##*/}; name=${name%%:*}
    ctr_ image import "$WORK/a/$name.tar" >&2
    ctr_ image ls -q | grep -qxF "$ref" || fail "$ref not in ctr image ls after import"
    digest=$(ctr_ image ls | awk -v r="$ref" '$1 == r {print $3}')
    [ "$digest" = "$(manifest_digest "$WORK/a/$name.tar")" ] || fail "$ref imported as $digest"
    ctr_ run --rm --runc-root "$C/runc" --fifo-dir "$C/fifo" "$ref" "$name-help" "/usr/local/bin/$name" --help \
        >"$WORK/$name.help" 2>&1 || { cat "$WORK/$name.help" >&2; fail "$name --help in its image"; }
    grep -qi usage "$WORK/$name.help" || { cat "$WORK/$name.help" >&2; fail "$name --help printed no usage"; }
    # The user a container of the image runs as, from the spec containerd generates.
    ctr_ container create "$ref" "$name-user" >/dev/null
    uid=$(ctr_ container info "$name-user" | tr -d ' \n' | grep -o '"user":{"uid":[0-9]*' | grep -o '[0-9]*$')
    ctr_ container rm "$name-user" >/dev/null
    case $name in capture-agent) want=0 ;; *) want=65532 ;; esac
    [ "$uid" = "$want" ] || fail "$name runs as uid $uid, not $want"
    say "$name: ctr import ($digest), ctr run --help ($(head -n1 "$WORK/$name.help")), uid $uid: OK"
done

# Each binary doing real work in its image: the agent opens an AF_PACKET ring as root (loopback
# of the container's own network namespace, one second); the API, as uid 65532, starts in
# standalone mode (SQLite store in /tmp) and listens until it is stopped with SIGTERM.
agent_ref=$(printf '%s\n' "${REFS[@]}" | grep '/capture-agent:')
ctr_ run --rm --runc-root "$C/runc" --fifo-dir "$C/fifo" "$agent_ref" agent-capture \
    /usr/local/bin/capture-agent capture -i lo -d 1s -w /tmp/lo.pcapng --json \
    >"$WORK/agent-capture.log" 2>&1 || { cat "$WORK/agent-capture.log" >&2; fail "capture-agent capture in its image"; }
say "capture-agent: capture on lo in its image: OK ($(grep '^{' "$WORK/agent-capture.log" | cut -c1-100)...)"

api_ref=$(printf '%s\n' "${REFS[@]}" | grep '/capture-api:')
ctr_ run --rm --runc-root "$C/runc" --fifo-dir "$C/fifo" "$api_ref" api-standalone \
    /usr/local/bin/capture-api --standalone --listen 127.0.0.1:8080 --data-dir /tmp/podcap \
    >"$WORK/api-standalone.log" 2>&1 &
run_pid=$!
for _ in $(seq 100); do
    grep -q 'listening' "$WORK/api-standalone.log" && break
    kill -0 "$run_pid" 2>/dev/null || break
    sleep 0.1
done
ctr_ task kill --signal SIGTERM api-standalone >/dev/null 2>&1 || true
wait "$run_pid" || true
grep -q 'listening' "$WORK/api-standalone.log" ||
    { cat "$WORK/api-standalone.log" >&2; fail "capture-api --standalone did not start in its image"; }
grep -q 'shutting down' "$WORK/api-standalone.log" ||
    { cat "$WORK/api-standalone.log" >&2; fail "capture-api did not shut down on SIGTERM"; }
say "capture-api: --standalone as uid 65532 in its image: listened, stopped on SIGTERM: OK"
ctr_ image ls >&2

kill "$CTRD_PID"; wait "$CTRD_PID" 2>/dev/null || true; CTRD_PID=
say "all checks passed"
