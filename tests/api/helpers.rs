//! Booting the application per test, and the broken upstreams of the fault
//! tests (raw sockets that close, reset, stall or record).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lbasedb_proxy::auth::grant::Grant;
use lbasedb_proxy::auth::password;
use lbasedb_proxy::auth::perms::Granted;
use lbasedb_proxy::auth::users::{self, UserSpec};
use lbasedb_proxy::config::Settings;
use lbasedb_proxy::db::{self, Pool, queries};
use lbasedb_proxy::startup::Application;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};

/// A process the tests started, killed and reaped when dropped.
pub struct Stopped(pub std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct TestApp {
    pub address: String,
    pub upstream: String,
    /// Carries the superuser's token.
    pub client: reqwest::Client,
    /// Carries the embedded upstream's per-process secret: for `direct`.
    pub upstream_client: reqwest::Client,
    pub upstream_secret: String,
    /// The superuser's token.
    pub token: String,
    /// No credentials, a cookie store, no redirects.
    pub anon: reqwest::Client,
    /// The application's own database, for arranging users and tokens.
    pub pool: Pool,
    /// Its `DATABASE_URL`: a SQLite file in `data`, or a PostgreSQL
    /// database of its own (`TEST_BACKEND=postgres`).
    pub database_url: String,
    pub data: TempDir,
    /// The embedded upstream's process, when the app runs one.
    pub embedded: Option<Arc<lbasedb_proxy::lbasedb::supervisor::Status>>,
}

impl TestApp {
    /// The binary, on this app's data folder and database, with no
    /// password variables inherited from the test's own environment.
    pub fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lbasedb-proxy"));
        command
            .env("DATA_DIR", self.data.path())
            .env("DATABASE_URL", &self.database_url)
            .env_remove("LBASEDB_PROXY_PASSWORD")
            .env_remove("LBASEDB_PROXY_SUPERUSER_PASSWORD");
        command
    }
}

impl TestApp {
    /// Runs a management command on this app, which must succeed; its
    /// output's last line (a token, for `createtoken`).
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().expect("the binary runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
        stdout.lines().last().unwrap_or_default().trim().to_owned()
    }
}

/// The database engine the suite runs on: SQLite unless
/// `TEST_BACKEND=postgres`, which puts every test app on a PostgreSQL
/// database of its own (on `LBASEDB_TEST_POSTGRES`'s server).
pub fn backend_server() -> Option<String> {
    match std::env::var("TEST_BACKEND").as_deref() {
        Ok("postgres") => Some(
            std::env::var("LBASEDB_TEST_POSTGRES")
                .ok()
                .filter(|url| !url.is_empty())
                .expect("TEST_BACKEND=postgres needs LBASEDB_TEST_POSTGRES"),
        ),
        Ok("sqlite") | Ok("") | Err(_) => None,
        Ok(other) => panic!("TEST_BACKEND={other}: sqlite or postgres"),
    }
}

/// A fresh `DATABASE_URL` for a test that starts the binary itself: a
/// PostgreSQL database of its own under `TEST_BACKEND=postgres`, else a
/// SQLite file in `dir`.
pub fn test_database_url(dir: &std::path::Path) -> String {
    match backend_server() {
        Some(server) => postgres_database(&server, "app"),
        None => dir.join("db.sqlite3").to_string_lossy().into_owned(),
    }
}

