# Sourced by the bench scripts: the embedded Lbasedb on $UPPORT (UPBIN's
# `lbasedb`), or the real server (lbasedb-api) when LBASEDB_API names its
# binary; `serve` in front of it on $PXPORT at $RUST_LOG (default info)
# with its log in $W/log, and an admin token in $TOKEN. `cpu PID` reads a
# process's CPU ticks (`cpu_split PID`: user and system apart), and
# `start_nginx PORT` puts nginx's plain proxy_pass in front of the
# upstream (one worker, keepalive 32, no buffering, no access log; $NG its
# master, $NGW its worker).
#   BIN=... UPBIN=... LBASEDB_API=... UPPORT=... PXPORT=... . bench/common.sh
BIN=${BIN:-target/release/lbasedb-proxy}; UPBIN=${UPBIN:-$BIN}
W=$(mktemp -d); mkdir -p $W/up
if [ -n "$LBASEDB_API" ]; then
  HOST=127.0.0.1 PORT=$UPPORT DATA_PATH=$W/up WORKERS=1 $LBASEDB_API >/dev/null 2>&1 &
else
  $UPBIN lbasedb --bind 127.0.0.1:$UPPORT --data $W/up --open >/dev/null 2>&1 &
fi
UP=$!
BIND=127.0.0.1:$PXPORT DATA_DIR=$W/p LBASEDB_URL=http://127.0.0.1:$UPPORT LBASEDB_PROXY_SUPERUSER_PASSWORD=bench-0123456789 RUST_LOG=${RUST_LOG:-info} $BIN serve >/dev/null 2>$W/log &
PX=$!
for _ in $(seq 50); do curl -s -o /dev/null 127.0.0.1:$PXPORT/api/auth/token/ && break; sleep 0.2; done
TOKEN=$(curl -s -XPOST 127.0.0.1:$PXPORT/api/auth/token/ -d username=admin -d password=bench-0123456789 | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
cpu_split() { awk '{print $14, $15}' /proc/$1/stat; }
start_nginx() {
  mkdir -p $W/body $W/proxy
  cat > $W/nginx.conf <<EOC
worker_processes 1; daemon off; user root; pid $W/nginx.pid; error_log $W/error.log warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $W/body; proxy_temp_path $W/proxy;
  upstream lbasedb { server 127.0.0.1:$UPPORT; keepalive 32; }
  server { listen 127.0.0.1:$1; client_max_body_size 0;
    location / { proxy_pass http://lbasedb; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_buffering off; proxy_request_buffering off; } } }
EOC
  nginx -c $W/nginx.conf -p $W & NG=$!
  for _ in $(seq 50); do NGW=$(pgrep -P $NG) && break; sleep 0.1; done
}
