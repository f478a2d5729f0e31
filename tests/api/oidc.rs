//! Single sign-on and JWT bearers against a real OpenID provider: panva's
//! `oidc-provider` under Node.js (`tests/oidc/provider.mjs`, its packages
//! from `npm ci` in `tests/oidc`). One provider serves the run; the key
//! rotation test starts one of its own. The login is driven as a browser
//! would (cookies, the provider's own login form, its redirects); the
//! browser test (`browser.rs`) does it in Chromium.
//!
//! Without `node` or the packages a test says so and passes, unless
//! `OIDC_TESTS=required` (as in CI).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lbasedb_proxy::auth::perms::Granted;
use lbasedb_proxy::auth::users::{self, UserSpec};
use lbasedb_proxy::config::Settings;
use lbasedb_proxy::db::queries;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_PASSWORD, Browser, Sent, Stopped, TestApp, USER_PASSWORD, client,
    client_with_authorization, create_group, create_user, log_in, spawn_app_with, spec,
};

pub const CLIENT_ID: &str = "lbasedb-proxy";
const CLIENT_SECRET: &str = "proxy-secret";
const AUDIENCE: &str = "lbasedb-proxy";

/// A running provider; stopped when dropped (and when the test process
/// ends, since it stops when its standard input closes).
pub struct Provider {
    pub issuer: String,
    _child: Stopped,
    _stdin: ChildStdin,
}

impl Provider {
    /// Starts one, or says why it cannot (and fails when required).
    pub fn start() -> Option<Provider> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("oidc");
        install_packages(&dir);
        let missing = if !dir.join("node_modules").join("oidc-provider").exists() {
            Some("tests/oidc/node_modules (run `npm ci` in tests/oidc)")
        } else if Command::new("node").arg("--version").output().is_err() {
            Some("node (apt-get install nodejs npm)")
        } else {
            None
        };
        if let Some(missing) = missing {
            let message = format!("OpenID tests need {missing}");
            assert!(std::env::var("OIDC_TESTS").as_deref() != Ok("required"), "{message}");
            eprintln!("SKIPPED: {message}");
            return None;
        }
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(match std::env::var_os("OIDC_PROVIDER_LOG") {
                Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
                None => Stdio::null(),
            })
            .spawn()
            .expect("node starts");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        // Read on, or its next line (a notice) would fail on a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let issuer = line.trim().strip_prefix("issuer ").expect("the provider's issuer").to_owned();
        Some(Provider { issuer, _child: Stopped(child), _stdin: stdin })
    }

    async fn control(&self, what: &str, body: Value) -> Value {
        client().post(format!("{}/__test/{what}", self.issuer)).json(&body).sent_json().await
    }

    /// Sets the claims the provider gives `sub` at its next login.
    pub async fn account(&self, sub: &str, claims: Value) {
        self.control("account", json!({ "sub": sub, "claims": claims })).await;
    }

    /// A JWT signed with the provider's current key: `iss`, `aud` (ours),
    /// `iat` and `exp` (in five minutes) unless `claims` says otherwise
    /// (`null` removes one).
    async fn sign(&self, claims: Value) -> String {
        let signed = self.control("sign", json!({ "claims": claims })).await;
        signed["token"].as_str().unwrap().to_owned()
    }

    async fn sign_with_kid(&self, claims: Value, kid: &str) -> String {
        let signed = self.control("sign", json!({ "claims": claims, "kid": kid })).await;
        signed["token"].as_str().unwrap().to_owned()
    }

    /// A client-credentials access token (a JWT for our audience).
    async fn client_credentials(&self, id: &str, secret: &str) -> String {
        let answer: Value = client()
            .post(format!("{}/token", self.issuer))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "api")])
            .sent_json()
            .await;
        answer["access_token"].as_str().expect("an access token").to_owned()
    }

    async fn jwks_fetches(&self) -> u64 {
        self.control("jwks-fetches", json!({})).await["fetches"].as_u64().unwrap()
    }
}

/// `npm ci` in `tests/oidc` once per run if its packages are not there
/// and npm is: `cargo test` alone brings them (from the lock file).
fn install_packages(dir: &Path) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if dir.join("node_modules").join("oidc-provider").exists() {
            return;
        }
        let installed = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .status();
        if !matches!(installed, Ok(status) if status.success()) {
            eprintln!("`npm ci` in {} did not succeed: {installed:?}", dir.display());
        }
    });
}