pub const ADMIN_PASSWORD: &str = "correct-horse-battery-staple";

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Boots the application with its own data folder (and so its own embedded
/// Lbasedb), after `configure` has had its say on the settings.
/// The application in front of the upstream at `url` (one of the broken
/// or recording ones below), configured further by `configure`.
pub async fn spawn_app_on(url: &str, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let url = url.to_owned();
    spawn_app_with(|s| {
        s.lbasedb_url = Some(url);
        configure(s);
    })
    .await
}

/// Settings rooted at `data_dir`, as the command line gives them, but for
/// the binary the embedded upstream runs as: this test binary is not it.
pub fn settings(data_dir: impl Into<std::path::PathBuf>) -> Settings {
    let mut settings = Settings::with_data_dir(data_dir);
    settings.lbasedb_bin = Some(env!("CARGO_BIN_EXE_lbasedb-proxy").into());
    settings
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let data = tempfile::tempdir().expect("temporary data folder");
    let mut settings = settings(data.path());
    settings.bind = "127.0.0.1:0".into();
    settings.workers = Some(2);
    settings.superuser_password = Some(ADMIN_PASSWORD.into());
    settings.db.database_url = Some(test_database_url(data.path()));
    configure(&mut settings);
    let database = settings.db.database_path();
    let app = Application::build(settings).await.expect("the application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let upstream = app.upstream().to_owned();
    let upstream_secret = app.upstream_secret().unwrap_or_default().to_owned();
    let embedded = app.embedded();
    tokio::spawn(app.run_until_stopped());
    let pool = db::connect(&database).expect("the test database");
    let token = issue_token(&pool, "admin", None);
    TestApp {
        address,
        upstream,
        client: client_with_token(&token),
        upstream_client: client_with_authorization(&format!("Bearer {upstream_secret}")),
        upstream_secret,
        token,
        anon: client(),
        pool,
        database_url: database,
        data,
        embedded,
    }
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
}

/// A client that keeps no cookies: a test sends its `Cookie` header by hand.
pub fn client_without_cookies() -> reqwest::Client {
    builder().build().expect("an HTTP client")
}

/// A cookie-aware client with no credentials.
pub fn client() -> reqwest::Client {
    builder().cookie_store(true).build().expect("an HTTP client")
}

pub fn client_with_token(token: &str) -> reqwest::Client {
    client_with_authorization(&format!("Token {token}"))
}

pub fn client_with_authorization(value: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", value.parse().unwrap());
    builder().default_headers(headers).build().expect("an HTTP client")
}

/// A token for `username`, straight in the database.
pub fn issue_token(
    pool: &Pool,
    username: &str,
    expires_at: Option<chrono::NaiveDateTime>,
) -> String {
    let mut conn = pool.get().unwrap();
    let user = queries::user_by_username(&mut conn, username).unwrap().expect("the user exists");
    users::issue_token(&mut conn, &Granted::system(), user.id, "test", expires_at).unwrap().1.secret
}

pub const USER_PASSWORD: &str = "a-long-test-password";

/// One argon2 hash for every arranged user: hashing is slow by design.
static TEST_PHC: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| password::hash(USER_PASSWORD));

/// A user, straight in the database, with password `USER_PASSWORD`.
pub fn create_user(pool: &Pool, spec: UserSpec) -> i32 {
    let mut conn = pool.get().unwrap();
    users::create_user(&mut conn, &Granted::system(), &spec, &TEST_PHC).unwrap().id
}

pub fn create_group(pool: &Pool, name: &str, perms: &[&str], grants: &[(&str, &str)]) {
    let perms: Vec<String> = perms.iter().map(|p| p.to_string()).collect();
    let grants = self::grants(grants);
    let mut conn = pool.get().unwrap();
    users::create_group(&mut conn, &Granted::system(), name, &perms, &grants, None).unwrap();
}

/// Feed grants from `(codename, feed)` pairs; the feed may name columns
/// and rows (`sensors[t]@0..10`).
pub fn grants(list: &[(&str, &str)]) -> Vec<Grant> {
    list.iter().map(|(codename, feed)| format!("{codename}={feed}").parse().unwrap()).collect()
}

pub fn spec(username: &str) -> UserSpec {
    UserSpec { username: username.into(), ..Default::default() }
}

/// A request body, for `TestApp::send`.
pub enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
}

