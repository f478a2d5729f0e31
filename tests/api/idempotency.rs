//! `Idempotency-Key` on writes: a retry of a keyed write is answered what
//! the first was, without reaching the upstream; the same key with another
//! request is 422; a retry while the first is in flight is 409; a key whose
//! write never reached the upstream is free again.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    Fault, Sent, TestApp, broken_upstream, spawn_app, spawn_app_on, spawn_app_with,
};

/// A metric's value from `/metrics` (0 when absent).
async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app.client.get(format!("{}/metrics", app.address)).sent().await.text().await;
    text.unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `POST /data?<query>` with these `Idempotency-Key`s.
async fn post(app: &TestApp, query: &str, keys: &[&str], body: &Value) -> reqwest::Response {
    let mut request = app.client.post(app.proxy(&format!("data?{query}"))).json(body);
    for key in keys {
        request = request.header("idempotency-key", *key);
    }
    request.sent().await
}

async fn append(app: &TestApp, key: Option<&str>, body: &Value) -> reqwest::Response {
    post(app, "feed=xy", key.as_slice(), body).await
}

#[tokio::test]
async fn a_retried_append_is_stored_once_and_answered_as_the_first() {
    let app = spawn_app().await;
    app.create_feed("xy", &[("x", "Int64")]).await;
    let sent_bytes = r#"lbasedb_proxy_request_bytes_total{endpoint="data"}"#;

    let first = append(&app, Some("batch-1"), &json!({"x": [1, 2]})).await;
    assert_eq!(first.status(), 204);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let forwarded = metric(&app, sent_bytes).await;
    assert!(forwarded > 0.0);
    let again = append(&app, Some("batch-1"), &json!({"x": [1, 2]})).await;
    assert_eq!(again.status(), 204);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(app.size_of("xy").await, 2, "stored once");
    assert_eq!(metric(&app, sent_bytes).await, forwarded, "the upstream was not reached");
    assert_eq!(metric(&app, "lbasedb_proxy_idempotent_replays_total").await, 1.0);

    // The same key for another request: refused, nothing written.
    let other = append(&app, Some("batch-1"), &json!({"x": [3]})).await;
    assert_eq!(other.status(), 422);
    let body: Value = other.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("another request"), "{body}");
    let elsewhere = post(&app, "feed=xy&x=1", &["batch-1"], &json!({"x": [1, 2]})).await;
    assert_eq!(elsewhere.status(), 422, "another query is another request");
    assert_eq!(app.size_of("xy").await, 2);

    // Another key is another write; no key, every time.
    assert_eq!(append(&app, Some("batch-2"), &json!({"x": [1, 2]})).await.status(), 204);
    assert_eq!(append(&app, None, &json!({"x": [1, 2]})).await.status(), 204);
    assert_eq!(append(&app, None, &json!({"x": [1, 2]})).await.status(), 204);
    assert_eq!(app.size_of("xy").await, 8);

    // An upstream refusal is an answer too: replayed as it was.
    let one = json!({"x": [1]});
    let to_nowhere = || post(&app, "feed=nope", &["to-nowhere"], &one);
    let refused = to_nowhere().await;
    let status = refused.status();
    let text = refused.text().await.unwrap();
    let replayed = to_nowhere().await;
    assert_eq!(replayed.status(), status);
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    assert_eq!(replayed.text().await.unwrap(), text);
}

#[tokio::test]
async fn keys_are_checked_scoped_to_their_user_and_freed_when_nothing_was_sent() {
    let app = spawn_app().await;
    app.create_feed("xy", &[("x", "Int64")]).await;
    for bad in ["", "two words", &"k".repeat(256)] {
        let refused = append(&app, Some(bad), &json!({"x": [1]})).await;
        assert_eq!(refused.status(), 400, "{bad:?}");
        let body: Value = refused.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().contains("Idempotency-Key"), "{body}");
    }
    let twice = post(&app, "feed=xy", &["a", "b"], &json!({"x": [1]})).await;
    assert_eq!(twice.status(), 400);
    assert_eq!(app.size_of("xy").await, 0);

    // Refused before the upstream (a body over the limit): the key is
    // free again, and the corrected request is a first write.
    let limited = spawn_app_with(|s| s.body_limit = 64).await;
    limited.create_feed("xy", &[("x", "Int64")]).await;
    let bytes = |key: &'static str, len: usize| {
        limited
            .client
            .post(limited.proxy("bytes?feed=xy&col=x"))
            .header("idempotency-key", key)
            .body(vec![1u8; len])
            .sent()
    };
    assert_eq!(bytes("k", 72).await.status(), 413);
    let fixed = bytes("k", 8).await;
    assert_eq!(fixed.status(), 204);
    assert!(fixed.headers().get("idempotent-replayed").is_none());
    assert_eq!(limited.size_of("xy").await, 1);

    // Another user's same key is its own.
    app.user_granted("writer", &[("lbasedb.add_data", "xy")]);
    let writer =
        crate::helpers::client_with_token(&crate::helpers::issue_token(&app.pool, "writer", None));
    let mine = append(&app, Some("shared-name"), &json!({"x": [1]})).await;
    assert_eq!(mine.status(), 204);
    let theirs = writer
        .post(app.proxy("data?feed=xy"))
        .header("idempotency-key", "shared-name")
        .json(&json!({"x": [1, 2, 3]}))
        .sent()
        .await;
    assert_eq!(theirs.status(), 204, "not a reuse: another user's key");
    assert!(theirs.headers().get("idempotent-replayed").is_none());
    // Reads ignore it.
    let read = app.client.get(app.proxy("size?feed=xy")).header("idempotency-key", "r").sent();
    assert_eq!(read.await.status(), 200);
}

