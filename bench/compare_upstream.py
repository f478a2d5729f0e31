#!/usr/bin/env python3
"""Sends the same requests to two Lbasedb servers and prints every answer
that differs: status, content type, body (JSON compared as data, lists of
feeds and columns as sets). Run by hand, against the real server and the
embedded one, e.g.

    DATA_PATH=/tmp/real PORT=18080 ./lbasedb-api &
    lbasedb-proxy lbasedb --open --bind 127.0.0.1:18081 --data /tmp/ours &
    python3 bench/compare_upstream.py http://127.0.0.1:18080 http://127.0.0.1:18081

Each server must start empty. Exits 1 when an answer differs other than in
the differences docs/architecture.md ("The embedded Lbasedb") lists as
deliberate.
"""

import json
import sys
import urllib.error
import urllib.request

# (method, path and query, body: JSON value, bytes, or None)
CASES = [
    ("GET", "/version", None),
    ("GET", "/nope", None),
    ("PUT", "/feed", None),
    ("POST", "/feed", {"name": "xy"}),
    ("POST", "/feed", {"name": "xy"}),
    ("POST", "/feed", {"name": "bad name"}),
    ("POST", "/feed", {}),
    ("POST", "/feed", b"not json"),
    ("GET", "/feed", None),
    ("POST", "/col?feed=xy", {"name": "x", "datatype": "Int64"}),
    ("POST", "/col?feed=xy", {"name": "y", "datatype": "Float64"}),
    ("POST", "/col?feed=xy", {"name": "b", "datatype": "Bytes[4]"}),
    ("POST", "/col?feed=xy", {"name": "z"}),
    ("POST", "/col?feed=nope", {"name": "z", "datatype": "Int64"}),
    ("POST", "/col", {"name": "z", "datatype": "Int64"}),
    ("GET", "/col?feed=xy", None),
    ("GET", "/col?feed=nope", None),
    ("GET", "/col", None),
    ("PATCH", "/col?feed=xy", {"name": "w"}),
    ("DELETE", "/col?feed=xy", None),
    ("PATCH", "/col?feed=xy&name=nope", {"name": "w"}),
    ("GET", "/size?feed=xy", None),
    ("GET", "/size", None),
    ("PUT", "/size?feed=xy", {"size": 2}),
    ("PUT", "/size?feed=xy", {"size": -1}),
    ("GET", "/size?feed=xy", None),
    ("POST", "/data?feed=xy", {"x": [1, 2], "y": [0.5, 1.5], "b": ["AQIDBA==", "BQYHCA=="]}),
    ("POST", "/data?feed=xy&col=x", {"x": [3]}),
    ("POST", "/data?feed=xy&feed=xy", {"x": [3]}),
    ("POST", "/data", {"x": [3]}),
    ("POST", "/data?feed=nope", {"x": [3]}),
    ("GET", "/data?feed=xy&ix=0&size=4&col[]=x", None),
    ("GET", "/data?feed=xy&ix=0&size=4&col=y", None),
    ("GET", "/data?feed=xy&ix=0&size=4&col%5B%5D=b", None),
    ("GET", "/data?feed=xy&ix=0&size=4", None),
    ("GET", "/data?feed=xy&size=4&col=x", None),
    ("GET", "/data?feed=xy&ix=0&col=x", None),
    ("GET", "/data?feed=xy&ix=abc&size=1&col=x", None),
    ("GET", "/data?feed=xy&ix=3&size=4&col=x", None),
    ("GET", "/data?ix=0&size=1", None),
    ("PUT", "/data?feed=xy&ix=1", {"x": [9]}),
    ("PUT", "/data?feed=xy", {"x": [9]}),
    ("PATCH", "/data?feed=xy&ix=0", {"y": [7.25]}),
    ("PATCH", "/data?feed=xy", {"y": [7.25]}),
    ("GET", "/data?feed=xy&ix=0&size=4&col=x&col=y", None),
    ("GET", "/bytes?feed=xy&ix=0&size=4&col[]=x&col[]=y", None),
    ("GET", "/bytes?feed=xy&ix=0&size=4", None),
    ("GET", "/bytes?feed=xy&ix=0&col=x", None),
    ("GET", "/bytes?feed=xy&size=1&col=x", None),
    ("GET", "/bytes?feed=xy&ix=zz&size=1&col=x", None),
    ("POST", "/bytes?feed=xy&col[]=x", (5).to_bytes(8, "little")),
    ("POST", "/bytes?feed=xy", (5).to_bytes(8, "little")),
    ("PUT", "/bytes?feed=xy&ix=0&col=x", (6).to_bytes(8, "little")),
    ("PUT", "/bytes?feed=xy&col=x", (6).to_bytes(8, "little")),
    ("PATCH", "/bytes?feed=xy&ix=1&col=x", (7).to_bytes(8, "little")),
    ("DELETE", "/bytes?feed=xy&ix=0&size=1&col=y", None),
    ("DELETE", "/bytes?feed=xy&ix=0&col=y", None),
    ("GET", "/bytes?feed=xy&ix=0&size=5&col=x&col=y", None),
    ("GET", "/raw?feed=xy&col=x&ix=0&size=16", None),
    ("GET", "/raw?feed=xy&col=x&ix=0", None),
    ("GET", "/raw?feed=xy&col=x", None),
    ("POST", "/raw?feed=xy&col=x&ix=8", (11).to_bytes(8, "little")),
    ("GET", "/raw?feed=xy&col=x&ix=0&size=40", None),
    ("PUT", "/raw?feed=xy&col=x&ix=0", None),
    ("PATCH", "/col?feed=xy&name=b", {"name": "c"}),
    ("DELETE", "/col?feed=xy&name=c", None),
    ("GET", "/col?feed=xy", None),
    ("PATCH", "/feed?name=xy", {"name": "zz"}),
    ("PATCH", "/feed", {"name": "zz"}),
    ("GET", "/feed", None),
    ("DELETE", "/feed?name=nope", None),
    ("DELETE", "/feed", None),
    ("DELETE", "/feed?name=zz", None),
    ("GET", "/feed", None),
]


def send(base, method, path, body):
    data, headers = None, {}
    if isinstance(body, bytes):
        data = body
        headers["content-type"] = "application/octet-stream"
        if body == b"not json":
            headers["content-type"] = "application/json"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("content-type"), response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("content-type"), err.read()
    except Exception as err:  # the real server's worker panics on some input
        return "no answer", None, str(err).encode()


def comparable(path, body):
    try:
        value = json.loads(body)
    except ValueError:
        return body
    if isinstance(value, list) and path.split("?")[0] in ("/feed", "/col"):
        return sorted(json.dumps(v, sort_keys=True) for v in value)
    return value


def main():
    real, ours = sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/")
    differences = 0
    for method, path, body in CASES:
        a = send(real, method, path, body)
        b = send(ours, method, path, body)
        same_status = a[0] == b[0]
        same_body = comparable(path, a[2]) == comparable(path, b[2])
        # The embedded server types binary answers; the real one does not.
        same_type = a[1] == b[1] or (a[1] is None and b[1] == "application/octet-stream")
        if same_status and same_body and same_type:
            print(f"same  {method:6} {path}")
            continue
        differences += 1
        print(f"DIFF  {method:6} {path}")
        print(f"      real: {a[0]} {a[1]} {a[2][:200]!r}")
        print(f"      ours: {b[0]} {b[1]} {b[2][:200]!r}")
    print(f"{len(CASES)} requests, {differences} different")
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
