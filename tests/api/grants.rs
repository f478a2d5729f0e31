//! Fine-grained grants (columns, row windows) through the proxy, in front
//! of the embedded upstream, with a recording relay between the two: each
//! case checks the answer and whether the request reached the upstream
//! (nothing is forwarded when it is refused).

use lbasedb_proxy::db::queries;
use serde_json::{Value, json};

use crate::helpers::*;

/// Who asks, in the order of each case's expected statuses.
const ASKERS: [&str; 6] = ["wide", "cols", "window", "recent", "member", "scoped"];

/// The app in front of a relay in front of another app's embedded upstream
/// (so that what reaches the upstream is recorded), and a client per asker.
struct Setup {
    app: TestApp,
    relay: RecordingUpstream,
    /// Keeps the upstream's process.
    _upstream: TestApp,
    clients: Vec<reqwest::Client>,
}

async fn setup() -> Setup {
    let upstream = spawn_app().await;
    upstream
        .create_sized_feed("s", &[("t", "Int64"), ("temp", "Float64"), ("secret", "Int64")], 1000)
        .await;
    upstream.create_sized_feed("w", &[("t", "Int64"), ("temp", "Float64")], 10).await;
    let relay = recording_relay(&upstream.upstream).await;
    let secret = upstream.upstream_secret.clone();
    let app = spawn_app_on(&relay.url, |s| s.lbasedb_secret = Some(secret)).await;
    let view_col = ("lbasedb.view_col", "s");
    app.user_granted("wide", &[("lbasedb.view_data", "s"), view_col]);
    app.user_granted("cols", &[("lbasedb.view_data", "s[t,temp]"), view_col]);
    app.user_granted("window", &[("lbasedb.view_data", "s@0..500"), view_col]);
    app.user_granted("recent", &[("lbasedb.view_data", "s[temp,t]@-100.."), view_col]);
    create_group(&app.pool, "g", &[], &[("lbasedb.view_data", "s[t]@0..500")]);
    create_user(
        &app.pool,
        lbasedb_proxy::auth::users::UserSpec {
            groups: vec!["g".into()],
            grants: grants(&[view_col]),
            ..spec("member")
        },
    );
    // A token of a user who may read all of `s`, scoped to less.
    app.user_granted("holder", &[("lbasedb.view_data", "s"), view_col]);
    let scopes = ["lbasedb.view_data=s[t]@0..100", "lbasedb.view_col=s"];
    let obtained: Value = app
        .obtain_token(json!({"username": "holder", "password": USER_PASSWORD, "scopes": scopes}))
        .await
        .json()
        .await
        .unwrap();
    let scoped = client_with_token(obtained["token"].as_str().expect("a scoped token"));
    let mut clients: Vec<reqwest::Client> = ASKERS[..5]
        .iter()
        .map(|name| client_with_token(&issue_token(&app.pool, name, None)))
        .collect();
    clients.push(scoped);
    Setup { app, relay, _upstream: upstream, clients }
}

impl Setup {
    /// Sends `method path_and_query` (with `body`) as `client`; its status,
    /// its body, and whether that very request reached the upstream.
    async fn ask(
        &self,
        client: &reqwest::Client,
        method: &str,
        path_and_query: &str,
        body: &Option<Value>,
    ) -> (u16, String, bool) {
        let before = recorded(&self.relay).await.len();
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let line = format!("{method} /{path_and_query} HTTP/1.1");
        let request = client.request(method, self.app.proxy(path_and_query));
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        let response = request.sent().await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let forwarded = recorded(&self.relay).await[before..].contains(&line);
        (status, text, forwarded)
    }
}