/// The run's provider.
pub static PROVIDER: LazyLock<Option<Provider>> = LazyLock::new(Provider::start);

/// A subject no other test uses.
fn unique(name: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{name}-{}", NEXT.fetch_add(1, Ordering::SeqCst))
}

/// The proxy as the provider's client, with `configure`'s changes.
pub fn with_provider(provider: &Provider, settings: &mut Settings) {
    let identity = &mut settings.identity;
    identity.oidc_issuer = Some(provider.issuer.clone());
    identity.oidc_client_id = Some(CLIENT_ID.into());
    identity.oidc_client_secret = Some(CLIENT_SECRET.into());
    identity.oidc_display_name = "Test IdP".into();
    identity.oidc_scopes = "openid profile email groups".into();
    identity.oidc_create_users = true;
    identity.oidc_group_map = vec![
        ("idp-admins".into(), "@staff".into()),
        ("idp-root".into(), "@superuser".into()),
        ("idp-readers".into(), "readers".into()),
    ];
    identity.jwt_audience = Some(AUDIENCE.into());
    identity.jwks_refresh_interval = std::time::Duration::from_secs(1);
}

async fn app_with(provider: &Provider, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let app = spawn_app_with(|s| {
        with_provider(provider, s);
        configure(s);
    })
    .await;
    create_group(&app.pool, "readers", &[], &[("lbasedb.view_feed", "xy")]);
    app
}

/// A user `username`, linked to `subject` (a person's `sub` or a client's
/// id, as `kind` says) at `provider`, as `linkidentity` does.
fn linked_user(app: &TestApp, provider: &Provider, username: &str, kind: &str, subject: &str) {
    create_user(&app.pool, spec(username));
    let mut conn = app.conn();
    let issuer = provider.issuer.as_str();
    users::link_identity(&mut conn, &Granted::system(), username, issuer, kind, subject).unwrap();
}

/// The browser's side of a login up to the provider's answer: the start
/// at the proxy, the provider's login form filled as `login`, its
/// redirects followed. Answers the callback URL (not yet opened), and the
/// authorization URL the proxy made, after `tamper` changed it.
async fn to_callback(
    browser: &reqwest::Client,
    app: &TestApp,
    login: &str,
    tamper: impl FnOnce(String) -> String,
) -> String {
    let start = browser.get(format!("{}/admin/oidc/login/?next=/admin/", app.address)).sent().await;
    assert_eq!(start.status(), 302, "the login starts with a redirect");
    let authorize = tamper(start.headers()["location"].to_str().unwrap().to_owned());
    let mut url = authorize;
    for _ in 0..10 {
        if url.starts_with(&app.address) {
            return url;
        }
        let answer = browser.get(&url).sent().await;
        if answer.status().is_redirection() {
            url = absolute(&url, answer.headers()["location"].to_str().unwrap());
            continue;
        }
        // The provider's login form, or its consent form.
        let html = answer.text().await.unwrap();
        let prompt =
            if html.contains(r#"name="prompt" value="consent""#) { "consent" } else { "login" };
        let action = html
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("a form at {url}: {html}"));
        let posted = browser
            .post(absolute(&url, action))
            .form(&[("prompt", prompt), ("login", login), ("password", "any")])
            .sent()
            .await;
        if !posted.status().is_redirection() {
            let status = posted.status();
            panic!("the provider refused the login: {status} {}", posted.text().await.unwrap());
        }
        url = absolute(&url, posted.headers()["location"].to_str().unwrap());
    }
    panic!("the provider never sent the browser back");
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http") {
        return location.to_owned();
    }
    let origin: String = base.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
    format!("{origin}{location}")
}

/// A whole login of `login`: the callback's answer.
async fn sign_in(browser: &reqwest::Client, app: &TestApp, login: &str) -> reqwest::Response {
    let callback = to_callback(browser, app, login, |url| url).await;
    browser.get(callback).sent().await
}

/// Who the session of `browser` is, per `/api/auth/me/` (None: nobody).
async fn me(browser: &reqwest::Client, app: &TestApp) -> Option<Value> {
    let answer = browser.get(format!("{}/api/auth/me/", app.address)).sent().await;
    answer.status().is_success().then_some(())?;
    Some(answer.json().await.unwrap())
}

