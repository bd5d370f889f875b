//! The command line: `serve` (what host.json starts), `sync` (one run, `--dry-run` for the plan), `demo` (feature
//! `demo`), `check-config`, `subscriptions` (Graph change-notification subscriptions), `certificate-ids`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::Application;
use crate::config::{self, Environment, ServerSettings, Settings};
use crate::sync::{RunOutcome, RunRequest, Trigger};
use crate::telemetry::LogTarget;

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
        /// Start a new ownership ledger although one existed and is now missing. Only when it cannot be restored
        /// (docs/operations.md): values written before are then never removed by this tool.
        #[arg(long)]
        accept_new_ledger: bool,
        /// Stop starting writes after this many seconds and report the run as `continued`, with what is left (run
        /// again to go on). The Functions triggers do this with SYNC_SOFT_DEADLINE_MINUTES and continue by themselves.
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
        soft_deadline: Option<std::time::Duration>,
        /// Print the JSON report instead of the text log.
        #[arg(long)]
        json: bool,
        /// Keep the ledger, lease and run logs in this local folder instead of the configured blob storage: for
        /// trying the tool, or a one-off run on a workstation. The Function App always uses blob storage, so a
        /// ledger kept here is not the one the Function App sees.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<std::path::PathBuf>,
    },
    /// Show what the tool does, against a built-in Graph emulator: no Azure account needed.
    #[cfg(feature = "demo")]
    Demo,
    /// Load and check the settings, print what is wrong (or a summary), and exit.
    CheckConfig,
    /// Create, adopt, renew or recreate the Graph change-notification subscriptions of every configured group (what
    /// the timer does after each sync when WEBHOOK_NOTIFICATION_URL is set), then print them.
    Subscriptions {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
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
    // Under the Functions host stdout is the log (stderr is recorded as errors); for the CLI commands stdout carries the
    // result (the report, the demo's story, --json), so their logs go to stderr as command-line tools do.
    let log_to = if matches!(cli.command, Command::Serve) { LogTarget::Stdout } else { LogTarget::Stderr };
    crate::telemetry::init(config::log_format(&Environment), log_to);
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
        Command::Sync { dry_run, allow_mass_removal, accept_new_ledger, soft_deadline, json, state_dir } => {
            let settings = match load_settings() {
                Ok(s) => s,
                Err(code) => return code,
            };
            let stores = state_dir.map(|dir| {
                let store = std::sync::Arc::new(crate::storage::LocalDirStore::new(dir));
                crate::storage::Stores { state: store.clone(), logs: store }
            });
            let service = match crate::app::sync_service(std::sync::Arc::new(settings), stores) {
                Ok(s) => s,
                Err(error) => {
                    eprintln!("certsync cannot start: {error}");
                    return ExitCode::FAILURE;
                }
            };
            let report = service
                .run(RunRequest {
                    trigger: Trigger::Cli,
                    dry_run,
                    allow_mass_removal,
                    accept_new_ledger,
                    invocation_id: None,
                    soft_deadline,
                    wait_for_lease: false,
                    queues_follow_ups: false,
                })
                .await;
            if json {
                // Streamed: at 100,000 users the report is tens of MB of JSON.
                let mut stdout = std::io::stdout().lock();
                let written = serde_json::to_writer_pretty(&mut stdout, &report)
                    .map_err(std::io::Error::from)
                    .and_then(|()| std::io::Write::write_all(&mut stdout, b"\n"));
                if let Err(error) = written {
                    tracing::error!(%error, "the report could not be written to stdout");
                }
            } else {
                println!("{}", report.to_text());
            }
            match report.outcome {
                RunOutcome::Failed { .. } => ExitCode::FAILURE,
                RunOutcome::CompletedWithFailures => ExitCode::from(3),
                // Stopped at --soft-deadline with users left: run again to continue.
                RunOutcome::Continued { .. } => ExitCode::from(4),
                _ => ExitCode::SUCCESS,
            }
        }
        #[cfg(feature = "demo")]
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
        Command::Subscriptions { json } => subscriptions(json).await,
        Command::CertificateIds { path, json } => crate::certificates::run_cli(&path, json),
    }
}

/// `certsync subscriptions`: one maintenance pass, then the records. Exit 1 when something could not be done.
async fn subscriptions(json: bool) -> ExitCode {
    let settings = match load_settings() {
        Ok(s) => s,
        Err(code) => return code,
    };
    if settings.webhook.notification_url.is_none() {
        eprintln!(
            "certsync subscriptions: set {} to the function-webhook URL (with its ?code= key) first",
            config::names::WEBHOOK_NOTIFICATION_URL
        );
        return ExitCode::from(2);
    }
    let service = match crate::app::sync_service(std::sync::Arc::new(settings), None) {
        Ok(s) => s,
        Err(error) => {
            eprintln!("certsync cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = service.ensure_subscriptions().await;
    if json {
        let records: Vec<serde_json::Value> = outcome
            .records
            .iter()
            .map(|(side, entry)| serde_json::json!({"side": side, "subscription": entry}))
            .collect();
        let out =
            serde_json::json!({"subscriptions": records, "actions": outcome.actions, "problems": outcome.problems});
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print!("{outcome}");
    }
    if outcome.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Seconds, fractions allowed (`--soft-deadline 90`, `--soft-deadline 0.5`).
fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds.is_finite() => Ok(std::time::Duration::from_secs_f64(seconds)),
        _ => Err(format!("must be a number of seconds above 0, not {text:?}")),
    }
}
