//! The management commands, end to end: each runs the real binary on the
//! data folder of a running application, whose proxy then honours what the
//! command made.

use std::process::Command;

use lbasedb_proxy::auth::users::UserSpec;
use serde_json::{Value, json};

use crate::auth::arrange_two_feeds;
use lbasedb_proxy::db::queries;

use crate::helpers::{
    TestApp, client_with_token, create_group, create_user, grants, issue_token, spawn_app,
    spawn_app_with, spec,
};

/// Runs a management command on the data folder `dir`, with `env` and no
/// password variables or `DATABASE_URL` inherited from the test's own.
fn manage_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lbasedb-proxy"));
    command
        .args(args)
        .env("DATA_DIR", dir)
        .env_remove("DATABASE_URL")
        .env_remove("LBASEDB_PROXY_PASSWORD")
        .env_remove("LBASEDB_PROXY_SUPERUSER_PASSWORD")
        .envs(env.iter().copied());
    command.output().expect("the binary runs")
}

fn manage(app: &TestApp, args: &[&str], password: Option<&str>) -> std::process::Output {
    let env: Vec<(&str, &str)> =
        password.map(|p| ("LBASEDB_PROXY_PASSWORD", p)).into_iter().collect();
    manage_with(app, args, &env)
}

/// A management command on the app's own data folder and database.
fn manage_with(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    app.command().args(args).envs(env.iter().copied()).output().expect("the binary runs")
}

#[tokio::test]
async fn management_commands_provision_access_that_the_proxy_honours() {
    let app = spawn_app().await;
    arrange_two_feeds(&app).await;

    let group = manage(&app, &["creategroup", "readers", "--grant", "lbasedb.view_data=a"], None);
    assert!(group.status.success(), "{}", String::from_utf8_lossy(&group.stderr));
    let user =
        manage(&app, &["createuser", "dave", "--group", "readers"], Some("a-long-dave-password"));
    assert!(user.status.success(), "{}", String::from_utf8_lossy(&user.stderr));
    let token =
        manage(&app, &["createtoken", "dave", "--name", "script", "--expires-in", "1h"], None);
    assert!(token.status.success());
    let stdout = String::from_utf8(token.stdout).unwrap();
    let secret = stdout.lines().last().unwrap().trim();
    assert!(secret.starts_with("lbp_"));

    let dave = client_with_token(secret);
    assert_eq!(app.get_proxy_as(&dave, "data?feed=a&ix=0&size=1&col=x").await.status(), 200);
    assert_eq!(app.get_proxy_as(&dave, "data?feed=b&ix=0&size=1&col=x").await.status(), 403);

    let failures: [(&[&str], Option<&str>); 6] = [
        (&["createuser", "dave"], Some("a-long-dave-password")),
        (&["createuser", "erin", "--group", "nope"], Some("a-long-erin-password")),
        (&["createuser", "erin", "--perm", "lbasedb.fly"], Some("a-long-erin-password")),
        (&["createuser", "erin"], Some("password")),
        (&["createtoken", "nobody"], None),
        (&["revoketoken", "lbp_nothing"], None),
    ];
    for (args, password) in failures {
        let output = manage(&app, args, password);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(!output.stderr.is_empty(), "{args:?} said nothing");
    }
    let migrate = manage(&app, &["migrate"], None);
    assert!(migrate.status.success());
    assert_eq!(String::from_utf8_lossy(&migrate.stdout).trim(), "No migrations to apply.");
}

#[tokio::test]
async fn migrate_creates_an_empty_database_and_first_run_makes_a_superuser() {
    let dir = tempfile::tempdir().unwrap();
    let output = manage_in(dir.path(), &["migrate"], &[]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("Applied"));
    assert!(dir.path().join("db.sqlite3").exists());

    let app = spawn_app().await;
    let admin = queries::user_by_username(&mut app.conn(), "admin").unwrap().unwrap();
    assert!(admin.is_superuser && admin.is_staff && admin.is_active);
    assert!(admin.password.starts_with("$argon2id$"));
}

/// frank (an email, a group with a feed grant, a permission, a grant of
/// his own) and a token of his, then `dumpdata` into `dump.json`: the
/// token, the command's output and the file.
fn arrange_and_dump(app: &TestApp) -> (String, std::process::Output, std::path::PathBuf) {
    create_group(&app.pool, "readers", &["lbasedb.view_feed"], &[("lbasedb.view_data", "a")]);
    create_user(
        &app.pool,
        UserSpec {
            email: "f@example.com".into(),
            groups: vec!["readers".into()],
            perms: vec!["lbasedb.add_feed".into()],
            grants: grants(&[("lbasedb.change_data", "b")]),
            ..spec("frank")
        },
    );
    let token = issue_token(&app.pool, "frank", None);
    let dumped = manage(app, &["dumpdata"], None);
    assert!(dumped.status.success());
    let file = app.data.path().join("dump.json");
    std::fs::write(&file, &dumped.stdout).unwrap();
    (token, dumped, file)
}

