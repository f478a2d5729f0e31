#!/usr/bin/env python3
"""What the process takes in memory: `serve` (release build) on its embedded
defaults and a fresh data folder, idle (VmRSS 2 s after it is ready) and at
its peak (VmHWM) after 10 s of wrk, 32 connections, `GET /api/proxy/version`
with a token; then the same on a PostgreSQL database when DATABASE_URL is
given. Also what shared libraries the binary loads (ldd).

Usage: python3 bench/memory.py [--bin PATH] [--postgres URL]
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flood  # noqa: E402  (its serve(), port and password)


def status_kib(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def token():
    body = json.dumps({"username": "admin", "password": flood.PASSWORD}).encode()
    request = urllib.request.Request(
        f"{flood.BASE}/api/auth/token/", data=body, headers={"Content-Type": "application/json"}
    )
    return json.load(urllib.request.urlopen(request))["token"]


def measure(env):
    with tempfile.TemporaryDirectory() as data:
        process = flood.serve(data, os.path.join(data, "log"), env)
        try:
            time.sleep(2)
            idle = status_kib(process.pid, "VmRSS")
            key = token()
            subprocess.run(
                ["wrk", "-t2", "-c32", "-d10s", "-H", f"Authorization: Token {key}",
                 f"{flood.BASE}/api/proxy/version"],
                capture_output=True, check=True,
            )
            return idle, status_kib(process.pid, "VmHWM")
        finally:
            process.terminate()
            process.wait()


def main():
    flood.ensure_wrk()
    libs = subprocess.run(["ldd", flood.BIN], capture_output=True, text=True).stdout.split("\n")
    names = sorted(line.split()[0] for line in libs if "=>" in line)
    print(f"{flood.BIN}: {len(names)} shared libraries: {' '.join(names)}")
    idle, peak = measure({})
    print(f"SQLite: idle {idle} KiB, peak {peak} KiB")
    postgres = flood.flag("--postgres")
    if postgres:
        idle, peak = measure({"DATABASE_URL": postgres})
        print(f"PostgreSQL: idle {idle} KiB, peak {peak} KiB")


if __name__ == "__main__":
    main()
