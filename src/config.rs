//! Settings for `serve` and the embedded Lbasedb server, read from flags and
//! the environment by clap; the defaults live here so that tests and the
//! command line agree.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Lbasedb's own default payload limit (1 GiB); the proxy uses the same.
pub const DEFAULT_BODY_LIMIT: u64 = 1 << 30;

/// Refusals that keep one user from taking the service down: each answer
/// of the storage is built whole in memory, each column keeps a file open,
/// and a size is a promise of disk. Both the proxy (before forwarding) and
/// the embedded server apply them. The defaults are sized for a machine of
/// a few cores and a few GiB of memory, far past honest use of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
pub struct Limits {
    /// Most rows one request may read (GET /data, /bytes, /raw) or zero
    /// (DELETE /bytes). 10 million Float64 rows are 80 MB a column, about
    /// 200 MB a column as JSON.
    #[arg(long, env = "MAX_ROWS_PER_READ", default_value_t = Limits::DEFAULT.max_rows_per_read)]
    pub max_rows_per_read: u64,

    /// Largest size a feed may be set to with PUT /size.
    #[arg(long, env = "MAX_FEED_ROWS", default_value_t = Limits::DEFAULT.max_feed_rows)]
    pub max_feed_rows: u64,

    /// Most bytes one read may ask for: rows times the widths of the
    /// columns named (a column named twice counts twice). The upstream
    /// allocates that much at once, and a JSON answer several times more.
    #[arg(long, env = "MAX_READ_BYTES", default_value_t = Limits::DEFAULT.max_read_bytes)]
    pub max_read_bytes: u64,

    /// Most bytes one write may make the upstream build at once: the rows
    /// it writes times the widths of the columns it touches (those a PUT
    /// zeroes included), and as JSON a record per value on top.
    #[arg(long, env = "MAX_WRITE_BYTES", default_value_t = Limits::DEFAULT.max_write_bytes)]
    pub max_write_bytes: u64,

    /// Most columns one request may name (`col[]` on /data and /bytes).
    #[arg(long, env = "MAX_READ_COLUMNS", default_value_t = Limits::DEFAULT.max_read_columns)]
    pub max_read_columns: u64,

    /// Widest `Bytes[N]` or `String[N]` column that may be made, in bytes.
    #[arg(long, env = "MAX_COLUMN_WIDTH", default_value_t = Limits::DEFAULT.max_column_width)]
    pub max_column_width: u64,

    /// Most columns one feed may have: each is a file the storage keeps open.
    #[arg(long, env = "MAX_COLUMNS_PER_FEED", default_value_t = Limits::DEFAULT.max_columns_per_feed)]
    pub max_columns_per_feed: u64,

    /// Largest JSON body of a /data write, in bytes: the upstream turns
    /// each value into a record of some 80 bytes however short it is
    /// written, so a JSON body costs it up to 40 times its size.
    #[arg(long, env = "MAX_JSON_BODY", default_value_t = Limits::DEFAULT.max_json_body)]
    pub max_json_body: u64,

    /// Most bytes all requests together may have the upstream hold at once
    /// (reads and writes by what they cost it, one user at most half);
    /// past it a request waits a moment, then gets 503.
    #[arg(long, env = "MAX_BYTES_IN_FLIGHT", default_value_t = Limits::DEFAULT.max_bytes_in_flight)]
    pub max_bytes_in_flight: u64,

    /// Bytes the embedded server keeps free on its data folder's file
    /// system: an append that would take them is refused (507). The storage loses the errors of a full disk (it would answer
    /// an append it could not write), so the room is checked before.
    #[arg(long, env = "MIN_FREE_SPACE", default_value_t = Limits::DEFAULT.min_free_space)]
    pub min_free_space: u64,
}