fn set_param(url: &str, name: &str, value: &str) -> String {
    let (base, query) = url.split_once('?').unwrap();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| {
            let v = if k == name { value.to_owned() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    let query: String =
        form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    format!("{base}?{query}")
}

#[tokio::test]
async fn a_person_logs_in_with_the_provider_groups_follow_the_claims() {
    let Some(provider) = &*PROVIDER else { return };
    let app = app_with(provider, |_| {}).await;
    let alice = unique("alice");
    let claims = json!({ "email": "alice@example.org", "groups": ["idp-admins", "idp-readers", "unmapped"] });
    provider.account(&alice, claims).await;

    let browser = client();
    let answer = sign_in(&browser, &app, &alice).await;
    assert_eq!(answer.status(), 302);
    assert_eq!(answer.headers()["location"], "/admin/");
    let who = me(&browser, &app).await.expect("a session");
    assert_eq!(who["username"], alice.as_str());
    assert_eq!(who["is_staff"], true);
    assert_eq!(who["is_superuser"], false);
    assert_eq!(who["groups"], json!(["readers"]));
    let admin_index = browser.get(format!("{}/admin/", app.address)).sent().await;
    assert_eq!(admin_index.status(), 200, "the same session serves the admin");
    // And the API: the session's grants, with the CSRF header on writes.
    let feeds = browser.get(format!("{}/api/proxy/feed", app.address)).sent().await;
    assert_eq!(feeds.status(), 200, "{}", feeds.text().await.unwrap());

    // The provider takes alice out of the admins: the next login follows.
    provider.account(&alice, json!({ "groups": ["idp-readers"] })).await;
    let again = client();
    assert_eq!(sign_in(&again, &app, &alice).await.status(), 302);
    let who = me(&again, &app).await.expect("a session");
    assert_eq!(who["is_staff"], false);
    assert_eq!(who["groups"], json!(["readers"]));
    // And out of the readers; a group an administrator gave stays.
    create_group(&app.pool, "local-only", &[], &[]);
    {
        let mut conn = app.conn();
        let user = queries::user_by_username(&mut conn, &alice).unwrap().unwrap();
        let group = queries::group_by_name(&mut conn, "local-only").unwrap().unwrap();
        queries::add_user_to_group(&mut conn, user.id, group.id).unwrap();
    }
    provider.account(&alice, json!({ "groups": [] })).await;
    let third = client();
    let answer = sign_in(&third, &app, &alice).await;
    assert_eq!(answer.status(), 302);
    assert_eq!(answer.headers()["location"], "/account/", "not staff: to their own page");
    let who = me(&third, &app).await.expect("a session");
    assert_eq!(who["groups"], json!(["local-only"]));
    // Each change in the user's history, by single sign-on.
    let mut conn = app.conn();
    let user = queries::user_by_username(&mut conn, &alice).unwrap().unwrap();
    let history = queries::object_history(&mut conn, "auth.user", &user.id.to_string()).unwrap();
    assert!(history.iter().any(|e| e.action == "add" && e.username == "single sign-on"));
    assert!(history.iter().filter(|e| e.action == "change").count() >= 2);
}

#[tokio::test]
async fn without_just_in_time_creation_only_linked_users_log_in() {
    let Some(provider) = &*PROVIDER else { return };
    let app = app_with(provider, |s| s.identity.oidc_create_users = false).await;
    let bob = unique("bob");
    provider.account(&bob, json!({ "groups": ["idp-readers"] })).await;

    let browser = client();
    let answer = sign_in(&browser, &app, &bob).await;
    assert_eq!(answer.status(), 403);
    assert!(answer.text().await.unwrap().contains("no account here yet"));
    assert!(me(&browser, &app).await.is_none(), "no session");
    assert!(queries::user_by_username(&mut app.conn(), &bob).unwrap().is_none());

    // An administrator makes the account and links it: then bob is in, as
    // that user, whatever the provider calls him.
    linked_user(&app, provider, "robert", queries::PERSON, &bob);
    let browser = client();
    assert_eq!(sign_in(&browser, &app, &bob).await.status(), 302);
    let who = me(&browser, &app).await.expect("a session");
    assert_eq!(who["username"], "robert");
    assert_eq!(who["groups"], json!(["readers"]));
}

#[tokio::test]
async fn a_local_user_with_the_same_name_is_never_taken_over() {
    let Some(provider) = &*PROVIDER else { return };
    let app = app_with(provider, |_| {}).await;
    let carol = unique("carol");
    create_user(&app.pool, UserSpec { staff: true, ..spec(&carol) });
    // Someone at the provider whose username is carol's, even one the
    // provider makes a superuser.
    let claims = json!({ "preferred_username": carol, "groups": ["idp-root"] });
    provider.account(&format!("{carol}-at-idp"), claims).await;

    let browser = client();
    let answer = sign_in(&browser, &app, &format!("{carol}-at-idp")).await;
    assert_eq!(answer.status(), 403);
    assert!(answer.text().await.unwrap().contains("must link it"));
    assert!(me(&browser, &app).await.is_none(), "no session");
    let mut conn = app.conn();
    let local = queries::user_by_username(&mut conn, &carol).unwrap().unwrap();
    assert!(!local.is_superuser, "carol is as she was");
    assert!(queries::identities_of(&mut conn, local.id).unwrap().is_empty());
    // Nor by a lookalike of her name (NFKC, as Django normalises).
    let fullwidth: String = carol
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                char::from_u32(c as u32 - 0x61 + 0xFF41).unwrap()
            } else {
                c
            }
        })
        .collect();
    provider.account(&format!("{carol}-wide"), json!({ "preferred_username": fullwidth })).await;
    let answer = sign_in(&client(), &app, &format!("{carol}-wide")).await;
    assert_eq!(answer.status(), 403, "{fullwidth}");
    assert!(queries::user_by_username(&mut conn, &fullwidth).unwrap().is_none());
    // Her password still works.
    let (_, login) = log_in(&app, &carol, USER_PASSWORD).await;
    assert_eq!(login.status(), 302);
}

