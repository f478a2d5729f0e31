#!/bin/bash
# CPU time per proxied GET /version with a token (RUST_LOG=info, the default),
# in front of `lbasedb-proxy lbasedb --open`: wrk 8 s at c=32 and c=1, CPU of
# the proxy process from /proc. Run it alternately for two builds to compare
# them (docs/performance.md, "Changes measured").
#
#   bench/cpu_version.sh [PROXY_BIN] [UPSTREAM_BIN]
BIN=${1:-target/release/lbasedb-proxy}; UPBIN=${2:-$BIN}
W=$(mktemp -d); mkdir -p $W/up
$UPBIN lbasedb --bind 127.0.0.1:18680 --data $W/up --open >/dev/null 2>&1 &
UP=$!
BIND=127.0.0.1:18681 DATA_DIR=$W/p LBASEDB_URL=http://127.0.0.1:18680 LBASEDB_PROXY_SUPERUSER_PASSWORD=bench-0123456789 RUST_LOG=info $BIN serve >/dev/null 2>$W/log &
PX=$!
for _ in $(seq 50); do curl -s -o /dev/null 127.0.0.1:18681/api/auth/token/ && break; sleep 0.2; done
TOKEN=$(curl -s -XPOST 127.0.0.1:18681/api/auth/token/ -d username=admin -d password=bench-0123456789 | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
cpu() { awk '{print $14+$15}' /proc/$PX/stat; }
for c in 32 1; do
  b=$(cpu); out=$(wrk -t1 -c$c -d8s -H "Authorization: Token $TOKEN" http://127.0.0.1:18681/api/proxy/version); a=$(cpu)
  n=$(echo "$out" | awk '/requests in/{print $1}'); rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  python3 -c "print('c=$c', '$rps req/s', round(($a-$b)/100/$n*1e6,1), 'us CPU/req')"
done
kill $UP $PX; wait 2>/dev/null; rm -rf $W
