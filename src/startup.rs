//! Builds the application: the embedded upstream when no `LBASEDB_URL` is
//! set, the HTTP server, and every route, wired in `routes`.

use std::io;
use std::net::TcpListener;

use crate::auth::fallback::SessionKeys;
use actix_identity::IdentityMiddleware;
use actix_session::SessionMiddleware;
use actix_session::config::{PersistentSession, TtlExtensionPolicy};
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::Server;
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, HttpServer, ResponseError, web};

use crate::accesslog;
use crate::auth::perms::Granted;
use crate::auth::principal::AuthCache;
use crate::auth::session::DbSessionStore;
use crate::auth::throttle::Throttle;
use crate::auth::users::{self, ServiceError, UserSpec};
use crate::auth::{AuthState, api, password};
use crate::config::{LbasedbSettings, Settings};
use crate::db::{self, Pool, queries};
use crate::error::{self, ApiError};
use crate::health;
use crate::lbasedb::supervisor::{self, Supervised};
use crate::lock::{InProcessLocks, PostgresLocks, WriteLocks};
use crate::metrics::{Metrics, MetricsAllow};
use crate::net::TrustedProxies;
use crate::proxy::{self, ProxyState};
use crate::skip::{Unless, goes_around};
use std::sync::Arc;

pub struct Application {
    port: u16,
    upstream: String,
    upstream_secret: Option<String>,
    server: Server,
    embedded: Option<Supervised>,
}

/// What every worker's proxy handler shares, the audit's writer started.
fn proxy_state(
    settings: &Settings,
    upstream: &UpstreamServer,
    pool: &db::Pool,
    metrics: Arc<Metrics>,
) -> io::Result<web::Data<ProxyState>> {
    let state = ProxyState::new(
        &upstream.url,
        upstream.secret.clone(),
        upstream.embedded.as_ref().map(Supervised::status),
        settings,
        metrics,
        pool,
        write_locks(settings)?,
    );
    crate::proxy::idempotency::spawn_counting(state.keys.clone());
    Ok(web::Data::new(state))
}

