//! Identity beyond the local password and the token header: tokens as the
//! password of HTTP Basic, `TOKEN_MAX_LIFETIME`, and `SECRET_KEY_FALLBACKS`
//! (a key rotation that logs nobody out).

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;
use lbasedb_proxy::db::queries;

#[tokio::test]
async fn a_token_works_as_the_password_of_http_basic() {
    let app = spawn_app().await;
    app.user_granted("ann", &[("lbasedb.view_feed", "xy")]);
    app.user_granted("bob", &[]);
    let key = issue_token(&app.pool, "ann", None);
    let me = format!("{}/api/auth/me/", app.address);
    let basic = |user: &str, password: &str| client().get(&me).basic_auth(user, Some(password));
    let answer: Value = basic("ann", &key).sent().await.json().await.unwrap();
    assert_eq!(answer["username"], "ann");
    assert_eq!(answer["authenticated_by"], "token");
    let answer: Value = basic("token", &key).sent().await.json().await.unwrap();
    assert_eq!(answer["username"], "ann", "token:<key> when the username is not known");
    assert_eq!(basic("bob", &key).sent().await.status(), 401, "another user's token");
    assert_eq!(basic("ann", "lbp_not-a-token").sent().await.status(), 401);
    assert_eq!(basic("ann", USER_PASSWORD).sent().await.status(), 401, "a password is no token");
    for bad in ["Basic", "Basic !!!", "Basic Zm9v", &format!("Basic {}", "A".repeat(2000))] {
        let status = client().get(&me).header("authorization", bad).sent().await.status();
        assert_eq!(status, 401, "{bad:.20}");
    }
    // Through the proxy as well.
    let proxied = client().get(app.proxy("version")).basic_auth("ann", Some(&key)).sent().await;
    assert_eq!(proxied.status(), 200);
}

#[tokio::test]
async fn token_max_lifetime_caps_every_new_token() {
    let app = spawn_app_with(|s| s.token_max_lifetime = Some(Duration::from_secs(3600))).await;
    app.user_granted("ann", &[]);
    let expiry = |answer: &Value| {
        let at = answer["expires_at"].as_str().expect("an expiry");
        chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S%.f").unwrap()
    };
    let now = chrono::Utc::now().naive_utc();
    for asked in [json!("30d"), json!(null), json!("10m")] {
        let answer: Value = app
            .obtain_token(
                json!({"username": "ann", "password": USER_PASSWORD, "expires_in": asked}),
            )
            .await
            .json()
            .await
            .unwrap();
        let left = expiry(&answer) - now;
        let want = if asked == json!("10m") { 600 } else { 3600 };
        assert!((left.num_seconds() - want).abs() < 60, "{asked}: {left}");
    }
    // The command line holds its tokens to it too.
    app.command()
        .args(["createtoken", "ann", "--expires-in", "30d", "--token-max-lifetime", "1h"])
        .output()
        .unwrap();
    use lbasedb_proxy::db::queries;
    let ann = queries::user_by_username(&mut app.conn(), "ann").unwrap().unwrap().id;
    let query = queries::TokenQuery { user: Some(ann), per_page: 10, ..Default::default() };
    let (tokens, _) = queries::list_tokens(&mut app.conn(), &query).unwrap();
    assert_eq!(tokens.len(), 4);
    for (token, _) in tokens {
        let left = token.expires_at.expect("every token expires") - now;
        assert!(left.num_seconds() <= 3660, "{}: {left}", token.name);
    }
}

#[tokio::test]
async fn a_secret_key_rotation_logs_nobody_out() {
    let (old, new) =
        ("an-old-secret-key-of-32-bytes-or-more!", "a-new-secret-key-of-32-bytes-or-more!!");
    let first = spawn_app_with(|s| s.secret_key = Some(old.into())).await;
    let (browser, response) = log_in(&first, "admin", ADMIN_PASSWORD).await;
    assert_eq!(response.status(), 302);
    // The same database, restarted with a new key and the old one as a
    // fallback.
    let database = first.database_url.clone();
    let rotated = spawn_app_with(|s| {
        s.db.database_url = Some(database.clone());
        s.secret_key = Some(new.into());
        // As `SECRET_KEY_FALLBACKS=" old,"` reads: trimmed, the empty one dropped.
        s.secret_key_fallbacks = vec![format!(" {old}"), String::new()];
    })
    .await;
    let on = |app: &TestApp| Browser { client: browser.client.clone(), base: app.address.clone() };
    let (status, page) = on(&rotated).get("/admin/").await;
    assert_eq!(status, 200, "the old key's cookie still opens: {page:.200}");
    assert!(page.contains("Site administration"));
    // Its answer re-made the cookie with the new key: it opens where the old
    // key is no longer accepted at all.
    let fallbackless = spawn_app_with(|s| {
        s.db.database_url = Some(database.clone());
        s.secret_key = Some(new.into());
    })
    .await;
    assert_eq!(on(&fallbackless).get("/admin/").await.0, 200);
    // A cookie of a key that is not a fallback opens nothing.
    let (stranger, _) = log_in(&first, "admin", ADMIN_PASSWORD).await;
    let status = Browser { client: stranger.client, base: fallbackless.address.clone() }
        .get("/admin/")
        .await
        .0;
    assert_eq!(status, 302, "to the login page");
}

