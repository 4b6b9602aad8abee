#!/usr/bin/env bash
# Ensure a Debian kubectl (package `kubernetes-client`, v1.20.2, the same release as the test
# kube-apiserver) in the cache, and print its path as the LAST line of stdout.
#
# Why not /usr/bin/kubectl: on these machines it belongs to the Google Cloud SDK package `kubectl`
# (a v1.32 dispatcher), far outside the supported client skew for a 1.20 server, and installing
# `kubernetes-client` system-wide would hit a dpkg file conflict with it. So the .deb is unpacked
# into the cache with `dpkg -x` instead; the system is not changed.
#
# Usage: kubectl.sh                      (cache miss: needs the apt package index; root only if
#                                         the index must first be updated)
#        kubectl=$(scripts/kube-apiserver/kubectl.sh | tail -n1)
# Cache: ${XDG_CACHE_HOME:-$HOME/.cache}/podcap/kubernetes-client-<debian version>/usr/bin/kubectl,
#        valid once `.complete` exists (written last, then the staging dir is renamed into place).
set -euo pipefail

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/podcap"
PACKAGE=kubernetes-client

log() { printf 'kubectl.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

candidate() {
  apt-cache policy "$PACKAGE" 2>/dev/null | awk '!found && /Candidate:/ { print $2; found = 1 }'
}

# Fast path: any complete cache entry for the current candidate (or, offline, the newest one).
version=$(candidate || true)
if [[ -z $version || $version == "(none)" ]]; then
  cached=$(ls -d "$CACHE_ROOT/$PACKAGE"-*/.complete 2>/dev/null | sort -V | tail -n1 || true)
  if [[ -n $cached ]]; then
    echo "$(dirname "$cached")/usr/bin/kubectl"
    exit 0
  fi
  [[ $(id -u) -eq 0 ]] || die "no $PACKAGE candidate in the apt index; run as root (apt-get update) once"
  log "no $PACKAGE candidate; updating the apt index"
  apt-get update -qq >&2
  version=$(candidate)
  [[ -n $version && $version != "(none)" ]] || die "apt knows no $PACKAGE package"
fi
entry="$CACHE_ROOT/$PACKAGE-$version"
if [[ -f $entry/.complete ]]; then
  echo "$entry/usr/bin/kubectl"
  exit 0
fi

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.$PACKAGE.lock"
flock -w 600 9 || die "timed out waiting for another kubectl.sh"
if [[ -f $entry/.complete ]]; then   # another run finished it while we waited
  echo "$entry/usr/bin/kubectl"
  exit 0
fi

staging=$(mktemp -d "$CACHE_ROOT/.$PACKAGE-staging.XXXXXX")
trap 'rm -rf "$staging"' EXIT
log "downloading $PACKAGE=$version"
# apt drops privileges to _apt for downloads, and _apt cannot enter a 0700 mktemp dir under
# /root/.cache; the file is still verified against the signed index.
(cd "$staging" && apt-get -o APT::Sandbox::User="$(id -un)" download "$PACKAGE=$version" >&2)
deb=$(ls "$staging"/"$PACKAGE"_*.deb)
dpkg -x "$deb" "$staging/root"
"$staging/root/usr/bin/kubectl" version --client >&2 || die "the unpacked kubectl does not run"
touch "$staging/root/.complete"
rm -rf "$entry"
mv "$staging/root" "$entry"
log "cached in $entry"
echo "$entry/usr/bin/kubectl"
