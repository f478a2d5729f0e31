#!/usr/bin/env python3
"""Does a purge of the audit hold requests up? `serve` (release build,
embedded defaults, SQLite) is started once to make its database, stopped,
given ROWS audit rows 100 days old (straight into the SQLite file), and
started again with wrk already waiting: the retention's purge runs as it
starts (a batch of 10,000 rows a statement), while wrk (c=8, GET
/api/proxy/version with a token) measures each request's latency. Then the
same with the rows recent and AUDIT_MAX_ROWS below them (the budget's
purge, a minute's first tick). Prints wrk's latency and how long the purge
took (from the log).

Usage: python3 bench/audit_purge.py [ROWS]   (1,000,000 by default)
"""

import os
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flood  # noqa: E402
from memory import token  # noqa: E402

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000


def fill(database, days_old):
    db = sqlite3.connect(database)
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - days_old * 86400))
    row = (at, "bulk", "abcd1234", "192.0.2.1", "version", "GET", None, 200, 0, 20, 0.5, 1)
    db.executemany(
        "INSERT INTO access_log (at, username, credential, client, endpoint, method, feed, status, "
        "bytes_in, bytes_out, duration_ms, requests) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (row for _ in range(ROWS)),
    )
    db.commit()
    db.close()


def run(data, env, label):
    log = os.path.join(data, f"log-{label}")
    process = flood.serve(data, log, env)
    try:
        key = token()
        started = time.monotonic()
        out = subprocess.run(
            ["wrk", "-t1", "-c8", "-d20s", "--latency", "-H", f"Authorization: Token {key}",
             f"{flood.BASE}/api/proxy/version"], capture_output=True, text=True, check=True).stdout
        lines = [l for l in out.splitlines() if "Latency" in l or "99%" in l or "Requests/sec" in l]
        print(f"{label}: {' | '.join(l.strip() for l in lines)} ({time.monotonic() - started:.0f} s)")
        count = sqlite3.connect(os.path.join(data, "db.sqlite3")).execute(
            "SELECT COUNT(*) FROM access_log WHERE username = 'bulk'").fetchone()[0]
        print(f"{label}: {count} of the {ROWS} rows left; log: "
              + " / ".join(l.strip()[-90:] for l in open(log) if "purged" in l))
    finally:
        process.terminate()
        process.wait()


def main():
    flood.ensure_wrk()
    with tempfile.TemporaryDirectory() as data:
        first = flood.serve(data, os.path.join(data, "log-0"))
        first.terminate()
        first.wait()
        database = os.path.join(data, "db.sqlite3")
        fill(database, 100)
        run(data, {}, "retention purge")
        fill(database, 0)
        run(data, {"AUDIT_MAX_ROWS": "1000"}, "budget purge")


if __name__ == "__main__":
    main()
