#!/usr/bin/env bash
# API under load: `capture-api --standalone` with 1,000 stored captures, then `wrk` with 64
# concurrent connections on the list route (one page, the default 100 captures) and the get
# route, a few seconds each, repeated. Writes bench/API.md. Run as root from the workspace root:
#   bench/api_load.sh
# Needs: wrk and python3 (Debian packages wrk, python3). The server listens on loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -j2 -p capture-api >&2
data=$(mktemp -d /tmp/podcap-api-load.XXXXXX)
port=18473
target/release/capture-api --standalone --listen "127.0.0.1:$port" --data-dir "$data" >/dev/null 2>"$data/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
token=$(cat "$data/admin-token")
python3 - "$port" "$token" <<'PY'
import json, sys, urllib.request
port, token = sys.argv[1], sys.argv[2]
for i in range(1000):
    body = json.dumps({"metadata": {"name": f"load-{i:04d}"}, "spec": {
        "startTime": "2035-01-01T00:00:00Z", "duration": "10m",
        "podSelector": {"matchLabels": {"app": "web"}},
        "filters": [{"protocol": "TCP", "ports": [443]}, {"protocol": "UDP", "ports": [53]}]}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/namespaces/default/captures", data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    urllib.request.urlopen(request).read()
PY
base="http://127.0.0.1:$port/api/v1/namespaces/default/captures"
page_bytes=$(curl -s -H "Authorization: Bearer $token" "$base" | wc -c)
run() { # name url -> "p50 p99 req/s" via wrk's latency distribution
    wrk -t1 -c64 -d5s --latency -H "Authorization: Bearer $token" "$2" |
        awk '/^ +50%/{p50=$2} /^ +99%/{p99=$2} /^Requests\/sec/{rps=$2} /Non-2xx/{bad=$NF} END{print p50, p99, rps, (bad==""?0:bad)}'
}
{
    echo "# API under load"
    echo
    echo "Produced by \`bench/api_load.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, kernel $(uname -r),"
    echo "capture-api built from $(git rev-parse --short HEAD)$(git diff --quiet || echo -dirty). 1,000 captures stored; wrk (1 thread,"
    echo "64 connections, 5 s per run) on the same machine as the server. A list page is the default 100"
    echo "captures ($page_bytes bytes)."
    echo
    echo "| route | run | p50 | p99 | requests/s | non-2xx |"
    echo "|---|---:|---:|---:|---:|---:|"
    for repeat in 1 2 3; do
        read -r p50 p99 rps bad < <(run list "$base")
        echo "| list (GET .../captures) | $repeat | $p50 | $p99 | $rps | $bad |"
        read -r p50 p99 rps bad < <(run get "$base/load-0500")
        echo "| get (GET .../captures/{name}) | $repeat | $p50 | $p99 | $rps | $bad |"
    done
    echo
    echo "Target (issue 3): list and get p99 under 20 ms at 64 concurrent clients."
} | tee bench/API.md
