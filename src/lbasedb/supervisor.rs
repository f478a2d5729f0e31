//! The embedded upstream of `serve`, as a process of its own, restarted
//! when it dies: nginx's master and worker. The storage it runs on
//! allocates each answer whole and aborts the process when an allocation
//! fails (Rust's default, which no code can catch), and unwraps in places;
//! the limits keep every request we know of from getting there, and the
//! process boundary keeps what we do not know of from taking the admin
//! site, the sessions and the proxy down with it.
//!
//! `serve` binds the upstream's loopback port itself and hands the socket
//! to the child as its standard input (`lbasedb --listen-stdin`), keeping
//! its own copy: the port stays ours while the child restarts (no local
//! process can take it and be sent the secret), and connections made
//! meanwhile wait in its queue for the next child instead of failing. The
//! secret travels in the child's environment, never on its command line.
//! A child that exits with `EX_CONFIG` (its data folder needs more open
//! files than the limit allows) is not restarted: a restart would fail the
//! same way, and the limit is raised only by restarting `serve` itself.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::files::{self, EX_CONFIG, FileBudget};
use crate::config::LbasedbSettings;
use crate::metrics::Metrics;

/// The first wait before a restart, doubled after each quick failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const LAST_BACKOFF: Duration = Duration::from_secs(10);
/// A child that ran this long before it died starts the backoff over.
const STABLE: Duration = Duration::from_secs(60);

/// How the child is doing, for `/readyz` and for the proxy, which refuses
/// at once (503) rather than queue requests for a child that cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Running {
        pid: u32,
    },
    /// Died; starting again after a pause.
    Restarting,
    /// Cannot start (a configuration error): not retried.
    Failed(String),
    Stopped,
}

#[derive(Debug)]
pub struct Status {
    state: Mutex<State>,
    restarts: std::sync::atomic::AtomicU64,
}

impl Status {
    fn set(&self, state: State) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    pub fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Why the upstream cannot serve, if it has failed for good.
    pub fn failure(&self) -> Option<String> {
        match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            State::Failed(why) => Some(why.clone()),
            _ => None,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self.state() {
            State::Running { pid } => Some(pid),
            _ => None,
        }
    }

