#!/usr/bin/env bash
# Builds podcap's two container images as OCI image layout tarballs, without a container engine:
#
#   deploy/images/build.sh OUT_DIR
#
# writes OUT_DIR/capture-agent.tar and OUT_DIR/capture-api.tar and prints their image references,
# one a line (nothing else goes to stdout). Each image is one layer: the stripped release binary
# at /usr/local/bin, exactly the shared libraries `ldd` lists for it (with the loader), /etc/passwd,
# /etc/group, /etc/nsswitch.conf, /etc/services (the host's, from netbase: port names in
# bpfFilter expressions) and an empty /tmp. No shell, no package manager, no CA bundle:
# in a cluster the Kubernetes client trusts the service account's ca.crt, nothing else.
#
#   capture-agent  runs as root (uid 0): the DaemonSet grants it NET_RAW and NET_ADMIN only
#   capture-api    runs as podcap (uid/gid 65532), as the Deployment's securityContext says
#
# The same commit, toolchain and checkout path give byte-identical tarballs: file times are
# SOURCE_DATE_EPOCH (default: the commit time of HEAD), tar entries are sorted with owner 0:0 and
# fixed modes, gzip stores no name or time, the JSON is written here byte for byte.
#
# Needs: bash, cargo, coreutils (sha256sum, stat), GNU tar, gzip, binutils (strip), ldd, git,
# /etc/services (netbase).
#
# Environment (all optional):
#   IMAGE_REPO          repository prefix of the references (default ghcr.io/podcap, as deploy/ has it)
#   IMAGE_TAG           tag (default: the workspace version from Cargo)
#   SOURCE_URL          org.opencontainers.image.source (default https://github.com/podcap/podcap)
#   SOURCE_DATE_EPOCH   file times and `created` (default: commit time of HEAD)
#   CARGO_TARGET_DIR    where cargo puts the release binaries (default ./target)
#   JOBS                cargo -j (default 2)
#   SKIP_BUILD=1        package the release binaries already built, do not run cargo
set -euo pipefail
export LC_ALL=C

usage() { echo "usage: $0 OUT_DIR" >&2; exit 2; }
[ $# -eq 1 ] || usage
log() { echo "build.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in cargo git tar gzip sha256sum strip ldd stat; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[ -r /etc/services ] || die "/etc/services not found (Debian: apt-get install netbase)"

mkdir -p "$1"
OUT=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac

# ---- what the labels say -------------------------------------------------------------------
# `cargo pkgid` prints e.g. path+file:///src/capture-agent#0.1.0 (or ...#name@0.1.0).
VERSION=$(cargo pkgid -p capture-agent 2>/dev/null) || die "cargo pkgid -p capture-agent failed"
VERSION=${VERSION##*[#@]}
[ -n "$VERSION" ] || die "no workspace version"
TAG=${IMAGE_TAG:-$VERSION}
REPO=${IMAGE_REPO:-ghcr.io/podcap}
REPO=${REPO%/}
# The source label is a placeholder of the release layout, like ghcr.io/podcap in deploy/.
SOURCE=${SOURCE_URL:-https://github.com/podcap/podcap}
REVISION=$(git rev-parse HEAD)
# Uncommitted changes to tracked files may be in the binaries: say so in the label.
if ! git diff --quiet HEAD --; then
    REVISION=$REVISION-dirty
    log "warning: the work tree has uncommitted changes; revision label $REVISION"
fi
EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct HEAD)}
case $EPOCH in ''|*[!0-9]*) die "SOURCE_DATE_EPOCH is not a number: $EPOCH" ;; esac
CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)
LICENSE=$(sed -n 's/^license = "\(.*\)"$/\1/p' Cargo.toml | head -n1)

HOST=$(rustc -vV | sed -n 's/^host: //p')
case $HOST in
    x86_64-*-linux-*) ARCH=amd64 ;;
    aarch64-*-linux-*) ARCH=arm64 ;;
    *) die "no OCI architecture known for host $HOST" ;;
esac

# ---- the binaries --------------------------------------------------------------------------
if [ "${SKIP_BUILD:-}" != 1 ]; then
    log "cargo build --release -p capture-agent -p capture-api"
    cargo build --release --locked -j "${JOBS:-2}" -p capture-agent -p capture-api >&2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/podcap-images.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---- small helpers -------------------------------------------------------------------------
json_str() {
    local s=$1
    s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\t'/\\t}; s=${s//$'\r'/\\r}
    printf '"%s"' "$s"
}
sha256() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
# Deterministic tar of the named entries of directory $1 (a list, one a line, in that order) to $3.
det_tar() {
    tar --create --format=gnu --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" \
        --no-recursion --file="$3" --directory="$1" --files-from="$2"
}
# Every entry under $1 (files and directories), parents before children, byte order.
entries() { (cd "$1" && find . -mindepth 1 -printf '%P\n' | sort); }
# The description field of crate $1's Cargo.toml.
crate_description() { sed -n 's/^description = "\(.*\)"$/\1/p' "$1/Cargo.toml" | head -n1; }

