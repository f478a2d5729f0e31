//! Who may do what through the proxy: the permission matrix, feed
//! isolation, sessions with CSRF, ending sessions and tokens, throttling,
//! and the management commands.

use std::time::Duration;

use lbasedb_proxy::auth::grant::Grant;
use lbasedb_proxy::auth::perms::Granted;
use lbasedb_proxy::auth::users::{self, UserSpec};
use lbasedb_proxy::db::queries;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_PASSWORD, Sent, TestApp, USER_PASSWORD, client, client_with_token,
    client_without_cookies, create_group, create_user, issue_token, recorded, recording_upstream,
    spawn_app, spawn_app_on, spawn_app_with, spec,
};

/// Every endpoint and method, with the permission it needs, on feed `xy`.
const ROUTES: [(&str, &str, &str, Option<&str>); 22] = [
    ("GET", "version", "", None),
    ("GET", "feed", "", Some("lbasedb.view_feed")),
    ("POST", "feed", "", Some("lbasedb.add_feed")),
    ("PATCH", "feed", "name=xy", Some("lbasedb.change_feed")),
    ("DELETE", "feed", "name=xy", Some("lbasedb.delete_feed")),
    ("GET", "col", "feed=xy", Some("lbasedb.view_col")),
    ("POST", "col", "feed=xy", Some("lbasedb.add_col")),
    ("PATCH", "col", "feed=xy&name=x", Some("lbasedb.change_col")),
    ("DELETE", "col", "feed=xy&name=x", Some("lbasedb.delete_col")),
    ("GET", "size", "feed=xy", Some("lbasedb.view_data")),
    ("PUT", "size", "feed=xy", Some("lbasedb.change_data")),
    ("GET", "data", "feed=xy&ix=0&size=1&col[]=x", Some("lbasedb.view_data")),
    ("POST", "data", "feed=xy", Some("lbasedb.add_data")),
    ("PUT", "data", "feed=xy&ix=0", Some("lbasedb.change_data")),
    ("PATCH", "data", "feed=xy&ix=0", Some("lbasedb.change_data")),
    ("GET", "bytes", "feed=xy&ix=0&size=1&col[]=x", Some("lbasedb.view_data")),
    ("POST", "bytes", "feed=xy&col[]=x", Some("lbasedb.add_data")),
    ("PUT", "bytes", "feed=xy&ix=0&col[]=x", Some("lbasedb.change_data")),
    ("PATCH", "bytes", "feed=xy&ix=0&col[]=x", Some("lbasedb.change_data")),
    ("DELETE", "bytes", "feed=xy&ix=0&size=1&col[]=x", Some("lbasedb.delete_data")),
    ("GET", "raw", "feed=xy&col=x&ix=0&size=1", Some("lbasedb.view_data")),
    ("POST", "raw", "feed=xy&col=x&ix=0", Some("lbasedb.change_data")),
];

/// Permissions a feed grant cannot give: they act on no existing feed.
const GLOBAL_ONLY: [&str; 2] = ["lbasedb.add_feed", "lbasedb.change_feed"];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Nobody,
    BadToken,
    ExpiredToken,
    RevokedToken,
    InactiveUser,
    NoPermission,
    ViaUser,
    ViaGroup,
    GrantThisFeed,
    GrantOtherFeed,
    Superuser,
}

/// The status a principal should get: 401, 403 or through (200 from the
/// recording upstream).
fn expected(who: Who, perm: Option<&str>) -> u16 {
    match who {
        Who::Nobody | Who::BadToken | Who::ExpiredToken | Who::RevokedToken | Who::InactiveUser => {
            401
        }
        Who::Superuser | Who::ViaUser | Who::ViaGroup => 200,
        // /version and the feed list answer any authenticated user.
        _ if matches!(perm, None | Some("lbasedb.view_feed")) => 200,
        Who::GrantThisFeed if !GLOBAL_ONLY.contains(&perm.unwrap()) => 200,
        Who::NoPermission | Who::GrantThisFeed | Who::GrantOtherFeed => 403,
    }
}

