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

use lbasedb_proxy::auth::password;
use lbasedb_proxy::auth::users::UserSpec;
use lbasedb_proxy::db::queries;

use crate::helpers::{
    ADMIN_PASSWORD, Sent, TestApp, USER_PASSWORD, admin, client, client_with_authorization,
    client_with_token, client_without_cookies, create_group, create_user, get_json, issue_token,
    log_in, spawn_app, spawn_app_on, spawn_app_with, spec,
};
use crate::safety::{UpstreamProcess, app_on, free_port};

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
    app.create_sized_feed(
        "big",
        &[("x", "Float64"), ("y", "Float64"), ("b", "Bytes[64]")],
        10_000_000,
    )
    .await;
    app.client_granted("reader", &[("lbasedb.view_data", "big"), ("lbasedb.delete_data", "big")])
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
    let maker = app.client_granted("maker", &[("lbasedb.add_col", "wide")]);
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

#[tokio::test]
async fn a_column_made_too_wide_before_the_limit_is_refused_not_read() {
    // Made where the limit was not: a storage that took it (this one, with
    // the limit raised; the real server takes any width).
    let dir = tempfile::tempdir().unwrap();
    let lax = standalone(dir.path(), &["--max-column-width", "100000000000"]).await;
    let direct = client_with_authorization(&format!("Bearer {}", lax.secret));
    let made =
        direct.post(format!("{}/feed", lax.url())).json(&json!({"name": "old"})).sent().await;
    assert_eq!(made.status(), 201);
    let wide = json!({"name": "w", "datatype": "Bytes[100000000000]"});
    let made = direct.post(format!("{}/col?feed=old", lax.url())).json(&wide).sent().await;
    assert_eq!(made.status(), 201);
    let sized =
        direct.put(format!("{}/size?feed=old", lax.url())).json(&json!({"size": 2})).sent().await;
    assert_eq!(sized.status(), 204);

    // The proxy, with its limits, in front of it.
    let app = app_on(&lax).await;
    let reader =
        app.client_granted("reader", &[("lbasedb.view_data", "old"), ("lbasedb.view_feed", "old")]);
    for path in ["data?feed=old&ix=0&size=1&col[]=w", "raw?feed=old&col=w&ix=0&size=1"] {
        let response = app.get_proxy_as(&reader, path).await;
        assert_eq!(response.status(), 413, "{path}");
        assert!(detail(response).await.contains("MAX_COLUMN_WIDTH"));
    }
    // The admin's feed page shows the feed, and why its rows are not.
    let browser = admin(&app).await;
    let (status, page) = browser.get("/admin/lbasedb/feed/old/").await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"rows-refused\"") && page.contains("MAX_COLUMN_WIDTH"), "{page}");
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
    // Once the embedded server has failed its check (until then, 503
    // "starting"), the reason.
    let mut said = String::new();
    for _ in 0..200 {
        let ready = anon.get(format!("{base}/readyz")).sent().await;
        assert_eq!(ready.status(), 503);
        said = detail(ready).await;
        if said.contains("open-file limit") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(said.contains("open-file limit"), "{said}");
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
    app.create_sized_feed("big", &[("x", "Float64")], 8_000_000).await;
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
    let hog = app.client_granted("hog", &[("lbasedb.view_data", "big")]);
    let other = app.client_granted("other", &[("lbasedb.view_data", "big")]);
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

#[tokio::test]
async fn one_reader_cannot_hold_the_whole_budget_of_bytes_in_flight() {
    let app = spawn_app_with(|s| s.limits.max_bytes_in_flight = 128 << 20).await;
    feed_of_64_mb(&app).await;
    let hog = app.client_granted("hog", &[("lbasedb.view_data", "big")]);
    let other = app.client_granted("other", &[("lbasedb.view_data", "big")]);
    let big = app.proxy("bytes?feed=big&ix=0&size=8000000&col[]=x");
    let held = hog.get(&big).sent().await;
    assert_eq!(held.status(), 200);
    // Half the budget is the most one user holds: its next read waits for
    // its first, the others' do not.
    let more = hog.get(&big).sent().await;
    assert_eq!(more.status(), 429);
    assert!(detail(more).await.contains("MAX_BYTES_IN_FLIGHT"));
    let theirs = other.get(&big).sent().await;
    assert_eq!(theirs.status(), 200);
    assert_eq!(theirs.bytes().await.unwrap().len(), 64_000_000);
    drop(held);
    let mut served = false;
    for _ in 0..100 {
        if hog.get(&big).sent().await.status() == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "its share came back with its answer");
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
    crate::helpers::serve_each(listener, move |mut stream| {
        let (events, writes) = (recorded.clone(), writes.clone());
        async move {
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
            let line = String::from_utf8_lossy(&request).lines().next().unwrap_or("").to_owned();
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
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
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

    /// The second write came only once the first was answered: its feed's
    /// lock was held that long.
    async fn first_answered_before_second_came(&self) {
        let (answered, second) = (self.position("answered 1").await, self.position("came 2").await);
        assert!(answered.unwrap() < second.unwrap(), "{:?}", self.events().await);
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
    upstream.first_answered_before_second_came().await;
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
    upstream.first_answered_before_second_came().await;
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

// 2. Requests without credentials cost almost nothing.

/// `lbasedb-proxy serve` as a process of its own (its log in a file, its
/// memory readable), on a fresh data folder and database.
struct Serve {
    child: std::process::Child,
    base: String,
    log: std::path::PathBuf,
    database_url: String,
    _data: tempfile::TempDir,
}

impl Serve {
    async fn start(env: &[(&str, &str)]) -> Self {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = data.path().join("serve.log");
        let database_url = crate::helpers::test_database_url(data.path());
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("DATA_DIR", data.path())
            .env("DATABASE_URL", &database_url)
            .env("LBASEDB_PROXY_SUPERUSER_PASSWORD", ADMIN_PASSWORD)
            .env("RUST_LOG", "info")
            .env_remove("LBASEDB_URL")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (name, value) in env {
            command.env(name, value);
        }
        let base = format!("http://127.0.0.1:{port}");
        // Killed and waited for when dropped, started or not.
        let serve = Self { child: command.spawn().unwrap(), base, log, database_url, _data: data };
        for _ in 0..400 {
            let ready = client().get(format!("{}/readyz", serve.base)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return serve;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("serve did not start: {}", std::fs::read_to_string(&serve.log).unwrap_or_default());
    }

    fn lines(&self) -> usize {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().count()
    }

    /// The most memory the process has used (`VmHWM`), in KiB.
    fn peak_memory_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    fn pool(&self) -> lbasedb_proxy::db::Pool {
        lbasedb_proxy::db::connect(&self.database_url).unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_access_log_line_carries_the_request_id_answered() {
    let serve = Serve::start(&[]).await;
    let answer = client().get(format!("{}/api/proxy/version", serve.base)).send().await.unwrap();
    assert_eq!(answer.status(), 401);
    let id = answer.headers()["x-request-id"].to_str().unwrap().to_owned();
    let mut log = String::new();
    for _ in 0..100 {
        log = std::fs::read_to_string(&serve.log).unwrap_or_default();
        if log.contains("/api/proxy/version") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line = log.lines().find(|l| l.contains("\"GET /api/proxy/version\" 401")).unwrap_or("");
    assert!(line.ends_with(&format!(" {id}")), "{id} not on the line:\n{log}");
}

#[tokio::test]
async fn a_flood_without_credentials_costs_a_few_rows_and_lines_a_second() {
    use diesel::prelude::*;
    let serve = Serve::start(&[]).await;
    let lines_before = serve.lines();
    let junk_method = reqwest::Method::from_bytes(&[b'J'; 200]).unwrap();
    let long_path = format!("/{}", "x".repeat(4000));
    let flood = (0..3).map(|connection| {
        let (base, junk_method, long_path) =
            (serve.base.clone(), junk_method.clone(), long_path.clone());
        tokio::spawn(async move {
            let client = client();
            let bad = client_with_token("lbp_0000000000000000000000000000000000000000");
            let until = std::time::Instant::now() + Duration::from_secs(3);
            let mut sent = 0u64;
            while std::time::Instant::now() < until {
                let _ = match sent % 6 {
                    0 => client.get(format!("{base}/api/proxy/version")).send().await,
                    1 => client.get(format!("{base}/api/proxy/nothing{connection}")).send().await,
                    2 => {
                        client
                            .request(junk_method.clone(), format!("{base}/api/proxy/data"))
                            .send()
                            .await
                    }
                    3 => client.get(format!("{base}{long_path}")).send().await,
                    4 => bad.get(format!("{base}/api/proxy/size?feed=xy")).send().await,
                    _ => client.get(format!("{base}/admin/login/")).send().await,
                };
                sent += 1;
            }
            sent
        })
    });
    let sent: u64 =
        futures_util::future::join_all(flood).await.into_iter().map(Result::unwrap).sum();
    assert!(sent > 600, "a flood: {sent} requests");
    // The audit's counts are written when their second is over.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut conn = serve.pool().get().unwrap();
    use lbasedb_proxy::db::schema::access_log as audit;
    let rows: i64 = audit::table.count().get_result(&mut conn).unwrap();
    let counted: Vec<i64> = audit::table.select(audit::requests).load(&mut conn).unwrap();
    let counted: i64 = counted.iter().sum();
    // Every refusal of the proxy is counted (the unknown method is not
    // even that), in a few rows a second.
    let proxied = (sent / 6) * 3;
    assert!(counted as u64 >= proxied.saturating_sub(6), "{counted} of about {proxied}");
    assert!(rows <= 60, "{rows} audit rows for {counted} requests");
    let methods: Vec<String> = audit::table.select(audit::method).load(&mut conn).unwrap();
    assert!(methods.iter().all(|m| m.len() <= 7), "{methods:?}");
    let written = serve.lines() - lines_before;
    assert!(written <= 150, "{written} log lines for {sent} requests");
    let log = std::fs::read_to_string(&serve.log).unwrap();
    assert!(log.lines().all(|l| l.len() < 1000), "a line that long came from a client");
    assert!(log.contains("not logged one by one"), "the rest is counted");
}

#[tokio::test]
async fn a_flood_of_logins_for_new_usernames_keeps_memory_down_and_lets_a_valid_login_through() {
    let serve = Serve::start(&[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let url = format!("{}/api/auth/token/", serve.base);
    let flood = (0..64).map(|n| {
        let url = url.clone();
        tokio::spawn(async move {
            let client = client();
            let until = std::time::Instant::now() + Duration::from_secs(4);
            let mut statuses = Vec::new();
            let mut i = 0;
            while std::time::Instant::now() < until {
                let status = client
                    .post(&url)
                    // Three flooding addresses, each with ever-new usernames.
                    .header("x-forwarded-for", format!("198.51.100.{}", n % 3))
                    .json(&json!({"username": format!("nobody-{n}-{i}"), "password": "guess"}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                statuses.push(status.unwrap_or(0));
                i += 1;
            }
            statuses
        })
    });
    let flood = futures_util::future::join_all(flood);
    let valid = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut took = Vec::new();
        for _ in 0..10 {
            let started = std::time::Instant::now();
            let status = client()
                .post(&url)
                .header("x-forwarded-for", "203.0.113.7")
                .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
                .sent_status()
                .await;
            assert_eq!(status, 200);
            took.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        took
    };
    let (statuses, took) = tokio::join!(flood, valid);
    let statuses: Vec<u16> = statuses.into_iter().flat_map(Result::unwrap).collect();
    assert!(statuses.iter().all(|s| [400, 429].contains(s)), "{statuses:?}");
    assert!(statuses.len() > 300, "a flood: {} attempts", statuses.len());
    assert!(took.iter().all(|t| *t < Duration::from_secs(1)), "valid logins took {took:?}");
    let peak = serve.peak_memory_kib();
    assert!(peak < 100 * 1024, "peak memory {peak} KiB");
}

#[tokio::test]
async fn refused_admin_logins_leave_no_row_and_no_long_name() {
    use diesel::prelude::*;
    let app = spawn_app().await;
    let long = "a".repeat(100_000);
    for username in ["admin"; 40].iter().map(|s| s.to_string()).chain([long]) {
        let browser = crate::helpers::Browser { client: client(), base: app.address.clone() };
        browser
            .submit(
                "/admin/login/",
                &[("username", &username), ("password", "wrong"), ("next", "/admin/")],
            )
            .await;
    }
    use lbasedb_proxy::db::schema::admin_log as history;
    let reprs: Vec<String> = history::table
        .filter(history::action.eq("login_failed"))
        .select(history::object_repr)
        .load(&mut app.conn())
        .unwrap();
    // Five checked, then throttled (no check, no row); the long name is
    // cut to a username's length.
    assert!(reprs.len() <= 6, "{} rows", reprs.len());
    assert!(
        reprs.iter().all(|r| r.chars().count() <= 150),
        "{:?}",
        reprs.iter().map(String::len).collect::<Vec<_>>()
    );
}

// 3. Privilege edges.

/// A staff user holding `perms`, logged in to the admin site.
async fn staff_browser(app: &TestApp, name: &str, perms: &[&str]) -> crate::helpers::Browser {
    let perms = perms.iter().map(|p| p.to_string()).collect();
    create_user(&app.pool, UserSpec { staff: true, perms, ..spec(name) });
    let (browser, login) = log_in(app, name, USER_PASSWORD).await;
    assert_eq!(login.status(), 302, "{name} logs in");
    browser
}

fn user_named(app: &TestApp, name: &str) -> lbasedb_proxy::db::models::User {
    queries::user_by_username(&mut app.conn(), name).unwrap().expect("the user")
}

fn token_names(app: &TestApp, id: i32) -> Vec<String> {
    let query = queries::TokenQuery { user: Some(id), per_page: 1000, ..Default::default() };
    queries::list_tokens(&mut app.conn(), &query)
        .unwrap()
        .0
        .into_iter()
        .map(|(t, _)| t.name)
        .collect()
}

#[tokio::test]
async fn a_deactivated_user_who_holds_more_is_still_out_of_a_staff_users_reach() {
    let app = spawn_app().await;
    create_user(&app.pool, UserSpec { superuser: true, ..spec("sleeper") });
    let strong = UserSpec { perms: vec!["auth.delete_user".into()], ..spec("strong") };
    create_user(&app.pool, strong);
    create_group(&app.pool, "plain", &[], &[]);
    for name in ["sleeper", "strong"] {
        queries::set_active(&mut app.conn(), user_named(&app, name).id, false).unwrap();
    }
    let perms = ["auth.change_user", "auth.view_user", "authtoken.add_token"];
    let helper = staff_browser(&app, "helper", &perms).await;
    let group = queries::group_by_name(&mut app.conn(), "plain").unwrap().unwrap().id.to_string();
    for name in ["sleeper", "strong"] {
        let target = user_named(&app, name);
        let id = target.id;
        let password = [("password1", "taken-over-pass"), ("password2", "taken-over-pass")];
        let set = helper.submit(&format!("/admin/auth/user/{id}/password/"), &password).await;
        assert_eq!(set.status(), 403, "{name}: password");
        let fields = [("user", &id.to_string()[..]), ("name", "minted"), ("expires_in", "")];
        let minted = helper.submit("/admin/authtoken/token/add/", &fields).await;
        assert_eq!(minted.status(), 403, "{name}: token");
        let mut change = vec![("username", name), ("groups", group.as_str())];
        if target.is_superuser {
            change.extend([("is_staff", "on"), ("is_superuser", "on")]);
        }
        let regrouped = helper.submit(&format!("/admin/auth/user/{id}/change/"), &change).await;
        assert_eq!(regrouped.status(), 403, "{name}: groups");
        change.retain(|(field, _)| *field != "groups");
        change.push(("is_active", "on"));
        let woken = helper.submit(&format!("/admin/auth/user/{id}/change/"), &change).await;
        assert_eq!(woken.status(), 403, "{name}: reactivated");
        // Nothing of it took.
        let after = user_named(&app, name);
        assert!(!after.is_active, "{name}");
        assert!(!password::verify("taken-over-pass", Some(&after.password)), "{name}");
        assert!(token_names(&app, id).is_empty(), "{name}");
        assert!(queries::user_links(&mut app.conn(), id).unwrap().groups.is_empty(), "{name}");
    }
    // A superuser may do all of it.
    let boss = admin(&app).await;
    let id = user_named(&app, "sleeper").id;
    let fields = [
        ("username", "sleeper"),
        ("is_active", "on"),
        ("is_staff", "on"),
        ("is_superuser", "on"),
        ("groups", group.as_str()),
    ];
    let woken = boss.submit(&format!("/admin/auth/user/{id}/change/"), &fields).await;
    assert_eq!(woken.status(), 302);
    assert!(user_named(&app, "sleeper").is_active);
}

#[tokio::test]
async fn a_request_rate_is_a_privilege_a_staff_user_cannot_raise() {
    let app = spawn_app_with(|s| s.user_rate_limit = Some("10/min".parse().unwrap())).await;
    let perms = ["auth.add_group", "auth.change_group", "auth.view_group", "auth.change_user"];
    let ops = staff_browser(&app, "ops", &perms).await;
    let boss = admin(&app).await;
    let group_id = |name: &str| {
        queries::group_by_name(&mut app.conn(), name).unwrap().map(|g| g.id.to_string())
    };
    // Its own rate is the default, 10/min: a group above it is refused.
    let fast =
        ops.submit("/admin/auth/group/add/", &[("name", "fast"), ("rate_limit", "1000/s")]).await;
    assert_eq!(fast.status(), 403);
    assert!(group_id("fast").is_none());
    for (name, rate) in [("same", "10/min"), ("slower", "1/min"), ("unrated", "")] {
        let made =
            ops.submit("/admin/auth/group/add/", &[("name", name), ("rate_limit", rate)]).await;
        assert_eq!(made.status(), 302, "{name}");
    }
    // Nor may it lift a group's rate.
    let id = group_id("same").unwrap();
    let raised = ops
        .submit(
            &format!("/admin/auth/group/{id}/change/"),
            &[("name", "same"), ("rate_limit", "1/s")],
        )
        .await;
    assert_eq!(raised.status(), 403);
    let rate =
        queries::group_by_id(&mut app.conn(), id.parse().unwrap()).unwrap().unwrap().rate_limit;
    assert_eq!(rate.as_deref(), Some("10/min"));
    // Nor join a group whose rate is above its own.
    let made =
        boss.submit("/admin/auth/group/add/", &[("name", "turbo"), ("rate_limit", "1000/s")]).await;
    assert_eq!(made.status(), 302, "a superuser may");
    let me = user_named(&app, "ops");
    let turbo = group_id("turbo").unwrap();
    let mut own: Vec<(&str, String)> =
        vec![("username", "ops".into()), ("is_active", "on".into()), ("is_staff", "on".into())];
    for perm in queries::user_links(&mut app.conn(), me.id).unwrap().perms {
        own.push(("user_permissions", perm.to_string()));
    }
    own.push(("groups", turbo));
    let own: Vec<(&str, &str)> = own.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let joined = ops.submit(&format!("/admin/auth/user/{}/change/", me.id), &own).await;
    assert_eq!(joined.status(), 403);
    assert!(queries::user_links(&mut app.conn(), me.id).unwrap().groups.is_empty());
}

#[tokio::test]
async fn the_group_form_offers_only_the_feeds_its_viewer_may_list() {
    let app = spawn_app().await;
    app.create_x_feeds(&["mine", "secret"]).await;
    create_user(
        &app.pool,
        UserSpec {
            staff: true,
            perms: vec!["auth.add_group".into()],
            grants: crate::helpers::grants(&[("lbasedb.view_feed", "mine")]),
            ..spec("grouper")
        },
    );
    let (grouper, _) = log_in(&app, "grouper", USER_PASSWORD).await;
    let (status, page) = grouper.get("/admin/auth/group/add/").await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"<option value="mine">"#), "{page}");
    assert!(!page.contains("secret"), "a feed it may not list is named on its page");
    let (_, page) = admin(&app).await.get("/admin/auth/group/add/").await;
    assert!(page.contains(r#"<option value="secret">"#));
}

// 5. Limits on what users can create.

#[tokio::test]
async fn a_user_has_at_most_max_tokens_per_user_live_tokens_and_none_is_dropped() {
    let app = spawn_app().await;
    app.user_granted("script", &[("lbasedb.view_feed", "x")]);
    let oldest = issue_token(&app.pool, "script", None);
    for _ in 1..99 {
        issue_token(&app.pool, "script", None);
    }
    let login = json!({"username": "script", "password": USER_PASSWORD});
    let hundredth = app.obtain_token(login.clone()).await;
    assert_eq!(hundredth.status(), 200);
    let hundredth: Value = hundredth.json().await.unwrap();
    let refused = app.obtain_token(login.clone()).await;
    assert_eq!(refused.status(), 400);
    assert!(detail(refused).await.contains("MAX_TOKENS_PER_USER"));
    let id = user_named(&app, "script").id.to_string();
    let browser = admin(&app).await;
    let form = [("user", id.as_str()), ("name", "one more"), ("expires_in", "")];
    let page = browser.submit("/admin/authtoken/token/add/", &form).await;
    assert!(page.text().await.unwrap().contains("MAX_TOKENS_PER_USER"));
    let cli = app.command().args(["createtoken", "script"]).output().unwrap();
    assert!(!cli.status.success());
    assert!(String::from_utf8_lossy(&cli.stderr).contains("MAX_TOKENS_PER_USER"));
    // None was dropped to make room: the oldest still works.
    assert_eq!(app.get_proxy_as(&client_with_token(&oldest), "version").await.status(), 200);
    // Revoking one makes room for one.
    let newest = client_with_token(hundredth["token"].as_str().unwrap());
    let revoked = newest.delete(format!("{}/api/auth/token/", app.address)).sent().await;
    assert_eq!(revoked.status(), 204);
    assert_eq!(app.obtain_token(login).await.status(), 200);
}

#[tokio::test]
async fn every_string_a_user_stores_is_bounded_in_the_admin_the_api_and_the_cli() {
    let app = spawn_app().await;
    let long_name = "n".repeat(101);
    let login = json!({"username": "admin", "password": ADMIN_PASSWORD, "name": long_name});
    assert_eq!(app.obtain_token(login).await.status(), 400);
    let scopes: Vec<String> = (0..101).map(|i| format!("lbasedb.view_data=f{i}")).collect();
    let login = json!({"username": "admin", "password": ADMIN_PASSWORD, "scopes": scopes});
    assert_eq!(app.obtain_token(login).await.status(), 400);
    let browser = admin(&app).await;
    let id = user_named(&app, "admin").id.to_string();
    let form = [("user", id.as_str()), ("name", long_name.as_str()), ("expires_in", "")];
    let page = browser.submit("/admin/authtoken/token/add/", &form).await.text().await.unwrap();
    assert!(page.contains("errorlist") && !page.contains("shown this once"), "no token made");
    let cli = app.command().args(["createtoken", "admin", "--name", &long_name]).output().unwrap();
    assert!(!cli.status.success());
    create_user(&app.pool, spec("person"));
    let person = user_named(&app, "person").id;
    for (field, value) in [
        ("email", format!("{}@example.com", "e".repeat(300))),
        ("first_name", "f".repeat(151)),
        ("last_name", "l".repeat(151)),
    ] {
        let fields = [("username", "person"), ("is_active", "on"), (field, value.as_str())];
        let page = browser.submit(&format!("/admin/auth/user/{person}/change/"), &fields).await;
        assert_eq!(page.status(), 200, "{field}: the form again");
        let page = page.text().await.unwrap();
        assert!(page.contains("at most"), "{field}: {page}");
    }
    let stored = user_named(&app, "person");
    assert!(stored.email.is_empty() && stored.first_name.is_empty() && stored.last_name.is_empty());
    let long_email = format!("{}@example.com", "e".repeat(300));
    let cli = app
        .command()
        .args(["createuser", "other", "--email", &long_email])
        .env("LBASEDB_PROXY_PASSWORD", "a-long-test-password")
        .output()
        .unwrap();
    assert!(!cli.status.success());
    let cli = app.command().args(["creategroup", &"g".repeat(151)]).output().unwrap();
    assert!(!cli.status.success());
    // A group's grants are bounded in number.
    let view_data = queries::permission_by_codename(&mut app.conn(), "lbasedb.view_data")
        .unwrap()
        .unwrap()
        .id
        .to_string();
    let feeds: Vec<String> = (0..1001).map(|i| format!("f{i}")).collect();
    let mut fields = vec![("name", "wide")];
    for feed in &feeds {
        fields.push(("grant_perm", view_data.as_str()));
        fields.push(("grant_feed", feed.as_str()));
    }
    let page = browser.submit("/admin/auth/group/add/", &fields).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("At most 1000 feed grants"));
    assert!(queries::group_by_name(&mut app.conn(), "wide").unwrap().is_none());
}

#[tokio::test]
async fn the_token_list_is_paginated() {
    let app = spawn_app().await;
    for user in ["u1", "u2"] {
        create_user(&app.pool, spec(user));
        for _ in 0..50 {
            issue_token(&app.pool, user, None);
        }
    }
    for _ in 0..49 {
        issue_token(&app.pool, "admin", None);
    }
    let browser = admin(&app).await;
    let (_, first) = browser.get("/admin/authtoken/token/").await;
    assert_eq!(first.matches("/history/\">History").count(), 100);
    assert!(first.contains("150 token(s), page 1 of 2"), "{first}");
    let (_, second) = browser.get("/admin/authtoken/token/?p=1").await;
    assert_eq!(second.matches("/history/\">History").count(), 50);
}

// 6. Imports are input too.

/// A copy of the Django fixture, changed by `sql` (a hostile or broken
/// database, as someone could hand one over).
fn django_copy(dir: &std::path::Path, sql: &[&str]) -> std::path::PathBuf {
    use diesel::{Connection, RunQueryDsl, SqliteConnection};
    let copy = dir.join("django.sqlite3");
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/django.sqlite3");
    std::fs::copy(fixture, &copy).unwrap();
    let mut conn = SqliteConnection::establish(copy.to_str().unwrap()).unwrap();
    for statement in sql {
        diesel::sql_query(*statement).execute(&mut conn).unwrap();
    }
    copy
}

/// `importdjango` of a copy of the fixture changed by `sql`, into `app`.
fn import_changed(app: &TestApp, sql: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let source = django_copy(dir.path(), sql);
    app.command().arg("importdjango").arg(&source).output().unwrap()
}

fn user_count(app: &TestApp) -> i64 {
    queries::user_count(&mut app.conn()).unwrap()
}

#[tokio::test]
async fn importdjango_refuses_bad_rows_with_a_report_and_writes_nothing() {
    let app = spawn_app().await;
    let out = import_changed(
        &app,
        &[
            "UPDATE auth_user SET username = 'alice smith' WHERE username = 'alice'",
            "UPDATE auth_user SET email = printf('%.300c@example.com', 'e') WHERE username = 'bob'",
            "UPDATE auth_group SET name = printf('%.200c', 'g') WHERE id = (SELECT min(id) FROM auth_group)",
        ],
    );
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(report.contains("nothing was written"), "{report}");
    assert!(report.contains("user \"alice smith\""), "{report}");
    assert!(report.contains("user \"bob\""), "{report}");
    assert!(report.contains("group \"gggg"), "{report}");
    assert_eq!(user_count(&app), 1, "only admin");
}

#[tokio::test]
async fn stored_hashes_past_the_bounds_never_log_in_and_cost_what_a_login_costs() {
    let app = spawn_app().await;
    let out = import_changed(
        &app,
        &[
            "UPDATE auth_user SET password = 'pbkdf2_sha256$2000000000$salt$qN+JnzxPIE2WfgrWPAkph8EAVeuwF7PZ0ordIY1Peq0=' WHERE username = 'alice'",
            "UPDATE auth_user SET password = 'argon2$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' WHERE username = 'carol'",
            "UPDATE auth_user SET password = 'bcrypt_sha256$$2b$31$1YjFC/O0hezV9mVGGwG1YjFC/O0hezV9mVGGwG1YjFC/O0hez' WHERE username = 'dave'",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    for (user, why) in [("alice", "iterations"), ("carol", "m=4194304"), ("dave", "bcrypt cost 31")]
    {
        assert!(
            report.contains(&format!("cannot log in: {user}: ")) && report.contains(why),
            "{report}"
        );
        let started = std::time::Instant::now();
        let login = json!({"username": user, "password": "password"});
        assert_eq!(app.obtain_token(login).await.status(), 400);
        assert!(started.elapsed() < Duration::from_secs(1), "{user}: {:?}", started.elapsed());
    }
    // loaddata brings hashes in too: the same bounds, the same report; and
    // its rows are checked as the admin checks them.
    let dumped = app.command().arg("dumpdata").output().unwrap();
    let mut dump: Value = serde_json::from_slice(&dumped.stdout).unwrap();
    let other = spawn_app().await;
    let file = app.data.path().join("dump.json");
    std::fs::write(&file, serde_json::to_vec(&dump).unwrap()).unwrap();
    let loaded = other.command().arg("loaddata").arg(&file).output().unwrap();
    assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
    assert!(String::from_utf8_lossy(&loaded.stdout).contains("cannot log in: carol: "));
    dump["groups"].as_array_mut().unwrap().push(json!({
        "name": "x".repeat(200), "permissions": [], "feed_grants": []
    }));
    dump["users"][0]["email"] = json!("e".repeat(300));
    std::fs::write(&file, serde_json::to_vec(&dump).unwrap()).unwrap();
    let third = spawn_app().await;
    let refused = third.command().arg("loaddata").arg(&file).output().unwrap();
    assert!(!refused.status.success());
    let report = String::from_utf8_lossy(&refused.stderr);
    assert!(report.contains("nothing was written") && report.contains("group \"xxxx"), "{report}");
    assert_eq!(user_count(&third), 1, "only admin");
}

// The second pass: an outsider's attacks on the first fixes, each a test
// that failed before its fix.

/// Feed `w`: an Int32 column `i` and a 1 MiB-wide one `blob`, 1,000 rows,
/// and a user who may write it.
async fn wide_feed(app: &TestApp) -> reqwest::Client {
    app.create_sized_feed("w", &[("i", "Int32"), ("blob", "Bytes[1048576]")], 1000).await;
    app.client_granted("writer", &[("lbasedb.add_data", "w"), ("lbasedb.change_data", "w")])
}

#[tokio::test]
async fn a_write_that_would_build_more_than_max_write_bytes_never_reaches_the_storage() {
    let app = spawn_app().await;
    let writer = wide_feed(&app).await;
    let pid = app.embedded.as_ref().and_then(|e| e.pid());
    // 1,000 rows of `i`: the storage would zero 1,000 MiB of `blob` at once.
    let rows_of_i = vec![0u8; 4 * 1000];
    let put =
        writer.put(app.proxy("bytes?feed=w&ix=0&col[]=i")).body(rows_of_i.clone()).sent().await;
    assert_eq!(put.status(), 413);
    assert!(detail(put).await.contains("MAX_WRITE_BYTES"));
    // The same sent chunked, with no length to check first: cut on its way.
    let chunks =
        rows_of_i.chunks(400).map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)));
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks.collect::<Vec<_>>()));
    let chunked = writer.put(app.proxy("bytes?feed=w&ix=0&col[]=i")).body(body).sent().await;
    assert_eq!(chunked.status(), 413);
    // A JSON body of empty strings: each a 1 MiB value to the storage.
    let empties = json!({"blob": vec![""; 300]});
    let pushed = writer.post(app.proxy("data?feed=w")).json(&empties).sent().await;
    assert_eq!(pushed.status(), 413);
    // A PUT of one column zeroes the other for every row it writes.
    let numbers = json!({"i": (0..300).collect::<Vec<i32>>()});
    let saved = writer.put(app.proxy("data?feed=w&ix=0")).json(&numbers).sent().await;
    assert_eq!(saved.status(), 413);
    // The embedded server refuses them on its own, before it parses.
    for (method, path, body) in [
        (reqwest::Method::POST, "data?feed=w", empties.to_string()),
        (reqwest::Method::PUT, "data?feed=w&ix=0", numbers.to_string()),
    ] {
        let direct = app
            .upstream_client
            .request(method, app.direct(path))
            .header("content-type", "application/json")
            .body(body)
            .sent()
            .await;
        assert_eq!(direct.status(), 400, "{path}");
    }
    let direct = app
        .upstream_client
        .put(app.direct("bytes?feed=w&ix=0&col[]=i"))
        .body(rows_of_i)
        .sent()
        .await;
    assert_eq!(direct.status(), 400);
    // Nothing was written, nothing died, and a write within bounds goes on.
    assert_eq!(app.size_of("w").await, 1000);
    assert_eq!(app.embedded.as_ref().and_then(|e| e.pid()), pid);
    let small = writer.post(app.proxy("data?feed=w")).json(&json!({"i": [7, 8]})).sent().await;
    assert_eq!(small.status(), 204);
    assert_eq!(app.size_of("w").await, 1002);
}

#[test]
fn a_fatal_error_is_the_last_line_of_the_log() {
    // The log is written every 50 ms by its own thread; the error, printed
    // straight, came out before the lines that led to it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("serve")
        .env("BIND", taken.local_addr().unwrap().to_string())
        .env("DATA_DIR", data.path())
        .env("LBASEDB_PROXY_SUPERUSER_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "info")
        .env_remove("LBASEDB_URL")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.lines().count() > 1, "lines before the error: {log}");
    let last = log.lines().last().unwrap_or_default();
    assert!(last.starts_with("lbasedb-proxy: "), "the error last: {log}");
}

// The third pass: an outsider's attacks on the write meter (the count of
// a JSON write's values as it streams by), each a test that failed before
// its fix.

#[tokio::test]
async fn the_write_meter_reads_keys_as_the_storage_does_and_bounds_how_many() {
    let app = spawn_app().await;
    let writer = wide_feed(&app).await;
    // `\u0062lob` is `blob` to the storage's parser: 300 empty strings are
    // 300 MiB values however the key is written (the meter took it for a
    // column of no width, and the storage grew by the whole of it).
    let escaped = r#"{"\u0062lob": ["#.to_owned() + &vec![r#""""#; 300].join(",") + "]}";
    let through = |body: &str| {
        writer
            .post(app.proxy("data?feed=w"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .sent()
    };
    let pushed = through(&escaped).await;
    assert_eq!(pushed.status(), 413);
    assert!(detail(pushed).await.contains("MAX_WRITE_BYTES"));
    // A dataset of more keys than any feed has columns: each key is kept
    // while the body streams (ten million of them in a 64 MiB body), and
    // telling repeated keys apart cost time squared in their number.
    let many: String = (0..5000).map(|i| format!(r#""k{i}":[]"#)).collect::<Vec<_>>().join(",");
    let many = format!("{{{many}}}");
    let refused = through(&many).await;
    assert_eq!(refused.status(), 413);
    assert!(detail(refused).await.contains("at most 4096 keys"));
    // The embedded server refuses both on its own, before it parses.
    for body in [escaped, many] {
        let direct = app
            .upstream_client
            .post(app.direct("data?feed=w"))
            .header("content-type", "application/json")
            .body(body)
            .sent()
            .await;
        assert_eq!(direct.status(), 400);
    }
    assert_eq!(app.size_of("w").await, 1000, "nothing was written");
}

#[tokio::test]
async fn a_key_named_twice_counts_its_rows_against_the_write_quota() {
    let app = spawn_app_with(|s| s.write_quota = Some("5rows/day".parse().unwrap())).await;
    app.create_feed("q", &[("x", "Int64")]).await;
    let writer = app.client_granted("quota", &[("lbasedb.add_data", "q")]);
    // The storage keeps the last list of a key named twice: 4 rows. The
    // rows were "not certain" and counted as none.
    let twice = r#"{"x": [1], "\u0078": [1, 2, 3, 4]}"#;
    let append = || {
        writer
            .post(app.proxy("data?feed=q"))
            .header("content-type", "application/json")
            .body(twice)
            .sent()
    };
    assert_eq!(append().await.status(), 204);
    assert_eq!(app.size_of("q").await, 4);
    let me = get_json(&writer, &format!("{}/api/auth/me/", app.address)).await;
    assert_eq!(me["write_quota"]["rows_today"], 4);
    assert_eq!(append().await.status(), 429, "4 of 5 rows used: 4 more pass it");
    assert_eq!(app.size_of("q").await, 4);
}

#[tokio::test]
async fn a_json_read_is_priced_at_what_it_costs_the_storage_in_memory() {
    let app = spawn_app().await;
    let cols: Vec<(String, &str)> = (0..25).map(|i| (format!("c{i}"), "Bytes[1]")).collect();
    let cols: Vec<(&str, &str)> = cols.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    app.create_sized_feed("narrow", &cols, 10_000_000).await;
    let all: String = (0..25).map(|i| format!("&col[]=c{i}")).collect();
    // 250 MB of one-byte values is under MAX_READ_BYTES as bytes, but each
    // is a 62-byte record and more as JSON: 15 GB.
    let json = app.get_proxy(&format!("data?feed=narrow&ix=0&size=10000000{all}")).await;
    assert_eq!(json.status(), 413);
    assert!(detail(json).await.contains("as JSON"));
    let direct = app
        .upstream_client
        .get(app.direct(&format!("data?feed=narrow&ix=0&size=10000000{all}")))
        .sent()
        .await;
    assert_eq!(direct.status(), 400);
    let binary = app.get_proxy(&format!("bytes?feed=narrow&ix=0&size=1000000{all}")).await;
    assert_eq!(binary.status(), 200);
    assert_eq!(binary.bytes().await.unwrap().len(), 25_000_000);
}

#[tokio::test]
async fn a_size_no_file_system_takes_is_refused() {
    let app = spawn_app().await;
    app.create_feed("w", &[("blob", "Bytes[1048576]")]).await;
    // 20 TiB in one file: more than ext4 takes; the storage would record
    // the size, fail to make the file, and never read the column again.
    let huge = json!({"size": 20_000_000});
    let proxied = app.client.put(app.proxy("size?feed=w")).json(&huge).sent().await;
    assert_eq!(proxied.status(), 400);
    let direct = app.upstream_client.put(app.direct("size?feed=w")).json(&huge).sent().await;
    assert_eq!(direct.status(), 400);
    assert_eq!(app.size_of("w").await, 0);
    // Nor may a wide column be added to a feed that long.
    app.create_feed("long", &[("x", "Int32")]).await;
    let sized = app.client.put(app.proxy("size?feed=long")).json(&huge).sent().await;
    assert_eq!(sized.status(), 204);
    let wide = json!({"name": "blob", "datatype": "Bytes[1048576]"});
    let added = app.client.post(app.proxy("col?feed=long")).json(&wide).sent().await;
    assert_eq!(added.status(), 400);
    let direct = app.upstream_client.post(app.direct("col?feed=long")).json(&wide).sent().await;
    assert_eq!(direct.status(), 400);
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection_and_a_slow_login_is_cut() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(|s| s.max_connections_per_address = 20).await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let head = b"POST /api/auth/token/ HTTP/1.1\r\nHost: x\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nu";
    let started = std::time::Instant::now();
    let mut answers = Vec::new();
    for _ in 0..30 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(head).await.unwrap();
        // Each connection's answer and when it came (and closed).
        answers.push(tokio::spawn(async move {
            let mut answer = Vec::new();
            let read =
                tokio::time::timeout(Duration::from_secs(25), stream.read_to_end(&mut answer));
            read.await
                .ok()
                .map(|_| (started.elapsed(), String::from_utf8_lossy(&answer).into_owned()))
        }));
    }
    // Another address is served at once.
    let other = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let login = other
        .post(format!("{}/api/auth/token/", app.address))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .sent()
        .await;
    assert_eq!(login.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    // Those past the bound were answered at once and closed; the slow
    // bodies are given up on after BODY_TIMEOUT, and their connections
    // closed: none is held for good.
    let mut answers: Vec<(Duration, String)> = futures_util::future::join_all(answers)
        .await
        .into_iter()
        .map(|a| a.unwrap().expect("every connection answered and closed"))
        .collect();
    answers.sort();
    let refused: Vec<&(Duration, String)> =
        answers.iter().filter(|(_, a)| a.starts_with("HTTP/1.1 503")).collect();
    assert_eq!(refused.len(), 10, "{answers:?}");
    assert!(refused.iter().all(|(at, _)| *at < Duration::from_secs(3)), "{refused:?}");
    let cut = &answers[10..];
    assert!(cut.iter().all(|(at, a)| *at >= Duration::from_secs(9) && a.starts_with("HTTP/1.1 4")));
}

#[tokio::test]
async fn a_staff_user_cannot_lift_its_own_rate_by_another_way() {
    let app = spawn_app().await;
    create_group(&app.pool, "slow", &[], &[]);
    queries::set_group_limits(
        &mut app.conn(),
        queries::group_by_name(&mut app.conn(), "slow").unwrap().unwrap().id,
        Some("1/min"),
        None,
    )
    .unwrap();
    let perms = ["auth.change_user", "auth.view_user", "auth.delete_group", "authtoken.add_token"];
    let staffy = staff_browser(&app, "staffy", &perms).await;
    let me = user_named(&app, "staffy").id;
    let slow = queries::group_by_name(&mut app.conn(), "slow").unwrap().unwrap().id;
    queries::add_user_to_group(&mut app.conn(), me, slow).unwrap();
    // A user holding less, but with no rate at all: acting as it (a token)
    // would be leaving its own rate behind.
    create_user(&app.pool, spec("fasty"));
    let fasty = user_named(&app, "fasty").id.to_string();
    let form = [("user", fasty.as_str()), ("name", "escape"), ("expires_in", "")];
    assert_eq!(staffy.submit("/admin/authtoken/token/add/", &form).await.status(), 403);
    // Leaving its rated group.
    let mut own: Vec<(&str, String)> =
        vec![("username", "staffy".into()), ("is_active", "on".into()), ("is_staff", "on".into())];
    for perm in queries::user_links(&mut app.conn(), me).unwrap().perms {
        own.push(("user_permissions", perm.to_string()));
    }
    let own: Vec<(&str, &str)> = own.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let left = staffy.submit(&format!("/admin/auth/user/{me}/change/"), &own).await;
    assert_eq!(left.status(), 403);
    // Deleting its rated group.
    let deleted = staffy.submit(&format!("/admin/auth/group/{slow}/delete/"), &[]).await;
    assert_eq!(deleted.status(), 403);
    assert_eq!(queries::user_links(&mut app.conn(), me).unwrap().groups, vec![slow]);
}

#[tokio::test]
async fn a_hash_longer_than_any_hash_is_refused_at_load() {
    let app = spawn_app().await;
    let dumped = app.command().arg("dumpdata").output().unwrap();
    let mut dump: Value = serde_json::from_slice(&dumped.stdout).unwrap();
    let mut user = dump["users"][0].clone();
    user["username"] = json!("salty");
    user["password"] = json!(format!("pbkdf2_sha256$1000${}$AAAA", "s".repeat(100_000)));
    dump["users"].as_array_mut().unwrap().push(user);
    let file = app.data.path().join("salty.json");
    std::fs::write(&file, serde_json::to_vec(&dump).unwrap()).unwrap();
    let other = spawn_app().await;
    let loaded = other.command().arg("loaddata").arg(&file).output().unwrap();
    assert!(!loaded.status.success());
    let report = String::from_utf8_lossy(&loaded.stderr);
    assert!(report.contains("user \"salty\"") && report.contains("at most 512"), "{report}");
    assert_eq!(user_count(&other), 1);
}

#[tokio::test]
async fn refusals_from_one_address_cost_a_row_per_status_a_second_whatever_they_vary() {
    use diesel::prelude::*;
    let app = spawn_app().await;
    let bad = client_with_token("lbp_0000000000000000000000000000000000000000");
    let started = std::time::Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(2) {
        for endpoint in ["version", "feed", "col", "size", "data", "bytes", "raw", "nothing"] {
            for method in [reqwest::Method::GET, reqwest::Method::POST, reqwest::Method::DELETE] {
                let client = if sent % 2 == 0 { &app.anon } else { &bad };
                client.request(method.clone(), app.proxy(endpoint)).send().await.unwrap();
                sent += 1;
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    use lbasedb_proxy::db::schema::access_log as audit;
    let rows: Vec<(String, i32, i64)> = audit::table
        .select((audit::client, audit::status, audit::requests))
        .load(&mut app.conn())
        .unwrap();
    let counted: i64 = rows.iter().map(|r| r.2).sum();
    assert_eq!(counted, sent, "every refusal counted");
    // Three seconds at most, two statuses at most (401, then 429 for the
    // bad token): six rows, however the endpoints and methods varied.
    assert!(rows.len() <= 8, "{} rows: {rows:?}", rows.len());
}

#[tokio::test]
async fn making_and_revoking_tokens_or_sessions_in_a_loop_keeps_a_bounded_number() {
    use diesel::prelude::*;
    let app = spawn_app().await;
    app.user_granted("looper", &[("lbasedb.view_feed", "x")]);
    let login = json!({"username": "looper", "password": USER_PASSWORD});
    for _ in 0..130 {
        let made: Value = app.obtain_token(login.clone()).await.json().await.unwrap();
        let token = client_with_token(made["token"].as_str().unwrap());
        assert_eq!(
            token.delete(format!("{}/api/auth/token/", app.address)).sent_status().await,
            204
        );
    }
    let id = user_named(&app, "looper").id;
    assert!(token_names(&app, id).len() <= 101, "{} token rows", token_names(&app, id).len());
    for _ in 0..120 {
        let fresh = client();
        let status =
            fresh.post(format!("{}/api/auth/login/", app.address)).json(&login).sent_status().await;
        assert_eq!(status, 200);
    }
    use lbasedb_proxy::db::schema::session;
    let sessions: i64 =
        session::table.filter(session::user_id.eq(id)).count().get_result(&mut app.conn()).unwrap();
    assert!(sessions <= 100, "{sessions} sessions");
}

#[tokio::test]
async fn the_feed_list_is_paged_so_a_page_costs_the_upstream_a_bounded_number_of_calls() {
    let app = spawn_app().await;
    let names: Vec<String> = (0..150).map(|i| format!("f{i:03}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    app.create_x_feeds(&names).await;
    let browser = admin(&app).await;
    let (_, first) = browser.get("/admin/lbasedb/feed/").await;
    assert_eq!(first.matches("<th><a href=\"/admin/lbasedb/feed/").count(), 100);
    assert!(first.contains("150 feed(s), page 1 of 2"), "{first}");
    let (_, second) = browser.get("/admin/lbasedb/feed/?p=1").await;
    assert_eq!(second.matches("<th><a href=\"/admin/lbasedb/feed/").count(), 50);
    assert!(second.contains("/admin/lbasedb/feed/f149/"));
}

/// A stolen session, ended by its owner (a logout, a password change),
/// must stay ended even when the thief had a request of it in flight:
/// that request's end writes its session (a message for the next page),
/// and must not write the ended one back.
#[tokio::test]
async fn an_ended_session_stays_ended_though_a_request_of_it_was_in_flight() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let plain = client_without_cookies();
    let login = plain
        .post(format!("{}/api/auth/login/", app.address))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .sent()
        .await;
    assert_eq!(login.status(), 200);
    let cookies: Vec<String> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect();
    let cookie = cookies.join("; ");
    let csrf = login.json::<Value>().await.unwrap()["csrfToken"].as_str().unwrap().to_owned();
    let me = || async {
        let answer =
            plain.get(format!("{}/api/auth/me/", app.address)).header("cookie", &cookie).sent();
        answer.await.status()
    };
    assert_eq!(me().await, 200);

    // The thief's admin form, its body held back after a few bytes.
    let body = format!("csrfmiddlewaretoken={csrf}&action=&index=0");
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!(
        "POST /admin/auth/user/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The owner logs out.
    let logout = plain
        .post(format!("{}/api/auth/logout/", app.address))
        .header("cookie", &cookie)
        .header("x-csrftoken", &csrf)
        .sent()
        .await;
    assert_eq!(logout.status(), 200);
    assert_eq!(me().await, 401);

    // The held request ends, and its session is written.
    stream.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 302"), "the action ran: {answer}");
    assert_eq!(me().await, 401, "the ended session stays ended");
    let admin = plain.get(format!("{}/admin/", app.address)).header("cookie", &cookie).sent();
    assert_eq!(admin.await.status(), 302, "to the login page");
}

/// The storage crate drops the errors of its column writes: on a full disk
/// it answered an append 204 whose rows it never wrote. The embedded server
/// checks the room left before an append (`MIN_FREE_SPACE`).
#[tokio::test]
async fn a_write_the_disk_has_no_room_for_is_refused_not_acknowledged() {
    let app = spawn_app_with(|s| s.limits.min_free_space = u64::MAX / 4).await;
    // An empty feed's new column takes no room.
    app.create_feed("xy", &[("x", "Int64")]).await;
    let append = app.client.post(app.proxy("data?feed=xy")).json(&json!({"x": [1, 2, 3]}));
    let refused = append.sent().await;
    assert_eq!(refused.status(), 507);
    let body: Value = refused.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("MIN_FREE_SPACE"), "{body}");
    let bytes = app.client.post(app.proxy("bytes?feed=xy&col=x")).body(vec![0u8; 8]);
    assert_eq!(bytes.sent().await.status(), 507);
    assert_eq!(app.size_of("xy").await, 0, "nothing acknowledged, nothing written");
}