#[tokio::test]
async fn dumpdata_and_loaddata_move_everything_to_another_database() {
    let app = spawn_app().await;
    let (token, dumped, file) = arrange_and_dump(&app);
    let dump: Value = serde_json::from_slice(&dumped.stdout).unwrap();
    assert!(!String::from_utf8_lossy(&dumped.stdout).contains(&token), "no token secret in a dump");

    let other = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| manage_in(other.path(), args, &[]);
    for _ in 0..2 {
        let loaded = run(&["loaddata", file.to_str().unwrap()]);
        assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
    }
    let again: Value = serde_json::from_slice(&run(&["dumpdata"]).stdout).unwrap();
    assert_eq!(again, dump, "the same data, loaded twice, dumps the same");
    assert_eq!(dump["users"][1]["username"], "frank");
    assert_eq!(
        dump["users"][1]["feed_grants"],
        json!([{"permission": "lbasedb.change_data", "feed": "b"}])
    );

    // A token carried over still authenticates against the new database.
    let moved = spawn_app_with(|s| {
        s.db.database_url = Some(other.path().join("db.sqlite3").to_string_lossy().into_owned())
    })
    .await;
    let me = crate::helpers::get_json(
        &client_with_token(&token),
        &format!("{}/api/auth/me/", moved.address),
    )
    .await;
    assert_eq!(me["username"], "frank");
    assert_eq!(me["groups"], json!(["readers"]));
    assert_eq!(me["permissions"], json!(["lbasedb.add_feed", "lbasedb.view_feed"]));
    assert_eq!(
        me["feed_grants"],
        json!({"a": ["lbasedb.view_data"], "b": ["lbasedb.change_data"]})
    );

    let broken = std::fs::write(app.data.path().join("bad.json"), "{}");
    broken.unwrap();
    let refused = run(&["loaddata", app.data.path().join("bad.json").to_str().unwrap()]);
    assert!(!refused.status.success());
}

/// A user as a dump has it.
fn dumped_user(name: &str, superuser: bool, grants: Value) -> Value {
    json!({
        "username": name, "password": "!", "email": "", "first_name": "", "last_name": "",
        "is_active": true, "is_staff": superuser, "is_superuser": superuser,
        "date_joined": "2026-01-01T00:00:00", "last_login": null,
        "groups": [], "permissions": [], "feed_grants": grants,
    })
}

/// Loads `dump` into a new database in `dir`, which must be refused
/// with nothing written; answers what it said.
fn refused_load(dir: &std::path::Path, dump: &Value) -> String {
    let file = dir.join("dump.json");
    std::fs::write(&file, dump.to_string()).unwrap();
    let refused = manage_in(dir, &["loaddata", file.to_str().unwrap()], &[]);
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(!refused.status.success(), "{said}");
    let dumped = manage_in(dir, &["dumpdata"], &[]);
    let after: Value = serde_json::from_slice(&dumped.stdout).unwrap();
    assert_eq!((after["users"].clone(), after["groups"].clone()), (json!([]), json!([])));
    said
}