#[tokio::test]
async fn the_permission_matrix_holds_for_every_endpoint_and_method() {
    let upstream = recording_upstream().await;
    let app = spawn_app_on(&upstream.url, |s| {
        // Bad tokens are sent on purpose, many times, from one address.
        s.bad_token_limit = 10_000;
    })
    .await;
    let pool = &app.pool;

    create_user(pool, spec("plain"));
    let mut inactive = spec("inactive");
    inactive.superuser = true;
    let inactive_id = create_user(pool, inactive);
    {
        let mut conn = pool.get().unwrap();
        users::issue_token(&mut conn, &Granted::system(), inactive_id, "t", None).unwrap();
    }
    let inactive_token = issue_token(pool, "inactive", None);
    users::set_active(&mut pool.get().unwrap(), &Granted::system(), inactive_id, false).unwrap();
    let expired = issue_token(pool, "plain", Some(queries::now() - chrono::Duration::seconds(1)));
    let revoked = issue_token(pool, "plain", None);
    queries::revoke_token(&mut pool.get().unwrap(), &revoked[..12]).unwrap();

    for (method, endpoint, query, perm) in ROUTES {
        let codename = perm.unwrap_or("lbasedb.view_feed");
        let slug = format!("{method}_{endpoint}").to_lowercase();
        create_user(
            pool,
            UserSpec { perms: vec![codename.into()], ..spec(&format!("user_{slug}")) },
        );
        create_group(pool, &format!("group_{slug}"), &[codename], &[]);
        create_user(
            pool,
            UserSpec { groups: vec![format!("group_{slug}")], ..spec(&format!("member_{slug}")) },
        );
        create_user(
            pool,
            UserSpec { grants: vec![Grant::new(codename, "xy")], ..spec(&format!("grant_{slug}")) },
        );
        create_user(
            pool,
            UserSpec { grants: vec![Grant::new(codename, "zz")], ..spec(&format!("other_{slug}")) },
        );

        // Grant holders go first: a DELETE or PATCH of the feed that the
        // recording upstream "performs" takes the feed's grants with it.
        for who in [
            Who::Nobody,
            Who::BadToken,
            Who::ExpiredToken,
            Who::RevokedToken,
            Who::InactiveUser,
            Who::NoPermission,
            Who::GrantThisFeed,
            Who::GrantOtherFeed,
            Who::ViaUser,
            Who::ViaGroup,
            Who::Superuser,
        ] {
            let client = match who {
                Who::Nobody => client(),
                Who::BadToken => client_with_token("lbp_not-a-real-token"),
                Who::ExpiredToken => client_with_token(&expired),
                Who::RevokedToken => client_with_token(&revoked),
                Who::InactiveUser => client_with_token(&inactive_token),
                Who::NoPermission => client_with_token(&issue_token(pool, "plain", None)),
                Who::ViaUser => {
                    client_with_token(&issue_token(pool, &format!("user_{slug}"), None))
                }
                Who::ViaGroup => {
                    client_with_token(&issue_token(pool, &format!("member_{slug}"), None))
                }
                Who::GrantThisFeed => {
                    client_with_token(&issue_token(pool, &format!("grant_{slug}"), None))
                }
                Who::GrantOtherFeed => {
                    client_with_token(&issue_token(pool, &format!("other_{slug}"), None))
                }
                Who::Superuser => app.client.clone(),
            };
            let seen_before = recorded(&upstream).await.len();
            let url = if query.is_empty() {
                app.proxy(endpoint)
            } else {
                app.proxy(&format!("{endpoint}?{query}"))
            };
            let mut request = client.request(Method::from_bytes(method.as_bytes()).unwrap(), url);
            // Bodies the proxy reads before forwarding (a name, a size) must
            // be ones it can read; the recording upstream ignores them.
            request = match (endpoint, method) {
                ("feed" | "col", "POST" | "PATCH") => request.json(&json!({"name": "n"})),
                ("size", "PUT") => request.json(&json!({"size": 1})),
                _ => request,
            };
            let response = request.sent().await;
            let status = response.status().as_u16();
            let want = expected(who, perm);
            assert_eq!(status, want, "{who:?} {method} /{endpoint}?{query}");
            if status == 401 {
                assert_eq!(response.headers()["www-authenticate"], "Token");
            }
            if status == 403 {
                let body: Value = response.json().await.unwrap();
                assert_eq!(
                    body,
                    json!({"detail": "You do not have permission to perform this action."})
                );
            }
            // This request, not the proxy's own look-ups (a feed's columns,
            // counted before a new one is added).
            let request_line = format!("{method} /{endpoint}");
            let seen = recorded(&upstream).await[seen_before..]
                .iter()
                .filter(|head| head.starts_with(&request_line))
                .count();
            assert_eq!(
                seen,
                usize::from(want == 200),
                "upstream contact: {who:?} {method} /{endpoint}"
            );
        }
    }
}

