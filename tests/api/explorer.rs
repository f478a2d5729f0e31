//! The data explorer (`/account/feeds/<name>/`, and the admin's feed page):
//! its table, chart and downloads read what the API would give the same
//! user, no more, and each read is in the audit; feeds made, renamed and
//! deleted from the admin go through the proxy's own checks and locks.

use lbasedb_proxy::db::queries;
use serde_json::{Value, json};

use crate::helpers::*;

const ROWS: u64 = 25_000;
const SPIKE: u64 = 12_345;

/// Column after column, as `POST /bytes` takes them: `t` (Int64), `a`
/// (Float64, with one spike), `b` (Float32), `raw` (Bytes[4]), `s`
/// (String[8], one row holding markup).
fn rows_as_bytes(rows: std::ops::Range<u64>) -> Vec<u8> {
    let mut body = Vec::new();
    for i in rows.clone() {
        body.extend_from_slice(&(i as i64 * 10).to_le_bytes());
    }
    for i in rows.clone() {
        body.extend_from_slice(&a_value(i).to_le_bytes());
    }
    for i in rows.clone() {
        body.extend_from_slice(&(i as f32 / 4.0).to_le_bytes());
    }
    for i in rows.clone() {
        body.extend_from_slice(&(i as u32).to_le_bytes());
    }
    for i in rows {
        let mut text = [0u8; 8];
        let value = if i == 7 { "<b>&\"x".to_owned() } else { format!("r{i}") };
        text[..value.len()].copy_from_slice(value.as_bytes());
        body.extend_from_slice(&text);
    }
    body
}

fn a_value(i: u64) -> f64 {
    if i == SPIKE { 1e6 } else { (i as f64 / 100.0).sin() * 100.0 }
}

const COLUMNS: [(&str, &str); 5] =
    [("t", "Int64"), ("a", "Float64"), ("b", "Float32"), ("raw", "Bytes[4]"), ("s", "String[8]")];

async fn fill_feed(app: &TestApp, feed: &str) {
    app.create_feed(feed, &COLUMNS).await;
    let cols: String = COLUMNS.iter().map(|(name, _)| format!("&col[]={name}")).collect();
    let appended = app
        .upstream_client
        .post(app.direct(&format!("bytes?feed={feed}{cols}")))
        .body(rows_as_bytes(0..ROWS))
        .sent()
        .await;
    assert_eq!(appended.status(), 204);
}

/// The page an admin form's answer sends the browser to, with its
/// message.
async fn landing(browser: &Browser, response: reqwest::Response) -> String {
    assert_eq!(response.status(), 302, "a form answers with a redirect");
    let to = response.headers()["location"].to_str().unwrap().to_owned();
    browser.get(&to).await.1
}

