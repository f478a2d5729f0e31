#!/usr/bin/env python3
"""The load test: the upstream straight, nginx's plain proxy_pass, and
lbasedb-proxy, side by side in one run, with memory.

Builds the release binary, starts the embedded Lbasedb as its own process
(`lbasedb-proxy lbasedb`, or the real server with --upstream-bin), nginx
(Debian's nginx-light, installed when missing: one worker, proxy_pass with
HTTP/1.1 keepalive 32, no buffering either way, no authentication) and the
proxy in front of it, fills feed `xy` with 1,000,000 rows of two Float64
columns, makes a user with grants on `xy` and a token (and a session), then
runs each workload with wrk against the three in turn, ROUNDS times (5;
--rounds N), and reports each one's median req/s, its spread (min-max) and
its median ratio to the upstream straight measured in the same round.
Workload 1 is also sent with no credentials, refused (401) before the
upstream: the cost of the proxy's own path without the upstream round trip.
Prints a table and writes target/bench/results.json and chart.svg.

Usage: python3 bench/run.py [--quick] [--small] [--grants] [--replicas N] [--database postgres://…]
                            [--rounds N] [--upstream-bin PATH] [--proxy-bin PATH] [--log LEVEL]
  --proxy-bin  the lbasedb-proxy binary to measure (default: this tree's,
               built in release mode first): to compare an older build
  --log        the proxy's RUST_LOG (default `info`, its own default: an
               access-log line a request, written to a file)
  --quick      shorter runs, for a smoke test
  --grants     workload 5 only: a small read (10 rows of one column, c=32)
               with a token whose user holds the feed whole, only the
               column, or the column over the last 500,000 rows: what a
               fine-grained grant's check costs (docs/grants.md)
  --small      workload 1 only (as with --database or --replicas), on SQLite
  --database   a PostgreSQL server (its URL, any database on it): the proxy's
               database becomes a fresh one made there (dropped after)
  --replicas   N `serve` processes on that database, one upstream; wrk's
               connections are spread over them
With --small, --database or --replicas only workload 1 runs (the small requests,
token and session, c=1 and c=32), written to results-<database>-<N>.json.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "lbasedb-proxy")
OUT = os.path.join(ROOT, "target", "bench")
UP_PORT, PROXY_PORT = 18080, 18000
ROWS = 1_000_000
QUICK = "--quick" in sys.argv


def flag(name, default=None):
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default


REPLICAS = int(flag("--replicas", "1"))
ROUNDS = int(flag("--rounds", "2" if QUICK else "5"))
UPSTREAM_BIN = flag("--upstream-bin")
PROXY_BIN = flag("--proxy-bin")
BIN = os.path.abspath(PROXY_BIN) if PROXY_BIN else BIN
NGINX_PORT = 18001
DATABASE = flag("--database")
SMALL_ONLY = "--small" in sys.argv or REPLICAS > 1 or DATABASE is not None
GRANTS_ONLY = "--grants" in sys.argv
# The proxy's RUST_LOG: its default (`info`, an access-log line a request,
# written to a file) unless --log says otherwise (`warn`: no access log).
LOG = flag("--log", "info")


def run(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def ensure_wrk():
    if shutil.which("wrk") and shutil.which("nginx"):
        return
    print("installing wrk and nginx-light (Debian packages)...", flush=True)
    run("apt-get", "update", "-qq")
    run("apt-get", "install", "-y", "-qq", "wrk", "nginx-light")


NGINX_CONF = """
worker_processes 1;
daemon off;
user root;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    upstream lbasedb {{
        server 127.0.0.1:{up};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        location / {{
            proxy_pass http://lbasedb;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
}}
"""


def start_nginx(work):
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(work=work, up=UP_PORT, port=NGINX_PORT))
    return subprocess.Popen([shutil.which("nginx"), "-c", conf, "-p", work],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(url):
    for _ in range(100):
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} never became ready")


def request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.status, r.headers, r.read()


def status_field(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """User and system CPU time of a process so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid):
    """CPU time of a process and its children (nginx's master and worker)."""
    total = cpu_seconds(pid)
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            total += sum(cpu_seconds(int(child)) for child in f.read().split())
    return total


def reset_peak(pid):
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


WRK_LUA = """
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.method = os.getenv("BENCH_METHOD")
if f then wrk.body = f:read("*a"); f:close() end
wrk.headers["Content-Type"] = "application/json"
"""


def make_database(server):
    """A fresh database on the PostgreSQL server `server` names; its URL."""
    base = server.rsplit("/", 1)[0]
    name = f"lbasedb_bench_{os.getpid()}"
    run("psql", server, "-q", "-c", f"CREATE DATABASE {name}")
    return f"{base}/{name}"


def drop_database(url):
    base, name = url.rsplit("/", 1)
    subprocess.run(["psql", f"{base}/postgres", "-q", "-c", f"DROP DATABASE IF EXISTS {name}"], check=False)


def wrk_spread(urls, connections, seconds, **kw):
    """wrk against each replica at once, the connections spread over them
    (c=1 goes to the first alone): the sum of their rates, the worst of
    their latencies."""
    shares = [connections // len(urls) + (i < connections % len(urls)) for i in range(len(urls))]
    jobs = [(u, c) for u, c in zip(urls, shares) if c > 0]
    results = [None] * len(jobs)

    def one(i, url, c):
        results[i] = wrk(url, c, seconds, **kw)

    threads = [threading.Thread(target=one, args=(i, u, c)) for i, (u, c) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if any(r is None for r in results):
        raise SystemExit("a wrk run failed")
    return {"rps": sum(r["rps"] for r in results), "requests": sum(r["requests"] for r in results),
            "p50_ms": max(r["p50_ms"] for r in results), "p99_ms": max(r["p99_ms"] for r in results)}


def wrk(url, connections, seconds, headers=(), method="GET", body=None, expect_refusal=False):
    args = ["wrk", "--latency", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "60s"]
    for h in headers:
        args += ["-H", h]
    env = dict(os.environ)
    if method != "GET":
        lua = os.path.join(OUT, "body.lua")
        with open(lua, "w") as f:
            f.write(WRK_LUA)
        args += ["-s", lua]
        env["BENCH_METHOD"] = method
        env["BENCH_BODY"] = body
    out = subprocess.run(args + [url], check=True, capture_output=True, text=True, env=env).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    # A refusal (401) is what the unauthenticated row measures; anything
    # else that is not 2xx, or a socket error, spoils a run.
    if errors or (non2xx and not expect_refusal) or (expect_refusal and (not non2xx or int(non2xx.group(1)) != total)):
        raise SystemExit(f"wrk {url}: unexpected answers\n{out}")
    return {"rps": rps, "requests": total, "p50_ms": pct(50), "p99_ms": pct(99)}


def main():
    ensure_wrk()
    if not PROXY_BIN:
        run("cargo", "build", "--release", "--quiet", cwd=ROOT)
    os.makedirs(OUT, exist_ok=True)
    work = tempfile.mkdtemp(prefix="lbasedb-bench-")
    procs = []
    dropped = []
    try:
        if UPSTREAM_BIN:
            # The real Lbasedb server (lbasedb-api): HOST, PORT, DATA_PATH.
            up_env = dict(os.environ, HOST="127.0.0.1", PORT=str(UP_PORT), DATA_PATH=f"{work}/lbasedb", WORKERS="1")
            up = subprocess.Popen([UPSTREAM_BIN], env=up_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            # Its own budget raised as the proxy's is (below): nginx, which has
            # none, sends it 32 reads of the whole feed at once.
            up = subprocess.Popen([BIN, "lbasedb", "--open", "--bind", f"127.0.0.1:{UP_PORT}", "--data",
                                   f"{work}/lbasedb", "--max-bytes-in-flight", str(64 << 30)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(up)
        nginx_process = start_nginx(work)
        procs.append(nginx_process)
        database = f"{work}/proxy/db.sqlite3"
        if DATABASE:
            database = make_database(DATABASE)
            dropped.append(database)
        replicas = []
        for i in range(REPLICAS):
            env = dict(os.environ, LBASEDB_URL=f"http://127.0.0.1:{UP_PORT}", BIND=f"127.0.0.1:{PROXY_PORT + i}",
                       DATA_DIR=f"{work}/proxy{i or ''}", DATABASE_URL=database, RUST_LOG=LOG,
                       SECRET_KEY="bench-secret-key-shared-by-the-replicas-0123456789",
                       LBASEDB_PROXY_SUPERUSER_PASSWORD="bench-admin-pass",
                       # 32 reads of the whole feed at once pass one user's
                       # half of the default 1 GiB: refused (429), which is
                       # the budget's work, not the throughput measured here.
                       MAX_BYTES_IN_FLIGHT=str(64 << 30))
            log = open(os.path.join(work, f"proxy{i}.log"), "wb")
            replica = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=log)
            procs.append(replica)
            replicas.append(f"http://127.0.0.1:{PROXY_PORT + i}")
            # One at a time: the first migrates and makes the superuser.
            wait_ready(f"{replicas[-1]}/readyz")
        proxy = procs[2]
        direct = f"http://127.0.0.1:{UP_PORT}"
        nginx = f"http://127.0.0.1:{NGINX_PORT}"
        wait_ready(f"{nginx}/version")
        proxied = replicas[0]

        # The user of the load test: grants on xy only, a token and a session.
        denv = dict(os.environ, DATA_DIR=f"{work}/proxy", DATABASE_URL=database,
                    LBASEDB_PROXY_PASSWORD="a-bench-user-password")
        run(BIN, "createuser", "bench", "--grant", "lbasedb.view_data=xy", "--grant", "lbasedb.change_data=xy",
            env=denv, stdout=subprocess.DEVNULL)
        token = subprocess.run([BIN, "createtoken", "bench", "--name", "bench"], env=denv, check=True,
                               capture_output=True, text=True).stdout.strip().splitlines()[-1]
        _, headers, _ = request("POST", f"{proxied}/api/auth/login/",
                                json.dumps({"username": "bench", "password": "a-bench-user-password"}).encode(),
                                {"Content-Type": "application/json"})
        cookies = "; ".join(c.split(";")[0] for c in headers.get_all("Set-Cookie"))
        auth = [f"Authorization: Token {token}"]
        session = [f"Cookie: {cookies}"]
        # Users whose grant on xy names its column x only, or x over the
        # last 500,000 rows (a window counted from the end).
        limited = {}
        for kind, grant in (("token, columns", "lbasedb.view_data=xy[x]"),
                            ("token, window from the end", "lbasedb.view_data=xy[x]@-500000..")):
            name = "bench_" + str(len(limited))
            run(BIN, "createuser", name, "--grant", grant, env=denv, stdout=subprocess.DEVNULL)
            key = subprocess.run([BIN, "createtoken", name], env=denv, check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1]
            limited[kind] = [f"Authorization: Token {key}"]

        # Feed xy: 1,000,000 rows of two Float64 columns (about 38 MB of JSON).
        j = {"Content-Type": "application/json"}
        request("POST", f"{direct}/feed", b'{"name":"xy"}', j)
        for col in ("x", "y"):
            request("POST", f"{direct}/col?feed=xy", json.dumps({"name": col, "datatype": "Float64"}).encode(), j)
        body_path = os.path.join(work, "xy.json")
        with open(body_path, "w") as f:
            json.dump({"x": [i / 3 for i in range(ROWS)], "y": [i / 7 + 0.5 for i in range(ROWS)]}, f)
        with open(body_path, "rb") as f:
            request("POST", f"{direct}/data?feed=xy", f.read(), j)
        body_mb = os.path.getsize(body_path) / 1e6

        short, big, write, many = (2, 3, 6, 3) if QUICK else (5, 6, 12, 6)
        read_path = f"/data?feed=xy&ix=0&size={ROWS}&col[]=x&col[]=y"
        workloads = [
            ("1. GET /version, c=1", "/version", 1, short, "GET", ["token", "session", "no credentials (401)"]),
            ("1. GET /version, c=32", "/version", 32, short, "GET", ["token", "session"]),
            (f"2. big read ({body_mb:.0f} MB), c=1", read_path, 1, big, "GET", ["token"]),
            (f"3. big write ({body_mb:.0f} MB), c=1", "/data?feed=xy&ix=0", 1, write, "PUT", ["token"]),
            (f"4. big reads, c=32", read_path, 32, many, "GET", ["token"]),
        ]
        small_read = "5. small read (10 rows of x), c=32"
        if GRANTS_ONLY:
            workloads = [(small_read, "/data?feed=xy&ix=900000&size=10&col[]=x", 32, short, "GET",
                          ["token", "token, columns", "token, window from the end"])]
        elif SMALL_ONLY:
            workloads = workloads[:2]
        results = {"machine": machine(), "proxy_bin": PROXY_BIN and BIN, "replicas": REPLICAS, "log": LOG, "upstream": "lbasedb-api" if UPSTREAM_BIN else "embedded",
                   "database": "postgresql" if DATABASE else "sqlite", "rows": ROWS, "body_bytes": os.path.getsize(body_path), "workloads": []}
        idle = status_field(proxy.pid, "VmRSS")
        results["proxy_idle_rss_kb"] = idle
        results["rounds"] = ROUNDS
        for name, path, conns, secs, method, kinds in workloads:
            runs = {"direct": [], "nginx": []}
            runs.update({k: [] for k in kinds})
            peaks = []
            for _ in range(ROUNDS):
                # Alternately, so that a slow spell of the machine falls on
                # all of them rather than on one.
                cpu = cpu_seconds(up.pid)
                d = wrk(direct + path, conns, secs, method=method, body=body_path)
                d["cpu_us"] = (cpu_seconds(up.pid) - cpu) * 1e6 / max(d["requests"], 1)
                runs["direct"].append(d)
                cpu = tree_cpu_seconds(nginx_process.pid)
                n = wrk(nginx + path, conns, secs, method=method, body=body_path)
                # nginx's CPU per request: its master and its worker.
                n["cpu_us"] = (tree_cpu_seconds(nginx_process.pid) - cpu) * 1e6 / max(n["requests"], 1)
                n["ratio"] = n["rps"] / d["rps"]
                runs["nginx"].append(n)
                for kind in kinds:
                    reset_peak(proxy.pid)
                    headers = {"token": auth, "session": session, **limited}.get(kind, [])
                    cpu = cpu_seconds(proxy.pid)
                    p = wrk_spread([r + "/api/proxy" + path for r in replicas], conns, secs, headers=headers,
                                   method=method, body=body_path, expect_refusal=kind.startswith("no credentials"))
                    # The proxy's CPU per request (one replica's, with one).
                    p["cpu_us"] = (cpu_seconds(proxy.pid) - cpu) * 1e6 / max(p["requests"], 1)
                    p["ratio"] = p["rps"] / d["rps"]
                    p["peak_rss_kb"] = status_field(proxy.pid, "VmHWM")
                    peaks.append(p["peak_rss_kb"])
                    runs[kind].append(p)
            row = {"workload": name, "connections": conns, "seconds": secs,
                   "runs": {k: summary(v) for k, v in runs.items()}, "peak_rss_kb": max(peaks)}
            results["workloads"].append(row)
            print_row(row, flush=True)
        results["proxy_final_rss_kb"] = status_field(proxy.pid, "VmRSS")
        name = f"results-{results['database']}-{REPLICAS}.json" if SMALL_ONLY else "results.json"
        if GRANTS_ONLY:
            name = "results-grants.json"
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(results, f, indent=2)
        if not SMALL_ONLY and not GRANTS_ONLY:
            with open(os.path.join(OUT, "chart.svg"), "w") as f:
                f.write(chart(results))
        print(f"\nproxy RSS idle {idle} kB, at the end {results['proxy_final_rss_kb']} kB")
        print(f"wrote {OUT}/{name}" + ("" if SMALL_ONLY or GRANTS_ONLY else f" and {OUT}/chart.svg"))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        for database in dropped:
            drop_database(database)
        shutil.rmtree(work, ignore_errors=True)


HEADER_PRINTED = []


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def summary(runs):
    """Median, min and max of req/s (and of the ratio to direct, where
    there is one) over the rounds, and the median p50/p99."""
    rps = [r["rps"] for r in runs]
    out = {"rps": median(rps), "rps_min": min(rps), "rps_max": max(rps),
           "p50_ms": median([r["p50_ms"] for r in runs]), "p99_ms": median([r["p99_ms"] for r in runs]),
           "rounds": runs}
    if "ratio" in runs[0]:
        ratios = [r["ratio"] for r in runs]
        out.update(ratio=median(ratios), ratio_min=min(ratios), ratio_max=max(ratios))
    if "cpu_us" in runs[0]:
        cpu = [r["cpu_us"] for r in runs]
        out.update(cpu_us=median(cpu), cpu_us_min=min(cpu), cpu_us_max=max(cpu))
    return out


def print_row(row, flush=False):
    if not HEADER_PRINTED:
        print("| workload | target | req/s median (min-max) | ratio to direct, median (min-max) | p50 / p99 ms "
              "| CPU µs/request of the one measured, median (min-max) |")
        print("|---|---|---|---|---|---|")
        HEADER_PRINTED.append(1)
    for target, r in row["runs"].items():
        ratio = f"{r['ratio']:.2f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})" if "ratio" in r else ""
        label = target if target in ("direct", "nginx") else f"lbasedb-proxy, {target}"
        f = ".0f" if r["rps_min"] >= 100 else ".2f"
        cpu = f"{r['cpu_us']:.1f} ({r['cpu_us_min']:.1f}-{r['cpu_us_max']:.1f})" if "cpu_us" in r else ""
        print(f"| {row['workload']} | {label} | {r['rps']:{f}} ({r['rps_min']:{f}}-{r['rps_max']:{f}}) | {ratio} | "
              f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} | {cpu} |", flush=flush)
    print(f"| {row['workload']} | lbasedb-proxy peak RSS | {row['peak_rss_kb'] / 1024:.1f} MB | | | |", flush=flush)


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "kernel": os.uname().release}


def chart(results):
    """A bar chart of proxied/direct ratios per workload."""
    bars = [(f"{w['workload']} ({k})", r["ratio"]) for w in results["workloads"]
            for k, r in w["runs"].items() if "ratio" in r]
    width, bar_h, gap, left = 760, 26, 10, 330
    height = 40 + len(bars) * (bar_h + gap) + 30
    scale = (width - left - 60) / 1.2
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="20" font-size="14" font-weight="bold">requests/s through nginx and lbasedb-proxy / direct, medians (1.0 = no overhead)</text>']
    for i, (label, ratio) in enumerate(bars):
        y = 40 + i * (bar_h + gap)
        out.append(f'<text x="10" y="{y + 17}">{label}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{ratio * scale:.1f}" height="{bar_h}" fill="#417690"/>')
        out.append(f'<text x="{left + ratio * scale + 5:.1f}" y="{y + 17}">{ratio:.2f}</text>')
    x1 = left + scale
    out.append(f'<line x1="{x1:.1f}" y1="30" x2="{x1:.1f}" y2="{height - 20}" stroke="#999" stroke-dasharray="4"/>')
    out.append(f'<text x="{x1 - 10:.1f}" y="{height - 5}">1.0</text></svg>')
    return "\n".join(out)


if __name__ == "__main__":
    main()
