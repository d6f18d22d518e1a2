//! `grasp-sync`: the GRASP-02 proactive sync daemon.
//!
//! Parses the configuration (exit 2 with a one-line error naming the option
//! when it is unusable), sets up `tracing` from `RUST_LOG`, then runs the
//! daemon until SIGINT/SIGTERM (exit 0 after a clean shutdown).
//! `grasp-sync status` instead prints a running daemon's status (see
//! [`status_command`]).

mod clock;
mod config;
mod connector;
mod daemon;
mod dial;
mod duration;
mod http;
mod http_response;
mod metrics;
mod progress_log;
mod relay_info;
mod served_relay;
mod status_command;
mod store;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // `grasp-sync status …` reads a running daemon; everything else runs one.
    if std::env::args_os().nth(1).is_some_and(|a| a == "status") {
        return status_command::main(std::env::args_os().skip(1));
    }
    let cli = match config::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            eprintln!("grasp-sync: {first}");
            return ExitCode::from(2);
        }
    };
    let config = match config::resolve(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("grasp-sync: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()).init();
    match daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "grasp-sync failed");
            eprintln!("grasp-sync: {e}");
            ExitCode::FAILURE
        }
    }
}
