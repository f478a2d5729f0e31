//! Operating it: Prometheus metrics (names, counts after known requests,
//! bounded labels, who may read them) and per-user limits (a rate, a
//! group's override, requests in flight).

use lbasedb_proxy::auth::users::UserSpec;
use lbasedb_proxy::db::queries;
use lbasedb_proxy::net::parse_net;
use serde_json::json;

use crate::helpers::{
    Fault, Sent, TestApp, admin, broken_upstream, client_with_token, create_group, create_user,
    down_upstream, issue_token, recorded, recording_upstream, spawn_app, spawn_app_on,
    spawn_app_with, spec,
};

/// The value of one series in `/metrics` (0 when absent).
fn series(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn metrics(app: &TestApp) -> String {
    let response = app.anon.get(format!("{}/metrics", app.address)).sent().await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
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
    assert_eq!(app.anon.get(app.proxy("version")).sent_status().await, 401);
    create_user(&app.pool, spec("nobody"));
    let nobody = client_with_token(&issue_token(&app.pool, "nobody", None));
    assert_eq!(app.get_proxy_as(&nobody, "size?feed=xy").await.status(), 403);
    let appended = json!({"x": [1, 2, 3]});
    // What `.json` sends: serde_json's compact form.
    let body = appended.to_string();
    let pushed = app.client.post(app.proxy("data?feed=xy")).json(&appended).sent().await;
    assert_eq!(pushed.status(), 204);

    let text = metrics(&app).await;
    let requests = |endpoint: &str, method: &str, status: u16| {
        format!(
            "lbasedb_proxy_requests_total{{endpoint=\"{endpoint}\",method=\"{method}\",status=\"{status}\"}}"
        )
    };
    let expected = [
        (requests("version", "GET", 200), 3.0),
        (requests("version", "GET", 401), 1.0),
        (requests("size", "GET", 403), 1.0),
        (requests("data", "POST", 204), 1.0),
        (
            "lbasedb_proxy_response_bytes_total{endpoint=\"version\"}".into(),
            3.0 * version_len as f64,
        ),
        ("lbasedb_proxy_request_bytes_total{endpoint=\"data\"}".into(), body.len() as f64),
        ("lbasedb_proxy_auth_failures_total{reason=\"no_credentials\"}".into(), 1.0),
        ("lbasedb_proxy_auth_failures_total{reason=\"forbidden\"}".into(), 1.0),
        ("lbasedb_proxy_write_lock_wait_seconds_count".into(), 1.0),
        ("lbasedb_proxy_in_flight_requests".into(), 0.0),
        ("lbasedb_proxy_request_duration_seconds_count{endpoint=\"version\"}".into(), 4.0),
    ];
    for (name, value) in expected {
        assert_eq!(series(&text, &name), value, "{name}");
    }
    // No label names a user, a token or a feed.
    for secret in ["xy", "nobody", "admin", &app.token[..12]] {
        assert!(!text.contains(&format!("\"{secret}")), "{secret} in a label");
    }
}

#[tokio::test]
async fn upstream_failures_are_counted_by_kind() {
    let upstream = broken_upstream(Fault::Close).await;
    let app = spawn_app_on(&upstream.url, |_| {}).await;
    assert_eq!(app.get_proxy("version").await.status(), 502);
    let text = metrics(&app).await;
    assert_eq!(
        series(&text, "lbasedb_proxy_upstream_errors_total{kind=\"closed\"}"),
        1.0,
        "{text}"
    );

    let down = down_upstream().await;
    let app = spawn_app_on(&down, |_| {}).await;
    assert_eq!(app.get_proxy("version").await.status(), 502);
    let text = metrics(&app).await;
    assert_eq!(series(&text, "lbasedb_proxy_upstream_errors_total{kind=\"connect\"}"), 1.0);
}

#[tokio::test]
async fn metrics_are_for_allowed_networks_and_superusers_only() {
    let app = spawn_app_with(|s| s.metrics_allow = vec![parse_net("10.0.0.0/8").unwrap()]).await;
    let url = format!("{}/metrics", app.address);
    assert_eq!(app.anon.get(&url).sent_status().await, 404);
    create_user(&app.pool, spec("plain"));
    let plain = client_with_token(&issue_token(&app.pool, "plain", None));
    assert_eq!(plain.get(&url).sent_status().await, 404);
    let superuser = app.client.get(&url).sent().await;
    assert_eq!(superuser.status(), 200);
    assert!(superuser.text().await.unwrap().contains("lbasedb_proxy_in_flight_requests"));
}

// Rate limits per user.

#[tokio::test]
async fn a_user_over_its_rate_gets_429_and_superusers_are_exempt() {
    let app = spawn_app_with(|s| s.user_rate_limit = Some("3/hour".parse().unwrap())).await;
    create_user(&app.pool, spec("script"));
    create_user(&app.pool, spec("other"));
    let script = client_with_token(&issue_token(&app.pool, "script", None));
    for _ in 0..3 {
        assert_eq!(app.get_proxy_as(&script, "version").await.status(), 200);
    }
    let limited = app.get_proxy_as(&script, "version").await;
    assert_eq!(limited.status(), 429);
    let wait: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=1200).contains(&wait), "{wait}");
    let other = client_with_token(&issue_token(&app.pool, "other", None));
    assert_eq!(app.get_proxy_as(&other, "version").await.status(), 200);
    for _ in 0..6 {
        assert_eq!(app.get_proxy("version").await.status(), 200, "superuser");
    }
    let text = metrics(&app).await;
    assert_eq!(series(&text, "lbasedb_proxy_rate_limited_total{limit=\"rate\"}"), 1.0);
}

