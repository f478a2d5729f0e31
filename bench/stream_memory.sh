#!/usr/bin/env bash
# Streams a 1,000,000-row feed (about 38 MB of JSON) through the proxy, in
# and out, and reports the proxy's resident memory: idle, after each
# transfer, and its peak (VmHWM). Lbasedb runs as its own process
# (`lbasedb-proxy lbasedb`), so the figures are the proxy's alone.
#
# Usage: bench/stream_memory.sh [ROUNDS]   (default 5 PUTs and 5 GETs)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
ROWS=1000000
UP_PORT=${UP_PORT:-18080}
PROXY_PORT=${PROXY_PORT:-18000}

cargo build --release --quiet
BIN=target/release/lbasedb-proxy
WORK=$(mktemp -d)
trap 'kill $UP_PID $PROXY_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
ulimit -n 65536 2>/dev/null || true

"$BIN" lbasedb --bind 127.0.0.1:$UP_PORT --data "$WORK/lbasedb" >"$WORK/lbasedb.log" 2>&1 &
UP_PID=$!
LBASEDB_URL=http://127.0.0.1:$UP_PORT BIND=127.0.0.1:$PROXY_PORT DATA_DIR="$WORK/proxy" \
    RUST_LOG=warn "$BIN" serve >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PROXY_PORT/readyz" >/dev/null && break; sleep 0.1; done

P=http://127.0.0.1:$PROXY_PORT/api/proxy
J='content-type: application/json'
curl -fs -X POST "$P/feed" -H "$J" -d '{"name":"xy"}'
curl -fs -X POST "$P/col?feed=xy" -H "$J" -d '{"name":"x","datatype":"Float64"}'
curl -fs -X POST "$P/col?feed=xy" -H "$J" -d '{"name":"y","datatype":"Float64"}'
curl -fs -X PUT "$P/size?feed=xy" -H "$J" -d "{\"size\":$ROWS}"
python3 - "$WORK/xy.json" $ROWS <<'PY'
import json, sys
n = int(sys.argv[2])
with open(sys.argv[1], "w") as f:
    json.dump({"x": [i / 3 for i in range(n)], "y": [i / 7 for i in range(n)]}, f)
PY

rss() { awk -v k="$1:" '$1 == k { print $2 }' /proc/$PROXY_PID/status; }
echo "body: $(stat -c %s "$WORK/xy.json") bytes of JSON, $ROWS rows"
echo "proxy RSS idle: $(rss VmRSS) kB"
for i in $(seq "$ROUNDS"); do
    curl -fs -o /dev/null -w "PUT  %{http_code} %{size_upload} B in %{time_total}s" \
        -X PUT "$P/data?feed=xy&ix=0" -H "$J" --data-binary @"$WORK/xy.json"
    echo "  RSS $(rss VmRSS) kB"
done
for i in $(seq "$ROUNDS"); do
    curl -fs -o "$WORK/out.json" -w "GET  %{http_code} %{size_download} B in %{time_total}s" \
        "$P/data?feed=xy&ix=0&size=$ROWS&col[]=x&col[]=y"
    echo "  RSS $(rss VmRSS) kB"
done
python3 -c "import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); sys.exit(0 if a==b else 'rows differ')" \
    "$WORK/xy.json" "$WORK/out.json" && echo "rows read back identical"
echo "proxy RSS after: $(rss VmRSS) kB, peak (VmHWM): $(rss VmHWM) kB"
