//! When to try again and how long to wait: `Retry-After` when Graph gives one (seconds, possibly fractional), else
//! exponential backoff with full jitter [throttling].

use std::time::Duration;

use rand::Rng;

/// Statuses worth retrying: throttled, unavailable, gateway timeout [throttling].
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 503 | 504)
}

/// Parses `Retry-After` as seconds (fractional allowed). HTTP dates are not used by Graph and fall back to backoff.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(24.0 * 3600.0)))
}

/// Full-jitter exponential backoff: a uniform wait in `[0, min(max, initial × 2^(attempt-1))]` (AWS architecture
/// blog, "Exponential Backoff And Jitter"). `attempt` counts from 1.
pub(crate) fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let ceiling = initial.saturating_mul(1 << exponent).min(max);
    let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=ceiling_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_whole_and_fractional_seconds_only() {
        let cases = [
            ("2", Some(Duration::from_secs(2))),
            (" 0.25 ", Some(Duration::from_millis(250))),
            ("0", Some(Duration::ZERO)),
            ("-1", None),
            ("NaN", None),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_retry_after(value), expected, "{value:?}");
        }
    }

    #[test]
    fn backoff_stays_under_its_exponential_ceiling_and_the_cap() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for attempt in 1u32..40 {
            let ceiling = (initial * 2u32.saturating_pow(attempt.saturating_sub(1).min(20))).min(max);
            for _ in 0..20 {
                assert!(backoff(attempt, initial, max) <= ceiling, "attempt {attempt}");
            }
        }
    }
}
