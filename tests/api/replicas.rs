//! Several `serve` replicas on one PostgreSQL database and one upstream:
//! what one replica (or anything else writing the database) changes about
//! access, every other enforces within a second; sessions and tokens made on
//! one work on all; throttling counts across them; and writers spread over
//! them lose no acknowledged append (the feed lock is PostgreSQL's).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lbasedb_proxy::db::{self, queries};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_PASSWORD, Browser, Sent, client, client_with_token, get_json, log_in_at,
    postgres_test_database, psql, status_of,
};
use crate::safety::{UpstreamProcess, append_concurrently, free_port, losses, stored_values};

const BIN: &str = env!("CARGO_BIN_EXE_lbasedb-proxy");
const SECRET_KEY: &str = "one-secret-key-shared-by-every-replica-0123456789";
/// The bound the issue sets; the poll interval is 250 ms by default.
const WITHIN: Duration = Duration::from_secs(1);

struct Replica {
    child: Child,
    base: String,
    _data: tempfile::TempDir,
}

impl Replica {
    fn start(database: &str, upstream: &UpstreamProcess) -> Self {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(BIN)
            .arg("serve")
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("DATA_DIR", data.path())
            .env("DATABASE_URL", database)
            .env("LBASEDB_URL", upstream.url())
            .env("LBASEDB_SECRET", &upstream.secret)
            .env("SECRET_KEY", SECRET_KEY)
            .env("LBASEDB_PROXY_SUPERUSER_PASSWORD", ADMIN_PASSWORD)
            .env("LOGIN_FAILURE_LIMIT", "4")
            .env("WORKERS", "2")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self { child, base: format!("http://127.0.0.1:{port}"), _data: data }
    }

