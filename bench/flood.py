#!/usr/bin/env python3
"""What requests without credentials cost: two floods a client with no
account can send, against a `serve` of its own (release build) on a fresh
data folder.

  junk    wrk, 3 connections, pipelined 16 deep, for DURATION seconds of
          junk without credentials (no token, a bad token, unknown paths,
          a 4 KB path, a method Lbasedb has no use for, the login page with
          a 2 KB user agent): how much
          the database (with its -wal) and the log grew, and how many
          requests that was.
  logins  wrk, 256 connections, for DURATION seconds of logins for ever-new
          usernames from 3 addresses (X-Forwarded-For, with TRUSTED_PROXIES
          set to loopback), while a valid (session) login from a fourth
          address is timed every 250 ms: the process's peak memory (VmHWM), the valid
          logins' times, and the statuses the flood got.

Usage: python3 bench/flood.py junk|logins [DURATION] [--bin PATH]
Installs Debian's wrk when missing.
"""

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 18600
BASE = f"http://127.0.0.1:{PORT}"
PASSWORD = "correct-horse-battery-staple"


def flag(name, default=None):
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default


BIN = flag("--bin", os.path.join(ROOT, "target", "release", "lbasedb-proxy"))


def ensure_wrk():
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)


def serve(data, log, env=None):
    try:
        urllib.request.urlopen(f"{BASE}/healthz", timeout=1)
        raise SystemExit(f"something already answers on port {PORT}")
    except OSError:
        pass
    environ = dict(os.environ)
    environ.update(
        BIND=f"127.0.0.1:{PORT}",
        DATA_DIR=data,
        LBASEDB_PROXY_SUPERUSER_PASSWORD=PASSWORD,
        RUST_LOG="info",
    )
    environ.pop("LBASEDB_URL", None)
    environ.pop("DATABASE_URL", None)
    environ.update(env or {})
    process = subprocess.Popen(
        [BIN, "serve"], env=environ, stdout=subprocess.DEVNULL, stderr=open(log, "w")
    )
    for _ in range(400):
        try:
            urllib.request.urlopen(f"{BASE}/readyz", timeout=1)
            return process
        except Exception:
            time.sleep(0.025)
    process.kill()
    raise SystemExit("serve did not start")


def peak_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def sizes(data, log):
    db = sum(
        os.path.getsize(os.path.join(data, name))
        for name in ("db.sqlite3", "db.sqlite3-wal")
        if os.path.exists(os.path.join(data, name))
    )
    return db, os.path.getsize(log)


def audit_rows(data):
    import sqlite3
    with sqlite3.connect(os.path.join(data, "db.sqlite3")) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(access_log)")]
        # A version before refusals were counted together: a row each.
        counted = "coalesce(sum(requests), 0)" if "requests" in columns else "count(*)"
        return db.execute(f"SELECT count(*), {counted} FROM access_log").fetchone()


def wrk(script, connections, duration, extra=()):
    out = subprocess.run(
        ["wrk", "-t1" if connections < 8 else "-t2", f"-c{connections}", f"-d{duration}s",
         "-s", script, *extra, BASE],
        capture_output=True, text=True, check=True,
    ).stdout
    requests = next(line for line in out.splitlines() if "requests in" in line)
    return int(requests.split()[0]), out


JUNK = r"""
local long = "/" .. string.rep("x", 4096)
-- A method Lbasedb has no use for (wrk checks requests against the
-- methods its HTTP parser knows).
local method = "PROPFIND"
local reqs = {
  "GET /api/proxy/version HTTP/1.1\r\nHost: x\r\n\r\n",
  "GET /api/proxy/size?feed=xy HTTP/1.1\r\nHost: x\r\nAuthorization: Token lbp_0000000000000000000000000000000000000000\r\n\r\n",
  "GET /api/proxy/nothing HTTP/1.1\r\nHost: x\r\n\r\n",
  "GET " .. long .. " HTTP/1.1\r\nHost: x\r\n\r\n",
  method .. " /api/proxy/data HTTP/1.1\r\nHost: x\r\n\r\n",
  "GET /admin/login/ HTTP/1.1\r\nHost: x\r\nUser-Agent: " .. string.rep("u", 2000) .. "\r\n\r\n",
}
local pipeline = ""
for i = 1, 16 do pipeline = pipeline .. reqs[(i % #reqs) + 1] end
request = function() return pipeline end
"""