/// The secret the account page shows once.
fn shown_secret(html: &str) -> String {
    let marker = r#"id="token-secret">"#;
    let at = html.find(marker).unwrap_or_else(|| panic!("a new token in {html}")) + marker.len();
    html[at..].split('<').next().unwrap().to_owned()
}

async fn me_with(app: &TestApp, key: &str) -> reqwest::StatusCode {
    client_with_token(key).get(format!("{}/api/auth/me/", app.address)).sent().await.status()
}

/// Token ids of `username`, newest first.
fn token_ids(app: &TestApp, username: &str) -> Vec<i32> {
    let mut conn = app.conn();
    let user = queries::user_by_username(&mut conn, username).unwrap().unwrap();
    queries::tokens_of(&mut conn, user.id, 100).unwrap().iter().map(|t| t.id).collect()
}

#[tokio::test]
async fn everyone_manages_their_own_tokens_on_the_account_page() {
    let app = spawn_app().await;
    app.create_x_feeds(&["xy", "zz"]).await;
    app.user_granted("yara", &[("lbasedb.view_feed", "xy"), ("lbasedb.view_data", "xy")]);
    app.user_granted("zed", &[]);
    let browser = account_of(&app, "yara").await;
    let (status, page) = browser.get("/account/").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("lbasedb.view_data=xy") && page.contains("Two-factor login: off"));
    assert_eq!(browser.get("/admin/").await.0, 302, "not staff: no admin");
    assert_eq!(browser.get("/admin/password_change/").await.0, 200, "but their own password");

    // A token keeping one of what yara holds.
    let made = browser
        .post(
            "/account/",
            "/account/tokens/",
            &[("name", "reader"), ("expires_in", "30d"), ("scopes", "lbasedb.view_feed=xy")],
        )
        .await;
    let key = shown_secret(&made.text().await.unwrap());
    assert_eq!(me_with(&app, &key).await, 200);
    let scoped: Value =
        client_with_token(&key).get(format!("{}/api/auth/me/", app.address)).sent_json().await;
    assert_eq!(scoped["feed_grants"], json!({ "xy": ["lbasedb.view_feed"] }), "the scope kept");
    // When and from where it was last used: written off the request.
    let mut page = String::new();
    for _ in 0..50 {
        page = browser.get("/account/").await.1;
        if page.contains("from 127.0.0.1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(page.contains("from 127.0.0.1"), "{page}");

    // Rotated with an hour's grace: both work; the new one is a new secret.
    let id = token_ids(&app, "yara")[0];
    let rotate = |id: i32, grace: &str| {
        let path = format!("/account/tokens/{id}/rotate/");
        let grace = grace.to_owned();
        let browser = &browser;
        async move { browser.post("/account/", &path, &[("grace", grace.as_str())]).await }
    };
    let rotated = shown_secret(&rotate(id, "1h").await.text().await.unwrap());
    assert_ne!(rotated, key);
    assert_eq!(me_with(&app, &rotated).await, 200);
    assert_eq!(me_with(&app, &key).await, 200, "the old one, within its grace");
    let ids = token_ids(&app, "yara");
    let old = queries::token_by_id(&mut app.conn(), id).unwrap().unwrap().0;
    let left = old.expires_at.unwrap() - queries::now();
    assert!(left <= chrono::Duration::hours(1) && left > chrono::Duration::minutes(55));
    // More grace than TOKEN_ROTATION_GRACE (24h) is refused; none ends it now.
    let refused = rotate(ids[0], "2days").await.text().await.unwrap();
    assert!(refused.contains("at most TOKEN_ROTATION_GRACE"), "{refused}");
    let newest = shown_secret(&rotate(ids[0], "0").await.text().await.unwrap());
    assert_eq!(me_with(&app, &rotated).await, 401, "no grace: the old stops at once");
    assert_eq!(me_with(&app, &newest).await, 200);

    // Revoked: it stops at once.
    let newest_id = token_ids(&app, "yara")[0];
    let revoked =
        browser.post("/account/", &format!("/account/tokens/{newest_id}/revoke/"), &[]).await;
    assert_eq!(revoked.status(), 302);
    assert_eq!(me_with(&app, &newest).await, 401);

    // Another user's tokens are not yara's to touch.
    let zeds = issue_token(&app.pool, "zed", None);
    let zed_id = token_ids(&app, "zed")[0];
    for action in ["revoke", "rotate"] {
        let path = format!("/account/tokens/{zed_id}/{action}/");
        let answer = browser.post("/account/", &path, &[("grace", "1h")]).await;
        assert_eq!(answer.status(), 404, "{action}");
    }
    assert_eq!(me_with(&app, &zeds).await, 200);
    assert_eq!(token_ids(&app, "zed").len(), 1);
}