async fn chart(browser: &Browser, path: &str) -> (reqwest::StatusCode, Value) {
    let response = browser.client.get(format!("{}{path}", browser.base)).sent().await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_explorer_shows_draws_and_downloads_what_the_api_reads() {
    // A row per request in the audit, to find each read in it.
    let app = spawn_app_with(|s| s.audit_detail = lbasedb_proxy::audit::Detail::Requests).await;
    fill_feed(&app, "m").await;
    let all = [("lbasedb.view_feed", "m"), ("lbasedb.view_col", "m"), ("lbasedb.view_data", "m")];
    let api = app.client_granted("ana", &all);
    let ana = account_of(&app, "ana").await;

    // The list and the table, paged.
    let (status, list) = ana.get("/account/feeds/").await;
    assert!(list.contains("/account/feeds/m/"), "{status} {list}");
    let (status, page) = ana.get("/account/feeds/m/?ix=100&per=10").await;
    assert_eq!(status, 200);
    assert!(page.contains("Rows 100 to 109 of 25000."), "{page}");
    assert!(page.contains("<td class=\"num\">1050</td>"), "row 105's t");
    assert!(page.contains("<td>69000000</td>"), "row 105's bytes in hex");
    assert!(page.contains("?ix=110&#38;per=10&#38;bytes=hex#rows"), "the next page");
    assert!(page.contains("ix=24990"), "the last page");
    let (_, page) = ana.get("/account/feeds/m/?ix=0&per=10&bytes=base64").await;
    assert!(page.contains("<td>BwAAAA==</td>"), "row 7's bytes in base64");
    assert!(page.contains("<td>&#60;b&#62;&#38;&#34;x</td>"), "markup in a value, escaped");
    assert!(!page.contains("<b>&"), "markup in a value is escaped");
    let (_, page) = ana.get("/account/feeds/m/?go=20000&per=1000").await;
    assert!(page.contains("Rows 20000 to 20999 of 25000."));
    let (_, page) = ana.get("/account/feeds/m/?per=5").await;
    assert!(page.contains("Rows 0 to 9 of 25000."), "at least 10 a page");

    // The chart: at most the points asked for, the spike kept.
    let (status, whole) = chart(&ana, "/account/feeds/m/chart/?y=a&y=b&points=200").await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["downsampled"], true);
    let points = whole["rows"].as_array().unwrap().len();
    assert!(points <= 200 && points > 100, "{points} points");
    for series in whole["series"].as_array().unwrap() {
        assert_eq!(series["values"].as_array().unwrap().len(), points);
    }
    let max = whole["series"][0]["values"].as_array().unwrap().iter().filter_map(Value::as_f64);
    assert_eq!(max.fold(f64::MIN, f64::max), 1e6, "the one-row spike is drawn");
    let (_, capped) = chart(&ana, "/account/feeds/m/chart/?y=a&points=1000000").await;
    assert!(capped["rows"].as_array().unwrap().len() <= 4000, "points are capped");
    // Zoomed in: every row, the values the API gives, against `t`.
    let (_, zoomed) = chart(&ana, "/account/feeds/m/chart/?y=a&x=t&from=12300&to=12400").await;
    assert_eq!(zoomed["downsampled"], false);
    let data: Value =
        api.get(app.proxy("data?feed=m&ix=12300&size=100&col[]=a&col[]=t")).sent_json().await;
    assert_eq!(zoomed["series"][0]["values"], data["a"]);
    let xs: Vec<f64> =
        zoomed["x"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let ts: Vec<f64> = data["t"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(xs, ts);
    for (path, why) in [
        ("/account/feeds/m/chart/?y=raw", "Bytes[4]"),
        ("/account/feeds/m/chart/?y=nope", "No column"),
        ("/account/feeds/m/chart/", "Name 1 to 8"),
        ("/account/feeds/m/chart/?y=a&from=30000", "No rows"),
    ] {
        let (status, body) = chart(&ana, path).await;
        assert_eq!(status, 400, "{path}");
        assert!(body["detail"].as_str().unwrap().contains(why), "{path}: {body}");
    }

    // Downloads: CSV as the API's values, raw as the API's bytes.
    let csv = ana
        .client
        .get(format!("{}/account/feeds/m/download/?col=t&col=a&col=s&from=5&to=12", ana.base))
        .sent()
        .await;
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-disposition"].to_str().unwrap().contains("m-5-12.csv"));
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "index,t,a,s");
    assert_eq!(lines.len(), 8);
    let data: Value =
        api.get(app.proxy("data?feed=m&ix=5&size=7&col[]=t&col[]=a")).sent_json().await;
    for (k, line) in lines[1..].iter().enumerate() {
        let fields: Vec<&str> = line.splitn(4, ',').collect();
        assert_eq!(fields[0].parse::<usize>().unwrap(), 5 + k);
        assert_eq!(fields[1].parse::<i64>().unwrap(), data["t"][k].as_i64().unwrap());
        assert_eq!(fields[2].parse::<f64>().unwrap(), data["a"][k].as_f64().unwrap());
    }
    assert_eq!(lines[3].splitn(4, ',').nth(3), Some("\"<b>&\"\"x\""), "quoted as CSV");
    let raw = ana
        .client
        .get(format!("{}/account/feeds/m/download/?col=t&col=a&from=10&to=20&format=raw", ana.base))
        .sent()
        .await
        .bytes()
        .await
        .unwrap();
    let bytes = api.get(app.proxy("bytes?feed=m&ix=10&size=10&col[]=t&col[]=a")).sent().await;
    assert_eq!(raw, bytes.bytes().await.unwrap(), "the upstream's raw bytes");
    let (status, _) = chart(&ana, &format!("/account/feeds/m/download/?from=0&to={}", ROWS)).await;
    assert_eq!(status, 200, "the whole feed, every column");

    // Each read is in the audit, as ana's.
    let read = |r: &lbasedb_proxy::db::models::Access, rows: &str| {
        r.credential == "admin" && r.rows_read().as_deref() == Some(rows)
    };
    audit_of(&app, "ana", |rows| {
        rows.iter().any(|r| {
            read(r, "12300..12400")
                && r.read_columns.as_deref() == Some("t,a")
                && r.feed.as_deref() == Some("m")
                && r.status == 200
        }) && rows.iter().any(|r| read(r, "100..110"))
            && rows.iter().any(|r| read(r, "5..12") && r.bytes_out > 0)
    })
    .await;
}

#[tokio::test]
async fn the_explorer_keeps_to_the_columns_and_rows_a_grant_names() {
    let app = spawn_app().await;
    fill_feed(&app, "m").await;
    let listed = [("lbasedb.view_feed", "m"), ("lbasedb.view_col", "m")];
    app.user_granted("win", &[listed[0], listed[1], ("lbasedb.view_data", "m[t,a]@0..1000")]);
    let win = account_of(&app, "win").await;
    let (_, page) = win.get("/account/feeds/m/?ix=0&per=10").await;
    assert!(page.contains("Rows 0 to 9 of 25000."), "{page}");
    assert!(page.contains(">t</th>") && page.contains(">a</th>") && !page.contains(">raw</th>"));
    let (_, page) = win.get("/account/feeds/m/?ix=5000&per=10").await;
    assert!(page.contains("id=\"rows-refused\""), "rows past the window: {page}");
    let (status, _) = chart(&win, "/account/feeds/m/chart/?y=a").await;
    assert_eq!(status, 403, "the whole feed is past the window");
    let (status, inside) = chart(&win, "/account/feeds/m/chart/?y=a&from=0&to=1000").await;
    assert_eq!(status, 200, "{inside}");
    let (status, _) = chart(&win, "/account/feeds/m/chart/?y=b&from=0&to=1000").await;
    assert_eq!(status, 400, "a column the grant does not name is not offered");
    let (status, _) = chart(&win, "/account/feeds/m/download/?col=raw&to=10").await;
    assert_eq!(status, 400);
    let (status, _) = chart(&win, "/account/feeds/m/download/?from=900&to=1001").await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_one_feed_user_reaches_no_other_feed_through_the_explorer() {
    let upstream = spawn_app().await;
    fill_feed(&upstream, "mine").await;
    fill_feed(&upstream, "other").await;
    let relay = recording_relay(&upstream.upstream).await;
    let secret = upstream.upstream_secret.clone();
    let app = spawn_app_on(&relay.url, |s| s.lbasedb_secret = Some(secret)).await;
    let mine = [("lbasedb.view_feed", "mine"), ("lbasedb.view_col", "mine")];
    app.user_granted("one", &[mine[0], mine[1], ("lbasedb.view_data", "mine")]);
    let one = account_of(&app, "one").await;
    let (_, list) = one.get("/account/feeds/").await;
    assert!(list.contains("/account/feeds/mine/") && !list.contains("other"), "{list}");
    relay.heads.lock().await.clear();
    for path in [
        "/account/feeds/other/",
        "/account/feeds/other/?ix=0&per=1000",
        "/account/feeds/other/chart/?y=a",
        "/account/feeds/other/chart/?y=a&x=t&from=0&to=10",
        "/account/feeds/other/download/",
        "/account/feeds/other/download/?col=t&format=raw",
    ] {
        let (status, _) = one.get(path).await;
        assert_eq!(status, 403, "{path}");
    }
    // The admin's pages are for staff.
    let admin_page = one.client.get(format!("{}/admin/lbasedb/feed/other/", one.base)).sent().await;
    let to = admin_page.headers()["location"].to_str().unwrap();
    assert!(to.starts_with("/admin/login/"), "{to}");
    // Names that are no feed's, and a feed's name spelled to reach another.
    for path in [
        "/account/feeds/mine&feed=other/chart/?y=a",
        "/account/feeds/mine%26feed%3Dother/download/",
        "/account/feeds/..%2Fother/",
    ] {
        let (status, _) = one.get(path).await;
        assert!(status == 404 || status == 403, "{path}: {status}");
    }
    let (status, _) = one.get("/account/feeds/mine/chart/?y=a&y=a&from=0&to=10").await;
    assert_eq!(status, 200);
    let heads = recorded(&relay).await;
    assert!(heads.iter().all(|head| !head.contains("other")), "forwarded: {heads:?}");
    assert!(heads.iter().any(|head| head.contains("feed=mine")), "{heads:?}");
}

#[tokio::test]
async fn staff_make_rename_and_delete_feeds_through_the_proxys_checks() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    let made = admin.submit("/admin/lbasedb/feed/", &[("name", "made")]).await;
    let page = landing(&admin, made).await;
    assert!(page.contains("The feed “made” was added."), "{page}");
    for (name, datatype, width) in [("x", "Float64", ""), ("tag", "Bytes", "4")] {
        let added = admin
            .post(
                "/admin/lbasedb/feed/made/",
                "/admin/lbasedb/feed/made/columns/add/",
                &[("name", name), ("datatype", datatype), ("width", width)],
            )
            .await;
        assert!(landing(&admin, added).await.contains("was added"), "{name}");
    }
    let cols: Value = app.upstream_client.get(app.direct("col?feed=made")).sent_json().await;
    let mut cols: Vec<String> = cols
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{}:{}", c["name"], c["datatype"]))
        .collect();
    cols.sort();
    assert_eq!(cols, ["\"tag\":\"Bytes[4]\"", "\"x\":\"Float64\""]);
    // Refused by the upstream's and the proxy's rules, said on the page.
    let refused = admin
        .post(
            "/admin/lbasedb/feed/made/",
            "/admin/lbasedb/feed/made/columns/add/",
            &[("name", "x"), ("datatype", "Int64")],
        )
        .await;
    assert!(landing(&admin, refused).await.contains("The column was not added"));
    let wide = admin
        .post(
            "/admin/lbasedb/feed/made/",
            "/admin/lbasedb/feed/made/columns/add/",
            &[("name", "w"), ("datatype", "Bytes"), ("width", "100000000000")],
        )
        .await;
    assert!(landing(&admin, wide).await.contains("MAX_COLUMN_WIDTH"));
    let appended = app
        .upstream_client
        .post(app.direct("data?feed=made"))
        .json(&json!({"x": [1.0, 2.0, 3.0], "tag": ["AAAAAA==", "AAAAAA==", "AAAAAA=="]}))
        .sent()
        .await;
    assert_eq!(appended.status(), 204);
    create_group(&app.pool, "readers", &[], &[("lbasedb.view_data", "made")]);

    // A name the storage would fail on with the feed closed is never sent.
    let refused = admin
        .post("/admin/lbasedb/feed/made/", "/admin/lbasedb/feed/made/rename/", &[("name", "a b")])
        .await;
    assert!(landing(&admin, refused).await.contains("is not a valid name"));
    let api = app.client.patch(app.proxy("feed?name=made")).json(&json!({"name": "1x"})).sent();
    assert_eq!(api.await.status(), 400);
    let feeds: Value = app.upstream_client.get(app.direct("feed")).sent_json().await;
    assert_eq!(feeds, json!([{"name": "made"}]), "still there, still open");
    assert_eq!(app.size_of("made").await, 3);
    let renamed = admin
        .post("/admin/lbasedb/feed/made/", "/admin/lbasedb/feed/made/rename/", &[("name", "kept")])
        .await;
    assert!(landing(&admin, renamed).await.contains("is now “kept”"));
    let id = queries::group_by_name(&mut app.conn(), "readers").unwrap().unwrap().id;
    let (_, grants) = queries::group_links(&mut app.conn(), id).unwrap();
    assert_eq!(grants, vec!["lbasedb.view_data=kept".parse().unwrap()], "the grant follows");

    let (status, confirm) = admin.get("/admin/lbasedb/feed/kept/delete/").await;
    assert_eq!(status, 200);
    assert!(confirm.contains("3 rows go") && confirm.contains("1 grant(s)"), "{confirm}");
    let deleted = admin.submit("/admin/lbasedb/feed/kept/delete/", &[]).await;
    assert!(landing(&admin, deleted).await.contains("The feed “kept” was deleted."));
    let feeds: Value = app.upstream_client.get(app.direct("feed")).sent_json().await;
    assert_eq!(feeds, json!([]));
    let (_, grants) = queries::group_links(&mut app.conn(), id).unwrap();
    assert!(grants.is_empty(), "its grants went with it");

    let (_, history) = admin.get("/admin/lbasedb/feed/kept/history/").await;
    for action in ["rename", "delete", "3 rows"] {
        assert!(history.contains(action), "{action}: {history}");
    }
    let (_, history) = admin.get("/admin/lbasedb/feed/made/history/").await;
    assert!(history.contains("add column") && history.contains("tag (Bytes[4])"), "{history}");
    let (_, index) = admin.get("/admin/").await;
    assert!(index.contains("made") || index.contains("kept"), "recent actions");

    // A staff user who may only view feeds is offered no change, and a
    // change sent anyway is refused before the upstream hears of it.
    app.create_feed("kept2", &[("x", "Int64")]).await;
    create_user(
        &app.pool,
        lbasedb_proxy::auth::users::UserSpec {
            staff: true,
            grants: crate::helpers::grants(&[("lbasedb.view_feed", "kept2")]),
            ..spec("viewer")
        },
    );
    let (viewer, _) = log_in(&app, "viewer", USER_PASSWORD).await;
    let (_, list) = viewer.get("/admin/lbasedb/feed/").await;
    assert!(!list.contains("id=\"add-feed\""));
    let (_, detail) = viewer.get("/admin/lbasedb/feed/kept2/").await;
    assert!(!detail.contains("id=\"add-column\"") && !detail.contains("id=\"delete-feed\""));
    let refused =
        viewer.post("/admin/lbasedb/feed/kept2/", "/admin/lbasedb/feed/kept2/delete/", &[]).await;
    assert!(landing(&viewer, refused).await.contains("The feed was not deleted"));
    let made = viewer.submit("/admin/lbasedb/feed/", &[("name", "sneaky")]).await;
    assert!(landing(&viewer, made).await.contains("The feed was not added"));
    let feeds: Value = app.upstream_client.get(app.direct("feed")).sent_json().await;
    assert_eq!(feeds, json!([{"name": "kept2"}]));
    audit_of(&app, "viewer", |rows| rows.iter().any(|r| r.status == 403 && r.method == "DELETE"))
        .await;
}

/// A page of wide rows reads at most a megabyte, not a thousand rows of a
/// megabyte each, and shows the start of each wide value.
#[tokio::test]
async fn wide_rows_are_shown_fewer_at_a_time_and_cut() {
    let app = spawn_app().await;
    app.create_sized_feed("wide", &[("blob", "Bytes[1000000]"), ("n", "Int32")], 20).await;
    let (status, page) = admin(&app).await.get("/admin/lbasedb/feed/wide/?per=1000").await;
    assert_eq!(status, 200);
    assert!(page.contains("Rows 0 to 0 of 20. Rows this wide are shown 1 at a time."), "{page}");
    let shown = format!("<td>{}… (1000000 bytes)</td>", "00".repeat(64));
    assert_eq!(page.matches(&shown).count(), 1, "a value cut to its first 64 bytes");
    let (_, page) = admin(&app).await.get("/admin/lbasedb/feed/wide/?ix=7").await;
    assert!(page.contains("Rows 7 to 7 of 20."), "paged one row at a time");
}

/// Each chunk of a download is decided for the user as they are then: one
/// deactivated while their download streams gets the rest of it cut, never
/// a short file that looks whole.
#[tokio::test]
async fn a_download_stops_when_its_user_loses_access() {
    use diesel::RunQueryDsl;
    let app = spawn_app().await;
    app.create_sized_feed("long", &[("v", "Float64")], 10_000_000).await;
    let all = [("lbasedb.view_feed", "long"), ("lbasedb.view_col", "long")];
    app.user_granted("dl", &[all[0], all[1], ("lbasedb.view_data", "long")]);
    let dl = account_of(&app, "dl").await;
    let mut response =
        dl.client.get(format!("{}/account/feeds/long/download/", dl.base)).sent().await;
    assert_eq!(response.status(), 200);
    let mut received = 0;
    while received < 1 << 20 {
        received += response.chunk().await.unwrap().expect("more of the CSV").len();
    }
    let statement = "UPDATE auth_user SET is_active = false WHERE username = 'dl'";
    diesel::sql_query(statement).execute(&mut app.conn()).unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let rest = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    // The whole CSV is "index,v\r\n" and ten million "<i>,0.0\r\n" lines.
    assert!(rest.is_err(), "the answer is cut, not ended: {received} bytes received");
    assert!(received < 120_000_000, "{received} bytes");
}

/// The explorer's reads are held to the API's bounds as a whole (though
/// read in chunks), to rows no wider than a chunk, and leave a row in the
/// audit when refused.
#[tokio::test]
async fn explorer_reads_keep_to_the_apis_bounds_and_are_audited_when_refused() {
    let app = spawn_app_with(|s| s.limits.max_read_bytes = 8 << 20).await;
    app.create_sized_feed("n", &[("a", "Float64"), ("b", "Float64")], 600_000).await;
    app.create_sized_feed("w", &[("blob", "Bytes[1000000]")], 3).await;
    app.create_x_feeds(&["hidden"]).await;
    let all = |feed| {
        [("lbasedb.view_feed", feed), ("lbasedb.view_col", feed), ("lbasedb.view_data", feed)]
    };
    let [a, b, c] = all("n");
    let [d, e, f] = all("w");
    app.user_granted("reader", &[a, b, c, d, e, f]);
    let reader = account_of(&app, "reader").await;
    // 600,000 rows of one Float64 column are 4.8 MB; of two, over the
    // 8 MiB one read may ask for.
    let (status, _) = chart(&reader, "/account/feeds/n/chart/?y=a").await;
    assert_eq!(status, 200);
    let (status, body) = chart(&reader, "/account/feeds/n/chart/?y=a&y=b").await;
    assert_eq!(status, 413, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("MAX_READ_BYTES"), "{body}");
    let (status, _) = chart(&reader, "/account/feeds/n/download/?format=raw").await;
    assert_eq!(status, 413);
    // Five times a 1 MB column is a read one API read may make, of rows
    // wider than the explorer reads.
    let wide = "/account/feeds/w/download/?col=blob&col=blob&col=blob&col=blob&col=blob&to=1";
    let (status, body) = chart(&reader, wide).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("through the API"), "{body}");
    // Probing another feed, or a column, leaves its trace.
    let (status, _) = reader.get("/account/feeds/hidden/chart/?y=x").await;
    assert_eq!(status, 403);
    let (status, _) = chart(&reader, "/account/feeds/n/chart/?y=nope").await;
    assert_eq!(status, 400);
    // The hidden column's probe (400), the chart of one column (200).
    audit_of(&app, "reader", |rows| {
        let has = |feed: &str, status: i32| {
            rows.iter().any(|r| r.feed.as_deref() == Some(feed) && r.status == status)
        };
        has("hidden", 403) && has("n", 400) && has("n", 413) && has("n", 200)
    })
    .await;
}
