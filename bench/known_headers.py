#!/usr/bin/env python3
"""The proxy's resident memory while one signed-in user sends N proxied
requests whose `Cookie` headers all differ (their session cookie and one
extra cookie that changes): each header is learned by `KnownSessions`, whose
memory is bounded (docs/security.md, "known session headers"). Prints the
growth of VmRSS after each quarter of the requests.

    python3 bench/known_headers.py [PROXY_BIN] [N]
"""
import http.client, json, os, subprocess, sys, tempfile, time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/lbasedb-proxy"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
UP, PX = 18960, 18961
work = tempfile.mkdtemp()
up = subprocess.Popen([BIN, "lbasedb", "--bind", f"127.0.0.1:{UP}", "--data", f"{work}/up", "--open"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
env = dict(os.environ, BIND=f"127.0.0.1:{PX}", DATA_DIR=f"{work}/p", LBASEDB_URL=f"http://127.0.0.1:{UP}",
           LBASEDB_PROXY_SUPERUSER_PASSWORD="bench-0123456789", RUST_LOG="warn")
px = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    conn = None
    for _ in range(100):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", PX, timeout=10)
            conn.request("POST", "/api/auth/login/", json.dumps({"username": "admin", "password": "bench-0123456789"}),
                         {"Content-Type": "application/json"})
            login = conn.getresponse()
            break
        except OSError:
            time.sleep(0.2)
    login.read()
    session = next(c.split(";")[0] for k, c in login.getheaders()
                   if k.lower() == "set-cookie" and c.startswith("sessionid="))

    def rss_kb():
        with open(f"/proc/{px.pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

    def get(cookie):
        conn.request("GET", "/api/proxy/version", headers={"Cookie": cookie})
        answer = conn.getresponse()
        answer.read()
        return answer.status

    for _ in range(200):
        get(session)
    base, growth, refused = rss_kb(), [], 0
    for i in range(N):
        refused += get(f"{session}; z{i}=pppppppppppppppppppp") != 200
        if (i + 1) % (N // 4) == 0:
            growth.append(rss_kb() - base)
    print(f"{N} distinct headers: VmRSS growth per quarter {growth} kB, {refused} refused")
finally:
    px.kill()
    up.kill()
    subprocess.run(["rm", "-rf", work])