#[tokio::test]
async fn state_nonce_pkce_and_the_client_are_each_checked() {
    let Some(provider) = &*PROVIDER else { return };
    let app = app_with(provider, |_| {}).await;
    let dave = unique("dave");
    provider.account(&dave, json!({})).await;
    let refused = |answer: &reqwest::Response| answer.status() == 403;

    // A callback replayed: refused, even in the browser that finished it.
    let browser = client();
    let callback = to_callback(&browser, &app, &dave, |url| url).await;
    assert_eq!(browser.get(&callback).sent().await.status(), 302);
    let replayed = browser.get(&callback).sent().await;
    assert!(refused(&replayed));
    assert!(replayed.text().await.unwrap().contains("finished already"));
    // ... or in another browser (someone who stole the URL).
    let thief = client();
    assert!(refused(&thief.get(&callback).sent().await));
    assert!(me(&thief, &app).await.is_none());

    // A state swapped: the answer to one browser's login, opened in
    // another that started its own (login CSRF).
    let victim = client();
    let _ = victim.get(format!("{}/admin/oidc/login/", app.address)).sent().await;
    let attacker = client();
    let attackers = to_callback(&attacker, &app, &dave, |url| url).await;
    assert!(refused(&victim.get(&attackers).sent().await));
    assert!(me(&victim, &app).await.is_none());

    // A nonce other than the one the proxy asked for; a PKCE challenge
    // other than the proxy's (the provider will not give the tokens for the
    // proxy's verifier); a code the provider gave another client.
    let challenge = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let tampered = [("nonce", "forged", "nonce"), ("code_challenge", &challenge, "invalid_grant")];
    for (param, value, says) in tampered.into_iter().chain([("client_id", "other-app", "")]) {
        let browser = client();
        let callback =
            to_callback(&browser, &app, &dave, |url| set_param(&url, param, value)).await;
        let answer = browser.get(callback).sent().await;
        assert!(refused(&answer), "{param}");
        assert!(answer.text().await.unwrap().contains(says), "{param}: {says}");
        assert!(me(&browser, &app).await.is_none(), "{param}: no session");
    }

    // An error from the provider, and a callback with no login started.
    let answer = client()
        .get(format!("{}/admin/oidc/callback/?error=access_denied&state=x", app.address))
        .sent()
        .await;
    assert!(refused(&answer));
}

