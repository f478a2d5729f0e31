//! The second attack pass, as tests: what one request, one user, one
//! import or one local process can do to the service around the permission
//! check. Each failed before its fix: a one-feed reader aborting the
//! process with one read, a column made too wide to ever read, a data
//! folder that could never open again, an upstream crash taking the admin
//! down with it, files anyone on the machine could read.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_PASSWORD, Sent, TestApp, admin, client, client_with_authorization, client_with_token,
    get_json, issue_token, spawn_app, spawn_app_on, spawn_app_with,
};
use crate::safety::{UpstreamProcess, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_lbasedb-proxy");

/// The detail of a JSON error answer.
async fn detail(response: reqwest::Response) -> String {
    let body: Value = response.json().await.expect("a JSON body");
    body["detail"].as_str().unwrap_or_default().to_owned()
}

// 1. No request makes the process (or the upstream) allocate without bound.

/// Feed `big`: 10,000,000 rows (sparse files: made at once) of two Float64
/// columns and a `Bytes[64]` one, and a user who may read and zero it.
async fn big_feed(app: &TestApp) -> reqwest::Client {
    app.create_feed("big", &[("x", "Float64"), ("y", "Float64"), ("b", "Bytes[64]")]).await;
    let sized = app
        .upstream_client
        .put(app.direct("size?feed=big"))
        .json(&json!({"size": 10_000_000}))
        .sent()
        .await;
    assert_eq!(sized.status(), 204);
    app.user_granted("reader", &[("lbasedb.view_data", "big"), ("lbasedb.delete_data", "big")]);
    client_with_token(&issue_token(&app.pool, "reader", None))
}

#[tokio::test]
async fn a_one_feed_reader_cannot_make_the_upstream_allocate_past_max_read_bytes() {
    let app = spawn_app().await;
    let reader = big_feed(&app).await;
    let pid = app.embedded.as_ref().and_then(|e| e.pid());
    let named_1000_times = "&col[]=x".repeat(1000);
    let too_big: Vec<(reqwest::Method, String)> = vec![
        // 80 GB: one allocation the storage cannot make, so it aborts.
        (reqwest::Method::GET, format!("bytes?feed=big&ix=0&size=10000000{named_1000_times}")),
        (reqwest::Method::GET, format!("data?feed=big&ix=0&size=10000000{named_1000_times}")),
        // 320 MB: four columns of 80 MB, each named.
        (
            reqwest::Method::GET,
            "data?feed=big&ix=0&size=10000000&col[]=x&col[]=y&col[]=x&col[]=y".into(),
        ),
        (reqwest::Method::GET, "data?feed=big&ix=0&size=10000000&col=x&col=y&col=x&col=y".into()),
        // 640 MB of one wide column, read raw or zeroed.
        (reqwest::Method::GET, "raw?feed=big&col=b&ix=0&size=10000000".into()),
        (reqwest::Method::DELETE, "bytes?feed=big&ix=0&size=10000000&col[]=b".into()),
    ];
    for (method, path) in &too_big {
        let response = reader.request(method.clone(), app.proxy(path)).sent().await;
        assert_eq!(response.status(), 413, "{method} {path}");
        let detail = detail(response).await;
        assert!(detail.contains("MAX_READ_BYTES"), "{detail}");
        // The embedded server refuses on its own, in the upstream's words.
        let direct = app.upstream_client.request(method.clone(), app.direct(path)).sent().await;
        assert_eq!(direct.status(), 400, "direct {method} {path}");
        let body: Value = direct.json().await.unwrap();
        assert_eq!(body["error"], "invalid input parameter", "{body}");
    }
    // Too many columns named is refused before anything is looked up.
    let named_1025_times = "&col[]=x".repeat(1025);
    let response =
        app.get_proxy_as(&reader, &format!("data?feed=big&ix=0&size=1{named_1025_times}")).await;
    assert_eq!(response.status(), 400);
    assert!(detail(response).await.contains("MAX_READ_COLUMNS"));
    // Within the limit, reads are answered as before.
    let fine =
        app.get_proxy_as(&reader, "bytes?feed=big&ix=9999000&size=1000&col[]=x&col[]=b").await;
    assert_eq!(fine.status(), 200);
    assert_eq!(fine.bytes().await.unwrap().len(), 1000 * (8 + 64));
    // Nothing aborted: the same upstream process still serves.
    assert_eq!(app.get_proxy("version").await.status(), 200);
    assert_eq!(app.embedded.as_ref().and_then(|e| e.pid()), pid);
}

#[tokio::test]
async fn a_column_wider_than_max_column_width_is_never_made() {
    let app = spawn_app().await;
    app.create_feed("wide", &[]).await;
    app.user_granted("maker", &[("lbasedb.add_col", "wide")]);
    let maker = client_with_token(&issue_token(&app.pool, "maker", None));
    for datatype in
        ["Bytes[1000000000000]", "String[1000000000000]", "Bytes[1048577]", "Blob", "Text", "Nope"]
    {
        let column = json!({"name": "w", "datatype": datatype});
        let response = maker.post(app.proxy("col?feed=wide")).json(&column).sent().await;
        assert_eq!(response.status(), 400, "{datatype}");
        let detail = detail(response).await;
        if datatype.contains('[') {
            assert!(detail.contains("MAX_COLUMN_WIDTH"), "{datatype}: {detail}");
        }
        let direct =
            app.upstream_client.post(app.direct("col?feed=wide")).json(&column).sent().await;
        assert_eq!(direct.status(), 400, "direct {datatype}");
    }
    let cols: Value = get_json(&app.upstream_client, &app.direct("col?feed=wide")).await;
    assert_eq!(cols, json!([]));
    let widest = json!({"name": "w", "datatype": "Bytes[1048576]"});
    let made = maker.post(app.proxy("col?feed=wide")).json(&widest).sent().await;
    assert_eq!(made.status(), 201);
}

/// A standalone `lbasedb` with these arguments, its port, data and secret.
async fn standalone(data: &std::path::Path, args: &[&str]) -> UpstreamProcess {
    UpstreamProcess::start_with(data, free_port(), args).await
}

/// The application in front of a standalone upstream, with its settings.
async fn app_on(upstream: &UpstreamProcess) -> TestApp {
    let (url, secret) = (upstream.url(), upstream.secret.clone());
    spawn_app_with(move |s| {
        s.lbasedb_url = Some(url);
        s.lbasedb_secret = Some(secret);
    })
    .await
}

#[tokio::test]
async fn a_column_made_too_wide_before_the_limit_is_refused_not_read() {
    // Made where the limit was not: a storage that took it (this one, with
    // the limit raised; the real server takes any width).
    let dir = tempfile::tempdir().unwrap();
    let lax = standalone(dir.path(), &["--max-column-width", "1000000000000"]).await;
    let direct = client_with_authorization(&format!("Bearer {}", lax.secret));
    let made =
        direct.post(format!("{}/feed", lax.url())).json(&json!({"name": "old"})).sent().await;
    assert_eq!(made.status(), 201);
    let wide = json!({"name": "w", "datatype": "Bytes[1000000000000]"});
    let made = direct.post(format!("{}/col?feed=old", lax.url())).json(&wide).sent().await;
    assert_eq!(made.status(), 201);
    let sized =
        direct.put(format!("{}/size?feed=old", lax.url())).json(&json!({"size": 2})).sent().await;
    assert_eq!(sized.status(), 204);

    // The proxy, with its limits, in front of it.
    let app = app_on(&lax).await;
    app.user_granted("reader", &[("lbasedb.view_data", "old"), ("lbasedb.view_feed", "old")]);
    let reader = client_with_token(&issue_token(&app.pool, "reader", None));
    for path in ["data?feed=old&ix=0&size=1&col[]=w", "raw?feed=old&col=w&ix=0&size=1"] {
        let response = app.get_proxy_as(&reader, path).await;
        assert_eq!(response.status(), 413, "{path}");
        assert!(detail(response).await.contains("MAX_COLUMN_WIDTH"));
    }
    // The admin's feed page shows the feed, and why its rows are not.
    let browser = admin(&app).await;
    let (status, page) = browser.get("/admin/lbasedb/feed/old/").await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"preview-refused\"") && page.contains("MAX_COLUMN_WIDTH"), "{page}");
    assert_eq!(get_json(&direct, &format!("{}/version", lax.url())).await["version"], "0.1.10");

    // The same storage served with today's limit refuses it too.
    drop(lax);
    let strict = standalone(dir.path(), &[]).await;
    let direct = client_with_authorization(&format!("Bearer {}", strict.secret));
    let read =
        direct.get(format!("{}/data?feed=old&ix=0&size=1&col[]=w", strict.url())).sent().await;
    assert_eq!(read.status(), 400);
    assert_eq!(get_json(&direct, &format!("{}/version", strict.url())).await["version"], "0.1.10");
}

