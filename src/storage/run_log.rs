//! Run logs: the audit trail of every sync run, one text log and one JSON report per run, named like the old runbook's
//! `yyyy/MM/dd/log_yyyyMMddHHmmss.log` plus the run id (so two runs in the same second never collide).
//!
//! Uploading a log must never fail the run it documents: it is retried with backoff, and if storage stays unavailable
//! the full text goes to stdout instead, each line prefixed with [`RUN_LOG_STDOUT_PREFIX`] so it can be found in
//! Application Insights (the Functions host logs a custom handler's stdout as traces):
//! `traces | where message startswith "certsync-run-log"`.

use std::{io::Write, time::Duration};

use time::{OffsetDateTime, UtcOffset};

use super::{BlobStore, StorageError, WriteBody};

/// Prefix of every stdout line written when a run log could not be uploaded.
pub const RUN_LOG_STDOUT_PREFIX: &str = "certsync-run-log";

/// `("yyyy/MM/dd/log_yyyyMMddHHmmss_<run id>.log", "…same stem….json")`, in UTC. Names sort by start time; the run id
/// keeps runs of the same second apart (characters other than letters, digits, `-` and `_` become `-`).
pub fn run_log_names(started: OffsetDateTime, run_id: &str) -> (String, String) {
    let t = started.to_offset(UtcOffset::UTC);
    let (year, month, day) = (t.year(), u8::from(t.month()), t.day());
    let (hour, minute, second) = (t.hour(), t.minute(), t.second());
    let mut id: String =
        run_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    if id.is_empty() {
        id.push_str("run");
    }
    let stem =
        format!("{year:04}/{month:02}/{day:02}/log_{year:04}{month:02}{day:02}{hour:02}{minute:02}{second:02}_{id}");
    (format!("{stem}.log"), format!("{stem}.json"))
}

/// Bounded retries with exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total (at least one is always made).
    pub max_attempts: u32,
    /// Pause after the first failure; doubled after each further failure.
    pub initial_backoff: Duration,
    /// Upper bound of a single pause.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 4, initial_backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(10) }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Where the run log ended up.
#[must_use]
#[derive(Debug)]
pub enum UploadOutcome {
    /// Both blobs were written.
    Uploaded { log_blob: String, json_blob: String },
    /// Storage stayed unavailable: the full text log was printed to stdout instead.
    FellBackToStdout { error: StorageError },
}

/// Upload the run's text log and JSON report; on final failure print the text to stdout. Never fails, never panics.
/// Each body is written out while it is uploaded (see [`WriteBody`]), never held whole: at 100,000 users they are
/// tens of MB.
pub async fn upload_run_log(
    store: &dyn BlobStore,
    started: OffsetDateTime,
    run_id: &str,
    text: WriteBody,
    json: WriteBody,
    retry: RetryPolicy,
) -> UploadOutcome {
    upload_run_log_with_fallback(store, started, run_id, text, json, retry, &mut std::io::stdout()).await
}

/// [`upload_run_log`] with the fallback sink injected (stdout in production; a buffer in tests).
#[tracing::instrument(skip_all, fields(blob = tracing::field::Empty, run_id = %run_id))]
pub async fn upload_run_log_with_fallback(
    store: &dyn BlobStore,
    started: OffsetDateTime,
    run_id: &str,
    text: WriteBody,
    json: WriteBody,
    retry: RetryPolicy,
    fallback: &mut (dyn Write + Send),
) -> UploadOutcome {
    let (log_blob, json_blob) = run_log_names(started, run_id);
    tracing::Span::current().record("blob", log_blob.as_str());

    let uploaded = async {
        put_with_retry(store, &log_blob, &text, "text/plain; charset=utf-8", retry).await?;
        put_with_retry(store, &json_blob, &json, "application/json", retry).await
    }
    .await;

    match uploaded {
        Ok(()) => UploadOutcome::Uploaded { log_blob, json_blob },
        Err(error) => {
            let reason = crate::error_chain(&error);
            tracing::error!(error = %reason, "run log upload failed; printing the run log to stdout");
            // Printing is best effort: if stdout is gone too there is nowhere left to report to.
            let _ = print_run_log(fallback, run_id, &log_blob, &reason, &text);
            UploadOutcome::FellBackToStdout { error }
        }
    }
}

async fn put_with_retry(
    store: &dyn BlobStore,
    name: &str,
    body: &WriteBody,
    content_type: &str,
    retry: RetryPolicy,
) -> Result<(), StorageError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match store.put_streamed(name, content_type, body.clone()).await {
            Ok(()) => return Ok(()),
            Err(error) if attempt < retry.max_attempts && error.is_transient() => {
                let pause = retry.backoff(attempt);
                tracing::warn!(blob = %name, attempt, error = %crate::error_chain(&error), ?pause, "run log upload failed; retrying");
                tokio::time::sleep(pause).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Prints a run log that could not be stored (why, then its text, each line prefixed with [`RUN_LOG_STDOUT_PREFIX`]
/// and the run id): the upload's fallback, and the only record of a run that could not reach storage at all.
pub fn print_run_log(
    out: &mut (dyn Write + Send),
    run_id: &str,
    log_blob: &str,
    reason: &str,
    text: &WriteBody,
) -> std::io::Result<()> {
    let prefix = format!("{RUN_LOG_STDOUT_PREFIX} {run_id}:");
    writeln!(out, "{prefix} run log {log_blob} could not be uploaded ({reason}); its full text follows")?;
    let mut whole = Vec::new();
    text(&mut whole)?;
    for line in String::from_utf8_lossy(&whole).lines() {
        writeln!(out, "{prefix} {line}")?;
    }
    writeln!(out, "{prefix} end of run log {log_blob}")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn names_follow_the_runbook_layout_in_utc() {
        let (log, json) = run_log_names(datetime!(2024-03-05 01:02:03 +02:00), "7f3a/x y");
        assert_eq!(log, "2024/03/04/log_20240304230203_7f3a-x-y.log");
        assert_eq!(json, "2024/03/04/log_20240304230203_7f3a-x-y.json");
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        let pauses: Vec<u128> = (1..=5).map(|attempt| policy.backoff(attempt).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 500, 500]);
    }
}
