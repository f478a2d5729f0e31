//! The command line, shaped like Django's `manage.py`: `serve` is what runs
//! when no subcommand is given.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{DbArgs, LbasedbSettings, Settings};
use crate::startup::Application;

mod manage;

/// What a new user or group holds: permissions everywhere and on one feed.
#[derive(Debug, Args)]
pub struct HoldingArgs {
    /// A permission held everywhere, e.g. lbasedb.view_data (repeatable).
    #[arg(long = "perm")]
    pub perms: Vec<String>,
    /// A permission held for one feed, e.g. lbasedb.view_data=sensors; reads
    /// also for some columns and rows, lbasedb.view_data=sensors[t,temp]@-100000..
    /// (repeatable).
    #[arg(long = "grant")]
    pub grants: Vec<String>,
}

#[derive(Debug, Parser)]
#[command(
    name = "lbasedb-proxy",
    version,
    about = "Authenticating streaming proxy and admin site for Lbasedb"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve the proxy and the admin site (the default).
    Serve(Box<Settings>),
    /// Run only the embedded Lbasedb-compatible server.
    Lbasedb(LbasedbSettings),
    /// Apply the database migrations.
    Migrate(DbArgs),
    /// Create a superuser (interactive; --noinput reads
    /// LBASEDB_PROXY_SUPERUSER_PASSWORD).
    Createsuperuser {
        #[arg(long)]
        username: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        noinput: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Change a user's password (ends their sessions).
    Changepassword {
        username: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Two-factor login: `2fa reset USER` turns it off for a lost device
    /// (the user sets it up again; at the next login where REQUIRE_2FA
    /// covers them).
    #[command(name = "2fa", subcommand)]
    TwoFactor(TwoFactorCommand),
    /// Link a user to their identity at an OpenID provider: a person by the
    /// provider's `sub` (an existing local user who will log in with single
    /// sign-on), or a service user to a client-credentials client.
    Linkidentity {
        username: String,
        /// The provider's issuer URL.
        #[arg(long)]
        issuer: String,
        /// The person's `sub` at the provider.
        #[arg(long, conflicts_with = "client", required_unless_present = "client")]
        subject: Option<String>,
        /// The client's id, for its client-credentials JWTs.
        #[arg(long)]
        client: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Create a user; the password comes from LBASEDB_PROXY_PASSWORD or a prompt.
    Createuser {
        username: String,
        #[arg(long, default_value = "")]
        email: String,
        #[arg(long)]
        staff: bool,
        #[arg(long)]
        superuser: bool,
        /// A group to join (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        #[command(flatten)]
        holds: HoldingArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Create a group with permissions and feed grants.
    Creategroup {
        name: String,
        #[command(flatten)]
        holds: HoldingArgs,
        /// Rows or bytes each member may write a day, e.g. 10000000rows/day
        /// or 2GB/day (give both with two flags); overrides WRITE_QUOTA.
        #[arg(long = "write-quota")]
        write_quota: Vec<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Create an API token for a user; prints it alone on the last line.
    Createtoken {
        username: String,
        #[arg(long, default_value = "cli")]
        name: String,
        /// A lifetime such as "30d" or "12h" (default: no expiry).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        /// Keep only this permission of the user's (CODENAME, or a grant as
        /// CODENAME=FEED or CODENAME=FEED[COLUMNS]@FROM..TO, which only
        /// narrows what the user holds); repeatable. None: all of them.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Allow the token only from this address or network; repeatable.
        #[arg(long = "allow-ip")]
        allow_ips: Vec<String>,
        /// Most live tokens the user may have (as `serve` counts them).
        #[arg(long, env = "MAX_TOKENS_PER_USER", default_value_t = crate::auth::users::DEFAULT_MAX_TOKENS_PER_USER)]
        max_tokens_per_user: usize,
        /// The longest the token may live (as `serve` holds every new one).
        #[arg(long, env = "TOKEN_MAX_LIFETIME", value_parser = crate::config::parse_lifetime)]
        token_max_lifetime: Option<std::time::Duration>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print users (with password hashes), groups, permissions, grants and
    /// token digests as JSON, for backups and moving between machines.
    Dumpdata {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Import users (with their password hashes), groups, memberships,
    /// permissions and DRF tokens from the Django proxy's database: the path
    /// of its SQLite file. All or nothing; a second run changes nothing.
    Importdjango {
        source: String,
        /// Overwrite a user of the same name whose password differs.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Load what `dumpdata` printed (all or nothing).
    Loaddata {
        file: std::path::PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke the token with this prefix (as shown by the admin, e.g. lbp_AbCd1234).
    Revoketoken {
        prefix: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Used when no subcommand is given, so that `lbasedb-proxy` alone still
/// reads `serve`'s settings from the environment.
#[derive(Debug, Parser)]
#[command(name = "lbasedb-proxy")]
struct ServeDefaults {
    #[command(flatten)]
    settings: Settings,
}

/// Logs to standard error, one line an event, filtered by `RUST_LOG`
/// (`info` when unset; a directive that does not parse is left out).
/// Lines are written by a thread of their own, in batches (`logwriter`),
/// so that the access log's line per request costs a worker neither the
/// lock on standard error nor a system call nor a wake-up. The guard
/// writes what is left when `main` returns.
fn init_logging() -> Option<crate::logwriter::Guard> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing::level_filters::LevelFilter::INFO.into())
        .from_env_lossy();
    let ansi = std::io::stderr().is_terminal();
    match crate::logwriter::start(std::io::stderr(), "log writer") {
        Ok((writer, guard)) => {
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(writer)
                .with_ansi(ansi)
                .init();
            Some(guard)
        }
        // No thread to be had: each line written by its worker.
        Err(_) => {
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .init();
            None
        }
    }
}

pub fn main() -> ExitCode {
    // Written out (`Guard`'s drop) before a fatal error is printed, so that
    // the error stays the log's last line.
    let mut log = init_logging();
    let cli = Cli::parse();
    let command = cli.command.unwrap_or_else(|| {
        Command::Serve(Box::new(ServeDefaults::parse_from(["lbasedb-proxy"]).settings))
    });
    if !matches!(command, Command::Serve(_) | Command::Lbasedb(_)) {
        return match manage::run(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                drop(log.take());
                eprintln!("lbasedb-proxy: {err}");
                ExitCode::FAILURE
            }
        };
    }
    raise_open_file_limit();
    if let Command::Lbasedb(settings) = &command {
        private_files(settings.listen_stdin);
    }
    let result = actix_web::rt::System::new().block_on(async move {
        match command {
            Command::Serve(settings) => {
                let app = Application::build(*settings).await?;
                app.run_until_stopped().await
            }
            Command::Lbasedb(settings) => {
                let server = crate::lbasedb::EmbeddedServer::start(&settings, true).await?;
                tracing::info!("Lbasedb-compatible server listening on http://{}", server.addr());
                server.run_until_stopped().await
            }
            _ => unreachable!("management commands run above"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            drop(log.take());
            eprintln!("lbasedb-proxy: {err}");
            if crate::lbasedb::files::TooManyFiles::is(&err) {
                // Restarting would fail the same way: say so to whoever
                // supervises this process (systemd's
                // RestartPreventExitStatus=78, `serve`'s own supervisor).
                return ExitCode::from(crate::lbasedb::files::EX_CONFIG);
            }
            ExitCode::FAILURE
        }
    }
}

/// The storage keeps a file open per column and the proxy one per
/// connection: the soft open-file limit (often 1024) is raised to the hard
/// one, and said.
fn raise_open_file_limit() {
    let (now, before) = crate::lbasedb::files::raise_open_file_limit();
    if now != before {
        tracing::info!("open-file limit raised from {before} to {now}");
    } else {
        tracing::info!("open-file limit: {now}");
    }
}

/// The storage makes its folders and files with the process's umask: only
/// this user may read what `lbasedb` stores. Run by `serve`, it also stops
/// when `serve` does, however `serve` ends.
fn private_files(supervised: bool) {
    use rustix::fs::Mode;
    rustix::process::umask(Mode::from_bits_truncate(0o077));
    let follow =
        || rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
    if supervised && let Err(err) = follow() {
        tracing::warn!("cannot follow the parent process: {err}");
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum TwoFactorCommand {
    /// Turn two-factor login off for USER (its secret and recovery codes go).
    Reset {
        username: String,
        #[command(flatten)]
        db: DbArgs,
    },
}
