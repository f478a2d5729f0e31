#!/bin/bash
# The floor of the crates: CPU microseconds a request, and requests a
# second, of GET /version through nginx's proxy_pass (one worker), two bare
# forwarders (examples/forward_floor.rs: actix-web + awc, hyper +
# hyper-util; no authentication, log or anything else of the proxy's),
# pingora's bare proxy (bench/pingora_floor, if built: it needs cmake) and
# lbasedb-proxy with a token (RUST_LOG=info), all in front of one
# upstream, in turns: ROUNDS rounds (default 3) of DURATION s (default 6)
# at c=32 and at c=1 each, CPU of each forwarder's process from /proc
# (nginx: its worker); then each one's medians (and spreads) over the
# rounds, ratios to the upstream straight in the same round.
# Build the example first: cargo build --release --example forward_floor;
# and, for pingora, (cd bench/pingora_floor && cargo build --release).
#
#   bench/floor.sh [PROXY_BIN] [UPSTREAM_BIN]
# UPSTREAM_BIN: the real Lbasedb server (lbasedb-api); default the
# embedded one (PROXY_BIN lbasedb --open).
BIN=${1:-target/release/lbasedb-proxy}; UPBIN=$2; FLOOR=target/release/examples/forward_floor
PINGORA=bench/pingora_floor/target/release/pingora-floor
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-6}; UP=18980
W=$(mktemp -d); mkdir -p $W/up $W/body $W/proxy
if [ -n "$UPBIN" ]; then
  HOST=127.0.0.1 PORT=$UP DATA_PATH=$W/up WORKERS=1 $UPBIN >/dev/null 2>&1 &
else
  $BIN lbasedb --bind 127.0.0.1:$UP --data $W/up --open >/dev/null 2>&1 &
fi
UPPID=$!
cat > $W/nginx.conf <<EOC
worker_processes 1; daemon off; user root; pid $W/nginx.pid; error_log $W/error.log warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $W/body; proxy_temp_path $W/proxy;
  upstream lbasedb { server 127.0.0.1:$UP; keepalive 32; }
  server { listen 127.0.0.1:18982; client_max_body_size 0;
    location / { proxy_pass http://lbasedb; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_buffering off; proxy_request_buffering off; } } }
EOC
nginx -c $W/nginx.conf -p $W & NG=$!
$FLOOR actix 127.0.0.1:18983 http://127.0.0.1:$UP & ACTIX=$!
$FLOOR hyper 127.0.0.1:18984 http://127.0.0.1:$UP & HYPER=$!
PF=; [ -x $PINGORA ] && { $PINGORA 127.0.0.1:18986 127.0.0.1:$UP $(nproc) >/dev/null 2>&1 & PF=$!; }
BIND=127.0.0.1:18985 DATA_DIR=$W/p LBASEDB_URL=http://127.0.0.1:$UP LBASEDB_PROXY_SUPERUSER_PASSWORD=bench-0123456789 RUST_LOG=info $BIN serve >/dev/null 2>$W/log & PX=$!
for _ in $(seq 50); do curl -s -o /dev/null 127.0.0.1:18985/api/auth/token/ && break; sleep 0.2; done
TOKEN=$(curl -s -XPOST 127.0.0.1:18985/api/auth/token/ -d username=admin -d password=bench-0123456789 | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
NGW=$(pgrep -P $NG)
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
one() { # name pid url [header]
  local b a out n rps
  b=$(cpu $2); out=$(wrk -t1 -c$C -d${DURATION}s ${4:+-H "$4"} $3); a=$(cpu $2)
  n=$(echo "$out" | awk '/requests in/{print $1}'); rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  python3 -c "print('c=$C', '$1', '$rps req/s', round(($a-$b)/100/$n*1e6,1), 'us CPU/req')"
}
for round in $(seq $ROUNDS); do
  for C in 32 1; do
    out=$(wrk -t1 -c$C -d${DURATION}s http://127.0.0.1:$UP/version)
    echo "c=$C upstream $(echo "$out" | awk '/Requests\/sec/{print $2}') req/s"
    one nginx $NGW http://127.0.0.1:18982/version
    one floor-actix $ACTIX http://127.0.0.1:18983/version
    one floor-hyper $HYPER http://127.0.0.1:18984/version
    [ -n "$PF" ] && one floor-pingora $PF http://127.0.0.1:18986/version
    one lbasedb-proxy $PX http://127.0.0.1:18985/api/proxy/version "Authorization: Token $TOKEN"
  done
done | tee $W/rounds
python3 - $W/rounds <<'EOP'
import re, statistics as st, sys
rows, upstream = {}, {}
for line in open(sys.argv[1]):
    m = re.match(r'c=(\d+) (\S+) ([\d.]+) req/s(?: ([\d.]+) us)?', line)
    if not m:
        continue
    c, who, rps = m.group(1), m.group(2), float(m.group(3))
    if who == 'upstream':
        upstream[c] = rps
    else:
        rows.setdefault((c, who), []).append((float(m.group(4)), rps / upstream[c]))
print('medians (min-max) of the rounds:')
for (c, who), v in rows.items():
    cpu, ratio = [x[0] for x in v], [x[1] for x in v]
    print(f'c={c:>2} {who:14} CPU {st.median(cpu):6.1f} us ({min(cpu):.1f}-{max(cpu):.1f})'
          f'  ratio {st.median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f})')
EOP
kill $UPPID $NG $ACTIX $HYPER $PX $PF; wait 2>/dev/null; rm -rf $W