impl Application {
    pub async fn build(settings: Settings) -> io::Result<Self> {
        let pool = open_database(&settings)?;
        let session_keys = web::Data::new(session_keys(&settings)?);
        let (key, rekeying) = (session_keys.current.clone(), !session_keys.fallbacks.is_empty());
        spawn_session_purge(pool.clone());
        let metrics = Arc::new(Metrics::new());
        let oidc = crate::auth::oidc::Oidc::new(&settings.identity).map_err(io::Error::other)?;
        let auth = web::Data::new(auth_state(&settings, pool, metrics.clone(), Arc::new(oidc)));
        tokio::spawn(crate::auth::changes::watch(
            auth.pool.clone(),
            auth.cache.clone(),
            settings.auth_poll_interval,
        ));
        let upstream = UpstreamServer::start(&settings, metrics.clone())?;
        let listener = TcpListener::bind(&settings.bind)?;
        let addr = listener.local_addr()?;
        let state = proxy_state(&settings, &upstream, &auth.pool, metrics)?;
        let (workers, shutdown) = (settings.worker_count(), settings.shutdown_timeout);
        let trusted = TrustedProxies::new(settings.trusted_proxies.clone());
        let metrics_allow = MetricsAllow(TrustedProxies::new(settings.metrics_allow.clone()));
        // The access log renders its fields on every request; with info
        // logging off for it (RUST_LOG=warn), skip it altogether.
        let access_log_on =
            tracing::enabled!(target: "actix_web::middleware::logger", tracing::Level::INFO);
        let access_log = web::Data::new(accesslog::AccessLog::new(trusted.clone()));
        let connections = web::Data::new(crate::connections::Connections::new(
            settings.max_connections_per_address,
            trusted.clone(),
        ));
        let max_connections = crate::connections::max_connections(
            crate::lbasedb::files::open_file_limit(),
            settings.upstream_connections() as u64,
            workers,
        );
        let session_store = session_store(&settings, &auth);
        let known_sessions = web::Data::new(crate::auth::session::KnownSessions::new(
            session_store.clone(),
            key.clone(),
            settings.session_max_age,
        ));
        let server = HttpServer::new(move || {
            App::new()
                // Last wrapped runs first: the request's id, the log, then
                // session, then identity.
                // Neither for a proxied request with a token, which has no
                // cookie to read, nor for one whose session is known
                // (`skip`).
                .wrap(Condition::new(rekeying, from_fn(crate::auth::fallback::renew_rekeyed)))
                .wrap(Unless::new(identities(&settings), goes_around))
                .wrap(Unless::new(sessions(&settings, &session_store, &key), goes_around))
                .wrap(Condition::new(rekeying, from_fn(crate::auth::fallback::rekey)))
                .wrap(from_fn(crate::auth::session::recognise))
                .wrap(Condition::new(access_log_on, from_fn(accesslog::log_requests)))
                .wrap(from_fn(crate::requestid::assign))
                .wrap(from_fn(crate::connections::bound))
                .app_data(access_log.clone())
                .app_data(session_keys.clone())
                .app_data(known_sessions.clone())
                .app_data(web::Data::new(trusted.clone()))
                .app_data(web::Data::new(metrics_allow.clone()))
                .app_data(auth.clone())
                .app_data(state.clone())
                // Built here, so each worker gets its own client and pool.
                .app_data(web::Data::new(proxy::build_client(
                    &settings,
                    state.upstream_secret.as_deref(),
                )))
                .configure(routes)
                .default_service(web::to(|| async { ApiError::NotFound.error_response() }))
        });
        // A client that hangs up must take its upstream request with it:
        // without this, actix-web keeps serving a half-closed connection.
        let server = server
            .h1_allow_half_closed(false)
            .shutdown_timeout(shutdown.as_secs())
            .workers(workers)
            .max_connections(max_connections)
            .on_connect(crate::connections::on_connect(connections));
        let server = server.listen(listener)?.run();
        tracing::info!("lbasedb-proxy listening on http://{addr}, upstream {}", upstream.url);
        Ok(Self {
            port: addr.port(),
            upstream: upstream.url,
            upstream_secret: upstream.secret,
            server,
            embedded: upstream.embedded,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The upstream's base URL (the embedded server's when it runs one).
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// What the upstream demands as `Authorization: Bearer` (tests reach
    /// the embedded server directly with it).
    pub fn upstream_secret(&self) -> Option<&str> {
        self.upstream_secret.as_deref()
    }

    /// The embedded upstream's process and its state, when it runs one.
    pub fn embedded(&self) -> Option<Arc<supervisor::Status>> {
        self.embedded.as_ref().map(Supervised::status)
    }

    pub async fn run_until_stopped(self) -> io::Result<()> {
        let result = self.server.await;
        // The embedded upstream lives as long as the proxy: stopped once
        // the proxy's requests in flight are done.
        if let Some(embedded) = self.embedded {
            embedded.stop().await;
        }
        result
    }
}

/// One process's feed locks on SQLite; on PostgreSQL, locks every replica
/// sharing the database takes (advisory locks).
fn write_locks(settings: &Settings) -> io::Result<Arc<dyn WriteLocks>> {
    let (timeout, queue) = (settings.write_lock_timeout, settings.write_lock_queue);
    Ok(match db::backend(&settings.db.database_path()).map_err(io::Error::other)? {
        db::Backend::Postgres(url) => Arc::new(PostgresLocks::new(&url, timeout, queue)),
        db::Backend::Sqlite(_) => Arc::new(InProcessLocks::new(timeout, queue)),
    })
}

/// Authentication, its caches and counters, and the per-user limits.
fn auth_state(
    settings: &Settings,
    pool: Pool,
    metrics: Arc<Metrics>,
    oidc: Arc<crate::auth::oidc::Oidc>,
) -> AuthState {
    AuthState {
        pool: pool.clone(),
        metrics,
        limits: crate::auth::ratelimit::UserLimits::new(Some(settings.user_max_in_flight())),
        default_rate: settings.user_rate_limit,
        default_quota: settings.write_quota.unwrap_or_default(),
        cache: AuthCache::new(settings.auth_cache_ttl),
        throttle: Throttle::new(
            pool,
            settings.login_failure_limit,
            settings.bad_token_limit,
            settings.throttle_window,
        )
        .with_address_limit(settings.login_address_failure_limit),
        hasher: crate::auth::password::Hasher::default(),
        token_limits: crate::auth::users::TokenLimits {
            max_live: settings.max_tokens_per_user,
            max_lifetime: settings.token_max_lifetime,
        },
        secure_cookies: settings.secure_cookies,
        oidc,
        require_2fa: settings.require_2fa,
        token_rotation_grace: settings.token_rotation_grace,
    }
}

/// The upstream the proxy pipes to: the embedded server (a supervised
/// process of its own, with a secret of its own) or the one at
/// `LBASEDB_URL`.
struct UpstreamServer {
    url: String,
    secret: Option<String>,
    embedded: Option<Supervised>,
}

impl UpstreamServer {
    fn start(settings: &Settings, metrics: Arc<Metrics>) -> io::Result<Self> {
        if let Some(url) = &settings.lbasedb_url {
            return Ok(Self {
                url: check_upstream_url(url)?,
                secret: settings.lbasedb_secret.clone(),
                embedded: None,
            });
        }
        let embedded = LbasedbSettings {
            bind: "127.0.0.1:0".into(),
            data: settings.embedded_data_path(),
            payload_limit: settings.body_limit,
            workers: settings.lbasedb_workers,
            // Its only client is this proxy: its pools, and a few more.
            max_connections: settings.upstream_connections() + 16,
            limits: settings.limits,
            // Its port is on loopback, where any local process can reach
            // it: it answers only this process.
            secret: Some(random_secret()),
            open: false,
            unlocked: false,
            listen_stdin: true,
        };
        let program = match &settings.lbasedb_bin {
            Some(program) => program.clone(),
            None => std::env::current_exe()?,
        };
        let secret = embedded.secret.clone();
        let child = supervisor::Child {
            program,
            settings: embedded,
            shutdown_timeout: settings.shutdown_timeout,
        };
        let server = Supervised::start(child, metrics)?;
        Ok(Self { url: format!("http://{}", server.addr()), secret, embedded: Some(server) })
    }
}

/// The proxy's own database, private, migrated, with a first superuser.
fn open_database(settings: &Settings) -> io::Result<Pool> {
    crate::fsperm::private_dir(&settings.db.data_dir)?;
    let pool = db::connect(&settings.db.database_path()).map_err(io::Error::other)?;
    if !settings.migrate_on_start {
        db::migration_state(&pool)
            .and_then(|state| state.check(false))
            .map_err(io::Error::other)?;
    }
    let applied = db::migrate(&pool).map_err(io::Error::other)?;
    if !applied.is_empty() {
        tracing::info!("applied migrations: {}", applied.join(", "));
    }
    first_run_superuser(&pool, settings.superuser_password.as_deref())?;
    Ok(pool)
}

/// Who is signed in, from the session, for at most `SESSION_MAX_AGE`.
fn identities(settings: &Settings) -> IdentityMiddleware {
    IdentityMiddleware::builder().login_deadline(Some(settings.session_max_age)).build()
}

fn seconds(d: std::time::Duration) -> actix_web::cookie::time::Duration {
    actix_web::cookie::time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Sessions in the database, ended after `SESSION_IDLE_TIMEOUT` unused:
/// one store for all workers, so that `KnownSessions` sees what each
/// extended.
fn session_store(settings: &Settings, auth: &AuthState) -> DbSessionStore {
    DbSessionStore::new(
        auth.pool.clone(),
        auth.cache.clone(),
        seconds(settings.session_idle_timeout),
    )
}

/// Sessions of `store`, their cookie `sessionid` (HttpOnly, Lax, Secure
/// behind HTTPS).
fn sessions(
    settings: &Settings,
    store: &DbSessionStore,
    key: &Key,
) -> SessionMiddleware<DbSessionStore> {
    SessionMiddleware::builder(store.clone(), key.clone())
        .cookie_name(crate::auth::fallback::SESSION_COOKIE.into())
        .cookie_http_only(true)
        .cookie_same_site(SameSite::Lax)
        .cookie_secure(settings.secure_cookies)
        // The cookie lives as long as a session may and is set when the
        // session changes; the idle timeout is the session row's, pushed back
        // by each use (`DbSessionStore`). Set on every answer, the cookie cost
        // an encryption and a `Set-Cookie` a request.
        .session_lifecycle(
            PersistentSession::default()
                .session_ttl(seconds(settings.session_max_age))
                .session_ttl_extension_policy(TtlExtensionPolicy::OnStateChanges),
        )
        .build()
}

/// Every route and scope of the application.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(crate::admin::routes)
        .route(
            "/",
            web::get().to(|| async {
                actix_web::HttpResponse::Found()
                    .insert_header((
                        actix_web::http::header::LOCATION,
                        crate::admin::registry::INDEX,
                    ))
                    .finish()
            }),
        )
        .route("/healthz", web::get().to(health::healthz))
        .route("/metrics", web::get().to(crate::metrics::serve))
        .route("/readyz", web::get().to(health::readyz))
        .service(
            web::scope("/api")
                .wrap(api_headers())
                .route("/proxy/{endpoint}", web::route().to(proxy::proxy))
                .service(
                    web::scope("/auth")
                        // Bodies it cannot read answer as the API does.
                        .app_data(web::JsonConfig::default().error_handler(error::json_body_error))
                        .app_data(web::FormConfig::default().error_handler(error::form_body_error))
                        .service(
                            web::resource("/token/")
                                .route(web::post().to(api::obtain_token))
                                .route(web::delete().to(api::revoke_token)),
                        )
                        .route("/login/", web::post().to(api::login))
                        .route("/logout/", web::post().to(api::logout))
                        .route("/csrf/", web::get().to(api::csrf))
                        .route("/me/", web::get().to(api::me)),
                )
                .default_service(web::to(|| async { ApiError::NotFound.error_response() })),
        );
}

/// Every `/api` answer is data, never a page: a feed may hold any bytes a
/// user wrote (`<html><script>…`), and a browser must neither sniff it into
/// HTML nor run it with this origin's cookies should it render it.
fn api_headers() -> actix_web::middleware::DefaultHeaders {
    use actix_web::http::header;
    actix_web::middleware::DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox"))
}

/// Expired sessions (and ended throttle windows) are refused when read,
/// but their rows would stay for good: they are purged at start-up and
/// every hour.
fn spawn_session_purge(pool: Pool) {
    tokio::spawn(async move {
        let mut every_hour = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every_hour.tick().await;
            match db::run(&pool, queries::sessions_purge_expired).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!("purged {purged} expired session(s)"),
                Err(err) => tracing::warn!("purging expired sessions: {err}"),
            }
            if let Err(err) = db::run(&pool, queries::throttle_purge).await {
                tracing::warn!("purging ended throttle windows: {err}");
            }
        }
    });
}

