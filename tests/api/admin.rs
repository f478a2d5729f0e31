//! The admin site over HTTP: login rules, security headers, CSRF, the
//! two-step add, the change form, permissions per page, list search,
//! filters and sorting, delete with confirmation, history.

use lbasedb_proxy::auth::users::UserSpec;

use crate::helpers::{
    ADMIN_PASSWORD, Browser, Sent, USER_PASSWORD, admin, client, create_group, create_user, grants,
    log_in, spawn_app, spec,
};

const STAFF_ONLY: &str = "Please enter the correct username and password for a staff account.";

#[tokio::test]
async fn only_active_staff_may_log_in_and_pages_carry_security_headers() {
    let app = spawn_app().await;
    create_user(&app.pool, spec("plain"));
    let (_, wrong) = log_in(&app, "admin", "not-the-password").await;
    assert_eq!(wrong.status(), 200);
    assert!(wrong.text().await.unwrap().contains(STAFF_ONLY));
    let (_, not_staff) = log_in(&app, "plain", USER_PASSWORD).await;
    assert!(not_staff.text().await.unwrap().contains(STAFF_ONLY));

    let browser = admin(&app).await;
    let response = browser.client.get(format!("{}/admin/", app.address)).sent().await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "same-origin");
    assert_eq!(headers["cache-control"], "no-store");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    let html = response.text().await.unwrap();
    assert!(
        html.contains("Authentication and authorization") && html.contains("/admin/auth/user/")
    );
    assert!(!html.contains("<script"), "usable without JavaScript, no inline script");
}

#[tokio::test]
async fn anonymous_visitors_are_sent_to_the_login_and_next_stays_local() {
    let app = spawn_app().await;
    let anon = client();
    let response = anon.get(format!("{}/admin/auth/user/", app.address)).sent().await;
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "/admin/login/?next=%2Fadmin%2Fauth%2Fuser%2F");

    let browser = Browser { client: client(), base: app.address.clone() };
    for (next, expected) in [
        ("/admin/auth/user/", "/admin/auth/user/"),
        ("https://evil.example/", "/admin/"),
        ("//evil.example/", "/admin/"),
    ] {
        let browser = Browser { client: client(), base: browser.base.clone() };
        let response = browser
            .submit(
                "/admin/login/",
                &[("username", "admin"), ("password", ADMIN_PASSWORD), ("next", next)],
            )
            .await;
        assert_eq!(response.headers()["location"], expected, "next={next}");
    }
}

#[tokio::test]
async fn forms_without_the_csrf_token_are_refused() {
    let app = spawn_app().await;
    let browser = admin(&app).await;
    let response = browser
        .client
        .post(format!("{}/admin/auth/user/add/", app.address))
        .form(&[
            ("username", "mallory"),
            ("password1", "a-long-password-1"),
            ("password2", "a-long-password-1"),
        ])
        .sent()
        .await;
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("CSRF verification failed"));
    let (_, list) = browser.get("/admin/auth/user/?q=mallory").await;
    assert!(list.contains("0 result(s)"));
}