#[tokio::test]
async fn a_feed_takes_no_column_past_max_columns_per_feed() {
    let app = spawn_app().await;
    app.create_feed("many", &[]).await;
    for i in 0..1024 {
        let column = json!({"name": format!("c{i}"), "datatype": "Int32"});
        let made = app.upstream_client.post(app.direct("col?feed=many")).json(&column).sent().await;
        assert_eq!(made.status(), 201, "column {i}");
    }
    let one_more = json!({"name": "extra", "datatype": "Int32"});
    let response = app.client.post(app.proxy("col?feed=many")).json(&one_more).sent().await;
    assert_eq!(response.status(), 400);
    assert!(detail(response).await.contains("MAX_COLUMNS_PER_FEED"));
    let direct = app.upstream_client.post(app.direct("col?feed=many")).json(&one_more).sent().await;
    assert_eq!(direct.status(), 400);
    let cols: Vec<Value> = get_json(&app.upstream_client, &app.direct("col?feed=many"))
        .await
        .as_array()
        .cloned()
        .unwrap();
    assert_eq!(cols.len(), 1024);
}

/// `lbasedb-proxy <args>` under an open-file limit of `files`, its
/// environment given.
fn limited(files: u32, args: &str, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(format!("ulimit -n {files} && exec {BIN} {args}"));
    for (name, value) in env {
        command.env(name, value);
    }
    command.env_remove("LBASEDB_URL").env_remove("DATABASE_URL").env("RUST_LOG", "warn");
    command
}