impl Limits {
    pub const DEFAULT: Self = Self {
        max_rows_per_read: 10_000_000,
        max_feed_rows: 1_000_000_000,
        max_read_bytes: 256 << 20,
        max_write_bytes: 256 << 20,
        max_read_columns: 1024,
        max_column_width: 1 << 20,
        max_columns_per_feed: 1024,
        max_json_body: 64 << 20,
        max_bytes_in_flight: 1 << 30,
        min_free_space: 64 << 20,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How `serve` runs: where it listens, which upstream it pipes to, and the
/// limits of the proxy path.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address the proxy and admin site listen on.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8000")]
    pub bind: String,

    /// Base URL of a running Lbasedb server (e.g. http://127.0.0.1:8080).
    /// When unset, an embedded Lbasedb-compatible server is started on a
    /// loopback port with its data under DATA_DIR/lbasedb.
    #[arg(long, env = "LBASEDB_URL")]
    pub lbasedb_url: Option<String>,

    #[command(flatten)]
    pub db: DbArgs,

    /// Time allowed to open a connection to the upstream (e.g. "5s", "500ms").
    #[arg(long, env = "UPSTREAM_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// Time allowed for the upstream's response head once the request body has
    /// been sent. A body that is still flowing, either way, is never cut.
    #[arg(long, env = "UPSTREAM_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub response_timeout: Duration,

    /// Largest request body the proxy forwards, in bytes.
    #[arg(long, env = "BODY_LIMIT", default_value_t = DEFAULT_BODY_LIMIT)]
    pub body_limit: u64,

    #[command(flatten)]
    pub limits: Limits,

    #[command(flatten)]
    pub identity: Identity,

    /// Who must log in with a second factor (TOTP): none, superusers or
    /// staff. Those without one are sent to enrol after their password.
    #[arg(long = "require-2fa", env = "REQUIRE_2FA", default_value = "none")]
    pub require_2fa: crate::auth::totp::Policy,

    /// Longest a write waits for its feed's write lock (another write to
    /// the same feed holding it) before it is answered 503.
    #[arg(long, env = "WRITE_LOCK_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub write_lock_timeout: Duration,

    /// How long a write the proxy has given up on (504, or its client hung
    /// up) keeps its feed's lock while the upstream may still be writing:
    /// past it, the lock is let go and the write reported in doubt.
    #[arg(long, env = "WRITE_DOUBT_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub write_doubt_timeout: Duration,

    /// How long the answer to a write made with an `Idempotency-Key` is
    /// kept, to be replayed to a retry with the same key.
    #[arg(long, env = "IDEMPOTENCY_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub idempotency_ttl: Duration,

    /// Most idempotency keys one user may have kept at once (counted every
    /// minute; past it, its keyed writes get 429 until keys expire).
    #[arg(long, env = "IDEMPOTENCY_MAX_KEYS_PER_USER", default_value_t = 100_000)]
    pub idempotency_max_keys_per_user: i64,

    /// Most writes waiting for one feed's lock; one more is answered 503 at
    /// once.
    #[arg(long, env = "WRITE_LOCK_QUEUE", default_value_t = 1024)]
    pub write_lock_queue: usize,

    /// On SIGTERM or SIGINT: stop accepting, and let requests in flight
    /// (uploads included) finish for up to this long before exiting.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Secret sent to an upstream at LBASEDB_URL (`Authorization: Bearer`),
    /// for an `lbasedb-proxy lbasedb` started with the same LBASEDB_SECRET.
    /// The embedded upstream gets a random one of its own per process.
    #[arg(long, env = "LBASEDB_SECRET", hide_env_values = true)]
    pub lbasedb_secret: Option<String>,

    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "WORKERS")]
    pub workers: Option<usize>,

    /// Most connections each worker keeps open to the upstream.
    #[arg(long, env = "UPSTREAM_POOL_LIMIT", default_value_t = 100)]
    pub upstream_pool_limit: usize,

    /// Worker threads of the embedded Lbasedb server (unused with LBASEDB_URL).
    #[arg(long, env = "LBASEDB_WORKERS", default_value_t = 1)]
    pub lbasedb_workers: usize,

    /// The binary the embedded Lbasedb runs as (`lbasedb --listen-stdin`):
    /// this one unless set (tests, whose own binary is not this one).
    #[arg(skip)]
    pub lbasedb_bin: Option<PathBuf>,

    /// Password of the superuser `admin` made on first run (when the
    /// database has no user); unset, a random one is printed once.
    #[arg(long, env = "LBASEDB_PROXY_SUPERUSER_PASSWORD", hide_env_values = true)]
    pub superuser_password: Option<String>,

    /// Secret (32 bytes or more) that signs and encrypts session cookies.
    /// Unset: a random one is made once and kept in DATA_DIR/secret.key.
    #[arg(long, env = "SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,

    /// Old values of SECRET_KEY, comma-separated, still accepted for the
    /// cookies they made (which are re-made with SECRET_KEY): a rotation
    /// logs nobody out. Drop them once SESSION_MAX_AGE has passed.
    #[arg(long, env = "SECRET_KEY_FALLBACKS", value_delimiter = ',', hide_env_values = true)]
    pub secret_key_fallbacks: Vec<String>,

    /// Mark cookies Secure (set this behind HTTPS).
    #[arg(long, env = "SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// A session ends after this long without a request.
    #[arg(long, env = "SESSION_IDLE_TIMEOUT", default_value = "12h", value_parser = humantime::parse_duration)]
    pub session_idle_timeout: Duration,

    /// A session ends this long after login, however busy.
    #[arg(long, env = "SESSION_MAX_AGE", default_value = "14days", value_parser = humantime::parse_duration)]
    pub session_max_age: Duration,

    /// How long a resolved user (permissions, grants) or token is cached at
    /// most. Changes made by this process clear the cache at once, changes
    /// made elsewhere (another replica, the CLI) within AUTH_POLL_INTERVAL;
    /// this is only a backstop.
    #[arg(long, env = "AUTH_CACHE_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub auth_cache_ttl: Duration,

    /// Apply pending migrations at start-up (the default). With `false`, a
    /// database behind this binary is refused with a message to run
    /// `lbasedb-proxy migrate` (a team that migrates as a deployment step).
    /// A database ahead of it is refused either way.
    #[arg(long, env = "MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,

    /// How often the database's change counter is read: the bound on how
    /// long a revocation made elsewhere (another replica, the CLI) takes to
    /// be enforced here.
    #[arg(long, env = "AUTH_POLL_INTERVAL", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub auth_poll_interval: Duration,

    /// Failed logins for one account from one address before 429.
    #[arg(long, env = "LOGIN_FAILURE_LIMIT", default_value_t = 5)]
    pub login_failure_limit: u32,

    /// Most live (not revoked, not expired) tokens one user may have; one
    /// more is refused with a message, never made by dropping the oldest.
    #[arg(long, env = "MAX_TOKENS_PER_USER", default_value_t = crate::auth::users::DEFAULT_MAX_TOKENS_PER_USER)]
    pub max_tokens_per_user: usize,

    /// The longest a new token may live ("90d"): one asked for with a later
    /// expiry, or none, expires then (the admin's, the API's and the
    /// command line's alike). Unset: tokens may live for ever.
    #[arg(long, env = "TOKEN_MAX_LIFETIME", value_parser = parse_lifetime)]
    pub token_max_lifetime: Option<Duration>,

    /// The longest an old token keeps working after its user rotates it
    /// (the user picks up to this).
    #[arg(long, env = "TOKEN_ROTATION_GRACE", default_value = "24h", value_parser = humantime::parse_duration)]
    pub token_rotation_grace: Duration,

    /// Failed logins from one address, whatever the usernames, before
    /// every login from it gets 429 for the rest of THROTTLE_WINDOW.
    #[arg(long, env = "LOGIN_ADDRESS_FAILURE_LIMIT", default_value_t = 100)]
    pub login_address_failure_limit: u32,

    /// Requests with a bad token from one address before 429.
    #[arg(long, env = "BAD_TOKEN_LIMIT", default_value_t = 20)]
    pub bad_token_limit: u32,

    /// Reverse proxies whose `X-Forwarded-For` is believed: addresses or
    /// networks, comma-separated (e.g. "127.0.0.1,10.0.0.0/8"). The client
    /// is then the last hop not in this list. Empty (the default): the
    /// peer address is the client, whatever the headers say.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = crate::net::parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Most requests one user may make through the proxy, as Django REST
    /// framework writes it ("600/min", "10/s", "1000/hour"); a group's own
    /// limit overrides it (the most generous wins); superusers are exempt.
    /// Unset: no limit.
    #[arg(long, env = "USER_RATE_LIMIT", value_parser = parse_rate)]
    pub user_rate_limit: Option<crate::auth::ratelimit::Rate>,

    /// Rows and bytes one user may write through the proxy a day (UTC), as
    /// "10000000rows/day", "2GB/day" or both ("10000000rows/day,2GB/day");
    /// a group's own quota overrides it (the most generous wins, rows and
    /// bytes each); superusers are exempt. Unset: no quota.
    #[arg(long, env = "WRITE_QUOTA", value_parser = parse_quota)]
    pub write_quota: Option<crate::auth::quota::Quota>,

    /// Most connections one client address (an IPv6 client by its /64) may
    /// hold open; one more is answered 503 and closed. Reverse proxies in
    /// TRUSTED_PROXIES are not counted.
    #[arg(long, env = "MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 512)]
    pub max_connections_per_address: usize,

    /// Most requests one user may have in flight through the proxy at once
    /// (superusers exempt), counted until each answer has been sent: each
    /// holds an upstream connection meanwhile. Unset: half the upstream
    /// pool (UPSTREAM_POOL_LIMIT times WORKERS, halved), so that no one
    /// user can take all of it.
    #[arg(long, env = "USER_MAX_IN_FLIGHT")]
    pub user_max_in_flight: Option<usize>,

    /// How much of each proxied request the data-access audit keeps:
    /// `minutes`, a row per minute, user, credential, client, endpoint,
    /// method, feed, status and columns read, counting its requests, bytes
    /// and durations (the database grows with distinct activity, not with
    /// requests); `requests`, a row per request, with its id.
    #[arg(long, env = "AUDIT_DETAIL", value_enum, default_value_t = crate::audit::Detail::Minutes)]
    pub audit_detail: crate::audit::Detail,

    /// How long the data-access audit keeps its rows (purged hourly).
    #[arg(long, env = "AUDIT_RETENTION", default_value = "90days", value_parser = humantime::parse_duration)]
    pub audit_retention: Duration,

    /// Most rows the data-access audit keeps beside its retention: past
    /// it the oldest go, a batch at a time (checked every minute; a
    /// warning in the log past 90%). 0: no budget.
    #[arg(long, env = "AUDIT_MAX_ROWS", default_value_t = 20_000_000)]
    pub audit_max_rows: u64,

    /// `json`: also write each audit row to the log as one JSON line
    /// (target `lbasedb_proxy::audit`).
    #[arg(long, env = "AUDIT_LOG", value_parser = ["json"])]
    pub audit_log: Option<String>,

    /// Who may read `GET /metrics` without a superuser's token: addresses
    /// or networks, comma-separated. Anyone else gets 404.
    #[arg(long, env = "METRICS_ALLOW", value_delimiter = ',', value_parser = crate::net::parse_net, default_value = "127.0.0.0/8,::1")]
    pub metrics_allow: Vec<ipnet::IpNet>,

    /// How long throttling lasts after the last failure.
    #[arg(long, env = "THROTTLE_WINDOW", default_value = "5m", value_parser = humantime::parse_duration)]
    pub throttle_window: Duration,
}

