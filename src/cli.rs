//! The command line: `serve` (what host.json starts), `sync` (one run, `--dry-run` for the plan), `demo`,
//! `check-config`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::Application;
use crate::config::{self, Environment, ServerSettings, Settings};
use crate::sync::{RunOutcome, RunRequest, SyncService, Trigger};

#[derive(Debug, Parser)]
#[command(
    name = "certsync",
    version,
    about = "Keeps Microsoft Entra certificateUserIds in Tenant B in step with Tenant A's users."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Azure Functions custom handler on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT (host.json runs this).
    Serve,
    /// Run one full sync of every pair now, with the same settings, and print its report.
    Sync {
        /// Read and plan, print the plan, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply removals even above the safety threshold (REMOVAL_THRESHOLD_USERS / _PERCENT).
        #[arg(long)]
        allow_mass_removal: bool,
        /// Print the JSON report instead of the text log.
        #[arg(long)]
        json: bool,
    },
    /// Show what the tool does, against a built-in Graph emulator: no Azure account needed.
    Demo,
    /// Load and check the settings, print what is wrong (or a summary), and exit.
    CheckConfig,
    /// Print the certificateUserIds values a certificate (PEM or DER file) yields, for each binding and reading.
    CertificateIds {
        /// The certificate file.
        path: std::path::PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init(config::log_format(&Environment));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

fn load_settings() -> Result<Settings, ExitCode> {
    Settings::from_env().map_err(|error| {
        // stderr: the Functions host logs it as an error, which a configuration failure is.
        eprintln!("certsync cannot start: {error}");
        ExitCode::from(2)
    })
}

async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve => {
            let server = ServerSettings::load(&Environment);
            let settings = Settings::from_env();
            // Report every problem of both kinds together.
            let (settings, server) = match (settings, server) {
                (Ok(settings), Ok(server)) => (settings, server),
                (settings, server) => {
                    let mut problems = Vec::new();
                    if let Err(e) = server {
                        problems.extend(e.problems);
                    }
                    if let Err(e) = settings {
                        problems.extend(e.problems);
                    }
                    eprintln!("certsync cannot start: {}", config::ConfigError { problems });
                    return ExitCode::from(2);
                }
            };
            let app = match Application::build(settings, server).await {
                Ok(app) => app,
                Err(error) => {
                    eprintln!("certsync cannot start: {error:#}");
                    return ExitCode::FAILURE;
                }
            };
            match app.run_until_stopped().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("the server stopped with an error: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Sync { dry_run, allow_mass_removal, json } => {
            let settings = match load_settings() {
                Ok(s) => s,
                Err(code) => return code,
            };
            let service = match SyncService::new(std::sync::Arc::new(settings)) {
                Ok(s) => s,
                Err(error) => {
                    eprintln!("certsync cannot start: {error}");
                    return ExitCode::FAILURE;
                }
            };
            let report = service
                .run(RunRequest { trigger: Trigger::Cli, dry_run, allow_mass_removal, invocation_id: None })
                .await;
            if json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                println!("{}", report.to_text());
            }
            match report.outcome {
                RunOutcome::Failed { .. } => ExitCode::FAILURE,
                RunOutcome::CompletedWithFailures => ExitCode::from(3),
                _ => ExitCode::SUCCESS,
            }
        }
        Command::Demo => crate::demo::run().await,
        Command::CheckConfig => match load_settings() {
            Ok(settings) => {
                println!(
                    "Settings are valid: {} pair(s), matching on {}, templates {}.",
                    settings.sync.pairs.len(),
                    settings.sync.match_key,
                    settings.sync.templates.iter().map(|t| t.to_string()).collect::<Vec<_>>().join("; ")
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::CertificateIds { path, json } => crate::certificates::run_cli(&path, json),
    }
}
