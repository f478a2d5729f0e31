#!/usr/bin/env python3
"""Single-writer append rate through lbasedb-proxy, with and without an
Idempotency-Key: one connection, one row per append, N appends each way,
alternating rounds. Usage: python3 bench/appends.py [BIN] [N] [ROUNDS]

Starts BIN (default target/release/lbasedb-proxy) on its embedded
upstream in a temporary folder, makes feed `w` (one Int64 column), and
prints appends per second and the server's CPU time per append (from
/proc/<pid>/stat, the proxy and its embedded upstream together)."""

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except FileNotFoundError:
            pass
    return total / tick


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/lbasedb-proxy"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    data = tempfile.mkdtemp()
    port = free_port()
    password = "bench-password-long-enough"
    env = dict(os.environ, DATA_DIR=data, BIND=f"127.0.0.1:{port}", RUST_LOG="warn",
               LBASEDB_PROXY_SUPERUSER_PASSWORD=password)
    env.pop("LBASEDB_URL", None)
    server = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL)
    try:
        conn = None
        for _ in range(400):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port)
                conn.request("GET", "/readyz")
                if conn.getresponse().read() and True:
                    break
            except OSError:
                time.sleep(0.025)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("POST", "/api/auth/token/", json.dumps({"username": "admin", "password": password}),
                     {"content-type": "application/json"})
        token = json.loads(conn.getresponse().read())["token"]
        auth = {"authorization": f"Token {token}", "content-type": "application/json"}
        for path, body in [("/api/proxy/feed", {"name": "w"}),
                           ("/api/proxy/col?feed=w", {"name": "v", "datatype": "Int64"})]:
            conn.request("POST", path, json.dumps(body), auth)
            conn.getresponse().read()
        pids = [server.pid] + children(server.pid)

        def run(keyed):
            cpu = cpu_seconds(pids)
            start = time.perf_counter()
            for i in range(n):
                headers = dict(auth)
                if keyed:
                    headers["idempotency-key"] = str(uuid.uuid4())
                conn.request("POST", "/api/proxy/data?feed=w", '{"v":[%d]}' % i, headers)
                answer = conn.getresponse()
                answer.read()
                assert answer.status == 204, answer.status
            elapsed = time.perf_counter() - start
            return n / elapsed, (cpu_seconds(pids) - cpu) / n * 1e6

        for r in range(rounds):
            for keyed in (False, True):
                rate, cpu = run(keyed)
                label = "with key   " if keyed else "without key"
                print(f"round {r + 1} {label}: {rate:8.0f} appends/s, {cpu:6.1f} us CPU an append")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