pub async fn arrange_two_feeds(app: &TestApp) {
    app.create_x_feeds(&["a", "b"]).await;
    for (feed, value) in [("a", 1), ("b", 42)] {
        let pushed = app
            .upstream_client
            .post(app.direct(&format!("data?feed={feed}")))
            .json(&json!({"x": [value]}))
            .sent()
            .await;
        assert_eq!(pushed.status(), 204);
    }
}

#[tokio::test]
async fn a_user_granted_one_feed_can_never_read_another() {
    let app = spawn_app().await;
    arrange_two_feeds(&app).await;
    app.user_granted("reader", &[("lbasedb.view_data", "a"), ("lbasedb.view_feed", "a")]);
    let reader = client_with_token(&issue_token(&app.pool, "reader", None));

    let own = app.get_proxy_as(&reader, "data?feed=a&ix=0&size=1&col=x").await;
    assert_eq!(own.json::<Value>().await.unwrap(), json!({"x": [1]}));

    let attempts = [
        "data?feed=b&ix=0&size=1&col=x",
        "data?feed=a&feed=b&ix=0&size=1&col=x",
        "data?fe%65d=b&feed=a&ix=0&size=1&col=x",
        "data?feed[]=b&ix=0&size=1&col=x",
        "data?feed=a&feed[]=b&ix=0&size=1&col=x",
        "data?feed[0]=b&feed=a&ix=0&size=1&col=x",
        "data?feed=%62&ix=0&size=1&col=x",
        "bytes?feed=b&ix=0&size=1&col[]=x",
        "bytes?col[]=x&feed=a&ix=0&size=1&feed=b",
        "raw?feed=b&col=x&ix=0&size=1",
        "raw?feed=a&feed=b&col=x&ix=0&size=1",
        "size?feed=b",
        "col?feed=b",
    ];
    for attempt in attempts {
        let response = app.get_proxy_as(&reader, attempt).await;
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        assert!(matches!(status, 400 | 403), "{attempt}: {status}");
        assert!(!String::from_utf8_lossy(&body).contains("42"), "{attempt} leaked feed b");
    }

    let feeds: Value = app.get_proxy_as(&reader, "feed").await.json().await.unwrap();
    assert_eq!(feeds, json!([{"name": "a"}]));
    let all: Value = app.get_proxy("feed").await.json().await.unwrap();
    assert_eq!(all, json!([{"name": "a"}, {"name": "b"}]));
}

async fn login(app: &TestApp, username: &str, password: &str) -> (reqwest::Client, String) {
    let browser = client();
    let response = browser
        .post(format!("{}/api/auth/login/", app.address))
        .json(&json!({"username": username, "password": password}))
        .sent()
        .await;
    assert_eq!(response.status(), 200, "login");
    let cookie = response
        .cookies()
        .find(|c| c.name() == "csrftoken")
        .expect("a csrftoken cookie")
        .value()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["csrfToken"], cookie.as_str());
    (browser, cookie)
}

