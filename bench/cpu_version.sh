#!/bin/bash
# CPU time per proxied GET /version with a token (RUST_LOG=info, the default),
# in front of `lbasedb-proxy lbasedb --open`: wrk 8 s at c=32 and c=1, CPU of
# the proxy process from /proc. Run it alternately for two builds to compare
# them (docs/performance.md, "Changes measured").
#
#   bench/cpu_version.sh [PROXY_BIN] [UPSTREAM_BIN]
BIN=${1:-target/release/lbasedb-proxy}; UPBIN=${2:-$BIN}; UPPORT=18680; PXPORT=18681
. bench/common.sh
for c in 32 1; do
  b=$(cpu $PX); out=$(wrk -t1 -c$c -d8s -H "Authorization: Token $TOKEN" http://127.0.0.1:18681/api/proxy/version); a=$(cpu $PX)
  n=$(echo "$out" | awk '/requests in/{print $1}'); rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  python3 -c "print('c=$c', '$rps req/s', round(($a-$b)/100/$n*1e6,1), 'us CPU/req')"
done
kill $UP $PX; wait 2>/dev/null; rm -rf $W
