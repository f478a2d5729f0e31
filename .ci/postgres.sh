#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the tests: Debian's server
# (installed when missing), owned by the postgres user, listening on a free
# port on 127.0.0.1 only, trust authentication. Prints its URL and, after a
# space, its folder; the tests make one database each in it. Stop it with
# `runuser -u postgres -- pg_ctl -D <folder>/data stop`.
set -euo pipefail

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >/dev/null
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
dir=$(mktemp -d /tmp/lbasedb-postgres.XXXXXX)
chown postgres "$dir"
# A port nothing answers on (a refused connection), picked at random.
for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        break
    fi
done
runuser -u postgres -- "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-h 127.0.0.1 -p $port -k $dir -c max_connections=1000" start >/dev/null
echo "postgres://postgres@127.0.0.1:$port/postgres $dir"