/// Single sign-on with an OpenID provider, and JWT bearers on the API
/// (`auth::oidc`; docs/identity.md). Nothing of it is on unless
/// `OIDC_ISSUER` (login) or `JWT_AUDIENCE` (bearers) is set.
#[derive(Debug, Clone, Args)]
pub struct Identity {
    /// The OpenID provider's issuer URL (its discovery document is at
    /// `<issuer>/.well-known/openid-configuration`).
    #[arg(long, env = "OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    #[arg(long, env = "OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,

    #[arg(long, env = "OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,

    /// The login page's button says "Log in with" this.
    #[arg(long, env = "OIDC_DISPLAY_NAME", default_value = "single sign-on")]
    pub oidc_display_name: String,

    /// Scopes asked for at login, space-separated (add `groups` where the
    /// provider has such a scope).
    #[arg(long, env = "OIDC_SCOPES", default_value = "openid profile email")]
    pub oidc_scopes: String,

    /// The callback URL registered at the provider; by default this
    /// server's own address as the request names it, with
    /// `/admin/oidc/callback/`.
    #[arg(long, env = "OIDC_REDIRECT_URL")]
    pub oidc_redirect_url: Option<String>,

    /// Create a user at the first login of someone the provider knows.
    #[arg(long, env = "OIDC_CREATE_USERS", default_value_t = false, action = clap::ArgAction::Set)]
    pub oidc_create_users: bool,

