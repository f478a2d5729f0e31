#!/usr/bin/env python3
"""How much the audit costs the disk. `serve` (release build, embedded
defaults, SQLite, RUST_LOG=info) on a fresh data folder; two users, each
granted one of two feeds, read their feed at full speed for DURATION
seconds (two wrk processes, c=16 each, `GET /api/proxy/data?...` with a
token). Prints the requests made, the audit's rows and the requests they
count (which must be the requests wrk saw end, give or take those in flight
when it stopped), and how much the database (with its -wal) and the log
grew, in all and per million requests. Once with the defaults
(AUDIT_DETAIL=minutes), once with AUDIT_DETAIL=requests, once with
AUDIT_LOG=json.

Usage: python3 bench/audit_growth.py [DURATION] [--only minutes|requests|json]
"""

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flood  # noqa: E402
from memory import token  # noqa: E402

DURATION = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 60
USER_PASSWORD = "a-long-enough-password-for-both"
SETTINGS = {
    "minutes": {},
    "requests": {"AUDIT_DETAIL": "requests"},
    "json": {"AUDIT_LOG": "json"},
}


def api(key, method, path, body=None):
    request = urllib.request.Request(
        f"{flood.BASE}/api/proxy/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Token {key}", "Content-Type": "application/json"},
    )
    return urllib.request.urlopen(request).read()


def user_token(username):
    body = json.dumps({"username": username, "password": USER_PASSWORD}).encode()
    request = urllib.request.Request(
        f"{flood.BASE}/api/auth/token/", data=body, headers={"Content-Type": "application/json"}
    )
    return json.load(urllib.request.urlopen(request))["token"]


def set_up(data):
    """Two feeds of 1,000 rows, two users with a token each."""
    admin = token()
    for feed in ["fa", "fb"]:
        api(admin, "POST", "feed", {"name": feed})
        api(admin, "POST", f"col?feed={feed}", {"name": "x", "datatype": "Int64"})
        api(admin, "POST", f"data?feed={feed}", {"x": list(range(1000))})
    keys = {}
    for user, feed in [("alice", "fa"), ("bob", "fb")]:
        environ = dict(os.environ, DATA_DIR=data, LBASEDB_PROXY_PASSWORD=USER_PASSWORD)
        environ.pop("DATABASE_URL", None)
        subprocess.run(
            [flood.BIN, "createuser", user, "--grant", f"lbasedb.view_data={feed}"],
            env=environ, check=True, capture_output=True,
        )
        keys[user] = user_token(user)
    return keys


def disk(data):
    database = os.path.join(data, "db.sqlite3")
    return sum(os.path.getsize(p) for p in [database, database + "-wal"] if os.path.exists(p))


def run(label, env):
    with tempfile.TemporaryDirectory() as data:
        log = os.path.join(data, "log")
        process = flood.serve(data, log, env)
        try:
            keys = set_up(data)
            time.sleep(3)
            database, logged = disk(data), os.path.getsize(log)
            loads = [
                subprocess.Popen(
                    ["wrk", "-t1", "-c16", f"-d{DURATION}s", "-H", f"Authorization: Token {key}",
                     f"{flood.BASE}/api/proxy/data?feed={feed}&ix=0&size=10&col=x"],
                    stdout=subprocess.PIPE, text=True)
                for key, feed in [(keys["alice"], "fa"), (keys["bob"], "fb")]
            ]
            made = 0
            for load in loads:
                out = load.communicate()[0]
                line = next(l for l in out.splitlines() if "requests in" in l)
                made += int(line.split()[0])
            time.sleep(3)
            grown, log_grown = disk(data) - database, os.path.getsize(log) - logged
            db = sqlite3.connect(os.path.join(data, "db.sqlite3"))
            rows, counted = db.execute(
                "SELECT COUNT(*), SUM(requests) FROM access_log WHERE username IN ('alice', 'bob')"
            ).fetchone()
            db.close()
        finally:
            process.terminate()
            process.wait()
    per_million = 1e6 / made
    print(f"{label}: {made} requests in {DURATION} s ({made / DURATION:.0f}/s); audit: {rows} rows "
          f"counting {counted} requests; database +{grown / 1e6:.3f} MB "
          f"({grown * per_million / 1e6:.3f} MB per million requests); log +{log_grown / 1e6:.1f} MB "
          f"({log_grown * per_million / 1e6:.1f} MB per million)")


def main():
    flood.ensure_wrk()
    only = flood.flag("--only")
    for label, env in SETTINGS.items():
        if only in (None, label):
            run(label, env)


if __name__ == "__main__":
    main()