#[tokio::test]
async fn oidc_only_leaves_password_login_to_the_break_glass_superuser() {
    let Some(provider) = &*PROVIDER else { return };
    let app = app_with(provider, |s| {
        s.identity.oidc_only = true;
        s.identity.oidc_break_glass = Some("admin".into());
    })
    .await;
    create_user(&app.pool, UserSpec { staff: true, ..spec("erin") });
    let (_, answer) = log_in(&app, "erin", USER_PASSWORD).await;
    assert_eq!(answer.status(), 200, "the form again");
    assert!(answer.text().await.unwrap().contains("Password login is turned off"));
    let body = json!({ "username": "erin", "password": USER_PASSWORD });
    let api = app.post_anonymously("/api/auth/login/", body).await;
    assert_eq!(api.status(), 403);
    assert!(api.json::<Value>().await.unwrap()["detail"].as_str().unwrap().contains("turned off"));
    let (_, answer) = log_in(&app, "admin", ADMIN_PASSWORD).await;
    assert_eq!(answer.status(), 302, "the break-glass superuser");
    // Tokens are no password login.
    let me = app.client.get(format!("{}/api/auth/me/", app.address)).sent().await;
    assert_eq!(me.status(), 200);
    // The login page leads to the provider.
    let (_, page) =
        Browser { client: client(), base: app.address.clone() }.get("/admin/login/").await;
    assert!(page.contains("Log in with Test IdP") && page.contains("break-glass"));
}

