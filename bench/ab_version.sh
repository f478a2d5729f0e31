#!/bin/bash
# GET /version direct and through the proxy (token auth), wrk at c=1 and
# c=32, 3 alternating rounds of 3 s so that both sides share the machine's
# drift. Run it once per build to compare builds (docs/performance.md,
# "Cost of metrics, limits and the audit").
#
#   bench/ab_version.sh [PROXY_BIN] [UPSTREAM_BIN]
#
# PROXY_BIN defaults to target/release/lbasedb-proxy. UPSTREAM_BIN is the
# real Lbasedb server (fomalhaut88/lbasedb-api, built with cargo build
# --release); without it the proxy's own embedded upstream stands in.
set -euo pipefail
BIN=${1:-target/release/lbasedb-proxy}
UPSTREAM=${2:-}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
W=$(mktemp -d)
mkdir -p "$W/up"
PASSWORD=bench-0123456789
if [ -n "$UPSTREAM" ]; then
    DATA_PATH=$W/up HOST=127.0.0.1 PORT=18580 LOG_LEVEL=error "$UPSTREAM" >/dev/null 2>&1 &
else
    "$BIN" lbasedb --bind 127.0.0.1:18580 --data "$W/up" --open >/dev/null 2>&1 &
fi
UP=$!
BIND=127.0.0.1:18581 DATA_DIR=$W/p LBASEDB_URL=http://127.0.0.1:18580 \
    LBASEDB_PROXY_SUPERUSER_PASSWORD=$PASSWORD RUST_LOG=error "$BIN" serve >/dev/null 2>&1 &
PX=$!
trap 'kill $UP $PX 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
for _ in $(seq 50); do
    curl -s -o /dev/null 127.0.0.1:18581/api/auth/token/ && break
    sleep 0.2
done
TOKEN=$(curl -s -XPOST 127.0.0.1:18581/api/auth/token/ -d username=admin -d password=$PASSWORD |
    python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
rps() { wrk -t1 -c"$1" -d3s "${@:2}" | awk '/Requests\/sec/{print $2}'; }
for c in 1 32; do
    for r in 1 2 3; do
        d=$(rps "$c" http://127.0.0.1:18580/version)
        p=$(rps "$c" -H "Authorization: Token $TOKEN" http://127.0.0.1:18581/api/proxy/version)
        echo "c=$c round $r: direct $d proxied $p ratio $(python3 -c "print(round($p/$d,3))")"
    done
done