impl TestApp {
    /// Sends a request with `client` to `url`, with a body if given.
    pub async fn send(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
        body: Body,
    ) -> reqwest::Response {
        let request = client.request(method, url);
        let request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Bytes(bytes) => request.body(bytes),
        };
        request.send().await.expect("the request is answered")
    }

    /// `GET /api/proxy/<path_and_query>` as the superuser.
    pub async fn get_proxy(&self, path_and_query: &str) -> reqwest::Response {
        self.get_proxy_as(&self.client, path_and_query).await
    }

    /// `GET /api/proxy/<path_and_query>` with `client`'s credentials.
    pub async fn get_proxy_as(
        &self,
        client: &reqwest::Client,
        path_and_query: &str,
    ) -> reqwest::Response {
        let url = self.proxy(path_and_query);
        self.send(client, reqwest::Method::GET, &url, Body::None).await
    }

    /// `POST /api/auth/token/` with a JSON `body` (username, password and
    /// any scopes), with no credentials.
    pub async fn obtain_token(&self, body: Value) -> reqwest::Response {
        self.anon.post(format!("{}/api/auth/token/", self.address)).json(&body).sent().await
    }

    /// A connection to the application's own database.
    pub fn conn(&self) -> diesel::r2d2::PooledConnection<db::conn::Manager> {
        self.pool.get().expect("a database connection")
    }

    /// `/api/proxy/<path_and_query>`.
    pub fn proxy(&self, path_and_query: &str) -> String {
        format!("{}/api/proxy/{path_and_query}", self.address)
    }

    /// The upstream itself, bypassing the proxy.
    pub fn direct(&self, path_and_query: &str) -> String {
        format!("{}/{path_and_query}", self.upstream)
    }

    /// Creates a feed with columns straight on the upstream.
    pub async fn create_feed(&self, feed: &str, cols: &[(&str, &str)]) {
        let response = self
            .upstream_client
            .post(self.direct("feed"))
            .json(&json!({ "name": feed }))
            .sent()
            .await;
        assert_eq!(response.status(), 201, "create feed {feed}");
        for (name, datatype) in cols {
            let response = self
                .upstream_client
                .post(self.direct(&format!("col?feed={feed}")))
                .json(&json!({ "name": name, "datatype": datatype }))
                .sent()
                .await;
            assert_eq!(response.status(), 201, "create column {name}");
        }
    }

    /// A feed made straight on the upstream with `rows` rows (zeros: made
    /// at once, as sparse files).
    pub async fn create_sized_feed(&self, feed: &str, cols: &[(&str, &str)], rows: u64) {
        self.create_feed(feed, cols).await;
        let sized = self
            .upstream_client
            .put(self.direct(&format!("size?feed={feed}")))
            .json(&json!({ "size": rows }))
            .sent()
            .await;
        assert_eq!(sized.status(), 204, "size of {feed}");
    }

    /// A JSON POST to `path` with no credentials (a fresh client).
    pub async fn post_anonymously(&self, path: &str, body: Value) -> reqwest::Response {
        client().post(format!("{}{path}", self.address)).json(&body).sent().await
    }

    /// A user holding only `feed_grants` (`(codename, feed)` pairs); its id.
    pub fn user_granted(&self, username: &str, feed_grants: &[(&str, &str)]) -> i32 {
        create_user(&self.pool, UserSpec { grants: grants(feed_grants), ..spec(username) })
    }

    /// A user holding only `feed_grants`, and a client with its token.
    pub fn client_granted(&self, username: &str, feed_grants: &[(&str, &str)]) -> reqwest::Client {
        self.user_granted(username, feed_grants);
        client_with_token(&issue_token(&self.pool, username, None))
    }

    /// Feeds with one `Int64` column, `x`, each.
    pub async fn create_x_feeds(&self, feeds: &[&str]) {
        for feed in feeds {
            self.create_feed(feed, &[("x", "Int64")]).await;
        }
    }

    pub async fn size_of(&self, feed: &str) -> u64 {
        let body: Value =
            self.upstream_client.get(self.direct(&format!("size?feed={feed}"))).sent_json().await;
        body["size"].as_u64().expect("a size")
    }
}