#[tokio::test]
async fn session_writes_need_the_csrf_header_and_token_writes_do_not() {
    let app = spawn_app().await;
    app.create_feed("xy", &[("x", "Int64")]).await;
    let (browser, csrf) = login(&app, "admin", ADMIN_PASSWORD).await;
    let url = app.proxy("data?feed=xy");

    let read = app.get_proxy_as(&browser, "size?feed=xy").await;
    assert_eq!(read.status(), 200, "safe methods need no CSRF token");
    let without = browser.post(&url).json(&json!({"x": [1]})).sent().await;
    assert_eq!(without.status(), 403);
    assert!(
        without.json::<Value>().await.unwrap()["detail"]
            .as_str()
            .unwrap()
            .starts_with("CSRF Failed")
    );
    let wrong =
        browser.post(&url).header("x-csrftoken", "nope").json(&json!({"x": [1]})).sent().await;
    assert_eq!(wrong.status(), 403);
    let with =
        browser.post(&url).header("x-csrftoken", &csrf).json(&json!({"x": [1]})).sent().await;
    assert_eq!(with.status(), 204);
    let by_token = app.client.post(&url).json(&json!({"x": [2]})).sent().await;
    assert_eq!(by_token.status(), 204);
    assert_eq!(app.size_of("xy").await, 2);

    let csrf_again: Value =
        browser.get(format!("{}/api/auth/csrf/", app.address)).sent_json().await;
    assert_eq!(csrf_again["csrfToken"], csrf.as_str());
    let me: Value = browser.get(format!("{}/api/auth/me/", app.address)).sent_json().await;
    assert_eq!(
        (me["username"].as_str(), me["authenticated_by"].as_str()),
        (Some("admin"), Some("session"))
    );
}

