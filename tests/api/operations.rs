//! Operating it: Prometheus metrics (names, counts after known requests,
//! bounded labels, who may read them).

use lbasedb_proxy::net::parse_net;
use serde_json::json;

use crate::helpers::{
    Fault, TestApp, broken_upstream, client_with_token, create_user, down_upstream, issue_token,
    spawn_app, spawn_app_with, spec,
};

/// The value of one series in `/metrics` (0 when absent).
fn series(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn metrics(app: &TestApp) -> String {
    let response = app
        .anon
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_requests_bytes_refusals_and_lock_waits() {
    let app = spawn_app().await;
    app.create_feed("xy", &[("x", "Int64")]).await;
    for _ in 0..2 {
        assert_eq!(app.get_proxy("version").await.status(), 200);
    }
    let version_len = app.get_proxy("version").await.bytes().await.unwrap().len();
    assert_eq!(
        app.anon
            .get(app.proxy("version"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    create_user(&app.pool, spec("nobody"));
    let nobody = client_with_token(&issue_token(&app.pool, "nobody", None));
    assert_eq!(
        app.get_proxy_as(&nobody, "size?feed=xy").await.status(),
        403
    );
    let body = json!({"x": [1, 2, 3]}).to_string();
    let pushed = app
        .client
        .post(app.proxy("data?feed=xy"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 204);

    let text = metrics(&app).await;
    let requests = "lbasedb_proxy_requests_total";
    assert_eq!(
        series(
            &text,
            &format!("{requests}{{endpoint=\"version\",method=\"GET\",status=\"200\"}}")
        ),
        3.0
    );
    assert_eq!(
        series(
            &text,
            &format!("{requests}{{endpoint=\"version\",method=\"GET\",status=\"401\"}}")
        ),
        1.0
    );
    assert_eq!(
        series(
            &text,
            &format!("{requests}{{endpoint=\"size\",method=\"GET\",status=\"403\"}}")
        ),
        1.0
    );
    assert_eq!(
        series(
            &text,
            &format!("{requests}{{endpoint=\"data\",method=\"POST\",status=\"204\"}}")
        ),
        1.0
    );
    assert_eq!(
        series(
            &text,
            "lbasedb_proxy_response_bytes_total{endpoint=\"version\"}"
        ),
        3.0 * version_len as f64
    );
    assert_eq!(
        series(
            &text,
            "lbasedb_proxy_request_bytes_total{endpoint=\"data\"}"
        ),
        body.len() as f64
    );
    assert_eq!(
        series(
            &text,
            "lbasedb_proxy_auth_failures_total{reason=\"no_credentials\"}"
        ),
        1.0
    );
    assert_eq!(
        series(
            &text,
            "lbasedb_proxy_auth_failures_total{reason=\"forbidden\"}"
        ),
        1.0
    );
    assert_eq!(
        series(&text, "lbasedb_proxy_write_lock_wait_seconds_count"),
        1.0
    );
    assert_eq!(series(&text, "lbasedb_proxy_in_flight_requests"), 0.0);
    assert_eq!(
        series(
            &text,
            "lbasedb_proxy_request_duration_seconds_count{endpoint=\"version\"}"
        ),
        4.0
    );
    // No label names a user, a token or a feed.
    for secret in ["xy", "nobody", "admin", &app.token[..12]] {
        assert!(
            !text.contains(&format!("\"{secret}")),
            "{secret} in a label"
        );
    }
}

#[tokio::test]
async fn upstream_failures_are_counted_by_kind() {
    let upstream = broken_upstream(Fault::Close).await;
    let url = upstream.url.clone();
    let app = spawn_app_with(|s| s.lbasedb_url = Some(url)).await;
    assert_eq!(app.get_proxy("version").await.status(), 502);
    let text = metrics(&app).await;
    assert_eq!(
        series(
            &text,
            "lbasedb_proxy_upstream_errors_total{kind=\"closed\"}"
        ),
        1.0,
        "{text}"
    );

    let down = down_upstream().await;
    let app = spawn_app_with(|s| s.lbasedb_url = Some(down)).await;
    assert_eq!(app.get_proxy("version").await.status(), 502);
    let text = metrics(&app).await;
    assert_eq!(
        series(
            &text,
            "lbasedb_proxy_upstream_errors_total{kind=\"connect\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn metrics_are_for_allowed_networks_and_superusers_only() {
    let app = spawn_app_with(|s| s.metrics_allow = vec![parse_net("10.0.0.0/8").unwrap()]).await;
    let url = format!("{}/metrics", app.address);
    assert_eq!(app.anon.get(&url).send().await.unwrap().status(), 404);
    create_user(&app.pool, spec("plain"));
    let plain = client_with_token(&issue_token(&app.pool, "plain", None));
    assert_eq!(plain.get(&url).send().await.unwrap().status(), 404);
    let superuser = app.client.get(&url).send().await.unwrap();
    assert_eq!(superuser.status(), 200);
    assert!(
        superuser
            .text()
            .await
            .unwrap()
            .contains("lbasedb_proxy_in_flight_requests")
    );
}