/// `header.payload.` with the given header, unsigned or signed by `sign`.
fn forged(header: Value, claims: Value, sign: impl FnOnce(&str) -> Vec<u8>) -> String {
    let head = URL_SAFE_NO_PAD.encode(header.to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{head}.{body}");
    let signature = URL_SAFE_NO_PAD.encode(sign(&signed));
    format!("{signed}.{signature}")
}

async fn bearer_status(app: &TestApp, jwt: &str) -> (u16, String) {
    let answer = client_with_authorization(&format!("Bearer {jwt}"))
        .get(format!("{}/api/auth/me/", app.address))
        .sent()
        .await;
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.unwrap();
    (status, body.get("detail").and_then(Value::as_str).unwrap_or_default().to_owned())
}

#[tokio::test]
async fn jwt_bearers_are_verified_and_mapped_to_users() {
    let Some(provider) = &*PROVIDER else { return };
    let app = app_with(provider, |_| {}).await;
    // A service user for the client-credentials client `ingest`, and a
    // person's user.
    linked_user(&app, provider, "ingest-service", queries::CLIENT, "ingest");
    let frank = unique("frank");
    linked_user(&app, provider, "frank", queries::PERSON, &frank);
    let issuer = provider.issuer.as_str();

    let service = provider.client_credentials("ingest", "ingest-secret").await;
    let answer = client_with_authorization(&format!("Bearer {service}"))
        .get(format!("{}/api/auth/me/", app.address))
        .sent_json::<Value>()
        .await;
    assert_eq!(answer["username"], "ingest-service");
    assert_eq!(answer["authenticated_by"], "jwt");
    let person = provider.sign(json!({ "sub": frank })).await;
    let (status, _) = bearer_status(&app, &person).await;
    assert_eq!(status, 200);
    let me: Value = client_with_authorization(&format!("Bearer {person}"))
        .get(format!("{}/api/auth/me/", app.address))
        .sent_json()
        .await;
    assert_eq!(me["username"], "frank");

    let now = chrono::Utc::now().timestamp();
    let cases = [
        (
            "expired",
            provider.sign(json!({ "sub": frank, "iat": now - 7200, "exp": now - 3600 })).await,
            "expired",
        ),
        (
            "not yet",
            provider.sign(json!({ "sub": frank, "nbf": now + 3600 })).await,
            "not valid yet",
        ),
        ("wrong aud", provider.sign(json!({ "sub": frank, "aud": "another-api" })).await, "aud"),
        ("no exp", provider.sign(json!({ "sub": frank, "exp": null })).await, "exp"),
        (
            "wrong iss",
            provider.sign(json!({ "sub": frank, "iss": "https://evil.example" })).await,
            "issuer",
        ),
        ("unknown subject", provider.sign(json!({ "sub": "nobody-here" })).await, "no account"),
        (
            "unknown kid",
            provider.sign_with_kid(json!({ "sub": frank }), "made-up").await,
            "key is not known",
        ),
    ];
    for (case, jwt, says) in cases {
        let (status, detail) = bearer_status(&app, &jwt).await;
        assert_eq!(status, 401, "{case}: {detail}");
        assert!(detail.contains(says), "{case}: {detail}");
    }
    // `alg: none`, and HS256 "signed" with the provider's public key (the
    // key confusion attack): refused by the allow-list.
    let claims = json!({ "iss": issuer, "aud": AUDIENCE, "sub": frank, "exp": now + 300 });
    let none = forged(json!({ "alg": "none", "typ": "JWT" }), claims.clone(), |_| Vec::new());
    let (status, _) = bearer_status(&app, &none).await;
    assert_eq!(status, 401, "alg none");
    let jwks = client().get(format!("{issuer}/jwks")).sent().await.text().await.unwrap();
    let kid = serde_json::from_str::<Value>(&jwks).unwrap()["keys"][0]["kid"].clone();
    let hs256 = forged(json!({ "alg": "HS256", "kid": kid }), claims, |signed| {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(jwks.as_bytes()).unwrap();
        mac.update(signed.as_bytes());
        mac.finalize().into_bytes().to_vec()
    });
    let (status, detail) = bearer_status(&app, &hs256).await;
    assert_eq!(status, 401, "HS256 with the public key");
    assert!(detail.contains("algorithm"), "{detail}");
    // A token with its signature changed.
    let mut tampered = person.clone();
    tampered.push('A');
    assert_eq!(bearer_status(&app, &tampered).await.0, 401);
    // An inactive user's JWT is refused as its tokens are.
    let mut conn = app.conn();
    let user = queries::user_by_username(&mut conn, "frank").unwrap().unwrap();
    users::set_active(&mut conn, &Granted::system(), user.id, false).unwrap();
    drop(conn);
    // Within the auth cache's poll interval.
    let mut status = 200;
    for _ in 0..50 {
        status = bearer_status(&app, &person).await.0;
        if status != 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_made_up_keys_fetch_at_a_bounded_rate() {
    let Some(provider) = Provider::start() else { return };
    // Made-up keys are bad tokens: not throttled here, to count fetches.
    let app = app_with(&provider, |s| s.bad_token_limit = 1000).await;
    linked_user(&app, &provider, "grace", queries::PERSON, "grace-sub");
    let before = provider.sign(json!({ "sub": "grace-sub" })).await;
    assert_eq!(bearer_status(&app, &before).await.0, 200);
    let fetched = provider.jwks_fetches().await;
    assert_eq!(fetched, 1);

    // The provider rotates: its new key signs; the proxy fetches the keys
    // again on seeing its id, and both old and new tokens pass.
    provider.control("rotate", json!({})).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let after = provider.sign(json!({ "sub": "grace-sub" })).await;
    assert_eq!(bearer_status(&app, &after).await.0, 200, "the new key");
    assert_eq!(bearer_status(&app, &before).await.0, 200, "the old key, still published");
    assert_eq!(provider.jwks_fetches().await, 2);

    // A flood of made-up key ids costs the provider one fetch per interval.
    for n in 0..50 {
        let jwt = provider.sign_with_kid(json!({ "sub": "grace-sub" }), &format!("kid-{n}")).await;
        assert_eq!(bearer_status(&app, &jwt).await.0, 401);
    }
    let fetches = provider.jwks_fetches().await;
    assert!(fetches <= 2 + 5, "{fetches} fetches for 50 made-up keys");
}

/// A JWT is verified once and then kept, but never past its `exp`.
#[tokio::test]
async fn a_kept_jwt_still_expires() {
    let Some(provider) = &*PROVIDER else { return };
    let app = app_with(provider, |s| s.identity.jwt_leeway = std::time::Duration::ZERO).await;
    let hana = unique("hana");
    linked_user(&app, provider, "hana", queries::PERSON, &hana);
    let exp = chrono::Utc::now().timestamp() + 2;
    let jwt = provider.sign(json!({ "sub": hana, "exp": exp })).await;
    assert_eq!(bearer_status(&app, &jwt).await.0, 200);
    assert_eq!(bearer_status(&app, &jwt).await.0, 200, "kept");
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let (status, detail) = bearer_status(&app, &jwt).await;
    assert_eq!(status, 401, "{detail}");
    assert!(detail.contains("expired"), "{detail}");
}

/// `OIDC_REQUIRE_AMR`: a login the provider does not say was made with a
/// second factor is refused (the test provider's password login says
/// none), with no session; `OIDC_REQUIRE_ACR` is asked for as
/// `acr_values` and checked likewise.
#[tokio::test]
async fn a_required_second_factor_at_the_provider_is_checked() {
    let Some(provider) = &*PROVIDER else { return };
    let app = app_with(provider, |s| s.identity.oidc_require_amr = vec!["mfa".into()]).await;
    let ivy = unique("ivy");
    provider.account(&ivy, json!({})).await;
    let browser = client();
    let answer = sign_in(&browser, &app, &ivy).await;
    assert_eq!(answer.status(), 403);
    assert!(answer.text().await.unwrap().contains("strongly enough (amr)"));
    assert!(me(&browser, &app).await.is_none());

    let app = app_with(provider, |s| s.identity.oidc_require_acr = vec!["gold".into()]).await;
    let browser = client();
    let asked = to_callback(&browser, &app, &ivy, |url| {
        assert!(url.contains("acr_values=gold"), "{url}");
        url
    })
    .await;
    let answer = browser.get(asked).sent().await;
    assert_eq!(answer.status(), 403);
    assert!(answer.text().await.unwrap().contains("strongly enough (acr)"));
}

/// A provider that accepts connections (counting them) and answers each
/// with headers at once, then its body a byte every half second: one that
/// is down in the worst way.
async fn trickling_provider() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (listener, url) = crate::helpers::listener().await;
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    crate::helpers::serve_each(listener, move |mut stream| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head).await;
            let start = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{";
            if stream.write_all(start.as_bytes()).await.is_err() {
                return;
            }
            for _ in 0..200 {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                if stream.write_all(b" ").await.is_err() {
                    return;
                }
            }
        }
    });
    (url, accepted)
}

