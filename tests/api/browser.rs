//! In a real headless Chromium through WebDriver: a newcomer's walk through
//! the admin (group with a feed grant, user in it, token read once), then
//! browser code calling the proxy with a session cookie and the CSRF
//! header. Screenshots go to target/screenshots/.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the test
//! says so and passes, unless `BROWSER_TESTS=required` (as in CI).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, Sent, Stopped, TestApp, client_with_token, spawn_app};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

struct Driver {
    _child: Stopped,
    port: u16,
}

fn start_driver() -> Option<Driver> {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        let message = format!(
            "browser tests need {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        );
        assert!(std::env::var("BROWSER_TESTS").as_deref() != Ok("required"), "{message}");
        eprintln!("SKIPPED: {message}");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    Some(Driver { _child: Stopped(child), port })
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,900", format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let url = format!("http://127.0.0.1:{}", driver.port);
    for _ in 0..100 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
            Ok(client) => return client,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("chromedriver did not answer on {url}");
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn snap(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

async fn fill(c: &Client, id: &str, value: &str) {
    let field = c.find(Locator::Id(id)).await.unwrap_or_else(|_| panic!("field #{id}"));
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

async fn choose(c: &Client, css: &str, label: &str) {
    let select = c.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("select {css}"));
    select.select_by_label(label).await.unwrap_or_else(|_| panic!("option {label} in {css}"));
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("{css}")).click().await.unwrap();
}

async fn page_text(c: &Client) -> String {
    match c.find(Locator::Css("body")).await {
        Ok(body) => body.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits for the page (after a click that navigates) to show `needle`.
async fn wait_for_text(c: &Client, needle: &str) -> String {
    for _ in 0..100 {
        let text = page_text(c).await;
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page never showed {needle:?}; it shows:\n{}", page_text(c).await);
}

/// Runs `fetch` in the page and answers its status and JSON body.
async fn fetch(c: &Client, url: &str, options: Value) -> (u64, Value) {
    let script = r#"
        const [url, options, done] = arguments;
        fetch(url, options)
            .then(r => r.text().then(t => done({status: r.status, body: t})))
            .catch(e => done({status: 0, body: String(e)}));
    "#;
    let answer = c.execute_async(script, vec![json!(url), options]).await.unwrap();
    let body =
        serde_json::from_str(answer["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
    (answer["status"].as_u64().unwrap(), body)
}

/// Logs in to the admin as the superuser (with screenshots of the login
/// page and the index, when `snaps`).
async fn log_in_as_admin(c: &Client, base: &str, snaps: bool) {
    c.goto(&format!("{base}/admin/")).await.unwrap();
    if snaps {
        snap(c, "login").await;
    }
    fill(c, "id_username", "admin").await;
    fill(c, "id_password", ADMIN_PASSWORD).await;
    click(c, "#login-form input[type=submit]").await;
    wait_for_text(c, "Site administration").await;
    if snaps {
        snap(c, "index").await;
    }
}

async fn arrange_feeds(app: &TestApp) {
    app.create_feed("xy", &[("x", "Float64"), ("y", "Float64")]).await;
    app.create_feed("other", &[("x", "Float64")]).await;
    for (feed, body) in
        [("xy", json!({"x": [1.5, 2.5], "y": [3.5, 4.5]})), ("other", json!({"x": [9.5]}))]
    {
        let response = app
            .upstream_client
            .post(app.direct(&format!("data?feed={feed}")))
            .json(&body)
            .sent()
            .await;
        assert_eq!(response.status(), 204);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_sets_up_access_in_the_browser_and_browser_code_uses_it() {
    let Some(driver) = start_driver() else { return };
    let app = spawn_app().await;
    arrange_feeds(&app).await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path()).await;
    let base = app.address.clone();

    log_in_as_admin(&c, &base, true).await;

    // A group that may read feed xy only.
    c.goto(&format!("{base}/admin/auth/group/add/")).await.unwrap();
    fill(&c, "id_name", "xy-readers").await;
    choose(&c, "#feed-grants tbody tr:first-child select", "lbasedb.view_data").await;
    let feed = c.find(Locator::Css("#feed-grants tbody tr:first-child input")).await.unwrap();
    feed.send_keys("xy").await.unwrap();
    assert!(c.find(Locator::Css(".chooser-wrap")).await.is_ok(), "the two-list chooser is on");
    snap(&c, "group_change").await;
    click(&c, "button[value=_save]").await;
    wait_for_text(&c, "was added successfully").await;

    // A user in it: two steps.
    c.goto(&format!("{base}/admin/auth/user/add/")).await.unwrap();
    fill(&c, "id_username", "reader").await;
    fill(&c, "id_password1", "a-long-reader-password").await;
    fill(&c, "id_password2", "a-long-reader-password").await;
    click(&c, "#user_form input[type=submit]").await;
    wait_for_text(&c, "was added successfully").await;
    choose(&c, "#id_groups", "xy-readers").await;
    click(&c, "button[value=_continue]").await;
    let text = wait_for_text(&c, "was changed successfully").await;
    assert!(text.contains("xy: lbasedb.view_data"), "effective grants shown");
    snap(&c, "user_change").await;
    c.goto(&format!("{base}/admin/auth/user/")).await.unwrap();
    snap(&c, "user_list").await;

    // A token, read once.
    c.goto(&format!("{base}/admin/authtoken/token/add/")).await.unwrap();
    choose(&c, "#id_user", "reader").await;
    fill(&c, "id_name", "script").await;
    click(&c, "#token_form input[type=submit]").await;
    wait_for_text(&c, "shown this once").await;
    let secret = c.find(Locator::Id("token-secret")).await.unwrap().text().await.unwrap();
    assert!(secret.starts_with("lbp_"));
    snap(&c, "token_created").await;
    let script = client_with_token(&secret);
    let own = app.get_proxy_as(&script, "data?feed=xy&ix=0&size=2&col[]=x").await;
    assert_eq!(own.json::<Value>().await.unwrap(), json!({"x": [1.5, 2.5]}));
    let other = app.get_proxy_as(&script, "data?feed=other&ix=0&size=1&col[]=x").await;
    assert_eq!(other.status(), 403);
    c.goto(&format!("{base}/admin/authtoken/token/")).await.unwrap();
    let tokens = wait_for_text(&c, "script").await;
    assert!(!tokens.contains(&secret), "the secret is shown once");
    c.goto(&format!("{base}/admin/lbasedb/feed/xy/")).await.unwrap();
    snap(&c, "feed_detail").await;

    // Log out of the admin.
    click(&c, "#logout-form button").await;
    wait_for_text(&c, "Log in").await;
    assert!(c.current_url().await.unwrap().path().starts_with("/admin/login/"));

    // As the new user, from a page of the site: API login, then the proxy
    // with the session cookie and the CSRF header.
    let json_post = |body: Value| json!({"method": "POST", "headers": {"Content-Type": "application/json"}, "body": body.to_string()});
    let (status, login) = fetch(
        &c,
        "/api/auth/login/",
        json_post(json!({"username": "reader", "password": "a-long-reader-password"})),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let csrf = login["csrfToken"].as_str().unwrap().to_owned();
    let with_csrf = json!({"headers": {"X-CSRFToken": csrf}});
    let (status, rows) =
        fetch(&c, "/api/proxy/data?feed=xy&ix=0&size=2&col[]=x&col[]=y", with_csrf.clone()).await;
    assert_eq!((status, rows), (200, json!({"x": [1.5, 2.5], "y": [3.5, 4.5]})));
    let (status, _) =
        fetch(&c, "/api/proxy/data?feed=other&ix=0&size=1&col[]=x", with_csrf.clone()).await;
    assert_eq!(status, 403);
    let (status, feeds) = fetch(&c, "/api/proxy/feed", with_csrf.clone()).await;
    assert_eq!((status, feeds), (200, json!([])), "no view_feed, so no feed listed");
    let logout = json!({"method": "POST", "headers": {"X-CSRFToken": csrf}});
    assert_eq!(fetch(&c, "/api/auth/logout/", logout).await.0, 200);
    assert_eq!(fetch(&c, "/api/proxy/data?feed=xy&ix=0&size=2&col[]=x", with_csrf).await.0, 401);
    c.close().await.unwrap();
}

/// The grant chooser: typing a feed lists its columns (`grants.js`), and
/// the columns and rows chosen are saved as one grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grant_chooser_lists_a_typed_feeds_columns_and_saves_a_limited_grant() {
    let Some(driver) = start_driver() else { return };
    let app = spawn_app().await;
    arrange_feeds(&app).await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path()).await;
    let base = app.address.clone();
    log_in_as_admin(&c, &base, false).await;
    c.goto(&format!("{base}/admin/auth/group/add/")).await.unwrap();
    fill(&c, "id_name", "x-analysts").await;
    choose(&c, "#feed-grants tbody tr:first-child select[name=grant_perm]", "lbasedb.view_data")
        .await;
    let feed =
        c.find(Locator::Css("#feed-grants tbody tr:first-child input.grant-feed")).await.unwrap();
    // Typed, then left (Tab): its change event asks for the columns.
    feed.send_keys("xy\u{E004}").await.unwrap();
    let columns = "#feed-grants tbody tr:first-child select.grant-columns option";
    let mut offered = Vec::new();
    for _ in 0..50 {
        offered = Vec::new();
        for option in c.find_all(Locator::Css(columns)).await.unwrap() {
            offered.push(option.text().await.unwrap());
        }
        if !offered.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(offered, ["x", "y"], "the feed's columns, fetched as it was typed");
    choose(&c, "#feed-grants tbody tr:first-child select.grant-columns", "x").await;
    let from =
        c.find(Locator::Css("#feed-grants tbody tr:first-child input[name=grant_from]")).await;
    from.unwrap().send_keys("-1").await.unwrap();
    snap(&c, "grant_chooser").await;
    click(&c, "button[value=_save]").await;
    wait_for_text(&c, "was added successfully").await;
    let id = lbasedb_proxy::db::queries::group_by_name(&mut app.conn(), "x-analysts")
        .unwrap()
        .unwrap()
        .id;
    let (_, grants) = lbasedb_proxy::db::queries::group_links(&mut app.conn(), id).unwrap();
    assert_eq!(grants, vec!["lbasedb.view_data=xy[x]@-1..".parse().unwrap()]);
}

#[tokio::test]
async fn a_person_logs_in_through_the_providers_own_page_in_chromium() {
    let Some(driver) = start_driver() else { return };
    let Some(provider) = &*crate::oidc::PROVIDER else { return };
    let app = crate::helpers::spawn_app_with(|s| crate::oidc::with_provider(provider, s)).await;
    let who = "browser-ada";
    provider.account(who, json!({ "email": "ada@example.org", "groups": ["idp-admins"] })).await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path()).await;
    let base = app.address.clone();
    c.goto(&format!("{base}/admin/login/")).await.unwrap();
    snap(&c, "sso_login").await;
    click(&c, "#sso-login").await;
    // The provider's login page (its own HTML, on its own port).
    wait_for_text(&c, "Sign-in").await;
    assert!(c.current_url().await.unwrap().as_str().starts_with(&provider.issuer));
    let login = c.find(Locator::Css("input[name=login]")).await.unwrap();
    login.send_keys(who).await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys("any").await.unwrap();
    click(&c, "button[type=submit]").await;
    // Its consent page, where it asks one.
    for _ in 0..50 {
        let url = c.current_url().await.unwrap();
        if url.as_str().starts_with(&base) {
            break;
        }
        if page_text(&c).await.contains("Continue") {
            click(&c, "button[type=submit]").await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = wait_for_text(&c, "Site administration").await;
    assert!(text.contains(who), "the admin greets the person: {text}");
    snap(&c, "sso_admin").await;
    // The session serves the browser's own API calls too.
    let (status, me) = fetch(&c, &format!("{base}/api/auth/me/"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(me["username"], who);
    assert_eq!(me["authenticated_by"], "session");
    // Their own page.
    c.goto(&format!("{base}/account/")).await.unwrap();
    wait_for_text(&c, "Your tokens").await;
    snap(&c, "account").await;
    c.close().await.unwrap();
}

/// Runs `fetch` in the page and answers its status and text.
async fn fetch_text(c: &Client, url: &str) -> (u64, String) {
    let script = r#"
        const [url, done] = arguments;
        fetch(url, {credentials: "same-origin"})
            .then(r => r.text().then(t => done({status: r.status, body: t})))
            .catch(e => done({status: 0, body: String(e)}));
    "#;
    let answer = c.execute_async(script, vec![json!(url)]).await.unwrap();
    (answer["status"].as_u64().unwrap(), answer["body"].as_str().unwrap_or_default().to_owned())
}

/// The chart's last drawing, once its status says it drew rows
/// `from..to`.
async fn drawn(c: &Client, from: u64, to: u64) -> Value {
    let needle = format!("for rows {from} to {to}");
    for _ in 0..600 {
        let status = c.find(Locator::Id("chart-status")).await.unwrap().text().await.unwrap();
        if status.contains(&needle) {
            return c.execute("return window.explorerShown;", vec![]).await.unwrap();
        }
        assert!(!status.contains("could not"), "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the chart never drew rows {from} to {to}");
}

const BIG: u64 = 10_000_000;

/// `x` a timestamp (one a second from 2026), `y` a wave with noise.
fn big_feed_values(i: u64) -> (f64, f64) {
    (1_767_225_600.0 + i as f64, (i as f64 / 200_000.0).sin() * 100.0 + (i % 997) as f64 / 100.0)
}

/// A feed of ten million rows, explored in Chromium: paged, drawn whole,
/// zoomed into (the points received stay under the bound), drawn against
/// its timestamp column, a range downloaded as CSV and compared with the
/// API's answer; screenshots of the explorer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_million_row_feed_is_paged_drawn_zoomed_and_downloaded_in_chromium() {
    let Some(driver) = start_driver() else { return };
    let app = spawn_app().await;
    app.create_feed("big", &[("x", "Float64"), ("y", "Float64")]).await;
    const PART: u64 = 1_000_000;
    for part in 0..BIG / PART {
        let rows = part * PART..(part + 1) * PART;
        let mut body = Vec::with_capacity(PART as usize * 16);
        for i in rows.clone() {
            body.extend_from_slice(&big_feed_values(i).0.to_le_bytes());
        }
        for i in rows {
            body.extend_from_slice(&big_feed_values(i).1.to_le_bytes());
        }
        let appended = app
            .upstream_client
            .post(app.direct("bytes?feed=big&col[]=x&col[]=y"))
            .body(body)
            .sent()
            .await;
        assert_eq!(appended.status(), 204);
    }
    assert_eq!(app.size_of("big").await, BIG);
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path()).await;
    let base = app.address.clone();
    log_in_as_admin(&c, &base, false).await;

    // The whole feed drawn as the page opens, in at most the points asked.
    c.goto(&format!("{base}/admin/lbasedb/feed/big/")).await.unwrap();
    let whole = drawn(&c, 0, BIG).await;
    assert_eq!(whole["downsampled"], true);
    let points = whole["points"].as_u64().unwrap();
    assert!(points > 500 && points <= 4000, "{whole}");
    assert_eq!(whole["series"], json!([points, points]), "two columns drawn");
    eprintln!("10M rows drawn: {whole}");
    let show = "document.getElementById(arguments[0]).scrollIntoView();";
    c.execute(show, vec![json!("explorer-chart")]).await.unwrap();
    snap(&c, "explorer").await;

    // Paging: next, then a row far in.
    wait_for_text(&c, "Rows 0 to 49 of 10000000.").await;
    click(&c, "#page-next").await;
    wait_for_text(&c, "Rows 50 to 99 of 10000000.").await;
    fill(&c, "go-row", "5000000").await;
    click(&c, ".explorer-nav button[type=submit]").await;
    let text = wait_for_text(&c, "Rows 5000000 to 5000049 of 10000000.").await;
    c.execute(show, vec![json!("explorer-rows")]).await.unwrap();
    snap(&c, "explorer_rows").await;
    let (x, y) = big_feed_values(5_000_000);
    assert!(text.contains(&format!("{x:?}")) && text.contains(&format!("{y:?}")), "row 5000000");
    let _ = drawn(&c, 0, BIG).await;

    // Zoom into rows: the points received stay under the bound, every row
    // shown once there are fewer rows than points.
    let from = c.find(Locator::Css("#chart-form input[name=from]")).await.unwrap();
    from.clear().await.unwrap();
    from.send_keys("2000000").await.unwrap();
    let to = c.find(Locator::Css("#chart-form input[name=to]")).await.unwrap();
    to.clear().await.unwrap();
    to.send_keys("2600000").await.unwrap();
    click(&c, "#chart-form button[type=submit]").await;
    let zoomed = drawn(&c, 2_000_000, 2_600_000).await;
    assert_eq!(zoomed["downsampled"], true);
    assert!(zoomed["points"].as_u64().unwrap() <= 4000, "{zoomed}");
    click(&c, "#chart-pan-right").await;
    let panned = drawn(&c, 2_300_000, 2_900_000).await;
    assert!(panned["points"].as_u64().unwrap() <= 4000);
    c.execute("window.explorerDraw(4000000, 4001000);", vec![]).await.unwrap();
    let close = drawn(&c, 4_000_000, 4_001_000).await;
    assert_eq!(close["downsampled"], false);
    assert_eq!(close["points"], 1000);
    // Against the timestamp column.
    choose(&c, "#chart-form select[name=x]", "x").await;
    click(&c, "#chart-reset").await;
    let against = drawn(&c, 0, BIG).await;
    assert!(against["points"].as_u64().unwrap() <= 4000);
    c.execute(show, vec![json!("explorer-chart")]).await.unwrap();
    snap(&c, "explorer_chart").await;
    // However many points a script asks for.
    let (status, body) = fetch_text(&c, "/account/feeds/big/chart/?y=x&y=y&points=1000000").await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert!(answer["rows"].as_array().unwrap().len() <= 4000);

    // A CSV range across the explorer's read chunks, as the API reads it.
    let (from, to) = (262_000u64, 262_300u64);
    let (status, csv) =
        fetch_text(&c, &format!("/account/feeds/big/download/?from={from}&to={to}")).await;
    assert_eq!(status, 200);
    let (status, data) = fetch(
        &c,
        &format!("/api/proxy/data?feed=big&ix={from}&size=300&col[]=x&col[]=y"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "index,x,y");
    assert_eq!(lines.len(), 301);
    for (k, line) in lines[1..].iter().enumerate() {
        let fields: Vec<f64> = line.split(',').map(|f| f.parse().unwrap()).collect();
        assert_eq!(fields[0] as u64, from + k as u64);
        assert_eq!(fields[1], data["x"][k].as_f64().unwrap());
        assert_eq!(fields[2], data["y"][k].as_f64().unwrap());
    }
}