/// On an empty database, makes superuser `admin` so that a first run gives
/// a working login: with the configured password, or a random one printed
/// once (on standard output, never to the log).
fn first_run_superuser(pool: &Pool, configured: Option<&str>) -> io::Result<()> {
    let mut conn = pool.get().map_err(io::Error::other)?;
    if queries::user_count(&mut conn).map_err(io::Error::other)? > 0 {
        return Ok(());
    }
    let generated = configured.is_none().then(random_password);
    let password = configured.or(generated.as_deref()).unwrap_or_default();
    let spec =
        UserSpec { username: "admin".into(), superuser: true, staff: true, ..Default::default() };
    match users::create_user(&mut conn, &Granted::system(), &spec, &password::hash(password)) {
        Ok(_) => {}
        // A replica starting beside this one made it first.
        Err(ServiceError::Db(err)) if err.is_unique_violation() => return Ok(()),
        Err(ServiceError::Invalid(invalid)) if invalid.field == "username" => {
            return Ok(());
        }
        Err(err) => return Err(io::Error::other(err)),
    }
    match generated {
        Some(password) => println!(
            "Created superuser \"admin\" with password: {password}\n(shown this once; change it with `lbasedb-proxy changepassword admin`)"
        ),
        None => tracing::info!("created superuser \"admin\" with the configured password"),
    }
    Ok(())
}

