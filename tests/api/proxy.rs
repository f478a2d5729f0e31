//! Through `/api/proxy/`: every endpoint and method, bodies intact both
//! ways, queries forwarded as sent, refusals that never reach the upstream,
//! and the header policy.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::stream;
use reqwest::Method;
use reqwest::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::helpers::{
    Body, Fault, Sent, TestApp, broken_upstream, recorded, recording_upstream, spawn_app,
    spawn_app_on, spawn_app_with,
};

/// Sends the same request to the proxy and to the upstream directly.
async fn both(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> [(u16, Vec<u8>); 2] {
    let mut answers = Vec::new();
    for (client, url) in [(&app.client, app.proxy(path)), (&app.upstream_client, app.direct(path))]
    {
        let mut request = client.request(method.clone(), url);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.sent().await;
        answers.push((response.status().as_u16(), response.bytes().await.unwrap().to_vec()));
    }
    answers.try_into().unwrap()
}

#[tokio::test]
async fn every_endpoint_and_method_answers_as_the_upstream() {
    let app = spawn_app().await;
    // Writes go through the proxy; reads are compared with the upstream's.
    let le = |f: f64, i: i64| -> Vec<u8> { [f.to_le_bytes(), i.to_le_bytes()].concat() };
    let writes: Vec<(Method, &str, Body, u16)> = vec![
        (Method::POST, "feed", Body::Json(json!({"name": "xy"})), 201),
        (Method::POST, "feed", Body::Json(json!({"name": "tmp"})), 201),
        (Method::PATCH, "feed?name=tmp", Body::Json(json!({"name": "tmp2"})), 204),
        (Method::DELETE, "feed?name=tmp2", Body::None, 204),
        (Method::POST, "col?feed=xy", Body::Json(json!({"name": "x", "datatype": "Float64"})), 201),
        (Method::POST, "col?feed=xy", Body::Json(json!({"name": "y", "datatype": "Int64"})), 201),
        (Method::POST, "col?feed=xy", Body::Json(json!({"name": "t", "datatype": "Int32"})), 201),
        (Method::PATCH, "col?feed=xy&name=t", Body::Json(json!({"name": "u"})), 204),
        (Method::DELETE, "col?feed=xy&name=u", Body::None, 204),
        (Method::PUT, "size?feed=xy", Body::Json(json!({"size": 1})), 204),
        (Method::POST, "data?feed=xy", Body::Json(json!({"x": [0.5, 1.5], "y": [5, 6]})), 204),
        (Method::PUT, "data?feed=xy&ix=0", Body::Json(json!({"x": [9.5]})), 204),
        (Method::PATCH, "data?feed=xy&ix=1", Body::Json(json!({"y": [8]})), 204),
        (Method::POST, "bytes?feed=xy&col[]=x&col[]=y", Body::Bytes(le(3.25, 4)), 204),
        (Method::PUT, "bytes?feed=xy&ix=3&col=x", Body::Bytes(2.5f64.to_le_bytes().to_vec()), 204),
        (
            Method::PATCH,
            "bytes?feed=xy&ix=2&col=x",
            Body::Bytes(1.0f64.to_le_bytes().to_vec()),
            204,
        ),
        (Method::DELETE, "bytes?feed=xy&ix=1&size=1&col[]=x", Body::None, 204),
        (Method::POST, "raw?feed=xy&col=y&ix=0", Body::Bytes(7i64.to_le_bytes().to_vec()), 204),
    ];
    for (method, path, body, expected) in writes {
        let response = app.send(&app.client, method.clone(), &app.proxy(path), body).await;
        assert_eq!(response.status(), expected, "{method} {path}");
    }

    let reads = [
        "version",
        "feed",
        "col?feed=xy",
        "size?feed=xy",
        "data?feed=xy&ix=0&size=4&col[]=x&col[]=y",
        "bytes?feed=xy&ix=0&size=4&col[]=y&col[]=x",
        "raw?feed=xy&col=x&ix=0&size=4",
        // Errors pass through as the upstream gives them.
        "data?feed=xy&ix=0&size=99&col[]=x",
        "col?feed=nope",
    ];
    for path in reads {
        let [proxied, direct] = both(&app, reqwest::Method::GET, path, None).await;
        assert_eq!(proxied, direct, "GET {path}");
    }
    let data: Value = app
        .send(
            &app.client,
            Method::GET,
            &app.proxy("data?feed=xy&ix=0&size=4&col[]=x&col[]=y"),
            Body::None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(data, json!({"x": [9.5, 0.0, 1.0, 2.5], "y": [7, 8, 6, 0]}));
}

#[tokio::test]
async fn two_hundred_thousand_rows_round_trip_byte_for_byte() {
    let app = spawn_app().await;
    app.create_feed("xy", &[("x", "Float64"), ("y", "Int64")]).await;
    const ROWS: usize = 200_000;
    let x: Vec<f64> = (0..ROWS).map(|i| i as f64 * 0.5 + 0.125).collect();
    let y: Vec<i64> = (0..ROWS).map(|i| i as i64 * 3 - 7).collect();

    let pushed =
        app.client.post(app.proxy("data?feed=xy")).json(&json!({"x": x, "y": y})).sent().await;
    assert_eq!(pushed.status(), 204);
    assert_eq!(app.size_of("xy").await, ROWS as u64);

    let path = format!("data?feed=xy&ix=0&size={ROWS}&col[]=x&col[]=y");
    let proxied = app.get_proxy(&path).await;
    assert_eq!(proxied.headers()[CONTENT_TYPE], "application/json");
    let length = proxied.headers()[CONTENT_LENGTH].to_str().unwrap().parse::<usize>().unwrap();
    let proxied = proxied.bytes().await.unwrap();
    let direct = app.upstream_client.get(app.direct(&path)).sent().await.bytes().await.unwrap();
    assert_eq!(proxied.len(), length, "Content-Length kept");
    // Not assert_eq: a failure would print megabytes.
    assert!(proxied == direct, "the proxy changed the body");
    let back: Value = serde_json::from_slice(&proxied).unwrap();
    assert!(back == json!({"x": x, "y": y}), "rows came back different");

    // The same rows as binary, written and read through the proxy.
    let mut binary: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    binary.extend(y.iter().flat_map(|v| v.to_le_bytes()));
    let put = app
        .client
        .put(app.proxy("bytes?feed=xy&ix=0&col[]=x&col[]=y"))
        .body(binary.clone())
        .sent()
        .await;
    assert_eq!(put.status(), 204);
    let got =
        app.get_proxy(&format!("bytes?feed=xy&ix=0&size={ROWS}&col%5B%5D=x&col%5B%5D=y")).await;
    assert_eq!(got.headers()[CONTENT_TYPE], "application/octet-stream");
    assert!(got.bytes().await.unwrap() == binary, "binary body changed");
    let raw = app.get_proxy(&format!("raw?feed=xy&col=y&ix=0&size={ROWS}")).await;
    assert!(raw.bytes().await.unwrap() == binary[ROWS * 8..], "raw body changed");
}

#[tokio::test]
async fn query_strings_are_forwarded_unchanged() {
    let upstream = recording_upstream().await;
    let app = spawn_app_on(&upstream.url, |_| {}).await;
    let queries = [
        "data?feed=xy&ix=0&size=2&col[]=x&col[]=y",
        "data?feed=xy&ix=0&size=2&col%5B%5D=x",
        "bytes?feed=xy&ix=0&size=2&col=x",
        "data?feed=%78y&ix=0&size=1&_=1",
        "feed",
    ];
    for query in queries {
        let response = app.get_proxy(query).await;
        assert_eq!(response.status(), 200, "{query}");
    }
    let heads = recorded(&upstream).await;
    // The proxy's own look-ups of the feed's columns (what a read costs)
    // aside, the upstream sees each query as it was sent.
    let lines: Vec<&str> = heads
        .iter()
        .map(|h| h.lines().next().unwrap())
        .filter(|line| !line.starts_with("GET /col?feed=xy "))
        .collect();
    let expected: Vec<String> = queries.iter().map(|q| format!("GET /{q} HTTP/1.1")).collect();
    assert_eq!(lines, expected);
}

#[tokio::test]
async fn ambiguous_queries_are_refused_and_never_forwarded() {
    let upstream = broken_upstream(Fault::Close).await;
    let app = spawn_app_on(&upstream.url, |_| {}).await;
    let queries = [
        ("data?feed=public&feed=secret&ix=0&size=1", "the feed twice: the upstream reads the last"),
        ("data?fe%65d=secret&ix=0&size=1", "a key that decodes to feed"),
        ("data?feed[]=secret&ix=0&size=1", "the feed as a list"),
        ("bytes?feed=a&col=x&col[]=y&ix=0&size=1", "columns in both list forms"),
        ("size?feed=a&feed=b", "the feed twice"),
        ("raw?feed=a;feed=b&col=x&ix=0&size=1", "a feed name with a semicolon"),
        ("data?ix=0&size=1", "no feed"),
    ];
    for (query, why) in queries {
        let response = app.get_proxy(query).await;
        assert_eq!(response.status(), 400, "{query} ({why})");
        let body: Value = response.json().await.unwrap();
        assert!(body["detail"].is_string(), "{query}: {body}");
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unknown_endpoints_and_methods_never_reach_the_upstream() {
    let upstream = broken_upstream(Fault::Close).await;
    let app = spawn_app_on(&upstream.url, |_| {}).await;

    let missing = app.get_proxy("nope").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap(), json!({"detail": "Not found."}));

    let wrong = app.client.delete(app.proxy("data?feed=xy")).sent().await;
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.headers()[ALLOW], "GET, POST, PUT, PATCH");
    assert_eq!(
        wrong.json::<Value>().await.unwrap(),
        json!({"detail": "Method \"DELETE\" not allowed."})
    );

    let sized = app.client.post(app.proxy("bytes?feed=xy&col=x")).body(vec![0u8; 4096]).send();
    let _ = sized.await;
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1, "only the sized POST was forwarded");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_writes_nothing() {
    let app = spawn_app_with(|s| s.body_limit = 64 * 1024).await;
    app.create_feed("xy", &[("x", "Int64")]).await;

    // Content-Length says so: refused before anything is forwarded.
    let sized = app
        .client
        .post(app.proxy("bytes?feed=xy&col=x"))
        .body(vec![1u8; 64 * 1024 + 8])
        .sent()
        .await;
    assert_eq!(sized.status(), 413);
    assert!(sized.json::<Value>().await.unwrap()["detail"].is_string());

    // Chunked: the upload is cut when it passes the limit.
    let chunks = (0..32).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 8 * 1024])));
    let chunked = app
        .client
        .post(app.proxy("bytes?feed=xy&col=x"))
        .body(reqwest::Body::wrap_stream(stream::iter(chunks)))
        .send()
        .await
        .expect("an answer, not a broken connection");
    assert_eq!(chunked.status(), 413);
    assert_eq!(app.size_of("xy").await, 0, "nothing written");

    // At the limit, it passes.
    let ok =
        app.client.post(app.proxy("bytes?feed=xy&col=x")).body(vec![0u8; 64 * 1024]).sent().await;
    assert_eq!(ok.status(), 204);
    assert_eq!(app.size_of("xy").await, 8 * 1024);
}