/// An overwrite the upstream may or may not have made (it closed without
/// an answer) is not made twice: its retry is answered the same failure.
/// (An append is undone instead: `safety`.)
#[tokio::test]
async fn an_ambiguous_failure_is_the_keys_answer_and_a_retry_in_flight_is_409() {
    let upstream = broken_upstream(Fault::Close).await;
    let app = spawn_app_on(&upstream.url, |_| {}).await;
    let write = |key: &'static str| {
        app.client
            .put(app.proxy("bytes?feed=xy&ix=0&col=x"))
            .header("idempotency-key", key)
            .body(vec![0u8; 8])
            .sent()
    };
    let first = write("k1").await;
    assert_eq!(first.status(), 502);
    let tried = upstream.connections.load(std::sync::atomic::Ordering::SeqCst);
    let retry = write("k1").await;
    assert_eq!(retry.status(), 502);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(upstream.connections.load(std::sync::atomic::Ordering::SeqCst), tried);

    let stalled = broken_upstream(Fault::Stall).await;
    let app = spawn_app_on(&stalled.url, |s| {
        s.response_timeout = Duration::from_secs(2);
        s.write_doubt_timeout = Duration::from_millis(100);
    })
    .await;
    let (client, url) = (app.client.clone(), app.proxy("bytes?feed=xy&ix=0&col=x"));
    let send = move || {
        let request = client.put(&url).header("idempotency-key", "slow").body(vec![0u8; 8]);
        async move { request.sent().await }
    };
    let first = tokio::spawn(send());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let meanwhile = send().await;
    assert_eq!(meanwhile.status(), 409);
    assert_eq!(meanwhile.headers()["retry-after"], "1");
    assert_eq!(first.await.unwrap().status(), 504);
}

/// Keys expire after their TTL (purged in batches), and a user holding
/// `IDEMPOTENCY_MAX_KEYS_PER_USER` at the last count is told to wait.
#[tokio::test]
async fn kept_keys_expire_and_a_user_past_its_bound_waits() {
    use actix_web::http::Method;
    use lbasedb_proxy::db::queries::{self, KeptAnswer, KeyClaim};
    use lbasedb_proxy::error::ApiError;
    use lbasedb_proxy::proxy::Body;
    use lbasedb_proxy::proxy::classify::Endpoint;
    use lbasedb_proxy::proxy::idempotency::{Keyed, Keys, RequestDigest};

    let app = spawn_app().await;
    let admin = queries::user_by_username(&mut app.conn(), "admin").unwrap().unwrap().id;
    let hour = chrono::Duration::hours(1);
    let keep = |key: &str, expires: chrono::NaiveDateTime| {
        let conn = &mut app.conn();
        let claimed = queries::claim_key(conn, admin, key, queries::now() + hour).unwrap();
        let KeyClaim::Claimed(id) = claimed else { panic!("{key}: {claimed:?}") };
        let answer = KeptAnswer {
            request_digest: "d".into(),
            status: 204,
            content_type: None,
            answer: None,
        };
        queries::keep_answer(conn, id, &answer, expires).unwrap();
    };
    keep("a", queries::now() + hour);
    keep("b", queries::now() + hour);
    let keys = std::sync::Arc::new(Keys::new(
        app.pool.clone(),
        Duration::from_secs(3600),
        Duration::from_secs(60),
        2,
    ));
    let claim = |key: &str| {
        let digest = RequestDigest::new(&Method::POST, Endpoint::Data, "feed=xy", b"");
        keys.claim(admin, key.into(), digest, Body::Full(bytes::Bytes::new()), 1024)
    };
    keys.count().await;
    let refused = claim("c").await;
    assert!(matches!(refused, Err(ApiError::Throttled(_))), "at the bound");

    // One expires: the next count purges it, and there is room again.
    let conn = &mut app.conn();
    {
        use diesel::prelude::*;
        use lbasedb_proxy::db::schema::idempotency_key as k;
        let past = queries::now() - chrono::Duration::seconds(1);
        diesel::update(k::table.filter(k::client_key.eq("a")))
            .set(k::expires_at.eq(past))
            .execute(conn)
            .unwrap();
    }
    keys.count().await;
    assert!(matches!(claim("c").await, Ok(Keyed::First(..))), "room after the purge");
    let left: Vec<String> = {
        use diesel::prelude::*;
        use lbasedb_proxy::db::schema::idempotency_key as k;
        k::table.select(k::client_key).order(k::client_key).load(conn).unwrap()
    };
    assert_eq!(left, ["b", "c"], "the expired key is gone");
    // An expired answer is no answer: its key is claimed anew.
    keep("d", queries::now() - chrono::Duration::seconds(1));
    let again = queries::claim_key(conn, admin, "d", queries::now() + hour).unwrap();
    assert!(matches!(again, KeyClaim::Claimed(_)), "{again:?}");
}

