#!/usr/bin/env bash
# Build kube-apiserver and kube-controller-manager v1.20.2 from Debian bookworm's `kubernetes`
# source package with Debian's Go 1.19, and cache them together with Debian's etcd 3.4.
#
# Follows /work/shared/recipes/kube-apiserver.md (see README.md next to this script).
#
# Usage: build.sh            (run as root on a cache miss; a cache hit needs no privileges)
# Output: progress goes to stderr; the LAST line of stdout is the directory that holds
#         `kube-apiserver`, `kube-controller-manager` and `etcd`.
#
# Cache: ${XDG_CACHE_HOME:-$HOME/.cache}/podcap/kube-apiserver-<key>/, where <key> is a short hash
# of the Debian versions of every input that determines the result (see key_inputs below).
set -euo pipefail

# Bump when the build steps below change, so old cache entries are not reused.
RECIPE_REV=1
K8S_GIT_VERSION=v1.20.2
# Binary packages the build (or the result) depends on. golang-1.19-src is pulled in by
# golang-1.19-go; it is listed for the key and the install because it *is* the standard library.
PKGS=(golang-1.19-go golang-1.19-src golang-github-modern-go-reflect2-dev etcd-server)

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/podcap"
# Private apt state for the deb-src index. Kept in the cache (not the system's apt dirs) so the
# machine's apt configuration is never changed, and so a cache hit can compute the key offline.
APT_SRC_DIR="$CACHE_ROOT/apt-deb-src"
GO=/usr/lib/go-1.19/bin/go

