//! `graph-emulator serve`: runs the emulator until Ctrl-C and prints where it listens.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use graph_emulator::scenario::Scenario;
use graph_emulator::{Emulator, EmulatorOptions, Refill, Throttling};

#[derive(Parser)]
#[command(version, about = "An in-memory Microsoft Graph + Entra ID emulator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP and HTTPS on 127.0.0.1 until interrupted.
    Serve {
        /// A scenario (JSON) to load at start.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Port of the HTTP listener (0: any); HTTPS takes any free port.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Latency added to every Graph request, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Turn throttling off (the default follows Graph's documented budgets).
        #[arg(long)]
        no_throttling: bool,
        /// How the budgets refill: continuous, sliding-window, fixed-window or fixed-window:<phase seconds>.
        #[arg(long, default_value = "continuous")]
        refill: Refill,
        /// Where to write the CA certificate (PEM); default: a file in the temporary directory.
        #[arg(long)]
        ca_out: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let Command::Serve { scenario, port, latency_ms, no_throttling, refill, ca_out } = Cli::parse().command;
    let options = EmulatorOptions {
        latency: Duration::from_millis(latency_ms),
        throttling: if no_throttling { Throttling::Off } else { Throttling::Graph },
        refill,
        ..EmulatorOptions::default()
    };
    let emulator = Emulator::start_on(options, port).await?;
    if let Some(path) = scenario {
        let text = std::fs::read_to_string(&path).with_context(|| format!("Failed to read {}", path.display()))?;
        let scenario: Scenario =
            serde_json::from_str(&text).with_context(|| format!("Failed to parse the scenario {}", path.display()))?;
        emulator
            .directory()
            .load(&scenario)
            .with_context(|| format!("Failed to load the scenario {}", path.display()))?;
    }
    let ca_path =
        ca_out.unwrap_or_else(|| std::env::temp_dir().join(format!("graph-emulator-ca-{}.pem", std::process::id())));
    std::fs::write(&ca_path, emulator.ca_pem()).with_context(|| format!("Failed to write {}", ca_path.display()))?;
    println!("http_url={}", emulator.http_url());
    println!("https_url={}", emulator.https_url());
    println!("ca_pem={}", ca_path.display());
    println!("IDENTITY_ENDPOINT={}", emulator.managed_identity_endpoint());
    println!("IDENTITY_HEADER={}", emulator.managed_identity_header());
    println!("AZURE_AUTHORITY_HOST={}", emulator.authority_host());
    tokio::signal::ctrl_c().await.context("Failed to wait for Ctrl-C")?;
    emulator.shutdown().await;
    Ok(())
}