    async fn wait_ready(&self) {
        for _ in 0..400 {
            if reqwest::get(format!("{}/readyz", self.base)).await.is_ok_and(|r| r.status() == 200)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("replica {} did not start", self.base);
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long until `condition` holds, polled every 20 ms; fails the test
/// unless it is within the bound.
async fn within_bound<F, Fut>(what: &str, condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < WITHIN, "{what}: not after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn token(base: &str, username: &str, password: &str) -> String {
    let answer = client()
        .post(format!("{base}/api/auth/token/"))
        .json(&json!({"username": username, "password": password}))
        .sent()
        .await;
    assert_eq!(answer.status(), 200, "a token from {base}");
    let body: Value = answer.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

fn createuser(database: &str, args: &[&str], password: &str) {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .arg("createuser")
        .args(args)
        .env("DATA_DIR", data.path())
        .env("DATABASE_URL", database)
        .env("LBASEDB_PROXY_PASSWORD", password)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

async fn admin_on(replica: &Replica) -> Browser {
    let (browser, response) = log_in_at(&replica.base, "admin", ADMIN_PASSWORD).await;
    assert_eq!(response.status(), 302);
    browser
}

/// Two replicas on a database of their own (`None` without PostgreSQL) and
/// one upstream started with `upstream_args`, its data folder with it.
struct Pair {
    database: String,
    a: Replica,
    b: Replica,
    upstream: UpstreamProcess,
    upstream_data: tempfile::TempDir,
}

async fn two_replicas(test: &str, name: &str, upstream_args: &[&str]) -> Option<Pair> {
    let database = postgres_test_database(test, name)?;
    let upstream_data = tempfile::tempdir().unwrap();
    let upstream =
        UpstreamProcess::start_with(upstream_data.path(), free_port(), upstream_args).await;
    // Started together on an empty database: one migrates and makes the
    // first superuser, the other waits its turn and finds them done.
    let a = Replica::start(&database, &upstream);
    let b = Replica::start(&database, &upstream);
    a.wait_ready().await;
    b.wait_ready().await;
    Some(Pair { database, a, b, upstream, upstream_data })
}

#[tokio::test]
async fn two_replicas_on_one_postgresql_share_access_throttling_and_feed_locks() {
    // Unlocked, as the real Lbasedb server is: its concurrent appends
    // overwrite each other unless the replicas take turns.
    let Some(pair) = two_replicas(
        "two_replicas_on_one_postgresql_share_access_throttling_and_feed_locks",
        "replicas",
        &["--unlocked"],
    )
    .await
    else {
        return;
    };
    let Pair { database, a, b, upstream, upstream_data } = &pair;
    let database = database.as_str();
    let pool = db::connect(database).unwrap();
    let user_id = |name: &str| {
        queries::user_by_username(&mut pool.get().unwrap(), name)
            .unwrap()
            .expect("the user exists")
            .id
    };

    // A token made on A works on B.
    createuser(database, &["ivy", "--perm", "lbasedb.view_feed"], "ivy-long-password");
    let ivy = client_with_token(&token(&a.base, "ivy", "ivy-long-password").await);
    assert_eq!(status_of(&ivy, &b.url("/api/proxy/feed")).await, 200);

    // A session made on A works on B (one SECRET_KEY, sessions in the
    // database), and so does a CSRF-checked write.
    let admin_a = admin_on(a).await;
    let admin_b = Browser { client: admin_a.client.clone(), base: b.base.clone() };
    assert_eq!(admin_b.get("/admin/").await.0, 200, "A's session on B");
    let csrf = get_json(&admin_b.client, &b.url("/api/auth/csrf/")).await;
    let made = admin_b
        .client
        .post(b.url("/api/proxy/feed"))
        .header("x-csrftoken", csrf["csrfToken"].as_str().unwrap())
        .json(&json!({"name": "w"}))
        .sent()
        .await;
    assert_eq!(made.status(), 201, "{}", made.text().await.unwrap());

    // A session's state changed on A and nothing else (a message to show
    // next): B, which has the session cached, reads it again in time.
    assert_eq!(admin_b.get("/admin/").await.0, 200);
    let bulk = "/admin/auth/user/";
    let nothing = admin_a.submit(bulk, &[("action", "")]).await;
    assert_eq!(nothing.status(), 302);
    within_bound("A's message on B", || async {
        admin_b.get("/admin/").await.1.contains("No action selected.")
    })
    .await;

    // Revoked on A (B has it cached): refused on B within the bound.
    let revoke = ivy.delete(a.url("/api/auth/token/")).sent().await;
    assert!(revoke.status().is_success(), "{}", revoke.status());
    within_bound("revocation on B", || async {
        status_of(&ivy, &b.url("/api/proxy/feed")).await == StatusCode::UNAUTHORIZED
    })
    .await;

    // Deactivated on A in the admin: refused on B within the bound.
    let ivy = client_with_token(&token(&b.base, "ivy", "ivy-long-password").await);
    assert_eq!(status_of(&ivy, &b.url("/api/proxy/feed")).await, 200);
    let change = format!("/admin/auth/user/{}/change/", user_id("ivy"));
    let saved = admin_a.submit(&change, &[("username", "ivy")]).await;
    assert_eq!(saved.status(), 302);
    within_bound("deactivation on B", || async {
        status_of(&ivy, &b.url("/api/proxy/feed")).await == StatusCode::UNAUTHORIZED
    })
    .await;

    // A change by anything else writing the database (here psql, as the
    // CLI would) counts too: a permission taken away.
    createuser(database, &["jo", "--perm", "lbasedb.view_feed"], "jo-long-password");
    let jo = client_with_token(&token(&a.base, "jo", "jo-long-password").await);
    let sees_w = |replica: &Replica| {
        let (jo, url) = (jo.clone(), replica.url("/api/proxy/feed"));
        async move {
            let answer = jo.get(url).sent().await;
            answer.status() == 200 && answer.text().await.unwrap().contains("\"w\"")
        }
    };
    for replica in [&a, &b] {
        assert!(sees_w(replica).await, "jo sees feed w on {}", replica.base);
    }
    psql(
        database,
        &[
            "-c",
            "DELETE FROM auth_user_user_permissions WHERE user_id = (SELECT id FROM auth_user WHERE username = 'jo')",
        ],
    );
    for replica in [&a, &b] {
        within_bound("a change by psql", || async { !sees_w(replica).await }).await;
    }

    // A password changed on A ends the user's session on B.
    createuser(database, &["gina", "--staff"], "gina-long-password");
    let (gina, logged_in) = log_in_at(&b.base, "gina", "gina-long-password").await;
    assert_eq!(logged_in.status(), 302);
    assert_eq!(gina.get("/admin/").await.0, 200);
    let page = format!("/admin/auth/user/{}/password/", user_id("gina"));
    let changed = admin_a
        .submit(
            &page,
            &[("password1", "gina-other-password"), ("password2", "gina-other-password")],
        )
        .await;
    assert_eq!(changed.status(), 302);
    within_bound("the password change on B", || async {
        status_of(&gina.client, &b.url("/admin/")).await == StatusCode::FOUND
    })
    .await;

    // Failed logins are counted across replicas: the limit is 4 in all.
    let attempt = |replica: &Replica| {
        let url = replica.url("/api/auth/token/");
        async move {
            client()
                .post(url)
                .json(&json!({"username": "admin", "password": "wrong"}))
                .sent_status()
                .await
        }
    };
    for replica in [&a, &b, &a, &b] {
        assert_eq!(attempt(replica).await, StatusCode::BAD_REQUEST);
    }
    assert_eq!(attempt(b).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(attempt(a).await, StatusCode::TOO_MANY_REQUESTS);

    // 16 writers spread over both replicas append to one feed at once: the
    // feed lock is PostgreSQL's, so no acknowledged append is lost (where
    // straight to the upstream, below, they are).
    let admin = client_with_token(&{
        let output = Command::new(BIN)
            .args(["createtoken", "admin"])
            .env("DATA_DIR", upstream_data.path())
            .env("DATABASE_URL", database)
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout).lines().last().unwrap().trim().to_owned()
    });
    let col = admin
        .post(a.url("/api/proxy/col?feed=w"))
        .json(&json!({"name": "v", "datatype": "Int64"}))
        .sent()
        .await;
    assert_eq!(col.status(), 201, "{}", col.text().await.unwrap());
    let urls = [a.url("/api/proxy/data?feed=w"), b.url("/api/proxy/data?feed=w")];
    let acked = append_concurrently(&admin, &urls, 16, 20).await;
    let stored = stored_values(&admin, &b.url("/api/proxy/"), "w").await;
    assert_eq!(stored.len(), acked.len());
    assert_eq!(losses(&acked, &stored), (0, 0), "every acknowledged append, once");

    // An Idempotency-Key used on A is known on B: the retry there is
    // answered A's answer, and the append is stored once.
    let keyed = |url: String| {
        admin.post(url).header("idempotency-key", "replicated").json(&json!({"v": [-1, -2]}))
    };
    let before = get_json(&admin, &b.url("/api/proxy/size?feed=w")).await["size"].as_i64();
    let first = keyed(a.url("/api/proxy/data?feed=w")).sent().await;
    assert_eq!(first.status(), 204);
    let retried = keyed(b.url("/api/proxy/data?feed=w")).sent().await;
    assert_eq!(retried.status(), 204);
    assert_eq!(retried.headers()["idempotent-replayed"], "true");
    let after = get_json(&admin, &b.url("/api/proxy/size?feed=w")).await["size"].as_i64();
    assert_eq!(after.unwrap(), before.unwrap() + 2, "stored once");

    // The same straight to the upstream loses appends: the stand-in is as
    // unsafe as the real server, so what passed above is the lock's doing.
    let direct = crate::helpers::client_with_authorization(&format!("Bearer {}", upstream.secret));
    let made =
        direct.post(format!("{}/feed", upstream.url())).json(&json!({"name": "raw"})).sent().await;
    assert_eq!(made.status(), 201);
    let made = direct
        .post(format!("{}/col?feed=raw", upstream.url()))
        .json(&json!({"name": "v", "datatype": "Int64"}))
        .sent()
        .await;
    assert_eq!(made.status(), 201);
    let writers = (0..16i64).map(|_| {
        let (direct, url) = (direct.clone(), format!("{}/data?feed=raw", upstream.url()));
        tokio::spawn(async move {
            let mut acked = 0;
            for i in 0..20i64 {
                let answer = direct.post(&url).json(&json!({"v": [i + 1]})).sent().await;
                acked += i64::from(answer.status() == 204);
            }
            acked
        })
    });
    let acked: i64 =
        futures_util::future::join_all(writers).await.into_iter().map(Result::unwrap).sum();
    let size = get_json(&direct, &format!("{}/size?feed=raw", upstream.url())).await;
    assert!(
        (size["size"].as_i64().unwrap()) < acked,
        "unlocked, {acked} acknowledged appends made {size}"
    );
}

/// The feed lock two replicas share, on its own: held by one, the other
/// waits (and times out); released, the other takes it; other feeds are
/// free; and a replica that dies releases what it held.
#[tokio::test]
async fn postgresql_feed_locks_are_one_lock_for_every_replica() {
    use lbasedb_proxy::lock::{LockError, PostgresLocks, WriteLocks};
    let Some(database) =
        postgres_test_database("postgresql_feed_locks_are_one_lock_for_every_replica", "locks")
    else {
        return;
    };
    let a = PostgresLocks::new(&database, Duration::from_millis(300), 8);
    let b = PostgresLocks::new(&database, Duration::from_millis(300), 8);
    let held = a.acquire("w").await.unwrap();
    assert_eq!(b.acquire("w").await.err(), Some(LockError::Timeout));
    let other = b.acquire("other").await.expect("another feed is free");
    drop(held);
    let started = Instant::now();
    let taken = loop {
        // The release is a round trip, made off the async worker.
        match b.acquire("w").await {
            Ok(guard) => break guard,
            Err(LockError::Timeout) if started.elapsed() < Duration::from_secs(5) => {}
            Err(err) => panic!("{err}"),
        }
    };
    assert_eq!(a.acquire("w").await.err(), Some(LockError::Timeout));
    drop((taken, other));

    // A replica killed while holding a lock: PostgreSQL ends its session,
    // and with it the lock.
    let key = PostgresLocks::key("w");
    // (The server notices a client gone mid-query within 100 ms.)
    let mut holder = Command::new("psql")
        .args([database.as_str(), "-q"])
        .args(["-c", "SET client_connection_check_interval = 100"])
        .args(["-c", &format!("SELECT pg_advisory_lock({key})")])
        .args(["-c", "SELECT pg_sleep(60)"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        // Until psql holds it.
        match a.acquire("w").await {
            Err(LockError::Timeout) => break,
            Ok(guard) => drop(guard),
            Err(err) => panic!("{err}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5), "psql never took the lock");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    holder.kill().unwrap();
    holder.wait().unwrap();
    let a = PostgresLocks::new(&database, Duration::from_secs(5), 8);
    a.acquire("w").await.expect("released when its holder died");
}

#[tokio::test]
async fn two_replicas_count_writes_into_one_write_quota() {
    let Some(pair) =
        two_replicas("two_replicas_count_writes_into_one_write_quota", "quota", &[]).await
    else {
        return;
    };
    let Pair { database, a, b, .. } = &pair;
    let data = tempfile::tempdir().unwrap();
    let made = Command::new(BIN)
        .args([
            "creategroup",
            "writers",
            "--grant",
            "lbasedb.add_data=q",
            "--write-quota",
            "10rows/day",
        ])
        .env("DATA_DIR", data.path())
        .env("DATABASE_URL", database)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    createuser(database, &["wes", "--group", "writers"], "wes-long-password");
    let admin = client_with_token(&token(&a.base, "admin", ADMIN_PASSWORD).await);
    let feed = admin.post(a.url("/api/proxy/feed")).json(&json!({"name": "q"})).sent().await;
    assert_eq!(feed.status(), 201);
    let col = json!({"name": "x", "datatype": "Int64"});
    assert_eq!(admin.post(a.url("/api/proxy/col?feed=q")).json(&col).sent().await.status(), 201);
    let wes = client_with_token(&token(&a.base, "wes", "wes-long-password").await);
    // Taking turns: 3, 6 and 9 rows counted; 3 more would pass the 10 on
    // either replica, 1 more fits; then both refuse.
    for (i, replica) in [&a, &b, &a].into_iter().enumerate() {
        let append = wes.post(replica.url("/api/proxy/data?feed=q")).json(&json!({"x": [i, i, i]}));
        assert_eq!(append.sent().await.status(), 204, "append {i}");
    }
    let over = wes.post(b.url("/api/proxy/data?feed=q")).json(&json!({"x": [3, 3, 3]}));
    assert_eq!(over.sent().await.status(), 429, "9 counted on A are seen on B");
    let last = wes.post(b.url("/api/proxy/data?feed=q")).json(&json!({"x": [4]}));
    assert_eq!(last.sent().await.status(), 204);
    for replica in [&a, &b] {
        let refused =
            wes.post(replica.url("/api/proxy/data?feed=q")).json(&json!({"x": [9]})).sent().await;
        assert_eq!(refused.status(), 429, "the quota spent on both replicas");
        assert!(refused.headers().contains_key("retry-after"));
    }
    let me = get_json(&wes, &b.url("/api/auth/me/")).await;
    assert_eq!(me["write_quota"]["rows_today"], 10);
    assert_eq!(me["write_quota"]["rows_per_day"], 10);
}

#[tokio::test]
async fn two_replicas_add_into_the_same_minute_rows_of_the_audit() {
    let test = "two_replicas_add_into_the_same_minute_rows_of_the_audit";
    let Some(pair) = two_replicas(test, "audit", &[]).await else {
        return;
    };
    let Pair { database, a, b, .. } = &pair;
    let admin = client_with_token(&token(&a.base, "admin", ADMIN_PASSWORD).await);
    // Both replicas at once for three seconds, on two endpoints: each adds
    // what it counted into the same rows every second, in any order.
    let mut tasks = Vec::new();
    for replica in [a, b] {
        for worker in 0..4 {
            let client = admin.clone();
            let urls = [replica.url("/api/proxy/version"), replica.url("/api/proxy/feed")];
            let size = replica.url("/api/proxy/size?feed=");
            tasks.push(tokio::spawn(async move {
                let mut made = [0i64; 3];
                let until = Instant::now() + Duration::from_secs(3);
                let mut i = worker;
                while Instant::now() < until {
                    // And a hundred keys more (feeds that are not there),
                    // added into by both replicas in the same seconds.
                    if i % 3 == 2 {
                        let answer = client.get(format!("{size}n{}", i % 100)).sent().await;
                        assert!(answer.status().is_client_error(), "{}", answer.status());
                    } else {
                        assert_eq!(client.get(&urls[i % 3]).sent().await.status(), 200);
                    }
                    made[i % 3] += 1;
                    i += 1;
                }
                made
            }));
        }
    }
    let mut made = [0i64; 3];
    for task in tasks {
        let [version, feed, size] = task.await.unwrap();
        made = [made[0] + version, made[1] + feed, made[2] + size];
    }
    let pool = db::connect(database).unwrap();
    let rows = || {
        use diesel::prelude::*;
        use lbasedb_proxy::db::models::Access;
        use lbasedb_proxy::db::schema::access_log;
        access_log::table
            .filter(access_log::username.eq("admin"))
            .select(Access::as_select())
            .load::<Access>(&mut pool.get().unwrap())
            .unwrap()
    };
    let counted = |rows: &[lbasedb_proxy::db::models::Access], endpoint: &str| -> i64 {
        rows.iter().filter(|r| r.endpoint == endpoint).map(|r| r.requests).sum()
    };
    let started = Instant::now();
    let mut kept = rows();
    let all = |kept: &[_]| [counted(kept, "version"), counted(kept, "feed"), counted(kept, "size")];
    while all(&kept).iter().zip(made).any(|(counted, made)| *counted < made) {
        // Written every second; room for a database loaded by other tests.
        let counts = all(&kept);
        assert!(started.elapsed() < Duration::from_secs(30), "counted {counts:?} of {made:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        kept = rows();
    }
    assert_eq!(all(&kept), made, "{kept:?}");
    // One row a minute and key, both replicas' counts in it.
    let mut keys: Vec<_> =
        kept.iter().map(|r| (r.at, r.endpoint.clone(), r.feed.clone())).collect();
    let rows = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), rows, "two rows of one minute and key: {kept:?}");
    assert!(rows <= 2 * 102, "three seconds are at most two minutes: {kept:?}");
    // Ids drawn in vain only when both replicas make a row at once (at most
    // one a row), not each time a row is added into: an upsert alone would
    // draw one a row each second of each replica.
    let ids: Vec<i64> = {
        use diesel::prelude::*;
        use lbasedb_proxy::db::schema::access_log;
        access_log::table
            .select(access_log::id)
            .order(access_log::id)
            .load(&mut pool.get().unwrap())
            .unwrap()
    };
    let span = ids.last().unwrap() - ids.first().unwrap() + 1;
    assert!(span as usize <= 2 * ids.len(), "ids {ids:?}");
}
