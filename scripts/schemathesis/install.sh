#!/usr/bin/env bash
# Ensure schemathesis (PyPI, pinned below) in its own virtual environment in the cache, and print
# the path of its command as the LAST line of stdout. tests/api_schemathesis.rs runs it; .ci/run
# calls this first so that the install's output stays out of the test's.
#
# Why a virtual environment: schemathesis pulls in some forty packages (hypothesis, requests,
# jsonschema, ...) whose versions must not meet the system's or openapi-spec-validator's.
# Needs python3 >= 3.9 with the venv module (Debian: python3-venv) and the package index.
#
# Usage: schemathesis=$(scripts/schemathesis/install.sh | tail -n1)
# Cache: ${XDG_CACHE_HOME:-$HOME/.cache}/podcap/schemathesis-<version>/bin/schemathesis, valid
#        once `.complete` exists (written last; a half-made environment is made again).
set -euo pipefail

VERSION=4.32.5
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/podcap"
target="$CACHE_ROOT/schemathesis-$VERSION"

if [[ ! -f $target/.complete ]]; then
  printf 'schemathesis/install.sh: installing schemathesis %s into %s\n' "$VERSION" "$target" >&2
  rm -rf "$target"
  mkdir -p "$CACHE_ROOT"
  python3 -m venv "$target"
  "$target/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2
  "$target/bin/schemathesis" --version >&2
  touch "$target/.complete"
fi
echo "$target/bin/schemathesis"
