#!/usr/bin/env bash
# `unsafe` only in the AF_PACKET module (capture-agent/src/afpacket), as DESIGN.md asks; run by
# .ci/run before the tests. The compiler does the real work through one attribute at each crate
# root, so this checks that the attributes are where they must be, and that nothing the attributes
# do not reach (integration tests, build scripts) holds `unsafe` code either:
#   - every library and binary root has `#![forbid(unsafe_code)]`, except capture-agent's, which
#     have `#![deny(unsafe_code)]` (forbid could not be lifted for the one module);
#   - `#[allow(unsafe_code)]` appears exactly once: on `mod afpacket` in capture-agent/src/lib.rs;
#   - no `unsafe` block, fn, impl, trait, extern or attribute in any .rs file outside afpacket.
# Each `unsafe` in afpacket carries its `// SAFETY:` comment: clippy's undocumented_unsafe_blocks,
# denied in that module, checks it.
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
fail() {
    echo "check-unsafe: $*" >&2
    failed=1
}

# Library and binary roots of the workspace, as "package<TAB>path", from Cargo itself so that a
# crate or binary added later is checked without editing this script.
roots=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for package in json.load(sys.stdin)["packages"]:
    for target in package["targets"]:
        if set(target["kind"]) & {"lib", "bin", "proc-macro"}:
            print(package["name"] + "\t" + target["src_path"])
')
workspace=$(pwd)
while IFS=$'\t' read -r package path; do
    relative=${path#"$workspace"/}
    if [ "$package" = capture-agent ]; then
        wanted='#![deny(unsafe_code)]'
    else
        wanted='#![forbid(unsafe_code)]'
    fi
    grep -qxF "$wanted" "$path" || fail "$relative lacks \`$wanted\` at its root"
done <<<"$roots"

# The one exception, on the module declaration and nowhere else.
allows=$(grep -rnF --include='*.rs' --exclude-dir=target 'allow(unsafe_code)' . || true)
expected_allow=$(grep -nF -A1 '#[allow(unsafe_code)]' capture-agent/src/lib.rs | grep -c 'mod afpacket;' || true)
if [ "$(printf '%s\n' "$allows" | grep -c .)" -ne 1 ] || [ "$expected_allow" -ne 1 ]; then
    fail "\`#[allow(unsafe_code)]\` must appear once, on \`mod afpacket;\` in capture-agent/src/lib.rs; found:
$allows"
fi

# `unsafe` as code (comments and strings that merely name it are fine).
elsewhere=$(grep -rnE --include='*.rs' --exclude-dir=target \
    '(^|[^[:alnum:]_`"])unsafe[[:space:]]*(\{|\(|fn[[:space:]]|impl[[:space:]<]|trait[[:space:]]|extern[[:space:]])' . \
    | grep -v '^\./capture-agent/src/afpacket/' \
    | grep -vE '^[^:]+:[0-9]+:[[:space:]]*//' || true)
if [ -n "$elsewhere" ]; then
    fail "\`unsafe\` outside capture-agent/src/afpacket (move it there, behind a safe API):
$elsewhere"
fi

if [ "$failed" -ne 0 ]; then
    exit 1
fi
echo "check-unsafe: unsafe code only in capture-agent/src/afpacket"
