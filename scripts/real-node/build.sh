#!/usr/bin/env bash
# Build everything a real single-node cluster needs (see README.md next to this script and
# /work/shared/recipes/real-node.md), cache it, and print where it is.
#
#   - kube-apiserver, kube-controller-manager, etcd: scripts/kube-apiserver/build.sh (its cache)
#   - kubectl v1.20.2: scripts/kube-apiserver/kubectl.sh (its cache)
#   - kubelet, kube-scheduler, kube-proxy v1.20.2 from Debian's `kubernetes` source package, built
#     the way scripts/kube-apiserver/build.sh builds the apiserver, with the recipe's kubelet
#     patch (no host-wide sysctls) and the upstream v1.20.3 fix for slow pod deletion; and the
#     static `pause` binary from the same source
#   - OCI image tarballs: the pause (sandbox) image and the busybox-based test-pod image
#   - the Debian packages the node runs: containerd, runc, containernetworking-plugins,
#     iptables, conntrack (installed idempotently; also busybox-static, gcc, libc6-dev for images)
#
# Usage: build.sh            (root on a cache miss or when a package is missing; a warm cache
#                             with every package installed needs no privileges and no network)
# Output: progress on stderr; stdout is shell-sourceable KEY=value lines:
#   KUBE_BIN_DIR  kube-apiserver, kube-controller-manager, etcd
#   NODE_BIN_DIR  kubelet, kube-scheduler, kube-proxy, pause
#   KUBECTL       kubectl v1.20.2
#   IMAGES_DIR    pause.tar, test-pod.tar
#   PAUSE_IMAGE, PAUSE_IMAGE_TAR, TEST_IMAGE, TEST_IMAGE_TAR
#
# Cache: ${XDG_CACHE_HOME:-$HOME/.cache}/podcap/
#   real-node-bin-<key>/     key: recipe rev, arch, kubernetes source version, Go, reflect2,
#                            gcc and libc6-dev versions (a Go rebuild takes minutes)
#   real-node-images-<key>/  key: the bin key, busybox-static, gcc, libc6-dev versions and the
#                            SHA-256 of this script and pnet.c (an image rebuild takes seconds)
# An entry counts only once its `.complete` marker exists (written last, then renamed into place).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
apiserver_dir=$(cd "$here/../kube-apiserver" && pwd)

# Bump when the kubelet/scheduler/proxy/pause build steps below change.
RECIPE_REV=2
K8S_GIT_VERSION=v1.20.2
# Image references (stable: start.sh, DIR/env and tests use them).
PAUSE_IMAGE=podcap.local/pause:$K8S_GIT_VERSION
TEST_IMAGE=podcap.local/test-pod:1

GO_PKGS=(golang-1.19-go golang-1.19-src golang-github-modern-go-reflect2-dev)
C_PKGS=(gcc libc6-dev)                  # the static pause and pnet binaries
IMAGE_PKGS=(busybox-static)
RUNTIME_PKGS=(containerd runc containernetworking-plugins iptables conntrack)
ALL_PKGS=("${GO_PKGS[@]}" "${C_PKGS[@]}" "${IMAGE_PKGS[@]}" "${RUNTIME_PKGS[@]}")

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/podcap"
# The private deb-src index scripts/kube-apiserver/build.sh keeps (same directory, same layout),
# so both builds agree on the source version without a second copy.
APT_SRC_DIR="$CACHE_ROOT/apt-deb-src"
GO=/usr/lib/go-1.19/bin/go