    /// The claim a new user's username is taken from.
    #[arg(long, env = "OIDC_USERNAME_CLAIM", default_value = "preferred_username")]
    pub oidc_username_claim: String,

    /// The claim listing the provider's groups of the user.
    #[arg(long, env = "OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,

    /// `idp-group:local-group,...`; `@staff` and `@superuser` as the local
    /// side make staff and superusers. Unmapped groups are ignored.
    #[arg(long, env = "OIDC_GROUP_MAP", value_delimiter = ',', value_parser = crate::auth::oidc::parse_mapping)]
    pub oidc_group_map: Vec<(String, String)>,

    /// Password logins off for everyone but `OIDC_BREAK_GLASS`.
    #[arg(long, env = "OIDC_ONLY", default_value_t = false, action = clap::ArgAction::Set)]
    pub oidc_only: bool,

    /// The one superuser who may still log in with a password under
    /// `OIDC_ONLY` (for when the provider is down).
    #[arg(long, env = "OIDC_BREAK_GLASS")]
    pub oidc_break_glass: Option<String>,

    /// Accepted `acr` values of an ID token (any, if none is set).
    #[arg(long, env = "OIDC_REQUIRE_ACR", value_delimiter = ',')]
    pub oidc_require_acr: Vec<String>,

    /// `amr` values of which an ID token must name one (e.g. `mfa,otp`).
    #[arg(long, env = "OIDC_REQUIRE_AMR", value_delimiter = ',')]
    pub oidc_require_amr: Vec<String>,