#[tokio::test]
async fn every_read_is_checked_against_the_columns_and_rows_granted() {
    let setup = setup().await;
    // (method, path and query, statuses for wide, cols, window, recent,
    // member, scoped). A request is forwarded exactly when it is answered
    // 2xx: every other refusal is the proxy's own.
    let cases: &[(&str, &str, [u16; 6])] = &[
        ("GET", "data?feed=s&ix=0&size=10&col[]=t&col[]=temp", [200, 200, 200, 403, 403, 403]),
        ("GET", "data?feed=s&ix=0&size=10&col[]=secret", [200, 403, 200, 403, 403, 403]),
        ("GET", "data?feed=s&ix=950&size=50&col[]=t", [200, 200, 403, 200, 403, 403]),
        ("GET", "data?feed=s&ix=900&size=100&col=temp&col=t", [200, 200, 403, 200, 403, 403]),
        ("GET", "data?feed=s&ix=0&size=10", [200, 403, 403, 403, 403, 403]),
        ("GET", "data?feed=s&ix=0&size=0&col[]=t", [200, 200, 200, 200, 200, 200]),
        ("GET", "bytes?feed=s&ix=400&size=100&col[]=t", [200, 200, 200, 403, 200, 403]),
        ("GET", "bytes?feed=s&ix=400&size=101&col[]=t", [200, 200, 403, 403, 403, 403]),
        ("GET", "bytes?feed=s&ix=0&size=100&col%5B%5D=t", [200, 200, 200, 403, 200, 200]),
        (
            "GET",
            "bytes?feed=s&ix=0&size=1&col[]=t&col%5B%5D=secret",
            [200, 403, 200, 403, 403, 403],
        ),
        ("GET", "raw?feed=s&col=temp&ix=0&size=5", [200, 200, 200, 403, 403, 403]),
        ("GET", "raw?feed=s&col=t&ix=95&size=5", [200, 200, 200, 403, 200, 200]),
        ("GET", "raw?feed=s&col=t&ix=995&size=5", [200, 200, 403, 200, 403, 403]),
        ("GET", "raw?feed=s&col=secret&ix=0&size=1", [200, 403, 200, 403, 403, 403]),
        ("GET", "size?feed=s", [200; 6]),
        ("GET", "col?feed=s", [200; 6]),
        // The query pollution the classifier refuses for everyone.
        ("GET", "data?feed=s&ix=0&size=1&col=t&col[]=secret", [400; 6]),
        ("GET", "data?feed=s&ix=-1&size=1&col[]=t", [400; 6]),
        ("GET", "data?feed=s&ix=0&size=-5&col[]=t", [400; 6]),
        ("GET", "data?feed=s&ix=99999999999999999999999&size=1&col[]=t", [400; 6]),
        ("GET", "data?feed=s&ix=0&ix=999&size=1&col[]=t", [400; 6]),
        // Rows past the largest row number are no grant's.
        // (1400: the upstream's own 400, the request forwarded.)
        (
            "GET",
            "raw?feed=s&col=t&ix=18446744073709551615&size=1",
            [1400, 1400, 403, 403, 403, 403],
        ),
        // Endpoints that read no rows.
        ("GET", "version", [200; 6]),
        ("GET", "feed", [200; 6]),
        // Writes are feed-wide, and these users hold no write.
        ("POST", "data?feed=s", [403; 6]),
        ("PUT", "data?feed=s&ix=0", [403; 6]),
        ("PATCH", "data?feed=s&ix=0", [403; 6]),
        ("POST", "bytes?feed=s&col[]=t", [403; 6]),
        ("PUT", "bytes?feed=s&ix=0&col[]=t", [403; 6]),
        ("PATCH", "bytes?feed=s&ix=0&col[]=t", [403; 6]),
        ("DELETE", "bytes?feed=s&ix=0&size=1&col[]=t", [403; 6]),
        ("POST", "raw?feed=s&col=t&ix=0", [403; 6]),
        ("PUT", "size?feed=s", [403; 6]),
        ("POST", "col?feed=s", [403; 6]),
        ("PATCH", "col?feed=s&name=t", [403; 6]),
        ("DELETE", "col?feed=s&name=t", [403; 6]),
        ("POST", "feed", [403; 6]),
        ("PATCH", "feed?name=s", [403; 6]),
        ("DELETE", "feed?name=s", [403; 6]),
    ];
    let mut failures = Vec::new();
    for (method, path, expected) in cases {
        for (i, client) in setup.clients.iter().enumerate() {
            let body = (*method != "GET" && *method != "DELETE").then(|| json!({"size": 1}));
            let (status, text, forwarded) = setup.ask(client, method, path, &body).await;
            let (want, want_forwarded) = match expected[i] {
                upstream if upstream >= 1000 => (upstream - 1000, true),
                want => (want, (200..300).contains(&want)),
            };
            if status != want || forwarded != want_forwarded {
                failures.push(format!(
                    "{} {method} {path}: {status} (want {want}), forwarded {forwarded}: {text}",
                    ASKERS[i]
                ));
            }
            if status == 403 {
                let detail: Value = serde_json::from_str(&text).expect("a JSON refusal");
                assert!(detail["detail"].is_string(), "{text}");
            }
        }
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn answers_hold_only_what_was_granted_and_refusals_say_the_rows_allowed() {
    let setup = setup().await;
    let [wide, cols, window, recent, member, scoped] = &setup.clients[..] else { unreachable!() };
    let names = |text: &str| -> Vec<String> {
        let list: Vec<Value> = serde_json::from_str(text).unwrap();
        let mut names: Vec<String> =
            list.iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect();
        names.sort();
        names
    };
    for (client, shown) in [
        (wide, &["secret", "t", "temp"][..]),
        (cols, &["t", "temp"]),
        (window, &["secret", "t", "temp"]),
        (recent, &["t", "temp"]),
        (member, &["t"]),
        (scoped, &["t"]),
    ] {
        let (status, text, _) = setup.ask(client, "GET", "col?feed=s", &None).await;
        assert_eq!(status, 200);
        assert_eq!(names(&text), shown, "GET /col lists only the columns granted");
    }
    let (_, text, _) =
        setup.ask(cols, "GET", "data?feed=s&ix=0&size=3&col[]=t&col[]=temp", &None).await;
    let data: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(data, json!({"t": [0, 0, 0], "temp": [0.0, 0.0, 0.0]}));
    // The audit keeps which columns and rows were read; the feed's page
    // lists its latest reads.
    let query = queries::AccessQuery {
        username: Some("cols".into()),
        reads_only: true,
        per_page: 10,
        ..Default::default()
    };
    let mut read = Vec::new();
    for _ in 0..40 {
        read = queries::list_access(&mut setup.app.conn(), &query).unwrap();
        if !read.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let row = read.first().expect("the read is in the audit");
    assert_eq!(
        (row.read_columns.as_deref(), row.rows_read().as_deref()),
        (Some("t,temp"), Some("0..3"))
    );
    let (_, page) = admin(&setup.app).await.get("/admin/lbasedb/feed/s/").await;
    assert!(
        page.contains("Latest reads") && page.contains("<td>t,temp</td><td>0..3</td>"),
        "{page}"
    );

    let (status, text, _) =
        setup.ask(recent, "GET", "data?feed=s&ix=0&size=5&col[]=t", &None).await;
    assert_eq!(status, 403);
    assert!(text.contains("allow rows 900.."), "the detail states the rows allowed: {text}");
    let (_, text, _) = setup.ask(cols, "GET", "data?feed=s&ix=0&size=5&col[]=nope", &None).await;
    let (_, secret, _) =
        setup.ask(cols, "GET", "data?feed=s&ix=0&size=5&col[]=secret", &None).await;
    assert_eq!(
        text.replace("nope", "X"),
        secret.replace("secret", "X"),
        "the same answer whether the column exists or not"
    );

    // A window from the end moves as the feed grows: appended rows come
    // into it, and the oldest leave it.
    let appended = setup
        .app
        .client
        .post(setup.app.proxy("data?feed=s"))
        .json(&json!({"t": vec![7; 50], "temp": vec![0.5; 50], "secret": vec![1; 50]}))
        .sent()
        .await;
    // No wait: an append through the proxy drops the size it kept.
    assert_eq!(appended.status(), 204);
    let (status, text, _) =
        setup.ask(recent, "GET", "data?feed=s&ix=1000&size=50&col[]=t", &None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["t"][0], 7);
    let (status, _, _) =
        setup.ask(recent, "GET", "data?feed=s&ix=900&size=10&col[]=t", &None).await;
    assert_eq!(status, 403, "rows 900..950 left the last 100");
}

#[tokio::test]
async fn writes_stay_feed_wide_and_a_limited_grant_cannot_name_a_write() {
    let setup = setup().await;
    let app = &setup.app;
    let writer = app.client_granted(
        "writer",
        &[
            ("lbasedb.add_data", "w"),
            ("lbasedb.change_data", "w"),
            ("lbasedb.delete_data", "w"),
            ("lbasedb.view_data", "w[t]"),
        ],
    );
    let cases: &[(&str, &str, Option<Value>, u16)] = &[
        ("POST", "data?feed=w", Some(json!({"t": [1], "temp": [2.5]})), 204),
        ("PATCH", "data?feed=w&ix=0", Some(json!({"temp": [3.5]})), 204),
        ("DELETE", "bytes?feed=w&ix=0&size=1&col[]=temp", None, 204),
        ("PUT", "size?feed=w", Some(json!({"size": 5})), 204),
        ("GET", "data?feed=w&ix=0&size=1&col[]=temp", None, 403),
        ("POST", "col?feed=w", Some(json!({"name": "u", "datatype": "Int64"})), 403),
    ];
    for (method, path, body, want) in cases {
        let (status, text, forwarded) = setup.ask(&writer, method, path, body).await;
        assert_eq!(status, *want, "{method} {path}: {text}");
        assert_eq!(forwarded, *want == 204, "{method} {path}");
    }
    assert_eq!(setup._upstream.size_of("w").await, 5);
    for grant in ["lbasedb.add_data=w[t]", "lbasedb.change_data=w@0..5", "lbasedb.view_col=w@0..5"]
    {
        let out = app.command().args(["creategroup", "bad", "--grant", grant]).output().unwrap();
        assert!(!out.status.success(), "{grant} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("granted only with"), "{grant}: {stderr}");
    }
}

#[tokio::test]
async fn a_write_quota_refuses_writes_once_spent_and_counts_only_acknowledged_ones() {
    let app = spawn_app_with(|s| s.write_quota = Some("100B/day".parse().unwrap())).await;
    app.create_feed("w", &[("x", "Int64"), ("y", "Int64")]).await;
    let mut conn = app.conn();
    lbasedb_proxy::auth::users::create_group(
        &mut conn,
        &lbasedb_proxy::auth::perms::Granted::system(),
        "writers",
        &[],
        &grants(&[("lbasedb.add_data", "w"), ("lbasedb.change_data", "w")]),
        Some("5rows/day"),
    )
    .unwrap();
    drop(conn);
    create_user(
        &app.pool,
        lbasedb_proxy::auth::users::UserSpec { groups: vec!["writers".into()], ..spec("wes") },
    );
    let wes = client_with_token(&issue_token(&app.pool, "wes", None));
    let append = |rows: usize| {
        wes.post(app.proxy("data?feed=w")).json(&json!({"x": vec![1; rows], "y": vec![2; rows]}))
    };
    // The group's rows override the default's; the default's bytes still hold.
    let keyed = || append(3).header("idempotency-key", "first-append");
    assert_eq!(keyed().sent().await.status(), 204);
    let refused =
        app.send(&wes, reqwest::Method::POST, &app.proxy("data?feed=w"), Body::None).await;
    assert_eq!(refused.status(), 400, "a write the upstream refuses is not counted");
    assert_eq!(append(3).sent().await.status(), 429, "3 of 5 rows used: 3 more pass it");
    assert_eq!(append(2).sent().await.status(), 204, "2 more fit");
    let spent = append(1).sent().await;
    assert_eq!(spent.status(), 429);
    let wait: u64 = spent.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&wait), "until midnight UTC: {wait}");
    let detail: Value = spent.json().await.unwrap();
    assert!(detail["detail"].as_str().unwrap().contains("5rows/day"), "{detail}");
    assert_eq!(app.size_of("w").await, 5, "the refused writes never reached the upstream");
    assert_eq!(keyed().sent().await.status(), 204, "a retry is answered as the first was");
    assert_eq!(app.size_of("w").await, 5, "and not written again");
    let me = get_json(&wes, &format!("{}/api/auth/me/", app.address)).await;
    assert_eq!(me["write_quota"]["rows_per_day"], 5);
    assert_eq!(me["write_quota"]["bytes_per_day"], 100);
    assert_eq!(me["write_quota"]["rows_today"], 5);
    let bytes = me["write_quota"]["bytes_today"].as_u64().unwrap();
    assert!(bytes > 20 && bytes < 100, "the bodies' bytes: {bytes}");

    // A user with the default quota only: a body that would pass the bytes
    // left is refused before it is sent.
    let bea = app.client_granted("bea", &[("lbasedb.add_data", "w")]);
    let raw = |len: usize| bea.post(app.proxy("bytes?feed=w&col[]=x&col[]=y")).body(vec![0u8; len]);
    assert_eq!(raw(64).sent().await.status(), 204, "64 of 100 bytes");
    assert_eq!(raw(48).sent().await.status(), 429, "64 + 48 > 100");
    assert_eq!(raw(32).sent().await.status(), 204, "64 + 32 <= 100");
    let me = get_json(&bea, &format!("{}/api/auth/me/", app.address)).await;
    assert_eq!(me["write_quota"]["rows_today"], 6, "96 bytes of two Int64 columns");
    assert_eq!(me["write_quota"]["bytes_today"], 96);
    // Rows added by `PUT /size`, and rows zeroed, count too.
    create_user(
        &app.pool,
        lbasedb_proxy::auth::users::UserSpec {
            groups: vec!["writers".into()],
            grants: grants(&[("lbasedb.delete_data", "w")]),
            ..spec("cal")
        },
    );
    let cal = client_with_token(&issue_token(&app.pool, "cal", None));
    let size = app.size_of("w").await;
    let grow = cal.put(app.proxy("size?feed=w")).json(&json!({"size": size + 2}));
    assert_eq!(grow.sent().await.status(), 204);
    let zero = cal.delete(app.proxy("bytes?feed=w&ix=0&size=2&col[]=x"));
    assert_eq!(zero.sent().await.status(), 204);
    let me = get_json(&cal, &format!("{}/api/auth/me/", app.address)).await;
    assert_eq!(me["write_quota"]["rows_today"], 4, "2 rows added, 2 zeroed");
    // Superusers are exempt.
    let admin_append = app
        .client
        .post(app.proxy("data?feed=w"))
        .json(&json!({"x": vec![0; 50], "y": vec![0; 50]}));
    assert_eq!(admin_append.sent().await.status(), 204);

    let metrics =
        app.anon.get(format!("{}/metrics", app.address)).sent().await.text().await.unwrap();
    assert!(
        metrics.contains("lbasedb_proxy_rate_limited_total{limit=\"write_quota\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("lbasedb_proxy_quota_written_total{unit=\"rows\"} 15"), "{metrics}");

    // The admin shows it; only a superuser sets a group's quota.
    let admin = admin(&app).await;
    let wes_id = queries::user_by_username(&mut app.conn(), "wes").unwrap().unwrap().id;
    let (_, page) = admin.get(&format!("/admin/auth/user/{wes_id}/change/")).await;
    assert!(
        page.contains("5rows/day,100B/day; written today (UTC): 5 rows"),
        "the user page shows the quota"
    );
}

/// Saves the admin's change form of user `username` (at `page`) with one
/// grant row of `view_data` (its id) on feed `s`: `extra` fields as the
/// row's columns and bounds.
async fn save_grant_row(
    browser: &Browser,
    page: &str,
    username: &str,
    view_data: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut fields = vec![
        ("username", username),
        ("email", ""),
        ("first_name", ""),
        ("last_name", ""),
        ("is_active", "on"),
        ("grant_perm", view_data),
        ("grant_feed", "s"),
        ("_action", "_continue"),
    ];
    fields.extend_from_slice(extra);
    browser.submit(page, &fields).await
}

#[tokio::test]
async fn grants_with_columns_and_rows_are_given_through_every_door_and_no_wider() {
    let app = spawn_app().await;
    app.create_feed("s", &[("t", "Int64"), ("temp", "Float64"), ("secret", "Int64")]).await;
    // The command line, and `/api/auth/me/`.
    let made = app.run_ok(&[
        "creategroup",
        "analysts",
        "--grant",
        "lbasedb.view_data=s[temp,t]@-100..",
        "--grant",
        "lbasedb.view_col=s",
    ]);
    assert!(made.contains("created"), "{made}");
    create_user(
        &app.pool,
        lbasedb_proxy::auth::users::UserSpec { groups: vec!["analysts".into()], ..spec("ann") },
    );
    let ann = client_with_token(&issue_token(&app.pool, "ann", None));
    let me = get_json(&ann, &format!("{}/api/auth/me/", app.address)).await;
    assert_eq!(
        me["feed_grants"]["s"],
        json!(["lbasedb.view_col", "lbasedb.view_data[t,temp]@-100.."])
    );

    // dumpdata keeps them; loaddata brings them back.
    let dump = app.command().arg("dumpdata").output().unwrap();
    let dumped: Value = serde_json::from_slice(&dump.stdout).unwrap();
    let group =
        dumped["groups"].as_array().unwrap().iter().find(|g| g["name"] == "analysts").unwrap();
    let grant = group["feed_grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["permission"] == "lbasedb.view_data")
        .unwrap();
    assert_eq!(
        grant,
        &json!({"permission": "lbasedb.view_data", "feed": "s", "columns": ["t", "temp"], "rows": "-100.."})
    );
    let other = spawn_app().await;
    let file = other.data.path().join("dump.json");
    std::fs::write(&file, &dump.stdout).unwrap();
    other.run_ok(&["loaddata", file.to_str().unwrap()]);
    let held = queries::held(
        &mut other.conn(),
        queries::HeldBy::Groups(&[queries::group_by_name(&mut other.conn(), "analysts")
            .unwrap()
            .unwrap()
            .id]),
    )
    .unwrap();
    assert!(
        held.grants.contains(&"lbasedb.view_data=s[t,temp]@-100..".parse().unwrap()),
        "{:?}",
        held.grants
    );

    // The admin's chooser: a permission, a feed, columns, bounds.
    let admin = admin(&app).await;
    let id = app.user_granted("bo", &[]);
    let page = format!("/admin/auth/user/{id}/change/");
    let view_data = queries::permission_by_codename(&mut app.conn(), "lbasedb.view_data")
        .unwrap()
        .unwrap()
        .id
        .to_string();
    let row = [
        ("grant_column", "0:t"),
        ("grant_column", "0:secret"),
        ("grant_column", "1:temp"),
        ("grant_from", "0"),
        ("grant_to", "1000"),
        // An empty second row, with a column of its own: dropped.
        ("grant_perm", ""),
        ("grant_feed", ""),
        ("grant_from", ""),
        ("grant_to", ""),
    ];
    let saved = save_grant_row(&admin, &page, "bo", &view_data, &row).await;
    assert_eq!(saved.status(), 302, "{}", saved.text().await.unwrap());
    let links = queries::user_links(&mut app.conn(), id).unwrap();
    assert_eq!(links.grants, vec!["lbasedb.view_data=s[secret,t]@0..1000".parse().unwrap()]);
    let (_, form) = admin.get(&page).await;
    assert!(
        form.contains(r#"<option value="0:secret" selected>secret</option>"#),
        "the columns are chosen"
    );
    assert!(
        form.contains(r#"<option value="0:temp">temp</option>"#),
        "the feed's other columns are offered"
    );
    assert!(form.contains(r#"name="grant_to" value="1000""#));
    let (status, columns) = admin.get("/admin/lbasedb/feed/s/columns/").await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&columns).unwrap().as_array().unwrap().len(), 3);
    let window = [("grant_from", "9"), ("grant_to", "3")];
    let bad = save_grant_row(&admin, &page, "bo", &view_data, &window).await;
    let body = bad.text().await.unwrap();
    assert!(body.contains("holds no row"), "a window with no row is a form error");

    // A staff user gives only what one grant it holds covers.
    let view_user = ["auth.view_user", "auth.change_user"].map(str::to_owned).to_vec();
    create_user(
        &app.pool,
        lbasedb_proxy::auth::users::UserSpec {
            staff: true,
            perms: view_user,
            grants: grants(&[("lbasedb.view_data", "s[t,temp]@-1000..")]),
            ..spec("staff")
        },
    );
    let (staff, _) = log_in(&app, "staff", USER_PASSWORD).await;
    let target = app.user_granted("cy", &[]);
    let cy_page = format!("/admin/auth/user/{target}/change/");
    for (from, to, column, allowed) in [
        ("-100", "", "0:t", true),
        ("0", "10", "0:t", false),
        ("-100", "", "0:secret", false),
        ("", "", "", false),
    ] {
        let mut fields = vec![("grant_from", from), ("grant_to", to)];
        if !column.is_empty() {
            fields.push(("grant_column", column));
        }
        let answer = save_grant_row(&staff, &cy_page, "cy", &view_data, &fields).await;
        let saved = answer.status() == 302;
        let text = answer.text().await.unwrap();
        assert_eq!(saved, allowed, "{from}..{to} {column}: {text}");
        if !allowed {
            assert!(text.contains("you do not hold it"), "{from}..{to} {column}");
        }
    }
}

#[tokio::test]
async fn grants_follow_their_columns_renamed_or_removed_through_the_proxy() {
    let app = spawn_app().await;
    app.create_feed("s", &[("t", "Int64"), ("temp", "Float64")]).await;
    let id = app.user_granted("ann", &[("lbasedb.view_data", "s[t,temp]@0..10")]);
    let held = || queries::user_links(&mut app.conn(), id).unwrap().grants;
    let renamed = app
        .client
        .patch(app.proxy("col?feed=s&name=temp"))
        .json(&json!({"name": "celsius"}))
        .sent()
        .await;
    assert_eq!(renamed.status(), 204);
    assert_eq!(held(), vec!["lbasedb.view_data=s[celsius,t]@0..10".parse().unwrap()]);
    let ann = client_with_token(&issue_token(&app.pool, "ann", None));
    let read = app.get_proxy_as(&ann, "data?feed=s&ix=0&size=0&col[]=celsius").await;
    assert_eq!(read.status(), 200, "the renamed column is readable at once");
    for column in ["t", "celsius"] {
        let removed =
            app.client.delete(app.proxy(&format!("col?feed=s&name={column}"))).sent().await;
        assert_eq!(removed.status(), 204);
    }
    assert!(held().is_empty(), "a grant left with no column goes: {:?}", held());
    // A new column of an old name is not the old one's data.
    let col = json!({"name": "t", "datatype": "Int64"});
    assert_eq!(app.client.post(app.proxy("col?feed=s")).json(&col).sent().await.status(), 201);
    let read = app.get_proxy_as(&ann, "data?feed=s&ix=0&size=0&col[]=t").await;
    assert_eq!(read.status(), 403);
}

/// A body without a length (chunked) is held to the quota as it streams,
/// and rows known before a write is sent (a `PUT /size`, a
/// `DELETE /bytes`) or counted as its JSON goes by are held to the rows
/// left: cut or refused, nothing written, nothing counted.
#[tokio::test]
async fn no_write_passes_what_its_quota_has_left() {
    let app =
        spawn_app_with(|s| s.write_quota = Some("100rows/day,10kB/day".parse().unwrap())).await;
    app.create_feed("w", &[("x", "Int64"), ("y", "Int64")]).await;
    let dee = app.client_granted(
        "dee",
        &[("lbasedb.add_data", "w"), ("lbasedb.change_data", "w"), ("lbasedb.delete_data", "w")],
    );
    let usage = || async {
        let me = get_json(&dee, &format!("{}/api/auth/me/", app.address)).await;
        (
            me["write_quota"]["rows_today"].as_u64().unwrap(),
            me["write_quota"]["bytes_today"].as_u64().unwrap(),
        )
    };
    // 64 KiB of rows without a length: cut once past the 10 kB left.
    let chunks = (0..16).map(|_| Ok::<_, std::io::Error>(vec![0u8; 4096]));
    let chunked = dee
        .post(app.proxy("bytes?feed=w&col[]=x&col[]=y"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks.collect::<Vec<_>>())))
        .sent()
        .await;
    assert_eq!(chunked.status(), 429, "{}", chunked.text().await.unwrap());
    assert_eq!(app.size_of("w").await, 0, "nothing of it was written");
    assert_eq!(usage().await, (0, 0), "nor counted");

    // Rows known before the write is sent.
    let grow = dee.put(app.proxy("size?feed=w")).json(&json!({"size": 1_000_000})).sent().await;
    assert_eq!(grow.status(), 429);
    let zero = dee.delete(app.proxy("bytes?feed=w&ix=0&size=101&col[]=x")).sent().await;
    assert_eq!(zero.status(), 429);
    assert_eq!(app.size_of("w").await, 0);
    // Rows counted as a JSON body streams: 101 rows are cut at the 101st.
    let json = dee
        .post(app.proxy("data?feed=w"))
        .json(&json!({"x": vec![1; 101], "y": vec![2; 101]}))
        .sent()
        .await;
    assert_eq!(json.status(), 429);
    assert_eq!(app.size_of("w").await, 0);
    let fits =
        dee.post(app.proxy("data?feed=w")).json(&json!({"x": vec![1; 100], "y": vec![2; 100]}));
    assert_eq!(fits.sent().await.status(), 204, "what is left, exactly");
    assert_eq!(usage().await.0, 100);
    // A read naming more columns than a request may is refused before any
    // grant is looked at.
    let reader = app.client_granted("rex", &[("lbasedb.view_data", "w[x]@0..10")]);
    let many: String = (0..1025).map(|i| format!("&col[]=c{i}")).collect();
    let read = app.get_proxy_as(&reader, &format!("data?feed=w&ix=0&size=1{many}")).await;
    assert_eq!(read.status(), 400);
}