/// A provider that trickles its answers is given up on within
/// `OIDC_HTTP_TIMEOUT`, and a flood of logins while it is so costs it one
/// connection (one fetch at a time, then none for a while), not one each.
#[tokio::test]
async fn a_stalling_provider_is_given_up_on_and_not_flooded() {
    let (issuer, accepted) = trickling_provider().await;
    let app = spawn_app_with(|s| {
        let identity = &mut s.identity;
        identity.oidc_issuer = Some(issuer.clone());
        identity.oidc_client_id = Some(CLIENT_ID.into());
        identity.oidc_client_secret = Some(CLIENT_SECRET.into());
        identity.jwt_audience = Some(AUDIENCE.into());
        identity.oidc_http_timeout = std::time::Duration::from_secs(1);
        identity.jwks_refresh_interval = std::time::Duration::from_secs(30);
    })
    .await;
    let started = std::time::Instant::now();
    let logins = (0..40).map(|_| {
        let url = format!("{}/admin/oidc/login/", app.address);
        async move { client().get(url).sent().await.status() }
    });
    let statuses = futures_util::future::join_all(logins).await;
    assert!(statuses.iter().all(|s| *s == 403), "{statuses:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    let connections = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(connections <= 2, "{connections} connections to the provider for 40 logins");
    // A JWT bearer of that issuer is told the provider is away (503), at once.
    let jwt = forged(json!({ "alg": "RS256", "kid": "k" }), json!({ "iss": issuer }), |_| vec![1]);
    let started = std::time::Instant::now();
    let answer = client_with_authorization(&format!("Bearer {jwt}"))
        .get(format!("{}/api/auth/me/", app.address))
        .sent()
        .await;
    assert_eq!(answer.status(), 503);
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // Other traffic is served meanwhile.
    assert_eq!(app.client.get(format!("{}/api/auth/me/", app.address)).sent_status().await, 200);
}

/// What an anonymous visitor starts is kept in its cookie, not in a row:
/// a long `next` is not followed (nor kept), and the callback URL is this
/// server's own, whatever forwarding headers an untrusted client sends.
#[tokio::test]
async fn starting_a_login_stores_nothing_and_names_this_server() {
    let Some(provider) = &*PROVIDER else { return };
    let app = app_with(provider, |_| {}).await;
    let rows = || {
        use diesel::prelude::*;
        let mut conn = app.conn();
        lbasedb_proxy::db::schema::session::table.count().get_result::<i64>(&mut conn).unwrap()
    };
    let before = rows();
    let long = format!("/admin/{}", "a".repeat(5000));
    for _ in 0..20 {
        let answer = client()
            .get(format!("{}/admin/oidc/login/", app.address))
            .query(&[("next", &long)])
            .header("x-forwarded-host", "attacker.example")
            .header("x-forwarded-proto", "gopher")
            .header("forwarded", "host=attacker.example;proto=https")
            .sent()
            .await;
        assert_eq!(answer.status(), 302);
        let to = answer.headers()["location"].to_str().unwrap().to_owned();
        let redirect_uri: String = form_urlencoded::parse(to.split_once('?').unwrap().1.as_bytes())
            .find(|(k, _)| k == "redirect_uri")
            .unwrap()
            .1
            .into_owned();
        assert_eq!(redirect_uri, format!("{}/admin/oidc/callback/", app.address));
    }
    assert_eq!(rows(), before, "no session row for an anonymous start");
}

/// A person is never taken for a client: a token that says an end user
/// logged in, or whose subject is a linked person, is that person's; and a
/// client's id is no subject to log in with.
#[tokio::test]
async fn a_client_link_is_not_a_persons_way_in() {
    let Some(provider) = &*PROVIDER else { return };
    let app = app_with(provider, |_| {}).await;
    let client_id = unique("svc-client");
    linked_user(&app, provider, "svc", queries::CLIENT, &client_id);
    let as_client = provider.sign(json!({ "sub": client_id, "client_id": client_id })).await;
    let me: Value = client_with_authorization(&format!("Bearer {as_client}"))
        .get(format!("{}/api/auth/me/", app.address))
        .sent_json()
        .await;
    assert_eq!(me["username"], "svc", "client credentials");
    let now = chrono::Utc::now().timestamp();
    let as_person =
        provider.sign(json!({ "sub": client_id, "client_id": client_id, "auth_time": now })).await;
    let (status, detail) = bearer_status(&app, &as_person).await;
    assert_eq!(status, 401, "an end user's token is no client's: {detail}");
    // Nor may a person whose subject is that client id log in.
    provider.account(&client_id, json!({})).await;
    let browser = client();
    let answer = sign_in(&browser, &app, &client_id).await;
    assert_eq!(answer.status(), 403);
    assert!(answer.text().await.unwrap().contains("identity is a service"));
    // A person linked with a subject equal to the client id is that person.
    linked_user(&app, provider, "svc-owner", queries::PERSON, &client_id);
    let me: Value = client_with_authorization(&format!("Bearer {as_client}"))
        .get(format!("{}/api/auth/me/", app.address))
        .sent_json()
        .await;
    assert_eq!(me["username"], "svc-owner", "a person's subject first");
}

/// An email the provider has not verified names no new user (and is not
/// kept); one it vouches for may.
#[tokio::test]
async fn an_unverified_email_is_no_username() {
    let Some(provider) = &*PROVIDER else { return };
    let app = app_with(provider, |s| s.identity.oidc_username_claim = "email".into()).await;
    let eve = unique("eve");
    let ceo = format!("ceo-{eve}@corp.example");
    provider.account(&eve, json!({ "email": ceo, "email_verified": false })).await;
    assert_eq!(sign_in(&client(), &app, &eve).await.status(), 302);
    let mut conn = app.conn();
    assert!(queries::user_by_username(&mut conn, &ceo).unwrap().is_none());
    let made = queries::user_by_username(&mut conn, &eve).unwrap().expect("named by sub");
    assert_eq!(made.email, "", "an unverified address is not kept");
    drop(conn);
    let real = unique("real-ceo");
    let owned = format!("owner-{real}@corp.example");
    provider.account(&real, json!({ "email": owned, "email_verified": true })).await;
    assert_eq!(sign_in(&client(), &app, &real).await.status(), 302);
    let made = queries::user_by_username(&mut app.conn(), &owned).unwrap().expect("by email");
    assert_eq!(made.email, owned);
}