    /// How many times the child was started again after dying.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The supervised child: where it listens, its state, and how to stop it.
pub struct Supervised {
    addr: SocketAddr,
    status: Arc<Status>,
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// What the child is started with.
pub struct Child {
    /// The binary to run (`serve`'s own, unless given).
    pub program: PathBuf,
    pub settings: LbasedbSettings,
    /// How long a stopping child may finish its requests.
    pub shutdown_timeout: Duration,
}

impl Supervised {
    /// Binds a loopback port and starts the child on it.
    pub fn start(child: Child, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let status =
            Arc::new(Status { state: Mutex::new(State::Restarting), restarts: Default::default() });
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(supervise(listener, child, status.clone(), stop.clone(), metrics));
        Ok(Self { addr, status, stop, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn status(&self) -> Arc<Status> {
        self.status.clone()
    }

    /// Stops the child (SIGTERM, then its shutdown timeout, then SIGKILL)
    /// and the supervision.
    pub async fn stop(self) {
        self.stop.notify_one();
        let _ = self.task.await;
    }
}

async fn supervise(
    listener: TcpListener,
    child: Child,
    status: Arc<Status>,
    stop: Arc<Notify>,
    metrics: Arc<Metrics>,
) {
    let connections = child.settings.max_connections as u64;
    let mut backoff = FIRST_BACKOFF;
    loop {
        // The child inherits this process's limit: the same rule, checked
        // here first, says why it could not start.
        let budget = FileBudget::new(files::open_file_limit(), connections);
        if let Err(why) = files::preflight(&child.settings.data, &budget) {
            tracing::error!("{why}");
            fail(&status, TOO_MANY_FILES, &stop).await;
            return;
        }
        let started = Instant::now();
        match spawn(&listener, &child) {
            Ok(mut process) => {
                status.set(State::Running { pid: process.id().unwrap_or(0) });
                tokio::select! {
                    exited = process.wait() => {
                        let code = exited.as_ref().ok().and_then(std::process::ExitStatus::code);
                        if code == Some(i32::from(EX_CONFIG)) {
                            fail(&status, TOO_MANY_FILES, &stop).await;
                            return;
                        }
                        tracing::error!(
                            "the embedded Lbasedb exited ({}); restarting it in {backoff:?}",
                            exited.map_or_else(|e| e.to_string(), |s| s.to_string())
                        );
                    }
                    () = stop.notified() => {
                        terminate(process, child.shutdown_timeout).await;
                        status.set(State::Stopped);
                        return;
                    }
                }
            }
            Err(err) => {
                tracing::error!("cannot start the embedded Lbasedb: {err}; retrying in {backoff:?}")
            }
        }
        status.set(State::Restarting);
        status.restarts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics.upstream_restarted();
        if started.elapsed() > STABLE {
            backoff = FIRST_BACKOFF;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.notified() => {
                status.set(State::Stopped);
                return;
            }
        }
        backoff = (backoff * 2).min(LAST_BACKOFF);
    }
}

/// What `/readyz` and the proxy say of a data folder too big for the
/// open-file limit (the log has the numbers and the folder).
const TOO_MANY_FILES: &str = "The embedded Lbasedb cannot start: its data folder holds more \
    columns than the open-file limit lets it open (the server's log says how to raise it)";

/// A failure that restarting cannot mend: said once, then nothing more is
/// tried until `serve` stops.
async fn fail(status: &Status, why: &str, stop: &Notify) {
    tracing::error!("{why}. The proxy answers 503 until lbasedb-proxy is restarted.");
    status.set(State::Failed(why.to_owned()));
    stop.notified().await;
    status.set(State::Stopped);
}

fn spawn(listener: &TcpListener, child: &Child) -> std::io::Result<tokio::process::Child> {
    let socket = std::os::fd::OwnedFd::from(listener.try_clone()?);
    let settings = &child.settings;
    let mut command = tokio::process::Command::new(&child.program);
    command
        .args(args(settings))
        .env_clear()
        .stdin(Stdio::from(socket))
        .stdout(Stdio::null())
        // A process group of its own: a Ctrl-C at the terminal reaches
        // `serve`, which stops the child once its requests are done.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(secret) = &settings.secret {
        command.env("LBASEDB_SECRET", secret);
    }
    // What it would say at `info` (its open-file limit, its port), `serve`
    // says itself; its warnings and errors are worth a line.
    command.env("RUST_LOG", std::env::var_os("RUST_LOG").unwrap_or_else(|| "warn".into()));
    command.spawn()
}

/// The child's command line: everything but the secret.
fn args(settings: &LbasedbSettings) -> Vec<OsString> {
    let limits = &settings.limits;
    let mut args: Vec<OsString> = vec!["lbasedb".into(), "--listen-stdin".into()];
    let numbers = [
        ("payload-limit", settings.payload_limit),
        ("workers", settings.workers as u64),
        ("max-connections", settings.max_connections as u64),
        ("max-rows-per-read", limits.max_rows_per_read),
        ("max-feed-rows", limits.max_feed_rows),
        ("max-read-bytes", limits.max_read_bytes),
        ("max-write-bytes", limits.max_write_bytes),
        ("max-read-columns", limits.max_read_columns),
        ("max-column-width", limits.max_column_width),
        ("max-columns-per-feed", limits.max_columns_per_feed),
        ("max-json-body", limits.max_json_body),
        ("max-bytes-in-flight", limits.max_bytes_in_flight),
        ("min-free-space", limits.min_free_space),
    ];
    for (name, value) in numbers {
        args.push(format!("--{name}").into());
        args.push(value.to_string().into());
    }
    args.push("--data".into());
    args.push(settings.data.clone().into_os_string());
    args
}

/// SIGTERM (the child finishes its requests), then SIGKILL past `timeout`.
async fn terminate(mut process: tokio::process::Child, timeout: Duration) {
    if let Some(pid) = process.id().and_then(|pid| rustix::process::Pid::from_raw(pid as i32)) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(timeout, process.wait()).await.is_err() {
        tracing::warn!("the embedded Lbasedb did not stop within {timeout:?}; killing it");
        let _ = process.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Lbasedb {
        #[command(flatten)]
        settings: LbasedbSettings,
    }

    #[test]
    fn the_child_is_given_every_limit() {
        let limits = crate::config::Limits {
            max_rows_per_read: 1,
            max_feed_rows: 2,
            max_read_bytes: 3,
            max_write_bytes: 4,
            max_read_columns: 5,
            max_column_width: 6,
            max_columns_per_feed: 7,
            max_json_body: 8,
            max_bytes_in_flight: 9,
            min_free_space: 13,
        };
        let settings = LbasedbSettings {
            bind: "127.0.0.1:0".into(),
            data: "/some/where".into(),
            payload_limit: 10,
            workers: 11,
            max_connections: 12,
            limits,
            secret: Some("a secret of the child's own".into()),
            open: false,
            unlocked: false,
            listen_stdin: true,
        };
        let given =
            Lbasedb::try_parse_from(args(&settings)).expect("the child's arguments").settings;
        assert_eq!(given.limits, limits);
        assert_eq!((given.payload_limit, given.workers, given.max_connections), (10, 11, 12));
        assert_eq!(given.data, settings.data);
        assert!(given.listen_stdin);
        assert_eq!(given.secret, None, "never on the command line");
    }
}
