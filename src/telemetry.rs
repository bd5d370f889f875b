//! Tracing set-up. Everything goes to **stdout**: the Functions host logs a custom handler's stderr as errors
//! (functions-custom-handlers), which would page someone for every informational line.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("LOG_LEVEL")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,azure_core=warn,azure_identity=warn,hyper=warn,reqwest=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout);
    let result = match format {
        // Application Insights ingests stdout line by line: one JSON object per line, span fields flattened in.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(true).try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
    drop(result);
}
