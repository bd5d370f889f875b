//! Counters of what one client sent to Graph and how Graph pushed back, for the run report: an operator reading it
//! learns how close a run came to the tenant's throttling budget [throttling, throttling-limits].

use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

use serde::Serialize;

/// A snapshot of a client's counters. Requests are counted as sent, retries included, because retries cost
/// resource units too.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphMetrics {
    /// GET requests: pages, `$count`s and `$batch` GET items.
    pub reads: u64,
    /// Write requests (`$batch` PATCH items).
    pub writes: u64,
    /// `$batch` POSTs.
    pub batches: u64,
    /// Items carried by those `$batch` POSTs.
    pub batch_items: u64,
    /// Requests or batch items sent again after a throttled, unavailable or broken attempt.
    pub retries: u64,
    /// Responses (or batch items) with status 429, 503 or 504.
    pub throttled_responses: u64,
    /// Connection failures and timeouts.
    pub transport_errors: u64,
    /// Time spent waiting before retries (`Retry-After` or backoff), in milliseconds, summed over requests waiting
    /// at the same time (so it can exceed the run's duration).
    pub throttle_wait_ms: u64,
    /// Time `$batch` chunks waited for the app's budget before they were sent (the pacing that keeps 429s away), in
    /// milliseconds, summed over chunks waiting at the same time.
    pub paced_wait_ms: u64,
    /// Distinct access tokens the credential handed out: 1 for a short run, more when a token was renewed. The
    /// credential caches tokens, so this is the number of token requests it made, not the number of lookups.
    pub tokens_acquired: u64,
    /// The highest `x-ms-throttle-limit-percentage` seen, as sent: the share of a limit used, 0.8 to 1.8 (Graph sends
    /// it only above 0.8) [throttling-limits].
    pub max_throttle_limit_percentage: Option<f64>,
    /// The last `x-ms-resource-unit` seen: the cost Graph charged for a request.
    pub last_resource_unit: Option<u64>,
}

/// What was counted between two snapshots of one client (`after - before`): the clients live as long as the process
/// and count across runs, so a run's figures are the difference. The two observed values are the later snapshot's.
impl std::ops::Sub for GraphMetrics {
    type Output = GraphMetrics;

    fn sub(self, before: GraphMetrics) -> GraphMetrics {
        GraphMetrics {
            reads: self.reads.saturating_sub(before.reads),
            writes: self.writes.saturating_sub(before.writes),
            batches: self.batches.saturating_sub(before.batches),
            batch_items: self.batch_items.saturating_sub(before.batch_items),
            retries: self.retries.saturating_sub(before.retries),
            throttled_responses: self.throttled_responses.saturating_sub(before.throttled_responses),
            transport_errors: self.transport_errors.saturating_sub(before.transport_errors),
            throttle_wait_ms: self.throttle_wait_ms.saturating_sub(before.throttle_wait_ms),
            paced_wait_ms: self.paced_wait_ms.saturating_sub(before.paced_wait_ms),
            tokens_acquired: self.tokens_acquired.saturating_sub(before.tokens_acquired),
            ..self
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) reads: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) batch_items: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) throttled_responses: AtomicU64,
    pub(crate) transport_errors: AtomicU64,
    pub(crate) throttle_wait_ms: AtomicU64,
    pub(crate) paced_wait_ms: AtomicU64,
    pub(crate) tokens_acquired: AtomicU64,
    observed: Mutex<Observed>,
}

#[derive(Debug, Default)]
struct Observed {
    max_throttle_limit_percentage: Option<f64>,
    last_resource_unit: Option<u64>,
    last_token_expiry: Option<time::OffsetDateTime>,
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Metrics {
    pub(crate) fn snapshot(&self) -> GraphMetrics {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let observed = self.observed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        GraphMetrics {
            reads: read(&self.reads),
            writes: read(&self.writes),
            batches: read(&self.batches),
            batch_items: read(&self.batch_items),
            retries: read(&self.retries),
            throttled_responses: read(&self.throttled_responses),
            transport_errors: read(&self.transport_errors),
            throttle_wait_ms: read(&self.throttle_wait_ms),
            paced_wait_ms: read(&self.paced_wait_ms),
            tokens_acquired: read(&self.tokens_acquired),
            max_throttle_limit_percentage: observed.max_throttle_limit_percentage,
            last_resource_unit: observed.last_resource_unit,
        }
    }

    pub(crate) fn record_wait(&self, waited: std::time::Duration) {
        bump(&self.throttle_wait_ms, u64::try_from(waited.as_millis()).unwrap_or(u64::MAX));
    }

    pub(crate) fn record_paced_wait(&self, waited: std::time::Duration) {
        bump(&self.paced_wait_ms, u64::try_from(waited.as_millis()).unwrap_or(u64::MAX));
    }

    /// Counts a token as new when its expiry differs from the last one seen.
    pub(crate) fn record_token(&self, expires_on: time::OffsetDateTime) {
        let mut observed = self.observed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if observed.last_token_expiry != Some(expires_on) {
            observed.last_token_expiry = Some(expires_on);
            bump(&self.tokens_acquired, 1);
        }
    }

    pub(crate) fn record_throttle_headers(&self, limit_percentage: Option<f64>, resource_unit: Option<u64>) {
        let mut observed = self.observed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(percentage) = limit_percentage {
            let max = observed.max_throttle_limit_percentage.map_or(percentage, |max| max.max(percentage));
            observed.max_throttle_limit_percentage = Some(max);
        }
        if resource_unit.is_some() {
            observed.last_resource_unit = resource_unit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_figures_are_the_difference_of_two_snapshots_and_the_later_observations() {
        let before = GraphMetrics { reads: 10, writes: 4, tokens_acquired: 1, ..GraphMetrics::default() };
        let after = GraphMetrics {
            reads: 25,
            writes: 4,
            batches: 3,
            tokens_acquired: 2,
            max_throttle_limit_percentage: Some(0.9),
            last_resource_unit: Some(1),
            ..GraphMetrics::default()
        };
        let run = after - before;
        assert_eq!((run.reads, run.writes, run.batches, run.tokens_acquired), (15, 0, 3, 1));
        assert_eq!((run.max_throttle_limit_percentage, run.last_resource_unit), (Some(0.9), Some(1)));
    }
}
