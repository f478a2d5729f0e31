#!/usr/bin/env python3
"""The data explorer on a feed of ten million rows: `serve` (release build)
on its embedded defaults, a feed `big` of two Float64 columns (a timestamp
and a wave) appended through the API, then, signed in as the superuser,
the chart of both columns over every row (time per drawing, the points
sent) and a CSV download of a million rows, with the process's resident
memory (VmRSS) before and its peak (VmHWM) after.

Usage: python3 bench/explorer.py [--bin PATH]
"""

import http.cookiejar
import json
import math
import os
import re
import sys
import tempfile
import time
import urllib.request
from array import array

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flood  # noqa: E402  (its serve(), port and password)
from memory import status_kib, token  # noqa: E402

ROWS = 10_000_000
PART = 1_000_000


def api(key, method, path, body=None, content_type="application/json"):
    request = urllib.request.Request(f"{flood.BASE}/api/proxy/{path}", data=body, method=method)
    request.add_header("Authorization", f"Token {key}")
    if body is not None:
        request.add_header("Content-Type", content_type)
    return urllib.request.urlopen(request).status


def make_feed(key):
    api(key, "POST", "feed", json.dumps({"name": "big"}).encode())
    for name in ("x", "y"):
        body = json.dumps({"name": name, "datatype": "Float64"}).encode()
        api(key, "POST", "col?feed=big", body)
    for start in range(0, ROWS, PART):
        xs = array("d", (1_767_225_600.0 + i for i in range(start, start + PART)))
        ys = array("d", (math.sin(i / 200_000) * 100 + (i % 997) / 100 for i in range(start, start + PART)))
        body = xs.tobytes() + ys.tobytes()
        api(key, "POST", "bytes?feed=big&col[]=x&col[]=y", body, "application/octet-stream")


def signed_in():
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{flood.BASE}/admin/login/").read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode(
        {"username": "admin", "password": flood.PASSWORD, "csrfmiddlewaretoken": csrf, "next": "/admin/"}
    ).encode()
    opener.open(urllib.request.Request(f"{flood.BASE}/admin/login/", data=form))
    return opener


def main():
    with tempfile.TemporaryDirectory() as data:
        process = flood.serve(data, os.path.join(data, "log"), {"RUST_LOG": "warn"})
        try:
            key = token()
            started = time.monotonic()
            make_feed(key)
            print(f"{ROWS} rows appended in {time.monotonic() - started:.1f} s "
                  f"(VmHWM {status_kib(process.pid, 'VmHWM')} KiB)")
            browser = signed_in()
            rss = status_kib(process.pid, "VmRSS")
            print(f"before drawing: VmRSS {rss} KiB")
            url = f"{flood.BASE}/account/feeds/big/chart/?y=x&y=y&points=2400"
            for attempt in range(5):
                started = time.monotonic()
                answer = json.load(browser.open(url))
                took = (time.monotonic() - started) * 1000
                print(f"chart of 2 x {ROWS} rows: {took:.0f} ms wall, {answer['elapsed_ms']:.0f} ms "
                      f"in the proxy, {len(answer['rows'])} points a series, "
                      f"VmRSS {status_kib(process.pid, 'VmRSS')} KiB")
            started = time.monotonic()
            size = 0
            with browser.open(f"{flood.BASE}/account/feeds/big/download/?from=0&to=1000000") as csv:
                while chunk := csv.read(1 << 16):
                    size += len(chunk)
            print(f"CSV of 1,000,000 rows: {size} bytes in {time.monotonic() - started:.2f} s")
            print(f"peak: VmHWM {status_kib(process.pid, 'VmHWM')} KiB, "
                  f"now VmRSS {status_kib(process.pid, 'VmRSS')} KiB")
        finally:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
