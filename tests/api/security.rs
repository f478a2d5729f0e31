//! The holes found around the permission check, each as a test that failed
//! before its fix: stored HTML served as a page, staff permissions that
//! were superuser in disguise, reads and sizes that abort the upstream, the
//! embedded upstream's open port, throttling that lost the race or locked
//! out the innocent, an open redirect, login CSRF, panics on input, grants
//! that outlived their feed, self-deletion, a feed page that showed more
//! than the API, world-readable files and a row per anonymous visitor, and
//! a database URL taken for a file name.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use diesel::prelude::*;
use lbasedb_proxy::auth::grant::Grant;
use lbasedb_proxy::auth::users::UserSpec;
use lbasedb_proxy::config::Settings;
use lbasedb_proxy::db::{Pool, queries, schema};
use lbasedb_proxy::startup::Application;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, X_CONTENT_TYPE_OPTIONS};
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_PASSWORD, Browser, Sent, TestApp, USER_PASSWORD, admin, client,
    client_with_authorization, client_with_token, create_group, create_user, fixed_upstream,
    grants, issue_token, log_in, recorded, recording_upstream, spawn_app, spawn_app_on,
    spawn_app_with, spec,
};

const SANDBOX: &str = "default-src 'none'; sandbox";

fn assert_not_a_page(response: &reqwest::Response, what: &str) {
    let headers = response.headers();
    assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff", "{what}");
    assert_eq!(headers[CONTENT_SECURITY_POLICY], SANDBOX, "{what}");
    let kind =
        headers.get(CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert!(
        kind.starts_with("application/json")
            || kind.starts_with("application/octet-stream")
            || kind.starts_with("text/plain"),
        "{what}: served as {kind:?}"
    );
}

// 1. Stored XSS through content sniffing.

#[tokio::test]
async fn html_written_to_a_feed_is_read_back_as_bytes_never_as_a_page() {
    let app = spawn_app().await;
    app.create_feed("public", &[("x", "Int64")]).await;
    app.user_granted("mallory", &[("lbasedb.add_data", "public")]);
    let mallory = client_with_token(&issue_token(&app.pool, "mallory", None));
    let mut html = b"<html><script>fetch('/admin/')</script></html>".to_vec();
    html.resize(html.len().div_ceil(8) * 8, b' ');
    let rows = html.len() / 8;
    let written =
        mallory.post(app.proxy("bytes?feed=public&col[]=x")).body(html.clone()).sent().await;
    assert_eq!(written.status(), 204);

    // The admin opens the link mallory sends.
    for path in [
        format!("raw?feed=public&col=x&ix=0&size={rows}"),
        format!("bytes?feed=public&ix=0&size={rows}&col[]=x"),
    ] {
        let read = app.get_proxy(&path).await;
        assert_eq!(read.status(), 200);
        assert_eq!(read.headers()[CONTENT_TYPE], "application/octet-stream");
        assert_not_a_page(&read, &path);
        assert_eq!(read.bytes().await.unwrap().to_vec(), html);
    }
}

#[tokio::test]
async fn every_api_answer_says_it_is_not_a_page() {
    let app = spawn_app().await;
    let cases: Vec<(&reqwest::Client, String)> = vec![
        (&app.client, app.proxy("version")),
        (&app.client, app.proxy("feed")),
        (&app.client, app.proxy("nope")),
        (&app.client, app.proxy("data?feed=a&feed=b")),
        (&app.client, app.proxy("size?feed=missing")),
        (&app.anon, app.proxy("version")),
        (&app.anon, format!("{}/api/auth/me/", app.address)),
        (&app.anon, format!("{}/api/auth/csrf/", app.address)),
        (&app.anon, format!("{}/api/nothing/here", app.address)),
    ];
    for (client, url) in cases {
        let response = client.get(&url).sent().await;
        assert_not_a_page(&response, &url);
    }
}

#[tokio::test]
async fn an_upstream_answer_typed_as_html_or_untyped_is_served_as_bytes() {
    for head in [
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-security-policy: default-src *\r\nx-content-type-options: none",
        "HTTP/1.1 200 OK",
        "HTTP/1.1 400 Bad Request\r\ncontent-type: image/svg+xml",
    ] {
        let upstream = fixed_upstream(head, b"<script>alert(1)</script>").await;
        let app = spawn_app_on(&upstream.url, |_| {}).await;
        for path in ["version", "size?feed=xy", "data?feed=xy&ix=0&size=1&col=x"] {
            let response = app.get_proxy(path).await;
            assert_eq!(
                response.headers()[CONTENT_TYPE],
                "application/octet-stream",
                "{head} /{path}"
            );
            assert_not_a_page(&response, path);
        }
    }
}

// 2. Staff permissions are not superuser in disguise.

fn perm_id(pool: &Pool, codename: &str) -> String {
    let mut conn = pool.get().unwrap();
    queries::permission_by_codename(&mut conn, codename).unwrap().unwrap().id.to_string()
}

fn user_id(pool: &Pool, username: &str) -> i32 {
    user(pool, username).id
}

fn user(pool: &Pool, username: &str) -> lbasedb_proxy::db::models::User {
    queries::user_by_username(&mut pool.get().unwrap(), username).unwrap().expect("the user exists")
}

fn group_id(pool: &Pool, name: &str) -> String {
    queries::group_by_name(&mut pool.get().unwrap(), name).unwrap().unwrap().id.to_string()
}

fn holdings(pool: &Pool, username: &str) -> (Vec<String>, Vec<Grant>) {
    let id = user_id(pool, username);
    let held = queries::holdings(&mut pool.get().unwrap(), id).unwrap();
    let mut perms = held.perms;
    perms.sort();
    (perms, held.grants)
}

fn staff(username: &str, perms: &[&str]) -> UserSpec {
    UserSpec { staff: true, perms: perms.iter().map(|p| p.to_string()).collect(), ..spec(username) }
}

/// Posts an admin form with the session's CSRF token.
async fn submit(browser: &Browser, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    browser.post("/admin/", path, fields).await
}

/// The people of the privilege matrix: two superusers, staff holding one
/// admin permission each, a user holding nothing, one holding a grant the
/// staff lack, a group holding more than the staff.
async fn privilege_cast() -> TestApp {
    let app = spawn_app().await;
    let pool = &app.pool;
    create_user(pool, UserSpec { superuser: true, ..spec("boss2") });
    create_user(pool, spec("plain"));
    create_user(
        pool,
        UserSpec { grants: grants(&[("lbasedb.view_data", "secret")]), ..spec("reader") },
    );
    create_user(pool, staff("changer", &["auth.change_user", "auth.view_user"]));
    create_user(pool, staff("minter", &["authtoken.add_token"]));
    create_user(pool, staff("deleter", &["auth.delete_user"]));
    create_group(pool, "powerful", &["auth.delete_user"], &[]);
    create_group(pool, "mine", &[], &[]);
    create_user(
        pool,
        UserSpec { groups: vec!["mine".into()], ..staff("grouper", &["auth.change_group"]) },
    );
    app
}

#[derive(Debug, Clone, Copy)]
enum Act {
    /// The actor ticks `is_superuser` on itself.
    SelfSuperuser,
    /// The actor changes a user's e-mail address.
    ChangeEmail(&'static str),
    SetPassword(&'static str),
    /// The actor gives `plain` a permission.
    GivePerm(&'static str),
    /// The actor gives `plain` a grant on feed `secret`.
    GiveGrant(&'static str),
    /// The actor puts itself in a group.
    JoinGroup(&'static str),
    MintToken(&'static str),
    /// The actor gives its group `mine` a permission.
    GiveGroupPerm(&'static str),
    Delete(&'static str),
}

async fn perform(app: &TestApp, actor: &str, act: Act) -> reqwest::Response {
    let pool = &app.pool;
    let (browser, login) = log_in(app, actor, USER_PASSWORD).await;
    assert_eq!(login.status(), 302, "{actor} logs in");
    let me = user(pool, actor);
    let own_perms: Vec<String> = {
        let links = queries::user_links(&mut pool.get().unwrap(), me.id).unwrap();
        links.perms.iter().map(|p| p.to_string()).collect()
    };
    let mut own: Vec<(&str, &str)> =
        vec![("username", actor), ("is_active", "on"), ("is_staff", "on")];
    for p in &own_perms {
        own.push(("user_permissions", p));
    }
    match act {
        Act::SelfSuperuser => {
            own.push(("is_superuser", "on"));
            submit(&browser, &format!("/admin/auth/user/{}/change/", me.id), &own).await
        }
        Act::JoinGroup(group) => {
            let id = group_id(pool, group);
            own.push(("groups", &id));
            submit(&browser, &format!("/admin/auth/user/{}/change/", me.id), &own).await
        }
        Act::ChangeEmail(target) => {
            let target = user(pool, target);
            let mut fields = vec![
                ("username", target.username.as_str()),
                ("email", "new@example.com"),
                ("is_active", "on"),
            ];
            if target.is_superuser {
                fields.extend([("is_staff", "on"), ("is_superuser", "on")]);
            }
            submit(&browser, &format!("/admin/auth/user/{}/change/", target.id), &fields).await
        }
        Act::SetPassword(target) => {
            let id = user_id(pool, target);
            let fields = [("password1", "taken-over-pass"), ("password2", "taken-over-pass")];
            submit(&browser, &format!("/admin/auth/user/{id}/password/"), &fields).await
        }
        Act::GivePerm(codename) => {
            let id = user_id(pool, "plain");
            let perm = perm_id(pool, codename);
            let fields = [("username", "plain"), ("is_active", "on"), ("user_permissions", &perm)];
            submit(&browser, &format!("/admin/auth/user/{id}/change/"), &fields).await
        }
        Act::GiveGrant(codename) => {
            let id = user_id(pool, "plain");
            let perm = perm_id(pool, codename);
            let fields = [
                ("username", "plain"),
                ("is_active", "on"),
                ("grant_perm", &perm),
                ("grant_feed", "secret"),
            ];
            submit(&browser, &format!("/admin/auth/user/{id}/change/"), &fields).await
        }
        Act::MintToken(target) => {
            let id = user_id(pool, target).to_string();
            let fields = [("user", id.as_str()), ("name", "minted"), ("expires_in", "")];
            submit(&browser, "/admin/authtoken/token/add/", &fields).await
        }
        Act::GiveGroupPerm(codename) => {
            let id = group_id(pool, "mine");
            let perm = perm_id(pool, codename);
            let fields = [("name", "mine"), ("permissions", perm.as_str())];
            submit(&browser, &format!("/admin/auth/group/{id}/change/"), &fields).await
        }
        Act::Delete(target) => {
            let id = user_id(pool, target);
            submit(&browser, &format!("/admin/auth/user/{id}/delete/"), &[("post", "yes")]).await
        }
    }
}

/// Whether the act took effect, read from the database.
fn took_effect(app: &TestApp, actor: &str, act: Act) -> bool {
    let pool = &app.pool;
    let exists =
        |name: &str| queries::user_by_username(&mut pool.get().unwrap(), name).unwrap().is_some();
    match act {
        Act::SelfSuperuser => user(pool, actor).is_superuser,
        Act::ChangeEmail(target) => user(pool, target).email == "new@example.com",
        Act::SetPassword(target) => {
            let phc = user(pool, target).password;
            lbasedb_proxy::auth::password::verify("taken-over-pass", Some(&phc))
        }
        Act::GivePerm(codename) => holdings(pool, "plain").0.contains(&codename.to_owned()),
        Act::GiveGrant(codename) => {
            holdings(pool, "plain").1.contains(&Grant::new(codename, "secret"))
        }
        Act::JoinGroup(group) => {
            holdings(pool, actor).0.iter().any(|p| group == "powerful" && p == "auth.delete_user")
        }
        Act::MintToken(target) => {
            let id = user_id(pool, target);
            schema::authtoken_token::table
                .filter(schema::authtoken_token::user_id.eq(id))
                .filter(schema::authtoken_token::name.eq("minted"))
                .count()
                .get_result::<i64>(&mut pool.get().unwrap())
                .unwrap()
                > 0
        }
        Act::GiveGroupPerm(codename) => holdings(pool, "grouper").0.contains(&codename.to_owned()),
        Act::Delete(target) => !exists(target),
    }
}

#[tokio::test]
async fn staff_permissions_give_only_what_their_holder_holds() {
    use Act::*;
    let cases: [(&str, Act, bool); 20] = [
        ("changer", SelfSuperuser, false),
        ("changer", ChangeEmail("boss2"), false),
        ("changer", SetPassword("boss2"), false),
        ("changer", SetPassword("reader"), false),
        ("changer", GivePerm("auth.delete_user"), false),
        ("changer", GiveGrant("lbasedb.view_data"), false),
        ("changer", JoinGroup("powerful"), false),
        ("minter", MintToken("boss2"), false),
        ("minter", MintToken("reader"), false),
        ("grouper", GiveGroupPerm("auth.delete_user"), false),
        ("deleter", Delete("boss2"), false),
        // What each may do.
        ("changer", ChangeEmail("plain"), true),
        ("changer", SetPassword("plain"), true),
        ("changer", GivePerm("auth.change_user"), true),
        ("minter", MintToken("plain"), true),
        ("grouper", GiveGroupPerm("auth.change_group"), true),
        ("deleter", Delete("plain"), true),
        // A superuser may do what the others may not.
        ("boss2", SetPassword("admin"), true),
        ("boss2", MintToken("reader"), true),
        ("boss2", GivePerm("auth.delete_user"), true),
    ];
    for (actor, act, allowed) in cases {
        // A fresh cast per case, so no case leans on another's effect.
        let app = privilege_cast().await;
        if actor == "boss2" {
            let mut conn = app.conn();
            lbasedb_proxy::auth::users::set_password(
                &mut conn,
                &lbasedb_proxy::auth::perms::Granted::system(),
                user_id(&app.pool, "boss2"),
                &user(&app.pool, "plain").password,
            )
            .unwrap();
            diesel::update(
                schema::auth_user::table.filter(schema::auth_user::username.eq("boss2")),
            )
            .set(schema::auth_user::is_staff.eq(true))
            .execute(&mut conn)
            .unwrap();
        }
        let response = perform(&app, actor, act).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        if allowed {
            assert!(
                status == StatusCode::FOUND || status == StatusCode::OK,
                "{actor} {act:?}: {status} {body}"
            );
        } else {
            assert_eq!(status, StatusCode::FORBIDDEN, "{actor} {act:?}: {body}");
        }
        assert_eq!(took_effect(&app, actor, act), allowed, "{actor} {act:?}");
    }
}

// 3. One user cannot take the service down.

#[tokio::test]
async fn huge_reads_and_sizes_and_long_names_are_refused_before_forwarding() {
    let upstream = recording_upstream().await;
    let app = spawn_app_on(&upstream.url, |_| {}).await;
    let long = "c".repeat(252);
    let max_rows = Settings::with_data_dir(".").limits.max_rows_per_read;
    let cases: Vec<(reqwest::Method, String, Option<Value>)> = vec![
        (
            reqwest::Method::PUT,
            "size?feed=xy".into(),
            Some(json!({"size": 1_000_000_000_000_000u64})),
        ),
        (reqwest::Method::GET, format!("data?feed=xy&ix=0&size={}&col=x", max_rows + 1), None),
        (reqwest::Method::GET, "bytes?feed=xy&ix=0&size=1000000000000000&col[]=x".into(), None),
        (reqwest::Method::GET, "raw?feed=xy&col=x&ix=0&size=1000000000000000".into(), None),
        (reqwest::Method::DELETE, "bytes?feed=xy&ix=0&size=1000000000000000&col[]=x".into(), None),
        (
            reqwest::Method::POST,
            "col?feed=xy".into(),
            Some(json!({"name": long, "datatype": "Int64"})),
        ),
        (reqwest::Method::PATCH, "col?feed=xy&name=x".into(), Some(json!({"name": long}))),
        (reqwest::Method::POST, "feed".into(), Some(json!({"name": long}))),
        (reqwest::Method::PATCH, "feed?name=xy".into(), Some(json!({"name": long}))),
        (reqwest::Method::DELETE, format!("col?feed=xy&name={long}"), None),
        (reqwest::Method::GET, format!("data?feed={long}&ix=0&size=1"), None),
    ];
    for (method, path, body) in cases {
        let mut request = app.client.request(method.clone(), app.proxy(&path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.sent().await;
        assert_eq!(response.status(), 400, "{method} {path}");
        let detail: Value = response.json().await.unwrap();
        assert!(detail["detail"].is_string(), "{method} {path}: {detail}");
    }
    assert!(recorded(&upstream).await.is_empty(), "nothing was forwarded");

    // Within the limits, the same requests go on.
    let fine = app.client.put(app.proxy("size?feed=xy")).json(&json!({"size": 1000})).sent().await;
    assert_eq!(fine.status(), 200, "the recording upstream answers 200");
    // The write went on (after the proxy's look-up of the feed's columns).
    let heads = recorded(&upstream).await;
    assert_eq!(heads.iter().filter(|head| head.starts_with("PUT /size")).count(), 1);
}

#[tokio::test]
async fn the_embedded_server_refuses_the_same_and_storage_opens_again() {
    let app = spawn_app().await;
    app.create_feed("xy", &[("x", "Int64")]).await;
    let long = "c".repeat(252);
    let c = &app.upstream_client;
    let refused = [
        c.put(app.direct("size?feed=xy")).json(&json!({"size": 1_000_000_000_000_000u64})),
        c.get(app.direct("data?feed=xy&ix=0&size=1000000000000000&col=x")),
        c.get(app.direct("raw?feed=xy&col=x&ix=0&size=1000000000000000")),
        c.post(app.direct("col?feed=xy")).json(&json!({"name": long, "datatype": "Int64"})),
        c.patch(app.direct("col?feed=xy&name=x")).json(&json!({"name": long})),
        c.post(app.direct("feed")).json(&json!({"name": long})),
    ];
    for request in refused {
        let response = request.sent().await;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid input parameter", "{body}");
    }
    // Through the proxy as well, for a user with every grant on the feed.
    let too_long = app
        .client
        .post(app.proxy("col?feed=xy"))
        .json(&json!({"name": long, "datatype": "Int64"}))
        .sent()
        .await;
    assert_eq!(too_long.status(), 400);
    assert_eq!(app.size_of("xy").await, 0);

    // The storage still opens, with the one column it had.
    let data = app.data.path().join("lbasedb");
    let conn = lbasedb::prelude::Conn::new(data.to_str().unwrap()).await.unwrap();
    let cols: Vec<String> =
        conn.col_list("xy").await.unwrap().iter().map(|c| c.get_name()).collect();
    assert_eq!(cols, ["x"]);
    assert_eq!(app.get_proxy("version").await.status(), 200);
}

// 4. The embedded Lbasedb is no open door.

#[tokio::test]
async fn the_embedded_upstream_answers_only_this_process() {
    let app = spawn_app().await;
    assert!(app.upstream_secret.len() >= 32);
    let wrong = client_with_authorization("Bearer not-the-secret");
    let token = client_with_token(&app.token);
    for client in [&app.anon, &wrong, &token] {
        let response = client.get(app.direct("feed")).sent().await;
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "permission denied");
    }
    let with_secret = app.upstream_client.get(app.direct("feed")).sent().await;
    assert_eq!(with_secret.status(), 200);
    // And through the proxy, as ever.
    assert_eq!(app.get_proxy("feed").await.status(), 200);
}

#[tokio::test]
async fn an_upstream_secret_is_sent_and_a_clients_is_not() {
    let upstream = recording_upstream().await;
    let app =
        spawn_app_on(&upstream.url, |s| s.lbasedb_secret = Some("a-secret-of-twenty-bytes".into()))
            .await;
    let response =
        app.client.get(app.proxy("version")).header("x-lbasedb-secret", "spoof").sent().await;
    assert_eq!(response.status(), 200);
    let heads = recorded(&upstream).await;
    let head = heads[0].to_lowercase();
    assert_eq!(head.matches("authorization:").count(), 1, "{head}");
    assert!(head.contains("authorization: bearer a-secret-of-twenty-bytes"), "{head}");
    assert!(!head.contains(&app.token.to_lowercase()), "the client's token stays here");
}

#[test]
fn the_standalone_upstream_needs_a_secret_or_an_explicit_open() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lbasedb-proxy"))
        .args(["lbasedb", "--bind", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .env_remove("LBASEDB_SECRET")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("LBASEDB_SECRET") && stderr.contains("--open"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// 5. Throttling counts first, and never locks out a valid token.

#[tokio::test]
async fn a_burst_of_wrong_passwords_is_checked_at_most_limit_times() {
    let app = spawn_app().await;
    let limit = Settings::with_data_dir(".").login_failure_limit as usize;
    let url = format!("{}/api/auth/token/", app.address);
    let attempts = (0..60).map(|_| {
        let (client, url) = (app.anon.clone(), url.clone());
        tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"username": "admin", "password": "wrong"}))
                .sent_status()
                .await
        })
    });
    let statuses: Vec<StatusCode> =
        futures_util::future::join_all(attempts).await.into_iter().map(Result::unwrap).collect();
    let checked = statuses.iter().filter(|s| **s == 400).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + throttled, 60, "{statuses:?}");
    assert!(checked <= limit, "{checked} passwords checked, limit {limit}");
}

#[tokio::test]
async fn a_valid_token_passes_however_many_bad_ones_its_address_sent() {
    let app = spawn_app_with(|s| s.bad_token_limit = 3).await;
    let bad = client_with_token("lbp_wrong");
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(app.get_proxy_as(&bad, "version").await.status().as_u16());
    }
    assert_eq!(&statuses[..4], [401, 401, 401, 429]);
    assert!(statuses[3..].iter().all(|s| *s == 429));
    let valid = app.get_proxy("version").await;
    assert_eq!(valid.status(), 200);
}

#[tokio::test]
async fn behind_trusted_proxies_the_client_is_the_forwarded_address() {
    let upstream = recording_upstream().await;
    let app = spawn_app_on(&upstream.url, |s| {
        s.login_failure_limit = 2;
        s.trusted_proxies = vec![lbasedb_proxy::net::parse_net("127.0.0.1").unwrap()];
    })
    .await;
    let login = |from: &'static str| {
        app.anon
            .post(format!("{}/api/auth/token/", app.address))
            .header("x-forwarded-for", format!("198.51.100.9, {from}"))
            .json(&json!({"username": "admin", "password": "wrong"}))
            .send()
    };
    assert_eq!(login("203.0.113.1").await.unwrap().status(), 400);
    assert_eq!(login("203.0.113.1").await.unwrap().status(), 400);
    assert_eq!(login("203.0.113.1").await.unwrap().status(), 429);
    assert_eq!(
        login("203.0.113.2").await.unwrap().status(),
        400,
        "another client behind the same proxy is not locked out"
    );
    app.client.get(app.proxy("version")).header("x-forwarded-for", "203.0.113.7").sent().await;
    let head = recorded(&upstream).await.pop().unwrap().to_lowercase();
    assert!(head.contains("x-forwarded-for: 203.0.113.7\r\n"), "{head}");
}

#[tokio::test]
async fn without_trusted_proxies_a_forwarded_header_changes_nothing() {
    let app = spawn_app_with(|s| s.login_failure_limit = 2).await;
    for (from, expected) in [("203.0.113.1", 400), ("203.0.113.2", 400), ("203.0.113.3", 429)] {
        let response = app
            .anon
            .post(format!("{}/api/auth/token/", app.address))
            .header("x-forwarded-for", from)
            .json(&json!({"username": "admin", "password": "wrong"}))
            .sent()
            .await;
        assert_eq!(response.status(), expected, "{from}");
    }
}

// 6. No open redirect.

#[tokio::test]
async fn next_with_control_characters_or_backslashes_stays_home() {
    let app = spawn_app().await;
    let browser = admin(&app).await;
    for next in
        ["/%09/evil.example/", "/%5Cevil.example/", "/%0D%0A/evil.example", "/a%5C..%5C/evil"]
    {
        let response =
            browser.client.get(format!("{}/admin/login/?next={next}", app.address)).sent().await;
        assert_eq!(response.status(), 302, "{next}");
        assert_eq!(response.headers()[LOCATION], "/admin/", "{next}");
    }
    let (_, response) = {
        let fresh = Browser { client: client(), base: app.address.clone() };
        let response = fresh
            .submit(
                "/admin/login/",
                &[
                    ("username", "admin"),
                    ("password", ADMIN_PASSWORD),
                    ("next", "/\t/evil.example/"),
                ],
            )
            .await;
        (fresh, response)
    };
    assert_eq!(response.headers()[LOCATION], "/admin/");
}

// 7. Login CSRF.

#[tokio::test]
async fn a_session_login_from_another_site_is_refused() {
    let app = spawn_app().await;
    let url = format!("{}/api/auth/login/", app.address);
    let own = app.address.clone();
    let cases = [
        (Some(("origin", "http://evil.example")), 403),
        (Some(("origin", "null")), 403),
        (Some(("referer", "http://evil.example/page")), 403),
        (Some(("origin", own.as_str())), 200),
        (Some(("referer", &*format!("{own}/app/"))), 200),
        (None, 200),
    ];
    for (header, expected) in cases {
        let mut request =
            client().post(&url).form(&[("username", "admin"), ("password", ADMIN_PASSWORD)]);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let response = request.sent().await;
        assert_eq!(response.status(), expected, "{header:?}");
        if expected == 403 {
            assert!(
                response.cookies().all(|c| c.name() != "sessionid"),
                "no session for a refused login"
            );
            let body: Value = response.json().await.unwrap();
            assert!(body["detail"].as_str().unwrap().contains("CSRF"));
        }
    }
}

// 8. No input panics.

#[tokio::test]
async fn absurd_token_lifetimes_are_a_clear_error() {
    let app = spawn_app().await;
    for (password, lifetime) in
        [("wrong", "300000y"), (ADMIN_PASSWORD, "300000y"), (ADMIN_PASSWORD, "0s")]
    {
        let response = app
            .obtain_token(
                json!({"username": "admin", "password": password, "expires_in": lifetime}),
            )
            .await;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().starts_with("expires_in"), "{body}");
    }
    let browser = admin(&app).await;
    let id = user_id(&app.pool, "admin").to_string();
    let response = browser
        .submit(
            "/admin/authtoken/token/add/",
            &[("user", &id), ("name", "forever"), ("expires_in", "300000y")],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("Enter a duration"));
    // The CLI too.
    let output =
        app.command().args(["createtoken", "admin", "--expires-in", "300000y"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--expires-in") && !stderr.contains("panicked"), "{stderr}");
}

// 9. Grants follow their feed.

#[tokio::test]
async fn deleting_a_feed_takes_its_grants_and_renaming_moves_them() {
    let app = spawn_app().await;
    app.create_x_feeds(&["public", "old"]).await;
    app.user_granted("reader", &[("lbasedb.view_data", "public"), ("lbasedb.view_data", "old")]);
    create_group(&app.pool, "team", &[], &[("lbasedb.view_data", "old")]);
    let reader = client_with_token(&issue_token(&app.pool, "reader", None));
    let read = |feed: &str| reader.get(app.proxy(&format!("size?feed={feed}"))).send();
    assert_eq!(read("public").await.unwrap().status(), 200);

    let deleted = app.client.delete(app.proxy("feed?name=public")).sent().await;
    assert_eq!(deleted.status(), 204);
    app.create_feed("public", &[("x", "Int64")]).await;
    assert_eq!(
        read("public").await.unwrap().status(),
        403,
        "the old grant does not read the new feed"
    );

    let renamed =
        app.client.patch(app.proxy("feed?name=old")).json(&json!({"name": "new"})).sent().await;
    assert_eq!(renamed.status(), 204);
    assert_eq!(read("new").await.unwrap().status(), 200, "the grant moved");
    app.create_feed("old", &[("x", "Int64")]).await;
    assert_eq!(read("old").await.unwrap().status(), 403);
    let feeds: Vec<String> =
        schema::feed_grant::table.select(schema::feed_grant::feed).load(&mut app.conn()).unwrap();
    assert_eq!(feeds, ["new", "new"], "the user's grant and the group's");
}

// 10. Deleting oneself, and the last superuser.

#[tokio::test]
async fn deleting_oneself_signs_out_and_ends_ones_tokens_at_once() {
    let app = spawn_app().await;
    create_user(&app.pool, UserSpec { superuser: true, ..spec("boss2") });
    let token = client_with_token(&issue_token(&app.pool, "boss2", None));
    assert_eq!(app.get_proxy_as(&token, "version").await.status(), 200);
    let (boss2, _) = log_in(&app, "boss2", USER_PASSWORD).await;
    let id = user_id(&app.pool, "boss2");
    let response =
        submit(&boss2, &format!("/admin/auth/user/{id}/delete/"), &[("post", "yes")]).await;
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()[LOCATION], "/admin/login/");
    assert_eq!(app.get_proxy_as(&token, "version").await.status(), 401);
    assert_eq!(boss2.get("/admin/").await.0, 302, "signed out");
    let history = queries::object_history(&mut app.conn(), "auth.user", &id.to_string()).unwrap();
    assert_eq!(history.iter().filter(|entry| entry.action == "delete").count(), 1);
}

#[tokio::test]
async fn the_last_active_superuser_stays() {
    let app = spawn_app().await;
    let browser = admin(&app).await;
    let id = user_id(&app.pool, "admin");
    let change = format!("/admin/auth/user/{id}/change/");
    let attempts: [(&str, Vec<(&str, &str)>); 3] = [
        (&format!("/admin/auth/user/{id}/delete/"), vec![("post", "yes")]),
        (&change, vec![("username", "admin"), ("is_staff", "on"), ("is_superuser", "on")]),
        (&change, vec![("username", "admin"), ("is_staff", "on"), ("is_active", "on")]),
    ];
    for (path, fields) in attempts {
        let response = submit(&browser, path, &fields).await;
        assert_eq!(response.status(), 403, "{path} {fields:?}");
        assert!(response.text().await.unwrap().contains("last active superuser"));
    }
    let admin_user = user(&app.pool, "admin");
    assert!(admin_user.is_active && admin_user.is_superuser);
    // With a second one, the first may step down.
    create_user(&app.pool, UserSpec { superuser: true, ..spec("boss2") });
    let response = submit(
        &browser,
        &change,
        &[("username", "admin"), ("is_staff", "on"), ("is_active", "on")],
    )
    .await;
    assert_eq!(response.status(), 302);
    assert!(!user(&app.pool, "admin").is_superuser);
}

#[tokio::test]
async fn deactivating_a_user_revokes_its_tokens_at_once() {
    let app = spawn_app().await;
    create_user(&app.pool, spec("leaver"));
    let token = client_with_token(&issue_token(&app.pool, "leaver", None));
    assert_eq!(app.get_proxy_as(&token, "version").await.status(), 200);
    let browser = admin(&app).await;
    let id = user_id(&app.pool, "leaver");
    let response =
        submit(&browser, &format!("/admin/auth/user/{id}/change/"), &[("username", "leaver")])
            .await;
    assert_eq!(response.status(), 302);
    assert_eq!(app.get_proxy_as(&token, "version").await.status(), 401);
    let tokens = queries::list_tokens(
        &mut app.conn(),
        &queries::TokenQuery { user: Some(id), per_page: 1000, ..Default::default() },
    )
    .unwrap()
    .0;
    assert_eq!(tokens.iter().filter(|(token, _)| !token.revoked).count(), 0);
}

// 11. The feed page follows the API's rules.

#[tokio::test]
async fn the_feed_page_shows_only_what_the_api_would() {
    let app = spawn_app().await;
    app.create_feed("xy", &[("x", "Int64"), ("y", "Float64")]).await;
    create_group(&app.pool, "readers", &[], &[("lbasedb.view_data", "xy")]);
    create_user(
        &app.pool,
        UserSpec { staff: true, grants: grants(&[("lbasedb.view_feed", "xy")]), ..spec("jo") },
    );
    let (jo, _) = log_in(&app, "jo", USER_PASSWORD).await;
    let (status, list) = jo.get("/admin/lbasedb/feed/").await;
    assert_eq!(status, 200);
    assert!(list.contains("/admin/lbasedb/feed/xy/") && !list.contains("Float64"));
    let (status, detail) = jo.get("/admin/lbasedb/feed/xy/").await;
    assert_eq!(status, 200);
    for hidden in ["Float64", "0 rows", "readers", ">jo</a>"] {
        assert!(!detail.contains(hidden), "{hidden} shown: {detail}");
    }
    assert!(detail.contains("You may not view this feed’s columns."));

    // view_col shows the columns; view_data the size; auth.view_group the holders.
    let mut conn = app.conn();
    let id = user_id(&app.pool, "jo");
    for codename in ["lbasedb.view_col", "lbasedb.view_data", "auth.view_group"] {
        let perm = queries::permission_by_codename(&mut conn, codename).unwrap().unwrap().id;
        queries::add_permission(&mut conn, queries::Holder::User(id), perm).unwrap();
    }
    drop(conn);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (jo, _) = log_in(&app, "jo", USER_PASSWORD).await;
    // The cache holds jo's old permissions until it expires or is cleared;
    // a change through the admin clears it.
    let browser = admin(&app).await;
    let gid = group_id(&app.pool, "readers");
    let perm = perm_id(&app.pool, "lbasedb.view_data");
    submit(
        &browser,
        &format!("/admin/auth/group/{gid}/change/"),
        &[("name", "readers"), ("grant_perm", &perm), ("grant_feed", "xy")],
    )
    .await;
    let (_, detail) = jo.get("/admin/lbasedb/feed/xy/").await;
    for shown in ["Float64", "0 rows", "readers"] {
        assert!(detail.contains(shown), "{shown} hidden: {detail}");
    }
    assert!(detail.contains("You may not view users."));
}

// 12. Private files; anonymous visitors cost no row.

#[tokio::test]
async fn the_data_folder_and_its_secrets_are_private() {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("db.sqlite3"), b"").unwrap();
    std::fs::set_permissions(data.join("db.sqlite3"), std::fs::Permissions::from_mode(0o644))
        .unwrap();
    let mut settings = crate::helpers::settings(&data);
    settings.bind = "127.0.0.1:0".into();
    settings.superuser_password = Some(ADMIN_PASSWORD.into());
    let app = Application::build(settings).await.unwrap();
    let mode =
        |name: &str| std::fs::metadata(data.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(mode("db.sqlite3"), 0o600);
    assert_eq!(mode("secret.key"), 0o600);
    for sidecar in ["db.sqlite3-wal", "db.sqlite3-shm"] {
        if data.join(sidecar).exists() {
            assert_eq!(mode(sidecar), 0o600, "{sidecar}");
        }
    }
    drop(app);
}

#[tokio::test]
async fn anonymous_visitors_cost_no_session_row() {
    let app = spawn_app().await;
    for _ in 0..25 {
        let visitor = client();
        let csrf = visitor.get(format!("{}/api/auth/csrf/", app.address)).sent().await;
        assert_eq!(csrf.status(), 200);
        let login = visitor.get(format!("{}/admin/login/", app.address)).sent().await;
        assert_eq!(login.status(), 200);
    }
    let rows: i64 = schema::session::table.count().get_result(&mut app.conn()).unwrap();
    assert_eq!(rows, 0);
    // The anonymous CSRF token still guards the login form, and a login
    // makes exactly one row.
    let browser = admin(&app).await;
    assert_eq!(browser.get("/admin/").await.0, 200);
    let rows: i64 = schema::session::table.count().get_result(&mut app.conn()).unwrap();
    assert_eq!(rows, 1);
}

// 13. A database URL is not a file name, and never shows its password.

#[tokio::test]
async fn a_url_of_another_engine_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::helpers::settings(dir.path());
    settings.bind = "127.0.0.1:0".into();
    settings.db.database_url = Some("mysql://proxy:hunter2@db.example:3306/proxy".into());
    let err = Application::build(settings).await.err().expect("refused");
    let message = err.to_string();
    assert!(message.contains("mysql") && message.contains("PostgreSQL"), "{message}");
    assert!(!message.contains("hunter2"), "no credentials in the message");
    let made: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!made.iter().any(|n| n.to_string_lossy().starts_with("mysql")), "{made:?}");

    // A PostgreSQL URL is PostgreSQL: where none answers, the error says
    // so without the password.
    let mut settings = crate::helpers::settings(dir.path());
    settings.bind = "127.0.0.1:0".into();
    settings.db.database_url = Some("postgres://proxy:hunter2@127.0.0.1:1/proxy".into());
    let err = Application::build(settings).await.err().expect("refused");
    let message = err.to_string();
    assert!(message.contains("PostgreSQL"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");

    // `sqlite://PATH` is a path.
    let mut settings = crate::helpers::settings(dir.path());
    settings.bind = "127.0.0.1:0".into();
    settings.superuser_password = Some(ADMIN_PASSWORD.into());
    let file = dir.path().join("other.sqlite3");
    settings.db.database_url = Some(format!("sqlite://{}", file.display()));
    Application::build(settings).await.expect("sqlite:// opens");
    assert!(file.exists());

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lbasedb-proxy"))
        .arg("migrate")
        .env("DATA_DIR", dir.path())
        .env("DATABASE_URL", "mariadb://x:y@localhost/db")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("only SQLite and PostgreSQL"), "{stderr}");
    assert!(!stderr.contains("x:y"), "{stderr}");
}
