//! Moving in from the Django proxy: `importdjango` on a database that Django
//! 5.2 and REST framework 3.16 made (`tests/fixtures/make_django_db.py`).
//! Every kind of user logs in or is refused as in Django, hashes are
//! upgraded at login, DRF keys work, groups and permissions come along, a
//! second run changes nothing, and a file that is not Django's changes
//! nothing either.

use std::path::{Path, PathBuf};
use std::process::Output;

use diesel::prelude::*;
use lbasedb_proxy::db::{Pool, django, queries, schema};
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_PASSWORD, Sent, TestApp, admin, client, client_with_token, create_user,
    postgres_database, postgres_server, spawn_app, spec,
};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/django.sqlite3")
}

fn import(app: &TestApp, source: &Path, extra: &[&str]) -> Output {
    app.command().arg("importdjango").arg(source).args(extra).output().expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `POST /api/auth/token/` with a password: the status.
async fn token_status(app: &TestApp, username: &str, password: &str) -> u16 {
    app.obtain_token(json!({"username": username, "password": password})).await.status().as_u16()
}

fn password_of(pool: &Pool, username: &str) -> String {
    queries::user_by_username(&mut pool.get().unwrap(), username)
        .unwrap()
        .expect("imported")
        .password
}

/// Rows in our tables, to see that a run changed nothing.
fn counts(pool: &Pool) -> [i64; 5] {
    let mut conn = pool.get().unwrap();
    [
        schema::auth_user::table.count().get_result(&mut conn).unwrap(),
        schema::auth_group::table.count().get_result(&mut conn).unwrap(),
        schema::auth_user_groups::table.count().get_result(&mut conn).unwrap(),
        schema::auth_group_permissions::table.count().get_result(&mut conn).unwrap(),
        schema::authtoken_token::table.count().get_result(&mut conn).unwrap(),
    ]
}

#[tokio::test]
async fn every_kind_of_django_user_logs_in_or_is_refused_as_in_django() {
    let app = spawn_app().await;
    let report = stdout(&import(&app, &fixture(), &[]));
    assert!(report.contains("users: 9 (9 created"), "{report}");
    assert!(report.contains("groups: 2 (2 created"), "{report}");
    assert!(report.contains("memberships: 3"), "{report}");
    assert!(report.contains("admin.view_logentry, contenttypes.view_contenttype"), "{report}");
    assert!(report.contains("tokens: 1 added"), "{report}");
    assert!(report.contains("mallory: md5 hashes are not accepted"), "{report}");

    let cases = [
        ("root", "pbkdf2_sha256", 200),
        ("alice", "pbkdf2_sha256", 200),
        ("bob", "pbkdf2_sha1", 200),
        ("carol", "argon2", 200),
        ("dave", "bcrypt_sha256", 200),
        ("erin", "pbkdf2_sha256", 400), // inactive
        ("frank", "!", 400),            // unusable
        ("mallory", "md5", 400),        // not accepted
    ];
    for (user, algorithm, expected) in cases {
        assert!(password_of(&app.pool, user).starts_with(algorithm), "{user}");
        let password = format!("{user}-password-1");
        assert_eq!(token_status(&app, user, &password).await, expected, "{user}");
        assert_eq!(token_status(&app, user, "wrong-password").await, 400, "{user}");
    }
}

#[tokio::test]
async fn a_django_hash_is_upgraded_at_login_and_the_password_still_works() {
    let app = spawn_app().await;
    stdout(&import(&app, &fixture(), &[]));
    let before = password_of(&app.pool, "bob");
    assert!(before.starts_with("pbkdf2_sha1$"));
    // The admin shows the algorithm, as Django's does.
    let admin = admin(&app).await;
    let id = queries::user_by_username(&mut app.conn(), "bob").unwrap().unwrap().id;
    let (_, page) = admin.get(&format!("/admin/auth/user/{id}/change/")).await;
    assert!(page.contains("algorithm: pbkdf2_sha1 iterations: 1000000"), "{page}");

    assert_eq!(token_status(&app, "bob", "bob-password-1").await, 200);
    let after = password_of(&app.pool, "bob");
    assert!(after.starts_with("$argon2id$"), "{after}");
    assert_eq!(token_status(&app, "bob", "bob-password-1").await, 200);
    assert_eq!(password_of(&app.pool, "bob"), after, "upgraded once");
    let (_, page) = admin.get(&format!("/admin/auth/user/{id}/change/")).await;
    assert!(page.contains("algorithm: argon2id"), "{page}");
}

#[tokio::test]
async fn drf_tokens_keep_working_with_their_groups_and_permissions() {
    let app = spawn_app().await;
    stdout(&import(&app, &fixture(), &[]));
    let source = django::read_sqlite(&fixture()).unwrap();
    let key = &source.tokens.as_ref().unwrap()[0].key;
    assert_eq!(key.len(), 40);
    let carol = client_with_token(key);
    let me: Value = carol.get(format!("{}/api/auth/me/", app.address)).sent_json().await;
    assert_eq!(me["username"], "carol");
    assert_eq!(me["groups"], json!(["readers", "writers"]));
    for perm in [
        "lbasedb.view_feed",
        "lbasedb.view_data",
        "lbasedb.view_col",
        "lbasedb.add_data",
        "lbasedb.change_data",
    ] {
        assert!(me["permissions"].as_array().unwrap().contains(&json!(perm)), "{perm}: {me}");
    }
    // The key itself is not stored; the admin knows it by a prefix.
    let token: (String, String) = schema::authtoken_token::table
        .select((schema::authtoken_token::prefix, schema::authtoken_token::name))
        .filter(schema::authtoken_token::prefix.like("drf_%"))
        .first(&mut app.conn())
        .unwrap();
    assert_eq!(token, (format!("drf_{}", &key[..8]), "imported from Django".into()));
    // sam: staff with Django's own permissions on users.
    let sam = queries::user_by_username(&mut app.conn(), "sam").unwrap().unwrap();
    let held = queries::holdings(&mut app.conn(), sam.id).unwrap();
    assert!(sam.is_staff && !sam.is_superuser);
    let mut perms = held.perms;
    perms.sort();
    assert_eq!(perms, ["auth.change_user", "auth.view_user"]);
}

/// Two keys that begin alike are two tokens: the second gets a prefix of
/// its own, and both keys keep working.
#[tokio::test]
async fn drf_keys_that_begin_alike_are_both_imported() {
    let app = spawn_app().await;
    let source = app.data.path().join("django.sqlite3");
    std::fs::copy(fixture(), &source).unwrap();
    // A second user's key beginning as carol's (as a hand-edited or an
    // unlucky database has it).
    let made = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; c = sqlite3.connect({:?}); \
             (k, u) = c.execute('SELECT key, user_id FROM authtoken_token').fetchone(); \
             o = c.execute(\"SELECT id FROM auth_user WHERE username = 'bob'\").fetchone()[0]; \
             c.execute('DELETE FROM authtoken_token WHERE user_id = ?', (o,)); \
             c.execute('INSERT INTO authtoken_token (key, created, user_id) VALUES (?, ?, ?)', \
                       (k[:8] + 'f' * 32, '2024-01-01 00:00:00', o)); c.commit()",
            source.display().to_string()
        ))
        .status()
        .unwrap();
    assert!(made.success());
    let report = stdout(&import(&app, &source, &[]));
    assert!(report.contains("tokens: 2 added, 0 known already"), "{report}");
    let read = django::read_sqlite(&source).unwrap();
    let tokens = read.tokens.as_ref().unwrap();
    assert_eq!(tokens.len(), 2);
    let mut owners = Vec::new();
    for drf in tokens {
        let me: Value = client_with_token(&drf.key)
            .get(format!("{}/api/auth/me/", app.address))
            .sent_json()
            .await;
        let owner = read.users.iter().find(|u| u.id == drf.user_id).unwrap();
        assert_eq!(me["username"], owner.username.as_str(), "{}", drf.key);
        owners.push(owner.username.clone());
    }
    owners.sort();
    assert_eq!(owners, ["bob", "carol"]);
    let mut prefixes: Vec<String> = schema::authtoken_token::table
        .select(schema::authtoken_token::prefix)
        .filter(schema::authtoken_token::prefix.like("drf_%"))
        .load(&mut app.conn())
        .unwrap();
    prefixes.sort();
    let base = format!("drf_{}", &tokens[0].key[..8]);
    assert_eq!(prefixes, [base.clone(), format!("{base}-2")]);
    let again = stdout(&import(&app, &source, &[]));
    assert!(again.contains("tokens: 0 added, 2 known already"), "{again}");
}

