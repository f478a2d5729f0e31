#!/bin/bash
# The proxy's system calls per GET /version with a token at c=1 (`strace -c
# -f` for 5 s of a 12 s wrk run), then where its `write`s come from (`perf
# record -e syscalls:sys_enter_write --call-graph dwarf` for 1 s, to
# /tmp/wakeups.perf): docs/performance.md, awc's per-request date task.
#
#   bench/wakeups.sh [PROXY_BIN]
BIN=${1:-target/release/lbasedb-proxy}; UPPORT=18970; PXPORT=18971
. bench/common.sh
wrk -t1 -c1 -d12s -H "Authorization: Token $TOKEN" http://127.0.0.1:$PXPORT/api/proxy/version | grep Requests/sec &
WRK=$!
sleep 2
timeout 5 strace -f -c -p $PX -o /tmp/wakeups.strace
head -12 /tmp/wakeups.strace
perf record -e syscalls:sys_enter_write --call-graph dwarf -p $PX -o /tmp/wakeups.perf -- sleep 1 >/dev/null 2>&1
wait $WRK
echo "perf script -i /tmp/wakeups.perf | grep -A8 Waker::wake"
kill $UP $PX; sleep 0.5; rm -rf $W
