//! Tracing set-up. Under the Functions host everything goes to **stdout**: the host logs a custom handler's stderr as
//! errors (functions-custom-handlers), which would page someone for every informational line. CLI commands log to
//! stderr, because their stdout is their result.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// The custom handler under the Functions host.
    Stdout,
    /// CLI commands, whose stdout is their result.
    Stderr,
}

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(format: LogFormat, target: LogTarget) {
    let filter = EnvFilter::try_from_env("LOG_LEVEL")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,azure_core=warn,azure_identity=warn,hyper=warn,reqwest=warn"));
    let (writer, terminal) = match target {
        LogTarget::Stdout => {
            (tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stdout), std::io::stdout().is_terminal())
        }
        LogTarget::Stderr => {
            (tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr), std::io::stderr().is_terminal())
        }
    };
    // Colours only for a person at a terminal: the host stores each line it reads from the handler verbatim
    // (`WorkerProcess.OnOutputDataReceived` in Azure/azure-functions-host), so escape codes would reach Application
    // Insights as `\u001b[32m` noise in every message.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(terminal);
    let result = match format {
        // Application Insights ingests stdout line by line: one JSON object per line, span fields flattened in.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(true).try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
    drop(result);
}
