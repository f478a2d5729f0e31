#!/bin/bash
# CPU microseconds and context switches per proxied GET /version, thread
# by thread (the workers, the log writer, the audit's writer), from
# /proc/<pid>/task/*/{stat,status}: 3 rounds of wrk for 6 s at c=$C (32)
# with a token (docs/performance.md: the log writer's wake-ups were found
# this way).
#
#   C=1 bench/thread_cpu.sh [PROXY_BIN]
BIN=${1:-target/release/lbasedb-proxy}; UPPORT=18880; PXPORT=18881
. bench/common.sh
snap() { for t in /proc/$PX/task/*; do echo "$(basename $t) $(tr ' ' _ < $t/comm) $(awk '{print $14+$15}' $t/stat) $(awk '/voluntary_ctxt_switches/{print $2}' $t/status | paste -sd' ')"; done; }
for round in 1 2 3; do
  snap > $W/a; out=$(wrk -t1 -c${C:-32} -d6s -H "Authorization: Token $TOKEN" http://127.0.0.1:$PXPORT/api/proxy/version); snap > $W/b
  python3 - $W/a $W/b "$(echo "$out" | awk '/requests in/{print $1}')" <<'PY'
import sys
a = {l.split()[0]: l.split() for l in open(sys.argv[1])}
b = {l.split()[0]: l.split() for l in open(sys.argv[2])}
n = int(sys.argv[3]); total = 0.0; lines = []
for t, v in b.items():
    if t not in a:
        continue
    us = (int(v[2]) - int(a[t][2])) / 100 / n * 1e6
    vol, invol = (int(v[3]) - int(a[t][3])) / n, (int(v[4]) - int(a[t][4])) / n
    total += us
    if us > 0.05 or vol > 0.01:
        lines.append(f"  {v[1]:<20} {us:6.2f} us/req  voluntary {vol:.3f}  involuntary {invol:.3f} switches/req")
print(f"{n / 6:.0f} req/s, {total:.1f} us CPU/req in all"); print("\n".join(lines))
PY
done
kill $UP $PX; wait 2>/dev/null; rm -rf $W
