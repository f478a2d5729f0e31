#!/bin/bash
# CPU time per proxied GET /version at c=32, with a token and with a
# session cookie, alternating for 3 rounds (RUST_LOG=info, in front of
# `lbasedb-proxy lbasedb --open`, CPU of the proxy from /proc). With
# PERF=token or PERF=session, also a `perf record -g` of the proxy under
# that load, to /tmp/$PERF.perf (docs/performance.md: the audit's queue
# wake-ups were found this way).
#
#   bench/session_cpu.sh [PROXY_BIN]
BIN=${1:-target/release/lbasedb-proxy}; UPPORT=18780; PXPORT=18781
. bench/common.sh
COOKIE=$(curl -s -D - -o /dev/null -XPOST 127.0.0.1:$PXPORT/api/auth/login/ -H 'content-type: application/json' -d '{"username":"admin","password":"bench-0123456789"}' | awk -F': ' 'tolower($1)=="set-cookie"{split($2,a,";"); printf "%s; ", a[1]}')
header() { if [ "$1" = token ]; then echo "Authorization: Token $TOKEN"; else echo "Cookie: $COOKIE"; fi; }
for round in 1 2 3; do
  for kind in token session; do
    b=$(cpu $PX); out=$(wrk -t1 -c32 -d6s -H "$(header $kind)" http://127.0.0.1:18781/api/proxy/version); a=$(cpu $PX)
    n=$(echo "$out" | awk '/requests in/{print $1}'); rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
    python3 -c "print('$kind', '$rps req/s', round(($a-$b)/100/$n*1e6,1), 'us CPU/req')"
  done
done
if [ -n "$PERF" ]; then
  wrk -t1 -c32 -d12s -H "$(header $PERF)" http://127.0.0.1:18781/api/proxy/version >/dev/null &
  WRK=$!
  sleep 1; perf record -e cpu-clock -F 999 -g -p $PX -o /tmp/$PERF.perf -- sleep 8 2>/dev/null; wait $WRK
  echo "perf report -i /tmp/$PERF.perf --children --sort symbol -g none --stdio | grep Waker::wake"
fi
kill $UP $PX; sleep 0.5; rm -rf $W