/// A listener on a free loopback port, and that port's base URL.
pub async fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// Serves each connection `listener` accepts with `handle`, on a task of
/// its own, for as long as the listener accepts.
pub fn serve_each<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream));
        }
    });
}

/// A base URL where nothing listens.
pub async fn down_upstream() -> String {
    let (listener, url) = listener().await;
    drop(listener);
    url
}

/// Reads one request head (up to the blank line), or what came before EOF.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// What a broken upstream does with each connection.
#[derive(Clone, Copy)]
pub enum Fault {
    /// Read the request, then close without a word (Lbasedb's worker panic).
    Close,
    /// Read the request, then reset the connection.
    Reset,
    /// Read the request and never answer; report when the peer hangs up.
    Stall,
}

pub struct BrokenUpstream {
    pub url: String,
    pub connections: Arc<AtomicUsize>,
    /// With `Fault::Stall`: one message each time the proxy hangs up.
    pub hangups: mpsc::UnboundedReceiver<()>,
}

pub async fn broken_upstream(fault: Fault) -> BrokenUpstream {
    let (listener, url) = listener().await;
    let connections = Arc::new(AtomicUsize::new(0));
    let (hangup_tx, hangups) = mpsc::unbounded_channel();
    let counter = connections.clone();
    serve_each(listener, move |mut stream| {
        counter.fetch_add(1, Ordering::SeqCst);
        let hangup_tx = hangup_tx.clone();
        async move {
            read_head(&mut stream).await;
            match fault {
                Fault::Close => drop(stream),
                Fault::Reset => {
                    // SO_LINGER 0 closes with a RST; its blocking drop is
                    // moot with nothing left to send.
                    #[allow(deprecated)]
                    stream.set_linger(Some(Duration::ZERO)).ok();
                    drop(stream);
                }
                Fault::Stall => {
                    let mut buf = [0u8; 4096];
                    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                    let _ = hangup_tx.send(());
                }
            }
        }
    });
    BrokenUpstream { url, connections, hangups }
}

/// An upstream that answers every request with 200 and records each request
/// head; its answer carries headers the proxy must not pass back.
pub struct RecordingUpstream {
    pub url: String,
    pub heads: Arc<Mutex<Vec<String>>>,
}

pub async fn recording_upstream() -> RecordingUpstream {
    // A feed list, so `GET /feed` can be filtered too.
    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nset-cookie: upstream=1\r\n\
                access-control-allow-origin: *\r\nconnection: close, x-upstream-hop\r\n\
                x-upstream-hop: 1\r\nx-lbasedb: kept";
    answering_upstream(head.into(), br#"[{"name":"xy"},{"name":"zz"}]"#).await
}

/// An upstream that answers every request with `head` (status line and
/// headers, `connection` among them) and `body`, and records each request
/// head.
async fn answering_upstream(head: String, body: &'static [u8]) -> RecordingUpstream {
    let (listener, url) = listener().await;
    let heads = Arc::new(Mutex::new(Vec::new()));
    let recorded = heads.clone();
    let answer: Arc<str> = format!("{head}\r\ncontent-length: {}\r\n\r\n", body.len()).into();
    serve_each(listener, move |mut stream| {
        let (recorded, answer) = (recorded.clone(), answer.clone());
        async move {
            recorded.lock().await.push(read_head(&mut stream).await);
            stream.write_all(answer.as_bytes()).await.ok();
            stream.write_all(body).await.ok();
        }
    });
    RecordingUpstream { url, heads }
}

/// The request heads a recording upstream saw, as they came.
pub async fn recorded(upstream: &RecordingUpstream) -> Vec<String> {
    upstream.heads.lock().await.clone()
}

pub fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrfmiddlewaretoken" value=""#;
    let start = html.find(marker).expect("a CSRF field") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// A cookie-aware client on the admin site.
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
}

