# Sourced by the bench scripts: the embedded Lbasedb on $UPPORT, `serve` in
# front of it on $PXPORT at $RUST_LOG (default info) with its log in $W/log,
# and an admin token in $TOKEN; `cpu PID` reads a process's CPU ticks.
#   BIN=... UPBIN=... UPPORT=... PXPORT=... . bench/common.sh
BIN=${BIN:-target/release/lbasedb-proxy}; UPBIN=${UPBIN:-$BIN}
W=$(mktemp -d); mkdir -p $W/up
$UPBIN lbasedb --bind 127.0.0.1:$UPPORT --data $W/up --open >/dev/null 2>&1 &
UP=$!
BIND=127.0.0.1:$PXPORT DATA_DIR=$W/p LBASEDB_URL=http://127.0.0.1:$UPPORT LBASEDB_PROXY_SUPERUSER_PASSWORD=bench-0123456789 RUST_LOG=${RUST_LOG:-info} $BIN serve >/dev/null 2>$W/log &
PX=$!
for _ in $(seq 50); do curl -s -o /dev/null 127.0.0.1:$PXPORT/api/auth/token/ && break; sleep 0.2; done
TOKEN=$(curl -s -XPOST 127.0.0.1:$PXPORT/api/auth/token/ -d username=admin -d password=bench-0123456789 | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