/// A per-process secret for the embedded upstream: 256 bits, hex.
fn random_secret() -> String {
    hex::encode(crate::secret::random_bytes::<32>())
}

pub fn random_password() -> String {
    crate::secret::random_alphanumeric(20)
}

/// The key that signs and encrypts session cookies: derived from SECRET_KEY,
/// or from a random secret made once and kept in DATA_DIR/secret.key, so
/// sessions survive a restart.
fn session_key(settings: &Settings) -> io::Result<Key> {
    if let Some(secret) = &settings.secret_key {
        if secret.len() < 32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "SECRET_KEY must be 32 bytes or more",
            ));
        }
        return Ok(Key::derive_from(secret.as_bytes()));
    }
    let path = settings.db.data_dir.join("secret.key");
    match std::fs::read(&path) {
        Ok(secret) if secret.len() >= 32 => {
            crate::fsperm::private_file(&path)?;
            Ok(Key::derive_from(&secret))
        }
        _ => {
            let secret = crate::secret::random_bytes::<64>();
            write_private(&path, &secret)?;
            Ok(Key::derive_from(&secret))
        }
    }
}

/// The session cookies' key, and those of `SECRET_KEY_FALLBACKS` (each as
/// long as SECRET_KEY must be).
fn session_keys(settings: &Settings) -> io::Result<SessionKeys> {
    // Trimmed: "new, old" must not make " old" a key of its own.
    let fallbacks = settings
        .secret_key_fallbacks
        .iter()
        .map(|secret| secret.trim())
        .filter(|secret| !secret.is_empty())
        .map(|secret| match secret.len() >= 32 {
            true => Ok(Key::derive_from(secret.as_bytes())),
            false => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "each of SECRET_KEY_FALLBACKS must be 32 bytes or more",
            )),
        })
        .collect::<io::Result<_>>()?;
    Ok(SessionKeys { current: session_key(settings)?, fallbacks })
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    crate::fsperm::private_file(path)
}

fn check_upstream_url(url: &str) -> io::Result<String> {
    let invalid = |why: &str| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("LBASEDB_URL {url:?}: {why}"))
    };
    let uri: actix_web::http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(invalid("only http:// upstreams are supported"));
    }
    if uri.host().is_none() {
        return Err(invalid("no host"));
    }
    if uri.query().is_some() {
        return Err(invalid("must not have a query"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}