    /// Issuers whose JWTs the API accepts as bearers (default:
    /// `OIDC_ISSUER`).
    #[arg(long, env = "JWT_ISSUERS", value_delimiter = ',')]
    pub jwt_issuers: Vec<String>,

    /// The `aud` a JWT bearer must carry; JWT bearers are off without it.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    #[arg(long, env = "JWT_LEEWAY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub jwt_leeway: Duration,

    /// The longest a request to the provider (discovery, keys, the code's
    /// exchange) may take, its answer's body included.
    #[arg(long, env = "OIDC_HTTP_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub oidc_http_timeout: Duration,

    /// The shortest interval between two fetches of one issuer's keys (a
    /// token naming an unknown key makes one).
    #[arg(long, env = "JWKS_REFRESH_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub jwks_refresh_interval: Duration,
}

impl Default for Identity {
    /// Nothing on, as with no `OIDC_*` or `JWT_*` setting.
    fn default() -> Self {
        Self {
            oidc_issuer: None,
            oidc_client_id: None,
            oidc_client_secret: None,
            oidc_display_name: "single sign-on".into(),
            oidc_scopes: "openid profile email".into(),
            oidc_redirect_url: None,
            oidc_create_users: false,
            oidc_username_claim: "preferred_username".into(),
            oidc_groups_claim: "groups".into(),
            oidc_group_map: Vec::new(),
            oidc_only: false,
            oidc_break_glass: None,
            oidc_require_acr: Vec::new(),
            oidc_require_amr: Vec::new(),
            jwt_issuers: Vec::new(),
            jwt_audience: None,
            jwt_leeway: Duration::from_secs(30),
            oidc_http_timeout: Duration::from_secs(10),
            jwks_refresh_interval: Duration::from_secs(10),
        }
    }
}

/// A token lifetime: a duration of a minute or more (a shorter one would
/// make tokens that expire as they are made).
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let lifetime = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if lifetime < Duration::from_secs(60) {
        return Err(format!("{text:?}: a token lifetime is a minute or more"));
    }
    Ok(lifetime)
}

fn parse_quota(text: &str) -> Result<crate::auth::quota::Quota, String> {
    text.parse()
}

fn parse_rate(text: &str) -> Result<crate::auth::ratelimit::Rate, String> {
    text.parse()
}

/// Where the proxy keeps its data; shared by `serve` and the management
/// commands.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Folder for the proxy's own data (and the embedded Lbasedb's files).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The proxy's database: a SQLite file (default: DATA_DIR/db.sqlite3,
    /// or sqlite://PATH), or postgres://user:pass@host:port/db for several
    /// replicas sharing one.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
}

impl DbArgs {
    pub fn database_path(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| self.data_dir.join("db.sqlite3").to_string_lossy().into_owned())
    }
}