#[tokio::test]
async fn a_groups_rate_overrides_the_default_set_in_its_admin_form() {
    let app = spawn_app_with(|s| s.user_rate_limit = Some("2/hour".parse().unwrap())).await;
    create_group(&app.pool, "bulk", &[], &[]);
    create_user(&app.pool, UserSpec { groups: vec!["bulk".into()], ..spec("loader") });
    let browser = admin(&app).await;
    let id = queries::group_by_name(&mut app.conn(), "bulk").unwrap().unwrap().id;
    let change = format!("/admin/auth/group/{id}/change/");
    let refused = browser.submit(&change, &[("name", "bulk"), ("rate_limit", "fast")]).await;
    assert_eq!(refused.status(), 200);
    assert!(refused.text().await.unwrap().contains("expected a rate such as 600/min"));
    let saved = browser.submit(&change, &[("name", "bulk"), ("rate_limit", "100/hour")]).await;
    assert_eq!(saved.status(), 302);

    let loader = client_with_token(&issue_token(&app.pool, "loader", None));
    for _ in 0..5 {
        assert_eq!(app.get_proxy_as(&loader, "version").await.status(), 200);
    }
}

#[tokio::test]
async fn one_user_cannot_have_more_than_its_share_in_flight() {
    let app = spawn_app_with(|s| s.user_max_in_flight = Some(1)).await;
    app.create_feed("w", &[("v", "Int64")]).await;
    app.user_granted("script", &[("lbasedb.add_data", "w")]);
    let script = client_with_token(&issue_token(&app.pool, "script", None));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<bytes::Bytes>();
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    tx.send(bytes::Bytes::from_static(b"{\"v\": [1")).unwrap();
    let upload = tokio::spawn(
        script
            .post(app.proxy("data?feed=w"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let second = app.get_proxy_as(&script, "version").await;
    assert_eq!(second.status(), 429);
    assert_eq!(app.get_proxy("version").await.status(), 200, "others go on");
    tx.send(bytes::Bytes::from_static(b"]}")).unwrap();
    drop(tx);
    assert_eq!(upload.await.unwrap().unwrap().status(), 204);
    assert_eq!(app.get_proxy_as(&script, "version").await.status(), 200);
    let text = metrics(&app).await;
    assert_eq!(series(&text, "lbasedb_proxy_rate_limited_total{limit=\"in_flight\"}"), 1.0);
}

// Scoped tokens.

#[tokio::test]
async fn a_scoped_token_reads_what_its_scope_keeps_and_writes_nothing_else() {
    let app = spawn_app().await;
    app.create_x_feeds(&["xy", "zz"]).await;
    app.user_granted(
        "reader",
        &[("lbasedb.view_data", "xy"), ("lbasedb.add_data", "xy"), ("lbasedb.view_data", "zz")],
    );
    let obtained: serde_json::Value = app
        .obtain_token(json!({"username": "reader", "password": crate::helpers::USER_PASSWORD,
                      "scopes": ["lbasedb.view_data=xy"]}))
        .await
        .json()
        .await
        .unwrap();
    let scoped = client_with_token(obtained["token"].as_str().unwrap());
    assert_eq!(app.get_proxy_as(&scoped, "size?feed=xy").await.status(), 200);
    assert_eq!(app.get_proxy_as(&scoped, "size?feed=zz").await.status(), 403, "out of scope");
    let write = scoped.post(app.proxy("data?feed=xy")).json(&json!({"x": [1]})).sent().await;
    assert_eq!(write.status(), 403, "the user may, the token may not");
    assert_eq!(app.size_of("xy").await, 0);

    // A superuser's scoped token is no superuser.
    let root =
        client_with_token(&app.run_ok(&["createtoken", "admin", "--scope", "lbasedb.view_feed"]));
    assert_eq!(app.get_proxy_as(&root, "feed").await.status(), 200);
    let made = root.post(app.proxy("feed")).json(&json!({"name": "new"})).sent().await;
    assert_eq!(made.status(), 403);
    // A scope that names no permission is a clear error.
    let refused = app
        .obtain_token(json!({"username": "reader", "password": crate::helpers::USER_PASSWORD,
                      "scopes": "lbasedb.fly"}))
        .await;
    assert_eq!(refused.status(), 400);
}

/// A token asked for through the API keeps the networks asked for, and a
/// field it does not know (a misspelled restriction) is refused, never
/// dropped: dropping it would make a token of all its user's powers.
#[tokio::test]
async fn an_api_token_keeps_its_networks_and_an_unknown_field_is_refused() {
    let app = spawn_app().await;
    let login = |extra: serde_json::Value| {
        let mut body = json!({"username": "admin", "password": crate::helpers::ADMIN_PASSWORD});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let answer = app.obtain_token(login(json!({"allowed_networks": ["203.0.113.0/24"]}))).await;
    let token = answer.json::<serde_json::Value>().await.unwrap()["token"].clone();
    let elsewhere = client_with_token(token.as_str().unwrap());
    assert_eq!(app.get_proxy_as(&elsewhere, "version").await.status(), 403);
    let admin = queries::user_by_username(&mut app.conn(), "admin").unwrap().unwrap();
    let tokens_before = queries::user_token_count(&mut app.conn(), admin.id).unwrap();
    for extra in [json!({"scope": "lbasedb.view_feed"}), json!({"networks": "10.0.0.0/8"})] {
        let refused = app.obtain_token(login(extra.clone())).await;
        assert_eq!(refused.status(), 400, "{extra}");
        let body: serde_json::Value = refused.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().contains("unknown field"), "{body}");
    }
    assert_eq!(queries::user_token_count(&mut app.conn(), admin.id).unwrap(), tokens_before);
}

#[tokio::test]
async fn a_token_allowed_elsewhere_is_refused_from_here_and_counted() {
    let app = spawn_app().await;
    let elsewhere =
        client_with_token(&app.run_ok(&["createtoken", "admin", "--allow-ip", "203.0.113.0/24"]));
    let refused = app.get_proxy_as(&elsewhere, "version").await;
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("address"));
    let text = metrics(&app).await;
    assert_eq!(series(&text, "lbasedb_proxy_auth_failures_total{reason=\"token_network\"}"), 1.0);

    // The admin's token form takes both, and the list shows them.
    let browser = admin(&app).await;
    let id = queries::user_by_username(&mut app.conn(), "admin").unwrap().unwrap().id.to_string();
    let page = "/admin/authtoken/token/add/";
    let added = browser
        .submit(
            page,
            &[
                ("user", id.as_str()),
                ("name", "ci"),
                ("scopes", "lbasedb.view_data=xy"),
                ("allowed_networks", "10.0.0.0/8"),
            ],
        )
        .await;
    assert_eq!(added.status(), 200);
    let (_, list) = browser.get("/admin/authtoken/token/").await;
    assert!(list.contains("lbasedb.view_data=xy") && list.contains("10.0.0.0/8"), "{list}");
    let bad =
        browser.submit(page, &[("user", id.as_str()), ("name", "x"), ("scopes", "nonsense")]).await;
    assert!(bad.text().await.unwrap().contains("expected CODENAME"));
}

// The data-access audit.

/// The audit's rows, once the writer has written at least `count`.
async fn audited(app: &TestApp, count: usize) -> Vec<lbasedb_proxy::db::models::Access> {
    use diesel::prelude::*;
    use lbasedb_proxy::db::schema::access_log;
    for _ in 0..100 {
        let rows: Vec<lbasedb_proxy::db::models::Access> = access_log::table
            .order(access_log::id)
            .select(lbasedb_proxy::db::models::Access::as_select())
            .load(&mut app.conn())
            .unwrap();
        if rows.len() >= count {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the audit wrote fewer than {count} rows");
}

#[tokio::test]
async fn a_request_is_followed_by_its_id_from_the_answer_to_the_upstream_and_the_audit() {
    let upstream = recording_upstream().await;
    // A row per request (AUDIT_DETAIL=requests): each with its id.
    let requests = |s: &mut lbasedb_proxy::config::Settings| {
        s.audit_detail = lbasedb_proxy::audit::Detail::Requests;
    };
    let app = spawn_app_on(&upstream.url, requests).await;
    let id_of = |response: &reqwest::Response| {
        response.headers()["x-request-id"].to_str().unwrap().to_owned()
    };
    // From a client no proxy vouches for, a chosen id is not taken.
    let first = app
        .client
        .get(app.proxy("version"))
        .header("x-request-id", "chosen-by-client")
        .sent()
        .await;
    assert_eq!(first.status(), 200);
    let first_id = id_of(&first);
    assert_ne!(first_id, "chosen-by-client");
    let second = app.client.get(app.proxy("version")).sent().await;
    let second_id = id_of(&second);
    assert_ne!(first_id, second_id, "each request has its own");
    let heads = recorded(&upstream).await;
    assert!(heads[0].to_lowercase().contains(&format!("x-request-id: {first_id}")), "{heads:?}");
    assert!(!heads[0].contains("chosen-by-client"), "{}", heads[0]);
    let rows = audited(&app, 2).await;
    let ids: Vec<Option<&str>> = rows.iter().map(|r| r.request_id.as_deref()).collect();
    assert_eq!(ids, [Some(first_id.as_str()), Some(second_id.as_str())]);
    // The admin's access log finds a request by its id.
    let browser = admin(&app).await;
    let (_, page) = browser.get(&format!("/admin/lbasedb/access/?q={second_id}")).await;
    assert!(page.contains(&second_id) && !page.contains(&first_id), "{page}");
    // Any date chrono reads is a date to filter by, the last one too.
    for query in ["until=%2B262142-12-31", "until=%2B262142-12-31&format=csv"] {
        let (status, _) = browser.get(&format!("/admin/lbasedb/access/?{query}")).await;
        assert_eq!(status, 200, "{query}");
    }

    // Behind a trusted proxy, its id is kept, if it is a plain short one.
    let upstream = recording_upstream().await;
    let app = spawn_app_on(&upstream.url, |s| {
        requests(s);
        s.trusted_proxies = vec![lbasedb_proxy::net::parse_net("127.0.0.1").unwrap()];
    })
    .await;
    let kept =
        app.client.get(app.proxy("version")).header("x-request-id", "lb-7f3a:42").sent().await;
    assert_eq!(id_of(&kept), "lb-7f3a:42");
    for bad in ["two words", "<script>", &"x".repeat(129)] {
        let made = app.client.get(app.proxy("version")).header("x-request-id", bad).sent().await;
        assert_eq!(made.status(), 200);
        assert_ne!(id_of(&made), bad, "{bad:?} is not an id we keep");
    }
    // Two ids (a proxy that appended its own after the client's): neither.
    let two = app
        .client
        .get(app.proxy("version"))
        .header("x-request-id", "from-client")
        .header("x-request-id", "from-proxy")
        .sent()
        .await;
    assert!(!["from-client", "from-proxy"].contains(&id_of(&two).as_str()), "{}", id_of(&two));
    let heads = recorded(&upstream).await;
    assert!(heads[0].to_lowercase().contains("x-request-id: lb-7f3a:42"), "{heads:?}");
    let rows = audited(&app, 4).await;
    assert_eq!(rows[0].request_id.as_deref(), Some("lb-7f3a:42"));
}

/// The minute a time is in, as the access page's `from` takes it.
fn minute_of(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M").to_string()
}

/// What a user's rows count in the audit once it has counted `requests`.
async fn counted(app: &TestApp, user: &str, requests: i64) -> queries::AccessTotals {
    let query = queries::AccessQuery { username: Some(user.into()), ..Default::default() };
    for _ in 0..100 {
        let totals = queries::access_totals(&mut app.conn(), &query).unwrap();
        if totals.requests >= requests {
            return totals;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the audit counted fewer than {requests} requests of {user}");
}

#[tokio::test]
async fn the_audit_counts_each_minutes_requests_and_bytes_per_user_feed_and_client() {
    use lbasedb_proxy::db::models::Access;
    let app = spawn_app().await;
    app.create_sized_feed("fa", &[("x", "Int64")], 1000).await;
    app.create_sized_feed("fb", &[("x", "Float64")], 1000).await;
    app.user_granted("alice", &[("lbasedb.view_data", "fa")]);
    app.user_granted("bob", &[("lbasedb.view_data", "fb")]);
    let alice = client_with_token(&issue_token(&app.pool, "alice", None));
    let bob = client_with_token(&issue_token(&app.pool, "bob", None));
    let started = chrono::Utc::now();
    // Reads of different sizes, so that a byte lost or counted twice shows.
    let mut sent = std::collections::HashMap::<(&str, &str), (i64, i64)>::new();
    for i in 0..120 {
        for (user, client, feed) in [("alice", &alice, "fa"), ("bob", &bob, "fb")] {
            if user == "bob" && i % 3 != 0 {
                continue;
            }
            let path = format!("data?feed={feed}&ix={i}&size={}&col=x", 1 + i % 17);
            let answer = app.get_proxy_as(client, &path).await;
            assert_eq!(answer.status(), 200);
            let counts = sent.entry((user, feed)).or_default();
            counts.0 += 1;
            counts.1 += answer.bytes().await.unwrap().len() as i64;
        }
    }
    // Refused: alice has no grant on fb; the bytes of the refusals count.
    let mut refused_bytes = 0;
    for _ in 0..7 {
        let refused = app.get_proxy_as(&alice, "data?feed=fb&ix=0&size=1&col=x").await;
        assert_eq!(refused.status(), 403);
        refused_bytes += refused.bytes().await.unwrap().len() as i64;
    }
    // A column named with a NUL is refused before it is kept (it would
    // fail the audit's write on PostgreSQL, and every user's rows with it).
    let nul = app.get_proxy_as(&alice, "data?feed=fa&ix=0&size=1&col[]=x%00").await;
    assert_eq!(nul.status(), 400);
    let nul_bytes = nul.bytes().await.unwrap().len() as i64;
    let ended = chrono::Utc::now();
    let minutes = (ended.timestamp() / 60 - started.timestamp() / 60 + 1) as usize;

    let totals = counted(&app, "alice", 128).await;
    assert_eq!(totals.requests, 128, "{totals:?}");
    assert_eq!(totals.bytes_out, sent[&("alice", "fa")].1 + refused_bytes + nul_bytes);
    assert_eq!(totals.clients, ["127.0.0.1"]);
    assert_eq!(counted(&app, "bob", 40).await.bytes_out, sent[&("bob", "fb")].1);
    // A row a minute and key: alice's reads of fa, alice's refusals on fb,
    // bob's reads of fb; not a row per request.
    let rows: Vec<Access> = {
        use diesel::prelude::*;
        use lbasedb_proxy::db::schema::access_log;
        access_log::table.select(Access::as_select()).load(&mut app.conn()).unwrap()
    };
    let of = |user: &str, feed: &str, status: i32| -> Vec<&Access> {
        rows.iter()
            .filter(|r| r.username == user && r.feed.as_deref() == Some(feed) && r.status == status)
            .collect()
    };
    for (user, feed, status, requests) in
        [("alice", "fa", 200, 120), ("bob", "fb", 200, 40), ("alice", "fb", 403, 7)]
    {
        let kept = of(user, feed, status);
        assert!(!kept.is_empty() && kept.len() <= minutes, "{user} {feed}: {kept:?}");
        assert_eq!(kept.iter().map(|r| r.requests).sum::<i64>(), requests, "{kept:?}");
        if status == 403 {
            assert_eq!(kept.iter().map(|r| r.bytes_out).sum::<i64>(), refused_bytes);
        }
        for row in &kept {
            assert_eq!(row.at.and_utc().timestamp() % 60, 0, "a minute's row: {row:?}");
            assert_eq!(row.read_columns.as_deref(), Some("x"));
            assert!(row.duration_max_ms <= row.duration_ms && row.duration_max_ms > 0.0);
            if row.requests > 1 {
                assert_eq!(row.request_id, None, "several requests have no one id");
            }
        }
    }
    // alice read rows i..i+1+i%17 of fa: the span of her reads.
    let spans: Vec<_> = of("alice", "fa", 200).iter().map(|r| (r.read_from, r.read_to)).collect();
    assert_eq!(spans.iter().filter_map(|s| s.0).min(), Some(0));
    assert_eq!(spans.iter().filter_map(|s| s.1).max(), (0..120).map(|i| i + 1 + i % 17).max());

    // The admin's page and CSV tell the same, for a range of minutes.
    let browser = admin(&app).await;
    let until = minute_of(ended + chrono::Duration::minutes(1));
    let range = format!("from={}&until={until}", minute_of(started));
    let (_, page) =
        browser.get(&format!("/admin/lbasedb/access/?user=alice&feed=fa&{range}")).await;
    assert!(page.contains("<strong>120 request(s)</strong>"), "{page}");
    assert!(page.contains(&format!("{} bytes out, from 127.0.0.1.", sent[&("alice", "fa")].1)));
    let (_, page) = browser.get(&format!("/admin/lbasedb/access/?q=bob&{range}")).await;
    assert!(page.contains("<strong>40 request(s)</strong>"), "{page}");
    // Until the minute they started in: none of them.
    let (_, page) =
        browser.get(&format!("/admin/lbasedb/access/?q=alice&until={}", minute_of(started))).await;
    assert!(page.contains("<strong>0 request(s)</strong>"), "{page}");
    let csv = browser
        .client
        .get(format!("{}/admin/lbasedb/access/?format=csv&{range}", app.address))
        .sent()
        .await
        .text()
        .await
        .unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut from_csv = std::collections::HashMap::<(String, String), (i64, i64)>::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        if fields[column("status")] != "200" {
            continue;
        }
        let key = (fields[column("user")].to_owned(), fields[column("feed")].to_owned());
        let counts = from_csv.entry(key).or_default();
        counts.0 += fields[column("requests")].parse::<i64>().unwrap();
        counts.1 += fields[column("bytes_out")].parse::<i64>().unwrap();
    }
    for ((user, feed), counts) in &sent {
        assert_eq!(from_csv[&(user.to_string(), feed.to_string())], *counts, "{csv}");
    }
}

#[tokio::test]
async fn every_proxied_request_is_audited_with_who_what_and_how_much() {
    let app = spawn_app_with(|s| s.audit_detail = lbasedb_proxy::audit::Detail::Requests).await;
    app.create_feed("xy", &[("x", "Int64")]).await;
    app.user_granted("reader", &[("lbasedb.view_data", "xy")]);
    let token = issue_token(&app.pool, "reader", None);
    let reader = client_with_token(&token);
    let appended = json!({"x": [1, 2]});
    // What `.json` sends: serde_json's compact form.
    let body = appended.to_string();
    let pushed = app.client.post(app.proxy("data?feed=xy")).json(&appended).sent().await;
    assert_eq!(pushed.status(), 204);
    let read = app.get_proxy_as(&reader, "data?feed=xy&ix=0&size=2&col=x").await;
    let read_len = read.bytes().await.unwrap().len();
    let refused = reader.post(app.proxy("data?feed=xy")).json(&json!({"x": [3]})).sent().await;
    assert_eq!(refused.status(), 403);

    let rows = audited(&app, 3).await;
    let [write, read, refused] = &rows[..] else { panic!("{rows:?}") };
    assert_eq!(
        (write.username.as_str(), write.method.as_str(), write.status),
        ("admin", "POST", 204)
    );
    assert_eq!(write.bytes_in, body.len() as i64);
    assert_eq!(write.credential, &app.token[..12]);
    assert_eq!(
        (read.username.as_str(), read.feed.as_deref(), read.status),
        ("reader", Some("xy"), 200)
    );
    assert_eq!(read.bytes_out, read_len as i64);
    assert_eq!(read.credential, &token[..12]);
    assert_eq!((read.endpoint.as_str(), read.client.as_str()), ("data", "127.0.0.1"));
    assert_eq!((refused.status, refused.feed.as_deref()), (403, Some("xy")));
    assert!(read.duration_ms >= 0.0);
}

#[tokio::test]
async fn the_access_page_searches_filters_and_exports_csv_for_view_access_only() {
    let app = spawn_app().await;
    app.create_x_feeds(&["xy", "zz"]).await;
    create_user(&app.pool, spec("reader"));
    let reader = client_with_token(&issue_token(&app.pool, "reader", None));
    app.get_proxy("size?feed=xy").await;
    app.get_proxy("size?feed=zz").await;
    app.get_proxy_as(&reader, "size?feed=xy").await;
    audited(&app, 3).await;

    let browser = admin(&app).await;
    let (status, page) = browser.get("/admin/lbasedb/access/").await;
    assert_eq!(status, 200);
    assert!(page.contains("3 request(s)"), "{page}");
    let (_, page) = browser.get("/admin/lbasedb/access/?q=reader").await;
    assert!(page.contains("1 request(s)"), "{page}");
    let (_, page) = browser.get("/admin/lbasedb/access/?feed=zz").await;
    assert!(page.contains("1 request(s)"), "{page}");
    let (_, page) = browser.get("/admin/lbasedb/access/?status=4xx").await;
    assert!(page.contains("1 request(s)"), "{page}");
    let (_, page) = browser.get("/admin/lbasedb/access/?status=2xx&method=GET").await;
    assert!(page.contains("2 request(s)"), "{page}");
    let (_, page) = browser.get("/admin/lbasedb/access/?from=2000-01-01&until=2000-01-02").await;
    assert!(page.contains("0 request(s)"), "{page}");
    // Whatever is asked, an answer (on PostgreSQL too): a page past the
    // last, a year no engine stores, a NUL; a time that is not one is said.
    for query in ["p=9223372036854775807", "from=-99999-01-01", "q=a%00b&user=%00", "method=G%00"] {
        let (status, _) = browser.get(&format!("/admin/lbasedb/access/?{query}")).await;
        assert_eq!(status, 200, "{query}");
    }
    let (_, page) = browser.get("/admin/lbasedb/access/?from=yesterday").await;
    assert!(page.contains("is not a day"), "{page}");
    let csv = browser
        .client
        .get(format!("{}/admin/lbasedb/access/?q=admin&format=csv", app.address))
        .sent()
        .await;
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("at,user,credential,client,endpoint,method,feed,status"));
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[1..].iter().all(|l| l.contains(",admin,")), "{text}");

    // Staff need lbasedb.view_access.
    create_user(&app.pool, UserSpec { staff: true, ..spec("clerk") });
    let (clerk, _) = crate::helpers::log_in(&app, "clerk", crate::helpers::USER_PASSWORD).await;
    assert_eq!(clerk.get("/admin/lbasedb/access/").await.0, 403);
    create_user(
        &app.pool,
        UserSpec { staff: true, perms: vec!["lbasedb.view_access".into()], ..spec("auditor") },
    );
    let (auditor, _) = crate::helpers::log_in(&app, "auditor", crate::helpers::USER_PASSWORD).await;
    assert_eq!(auditor.get("/admin/lbasedb/access/").await.0, 200);
    assert!(auditor.get("/admin/").await.1.contains("/admin/lbasedb/access/"));
}

#[tokio::test]
async fn audit_rows_past_the_retention_are_purged() {
    use diesel::prelude::*;
    use lbasedb_proxy::db::schema::access_log;
    // A row per request: the second is not counted into the first's row.
    let app = spawn_app_with(|s| s.audit_detail = lbasedb_proxy::audit::Detail::Requests).await;
    app.get_proxy("version").await;
    audited(&app, 1).await;
    let mut conn = app.conn();
    let old = queries::now() - chrono::Duration::days(100);
    diesel::update(access_log::table).set(access_log::at.eq(old)).execute(&mut conn).unwrap();
    drop(conn);
    app.get_proxy("version").await;
    audited(&app, 2).await;
    let mut conn = app.conn();
    let purged =
        lbasedb_proxy::audit::purge(&mut conn, std::time::Duration::from_secs(90 * 86_400))
            .unwrap();
    assert_eq!(purged, 1);
    let left: i64 = access_log::table.count().get_result(&mut conn).unwrap();
    assert_eq!(left, 1);
}

#[tokio::test]
async fn with_audit_log_json_each_request_is_one_json_line_in_the_log() {
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = data.path().join("serve.log");
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_lbasedb-proxy"))
        .arg("serve")
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("DATA_DIR", data.path())
        .env("LBASEDB_PROXY_SUPERUSER_PASSWORD", crate::helpers::ADMIN_PASSWORD)
        .env("AUDIT_LOG", "json")
        .env("RUST_LOG", "warn,lbasedb_proxy::audit=info")
        .env_remove("LBASEDB_URL")
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut token = None;
    for _ in 0..200 {
        let answer = reqwest::Client::new()
            .post(format!("{base}/api/auth/token/"))
            .json(&json!({"username": "admin", "password": crate::helpers::ADMIN_PASSWORD}))
            .send()
            .await;
        if let Ok(answer) = answer {
            let body: serde_json::Value = answer.json().await.unwrap();
            token = body["token"].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let admin = client_with_token(&token.expect("serve started"));
    let answer = admin.get(format!("{base}/api/proxy/version")).sent().await;
    assert_eq!(answer.status(), 200);
    let mut line = None;
    for _ in 0..100 {
        let text = std::fs::read_to_string(&log).unwrap();
        line = text
            .lines()
            .find_map(|l| l.split_once("lbasedb_proxy::audit: ").map(|(_, json)| json.to_owned()));
        if line.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    serve.kill().unwrap();
    serve.wait().unwrap();
    let row: serde_json::Value = serde_json::from_str(&line.expect("an audit line")).unwrap();
    assert_eq!(row["username"], "admin");
    assert_eq!(row["endpoint"], "version");
    assert_eq!(row["status"], 200);
    assert_eq!(row["client"], "127.0.0.1");
}

/// `n` audit rows, straight in the database, `at` the given time.
fn fill_audit(app: &TestApp, n: usize, at: chrono::NaiveDateTime) {
    use diesel::prelude::*;
    use lbasedb_proxy::db::models::Access;
    use lbasedb_proxy::db::schema::access_log;
    let row = Access {
        at,
        username: "bulk".into(),
        credential: "abcd1234".into(),
        client: "192.0.2.1".into(),
        endpoint: "version".into(),
        method: "GET".into(),
        feed: None,
        status: 200,
        bytes_in: 0,
        bytes_out: 20,
        duration_ms: 0.5,
        requests: 1,
        request_id: None,
        read_columns: None,
        duration_max_ms: 0.5,
        read_from: None,
        read_to: None,
    };
    let mut conn = app.conn();
    for _ in 0..n.div_ceil(500) {
        let rows = vec![row.clone(); 500];
        let insert = diesel::insert_into(access_log::table).values(&rows);
        lbasedb_proxy::on_engine!(&mut *conn, |c| insert.execute(c)).unwrap();
    }
}

/// `AUDIT_MAX_ROWS`: past it the oldest rows go, a batch at a time; the
/// retention's purge goes a batch at a time too; the size is a metric.
#[tokio::test]
async fn the_audit_keeps_to_its_row_budget_oldest_first_in_batches() {
    use diesel::prelude::*;
    use lbasedb_proxy::audit;
    use lbasedb_proxy::db::schema::access_log;
    let app = spawn_app_with(|s| s.audit_max_rows = 0).await;
    let old = queries::now() - chrono::Duration::days(100);
    fill_audit(&app, 25_000, old);
    fill_audit(&app, 5_000, queries::now());
    let mut conn = app.conn();
    assert_eq!(audit::rows(&mut conn).unwrap(), 30_000);
    // A batch a call: 10,000 at most.
    assert_eq!(audit::purge_over_budget(&mut conn, 12_000).unwrap(), 10_000);
    assert_eq!(audit::purge_over_budget(&mut conn, 12_000).unwrap(), 8_000);
    assert_eq!(audit::purge_over_budget(&mut conn, 12_000).unwrap(), 0);
    let left: i64 = access_log::table.count().get_result(&mut conn).unwrap();
    assert_eq!(left, 12_000);
    assert_eq!(audit::rows(&mut conn).unwrap(), 12_000);
    let first: i64 =
        access_log::table.select(access_log::id).order(access_log::id).first(&mut conn).unwrap();
    assert_eq!(first, 18_001, "the oldest went first");
    // The retention's purge: the 7,000 old rows left, in batches.
    let purged = audit::purge(&mut conn, std::time::Duration::from_secs(90 * 86_400)).unwrap();
    assert_eq!(purged, 7_000);
    let left: i64 = access_log::table.count().get_result(&mut conn).unwrap();
    assert_eq!(left, 5_000);
    // Ids drawn in vain (on PostgreSQL a rolled-back write keeps them) make
    // the estimate too high: no row goes for them. 3,000 rows gone from the
    // middle: 2,000 left among ids 25,001 to 30,000.
    diesel::delete(access_log::table.filter(access_log::id.between(26_001, 29_000)))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(audit::rows(&mut conn).unwrap(), 5_000, "the estimate");
    assert_eq!(audit::purge_over_budget(&mut conn, 3_000).unwrap(), 0);
    assert_eq!(audit::purge_over_budget(&mut conn, 1_500).unwrap(), 500);
    let first: i64 =
        access_log::table.select(access_log::id).order(access_log::id).first(&mut conn).unwrap();
    assert_eq!(first, 25_501, "the oldest went first");
    drop(conn);
    // The size, as a metric (measured at start, then every minute).
    let metrics =
        app.anon.get(format!("{}/metrics", app.address)).sent().await.text().await.unwrap();
    assert!(metrics.contains("lbasedb_proxy_audit_rows"), "{metrics}");
}
