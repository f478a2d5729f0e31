//! Data safety: no acknowledged write lost. Concurrent appends through the
//! proxy and straight to the embedded server; the per-feed write lock (who
//! waits, who does not, what releases it, its bounds); an upstream killed
//! and restarted under 16 writers; a big answer cut by an upstream crash;
//! graceful shutdown with an upload in flight.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::helpers::{
    ADMIN_PASSWORD, Fault, Sent, TestApp, broken_upstream, client, client_with_authorization,
    get_json, spawn_app, spawn_app_on, spawn_app_with,
};

const BIN: &str = env!("CARGO_BIN_EXE_lbasedb-proxy");

/// Appends one row per request, `per_writer` times, from `writers` tasks at
/// once, writer `w` to `urls[w % urls.len()]` (replicas); each row's value
/// is unique. Answers the values acknowledged.
pub(crate) async fn append_concurrently(
    client: &reqwest::Client,
    urls: &[String],
    writers: i64,
    per_writer: i64,
) -> Vec<i64> {
    let tasks = (0..writers).map(|w| {
        let client = client.clone();
        let url = urls[w as usize % urls.len()].clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..per_writer {
                let value = (w + 1) * 1_000_000 + i;
                let response = client.post(&url).json(&json!({"v": [value]})).sent().await;
                assert_eq!(response.status(), 204, "{}", response.text().await.unwrap());
                acked.push(value);
            }
            acked
        })
    });
    futures_util::future::join_all(tasks).await.into_iter().flat_map(Result::unwrap).collect()
}