/// A dump is input like a form: a user's name and a grant's feed are
/// checked by the admin's rules, every refusal is reported, and nothing of
/// the dump is written, not even its good rows.
#[test]
fn loaddata_refuses_a_bad_username_and_a_grant_on_a_bad_feed_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let user = |name: &str, feed: &str| {
        dumped_user(name, false, json!([{"permission": "lbasedb.view_data", "feed": feed}]))
    };
    let dump = json!({
        "version": 1,
        "groups": [{"name": "fine", "permissions": [], "feed_grants": []}],
        "users": [user("bad name!", "sensors"), user("carol", "a/b"), user("dave", "sensors")],
        "tokens": [],
    });
    let said = refused_load(dir.path(), &dump);
    assert!(said.contains("2 row(s)"), "both bad rows are counted: {said}");
    assert!(
        said.contains(r#"user "bad name!""#) && said.contains("Enter a valid username"),
        "{said}"
    );
    assert!(said.contains(r#"user "carol""#) && said.contains(r#""a/b" is not a valid feed name"#));
    assert!(!said.contains("dave"), "a good row is not reported: {said}");
}

/// A name twice would load as its last row: the first row, which a reader
/// of the dump sees, would hide a superuser behind it.
#[test]
fn loaddata_refuses_a_name_that_appears_twice_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let group = json!({"name": "g", "permissions": [], "feed_grants": []});
    let dump = json!({
        "version": 1,
        "groups": [group.clone(), group],
        "users": [dumped_user("bob", false, json!([])), dumped_user("bob", true, json!([]))],
        "tokens": [],
    });
    let said = refused_load(dir.path(), &dump);
    assert!(said.contains(r#"user "bob": appears more than once"#), "{said}");
    assert!(said.contains(r#"group "g": appears more than once"#), "{said}");
}

#[tokio::test]
async fn createsuperuser_without_input_reads_the_environment() {
    let app = spawn_app().await;
    let args =
        ["createsuperuser", "--noinput", "--username", "root", "--email", "root@example.com"];
    let password = "LBASEDB_PROXY_SUPERUSER_PASSWORD";
    let weak = manage_with(&app, &args, &[(password, "12345678")]);
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("too common"));
    let made = manage_with(&app, &args, &[(password, "a-strong-root-password")]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let token =
        app.obtain_token(json!({"username": "root", "password": "a-strong-root-password"})).await;
    assert_eq!(token.status(), 200);
}

#[tokio::test]
async fn dumpdata_from_sqlite_and_loaddata_into_postgresql_moves_an_installation() {
    let test = "dumpdata_from_sqlite_and_loaddata_into_postgresql_moves_an_installation";
    let Some(server) = crate::helpers::postgres_server(test) else {
        return;
    };
    let app = spawn_app_with(|s| {
        s.db.database_url = Some(s.db.data_dir.join("db.sqlite3").to_string_lossy().into());
    })
    .await;
    assert!(!app.database_url.starts_with("postgres"));
    let (token, dumped, file) = arrange_and_dump(&app);

    let postgres = crate::helpers::postgres_database(&server, "moved");
    let other = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| manage_in(other.path(), args, &[("DATABASE_URL", &postgres)]);
    let loaded = run(&["loaddata", file.to_str().unwrap()]);
    assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
    let dump: Value = serde_json::from_slice(&dumped.stdout).unwrap();
    let again: Value = serde_json::from_slice(&run(&["dumpdata"]).stdout).unwrap();
    assert_eq!(again, dump, "PostgreSQL holds what SQLite held");

    // A server on PostgreSQL: the token and the password carried over work.
    let moved = spawn_app_with(|s| s.db.database_url = Some(postgres.clone())).await;
    let me = crate::helpers::get_json(
        &client_with_token(&token),
        &format!("{}/api/auth/me/", moved.address),
    )
    .await;
    assert_eq!(me["username"], "frank");
    assert_eq!(
        me["feed_grants"],
        json!({"a": ["lbasedb.view_data"], "b": ["lbasedb.change_data"]})
    );
    let login = moved
        .obtain_token(json!({"username": "frank", "password": crate::helpers::USER_PASSWORD}))
        .await;
    assert_eq!(login.status(), 200);
}

#[tokio::test]
async fn a_database_ahead_of_the_binary_or_behind_without_migrating_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let database = crate::helpers::test_database_url(dir.path());
    // A `serve` that wrongly started is killed after a while (and fails
    // the test) rather than left running.
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lbasedb-proxy"))
            .args(args)
            .env("DATA_DIR", dir.path())
            .env("DATABASE_URL", &database)
            .env_remove("LBASEDB_PROXY_PASSWORD")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > std::time::Duration::from_secs(30) {
                child.kill().unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    };
    // Behind (here: empty), with migrating at start-up turned off.
    let serve = run(&["serve", "--bind", "127.0.0.1:0"], &[("MIGRATE_ON_START", "false")]);
    assert!(!serve.status.success());
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(stderr.contains("behind") && stderr.contains("lbasedb-proxy migrate"), "{stderr}");
    assert!(run(&["migrate"], &[]).status.success());

    // Ahead: a migration some newer version applied.
    let pool = lbasedb_proxy::db::connect(&database).unwrap();
    {
        use diesel::RunQueryDsl;
        diesel::sql_query(
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000000')",
        )
        .execute(&mut pool.get().unwrap())
        .unwrap();
    }
    for (args, env) in [
        (&["migrate"][..], &[][..]),
        (&["serve", "--bind", "127.0.0.1:0"][..], &[][..]),
        (&["serve", "--bind", "127.0.0.1:0"][..], &[("MIGRATE_ON_START", "false")][..]),
    ] {
        let refused = run(args, env);
        assert!(!refused.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("ahead") && stderr.contains("29991231000000"),
            "{args:?}: {stderr}"
        );
    }
}