impl Settings {
    /// Settings as the command line gives them with no flag and no
    /// environment, rooted at `data_dir`; tests start from here.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            bind: "127.0.0.1:8000".into(),
            lbasedb_url: None,
            db: DbArgs { data_dir: data_dir.into(), database_url: None },
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            body_limit: DEFAULT_BODY_LIMIT,
            limits: Limits::DEFAULT,
            identity: Identity::default(),
            require_2fa: crate::auth::totp::Policy::None,
            token_rotation_grace: Duration::from_secs(24 * 3600),
            write_lock_timeout: Duration::from_secs(30),
            write_doubt_timeout: Duration::from_secs(300),
            idempotency_ttl: Duration::from_secs(86_400),
            idempotency_max_keys_per_user: 100_000,
            write_lock_queue: 1024,
            shutdown_timeout: Duration::from_secs(30),
            lbasedb_secret: None,
            workers: None,
            upstream_pool_limit: 100,
            lbasedb_workers: 1,
            lbasedb_bin: None,
            superuser_password: None,
            secret_key: None,
            secret_key_fallbacks: Vec::new(),
            secure_cookies: false,
            session_idle_timeout: Duration::from_secs(12 * 3600),
            session_max_age: Duration::from_secs(14 * 24 * 3600),
            auth_cache_ttl: Duration::from_secs(60),
            auth_poll_interval: Duration::from_millis(250),
            migrate_on_start: true,
            login_failure_limit: 5,
            login_address_failure_limit: 100,
            max_tokens_per_user: crate::auth::users::DEFAULT_MAX_TOKENS_PER_USER,
            token_max_lifetime: None,
            bad_token_limit: 20,
            throttle_window: Duration::from_secs(300),
            trusted_proxies: Vec::new(),
            user_rate_limit: None,
            write_quota: None,
            audit_detail: crate::audit::Detail::Minutes,
            audit_retention: Duration::from_secs(90 * 86_400),
            audit_max_rows: 20_000_000,
            audit_log: None,
            user_max_in_flight: None,
            max_connections_per_address: 512,
            metrics_allow: vec![
                crate::net::parse_net("127.0.0.0/8").expect("a network"),
                crate::net::parse_net("::1").expect("an address"),
            ],
        }
    }

    pub fn embedded_data_path(&self) -> PathBuf {
        self.db.data_dir.join("lbasedb")
    }

    /// HTTP worker threads: as set, or one per core.
    pub fn worker_count(&self) -> usize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }

    /// Connections the proxy may keep open to the upstream, all workers'.
    pub fn upstream_connections(&self) -> usize {
        self.upstream_pool_limit.saturating_mul(self.worker_count())
    }

    /// `USER_MAX_IN_FLIGHT`, or half the upstream pool.
    pub fn user_max_in_flight(&self) -> usize {
        self.user_max_in_flight.unwrap_or(self.upstream_connections() / 2).max(1)
    }
}

/// How the embedded Lbasedb server runs on its own (`lbasedb-proxy lbasedb`).
/// The environment names are the upstream server's own.
#[derive(Debug, Clone, Args)]
pub struct LbasedbSettings {
    /// Address to listen on.
    #[arg(long, env = "LBASEDB_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Folder of the Lbasedb data files.
    #[arg(long, env = "DATA_PATH", default_value = "./tmp/db")]
    pub data: PathBuf,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "PAYLOAD_LIMIT", default_value_t = DEFAULT_BODY_LIMIT)]
    pub payload_limit: u64,

    /// HTTP worker threads.
    #[arg(long, env = "LBASEDB_WORKERS", default_value_t = 1)]
    pub workers: usize,

    /// Most connections served at once (each is an open file, as each
    /// column is; the open-file limit is shared between them).
    #[arg(long, env = "LBASEDB_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    #[command(flatten)]
    pub limits: Limits,

    /// Secret every request must carry as `Authorization: Bearer <secret>`
    /// (set the same LBASEDB_SECRET on `serve`). Required unless --open.
    #[arg(long, env = "LBASEDB_SECRET", hide_env_values = true)]
    pub secret: Option<String>,

    /// Serve without a secret, as the upstream Lbasedb server does: anyone
    /// who reaches the port reads and writes every feed.
    #[arg(long, conflicts_with = "secret")]
    pub open: bool,

    /// Take no per-feed write lock, as the real Lbasedb server does (its
    /// concurrent appends overwrite each other): a stand-in for it when
    /// testing the proxy's own locks. Never for data you keep.
    #[arg(long, hide = true)]
    pub unlocked: bool,

    /// Serve on the listening socket given as standard input instead of
    /// binding one: how `serve` runs its embedded upstream, which keeps the
    /// port for as long as it runs, whatever happens to this process.
    #[arg(long, hide = true)]
    pub listen_stdin: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_lifetime_is_a_minute_or_more() {
        assert_eq!(parse_lifetime("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_lifetime("1m"), Ok(Duration::from_secs(60)));
        for short in ["0s", "59s", "1ms", "", "soon"] {
            assert!(parse_lifetime(short).is_err(), "{short}");
        }
    }
}