/// An upstream that answers every request 204 after `delay`, counting
/// the requests it is sent.
async fn slow_upstream(
    delay: Duration,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buffer[..n]),
                    }
                }
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let answer = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
                stream.write_all(answer).await.ok();
            });
        }
    });
    (url, requests)
}

/// Waits (within ten seconds) for `counter` to reach `n`.
async fn until_counted(counter: &std::sync::atomic::AtomicUsize, n: usize) {
    for _ in 0..1000 {
        if counter.load(std::sync::atomic::Ordering::SeqCst) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the upstream never got request {n}");
}

/// A client that hangs up once its keyed write has reached the upstream,
/// and retries, gets the write's answer, not a second write: the exchange
/// that holds the feed's lock keeps the answer whatever becomes of the
/// request.
#[tokio::test]
async fn a_client_that_hangs_up_and_retries_gets_the_first_answer() {
    let (url, requests) = slow_upstream(Duration::from_millis(400)).await;
    let app = spawn_app_on(&url, |_| {}).await;
    let write = || {
        let request = app.client.post(app.proxy("raw?feed=xy&col=x&ix=0"));
        request.header("idempotency-key", "hang-up").body(vec![1u8; 8]).send()
    };
    let first = tokio::spawn(write());
    until_counted(&requests, 1).await;
    first.abort();
    // Until the first write's answer is kept (400 ms upstream, and the
    // answer's row: longer on a loaded machine), a retry is told 409.
    let mut retry = write().await.unwrap();
    for _ in 0..50 {
        if retry.status() != 409 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        retry = write().await.unwrap();
    }
    assert_eq!(retry.status(), 204);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1, "sent on once");
}

/// A keyed write whose client hangs up before it is sent (here: while it
/// waits for the feed's lock) gives its key back: the retry is the first
/// write, not told 409 until the claim's lease (minutes) runs out.
#[tokio::test]
async fn a_keyed_write_given_up_before_it_is_sent_leaves_its_key_free() {
    let (url, requests) = slow_upstream(Duration::from_millis(800)).await;
    let app = spawn_app_on(&url, |_| {}).await;
    let raw = app.proxy("raw?feed=xy&col=x&ix=0");
    let holder = tokio::spawn(app.client.post(&raw).body(vec![1u8; 8]).send());
    until_counted(&requests, 1).await;
    let keyed = || app.client.post(&raw).header("idempotency-key", "early").body(vec![2u8; 8]);
    let given_up = keyed().timeout(Duration::from_millis(100)).send().await;
    assert!(given_up.is_err(), "the client gave up while the lock was held");
    assert_eq!(holder.await.unwrap().unwrap().status(), 204);
    // The key is given back as the request ends: a retry, once that is
    // done (bounded), is sent on as a first write.
    let mut retry = keyed().send().await.unwrap();
    for _ in 0..20 {
        if retry.status() != 409 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        retry = keyed().send().await.unwrap();
    }
    assert_eq!(retry.status(), 204);
    assert!(retry.headers().get("idempotent-replayed").is_none(), "a first write");
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 2, "the keyed write once");
}

/// A write that takes longer than its key's lease (a slow upload) keeps
/// its key: the lease is renewed while it runs, so a retry meanwhile is
/// 409, not a second write.
#[tokio::test]
async fn a_slow_upload_keeps_its_key_past_the_lease() {
    let (url, requests) = slow_upstream(Duration::ZERO).await;
    // A lease of 3 s: the lock's wait, the answer's and the doubt's.
    let app = spawn_app_on(&url, |s| {
        s.write_lock_timeout = Duration::from_secs(1);
        s.response_timeout = Duration::from_secs(1);
        s.write_doubt_timeout = Duration::from_secs(1);
    })
    .await;
    let chunks = futures_util::stream::unfold(0, |sent| async move {
        (sent < 5).then_some(())?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(vec![1u8; 8])), sent + 1))
    });
    let slow = app
        .client
        .post(app.proxy("raw?feed=xy&col=x&ix=0"))
        .header("idempotency-key", "slow-upload")
        .body(reqwest::Body::wrap_stream(chunks))
        .send();
    let retry = async {
        tokio::time::sleep(Duration::from_millis(4500)).await;
        let request = app.client.post(app.proxy("raw?feed=xy&col=x&ix=0"));
        request.header("idempotency-key", "slow-upload").body(vec![1u8; 40]).send().await
    };
    let (slow, retry) = tokio::join!(slow, retry);
    assert_eq!(slow.unwrap().status(), 204);
    assert_eq!(retry.unwrap().status(), 409, "the key is still the slow upload's");
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);
}