#[tokio::test]
async fn adding_a_user_takes_two_steps_and_bad_input_keeps_what_was_typed() {
    let app = spawn_app().await;
    let browser = admin(&app).await;
    let add = "/admin/auth/user/add/";
    let cases: [(&str, &str, &str, &str); 4] = [
        ("erin", "iloveyou", "iloveyou", "This password is too common."),
        ("erin", "a-long-password-1", "a-long-password-2", "The two password fields didn’t match."),
        (
            "admin",
            "a-long-password-1",
            "a-long-password-1",
            "A user with that username already exists.",
        ),
        ("bad name!", "a-long-password-1", "a-long-password-1", "Enter a valid username."),
    ];
    for (username, p1, p2, error) in cases {
        let response = browser
            .submit(add, &[("username", username), ("password1", p1), ("password2", p2)])
            .await;
        assert_eq!(response.status(), 200, "{username}");
        let html = response.text().await.unwrap();
        assert!(html.contains(error), "{error} missing");
        assert!(html.contains(&format!(r#"value="{username}""#)), "typed username kept");
        assert!(!html.contains(p1), "a password was echoed back");
    }
    let response = browser
        .submit(
            add,
            &[
                ("username", "erin"),
                ("password1", "a-long-password-1"),
                ("password2", "a-long-password-1"),
            ],
        )
        .await;
    assert_eq!(response.status(), 302);
    let change = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(change.starts_with("/admin/auth/user/") && change.ends_with("/change/"));
    let (status, html) = browser.get(&change).await;
    assert_eq!(status, 200);
    assert!(html.contains("was added successfully"));
    assert!(html.contains("argon2id"), "the password shown as its algorithm");
}

#[tokio::test]
async fn the_change_form_saves_groups_grants_and_shows_effective_permissions_and_history() {
    let app = spawn_app().await;
    create_group(&app.pool, "readers", &["lbasedb.view_feed"], &[("lbasedb.view_data", "xy")]);
    let id = create_user(&app.pool, spec("frank"));
    let browser = admin(&app).await;
    let page = format!("/admin/auth/user/{id}/change/");
    let (_, html) = browser.get(&page).await;
    let group_id = option_value(&html, "readers");
    let add_data = option_value(&html, "lbasedb.add_data");

    let fields = [
        ("username", "frank"),
        ("email", "frank@example.com"),
        ("first_name", "Frank"),
        ("last_name", ""),
        ("is_active", "on"),
        ("groups", group_id.as_str()),
        ("grant_perm", add_data.as_str()),
        ("grant_feed", "sensors"),
        ("_action", "_continue"),
    ];
    let response = browser.submit(&page, &fields).await;
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], page.as_str());
    let (_, html) = browser.get(&page).await;
    assert!(html.contains("was changed successfully"));
    assert!(html.contains("lbasedb.view_feed"), "a group's permission is effective");
    assert!(html.contains("xy: lbasedb.view_data"), "a group's grant is effective");
    assert!(html.contains("sensors: lbasedb.add_data"), "the user's own grant is effective");

    let bad = [
        ("username", "frank"),
        ("email", "not-an-email"),
        ("groups", "9999"),
        ("grant_perm", add_data.as_str()),
        ("grant_feed", "bad feed"),
    ];
    let response = browser.submit(&page, &bad).await;
    let html = response.text().await.unwrap();
    assert!(html.contains("Enter a valid email address."));
    assert!(html.contains("9999 is not one of the available choices"));
    assert!(html.contains("is not a valid feed name"));
    assert!(html.contains(r#"value="not-an-email""#), "typed values kept");

    let (_, history) = browser.get(&format!("/admin/auth/user/{id}/history/")).await;
    assert!(history.contains("email: “” → “frank@example.com”"), "{history}");
    assert!(history.contains("feed_grants: “” → “lbasedb.add_data=sensors”"));
    assert!(!history.contains("argon2"), "no password hash in the history");
}

fn option_value(html: &str, label: &str) -> String {
    let end = html.find(&format!(">{label}<")).unwrap_or_else(|| panic!("option {label}"));
    let start = html[..end].rfind("value=\"").unwrap() + 7;
    html[start..end].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn each_page_checks_its_model_permission() {
    let app = spawn_app().await;
    create_user(&app.pool, UserSpec { staff: true, ..spec("viewer") });
    create_user(
        &app.pool,
        UserSpec { staff: true, perms: vec!["auth.view_user".into()], ..spec("reader") },
    );
    let (viewer, _) = log_in(&app, "viewer", USER_PASSWORD).await;
    let (_, index) = viewer.get("/admin/").await;
    assert!(index.contains("You don’t have permission to view or edit anything."));
    assert_eq!(viewer.get("/admin/auth/user/").await.0, 403);

    let (reader, _) = log_in(&app, "reader", USER_PASSWORD).await;
    assert_eq!(reader.get("/admin/auth/user/").await.0, 200);
    assert_eq!(reader.get("/admin/auth/user/add/").await.0, 403);
    assert_eq!(reader.get("/admin/auth/user/1/delete/").await.0, 403);
    assert_eq!(reader.get("/admin/auth/user/9999/change/").await.0, 404);
    let (_, change) = reader.get("/admin/auth/user/1/change/").await;
    assert!(!change.contains("Save and continue editing"), "no save button without change_user");
}

#[tokio::test]
async fn the_user_list_searches_filters_sorts() {
    let app = spawn_app().await;
    create_user(&app.pool, UserSpec { email: "zed@example.com".into(), ..spec("zed") });
    create_user(&app.pool, UserSpec { staff: true, ..spec("amy") });
    create_group(&app.pool, "team", &[], &[]);
    create_user(&app.pool, UserSpec { groups: vec!["team".into()], ..spec("bob") });
    let browser = admin(&app).await;
    let rows = |html: &str| -> Vec<String> {
        html.match_indices("/change/\">")
            .map(|(i, m)| html[i + m.len()..].split('<').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(rows(&browser.get("/admin/auth/user/").await.1), ["admin", "amy", "bob", "zed"]);
    assert_eq!(
        rows(&browser.get("/admin/auth/user/?o=-username").await.1),
        ["zed", "bob", "amy", "admin"]
    );
    assert_eq!(rows(&browser.get("/admin/auth/user/?q=zed%40example").await.1), ["zed"]);
    assert_eq!(rows(&browser.get("/admin/auth/user/?is_staff=1").await.1), ["admin", "amy"]);
    assert_eq!(
        rows(&browser.get("/admin/auth/user/?is_superuser=0&is_staff=0").await.1),
        ["bob", "zed"]
    );
    let (_, html) = browser.get("/admin/auth/user/").await;
    let team = option_href(&html, "team");
    assert_eq!(rows(&browser.get(&format!("/admin/auth/user/{team}")).await.1), ["bob"]);
    assert_eq!(
        rows(&browser.get("/admin/auth/user/?q=%25").await.1),
        Vec::<String>::new(),
        "% is literal"
    );
}

fn option_href(html: &str, label: &str) -> String {
    let end = html.find(&format!("\">{label}</a>")).unwrap();
    let start = html[..end].rfind("href=\"").unwrap() + 6;
    html[start..end].replace("&amp;", "&")
}

#[tokio::test]
async fn deleting_asks_first_and_bulk_delete_too() {
    let app = spawn_app().await;
    let gone = create_user(&app.pool, spec("gone"));
    let a = create_user(&app.pool, spec("bulk_a"));
    let b = create_user(&app.pool, spec("bulk_b"));
    let browser = admin(&app).await;
    let page = format!("/admin/auth/user/{gone}/delete/");
    let (_, confirm) = browser.get(&page).await;
    assert!(confirm.contains("Are you sure?") && confirm.contains("gone"));
    let response = browser.submit(&page, &[]).await;
    assert_eq!(response.headers()["location"], "/admin/auth/user/");
    assert_eq!(browser.get(&format!("/admin/auth/user/{gone}/change/")).await.0, 404);

    let (a, b) = (a.to_string(), b.to_string());
    let list = "/admin/auth/user/";
    let response = browser
        .submit(
            list,
            &[("action", "delete_selected"), ("_selected_action", &a), ("_selected_action", &b)],
        )
        .await;
    let html = response.text().await.unwrap();
    assert!(html.contains("Are you sure?") && html.contains("bulk_a") && html.contains("bulk_b"));
    assert_eq!(
        browser.get(&format!("/admin/auth/user/{a}/change/")).await.0,
        200,
        "nothing deleted before confirming"
    );
    let response = browser
        .submit(
            list,
            &[
                ("action", "delete_selected"),
                ("_selected_action", &a),
                ("_selected_action", &b),
                ("post", "yes"),
            ],
        )
        .await;
    assert_eq!(response.status(), 302);
    let (_, html) = browser.get(list).await;
    assert!(html.contains("Successfully deleted 2 user(s).") && !html.contains("bulk_a"));
}

#[tokio::test]
async fn setting_a_password_or_deactivating_ends_the_users_sessions() {
    let app = spawn_app().await;
    let id = create_user(&app.pool, UserSpec { staff: true, ..spec("gina") });
    let (gina, _) = log_in(&app, "gina", USER_PASSWORD).await;
    assert_eq!(gina.get("/admin/").await.0, 200);
    let browser = admin(&app).await;
    let page = format!("/admin/auth/user/{id}/password/");
    let response = browser
        .submit(&page, &[("password1", "another-long-pass"), ("password2", "another-long-pass")])
        .await;
    assert_eq!(response.status(), 302);
    let response = gina.client.get(format!("{}/admin/", app.address)).sent().await;
    assert_eq!(response.status(), 302, "gina's session ended");

    let (gina, _) = log_in(&app, "gina", "another-long-pass").await;
    assert_eq!(gina.get("/admin/").await.0, 200);
    let change = format!("/admin/auth/user/{id}/change/");
    let response = browser.submit(&change, &[("username", "gina"), ("is_staff", "on")]).await;
    assert_eq!(response.status(), 302);
    let response = gina.client.get(format!("{}/admin/", app.address)).sent().await;
    assert_eq!(response.status(), 302, "deactivation ended gina's session");
}

#[tokio::test]
async fn own_password_change_keeps_this_session_and_ends_the_others() {
    let app = spawn_app().await;
    let browser = admin(&app).await;
    let page = "/admin/password_change/";
    let wrong = browser
        .submit(page, &[("old_password", "nope"), ("new_password1", "x"), ("new_password2", "y")])
        .await;
    let html = wrong.text().await.unwrap();
    assert!(html.contains("Your old password was entered incorrectly"));
    assert!(html.contains("didn’t match"));
    let (other, _) = log_in(&app, "admin", ADMIN_PASSWORD).await;
    assert_eq!(other.get("/admin/").await.0, 200);
    let fields = [
        ("old_password", ADMIN_PASSWORD),
        ("new_password1", "a-brand-new-secret"),
        ("new_password2", "a-brand-new-secret"),
    ];
    let response = browser.submit(page, &fields).await;
    assert_eq!(response.status(), 302);
    let (status, html) = browser.get("/admin/").await;
    assert_eq!(status, 200, "this session stays");
    assert!(html.contains("Your password was changed."));
    let elsewhere = other.client.get(format!("{}/admin/", app.address)).sent().await;
    assert_eq!(elsewhere.status(), 302, "the other session ended");
    let (_, relog) = log_in(&app, "admin", "a-brand-new-secret").await;
    assert_eq!(relog.status(), 302);
}

#[tokio::test]
async fn groups_are_added_with_permissions_and_grants_and_deleting_names_the_members() {
    let app = spawn_app().await;
    app.create_feed("xy", &[("x", "Int64")]).await;
    let browser = admin(&app).await;
    let add = "/admin/auth/group/add/";
    let (_, form) = browser.get(add).await;
    assert!(form.contains(r#"<option value="xy">"#), "the upstream's feeds are offered");
    assert!(form.contains(r#"class="chooser""#) && form.contains("/static/admin/chooser.js"));
    let view_feed = option_value(&form, "lbasedb | Can view feed");
    let view_data = option_value(&form, "lbasedb.view_data");

    let response = browser
        .submit(
            add,
            &[
                ("name", "analysts"),
                ("permissions", &view_feed),
                ("grant_perm", &view_data),
                ("grant_feed", "xy"),
                ("_action", "_continue"),
            ],
        )
        .await;
    assert_eq!(response.status(), 302);
    let change = response.headers()["location"].to_str().unwrap().to_owned();
    let duplicate = browser.submit(add, &[("name", "analysts")]).await;
    assert!(duplicate.text().await.unwrap().contains("Group with this Name already exists."));

    create_user(&app.pool, UserSpec { groups: vec!["analysts".into()], ..spec("hank") });
    let token = crate::helpers::issue_token(&app.pool, "hank", None);
    let hank = crate::helpers::client_with_token(&token);
    assert_eq!(app.get_proxy_as(&hank, "data?feed=xy&ix=0&size=0&col=x").await.status(), 200);

    let (_, list) = browser.get("/admin/auth/group/?q=analy").await;
    assert!(list.contains("analysts") && list.contains("<td>1</td>"), "the member count");
    let delete = change.replace("/change/", "/delete/");
    let (_, confirm) = browser.get(&delete).await;
    assert!(
        confirm.contains("These users lose what the group gave them") && confirm.contains("hank")
    );
    let response = browser.submit(&delete, &[]).await;
    assert_eq!(response.status(), 302);
    let after = app.get_proxy_as(&hank, "data?feed=xy&ix=0&size=0&col=x").await;
    assert_eq!(after.status(), 403, "the group's grant went with it, at once");
}

#[tokio::test]
async fn a_token_made_in_the_admin_is_shown_once_works_and_revokes_at_once() {
    let app = spawn_app().await;
    let id =
        create_user(&app.pool, UserSpec { perms: vec!["lbasedb.view_feed".into()], ..spec("ivy") });
    let browser = admin(&app).await;
    let add = "/admin/authtoken/token/add/";
    let bad = browser
        .submit(add, &[("user", &id.to_string()), ("name", "laptop"), ("expires_in", "soon")])
        .await;
    assert!(bad.text().await.unwrap().contains("Enter a duration"));
    let response = browser
        .submit(add, &[("user", &id.to_string()), ("name", "laptop"), ("expires_in", "30d")])
        .await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    let start = html.find(r#"id="token-secret">"#).unwrap() + r#"id="token-secret">"#.len();
    let secret = html[start..].split('<').next().unwrap().to_owned();
    assert!(secret.starts_with("lbp_"));
    let ivy = crate::helpers::client_with_token(&secret);
    assert_eq!(app.get_proxy_as(&ivy, "feed").await.status(), 200);

    let (_, list) = browser.get("/admin/authtoken/token/?status=active").await;
    assert!(list.contains("laptop") && list.contains(&secret[..12]));
    assert!(!list.contains(&secret), "the secret is never shown again");
    let end = list.find("/revoke/").expect("a revoke button");
    let start = list[..end].rfind('"').unwrap() + 1;
    let revoke_path = format!("{}/revoke/", &list[start..end]);
    let response = browser.post("/admin/authtoken/token/", &revoke_path, &[]).await;
    assert_eq!(response.status(), 302);
    assert_eq!(app.get_proxy_as(&ivy, "feed").await.status(), 401);
    let (_, revoked) = browser.get("/admin/authtoken/token/?status=revoked").await;
    assert!(revoked.contains("laptop"));
}

#[tokio::test]
async fn feeds_show_what_the_admin_user_may_view_with_columns_preview_and_grants() {
    let app = spawn_app().await;
    app.create_feed("xy", &[("x", "Int64"), ("y", "Float64")]).await;
    app.create_feed("secret", &[("x", "Int64")]).await;
    app.upstream_client
        .post(app.direct("data?feed=xy"))
        .json(&serde_json::json!({"x": [7, 8], "y": [0.5, 1.5]}))
        .sent()
        .await;
    create_group(&app.pool, "readers", &[], &[("lbasedb.view_data", "xy")]);
    create_user(
        &app.pool,
        UserSpec { staff: true, grants: grants(&[("lbasedb.view_feed", "xy")]), ..spec("jo") },
    );

    let browser = admin(&app).await;
    let (_, list) = browser.get("/admin/lbasedb/feed/").await;
    assert!(
        list.contains("/admin/lbasedb/feed/xy/") && list.contains("/admin/lbasedb/feed/secret/")
    );
    let (_, detail) = browser.get("/admin/lbasedb/feed/xy/").await;
    assert!(detail.contains("2 rows") && detail.contains("Float64"));
    assert!(detail.contains("<td class=\"num\">7</td><td class=\"num\">0.5</td>"), "{detail}");
    assert!(detail.contains("readers") && detail.contains("jo"), "who holds grants");

    let (jo, _) = log_in(&app, "jo", USER_PASSWORD).await;
    let (_, index) = jo.get("/admin/").await;
    assert!(index.contains("/admin/lbasedb/feed/"));
    let (_, list) = jo.get("/admin/lbasedb/feed/").await;
    assert!(list.contains("/admin/lbasedb/feed/xy/") && !list.contains("secret"));
    let (_, detail) = jo.get("/admin/lbasedb/feed/xy/").await;
    assert!(detail.contains("You may not view this feed’s data."), "no view_data for jo");
    assert_eq!(jo.get("/admin/lbasedb/feed/secret/").await.0, 403);
}

#[tokio::test]
async fn admin_logins_failed_ones_included_are_in_the_history() {
    let app = spawn_app().await;
    let _ = log_in(&app, "admin", "wrong-password").await;
    let browser = admin(&app).await;
    let (_, history) = browser.get("/admin/auth/user/1/history/").await;
    assert!(history.contains("<td>login</td>"), "{history}");
    let mut conn = app.conn();
    let failed = lbasedb_proxy::db::queries::object_history(&mut conn, "auth.user", "").unwrap();
    assert!(failed.iter().any(|e| e.action == "login_failed" && e.object_repr == "admin"));
}

#[tokio::test]
async fn admin_logins_are_throttled_like_the_api() {
    let app = crate::helpers::spawn_app_with(|s| s.login_failure_limit = 2).await;
    for _ in 0..2 {
        let (_, response) = log_in(&app, "admin", "wrong-password").await;
        assert!(response.text().await.unwrap().contains(STAFF_ONLY));
    }
    let (_, response) = log_in(&app, "admin", ADMIN_PASSWORD).await;
    assert_eq!(response.status(), 200, "no login while throttled");
    assert!(response.text().await.unwrap().contains("Too many failed login attempts"));
    let api = app
        .anon
        .post(format!("{}/api/auth/token/", app.address))
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .sent()
        .await;
    assert_eq!(api.status(), 429, "the same count on every login path");
}

#[tokio::test]
async fn the_user_list_pages_by_a_hundred() {
    let app = spawn_app().await;
    for i in 0..104 {
        create_user(&app.pool, spec(&format!("user{i:03}")));
    }
    let browser = admin(&app).await;
    let (_, first) = browser.get("/admin/auth/user/").await;
    assert!(first.contains("105 user(s), page 1 of 2"));
    assert_eq!(first.matches("/change/\">").count(), 100);
    let (_, second) = browser.get("/admin/auth/user/?p=1").await;
    assert!(second.contains("page 2 of 2"));
    assert_eq!(second.matches("/change/\">").count(), 5);
    assert!(second.contains(">user103<"));
}

/// A codename checked in code that no `auth_permission` row has could be
/// given to no one; a row no code checks would be a permission that does
/// nothing. `migrate` makes exactly the permissions the code knows (on
/// each engine: the suite runs on PostgreSQL too).
#[tokio::test]
async fn the_permissions_in_code_are_the_rows_migrate_makes() {
    let app = spawn_app().await;
    let rows = lbasedb_proxy::db::run(&app.pool, lbasedb_proxy::db::queries::all_permissions)
        .await
        .unwrap();
    let mut in_database: Vec<String> = rows.iter().map(|p| p.full_codename()).collect();
    let mut in_code: Vec<String> =
        lbasedb_proxy::auth::perms::all_codenames().into_iter().map(String::from).collect();
    in_database.sort();
    in_code.sort();
    assert_eq!(in_code.len(), 25);
    assert_eq!(in_database, in_code);
}