LOGINS = r"""
local n = 0
request = function()
  n = n + 1
  local body = '{"username":"nobody-' .. math.random(1, 1e9) .. '-' .. n .. '","password":"guess"}'
  local headers = {["Content-Type"] = "application/json",
                   ["X-Forwarded-For"] = "198.51.100." .. (n % 3)}
  return wrk.format("POST", "/api/auth/token/", headers, body)
end
"""


def junk(duration):
    with tempfile.TemporaryDirectory() as tmp:
        data, log = os.path.join(tmp, "data"), os.path.join(tmp, "serve.log")
        process = serve(data, log)
        try:
            script = os.path.join(tmp, "junk.lua")
            open(script, "w").write(JUNK)
            time.sleep(1)
            db0, log0 = sizes(data, log)
            requests, _ = wrk(script, 3, duration)
            time.sleep(2)  # the audit writes each second's counts when it is over
            db1, log1 = sizes(data, log)
            rows = audit_rows(data)
        finally:
            process.terminate()
            process.wait()
        print(json.dumps({
            "flood": "junk without credentials, 3 connections pipelined 16 deep",
            "seconds": duration,
            "requests": requests,
            "database_growth_bytes": db1 - db0,
            "log_growth_bytes": log1 - log0,
            "audit_rows": rows[0],
            "audit_requests_counted": rows[1],
        }, indent=2))


def logins(duration):
    with tempfile.TemporaryDirectory() as tmp:
        data, log = os.path.join(tmp, "data"), os.path.join(tmp, "serve.log")
        process = serve(data, log, {"TRUSTED_PROXIES": "127.0.0.1"})
        try:
            return flood_logins(tmp, process, duration)
        finally:
            process.terminate()
            process.wait()


def flood_logins(tmp, process, duration):
    script = os.path.join(tmp, "logins.lua")
    open(script, "w").write(LOGINS)
    idle = peak_kib(process.pid)
    times, failures = [], []
    stop = threading.Event()

    def valid():
        body = json.dumps({"username": "admin", "password": PASSWORD}).encode()
        while not stop.is_set():
            # A session login: a token per login would soon meet
            # MAX_TOKENS_PER_USER.
            request = urllib.request.Request(
                f"{BASE}/api/auth/login/", data=body,
                headers={"Content-Type": "application/json",
                         "X-Forwarded-For": "203.0.113.7"},
            )
            started = time.monotonic()
            try:
                urllib.request.urlopen(request, timeout=10)
                times.append(time.monotonic() - started)
            except Exception as err:
                failures.append(str(err))
            time.sleep(0.25)

    timer = threading.Thread(target=valid)
    time.sleep(0.5)
    timer.start()
    requests, out = wrk(script, 256, duration)
    stop.set()
    timer.join()
    peak = peak_kib(process.pid)
    print(json.dumps({
        "flood": "logins for new usernames, 256 connections, 3 addresses",
        "seconds": duration,
        "attempts": requests,
        "flood_refused_or_failed": next(
            (l.split(":")[1].strip() for l in out.splitlines() if "Non-2xx" in l), "0"),
        "peak_memory_kib": peak,
        "idle_peak_kib": idle,
        "valid_logins": len(times),
        "valid_login_failures": failures[:5],
        "valid_login_seconds_median": round(statistics.median(times), 4) if times else None,
        "valid_login_seconds_max": round(max(times), 4) if times else None,
    }, indent=2))


if __name__ == "__main__":
    ensure_wrk()
    mode = sys.argv[1] if len(sys.argv) > 1 else "junk"
    duration = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 60
    {"junk": junk, "logins": logins}[mode](duration)