/// Every value of column `v` of a feed, read through `client` at `base`
/// (`…/api/proxy/` or the upstream's own root).
pub(crate) async fn stored_values(client: &reqwest::Client, base: &str, feed: &str) -> Vec<i64> {
    let size = get_json(client, &format!("{base}size?feed={feed}")).await;
    let size = size["size"].as_u64().unwrap();
    let url = format!("{base}data?feed={feed}&ix=0&size={size}&col=v");
    let data = get_json(client, &url).await;
    data["v"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
}

/// Lost (acknowledged, not stored) and duplicated (stored twice) values.
pub(crate) fn losses(acked: &[i64], stored: &[i64]) -> (usize, usize) {
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for v in stored.iter().filter(|v| **v != 0) {
        *counts.entry(*v).or_default() += 1;
    }
    let lost = acked.iter().filter(|v| !counts.contains_key(v)).count();
    let duplicated = counts.values().filter(|n| **n > 1).count();
    (lost, duplicated)
}

#[tokio::test]
async fn concurrent_appends_through_the_proxy_lose_nothing() {
    let app = spawn_app().await;
    app.create_feed("w", &[("v", "Int64")]).await;
    let acked = append_concurrently(&app.client, &[app.proxy("data?feed=w")], 16, 25).await;
    let stored = stored_values(&app.client, &app.proxy(""), "w").await;
    assert_eq!(stored.len(), acked.len());
    assert_eq!(losses(&acked, &stored), (0, 0));
}

#[tokio::test]
async fn concurrent_appends_straight_to_the_embedded_server_lose_nothing() {
    let app = spawn_app().await;
    app.create_feed("w", &[("v", "Int64")]).await;
    let acked =
        append_concurrently(&app.upstream_client, &[app.direct("data?feed=w")], 16, 25).await;
    let stored = stored_values(&app.upstream_client, &app.direct(""), "w").await;
    assert_eq!(stored.len(), acked.len());
    assert_eq!(losses(&acked, &stored), (0, 0));
}

/// A `POST /data` whose body is sent in the pieces given to the returned
/// sender; the request runs in its own task (abort it to hang up). Answers
/// once the upload has had the time to take its feed's lock.
async fn stalled_upload(
    app: &TestApp,
    path: &str,
) -> (mpsc::UnboundedSender<Bytes>, tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>) {
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    let request = app
        .client
        .post(app.proxy(path))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(body));
    tx.send(Bytes::from_static(b"{\"v\": [1")).unwrap();
    let upload = tokio::spawn(request.send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    (tx, upload)
}

async fn append(app: &TestApp, feed: &str, value: i64) -> reqwest::Response {
    app.client
        .post(app.proxy(&format!("data?feed={feed}")))
        .json(&json!({"v": [value]}))
        .sent()
        .await
}

/// `append` in a task of its own: its status, and how long it took.
fn spawn_append(app: &TestApp, feed: &str, value: i64) -> JoinHandle<(StatusCode, Duration)> {
    let (client, url) = (app.client.clone(), app.proxy(&format!("data?feed={feed}")));
    tokio::spawn(async move {
        let started = Instant::now();
        let response = client.post(url).json(&json!({"v": [value]})).sent().await;
        (response.status(), started.elapsed())
    })
}

#[tokio::test]
async fn a_write_waits_for_its_feed_reads_and_other_feeds_do_not() {
    let app = spawn_app_with(|s| s.write_lock_timeout = Duration::from_millis(300)).await;
    app.create_feed("w", &[("v", "Int64")]).await;
    app.create_feed("other", &[("v", "Int64")]).await;
    let (tx, upload) = stalled_upload(&app, "data?feed=w").await;

    let started = Instant::now();
    let waited = append(&app, "w", 2).await;
    assert_eq!(waited.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(waited.headers().contains_key("retry-after"));
    assert!(started.elapsed() >= Duration::from_millis(300));
    let body: Value = waited.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("busy"));

    let read = app.get_proxy("size?feed=w").await;
    assert_eq!(read.status(), 200, "reads take no lock");
    assert_eq!(append(&app, "other", 3).await.status(), 204, "another feed is free");

    // The upload finishes; the lock is free again.
    tx.send(Bytes::from_static(b"]}")).unwrap();
    drop(tx);
    assert_eq!(upload.await.unwrap().unwrap().status(), 204);
    assert_eq!(append(&app, "w", 4).await.status(), 204);
    assert_eq!(app.size_of("w").await, 2);
}

#[tokio::test]
async fn a_client_that_hangs_up_releases_the_lock() {
    let app = spawn_app_with(|s| s.write_lock_timeout = Duration::from_secs(5)).await;
    app.create_feed("w", &[("v", "Int64")]).await;
    let (tx, upload) = stalled_upload(&app, "data?feed=w").await;
    let waiting = spawn_append(&app, "w", 7);
    tokio::time::sleep(Duration::from_millis(300)).await;
    upload.abort();
    drop(tx);
    let (status, waited) = waiting.await.unwrap();
    assert_eq!(status, 204);
    assert!(waited < Duration::from_secs(4), "released when the client left: {waited:?}");
    assert_eq!(app.size_of("w").await, 1, "the abandoned upload wrote nothing");
}

#[tokio::test]
async fn an_upstream_that_fails_releases_the_lock() {
    let upstream = broken_upstream(Fault::Close).await;
    let app =
        spawn_app_on(&upstream.url, |s| s.write_lock_timeout = Duration::from_millis(200)).await;
    for _ in 0..3 {
        assert_eq!(append(&app, "w", 1).await.status(), StatusCode::BAD_GATEWAY);
    }
}

#[tokio::test]
async fn the_queue_of_waiting_writes_is_bounded() {
    let app = spawn_app_with(|s| {
        s.write_lock_timeout = Duration::from_secs(10);
        s.write_lock_queue = 1;
    })
    .await;
    app.create_feed("w", &[("v", "Int64")]).await;
    let (tx, upload) = stalled_upload(&app, "data?feed=w").await;
    let queued = spawn_append(&app, "w", 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let refused = append(&app, "w", 3).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(2), "refused at once");
    tx.send(Bytes::from_static(b"]}")).unwrap();
    drop(tx);
    assert_eq!(upload.await.unwrap().unwrap().status(), 204);
    assert_eq!(queued.await.unwrap().0, 204);
}

/// A standalone upstream process (`lbasedb-proxy lbasedb`), so that it can
/// be killed and started again.
pub(crate) struct UpstreamProcess {
    child: Child,
    port: u16,
    data: std::path::PathBuf,
    pub(crate) secret: String,
}

impl UpstreamProcess {
    pub(crate) async fn start(data: &std::path::Path, port: u16) -> Self {
        Self::start_with(data, port, &[]).await
    }

    /// With extra arguments (`--unlocked`: the real server's racing appends).
    pub(crate) async fn start_with(data: &std::path::Path, port: u16, args: &[&str]) -> Self {
        let secret = "a-test-secret-of-32-bytes-or-so!".to_owned();
        let child = Command::new(BIN)
            .args(["lbasedb", "--bind", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .args(args)
            .env("LBASEDB_SECRET", &secret)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let process = Self { child, port, data: data.to_owned(), secret };
        process.wait_ready().await;
        process
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&self) {
        let client = client_with_authorization(&format!("Bearer {}", self.secret));
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/version", self.url())).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the upstream process did not start");
    }

    /// SIGKILL: no chance to finish anything.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn restart(&mut self) {
        *self = Self::start(&self.data.clone(), self.port).await;
    }
}

impl Drop for UpstreamProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The application in front of a standalone upstream.
pub(crate) async fn app_on(upstream: &UpstreamProcess) -> TestApp {
    let (url, secret) = (upstream.url(), upstream.secret.clone());
    spawn_app_with(move |s| {
        s.lbasedb_url = Some(url);
        s.lbasedb_secret = Some(secret);
    })
    .await
}

/// A standalone upstream with feed `feed` (one Int64 column `col`), and
/// the application in front of it.
async fn upstream_with_feed(
    feed: &str,
    col: &str,
) -> (tempfile::TempDir, UpstreamProcess, TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let upstream = UpstreamProcess::start(dir.path(), free_port()).await;
    let app = app_on(&upstream).await;
    for (path, body) in [
        ("feed".to_owned(), json!({"name": feed})),
        (format!("col?feed={feed}"), json!({"name": col, "datatype": "Int64"})),
    ] {
        assert_eq!(app.client.post(app.proxy(&path)).json(&body).sent().await.status(), 201);
    }
    (dir, upstream, app)
}

#[tokio::test]
async fn killing_the_upstream_under_16_writers_loses_no_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut upstream = UpstreamProcess::start(dir.path(), free_port()).await;
    let app = app_on(&upstream).await;
    for (path, body) in
        [("feed", json!({"name": "w"})), ("col?feed=w", json!({"name": "v", "datatype": "Int64"}))]
    {
        let made = app.client.post(app.proxy(path)).json(&body).sent().await;
        assert_eq!(made.status(), 201);
    }

    let deadline = Instant::now() + Duration::from_secs(3);
    let writers = (0..16i64).map(|w| {
        let (client, url) = (app.client.clone(), app.proxy("data?feed=w"));
        tokio::spawn(async move {
            let (mut acked, mut statuses) = (Vec::new(), HashMap::<u16, usize>::new());
            let mut i = 0;
            while Instant::now() < deadline {
                let value = (w + 1) * 1_000_000 + i;
                i += 1;
                // A dropped connection would be an error here, not a status.
                let response = client.post(&url).json(&json!({"v": [value]})).sent().await;
                let status = response.status().as_u16();
                *statuses.entry(status).or_default() += 1;
                if status == 204 {
                    acked.push(value);
                } else {
                    let body: Value = response.json().await.unwrap();
                    assert!(body["detail"].is_string());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            (acked, statuses)
        })
    });
    let writers = futures_util::future::join_all(writers);
    let chaos = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        upstream.kill();
        let ready = reqwest::get(format!("{}/readyz", app.address)).await.unwrap();
        assert_eq!(ready.status(), 503, "not ready while the upstream is down");
        tokio::time::sleep(Duration::from_millis(400)).await;
        upstream.restart().await;
    };
    let (results, ()) = tokio::join!(writers, chaos);

    let mut acked = Vec::new();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for result in results {
        let (a, s) = result.unwrap();
        acked.extend(a);
        for (status, n) in s {
            *statuses.entry(status).or_default() += n;
        }
    }
    let allowed: HashSet<u16> = [204, 502, 503, 504].into();
    assert!(statuses.keys().all(|s| allowed.contains(s)), "{statuses:?}");
    assert!(statuses.get(&502).copied().unwrap_or(0) > 0, "the kill was seen: {statuses:?}");
    let stored = stored_values(&app.client, &app.proxy(""), "w").await;
    assert_eq!(losses(&acked, &stored), (0, 0), "{statuses:?}");
    // Serving again: the writers' last appends went through after the restart.
    assert_eq!(append(&app, "w", 99).await.status(), 204);
    assert_eq!(reqwest::get(format!("{}/readyz", app.address)).await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_big_answer_cut_by_an_upstream_crash_reaches_the_client_cut() {
    const ROWS: u64 = 8_000_000;
    let (_dir, mut upstream, app) = upstream_with_feed("big", "x").await;
    let sized =
        app.client.put(app.proxy("size?feed=big")).json(&json!({"size": ROWS})).sent().await;
    assert_eq!(sized.status(), 204);

    let mut response = app.get_proxy(&format!("bytes?feed=big&ix=0&size={ROWS}&col[]=x")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(ROWS * 8));
    let mut received = response.chunk().await.unwrap().map_or(0, |c| c.len() as u64);
    upstream.kill();
    let ended = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len() as u64,
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    assert!(received < ROWS * 8, "the answer was cut");
    assert!(ended.is_err(), "a cut answer must not end cleanly ({received} bytes)");
}

#[tokio::test]
async fn sigterm_lets_an_upload_in_flight_finish_then_exits_zero() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let serve = |data: &std::path::Path| {
        Command::new(BIN)
            .arg("serve")
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("DATA_DIR", data)
            .env("LBASEDB_PROXY_SUPERUSER_PASSWORD", ADMIN_PASSWORD)
            .env("SHUTDOWN_TIMEOUT", "20s")
            .env_remove("LBASEDB_URL")
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let base = format!("http://127.0.0.1:{port}");
    let wait_up = || async {
        for _ in 0..400 {
            if reqwest::get(format!("{base}/readyz")).await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("serve did not start");
    };
    let mut child = serve(data.path());
    wait_up().await;
    let token: Value = client()
        .post(format!("{base}/api/auth/token/"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .sent_json()
        .await;
    let admin = client_with_authorization(&format!("Token {}", token["token"].as_str().unwrap()));
    for (path, body) in [
        ("feed", json!({"name": "xy"})),
        ("col?feed=xy", json!({"name": "v", "datatype": "Int64"})),
    ] {
        let made = admin.post(format!("{base}/api/proxy/{path}")).json(&body).sent().await;
        assert_eq!(made.status(), 201);
    }

    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    tx.send(Bytes::from_static(b"{\"v\": [1, 2")).unwrap();
    let upload = tokio::spawn(
        admin
            .post(format!("{base}/api/proxy/data?feed=xy"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = reqwest::Client::builder()
        .timeout(Duration::from_millis(700))
        .build()
        .unwrap()
        .get(format!("{base}/healthz"))
        .send()
        .await;
    assert!(late.is_err(), "no new request is served after SIGTERM: {late:?}");

    tx.send(Bytes::from_static(b", 3]}")).unwrap();
    drop(tx);
    let finished = upload.await.unwrap().unwrap();
    assert_eq!(finished.status(), 204, "the upload in flight finished");
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert_eq!(exit.code(), Some(0));

    // What it acknowledged is there after a restart.
    let mut again = serve(data.path());
    wait_up().await;
    let size: Value = admin.get(format!("{base}/api/proxy/size?feed=xy")).sent_json().await;
    assert_eq!(size["size"], 3);
    again.kill().unwrap();
    again.wait().unwrap();
}

/// The feed's size, straight from the upstream.
async fn upstream_size(upstream: &UpstreamProcess, feed: &str) -> Option<u64> {
    let direct = client_with_authorization(&format!("Bearer {}", upstream.secret));
    let answer = direct.get(format!("{}/size?feed={feed}", upstream.url())).send().await.ok()?;
    answer.json::<Value>().await.ok()?["size"].as_u64()
}

/// Waits (up to 20 s) until `feed`'s size through the proxy is `size`.
async fn settles_at(app: &TestApp, feed: &str, size: u64) {
    for _ in 0..400 {
        if app.get_proxy(&format!("size?feed={feed}")).await.status() == 200
            && app.size_of(feed).await == size
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("feed {feed} did not come back to {size} rows, it has {}", app.size_of(feed).await);
}

/// An append of 1,000,000 rows cut by killing the upstream while it
/// writes them (its size already set, its columns not yet written) leaves
/// the feed as it was before (as another write left it, not as the last
/// append did), once the upstream is back; the next append goes on from
/// there.
#[tokio::test]
async fn a_big_append_cut_by_killing_the_upstream_leaves_the_feed_as_it_was() {
    const ROWS: u64 = 1_000_000;
    let (_dir, mut upstream, app) = upstream_with_feed("big", "x").await;
    let first = app.client.post(app.proxy("data?feed=big")).json(&json!({"x": [1, 2, 3]}));
    assert_eq!(first.sent().await.status(), 204);
    // A write that is no append (a row of zeros added): the size the last
    // append left is not the size any more.
    let grown = app.client.put(app.proxy("size?feed=big")).json(&json!({"size": 4}));
    assert_eq!(grown.sent().await.status(), 204);
    let mut cut = 0;
    for _ in 0..5 {
        let (client, url) = (app.client.clone(), app.proxy("bytes?feed=big&col=x"));
        let body: Vec<u8> = (0..ROWS).flat_map(|i| (i as i64 + 10).to_le_bytes()).collect();
        let sending = tokio::spawn(async move { client.post(url).body(body).send().await });
        // The upstream sets the size first, then writes the rows: kill it
        // in between.
        while upstream_size(&upstream, "big").await.is_some_and(|size| size == 4)
            && !sending.is_finished()
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        upstream.kill();
        let status = sending.await.unwrap().map(|r| r.status().as_u16()).unwrap_or(0);
        upstream.restart().await;
        if status == 204 {
            // Written whole before the kill: kept; set back by hand to try again.
            settles_at(&app, "big", 4 + ROWS).await;
            let shrink = app.client.put(app.proxy("size?feed=big")).json(&json!({"size": 4}));
            assert_eq!(shrink.sent().await.status(), 204);
            continue;
        }
        assert_eq!(status, 502, "the client is told the append failed");
        cut += 1;
        settles_at(&app, "big", 4).await;
        break;
    }
    assert_eq!(cut, 1, "an append was cut");
    let kept = get_json(&app.client, &app.proxy("data?feed=big&ix=0&size=4&col=x")).await;
    assert_eq!(kept, json!({"x": [1, 2, 3, 0]}));
    let next = app.client.post(app.proxy("data?feed=big")).json(&json!({"x": [5]}));
    assert_eq!(next.sent().await.status(), 204);
    let all = get_json(&app.client, &app.proxy("data?feed=big&ix=0&size=5&col=x")).await;
    assert_eq!(all, json!({"x": [1, 2, 3, 0, 5]}));
    let metrics = app.client.get(format!("{}/metrics", app.address)).sent().await.text().await;
    assert!(metrics.unwrap().contains("lbasedb_proxy_appends_repaired_total 1"));
}

/// A repair a stopped proxy left unfinished (in the database) is made
/// before the feed's next write, by the next process.
#[tokio::test]
async fn a_repair_left_by_a_stopped_proxy_is_made_before_the_next_write() {
    let (_dir, upstream, app) = upstream_with_feed("t", "x").await;
    let first = app.client.post(app.proxy("data?feed=t")).json(&json!({"x": [1, 2]}));
    assert_eq!(first.sent().await.status(), 204);
    // As a proxy stopped in the middle of a repair leaves it: the rows of
    // zeros the upstream made, and the mark.
    let torn = app.client.put(app.proxy("size?feed=t")).json(&json!({"size": 5}));
    assert_eq!(torn.sent().await.status(), 204);
    lbasedb_proxy::db::queries::mark_repair(&mut app.conn(), "t", 2).unwrap();
    let (url, secret, database) =
        (upstream.url(), upstream.secret.clone(), app.database_url.clone());
    let next = spawn_app_with(move |s| {
        s.lbasedb_url = Some(url);
        s.lbasedb_secret = Some(secret);
        s.db.database_url = Some(database);
    })
    .await;
    let appended = next.client.post(next.proxy("data?feed=t")).json(&json!({"x": [3]}));
    assert_eq!(appended.sent().await.status(), 204);
    let all = get_json(&next.client, &next.proxy("data?feed=t&ix=0&size=3&col=x")).await;
    assert_eq!(all, json!({"x": [1, 2, 3]}));
    assert_eq!(next.size_of("t").await, 3);
    let left = lbasedb_proxy::db::queries::pending_repairs(&mut next.conn()).unwrap();
    assert!(left.is_empty(), "{left:?}");

    // Replicas (PostgreSQL) see a repair another one marked while they run:
    // none writes on top of a torn append.
    if next.database_url.starts_with("postgres") {
        let torn = next.client.put(next.proxy("size?feed=t")).json(&json!({"size": 9}));
        assert_eq!(torn.sent().await.status(), 204);
        lbasedb_proxy::db::queries::mark_repair(&mut next.conn(), "t", 3).unwrap();
        let appended = next.client.post(next.proxy("data?feed=t")).json(&json!({"x": [4]}));
        assert_eq!(appended.sent().await.status(), 204);
        let all = get_json(&next.client, &next.proxy("data?feed=t&ix=0&size=4&col=x")).await;
        assert_eq!(all, json!({"x": [1, 2, 3, 4]}));
    }
}

/// 16 writers append with keys while the upstream is killed and started
/// again twice; each retries a failed append with its key until it is
/// answered 2xx. Every append is then stored exactly once, whole, and no
/// row of zeros is left.
#[tokio::test]
async fn keyed_appends_retried_through_two_upstream_kills_are_stored_exactly_once() {
    let (_dir, mut upstream, app) = upstream_with_feed("w", "v").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers = (0..16i64).map(|w| {
        let (client, url, stop) = (app.client.clone(), app.proxy("data?feed=w"), stop.clone());
        tokio::spawn(async move {
            let (mut appended, mut retries) = (Vec::new(), HashMap::<u16, usize>::new());
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let value = (w + 1) * 1_000_000 + i;
                i += 1;
                let key = format!("w{w}-{i}");
                // Rows of three values: a torn append would show.
                let rows = json!({"v": [value, -value, value]});
                for attempt in 0.. {
                    let sent = client.post(&url).header("idempotency-key", &key).json(&rows);
                    let status = sent.send().await.map_or(0, |r| r.status().as_u16());
                    if (200..300).contains(&status) {
                        break;
                    }
                    // Ten seconds of retries: the key is stuck.
                    assert!(attempt < 500, "append {key} still answered {status}");
                    *retries.entry(status).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                appended.push(value);
            }
            (appended, retries)
        })
    });
    let writers = futures_util::future::join_all(writers);
    let chaos = async {
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            upstream.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            upstream.restart().await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let (results, ()) = tokio::join!(writers, chaos);
    let (mut expected, mut retries) = (Vec::new(), HashMap::<u16, usize>::new());
    for result in results {
        let (appended, seen) = result.unwrap();
        expected.extend(appended.into_iter().flat_map(|v| [v, -v, v]));
        for (status, n) in seen {
            *retries.entry(status).or_default() += n;
        }
    }
    assert!(retries.contains_key(&502), "the kills were seen: {retries:?}");
    let stored = stored_values(&app.client, &app.proxy(""), "w").await;
    let mut seen = stored.clone();
    expected.sort_unstable();
    seen.sort_unstable();
    assert_eq!(seen.len(), expected.len(), "every append once: {retries:?}");
    assert_eq!(seen, expected, "no row of zeros, none twice, none lost: {retries:?}");
    // Each append's three rows are together, in its order.
    for row in stored.chunks(3) {
        assert_eq!((row[1], row[2]), (-row[0], row[0]), "a whole append: {row:?}");
    }
}