#[tokio::test]
async fn a_second_import_changes_nothing_and_clashes_are_kept_unless_replaced() {
    let app = spawn_app().await;
    create_user(&app.pool, spec("alice"));
    let ours = password_of(&app.pool, "alice");
    let report = stdout(&import(&app, &fixture(), &[]));
    assert!(report.contains("8 created, 0 replaced, 0 unchanged, 1 clashing"), "{report}");
    assert!(report.contains("clash: alice"), "{report}");
    assert_eq!(password_of(&app.pool, "alice"), ours, "kept");

    let before = counts(&app.pool);
    let again = stdout(&import(&app, &fixture(), &[]));
    assert!(again.contains("0 created, 0 replaced, 8 unchanged, 1 clashing"), "{again}");
    assert!(again.contains("tokens: 0 added, 1 known already"), "{again}");
    assert_eq!(counts(&app.pool), before, "nothing changed");

    let replaced = stdout(&import(&app, &fixture(), &["--replace"]));
    assert!(replaced.contains("1 replaced"), "{replaced}");
    let replaced_hash = password_of(&app.pool, "alice");
    assert!(replaced_hash.starts_with("pbkdf2_sha256$"), "{replaced_hash} {replaced}");
    assert_eq!(token_status(&app, "alice", "alice-password-1").await, 200);
}

