#!/bin/bash
# The floor of the crates: CPU microseconds a request, and requests a
# second, of GET /version through nginx's proxy_pass (one worker), two bare
# forwarders (examples/forward_floor.rs: actix-web + awc, hyper +
# hyper-util; no authentication, log or anything else of the proxy's),
# pingora's bare proxy (bench/pingora_floor, if built: it needs cmake) and
# lbasedb-proxy with a token (RUST_LOG=info), all in front of one
# upstream, in turns: ROUNDS rounds (default 3) of DURATION s (default 6)
# at c=32 and at c=1 each, CPU of each forwarder's process from /proc
# (nginx: its worker), user and system time apart; then each one's
# medians (and spreads) over the rounds, ratios to the upstream straight
# in the same round. With PERF=1, a `perf record` (DWARF stacks, 8 s at
# c=32) of the bare actix-web + awc forwarder and of lbasedb-proxy, to
# /tmp/floor-actix.perf and /tmp/lbasedb-proxy.perf.
# Build the example first: cargo build --release --example forward_floor;
# and, for pingora, (cd bench/pingora_floor && cargo build --release).
#
#   bench/floor.sh [PROXY_BIN] [LBASEDB_API_BIN]
# LBASEDB_API_BIN: the real Lbasedb server; default the embedded one.
BIN=${1:-target/release/lbasedb-proxy}; LBASEDB_API=$2; UPPORT=18980; PXPORT=18985
FLOOR=target/release/examples/forward_floor; PINGORA=bench/pingora_floor/target/release/pingora-floor
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-6}
. bench/common.sh
start_nginx 18982
$FLOOR actix 127.0.0.1:18983 http://127.0.0.1:$UPPORT & ACTIX=$!
$FLOOR hyper 127.0.0.1:18984 http://127.0.0.1:$UPPORT & HYPER=$!
PF=; [ -x $PINGORA ] && { $PINGORA 127.0.0.1:18986 127.0.0.1:$UPPORT $(nproc) >/dev/null 2>&1 & PF=$!; }
sleep 1
one() { # name pid url [header]
  local b a out n rps
  b=($(cpu_split $2)); out=$(wrk -t1 -c$C -d${DURATION}s ${4:+-H "$4"} $3); a=($(cpu_split $2))
  n=$(echo "$out" | awk '/requests in/{print $1}'); rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  python3 -c "u, s = ${a[0]} - ${b[0]}, ${a[1]} - ${b[1]}; f = 1e6 / 100 / $n
print('c=$C', '$1', '$rps req/s', round((u + s) * f, 1), 'us CPU/req', round(u * f, 1), 'user', round(s * f, 1), 'system')"
}
for round in $(seq $ROUNDS); do
  for C in 32 1; do
    out=$(wrk -t1 -c$C -d${DURATION}s http://127.0.0.1:$UPPORT/version)
    echo "c=$C upstream $(echo "$out" | awk '/Requests\/sec/{print $2}') req/s"
    one nginx $NGW http://127.0.0.1:18982/version
    one floor-actix $ACTIX http://127.0.0.1:18983/version
    one floor-hyper $HYPER http://127.0.0.1:18984/version
    [ -n "$PF" ] && one floor-pingora $PF http://127.0.0.1:18986/version
    one lbasedb-proxy $PX http://127.0.0.1:$PXPORT/api/proxy/version "Authorization: Token $TOKEN"
  done
done | tee $W/rounds
python3 - $W/rounds <<'EOP'
import re, statistics as st, sys
rows, upstream = {}, {}
for line in open(sys.argv[1]):
    m = re.match(r'c=(\d+) (\S+) ([\d.]+) req/s(?: ([\d.]+) us CPU/req ([\d.]+) user ([\d.]+) system)?', line)
    if not m:
        continue
    c, who, rps = m.group(1), m.group(2), float(m.group(3))
    if who == 'upstream':
        upstream[c] = rps
    else:
        rows.setdefault((c, who), []).append((float(m.group(4)), rps / upstream[c], float(m.group(5)), float(m.group(6))))
print('medians (min-max) of the rounds:')
for (c, who), v in rows.items():
    cpu, ratio, user, system = ([x[i] for x in v] for i in range(4))
    print(f'c={c:>2} {who:14} CPU {st.median(cpu):6.1f} us ({min(cpu):.1f}-{max(cpu):.1f}),'
          f' user {st.median(user):.1f}, system {st.median(system):.1f}'
          f'  ratio {st.median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f})')
EOP
if [ -n "$PERF" ]; then
  for target in "floor-actix $ACTIX http://127.0.0.1:18983/version" "lbasedb-proxy $PX http://127.0.0.1:$PXPORT/api/proxy/version"; do
    set -- $target
    wrk -t1 -c32 -d12s -H "Authorization: Token $TOKEN" $3 >/dev/null & WRK=$!
    sleep 1; perf record -e cpu-clock -F 999 --call-graph dwarf -p $2 -o /tmp/$1.perf -- sleep 8 2>/dev/null; wait $WRK
  done
fi
kill $UP $NG $ACTIX $HYPER $PX $PF; wait 2>/dev/null; rm -rf $W
