#!/usr/bin/env python3
"""Soak test of concurrent appends: N writers for T seconds, each appending
one uniquely numbered row per request, straight to Lbasedb and then through
the proxy; optionally the upstream is killed (SIGKILL) in the middle and
started again. Prints, for each: acknowledged (204), stored, lost
(acknowledged but not stored), duplicated, torn (rows of zeros left by an
append cut by the kill), statuses, connection errors; then the append
throughput of a single writer, direct and through the proxy (wrk when
installed, else a Python loop).

    python3 bench/soak.py                      # 32 writers, 20 s, our `lbasedb --open` upstream
    python3 bench/soak.py --kill               # the same, with a kill and restart halfway
    python3 bench/soak.py --upstream-bin ../lbasedb-api/target/release/lbasedb-api

--upstream-bin runs the real Lbasedb server (configured by its DATA_PATH,
HOST, PORT). Binds to 127.0.0.1 only; every loop is bounded in time.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "lbasedb-proxy")
UP_PORT, PROXY_PORT = 18280, 18281
PASSWORD = "soak-password-0123"


def wait_for(url, headers=None, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=1):
                return
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def call(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = json.dumps(body).encode() if body is not None else None
    all_headers = {"content-type": "application/json", **(headers or {})}
    conn.request(method, path, body=data, headers=all_headers)
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, payload


class Upstream:
    def __init__(self, binary, work):
        self.binary, self.data = binary, os.path.join(work, "lbasedb")
        self.start()

    def start(self):
        if self.binary:
            env = {**os.environ, "DATA_PATH": self.data, "HOST": "127.0.0.1", "PORT": str(UP_PORT)}
            os.makedirs(self.data, exist_ok=True)
            command = [self.binary]
        else:
            env = dict(os.environ)
            command = [BIN, "lbasedb", "--open", "--bind", f"127.0.0.1:{UP_PORT}", "--data", self.data]
        env["RUST_LOG"] = env["LOG_LEVEL"] = "error"
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(f"http://127.0.0.1:{UP_PORT}/version")

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        self.process.terminate()
        self.process.wait()


def run_writers(port, path, writers, seconds, headers, on_half=None):
    acked, statuses, errors = [], {}, [0]
    lock = threading.Lock()
    deadline = time.time() + seconds

    def writer(w):
        conn, i, mine, seen = None, 0, [], {}
        while time.time() < deadline:
            value = (w + 1) * 10_000_000 + i
            i += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("POST", path, body=json.dumps({"v": [value]}),
                             headers={"content-type": "application/json", **headers})
                response = conn.getresponse()
                response.read()
                seen[response.status] = seen.get(response.status, 0) + 1
                if response.status == 204:
                    mine.append(value)
                else:
                    time.sleep(0.02)
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                with lock:
                    errors[0] += 1
                conn = None
                time.sleep(0.02)
        with lock:
            acked.extend(mine)
            for status, n in seen.items():
                statuses[status] = statuses.get(status, 0) + n

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    if on_half:
        time.sleep(seconds / 2)
        on_half()
    for t in threads:
        t.join()
    return acked, statuses, errors[0]


def stored_values(feed):
    _, body = call(UP_PORT, "GET", f"/size?feed={feed}")
    size = json.loads(body)["size"]
    values = []
    for ix in range(0, size, 1_000_000):
        n = min(1_000_000, size - ix)
        _, body = call(UP_PORT, "GET", f"/data?feed={feed}&ix={ix}&size={n}&col[]=v")
        values.extend(json.loads(body)["v"])
    return values


def report(name, acked, statuses, errors, values):
    counts = {}
    for v in values:
        if v:
            counts[v] = counts.get(v, 0) + 1
    lost = sum(1 for v in acked if v not in counts)
    duplicated = sum(1 for n in counts.values() if n > 1)
    torn = sum(1 for v in values if not v)
    print(f"{name:>8}: acknowledged {len(acked):>7}  stored {len(counts):>7}  lost {lost:>6}  "
          f"duplicated {duplicated:>4}  torn {torn:>4}  connection errors {errors:>4}  "
          f"statuses {dict(sorted(statuses.items()))}")
    return {"acknowledged": len(acked), "stored": len(counts), "lost": lost, "duplicated": duplicated,
            "torn": torn, "connection_errors": errors, "statuses": statuses}


def throughput(port, path, headers, seconds):
    """Appends per second of one writer on one keep-alive connection."""
    if shutil.which("wrk"):
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        hdrs = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
        script.write(f'wrk.method = "POST"\nwrk.body = \'{{"v": [1]}}\'\n'
                     f'wrk.headers["content-type"] = "application/json"\n{hdrs}')
        script.close()
        out = subprocess.run(["wrk", "-t1", "-c1", f"-d{seconds}s", "-s", script.name,
                              f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
        os.unlink(script.name)
        for line in out.splitlines():
            if line.startswith("Requests/sec:"):
                return float(line.split()[1])
        raise SystemExit(out)
    conn = http.client.HTTPConnection("127.0.0.1", port)
    n, deadline = 0, time.time() + seconds
    while time.time() < deadline:
        conn.request("POST", path, body=b'{"v": [1]}', headers={"content-type": "application/json", **headers})
        conn.getresponse().read()
        n += 1
    return n / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--kill", action="store_true", help="SIGKILL the upstream halfway, restart it 1 s later")
    parser.add_argument("--upstream-bin", help="run this Lbasedb server (the real one) instead of ours")
    parser.add_argument("--throughput-seconds", type=float, default=5)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if not os.path.exists(BIN):
        subprocess.run(["cargo", "build", "--release", "--bin", "lbasedb-proxy"], cwd=ROOT, check=True)

    work = tempfile.mkdtemp(prefix="lbasedb-soak-")
    upstream = Upstream(args.upstream_bin, work)
    env = {**os.environ, "BIND": f"127.0.0.1:{PROXY_PORT}", "DATA_DIR": os.path.join(work, "proxy"),
           "LBASEDB_URL": f"http://127.0.0.1:{UP_PORT}", "LBASEDB_PROXY_SUPERUSER_PASSWORD": PASSWORD,
           "RUST_LOG": "error", "WRITE_LOCK_TIMEOUT": "30s"}
    proxy = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {}
    try:
        wait_for(f"http://127.0.0.1:{PROXY_PORT}/healthz")
        _, body = call(PROXY_PORT, "POST", "/api/auth/token/", {"username": "admin", "password": PASSWORD})
        auth = {"authorization": f"Token {json.loads(body)['token']}"}

        def kill_and_restart():
            if args.kill:
                upstream.kill()
                time.sleep(1)
                upstream.start()

        print(f"{args.writers} writers, {args.seconds:g} s each run"
              f"{', upstream killed and restarted halfway' if args.kill else ''}; upstream: "
              f"{args.upstream_bin or 'lbasedb-proxy lbasedb'}")
        for name, port, headers, prefix in [("direct", UP_PORT, {}, ""), ("proxied", PROXY_PORT, auth, "/api/proxy")]:
            feed = f"soak_{name}"
            call(UP_PORT, "POST", "/feed", {"name": feed})
            call(UP_PORT, "POST", f"/col?feed={feed}", {"name": "v", "datatype": "Int64"})
            acked, statuses, errors = run_writers(port, f"{prefix}/data?feed={feed}", args.writers,
                                                  args.seconds, headers, kill_and_restart)
            results[name] = report(name, acked, statuses, errors, stored_values(feed))

        print(f"single writer, {args.throughput_seconds:g} s:")
        for name, port, headers, prefix in [("direct", UP_PORT, {}, ""), ("proxied", PROXY_PORT, auth, "/api/proxy")]:
            feed = f"rate_{name}"
            call(UP_PORT, "POST", "/feed", {"name": feed})
            call(UP_PORT, "POST", f"/col?feed={feed}", {"name": "v", "datatype": "Int64"})
            rate = throughput(port, f"{prefix}/data?feed={feed}", headers, args.throughput_seconds)
            results[f"{name}_appends_per_s"] = rate
            print(f"{name:>8}: {rate:,.0f} appends/s")
        print(f"   ratio: {results['proxied_appends_per_s'] / results['direct_appends_per_s']:.2f} (proxied / direct)")
    finally:
        proxy.terminate()
        proxy.wait()
        upstream.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