#[tokio::test]
async fn logout_password_change_and_deactivation_end_sessions() {
    let app = spawn_app().await;
    let id = create_user(
        &app.pool,
        UserSpec { perms: vec!["lbasedb.view_feed".into()], ..spec("carol") },
    );
    let me = format!("{}/api/auth/me/", app.address);

    let (browser, csrf) = login(&app, "carol", USER_PASSWORD).await;
    assert_eq!(browser.get(&me).sent_status().await, 200);
    let logout = browser
        .post(format!("{}/api/auth/logout/", app.address))
        .header("x-csrftoken", &csrf)
        .sent()
        .await;
    assert_eq!(logout.status(), 200);
    assert_eq!(browser.get(&me).sent_status().await, 401);

    let (browser, _) = login(&app, "carol", USER_PASSWORD).await;
    users::set_password(
        &mut app.conn(),
        &Granted::system(),
        id,
        "$argon2id$v=19$m=19456,t=2,p=1$x$y",
    )
    .unwrap();
    assert_eq!(browser.get(&me).sent_status().await, 401, "password change ends sessions");

    let mut conn = app.conn();
    let phc = queries::user_by_username(&mut conn, "admin").unwrap().unwrap().password;
    users::set_password(&mut conn, &Granted::system(), id, &phc).unwrap();
    let (browser, _) = login(&app, "carol", ADMIN_PASSWORD).await;
    users::set_active(&mut conn, &Granted::system(), id, false).unwrap();
    assert_eq!(browser.get(&me).sent_status().await, 401, "deactivation ends sessions");
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_once() {
    let app = spawn_app().await;
    let token = issue_token(&app.pool, "admin", None);
    let holder = client_with_token(&token);
    assert_eq!(app.get_proxy_as(&holder, "version").await.status(), 200);
    let revoked = holder.delete(format!("{}/api/auth/token/", app.address)).sent().await;
    assert_eq!(revoked.status(), 204);
    let after = app.get_proxy_as(&holder, "version").await;
    assert_eq!(after.status(), 401);
    assert_eq!(after.json::<Value>().await.unwrap(), json!({"detail": "Invalid token."}));
    assert_eq!(app.get_proxy("version").await.status(), 200, "other tokens live on");
}

#[tokio::test]
async fn a_token_is_obtained_with_a_password_and_used_at_once() {
    let app = spawn_app().await;
    let url = format!("{}/api/auth/token/", app.address);
    let wrong =
        app.anon.post(&url).form(&[("username", "admin"), ("password", "wrong")]).sent().await;
    assert_eq!(wrong.status(), 400);
    let unknown =
        app.anon.post(&url).json(&json!({"username": "nobody", "password": "wrong"})).sent().await;
    assert_eq!(
        unknown.json::<Value>().await.unwrap(),
        wrong_message(),
        "one message for an unknown user and a wrong password"
    );
    let good = app
        .anon
        .post(&url)
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .sent()
        .await;
    assert_eq!(good.status(), 200);
    let token = good.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let bearer = app
        .anon
        .get(app.proxy("version"))
        .header("authorization", format!("Bearer {token}"))
        .sent()
        .await;
    assert_eq!(bearer.status(), 200);
}

fn wrong_message() -> Value {
    json!({"detail": "Unable to log in with provided credentials."})
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_and_recover() {
    let app = spawn_app_with(|s| {
        s.login_failure_limit = 3;
        s.throttle_window = Duration::from_secs(2);
    })
    .await;
    let url = format!("{}/api/auth/login/", app.address);
    let log_in = |password: &str| {
        app.anon.post(&url).json(&json!({"username": "admin", "password": password})).sent()
    };
    for _ in 0..3 {
        assert_eq!(log_in("nope").await.status(), 400);
    }
    let throttled = log_in(ADMIN_PASSWORD).await;
    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().contains_key("retry-after"));
    assert!(throttled.json::<Value>().await.unwrap()["detail"].is_string());
    // Another account from the same address is not locked out.
    let other = app.obtain_token(json!({"username": "someone", "password": "x"})).await;
    assert_eq!(other.status(), 400);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(log_in(ADMIN_PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn bad_tokens_are_throttled() {
    let app = spawn_app_with(|s| s.bad_token_limit = 3).await;
    let bad = client_with_token("lbp_wrong");
    for _ in 0..3 {
        assert_eq!(app.get_proxy_as(&bad, "version").await.status(), 401);
    }
    let throttled = app.get_proxy_as(&bad, "version").await;
    assert_eq!(throttled.status(), 429);
}

#[tokio::test]
async fn an_idle_session_expires() {
    let app = spawn_app_with(|s| s.session_idle_timeout = Duration::from_secs(1)).await;
    let (browser, _) = login(&app, "admin", ADMIN_PASSWORD).await;
    let me = format!("{}/api/auth/me/", app.address);
    assert_eq!(browser.get(&me).sent_status().await, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(browser.get(&me).sent_status().await, 401);
}

/// The session cookie is set when the session changes (login, logout),
/// not sent again on every answer: its idle timeout is the server's.
#[tokio::test]
async fn a_session_request_sets_no_cookie_and_the_session_lasts_its_idle_timeout() {
    let app = spawn_app_with(|s| s.session_idle_timeout = Duration::from_secs(2)).await;
    let (browser, _) = login(&app, "admin", ADMIN_PASSWORD).await;
    let me = format!("{}/api/auth/me/", app.address);
    for path in [me.clone(), app.proxy("version")] {
        let answer = browser.get(&path).sent().await;
        assert_eq!(answer.status(), 200, "{path}");
        assert!(!answer.headers().contains_key("set-cookie"), "{path}: {:?}", answer.headers());
    }
    // The cookie outlives the idle timeout; the session does not.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(browser.get(&me).sent_status().await, 401);
}

#[tokio::test]
async fn expired_session_rows_are_purged_and_live_ones_kept() {
    let app = spawn_app().await;
    let mut conn = app.conn();
    let now = queries::now();
    queries::session_store(
        &mut conn,
        queries::SessionWrite::New,
        "old",
        "{}",
        None,
        now - chrono::Duration::seconds(1),
    )
    .unwrap();
    queries::session_store(
        &mut conn,
        queries::SessionWrite::New,
        "live",
        "{}",
        None,
        now + chrono::Duration::hours(1),
    )
    .unwrap();
    assert_eq!(queries::sessions_purge_expired(&mut conn).unwrap(), 1);
    assert!(queries::session_load(&mut conn, "live").unwrap().is_some());
    assert!(queries::session_load(&mut conn, "old").unwrap().is_none());
}

/// Caches follow the database: a token revoked by another process writing
/// it (SQLite's own `sqlite3` module from Python, or `psql`), not through
/// this server, is refused within a second.
#[tokio::test]
async fn a_revocation_written_by_another_process_is_enforced_within_a_second() {
    let app = crate::helpers::spawn_app().await;
    let token = crate::helpers::issue_token(&app.pool, "admin", None);
    let holder = crate::helpers::client_with_token(&token);
    assert_eq!(holder.get(app.proxy("feed")).sent_status().await, 200);
    // What the admin lists a token by: its first characters.
    let sql = format!(
        "UPDATE authtoken_token SET revoked = TRUE WHERE '{token}' LIKE prefix || '%' AND user_id = \
         (SELECT id FROM auth_user WHERE username = 'admin')"
    );
    if app.database_url.starts_with("postgres") {
        crate::helpers::psql(&app.database_url, &["-c", &sql]);
    } else {
        let status = std::process::Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import sqlite3; c = sqlite3.connect({:?}); c.execute({sql:?}); c.commit()",
                app.database_url
            ))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let started = std::time::Instant::now();
    loop {
        let status = holder.get(app.proxy("feed")).sent_status().await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "still accepted after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Logs `username` in and answers the `Cookie` header a browser would send
/// from then on (the session's cookie and the CSRF token's), and the CSRF
/// token: sent by hand, the same header every time, as browser code sends
/// it and as a thief would replay it.
async fn session_header(app: &TestApp, username: &str, password: &str) -> (String, String) {
    let response = client_without_cookies()
        .post(format!("{}/api/auth/login/", app.address))
        .json(&json!({"username": username, "password": password}))
        .sent()
        .await;
    assert_eq!(response.status(), 200, "login");
    let cookie =
        |name: &str| response.cookies().find(|c| c.name() == name).expect(name).value().to_owned();
    let (session, csrf) = (cookie("sessionid"), cookie("csrftoken"));
    (format!("sessionid={session}; csrftoken={csrf}"), csrf)
}

/// Sends `method` to `url` with the session's `Cookie` header (and a CSRF
/// header if given); answers the status.
async fn by_session(method: Method, url: &str, header: &str, csrf: Option<&str>) -> u16 {
    let mut request =
        client_without_cookies().request(method.clone(), url).header("cookie", header);
    if let Some(csrf) = csrf {
        request = request.header("x-csrftoken", csrf);
    }
    if method == Method::POST {
        request = request.json(&json!({"x": [1]}));
    }
    request.sent_status().await.as_u16()
}

/// A proxied request whose session's `Cookie` header is known goes around
/// the session and identity middlewares (`KnownSessions`): every check they
/// make still holds for it, request after request with the same header.
#[tokio::test]
async fn a_known_session_is_ended_by_logout_password_change_and_deactivation() {
    let app = spawn_app().await;
    app.create_feed("xy", &[("x", "Int64")]).await;
    let id = create_user(&app.pool, UserSpec { superuser: true, ..spec("carol") });
    let (version, data) = (app.proxy("version"), app.proxy("data?feed=xy"));

    let (header, csrf) = session_header(&app, "carol", USER_PASSWORD).await;
    for _ in 0..3 {
        assert_eq!(by_session(Method::GET, &version, &header, None).await, 200);
    }
    // Unsafe methods still need the session's CSRF token, and only it.
    assert_eq!(by_session(Method::POST, &data, &header, None).await, 403);
    assert_eq!(by_session(Method::POST, &data, &header, Some("nope")).await, 403);
    assert_eq!(by_session(Method::POST, &data, &header, Some(&csrf)).await, 204);
    assert_eq!(by_session(Method::POST, &data, &header, Some(&csrf[1..])).await, 403);
    assert_eq!(app.size_of("xy").await, 1);
    let logout = format!("{}/api/auth/logout/", app.address);
    assert_eq!(by_session(Method::POST, &logout, &header, Some(&csrf)).await, 200);
    assert_eq!(by_session(Method::GET, &version, &header, None).await, 401, "after logout");
    assert_eq!(by_session(Method::POST, &data, &header, Some(&csrf)).await, 401);

    let (header, _) = session_header(&app, "carol", USER_PASSWORD).await;
    for _ in 0..3 {
        assert_eq!(by_session(Method::GET, &version, &header, None).await, 200);
    }
    // Changed by another process (this test, on the database): the session
    // cache is cleared within the poll interval, as for any session.
    let phc = queries::user_by_username(&mut app.conn(), "carol").unwrap().unwrap().password;
    users::set_password(&mut app.conn(), &Granted::system(), id, &phc).unwrap();
    refused_within_a_second(&version, &header).await;

    let (header, _) = session_header(&app, "carol", USER_PASSWORD).await;
    for _ in 0..3 {
        assert_eq!(by_session(Method::GET, &version, &header, None).await, 200);
    }
    users::set_active(&mut app.conn(), &Granted::system(), id, false).unwrap();
    refused_within_a_second(&version, &header).await;
}

/// Asks `url` with the session's `header` until it is refused (401), for
/// at most a second (the authentication caches' poll is 250 ms).
async fn refused_within_a_second(url: &str, header: &str) {
    let started = std::time::Instant::now();
    loop {
        match by_session(Method::GET, url, header, None).await {
            401 => return,
            status => assert_eq!(status, 200),
        }
        assert!(started.elapsed() < Duration::from_secs(1), "still signed in after a second");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The idle timeout and the login deadline (`SESSION_MAX_AGE`) end a known
/// session as they end any: a cookie replayed past them opens nothing.
#[tokio::test]
async fn a_known_session_ends_at_its_idle_timeout_and_its_login_deadline() {
    let version = |app: &TestApp| app.proxy("version");
    let app = spawn_app_with(|s| s.session_idle_timeout = Duration::from_secs(2)).await;
    let (header, _) = session_header(&app, "admin", ADMIN_PASSWORD).await;
    for _ in 0..3 {
        assert_eq!(by_session(Method::GET, &version(&app), &header, None).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(by_session(Method::GET, &version(&app), &header, None).await, 401, "idle");

    let app = spawn_app_with(|s| s.session_max_age = Duration::from_secs(2)).await;
    let (header, _) = session_header(&app, "admin", ADMIN_PASSWORD).await;
    for _ in 0..3 {
        assert_eq!(by_session(Method::GET, &version(&app), &header, None).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let me = format!("{}/api/auth/me/", app.address);
    assert_eq!(by_session(Method::GET, &version(&app), &header, None).await, 401, "deadline");
    assert_eq!(by_session(Method::GET, &me, &header, None).await, 401);
}

/// A header that names the session cookie twice, or two `Cookie` headers,
/// are read as the session middleware reads them (the first cookie of the
/// name), never as a known session of another cookie.
#[tokio::test]
async fn a_session_cookie_named_twice_is_read_as_the_session_middleware_reads_it() {
    let app = spawn_app().await;
    let version = app.proxy("version");
    let (header, _) = session_header(&app, "admin", ADMIN_PASSWORD).await;
    for _ in 0..2 {
        assert_eq!(by_session(Method::GET, &version, &header, None).await, 200);
    }
    let session = header.split("; ").next().unwrap();
    let forged = "sessionid=AAAA";
    for first_forged in [format!("{forged}; {header}"), format!("{forged}; {session}")] {
        for _ in 0..2 {
            assert_eq!(by_session(Method::GET, &version, &first_forged, None).await, 401);
        }
    }
    for _ in 0..2 {
        assert_eq!(
            by_session(Method::GET, &version, &format!("{session}; {forged}"), None).await,
            200
        );
    }
    // Two headers: the first of them names the session.
    let two = client_without_cookies()
        .get(&version)
        .header("cookie", forged)
        .header("cookie", session)
        .sent_status()
        .await;
    assert_eq!(two, 401);
}