/// A data folder holding feed `f` with `cols` Int32 columns.
async fn folder_with_columns(data: &std::path::Path, cols: usize) {
    let upstream = standalone(data, &[]).await;
    let direct = client_with_authorization(&format!("Bearer {}", upstream.secret));
    direct.post(format!("{}/feed", upstream.url())).json(&json!({"name": "f"})).sent().await;
    for i in 0..cols {
        let column = json!({"name": format!("c{i}"), "datatype": "Int32"});
        let made = direct.post(format!("{}/col?feed=f", upstream.url())).json(&column).sent().await;
        assert_eq!(made.status(), 201);
    }
}

#[tokio::test]
async fn a_data_folder_with_more_columns_than_the_file_limit_is_refused_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lbasedb");
    folder_with_columns(&data, 300).await;

    // On its own: a clear error, and the status that says "do not restart".
    let args = format!("lbasedb --open --bind 127.0.0.1:{} --data {}", free_port(), data.display());
    let out = tokio::task::spawn_blocking(move || limited(256, &args, &[]).output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("256") && stderr.contains("ulimit -n"), "{stderr}");

    // Under `serve`: the admin and the API stay up, the proxy says why it
    // cannot serve, and nothing is tried again and again.
    let port = free_port();
    let env = [
        ("BIND", format!("127.0.0.1:{port}")),
        ("DATA_DIR", dir.path().display().to_string()),
        ("LBASEDB_PROXY_SUPERUSER_PASSWORD", ADMIN_PASSWORD.to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut serve =
        limited(256, "serve", &env).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let anon = client();
    let mut up = false;
    for _ in 0..400 {
        if anon.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "serve started");
    let ready = anon.get(format!("{base}/readyz")).sent().await;
    assert_eq!(ready.status(), 503);
    assert!(detail(ready).await.contains("open-file limit"));
    assert_eq!(anon.get(format!("{base}/admin/login/")).sent_status().await, 200);
    let token: Value = anon
        .post(format!("{base}/api/auth/token/"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .sent_json()
        .await;
    let admin = client_with_token(token["token"].as_str().unwrap());
    let proxied = admin.get(format!("{base}/api/proxy/version")).sent().await;
    assert_eq!(proxied.status(), 503);
    assert!(detail(proxied).await.contains("open-file limit"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let metrics = anon.get(format!("{base}/metrics")).sent().await.text().await.unwrap();
    assert!(metrics.contains("lbasedb_proxy_upstream_restarts_total 0"), "{metrics}");
    serve.kill().unwrap();
    serve.wait().unwrap();
}

#[tokio::test]
async fn columns_past_the_file_budget_are_refused_and_connections_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let secret = "a-test-secret-of-32-bytes-or-so!";
    let args = format!(
        "lbasedb --bind 127.0.0.1:{port} --max-connections 100 --data {}",
        dir.path().display()
    );
    let mut server = limited(256, &args, &[("LBASEDB_SECRET", secret)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let direct = client_with_authorization(&format!("Bearer {secret}"));
    for _ in 0..400 {
        if direct.get(format!("{base}/version")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        direct.post(format!("{base}/feed")).json(&json!({"name": "f"})).sent_status().await,
        201
    );
    let mut made = 0;
    let refusal = loop {
        let column = json!({"name": format!("c{made}"), "datatype": "Int32"});
        let response = direct.post(format!("{base}/col?feed=f")).json(&column).sent().await;
        if response.status() != 201 {
            break response;
        }
        made += 1;
        assert!(made < 256, "never refused");
    };
    assert_eq!(refusal.status(), 400);
    let body: Value = refusal.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("open-file limit"), "{body}");
    // Half the limit stays for connections: 100 at once all get answers.
    let answers = futures_util::future::join_all((0..100).map(|_| {
        let client = client_with_authorization(&format!("Bearer {secret}"));
        let url = format!("{base}/col?feed=f");
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    }))
    .await;
    assert!(answers.iter().all(|a| matches!(a, Ok(200))), "{answers:?}");
    assert!(made >= 100, "room was left for columns: {made}");
    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test]
async fn an_upstream_crash_leaves_the_admin_and_the_proxy_standing() {
    // The limits lifted (an operator's mistake): one read aborts the
    // storage's process, as it would have aborted the whole service.
    let app = spawn_app_with(|s| {
        s.limits.max_rows_per_read = u64::MAX;
        s.limits.max_read_bytes = u64::MAX;
        s.limits.max_bytes_in_flight = u64::MAX;
    })
    .await;
    app.create_feed("big", &[("x", "Float64")]).await;
    let written =
        app.client.post(app.proxy("data?feed=big")).json(&json!({"x": [1.5]})).sent().await;
    assert_eq!(written.status(), 204);
    let sized = app
        .client
        .put(app.proxy("size?feed=big"))
        .json(&json!({"size": 1_000_000_000}))
        .sent()
        .await;
    assert_eq!(sized.status(), 204);
    let status = app.embedded.clone().expect("an embedded upstream");
    let pid = status.pid();
    let aborting = format!("bytes?feed=big&ix=0&size=1000000000{}", "&col[]=x".repeat(100));
    let answer = app.get_proxy(&aborting).await;
    assert_eq!(answer.status(), 502, "the upstream died under that read");

    // The admin site and the API never went away.
    let browser = admin(&app).await;
    assert_eq!(browser.get("/admin/").await.0, 200);
    // And the upstream is back, with its data.
    let mut back = false;
    for _ in 0..200 {
        if app.get_proxy("version").await.status() == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "the upstream was started again");
    assert_ne!(status.pid(), pid);
    assert!(status.restarts() >= 1);
    let first: Value =
        app.get_proxy("data?feed=big&ix=0&size=1&col[]=x").await.json().await.unwrap();
    assert_eq!(first, json!({"x": [1.5]}));
    let metrics =
        app.client.get(format!("{}/metrics", app.address)).sent().await.text().await.unwrap();
    assert!(metrics.contains("lbasedb_proxy_upstream_restarts_total 1"), "{metrics}");
}

// 7. What reaches the disk.

#[tokio::test]
async fn lbasedb_on_its_own_keeps_its_files_private() {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("db");
    let upstream = standalone(&data, &[]).await;
    let direct = client_with_authorization(&format!("Bearer {}", upstream.secret));
    direct.post(format!("{}/feed", upstream.url())).json(&json!({"name": "f"})).sent().await;
    let column = json!({"name": "x", "datatype": "Int64"});
    direct.post(format!("{}/col?feed=f", upstream.url())).json(&column).sent().await;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("f")), 0o700);
    for file in [data.join("feed.list"), data.join("f/col.list"), data.join("f/x.col")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    // A folder made before the rule is tightened at the next start.
    drop(upstream);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.join("f/x.col"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let _again = standalone(&data, &[]).await;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("f/x.col")), 0o600);
}

// 4. What a request holds, it holds until it is really done.

/// Feed `big` of 8,000,000 Float64 rows (a 64 MB read: more than the
/// sockets between buffer), made at once.
async fn feed_of_64_mb(app: &TestApp) {
    app.create_feed("big", &[("x", "Float64")]).await;
    let sized = app
        .upstream_client
        .put(app.direct("size?feed=big"))
        .json(&json!({"size": 8_000_000}))
        .sent()
        .await;
    assert_eq!(sized.status(), 204);
}

#[tokio::test]
async fn a_slow_reader_holds_its_place_in_flight_and_cannot_take_the_whole_pool() {
    // One worker with 4 upstream connections: one user may hold 2.
    let app = spawn_app_with(|s| {
        s.workers = Some(1);
        s.upstream_pool_limit = 4;
    })
    .await;
    feed_of_64_mb(&app).await;
    app.user_granted("hog", &[("lbasedb.view_data", "big")]);
    app.user_granted("other", &[("lbasedb.view_data", "big")]);
    let hog = client_with_token(&issue_token(&app.pool, "hog", None));
    let other = client_with_token(&issue_token(&app.pool, "other", None));
    let big = app.proxy("bytes?feed=big&ix=0&size=8000000&col[]=x");
    let small = "size?feed=big";
    // Two answers started and never read.
    let first = hog.get(&big).sent().await;
    let second = hog.get(&big).sent().await;
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    let third = app.get_proxy_as(&hog, small).await;
    assert_eq!(third.status(), 429, "its answers are still being sent: its places are held");
    let metrics = app.client.get(format!("{}/metrics", app.address)).sent().await.text().await;
    assert!(metrics.unwrap().contains("lbasedb_proxy_in_flight_requests 2"));
    // Another user is served at once: the rest of the pool is its.
    let started = std::time::Instant::now();
    assert_eq!(app.get_proxy_as(&other, small).await.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    // The hog's places come back when it lets go of its answers.
    drop(first);
    drop(second);
    let mut served = false;
    for _ in 0..100 {
        if app.get_proxy_as(&hog, small).await.status() == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "the places were given back");
}

/// An upstream that answers every request 204 with `connection: close`,
/// the first write after `delay`, and records when each request came and
/// when it was answered.
struct SlowUpstream {
    url: String,
    events: std::sync::Arc<tokio::sync::Mutex<Vec<String>>>,
}

async fn slow_upstream(delay: Duration) -> SlowUpstream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (listener, url) = crate::helpers::listener().await;
    let events = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let recorded = events.clone();
    let writes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (events, writes) = (recorded.clone(), writes.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then as much body as it says.
                let body_end = loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break end + 4 + length;
                };
                while request.len() < body_end {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line =
                    String::from_utf8_lossy(&request).lines().next().unwrap_or("").to_owned();
                let number = if line.starts_with("GET") {
                    0
                } else {
                    writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
                };
                events.lock().await.push(format!("came {number} {line}"));
                if number == 1 {
                    tokio::time::sleep(delay).await;
                }
                events.lock().await.push(format!("answered {number}"));
                let _ =
                    stream.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    SlowUpstream { url, events }
}

impl SlowUpstream {
    /// The events, as "came N …" and "answered N" in order.
    async fn events(&self) -> Vec<String> {
        self.events.lock().await.clone()
    }

    /// Where in the events `prefix` is first.
    async fn position(&self, prefix: &str) -> Option<usize> {
        self.events().await.iter().position(|e| e.starts_with(prefix))
    }
}

async fn write(app: &TestApp) -> reqwest::Response {
    app.client.post(app.proxy("data?feed=slow")).json(&json!({"x": [1]})).sent().await
}

#[tokio::test]
async fn a_write_answered_504_keeps_its_lock_until_the_upstream_has_answered() {
    let upstream = slow_upstream(Duration::from_millis(1500)).await;
    let app =
        spawn_app_on(&upstream.url, |s| s.response_timeout = Duration::from_millis(300)).await;
    assert_eq!(write(&app).await.status(), 504, "the proxy gave up on the first write");
    // The upstream may still be writing: the next write waits for it.
    assert_eq!(write(&app).await.status(), 204);
    let (answered, second) =
        (upstream.position("answered 1").await, upstream.position("came 2").await);
    assert!(answered.unwrap() < second.unwrap(), "{:?}", upstream.events().await);
}

#[tokio::test]
async fn a_write_whose_client_hangs_up_keeps_its_lock_until_the_upstream_has_answered() {
    let upstream = slow_upstream(Duration::from_millis(1500)).await;
    let app = spawn_app_on(&upstream.url, |_| {}).await;
    // The client sends its write whole, then hangs up while it is written.
    let gone = tokio::time::timeout(Duration::from_millis(500), write(&app)).await;
    assert!(gone.is_err(), "the client gave up first");
    assert!(upstream.position("came 1").await.is_some());
    assert_eq!(write(&app).await.status(), 204);
    let (answered, second) =
        (upstream.position("answered 1").await, upstream.position("came 2").await);
    assert!(answered.unwrap() < second.unwrap(), "{:?}", upstream.events().await);
}

#[tokio::test]
async fn a_write_the_upstream_never_answers_is_reported_in_doubt_and_lets_go() {
    let upstream = slow_upstream(Duration::from_secs(30)).await;
    let app = spawn_app_on(&upstream.url, |s| {
        s.response_timeout = Duration::from_millis(300);
        s.write_doubt_timeout = Duration::from_millis(700);
    })
    .await;
    let started = std::time::Instant::now();
    assert_eq!(write(&app).await.status(), 504);
    assert_eq!(write(&app).await.status(), 204);
    // Held for the response timeout and the doubt timeout, then let go.
    assert!(started.elapsed() >= Duration::from_millis(1000), "{:?}", started.elapsed());
    assert_eq!(upstream.position("answered 1").await, None);
    let metrics = app.client.get(format!("{}/metrics", app.address)).sent().await.text().await;
    assert!(metrics.unwrap().contains("lbasedb_proxy_writes_in_doubt_total 1"));
}
