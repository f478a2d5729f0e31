//! Settings for `serve` and the embedded Lbasedb server, read from flags and
//! the environment by clap; the defaults live here so that tests and the
//! command line agree.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Lbasedb's own default payload limit (1 GiB); the proxy uses the same.
pub const DEFAULT_BODY_LIMIT: u64 = 1 << 30;

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

    /// Folder for the proxy's own data (and the embedded Lbasedb's files).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

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

    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "WORKERS")]
    pub workers: Option<usize>,

    /// Most connections each worker keeps open to the upstream.
    #[arg(long, env = "UPSTREAM_POOL_LIMIT", default_value_t = 100)]
    pub upstream_pool_limit: usize,

    /// Worker threads of the embedded Lbasedb server (unused with LBASEDB_URL).
    #[arg(long, env = "LBASEDB_WORKERS", default_value_t = 1)]
    pub lbasedb_workers: usize,
}

impl Settings {
    /// Settings as the command line gives them with no flag and no
    /// environment, rooted at `data_dir`; tests start from here.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            bind: "127.0.0.1:8000".into(),
            lbasedb_url: None,
            data_dir: data_dir.into(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            body_limit: DEFAULT_BODY_LIMIT,
            workers: None,
            upstream_pool_limit: 100,
            lbasedb_workers: 1,
        }
    }

    pub fn embedded_data_path(&self) -> PathBuf {
        self.data_dir.join("lbasedb")
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
}