#[tokio::test]
async fn credentials_and_hop_by_hop_headers_stay_behind() {
    let upstream = recording_upstream().await;
    let app = spawn_app_on(&upstream.url, |_| {}).await;

    let response = app
        .client
        .get(app.proxy("version"))
        .header("cookie", "sessionid=secret-session")
        .header("authorization", format!("Token {}", app.token))
        .header("x-csrftoken", "secret-csrf")
        .header("connection", "keep-alive, x-client-hop")
        .header("x-client-hop", "1")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.example")
        .header("x-custom", "not-kept")
        .header("x-forwarded-port", "6666")
        .header("x-forwarded-prefix", "/evil")
        .header("x-client-ip", "6.6.6.7")
        .header("true-client-ip", "6.6.6.8")
        .header("cf-connecting-ip", "6.6.6.9")
        .header("x-original-url", "/admin/")
        .header("x-http-method-override", "DELETE")
        .header("content-type", "application/json")
        .sent()
        .await;
    assert_eq!(response.status(), 200);

    // What the client gets back: no upstream cookie, CORS or hop headers.
    let headers = response.headers();
    assert_eq!(headers[CONTENT_TYPE], "application/json");
    assert_eq!(headers["x-lbasedb"], "kept");
    for name in ["set-cookie", "access-control-allow-origin", "x-upstream-hop"] {
        assert!(headers.get(name).is_none(), "{name} passed back");
    }

    let head = recorded(&upstream).await.remove(0).to_lowercase();
    for secret in [
        "secret-session",
        app.token.as_str(),
        "secret-csrf",
        "c2vjcmv0",
        "x-client-hop",
        "6.6.6.6",
        "evil.example",
        // Forwarded by allow-list: nobody's header goes on unless Lbasedb
        // reads it.
        "not-kept",
        "6666",
        "/evil",
        "6.6.6.7",
        "6.6.6.8",
        "6.6.6.9",
        "x-original-url",
        "x-http-method-override",
    ] {
        assert!(!head.contains(&secret.to_lowercase()), "{secret} reached the upstream:\n{head}");
    }
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("x-forwarded-for: 127.0.0.1"), "{head}");
    assert!(head.contains("x-forwarded-proto: http"), "{head}");
    let host = app.address.trim_start_matches("http://");
    assert!(head.contains(&format!("x-forwarded-host: {host}")), "{head}");
}
