#!/bin/bash
# CPU time per proxied GET /version with the proxy's own token and with a
# JWT bearer (client credentials from the tests' OpenID provider, RS256),
# in front of `lbasedb-proxy lbasedb --open`: wrk 8 s at c=32, CPU of the
# proxy process from /proc (docs/identity.md, "What it costs per request").
# Needs node and `npm ci` in tests/oidc.
#
#   bench/jwt_cost.sh [PROXY_BIN]
BIN=${1:-target/release/lbasedb-proxy}
W=$(mktemp -d); mkdir -p $W/up
(sleep 100000 | PORT=18692 node tests/oidc/provider.mjs >$W/idp.out 2>/dev/null) &
$BIN lbasedb --bind 127.0.0.1:18690 --data $W/up --open >/dev/null 2>&1 &
UP=$!
for _ in $(seq 50); do grep -q issuer $W/idp.out && break; sleep 0.2; done
ISSUER=http://127.0.0.1:18692
export DATA_DIR=$W/p LBASEDB_PROXY_SUPERUSER_PASSWORD=bench-0123456789 LBASEDB_PROXY_PASSWORD=bench-0123456789
$BIN migrate >/dev/null
$BIN createuser ingest-service --perm lbasedb.view_feed >/dev/null
$BIN linkidentity ingest-service --issuer $ISSUER --client ingest >/dev/null
BIND=127.0.0.1:18691 LBASEDB_URL=http://127.0.0.1:18690 JWT_AUDIENCE=lbasedb-proxy JWT_ISSUERS=$ISSUER RUST_LOG=info $BIN serve >/dev/null 2>$W/log &
PX=$!
for _ in $(seq 50); do curl -s -o /dev/null 127.0.0.1:18691/healthz && break; sleep 0.2; done
TOKEN=$($BIN createtoken ingest-service 2>/dev/null | tail -1)
JWT=$(curl -s -u ingest:ingest-secret -d grant_type=client_credentials -d scope=api $ISSUER/token | python3 -c 'import json,sys;print(json.load(sys.stdin)["access_token"])')
cpu() { awk '{print $14+$15}' /proc/$PX/stat; }
for round in 1 2; do
  for kind in "Token $TOKEN" "Bearer $JWT"; do
    b=$(cpu); out=$(wrk -t1 -c32 -d8s -H "Authorization: $kind" http://127.0.0.1:18691/api/proxy/version); a=$(cpu)
    n=$(echo "$out" | awk '/requests in/{print $1}'); rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $kind" 127.0.0.1:18691/api/proxy/version)
    python3 -c "print('round $round', '${kind%% *}', 'HTTP $code', '$rps req/s', round(($a-$b)/100/$n*1e6,1), 'us CPU/req')"
  done
done
kill $UP $PX; pkill -f "node tests/oidc/provider.mjs"; wait 2>/dev/null; rm -rf $W