# Copies what the dynamic loader needs for $1 into rootfs $2: each library `ldd` resolves and
# the loader itself, at the paths ldd names, as plain files. A static binary needs nothing.
copy_libraries() {
    local bin=$1 rootfs=$2 out line path
    out=$(ldd "$bin" 2>&1) || {
        case $out in *"not a dynamic executable"*|*"statically linked"*) return 0 ;; esac
        die "ldd $bin: $out"
    }
    case $out in *"statically linked"*) return 0 ;; esac
    while IFS= read -r line; do
        line=${line#"${line%%[![:space:]]*}"}
        case $line in
            *"not found"*) die "ldd $bin: $line" ;;
            *" => /"*) path=${line#* => }; path=${path%% *} ;;
            /*) path=${line%% *} ;;
            *) continue ;;     # linux-vdso.so.1: provided by the kernel
        esac
        mkdir -p "$rootfs$(dirname "$path")"
        cp -L "$path" "$rootfs$path"
        chmod 0755 "$rootfs$path"
        log "  $(basename "$bin"): $path"
    done <<<"$out"
}

# build_image NAME UID GID USERNAME
build_image() {
    local name=$1 uid=$2 gid=$3 user=$4
    local dir=$WORK/$name rootfs=$WORK/$name/rootfs layout=$WORK/$name/layout
    local ref=$REPO/$name:$TAG title=$name description
    description=$(crate_description "$name")
    mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/tmp" "$layout/blobs/sha256"

    local src=$TARGET_DIR/release/$name
    [ -x "$src" ] || die "$src not built"
    strip --strip-all -o "$rootfs/usr/local/bin/$name" "$src"
    chmod 0755 "$rootfs/usr/local/bin/$name"
    copy_libraries "$rootfs/usr/local/bin/$name" "$rootfs"

    {
        echo "root:x:0:0:root:/root:/sbin/nologin"
        [ "$uid" = 0 ] || echo "$user:x:$uid:$gid:$user:/nonexistent:/sbin/nologin"
    } >"$rootfs/etc/passwd"
    {
        echo "root:x:0:"
        [ "$gid" = 0 ] || echo "$user:x:$gid:"
    } >"$rootfs/etc/group"
    # glibc >= 2.34 has files and dns built in; this only pins the order.
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
    # Port names in bpfFilter expressions (`tcp port https`) are looked up here when libpcap
    # compiles them, in the API and in every agent.
    cp /etc/services "$rootfs/etc/services"

    find "$rootfs" -type d -exec chmod 0755 {} +
    chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/nsswitch.conf" "$rootfs/etc/services"
    chmod 1777 "$rootfs/tmp"

    # Layer: uncompressed tar (its digest is the config's diff_id), then gzip without name/time.
    entries "$rootfs" >"$dir/layer.list"
    det_tar "$rootfs" "$dir/layer.list" "$dir/layer.tar"
    local diff_id layer layer_size
    diff_id=$(sha256 "$dir/layer.tar")
    gzip -n -9 <"$dir/layer.tar" >"$dir/layer.tar.gz"
    layer=$(sha256 "$dir/layer.tar.gz")
    layer_size=$(size "$dir/layer.tar.gz")
    mv "$dir/layer.tar.gz" "$layout/blobs/sha256/$layer"

    # Labels (config) and annotations (manifest), in key order.
    local labels
    labels=$(printf '%s:%s,%s:%s,%s:%s,%s:%s,%s:%s,%s:%s,%s:%s' \
        '"org.opencontainers.image.created"' "$(json_str "$CREATED")" \
        '"org.opencontainers.image.description"' "$(json_str "$description")" \
        '"org.opencontainers.image.licenses"' "$(json_str "$LICENSE")" \
        '"org.opencontainers.image.revision"' "$(json_str "$REVISION")" \
        '"org.opencontainers.image.source"' "$(json_str "$SOURCE")" \
        '"org.opencontainers.image.title"' "$(json_str "$title")" \
        '"org.opencontainers.image.version"' "$(json_str "$VERSION")")

    local config=$dir/config.json
    printf '{"architecture":"%s","config":{"Entrypoint":[%s],"Env":["PATH=/usr/local/bin"],"Labels":{%s},"User":"%s","WorkingDir":"/"},"created":"%s","history":[{"created":"%s","created_by":"deploy/images/build.sh"}],"os":"linux","rootfs":{"diff_ids":["sha256:%s"],"type":"layers"}}' \
        "$ARCH" "$(json_str "/usr/local/bin/$name")" "$labels" "$uid:$gid" "$CREATED" "$CREATED" \
        "$diff_id" >"$config"
    local config_digest config_size
    config_digest=$(sha256 "$config")
    config_size=$(size "$config")
    mv "$config" "$layout/blobs/sha256/$config_digest"

    local manifest=$dir/manifest.json
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}],"annotations":{%s}}' \
        "$config_digest" "$config_size" "$layer" "$layer_size" "$labels" >"$manifest"
    local manifest_digest manifest_size
    manifest_digest=$(sha256 "$manifest")
    manifest_size=$(size "$manifest")
    mv "$manifest" "$layout/blobs/sha256/$manifest_digest"

    printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":%s,"org.opencontainers.image.ref.name":%s},"platform":{"architecture":"%s","os":"linux"}}]}' \
        "$manifest_digest" "$manifest_size" "$(json_str "$ref")" "$(json_str "$TAG")" "$ARCH" \
        >"$layout/index.json"

    # For `docker load` of engines without the containerd image store, which read the
    # `docker save` manifest.json instead of index.json; it names the same blobs.
    printf '[{"Config":"blobs/sha256/%s","RepoTags":[%s],"Layers":["blobs/sha256/%s"]}]' \
        "$config_digest" "$(json_str "$ref")" "$layer" >"$layout/manifest.json"

    find "$layout" -type d -exec chmod 0755 {} +
    find "$layout" -type f -exec chmod 0644 {} +
    entries "$layout" >"$dir/layout.list"
    det_tar "$layout" "$dir/layout.list" "$dir/$name.tar"
    mv "$dir/$name.tar" "$OUT/$name.tar"

    log "$ref: $OUT/$name.tar, $(size "$OUT/$name.tar") bytes (layer $layer_size gzipped," \
        "$(size "$dir/layer.tar") unpacked), manifest sha256:$manifest_digest"
    echo "$ref"
}

build_image capture-agent 0 0 root
build_image capture-api 65532 65532 podcap