log() { printf 'build.sh [+%ss]: %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# apt options that point apt at the private deb-src list and state instead of the system's.
apt_src_opts=(
  -o "Dir::Etc::sourcelist=$APT_SRC_DIR/etc/sources.list"
  -o "Dir::Etc::sourceparts=$APT_SRC_DIR/etc/sources.list.d"
  -o "Dir::State::Lists=$APT_SRC_DIR/lists"
  -o "Dir::Cache=$APT_SRC_DIR/cache"
  # apt drops privileges to _apt for downloads, and _apt cannot enter /root/.cache or our 0700
  # mktemp dir. Files are still verified against the signed index, so fetch as the caller.
  -o APT::Sandbox::User=root
)

# Write the private deb-src list by deriving it from the machine's own deb822 list, so no
# archive host name is ever written by us (the recipe's rule).
setup_apt_src() {
  local sys=/etc/apt/sources.list.d/debian.sources
  [[ -r $sys ]] || die "$sys not found; cannot derive a deb-src entry"
  mkdir -p "$APT_SRC_DIR/etc/sources.list.d" "$APT_SRC_DIR/lists/partial" "$APT_SRC_DIR/cache/archives/partial"
  : >"$APT_SRC_DIR/etc/sources.list"
  sed 's/^Types:.*$/Types: deb-src/' "$sys" >"$APT_SRC_DIR/etc/sources.list.d/debian-src.sources"
}

# Version of the kubernetes source package that `apt-get source` would fetch, read offline from
# the private deb-src index (`--print-uris` resolves exactly what a download would pick).
src_version() {
  [[ -d $APT_SRC_DIR/lists ]] || return 1
  # Lines are: 'URI' FILENAME SIZE HASH; the .dsc file name carries the version.
  apt-get "${apt_src_opts[@]}" source --print-uris kubernetes 2>/dev/null |
    awk '!found && $2 ~ /^kubernetes_.*\.dsc$/ { sub(/^kubernetes_/, "", $2); sub(/\.dsc$/, "", $2); print $2; found = 1 }'
}

# Candidate version apt would install for a binary package (after `apt-get install` the installed
# version equals it), from the system's package index.
candidate() {
  apt-cache policy "$1" 2>/dev/null | awk '!found && /Candidate:/ { print $2; found = 1 }'
}

# Everything that determines the build result, one "name=value" per line. Fails (non-zero)
# when a version is unknown, e.g. before the first `apt-get update`.
key_inputs() {
  local p v
  printf 'recipe-rev=%s\n' "$RECIPE_REV"
  printf 'arch=%s\n' "$(dpkg --print-architecture)"
  v=$(src_version) || return 1
  [[ -n $v ]] || return 1
  printf 'kubernetes-src=%s\n' "$v"
  for p in "${PKGS[@]}"; do
    v=$(candidate "$p")
    [[ -n $v && $v != "(none)" ]] || return 1
    printf '%s=%s\n' "$p" "$v"
  done
}

# A cache entry is only valid once the marker exists; it is written last, before the atomic
# rename, so an interrupted build never looks complete.
cache_hit() {
  local d=$1
  [[ -f $d/.complete && -x $d/kube-apiserver && -x $d/kube-controller-manager && -x $d/etcd ]]
}

# ---- fast path: no root, no network, no lock -------------------------------------------------
if inputs=$(key_inputs); then
  key=$(printf '%s\n' "$inputs" | sha256sum | cut -c1-12)
  out="$CACHE_ROOT/kube-apiserver-$key"
  if cache_hit "$out"; then
    log "cache hit ($out)"
    printf '%s\n' "$out"
    exit 0
  fi
fi

# ---- slow path ---------------------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "cache miss: run as root (needs apt-get install)"
mkdir -p "$CACHE_ROOT"
# Serialise concurrent builds (e.g. parallel test jobs); bounded so a stuck holder cannot hang us.
exec 9>"$CACHE_ROOT/.kube-apiserver-build.lock"
flock -w 1800 9 || die "timed out waiting for another build.sh to finish"

export DEBIAN_FRONTEND=noninteractive
setup_apt_src
# One update of the system index (binary packages) and one of the private deb-src index.
# PODCAP_APT_UPDATED=1 (set by .ci/run after its own update) skips a second system update.
if [[ ${PODCAP_APT_UPDATED:-} != 1 ]]; then
  log "apt-get update"
  apt-get -q update >&2
fi
apt-get -q "${apt_src_opts[@]}" update >&2

inputs=$(key_inputs) || die "cannot resolve package versions: $(key_inputs 2>&1 || true)"
key=$(printf '%s\n' "$inputs" | sha256sum | cut -c1-12)
out="$CACHE_ROOT/kube-apiserver-$key"
if cache_hit "$out"; then   # another process may have built it while we waited for the lock
  log "cache hit after update ($out)"
  printf '%s\n' "$out"
  exit 0
fi
log "cache miss; key $key from:"
# shellcheck disable=SC2001  # per-line indent; a parameter expansion would be less clear
sed 's/^/  /' <<<"$inputs" >&2

log "apt-get install ${PKGS[*]}"
apt-get -q install -y --no-install-recommends "${PKGS[@]}" >&2
[[ -x $GO ]] || die "$GO missing after install"
[[ -x /usr/bin/etcd ]] || die "/usr/bin/etcd missing after install"
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2
[[ -d $REFLECT2 ]] || die "$REFLECT2 missing after install"

# Private build dir, removed on any exit. Go writes read-only files into its caches, so make the
# tree writable before deleting it.
work=$(mktemp -d "${TMPDIR:-/tmp}/podcap-kube-build.XXXXXX")
staging="$out.tmp.$$"
cleanup() {
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work" "$staging"
}
trap cleanup EXIT

start=$(date +%s)
log "downloading the kubernetes source package into $work/src"
mkdir -p "$work/src"
(cd "$work/src" && apt-get -q "${apt_src_opts[@]}" source --download-only kubernetes >&2)
orig=$(ls "$work"/src/kubernetes_*.orig.tar.gz)
[[ -f $orig ]] || die "orig tarball not found"

# Trap 2 (module mode fails with -mod=vendor): build in GOPATH mode. Unpacking straight into
# $GOPATH/src/k8s.io/kubernetes is equivalent to the recipe's symlink.
export GOPATH="$work/gopath"
export GOCACHE="$work/gocache"
export GO111MODULE=off CGO_ENABLED=0 GOPROXY=off GOFLAGS='' GOTOOLCHAIN=local
unset GOROOT GOBIN
tree="$GOPATH/src/k8s.io/kubernetes"
mkdir -p "$tree"
log "unpacking $(basename "$orig")"
tar -xzf "$orig" -C "$tree" --strip-components=1
cd "$tree"

# Trap 1: vendored reflect2 1.0.1 faults under Go >= 1.18 on the first custom-resource write.
# Use Debian's fixed copy; drop its go.mod (meaningless, and confusing, inside vendor/).
rm -rf vendor/github.com/modern-go/reflect2
cp -r "$REFLECT2" vendor/github.com/modern-go/reflect2
rm -f vendor/github.com/modern-go/reflect2/go.mod

# Trap 3: the tarball lacks pkg/generated/openapi/zz_generated.openapi.go. Regenerate it the
# way build/root/Makefile.generated_files does: every dir with a `+k8s:openapi-gen=` tag (in a
# file that carries a column-0 `// +k8s:` tag), staging/src mapped to vendor/, minus
# code-generator and sample-apiserver, whose openapi goes to their own packages.
log "building openapi-gen"
"$GO" build -o "$work/bin/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
# (grep -l exits 1 for an xargs batch without a match; `|| true` keeps pipefail from tripping.)
dirs=$(find . \( -path ./vendor -o -path './_*' -o -path './.*' \) -prune -o -type f -name '*.go' -print0 |
  xargs -0 sh -c 'grep -lZ "^// *+k8s:" "$@" || true' sh |
  xargs -0 sh -c 'grep -l "+k8s:openapi-gen=" "$@" || true' sh | xargs -n1 dirname |
  sed 's#^\./##; s#^staging/src/#vendor/#' |
  grep -v -E '^vendor/k8s.io/(code-generator|sample-apiserver)/' | LC_ALL=C sort -u |
  sed 's#^#k8s.io/kubernetes/#' | paste -sd, -)
[[ -n $dirs ]] || die "no +k8s:openapi-gen packages found"
log "generating pkg/generated/openapi ($(tr , '\n' <<<"$dirs" | wc -l) packages)"
"$work/bin/openapi-gen" \
  -i "$dirs" \
  -p k8s.io/kubernetes/pkg/generated/openapi \
  -O zz_generated.openapi \
  -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
  -r /dev/null >&2
[[ -f pkg/generated/openapi/zz_generated.openapi.go ]] || die "openapi-gen produced no output"

# Version variables as hack/lib/version.sh sets them. In GOPATH mode the vendored packages'
# import paths carry the k8s.io/kubernetes/vendor/ prefix, so -X must use that path or the
# binaries report v0.0.0-master. The tarball came from `git archive`, which expanded the commit.
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

log "go build kube-apiserver kube-controller-manager (takes minutes)"
mkdir -p "$staging"
"$GO" build -tags selinux,notest -ldflags "$ldflags" -o "$staging/" \
  ./cmd/kube-apiserver ./cmd/kube-controller-manager
# etcd is copied, not symlinked, so the cache entry stays usable even if etcd-server is
# upgraded or removed later (its version is part of the key anyway).
cp /usr/bin/etcd "$staging/etcd"
"$staging/kube-apiserver" --version >&2

end=$(date +%s)
{
  printf '%s\n' "$inputs"
  printf 'built=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf 'build-seconds=%s\n' "$((end - start))"
} >"$staging/build-info.txt"
touch "$staging/.complete"
rm -rf "$out"          # a stale, incomplete entry under the same key
mv "$staging" "$out"
log "built in $((end - start)) s"
printf '%s\n' "$out"