impl Browser {
    pub async fn get(&self, path: &str) -> (reqwest::StatusCode, String) {
        let response = self.client.get(format!("{}{path}", self.base)).sent().await;
        (response.status(), response.text().await.unwrap())
    }

    /// Submits the form of the page at `page` to that page (a form with no
    /// `action`, as most admin forms are).
    pub async fn submit(&self, page: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.post(page, page, fields).await
    }

    /// Posts a form with the CSRF token of the page at `form_page`.
    pub async fn post(
        &self,
        form_page: &str,
        path: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let (_, html) = self.get(form_page).await;
        let csrf = csrf_of(&html);
        let mut fields: Vec<(&str, &str)> = fields.to_vec();
        fields.push(("csrfmiddlewaretoken", &csrf));
        self.client.post(format!("{}{path}", self.base)).form(&fields).sent().await
    }
}

/// Signs `username` in at the admin's login page bound for `/account/`.
pub async fn account_of(app: &TestApp, username: &str) -> Browser {
    let browser = Browser { client: client(), base: app.address.clone() };
    let fields = [("username", username), ("password", USER_PASSWORD), ("next", "/account/")];
    let answer = browser.submit("/admin/login/", &fields).await;
    assert_eq!(answer.status(), 302, "anyone may log in to their own page");
    assert_eq!(answer.headers()["location"], "/account/");
    browser
}

pub async fn log_in(app: &TestApp, username: &str, password: &str) -> (Browser, reqwest::Response) {
    log_in_at(&app.address, username, password).await
}

/// Logs in to the admin site of the server at `base` (a replica's).
pub async fn log_in_at(base: &str, username: &str, password: &str) -> (Browser, reqwest::Response) {
    let browser = Browser { client: client(), base: base.to_owned() };
    let response = browser
        .submit(
            "/admin/login/",
            &[("username", username), ("password", password), ("next", "/admin/")],
        )
        .await;
    (browser, response)
}

/// A GET's JSON answer.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).sent_json().await
}

/// A GET's status.
pub async fn status_of(client: &reqwest::Client, url: &str) -> reqwest::StatusCode {
    client.get(url).sent_status().await
}

/// The suite's one way to send a request: an answer that does not come
/// (or a body that is not what was asked for) fails the test there.
pub trait Sent {
    /// The answer.
    fn sent(self) -> impl Future<Output = reqwest::Response> + Send;
    /// The answer's status.
    fn sent_status(self) -> impl Future<Output = reqwest::StatusCode> + Send;
    /// The answer's body as JSON of type `T`.
    fn sent_json<T: DeserializeOwned>(self) -> impl Future<Output = T> + Send;
}

impl Sent for reqwest::RequestBuilder {
    async fn sent(self) -> reqwest::Response {
        self.send().await.expect("the request is answered")
    }

    async fn sent_status(self) -> reqwest::StatusCode {
        self.sent().await.status()
    }

    async fn sent_json<T: DeserializeOwned>(self) -> T {
        self.sent().await.json().await.expect("a JSON body")
    }
}

/// The superuser `admin`, logged in to the admin site.
pub async fn admin(app: &TestApp) -> Browser {
    let (browser, response) = log_in(app, "admin", ADMIN_PASSWORD).await;
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "/admin/");
    browser
}

/// An upstream that answers every request with `head` (status line and
/// headers, without the blank line) and `body`, and records each request
/// head; for what the proxy does with answers the real server never gives.
pub async fn fixed_upstream(head: &'static str, body: &'static [u8]) -> RecordingUpstream {
    answering_upstream(format!("{head}\r\nconnection: close"), body).await
}

