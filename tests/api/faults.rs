//! An upstream that is down, closes, resets or stalls: clean JSON 502/504,
//! and the proxy goes on serving. Slow uploads are not cut; a client that
//! hangs up takes the upstream request with it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::helpers::{
    Fault, Sent, TestApp, broken_upstream, down_upstream, spawn_app, spawn_app_on, spawn_app_with,
};

async fn expect_error(app: &TestApp, path: &str, status: u16) {
    let response = app.get_proxy(path).await;
    assert_eq!(response.status(), status, "{path}");
    let body: Value = response.json().await.expect("a JSON error");
    assert!(body["detail"].is_string(), "{body}");
}

async fn still_serves(app: &TestApp) {
    let health = app.client.get(format!("{}/healthz", app.address)).sent().await;
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn an_upstream_that_is_down_gives_502_and_not_ready() {
    let url = down_upstream().await;
    let app = spawn_app_on(&url, |_| {}).await;
    expect_error(&app, "version", 502).await;
    let ready = app.client.get(format!("{}/readyz", app.address)).sent().await;
    assert_eq!(ready.status(), 503);
    assert!(ready.json::<Value>().await.unwrap()["detail"].is_string());
    still_serves(&app).await;
}

#[tokio::test]
async fn an_upstream_that_closes_or_resets_gives_502() {
    for fault in [Fault::Close, Fault::Reset] {
        let upstream = broken_upstream(fault).await;
        let app = spawn_app_on(&upstream.url, |_| {}).await;
        expect_error(&app, "col?feed=xy", 502).await;
        expect_error(&app, "version", 502).await;
        assert!(upstream.connections.load(Ordering::SeqCst) >= 2);
        still_serves(&app).await;
    }
}

#[tokio::test]
async fn an_upstream_that_never_answers_gives_504() {
    let upstream = broken_upstream(Fault::Stall).await;
    let app =
        spawn_app_on(&upstream.url, |s| s.response_timeout = Duration::from_millis(300)).await;
    expect_error(&app, "version", 504).await;
    still_serves(&app).await;
}

#[tokio::test]
async fn the_embedded_upstream_is_ready() {
    let app = spawn_app().await;
    let ready = app.client.get(format!("{}/readyz", app.address)).sent().await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["upstream"]["version"], "0.1.10");
}

#[tokio::test]
async fn a_slow_upload_is_not_cut_by_the_response_timeout() {
    let app = spawn_app_with(|s| s.response_timeout = Duration::from_millis(200)).await;
    app.create_feed("xy", &[("x", "Int64")]).await;
    // Ten chunks of 1,000 rows, 100 ms apart: five times the timeout.
    let chunks = futures_util::stream::iter(0..10).then(|_| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 8 * 1000]))
    });
    let response = app
        .client
        .post(app.proxy("bytes?feed=xy&col=x"))
        .body(reqwest::Body::wrap_stream(chunks))
        .sent()
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(app.size_of("xy").await, 10_000);
}

#[tokio::test]
async fn a_client_that_hangs_up_drops_the_upstream_request() {
    let mut upstream = broken_upstream(Fault::Stall).await;
    let app = spawn_app_on(&upstream.url, |_| {}).await;

    let mut client = TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
    let request = format!(
        "GET /api/proxy/version HTTP/1.1\r\nhost: test\r\nauthorization: Token {}\r\n\r\n",
        app.token
    );
    client.write_all(request.as_bytes()).await.unwrap();
    for _ in 0..100 {
        if upstream.connections.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1, "the request reached the upstream");
    drop(client);

    let hung_up = timeout(Duration::from_secs(10), upstream.hangups.recv()).await;
    assert!(hung_up.is_ok(), "the upstream connection outlived the client");
    still_serves(&app).await;
}
