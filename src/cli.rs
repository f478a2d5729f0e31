//! The command line, shaped like Django's `manage.py`: `serve` is what runs
//! when no subcommand is given.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{LbasedbSettings, Settings};
use crate::startup::Application;

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
enum Command {
    /// Serve the proxy and the admin site (the default).
    Serve(Settings),
    /// Run only the embedded Lbasedb-compatible server.
    Lbasedb(LbasedbSettings),
}

/// Used when no subcommand is given, so that `lbasedb-proxy` alone still
/// reads `serve`'s settings from the environment.
#[derive(Debug, Parser)]
#[command(name = "lbasedb-proxy")]
struct ServeDefaults {
    #[command(flatten)]
    settings: Settings,
}

pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let command = cli
        .command
        .unwrap_or_else(|| Command::Serve(ServeDefaults::parse_from(["lbasedb-proxy"]).settings));
    let result = actix_web::rt::System::new().block_on(async move {
        match command {
            Command::Serve(settings) => {
                let app = Application::build(settings).await?;
                app.run_until_stopped().await
            }
            Command::Lbasedb(settings) => {
                let server = crate::lbasedb::EmbeddedServer::start(&settings).await?;
                log::info!(
                    "Lbasedb-compatible server listening on http://{}",
                    server.addr()
                );
                server.run_until_stopped().await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lbasedb-proxy: {err}");
            ExitCode::FAILURE
        }
    }
}
