#!/bin/bash
# nginx's plain proxy_pass (one worker, keepalive 32, no buffering, no
# access log) in front of the embedded Lbasedb: CPU microseconds of its
# worker per GET /version at c=32 (2 rounds), a `perf record -g` to
# /tmp/nginx.perf and `strace -c` to /tmp/nginx.strace, to set beside the
# proxy's (docs/performance.md, "Small requests: where the time goes";
# `perf report -i /tmp/nginx.perf --no-children --sort dso` gives the
# kernel's share).
#
#   bench/nginx_cpu.sh [PROXY_BIN]
BIN=${1:-target/release/lbasedb-proxy}
UPPORT=18980; PXPORT=18981
. bench/common.sh
start_nginx 18982
WORKER=$NGW
for round in 1 2; do
  b=$(cpu $WORKER); out=$(wrk -t1 -c32 -d6s http://127.0.0.1:18982/version); a=$(cpu $WORKER)
  n=$(echo "$out" | awk '/requests in/{print $1}'); rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  python3 -c "print('nginx', '$rps req/s', round(($a-$b)/100/$n*1e6,1), 'us CPU/req')"
done
wrk -t1 -c32 -d12s http://127.0.0.1:18982/version >/dev/null & WRK=$!
sleep 1; perf record -e cpu-clock -F 999 -g -p $WORKER -o /tmp/nginx.perf -- sleep 8 2>/dev/null; wait $WRK
wrk -t1 -c32 -d10s http://127.0.0.1:18982/version >/dev/null & WRK=$!
sleep 1; timeout 5 strace -f -c -p $WORKER -o /tmp/nginx.strace 2>/dev/null; wait $WRK
kill $UP $NG $PX; wait 2>/dev/null; rm -rf $W