#[tokio::test]
async fn a_file_that_is_not_a_django_database_changes_nothing() {
    let app = spawn_app().await;
    let before = counts(&app.pool);
    let empty = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(empty.path(), b"not a database at all").unwrap();
    // A SQLite database, but not Django's (made by Python's sqlite3).
    let ours = app.data.path().join("other.sqlite3");
    let made = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; c = sqlite3.connect({:?}); c.execute('CREATE TABLE t (x)'); c.commit()",
            ours.display().to_string()
        ))
        .status()
        .unwrap();
    assert!(made.success());
    for (source, says) in [
        (empty.path().to_owned(), "not an SQLite database"),
        (ours, "not a Django database"),
        (PathBuf::from("/nonexistent/db.sqlite3"), "no such file"),
        (PathBuf::from("mysql://u:secret@db/django"), "give the path"),
    ] {
        let output = import(&app, &source, &[]);
        assert!(!output.status.success(), "{source:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{source:?}: {stderr}");
        assert!(!stderr.contains("secret") && !stderr.contains("panicked"), "{stderr}");
    }
    assert_eq!(counts(&app.pool), before);
    // And a login still works as before.
    assert_eq!(token_status(&app, "admin", ADMIN_PASSWORD).await, 200);
    assert!(client().get(&app.address).send().await.is_ok());
}

#[tokio::test]
async fn a_django_database_on_postgresql_imports_the_same() {
    let Some(server) = postgres_server("a_django_database_on_postgresql_imports_the_same") else {
        return;
    };
    let source = postgres_database(&server, "django");
    let dump = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/django.postgres.dump");
    let restored = std::process::Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "--dbname", &source])
        .arg(dump)
        .output()
        .expect("pg_restore runs");
    assert!(restored.status.success(), "{}", String::from_utf8_lossy(&restored.stderr));
    let app = spawn_app().await;
    let report = stdout(&import(&app, Path::new(&source), &[]));
    assert!(report.contains("users: 9 (9 created"), "{report}");
    assert!(report.contains("groups: 2 (2 created"), "{report}");
    assert!(report.contains("tokens: 1 added"), "{report}");
    for (user, expected) in [("carol", 200), ("dave", 200), ("erin", 400), ("frank", 400)] {
        let password = format!("{user}-password-1");
        assert_eq!(token_status(&app, user, &password).await, expected, "{user}");
    }
    // carol and dave logged in: their hashes are ours now, so a second run
    // keeps them as clashes rather than put Django's back.
    let again = stdout(&import(&app, Path::new(&source), &[]));
    assert!(again.contains("0 created, 0 replaced, 7 unchanged, 2 clashing"), "{again}");
    // A server that is no Django database: a clear error, no credentials.
    let output = import(&app, Path::new(&server), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("not a Django database"), "{stderr}");
}
