//! Two-factor login: enrolment from one's own page, the code after the
//! password, recovery codes each good once, a code never accepted twice,
//! wrong codes throttled, `REQUIRE_2FA` sending a user to enrol, the API's
//! `otp`, and `2fa reset` from the command line. The codes are computed
//! here from the secret the page shows (RFC 6238), never read from the
//! server.

use hmac::Mac;
use lbasedb_proxy::auth::users::UserSpec;
use serde_json::{Value, json};

use crate::helpers::{
    Browser, TestApp, USER_PASSWORD, client, create_user, spawn_app, spawn_app_with, spec,
};

/// RFC 4648 base32, as the page shows the secret.
fn base32(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut value, mut out) = (0u32, 0u64, Vec::new());
    for c in text.bytes().filter(|c| *c != b'=') {
        let index = ALPHABET.iter().position(|a| *a == c).expect("a base32 letter");
        value = (value << 5) | index as u64;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((value >> bits) as u8);
        }
    }
    out
}

/// RFC 6238: HMAC-SHA1 of the time step, dynamically truncated, six digits.
fn totp(secret: &str, unix: u64) -> String {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&base32(secret)).unwrap();
    mac.update(&(unix / 30).to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let number = u32::from_be_bytes(digest[offset..offset + 4].try_into().unwrap()) & 0x7fff_ffff;
    format!("{:06}", number % 1_000_000)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The text between `start` and the next `end` in `html`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html.find(start).unwrap_or_else(|| panic!("{start:?} in {html}")) + start.len();
    &html[from..from + html[from..].find(end).unwrap()]
}