log() { printf 'real-node/build.sh [+%ss]: %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }

apt_src_opts=(
  -o "Dir::Etc::sourcelist=$APT_SRC_DIR/etc/sources.list"
  -o "Dir::Etc::sourceparts=$APT_SRC_DIR/etc/sources.list.d"
  -o "Dir::State::Lists=$APT_SRC_DIR/lists"
  -o "Dir::Cache=$APT_SRC_DIR/cache"
  -o APT::Sandbox::User=root
)

# Same derivation as scripts/kube-apiserver/build.sh: deb-src from the machine's own list.
setup_apt_src() {
  local sys=/etc/apt/sources.list.d/debian.sources
  [[ -r $sys ]] || die "$sys not found; cannot derive a deb-src entry"
  mkdir -p "$APT_SRC_DIR/etc/sources.list.d" "$APT_SRC_DIR/lists/partial" "$APT_SRC_DIR/cache/archives/partial"
  : >"$APT_SRC_DIR/etc/sources.list"
  sed 's/^Types:.*$/Types: deb-src/' "$sys" >"$APT_SRC_DIR/etc/sources.list.d/debian-src.sources"
}

src_version() {
  [[ -d $APT_SRC_DIR/lists ]] || return 1
  apt-get "${apt_src_opts[@]}" source --print-uris kubernetes 2>/dev/null |
    awk '!found && $2 ~ /^kubernetes_.*\.dsc$/ { sub(/^kubernetes_/, "", $2); sub(/\.dsc$/, "", $2); print $2; found = 1 }'
}

# Candidate versions apt would install (after `apt-get install` = the installed ones), read with
# one `apt-cache policy` call for all packages (each call costs most of a second).
declare -A CANDIDATE=()
load_candidates() {
  local name ver
  CANDIDATE=()
  while read -r name ver; do CANDIDATE[$name]=$ver; done < <(
    apt-cache policy "${GO_PKGS[@]}" "${C_PKGS[@]}" "${IMAGE_PKGS[@]}" 2>/dev/null |
      awk '/^[^ ].*:$/ { pkg = substr($0, 1, length($0) - 1) } $1 == "Candidate:" { print pkg, $2 }')
}

pkg_line() {
  local v=${CANDIDATE[$1]:-}
  [[ -n $v && $v != "(none)" ]] || return 1
  printf '%s=%s\n' "$1" "$v"
}

bin_key_inputs() {
  local p v
  printf 'recipe-rev=%s\n' "$RECIPE_REV"
  printf 'arch=%s\n' "$(dpkg --print-architecture)"
  v=$(src_version) || return 1
  [[ -n $v ]] || return 1
  printf 'kubernetes-src=%s\n' "$v"
  for p in "${GO_PKGS[@]}" "${C_PKGS[@]}"; do pkg_line "$p" || return 1; done
}

images_key_inputs() {  # $1 = the bin key (the pause binary comes from that entry)
  local p
  printf 'bin-key=%s\n' "$1"
  for p in "${IMAGE_PKGS[@]}" "${C_PKGS[@]}"; do pkg_line "$p" || return 1; done
  printf 'build.sh=%s\n' "$(sha256sum "$here/build.sh" | cut -c1-64)"
  printf 'pnet.c=%s\n' "$(sha256sum "$here/pnet.c" | cut -c1-64)"
}

hash12() { sha256sum | cut -c1-12; }

bin_hit() {
  local d=$1 b
  [[ -f $d/.complete ]] || return 1
  for b in kubelet kube-scheduler kube-proxy pause; do [[ -x $d/$b ]] || return 1; done
}
images_hit() { [[ -f $1/.complete && -f $1/pause.tar && -f $1/test-pod.tar ]]; }

# Packages not installed (dpkg's view; works offline).
missing_pkgs() {
  local p
  for p in "${ALL_PKGS[@]}"; do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || printf '%s\n' "$p"
  done
}

resolve_keys() {
  load_candidates
  bin_inputs=$(bin_key_inputs) || return 1
  bin_key=$(hash12 <<<"$bin_inputs")
  bin_out="$CACHE_ROOT/real-node-bin-$bin_key"
  images_inputs=$(images_key_inputs "$bin_key") || return 1
  images_key=$(hash12 <<<"$images_inputs")
  images_out="$CACHE_ROOT/real-node-images-$images_key"
}

print_result() {
  local kube_bin kubectl
  kube_bin=$("$apiserver_dir/build.sh" | tail -n1)
  kubectl=$("$apiserver_dir/kubectl.sh" | tail -n1)
  [[ -x $kube_bin/kube-apiserver && -x $kubectl ]] || die "apiserver build or kubectl missing"
  cat <<EOF
KUBE_BIN_DIR=$kube_bin
NODE_BIN_DIR=$bin_out
KUBECTL=$kubectl
IMAGES_DIR=$images_out
PAUSE_IMAGE=$PAUSE_IMAGE
PAUSE_IMAGE_TAR=$images_out/pause.tar
TEST_IMAGE=$TEST_IMAGE
TEST_IMAGE_TAR=$images_out/test-pod.tar
EOF
}

# ---- fast path: no root, no network, no lock -------------------------------------------------
if resolve_keys 2>/dev/null && bin_hit "$bin_out" && images_hit "$images_out" && [[ -z $(missing_pkgs) ]]; then
  log "cache hit ($bin_out, $images_out)"
  print_result
  exit 0
fi

# ---- slow path ---------------------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "cache miss or missing packages: run as root"
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.real-node-build.lock"
flock -w 1800 9 || die "timed out waiting for another real-node/build.sh to finish"

export DEBIAN_FRONTEND=noninteractive
if [[ ${PODCAP_APT_UPDATED:-} != 1 ]]; then
  log "apt-get update"
  apt-get -q update >&2
  export PODCAP_APT_UPDATED=1   # scripts/kube-apiserver/build.sh then skips its own
fi
setup_apt_src
apt-get -q "${apt_src_opts[@]}" update >&2

missing=$(missing_pkgs | paste -sd' ' -)
if [[ -n $missing ]]; then
  log "apt-get install $missing"
  # shellcheck disable=SC2086  # word splitting of the package list is intended
  apt-get -q install -y --no-install-recommends $missing >&2
fi
[[ -z $(missing_pkgs) ]] || die "packages still missing after install: $(missing_pkgs | paste -sd' ' -)"

# The apiserver build first (its own cache and lock); it prints its dir, which print_result
# asks for again (a cache hit then).
log "scripts/kube-apiserver/build.sh"
"$apiserver_dir/build.sh" >/dev/null
"$apiserver_dir/kubectl.sh" >/dev/null

resolve_keys || die "cannot resolve package versions"

work=$(mktemp -d "${TMPDIR:-/tmp}/podcap-real-node-build.XXXXXX")
staging_bin="$bin_out.tmp.$$"
staging_images="$images_out.tmp.$$"
cleanup() {
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work" "$staging_bin" "$staging_images"
}
trap cleanup EXIT

# ---- kubelet, kube-scheduler, kube-proxy, pause ------------------------------------------------
build_bin() {
  local start end orig tree commit major minor ldflags pkg pause_ver f
  log "cache miss for node binaries; key $bin_key from:"
  # shellcheck disable=SC2001  # per-line indent
  sed 's/^/  /' <<<"$bin_inputs" >&2
  start=$(date +%s)
  mkdir -p "$work/src"
  log "downloading the kubernetes source package"
  (cd "$work/src" && apt-get -q "${apt_src_opts[@]}" source --download-only kubernetes >&2)
  orig=$(ls "$work"/src/kubernetes_*.orig.tar.gz)
  [[ -f $orig ]] || die "orig tarball not found"

  # GOPATH mode, as in scripts/kube-apiserver/build.sh (module mode fails with -mod=vendor).
  export GOPATH="$work/gopath" GOCACHE="$work/gocache"
  export GO111MODULE=off CGO_ENABLED=0 GOPROXY=off GOFLAGS='' GOTOOLCHAIN=local
  unset GOROOT GOBIN
  tree="$GOPATH/src/k8s.io/kubernetes"
  mkdir -p "$tree"
  log "unpacking $(basename "$orig")"
  tar -xzf "$orig" -C "$tree" --strip-components=1
  cd "$tree"

  # Debian's reflect2 in place of the vendored 1.0.1 (faults under Go >= 1.18).
  rm -rf vendor/github.com/modern-go/reflect2
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
  rm -f vendor/github.com/modern-go/reflect2/go.mod

  # The recipe's one kubelet patch: warn about, never rewrite, host-wide kernel sysctls
  # (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops are not per-namespace).
  f=pkg/kubelet/cm/container_manager_linux.go
  [[ $(grep -c 'b := KernelTunableModify' "$f") -eq 1 ]] || die "kubelet patch: expected line not found in $f"
  sed -i 's/b := KernelTunableModify/b := KernelTunableWarn/' "$f"
  grep -q 'b := KernelTunableWarn' "$f" || die "kubelet patch did not apply"

  # Second kubelet patch: the v1.20.3 fix of the 1.20 regression "pods failing to terminate"
  # (kubernetes#97288; release-1.20 cherry-pick #97998 reverted #92817). v1.20.0-2 keep a deleted
  # pod in the API until its sandbox is removed, which only the once-a-minute container GC does,
  # so every pod deletion took 5-60 s (measured here: 45-53 s in half the rounds). Removing the
  # check it added to PodResourcesAreReclaimed restores 1.20.3+ behaviour (a few seconds).
  f=pkg/kubelet/kubelet_pods.go
  perl -0pi -e '$n += s/\t\/\/ pod.s sandboxes should be deleted\n\tif len\(runtimeStatus\.SandboxStatuses\) > 0 \{\n.*?\n\t\treturn false\n\t\}\n//s; END { exit($n == 1 ? 0 : 3) }' "$f" ||
    die "kubelet patch 2: the sandbox check in $f not found exactly once"

  commit=$(sed -n "s/^ *KUBE_GIT_COMMIT='\([0-9a-f]\{40\}\)'.*/\1/p" hack/lib/version.sh | head -n1)
  major=${K8S_GIT_VERSION#v}; major=${major%%.*}
  minor=${K8S_GIT_VERSION#v*.}; minor=${minor%%.*}
  ldflags="-s -w"
  for pkg in k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version \
             k8s.io/kubernetes/vendor/k8s.io/component-base/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_GIT_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitCommit=${commit:-unknown} -X $pkg.gitTreeState=archive"
    ldflags+=" -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done

  mkdir -p "$staging_bin"
  log "go build kubelet kube-scheduler kube-proxy (takes minutes)"
  nice -n 10 "$GO" build -p 2 -tags selinux,notest -ldflags "$ldflags" -o "$staging_bin/" \
    ./cmd/kubelet ./cmd/kube-scheduler ./cmd/kube-proxy

  # The sandbox binary from the same source, static (the pause image holds only this file).
  pause_ver=$(sed -n 's/^TAG[[:space:]]*?*=[[:space:]]*\([^[:space:]]*\).*/\1/p' build/pause/Makefile | head -n1)
  log "gcc -static pause.c (pause ${pause_ver:-unknown})"
  gcc -Os -Wall -Werror -static -DVERSION="v${pause_ver:-unknown}-podcap" \
    -o "$staging_bin/pause" build/pause/linux/pause.c
  strip "$staging_bin/pause"
  cd /

  "$staging_bin/kubelet" --version >&2
  end=$(date +%s)
  {
    printf '%s\n' "$bin_inputs"
    printf 'pause-version=%s\n' "${pause_ver:-unknown}"
    printf 'built=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf 'build-seconds=%s\n' "$((end - start))"
  } >"$staging_bin/build-info.txt"
  touch "$staging_bin/.complete"
  rm -rf "$bin_out"
  mv "$staging_bin" "$bin_out"
  log "node binaries built in $((end - start)) s"
}

# ---- OCI images --------------------------------------------------------------------------------
# Deterministic tar of a directory's contents: same input tree -> same bytes (and digests).
det_tar() {  # SRC_DIR OUT_TAR
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$1" -cf "$2" .
}

# Store a file as a blob; prints its "sha256:<hex> <size>".
blob() {  # LAYOUT FILE
  local d s
  d=$(sha256sum "$2" | cut -c1-64)
  s=$(stat -c %s "$2")
  mkdir -p "$1/blobs/sha256"
  cp "$2" "$1/blobs/sha256/$d"
  printf 'sha256:%s %s\n' "$d" "$s"
}

# One-layer OCI image archive (oci-layout, index.json, blobs): imports with
# `ctr -n k8s.io image import`, and skopeo reads it as oci-archive:.
oci_image() {  # ROOTFS REF CONFIG_EXTRA_JSON OUT_TAR
  local rootfs=$1 ref=$2 extra=$3 out=$4 t layout layer cfg man
  t=$(mktemp -d "$work/oci.XXXXXX")
  layout="$t/layout"
  mkdir -p "$layout"
  det_tar "$rootfs" "$t/layer.tar"
  read -r layer layer_size < <(blob "$layout" "$t/layer.tar")
  # No timestamps anywhere: rebuilding from the same inputs gives the same digests.
  printf '{"architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
    "$(dpkg --print-architecture)" "$extra" "$layer" >"$t/config.json"
  read -r cfg cfg_size < <(blob "$layout" "$t/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
    "$cfg" "$cfg_size" "$layer" "$layer_size" >"$t/manifest.json"
  read -r man man_size < <(blob "$layout" "$t/manifest.json")
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$man" "$man_size" "$ref" "${ref##*:}" >"$layout/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  det_tar "$layout" "$out"
  log "image $ref: $(basename "$out") ($(stat -c %s "$out") bytes, manifest $man)"
}

build_images() {
  local root applet n
  log "cache miss for images; key $images_key from:"
  # shellcheck disable=SC2001  # per-line indent
  sed 's/^/  /' <<<"$images_inputs" >&2
  mkdir -p "$staging_images"

  # pause: the one static binary.
  root="$work/pause-root"
  mkdir -p "$root"
  install -m 0755 "$bin_out/pause" "$root/pause"
  oci_image "$root" "$PAUSE_IMAGE" '{"Entrypoint":["/pause"],"Labels":{"org.opencontainers.image.source":"podcap scripts/real-node"}}' \
    "$staging_images/pause.tar"

  # test pod: busybox-static, one symlink per applet, pnet, minimal passwd/group.
  root="$work/test-root"
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root"
  chmod 1777 "$root/tmp"
  chmod 0700 "$root/root"
  install -m 0755 /bin/busybox "$root/bin/busybox"
  n=0
  while read -r applet; do
    [[ -n $applet && $applet != bin/busybox ]] || continue
    mkdir -p "$root/$(dirname "$applet")"
    [[ -e $root/$applet ]] || { ln -s /bin/busybox "$root/$applet"; n=$((n + 1)); }
  done < <("$root/bin/busybox" --list-full)
  gcc -Os -Wall -Wextra -Werror -static -o "$root/bin/pnet" "$here/pnet.c"
  strip "$root/bin/pnet"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  log "test image: busybox $(/bin/busybox | head -n1 | awk '{print $2}') with $n applet links, pnet"
  # Default command: wait for SIGTERM and exit at once (pods then stop without the grace period).
  oci_image "$root" "$TEST_IMAGE" '{"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh","-c","trap \"exit 0\" TERM INT; while :; do sleep 1; done"],"Labels":{"org.opencontainers.image.source":"podcap scripts/real-node"}}' \
    "$staging_images/test-pod.tar"

  {
    printf '%s\n' "$images_inputs"
    printf 'pause-image=%s\ntest-image=%s\n' "$PAUSE_IMAGE" "$TEST_IMAGE"
    printf 'built=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >"$staging_images/build-info.txt"
  touch "$staging_images/.complete"
  rm -rf "$images_out"
  mv "$staging_images" "$images_out"
}

if bin_hit "$bin_out"; then log "node binaries: cache hit ($bin_out)"; else build_bin; fi
if images_hit "$images_out"; then log "images: cache hit ($images_out)"; else build_images; fi
log "done"
print_result