/// The PostgreSQL server the tests may use (`LBASEDB_TEST_POSTGRES`, as
/// `.ci/postgres.sh` prints it); without one a test skips, saying so,
/// unless `POSTGRES_TESTS=required` (CI), which makes that a failure.
pub fn postgres_server(test: &str) -> Option<String> {
    match std::env::var("LBASEDB_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("POSTGRES_TESTS").as_deref() == Ok("required") => {
            panic!("{test}: POSTGRES_TESTS=required but LBASEDB_TEST_POSTGRES is not set")
        }
        _ => {
            eprintln!(
                "skipping {test}: no PostgreSQL (set LBASEDB_TEST_POSTGRES, e.g. from .ci/postgres.sh)"
            );
            None
        }
    }
}

/// A new empty database for `test`, named after `name`, on the PostgreSQL
/// server the tests may use; none (the test skips) as `postgres_server` says.
pub fn postgres_test_database(test: &str, name: &str) -> Option<String> {
    postgres_server(test).map(|server| postgres_database(&server, name))
}

/// A new empty database on `server`, unique to this test run; its URL.
pub fn postgres_database(server: &str, name: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let unique = format!("{name}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
    psql(server, &["-c", &format!("CREATE DATABASE {unique}")]);
    format!("{}/{unique}", server.rsplit_once('/').expect("a database URL").0)
}

/// Runs `psql` (PostgreSQL's own client) on `url`, stopping at the first error.
pub fn psql(url: &str, args: &[&str]) {
    let output = std::process::Command::new("psql")
        .args([url, "-q", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .output()
        .expect("psql runs");
    assert!(output.status.success(), "psql {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A relay in front of `target` that records each request line it passes
/// on (`GET /data?feed=s&... HTTP/1.1`): what the proxy asked the upstream.
/// Each request gets a connection of its own to `target`, and its answer
/// says `connection: close`, so that no request hides behind another on a
/// kept-alive connection. Bodies must come with a `content-length`.
pub async fn recording_relay(target: &str) -> RecordingUpstream {
    let (listener, url) = listener().await;
    let heads = Arc::new(Mutex::new(Vec::new()));
    let recorded = heads.clone();
    let target = target.trim_start_matches("http://").to_owned();
    serve_each(listener, move |mut client| {
        let (recorded, target) = (recorded.clone(), target.clone());
        async move {
            let mut buffer = Vec::new();
            let Some(end) = read_until_head_end(&mut client, &mut buffer).await else {
                return;
            };
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = buffer[end + 4..].to_vec();
            let mut chunk = [0u8; 65536];
            while body.len() < length {
                match client.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => body.extend_from_slice(&chunk[..n]),
                }
            }
            recorded.lock().await.push(head.lines().next().unwrap_or_default().to_owned());
            let kept: Vec<&str> = head
                .lines()
                .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
                .collect();
            let head = format!("{}\r\nconnection: close\r\n\r\n", kept.join("\r\n"));
            let Ok(mut upstream) = TcpStream::connect(&target).await else {
                return;
            };
            if upstream.write_all(head.as_bytes()).await.is_err()
                || upstream.write_all(&body).await.is_err()
            {
                return;
            }
            tokio::io::copy(&mut upstream, &mut client).await.ok();
            client.shutdown().await.ok();
        }
    });
    RecordingUpstream { url, heads }
}

/// Reads into `buffer` until it holds a whole request head; where the head
/// ends (the `\r\n\r\n`), or `None` at EOF first.
async fn read_until_head_end(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(end);
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A user's rows in the audit, newest first, once `done` holds of them
/// (the audit is written every second); fails the test after ten seconds.
pub async fn audit_of(
    app: &TestApp,
    username: &str,
    done: impl Fn(&[lbasedb_proxy::db::models::Access]) -> bool,
) -> Vec<lbasedb_proxy::db::models::Access> {
    let query = lbasedb_proxy::db::queries::AccessQuery {
        username: Some(username.into()),
        per_page: 1000,
        ..Default::default()
    };
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = lbasedb_proxy::db::queries::list_access(&mut app.conn(), &query).unwrap();
        if done(&rows) {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the audit of {username} is not as expected: {rows:?}");
}