fn recovery_codes(html: &str) -> Vec<String> {
    let list = between(html, r#"<ul id="recovery-codes">"#, "</ul>");
    list.split("<code>").skip(1).map(|c| c.split('<').next().unwrap().to_owned()).collect()
}

/// A browser with `username`'s password accepted at the admin's login
/// (`next` as given): the answer to the password.
async fn password(app: &TestApp, username: &str, next: &str) -> (Browser, reqwest::Response) {
    let browser = Browser { client: client(), base: app.address.clone() };
    let fields = [("username", username), ("password", USER_PASSWORD), ("next", next)];
    let answer = browser.submit("/admin/login/", &fields).await;
    (browser, answer)
}

/// Turns two-factor login on from the account page; its secret, the code
/// that confirmed it, and the recovery codes.
async fn enrol(browser: &Browser) -> (String, String, Vec<String>) {
    let (status, page) = browser.get("/account/2fa/").await;
    assert_eq!(status, 200);
    assert!(page.contains("is <strong>off</strong>"));
    let fields = [("action", "start"), ("password", USER_PASSWORD)];
    let started = browser.submit("/account/2fa/", &fields).await;
    let page = started.text().await.unwrap();
    assert!(page.contains("<svg"), "a QR code");
    let secret = between(&page, r#"id="totp-secret">"#, "<").to_owned();
    // A wrong code first: the secret stays, nothing is on.
    let wrong = browser.submit("/account/2fa/", &[("action", "confirm"), ("code", "000000")]).await;
    let wrong = wrong.text().await.unwrap();
    assert!(wrong.contains("not right") && wrong.contains(&secret), "{wrong}");
    let code = totp(&secret, now());
    let confirmed =
        browser.submit("/account/2fa/", &[("action", "confirm"), ("code", &code)]).await;
    let codes = recovery_codes(&confirmed.text().await.unwrap());
    assert_eq!(codes.len(), 10);
    (secret, code, codes)
}

/// A staff user `name` with two-factor login on: a browser signed in as
/// them, the secret, the code that confirmed it, and the recovery codes.
async fn enrolled(app: &TestApp, name: &str) -> (Browser, String, String, Vec<String>) {
    create_user(&app.pool, UserSpec { staff: true, ..spec(name) });
    let (browser, answer) = password(app, name, "/admin/").await;
    assert_eq!(answer.status(), 302);
    let (secret, confirming, codes) = enrol(&browser).await;
    (browser, secret, confirming, codes)
}

async fn second_step(browser: &Browser, code: &str) -> reqwest::Response {
    browser.submit("/admin/login/2fa/", &[("code", code)]).await
}

async fn signed_in(browser: &Browser) -> bool {
    browser.get("/api/auth/me/").await.0 == 200
}

#[tokio::test]
async fn a_user_enrols_then_logs_in_with_a_code_each_used_once() {
    let app = spawn_app().await;
    let (browser, secret, confirming, codes) = enrolled(&app, "tina").await;
    let (_, page) = browser.get("/account/2fa/").await;
    assert!(page.contains("is <strong>on</strong>; 10 recovery code(s) left"), "{page}");

    // The password alone is no login now.
    let (browser, answer) = password(&app, "tina", "/admin/").await;
    assert_eq!(answer.headers()["location"], "/admin/login/2fa/");
    assert!(!signed_in(&browser).await, "no session on the password alone");
    assert_eq!(browser.get("/admin/").await.0, 302, "the admin waits for the code");
    // The code that confirmed the enrolment: its step is spent.
    let replayed = second_step(&browser, &confirming).await;
    assert_eq!(replayed.status(), 200);
    assert!(replayed.text().await.unwrap().contains("used already"));
    assert!(!signed_in(&browser).await);
    // The next step's code (within the drift allowed) logs in, once.
    let next = totp(&secret, now() + 30);
    let answer = second_step(&browser, &next).await;
    assert_eq!(answer.status(), 302);
    assert_eq!(answer.headers()["location"], "/admin/");
    assert!(signed_in(&browser).await);
    let (again, _) = password(&app, "tina", "/admin/").await;
    let replayed = second_step(&again, &next).await;
    assert!(replayed.text().await.unwrap().contains("used already"), "a code is good once");

    // A recovery code, typed loosely, once.
    let loose = codes[3].to_uppercase().replace('-', " ");
    let (browser, _) = password(&app, "tina", "/admin/").await;
    assert_eq!(second_step(&browser, &loose).await.status(), 302);
    assert!(signed_in(&browser).await);
    let (browser, _) = password(&app, "tina", "/admin/").await;
    assert_eq!(second_step(&browser, &codes[3]).await.status(), 200, "spent");
    assert!(!signed_in(&browser).await);

    // The API asks for the code too: a session and a token alike.
    let token = |otp: Option<&str>| {
        let mut body = json!({ "username": "tina", "password": USER_PASSWORD });
        if let Some(otp) = otp {
            body["otp"] = json!(otp);
        }
        client().post(format!("{}/api/auth/token/", app.address)).json(&body).send()
    };
    let answer = token(None).await.unwrap();
    assert_eq!(answer.status(), 400);
    assert!(answer.json::<Value>().await.unwrap()["detail"].as_str().unwrap().contains("otp"));
    assert_eq!(token(Some("123456")).await.unwrap().status(), 400);
    let answer = token(Some(&codes[5])).await.unwrap();
    assert_eq!(answer.status(), 200, "a recovery code");
    assert_eq!(token(Some(&codes[5])).await.unwrap().status(), 400, "once");
}

#[tokio::test]
async fn wrong_codes_are_throttled_like_passwords() {
    let app = spawn_app().await;
    let (_, secret, _, _) = enrolled(&app, "uma").await;
    let (browser, _) = password(&app, "uma", "/admin/").await;
    // LOGIN_FAILURE_LIMIT (5) wrong codes; the enrolment's right code
    // cleared its wrong one.
    for _ in 0..5 {
        let page = second_step(&browser, "999999").await.text().await.unwrap();
        assert!(page.contains("not right"), "{page}");
    }
    let page = second_step(&browser, "999999").await.text().await.unwrap();
    assert!(page.contains("Too many wrong codes"), "{page}");
    // Even the right code waits now.
    let page = second_step(&browser, &totp(&secret, now() + 30)).await.text().await.unwrap();
    assert!(page.contains("Too many wrong codes"));
    assert!(!signed_in(&browser).await);
}

#[tokio::test]
async fn require_2fa_sends_staff_to_enrol_after_the_password() {
    let app = spawn_app_with(|s| s.require_2fa = "staff".parse().unwrap()).await;
    create_user(&app.pool, UserSpec { staff: true, ..spec("vic") });
    create_user(&app.pool, spec("walt"));
    let (browser, answer) = password(&app, "vic", "/admin/").await;
    assert_eq!(answer.headers()["location"], "/admin/login/2fa/");
    let (_, page) = browser.get("/admin/login/2fa/").await;
    let secret = between(&page, r#"id="totp-secret">"#, "<").to_owned();
    assert!(!signed_in(&browser).await, "not before the enrolment");
    // The API will not mint a token around it.
    let body = json!({ "username": "vic", "password": USER_PASSWORD });
    assert_eq!(app.post_anonymously("/api/auth/token/", body).await.status(), 403);
    let enrolled = second_step(&browser, &totp(&secret, now())).await;
    assert_eq!(enrolled.status(), 200);
    let page = enrolled.text().await.unwrap();
    assert_eq!(recovery_codes(&page).len(), 10);
    assert!(page.contains(r#"href="/admin/""#), "then on to where the login was going");
    assert!(signed_in(&browser).await);
    assert_eq!(browser.get("/admin/").await.0, 200);
    // Required: it cannot be turned off.
    let (_, page) = browser.get("/account/2fa/").await;
    assert!(page.contains("cannot be turned off"));
    let off = browser.submit("/account/2fa/", &[("action", "off"), ("code", "000000")]).await;
    assert!(off.text().await.unwrap().contains("required"));

    // A user it does not cover logs in as before, and may still enrol
    // from their own page (not staff: the account page is theirs).
    let (browser, answer) = password(&app, "walt", "/account/2fa/").await;
    assert_eq!(answer.headers()["location"], "/account/2fa/");
    assert!(signed_in(&browser).await);
    let (_, _, codes) = enrol(&browser).await;
    assert_eq!(codes.len(), 10);
    assert_eq!(browser.get("/admin/").await.0, 302, "still no staff page");
}

#[tokio::test]
async fn turning_it_off_needs_a_code_and_2fa_reset_clears_a_lost_device() {
    let app = spawn_app().await;
    let (browser, secret, _, codes) = enrolled(&app, "xena").await;
    let off = browser.submit("/account/2fa/", &[("action", "off"), ("code", "111111")]).await;
    assert!(off.text().await.unwrap().contains("not right"));
    let renewed =
        browser.submit("/account/2fa/", &[("action", "codes"), ("code", &codes[0])]).await;
    let new_codes = recovery_codes(&renewed.text().await.unwrap());
    assert_eq!(new_codes.len(), 10);
    let (b, _) = password(&app, "xena", "/admin/").await;
    assert_eq!(second_step(&b, &codes[1]).await.status(), 200, "old codes stop");
    let off = browser
        .submit("/account/2fa/", &[("action", "off"), ("code", &totp(&secret, now() + 30))])
        .await;
    assert_eq!(off.status(), 302);
    let (browser, answer) = password(&app, "xena", "/admin/").await;
    assert_eq!(answer.headers()["location"], "/admin/", "off: the password is enough");
    // On again, then the device is lost: the command line resets it.
    enrol(&browser).await;
    let said = app.run_ok(&["2fa", "reset", "xena"]);
    assert!(said.contains("turned off"), "{said}");
    let (_, answer) = password(&app, "xena", "/admin/").await;
    assert_eq!(answer.headers()["location"], "/admin/");
    let history = app.run_ok(&["2fa", "reset", "xena"]);
    assert!(history.contains("nothing changed"));
}

/// The secret of an enrolment is its session's alone: another session of
/// the account (a thief's, or one that knows only the password) never sees
/// it, and starting needs the password, not only a session.
#[tokio::test]
async fn an_enrolment_secret_is_never_shown_to_another_session() {
    let app = spawn_app_with(|s| s.require_2fa = "staff".parse().unwrap()).await;
    create_user(&app.pool, spec("yves"));
    let (thief, _) = password(&app, "yves", "/account/2fa/").await;
    let without = thief.submit("/account/2fa/", &[("action", "start")]).await;
    let page = without.text().await.unwrap();
    assert!(!page.contains("totp-secret") && page.contains("password was entered incorrectly"));
    let fields = [("action", "start"), ("password", USER_PASSWORD)];
    let planted = thief.submit("/account/2fa/", &fields).await.text().await.unwrap();
    let planted = between(&planted, r#"id="totp-secret">"#, "<").to_owned();
    // The owner's own enrolment has a secret of its own.
    let (owner, _) = password(&app, "yves", "/account/2fa/").await;
    let (secret, _, _) = enrol(&owner).await;
    assert_ne!(secret, planted);
    // The thief's secret makes no code the account takes, and cannot be
    // confirmed now that two-factor login is on.
    let confirm = [("action", "confirm"), ("code", &totp(&planted, now()))];
    let refused = thief.submit("/account/2fa/", &confirm).await.text().await.unwrap();
    assert!(!refused.contains("recovery-codes"), "{refused}");
    let (browser, _) = password(&app, "yves", "/account/").await;
    assert!(
        second_step(&browser, &totp(&planted, now()))
            .await
            .text()
            .await
            .unwrap()
            .contains("not right")
    );
    // Forced enrolment: two sessions that know the password see two secrets.
    create_user(&app.pool, UserSpec { staff: true, ..spec("zoe") });
    let (first, _) = password(&app, "zoe", "/admin/").await;
    let (second, _) = password(&app, "zoe", "/admin/").await;
    let one = first.get("/admin/login/2fa/").await.1;
    let other = second.get("/admin/login/2fa/").await.1;
    let secret_of = |page: &str| between(page, r#"id="totp-secret">"#, "<").to_owned();
    assert_ne!(secret_of(&one), secret_of(&other));
    assert_eq!(
        secret_of(&one),
        secret_of(&first.get("/admin/login/2fa/").await.1),
        "kept per session"
    );
}

/// Wrong codes are counted per account from every address together (six
/// digits cannot bear a count per address), and an address past its own
/// limit has no code checked.
#[tokio::test]
async fn wrong_codes_count_per_account_and_per_address() {
    let app = spawn_app_with(|s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let (_, secret, _, _) = enrolled(&app, "abe").await;
    for n in 0..5 {
        let (browser, _) = password(&app, "abe", "/admin/").await;
        let from = format!("198.51.{n}.7");
        let page = browser.get("/admin/login/2fa/").await.1;
        let csrf = crate::helpers::csrf_of(&page);
        let answer = browser
            .client
            .post(format!("{}/admin/login/2fa/", app.address))
            .header("x-forwarded-for", &from)
            .form(&[("code", "999999"), ("csrfmiddlewaretoken", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert!(answer.text().await.unwrap().contains("not right"), "{from}");
    }
    let (browser, _) = password(&app, "abe", "/admin/").await;
    let page = second_step(&browser, &totp(&secret, now() + 30)).await.text().await.unwrap();
    assert!(page.contains("Too many wrong codes"), "five addresses, one account: {page}");

    let app = spawn_app_with(|s| s.login_address_failure_limit = 2).await;
    let (_, secret, _, _) = enrolled(&app, "bea").await;
    let (browser, _) = password(&app, "bea", "/admin/").await;
    for _ in 0..2 {
        second_step(&browser, "999999").await;
    }
    let page = second_step(&browser, &totp(&secret, now() + 30)).await.text().await.unwrap();
    assert!(page.contains("Too many wrong codes"), "the address's limit: {page}");
}

/// The password change is checked as a login is: throttled, and from this
/// site only.
#[tokio::test]
async fn the_password_change_is_no_oracle_and_same_origin_only() {
    let app = spawn_app().await;
    create_user(&app.pool, spec("cleo"));
    let (browser, _) = password(&app, "cleo", "/account/").await;
    let page = "/admin/password_change/";
    let change = |old: &'static str| {
        let fields = [
            ("old_password", old),
            ("new_password1", "a-new-long-secret"),
            ("new_password2", "a-new-long-secret"),
        ];
        let browser = &browser;
        async move { browser.submit(page, &fields).await }
    };
    for _ in 0..5 {
        assert!(change("wrong-guess").await.text().await.unwrap().contains("entered incorrectly"));
    }
    let throttled = change(USER_PASSWORD).await.text().await.unwrap();
    assert!(throttled.contains("Too many wrong passwords"), "{throttled}");
    // From another site, even with the session's CSRF token: refused.
    create_user(&app.pool, spec("cleon"));
    let (other, _) = password(&app, "cleon", "/account/").await;
    let csrf = crate::helpers::csrf_of(&other.get(page).await.1);
    let answer = other
        .client
        .post(format!("{}{page}", app.address))
        .header("origin", "http://evil.example")
        .form(&[
            ("old_password", USER_PASSWORD),
            ("new_password1", "a-new-long-secret"),
            ("new_password2", "a-new-long-secret"),
            ("csrfmiddlewaretoken", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
}
