//! Token buckets of the identity and access service limits. [throttling-limits]
//!
//! Per app + tenant: resource units per 10 s (3,500 / 5,000 / 8,000 for tenants of < 50, 50–500, > 500 users) and
//! 3,000 writes per 150 s; per tenant across apps: 18,000 writes per 5 min. A rejected request costs nothing.

use std::collections::HashMap;
use std::time::Instant;

use crate::options::Throttling;

#[derive(Debug, Clone)]
struct Bucket {
    capacity: f64,
    tokens: f64,
    refill_per_sec: f64,
    last: Instant,
}

impl Bucket {
    fn new(capacity: f64, window_secs: f64, now: Instant) -> Self {
        Self { capacity, tokens: capacity, refill_per_sec: capacity / window_secs, last: now }
    }

    /// Refills, and follows a change of capacity (a tenant that grew past 50 or 500 users).
    fn refill(&mut self, capacity: f64, window_secs: f64, now: Instant) {
        if (capacity - self.capacity).abs() > f64::EPSILON {
            self.tokens += capacity - self.capacity;
            self.capacity = capacity;
            self.refill_per_sec = capacity / window_secs;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.refill_per_sec).min(self.capacity);
        self.last = now;
    }

    /// Seconds until `cost` tokens are there.
    fn wait_for(&self, cost: f64) -> f64 {
        ((cost - self.tokens) / self.refill_per_sec).max(0.0)
    }

    fn used_fraction(&self) -> f64 {
        (self.capacity - self.tokens) / self.capacity
    }
}

#[derive(Debug, Clone)]
struct PairBuckets {
    resource_units: Bucket,
    writes: Bucket,
}

/// Throttling state of one tenant.
#[derive(Debug, Default)]
pub(crate) struct ThrottleState {
    pairs: HashMap<String, PairBuckets>,
    tenant_writes: Option<Bucket>,
}

/// What a request costs. [throttling-limits] "base request costs" and "other factors".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cost {
    pub resource_units: u32,
    pub writes: u32,
}

/// An accepted request: the header values to add.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Accepted {
    /// The share of the tightest budget used, when above 0.8 (`x-ms-throttle-limit-percentage`).
    pub limit_percentage: Option<f64>,
}

/// A throttled request. [throttling]
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Throttled {
    pub retry_after_secs: u64,
    /// `x-ms-throttle-scope`: `<Scope>/<Limit>/<ApplicationId>/<TenantId>`.
    pub scope: String,
    /// `x-ms-throttle-information`.
    pub information: &'static str,
}

const RU_WINDOW_SECS: f64 = 10.0;
const PAIR_WRITE_WINDOW_SECS: f64 = 150.0;
const TENANT_WRITE_WINDOW_SECS: f64 = 300.0;
const TENANT_WRITES: f64 = 18_000.0;
const PAIR_WRITES: f64 = 3_000.0;

fn resource_unit_budget(throttling: &Throttling, tenant_users: usize) -> f64 {
    match throttling {
        Throttling::Custom { resource_units_per_10s, .. } => f64::from(*resource_units_per_10s),
        _ if tenant_users < 50 => 3_500.0,
        _ if tenant_users <= 500 => 5_000.0,
        _ => 8_000.0,
    }
}

fn write_budget(throttling: &Throttling) -> f64 {
    match throttling {
        Throttling::Custom { writes_per_150s, .. } => f64::from(*writes_per_150s),
        _ => PAIR_WRITES,
    }
}

impl ThrottleState {
    /// Charges a request to the buckets of (`app_id`, this tenant), or says why it is throttled.
    pub(crate) fn charge(
        &mut self,
        throttling: &Throttling,
        tenant_id: &str,
        tenant_users: usize,
        app_id: &str,
        cost: Cost,
        now: Instant,
    ) -> Result<Accepted, Throttled> {
        if *throttling == Throttling::Off {
            return Ok(Accepted { limit_percentage: None });
        }
        let ru_capacity = resource_unit_budget(throttling, tenant_users);
        let write_capacity = write_budget(throttling);
        let pair = self.pairs.entry(app_id.to_owned()).or_insert_with(|| PairBuckets {
            resource_units: Bucket::new(ru_capacity, RU_WINDOW_SECS, now),
            writes: Bucket::new(write_capacity, PAIR_WRITE_WINDOW_SECS, now),
        });
        pair.resource_units.refill(ru_capacity, RU_WINDOW_SECS, now);
        pair.writes.refill(write_capacity, PAIR_WRITE_WINDOW_SECS, now);
        let tenant_writes =
            self.tenant_writes.get_or_insert_with(|| Bucket::new(TENANT_WRITES, TENANT_WRITE_WINDOW_SECS, now));
        tenant_writes.refill(TENANT_WRITES, TENANT_WRITE_WINDOW_SECS, now);

        let ru = f64::from(cost.resource_units);
        let writes = f64::from(cost.writes);
        let retry = |secs: f64| (secs.ceil() as u64).max(1);
        if pair.resource_units.tokens < ru {
            return Err(Throttled {
                retry_after_secs: retry(pair.resource_units.wait_for(ru)),
                scope: format!("Tenant_Application/ReadWrite/{app_id}/{tenant_id}"),
                information: "ResourceUnitLimitExceeded",
            });
        }
        if writes > 0.0 && pair.writes.tokens < writes {
            return Err(Throttled {
                retry_after_secs: retry(pair.writes.wait_for(writes)),
                scope: format!("Tenant_Application/Write/{app_id}/{tenant_id}"),
                information: "WriteLimitExceeded",
            });
        }
        if writes > 0.0 && tenant_writes.tokens < writes {
            return Err(Throttled {
                retry_after_secs: retry(tenant_writes.wait_for(writes)),
                scope: format!("Tenant/Write/{app_id}/{tenant_id}"),
                information: "WriteLimitExceeded",
            });
        }
        pair.resource_units.tokens -= ru;
        pair.writes.tokens -= writes;
        tenant_writes.tokens -= writes;
        let used =
            pair.resource_units.used_fraction().max(pair.writes.used_fraction()).max(tenant_writes.used_fraction());
        Ok(Accepted { limit_percentage: (used > 0.8).then_some(used) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const CUSTOM: Throttling = Throttling::Custom { resource_units_per_10s: 10, writes_per_150s: 2 };

    fn read(ru: u32) -> Cost {
        Cost { resource_units: ru, writes: 0 }
    }

    // [throttling-limits] once the resource-unit budget is spent the next request gets a Retry-After.
    #[test]
    fn spending_the_resource_unit_budget_throttles_with_a_retry_after() {
        let mut state = ThrottleState::default();
        let now = Instant::now();
        for _ in 0..3 {
            state.charge(&CUSTOM, "t", 1, "app", read(3), now).expect("within budget");
        }
        let throttled = state.charge(&CUSTOM, "t", 1, "app", read(3), now).unwrap_err();
        assert_eq!(throttled.information, "ResourceUnitLimitExceeded");
        assert_eq!(throttled.retry_after_secs, 2, "2 RU missing at 1 RU/s");
        assert_eq!(throttled.scope, "Tenant_Application/ReadWrite/app/t");
        // Refilled after the advertised wait.
        state.charge(&CUSTOM, "t", 1, "app", read(3), now + Duration::from_secs(2)).expect("refilled");
    }

    // [throttling-limits] writes have their own budget per app + tenant.
    #[test]
    fn writes_are_limited_separately() {
        let mut state = ThrottleState::default();
        let now = Instant::now();
        let write = Cost { resource_units: 1, writes: 1 };
        state.charge(&CUSTOM, "t", 1, "app", write, now).unwrap();
        state.charge(&CUSTOM, "t", 1, "app", write, now).unwrap();
        let throttled = state.charge(&CUSTOM, "t", 1, "app", write, now).unwrap_err();
        assert_eq!(throttled.information, "WriteLimitExceeded");
        // Another app of the same tenant has its own budget.
        state.charge(&CUSTOM, "t", 1, "other", write, now).unwrap();
    }

    // [throttling-limits] the budget depends on the tenant's size.
    #[test]
    fn budgets_follow_tenant_size() {
        assert_eq!(resource_unit_budget(&Throttling::Graph, 49), 3_500.0);
        assert_eq!(resource_unit_budget(&Throttling::Graph, 50), 5_000.0);
        assert_eq!(resource_unit_budget(&Throttling::Graph, 500), 5_000.0);
        assert_eq!(resource_unit_budget(&Throttling::Graph, 501), 8_000.0);
    }

    // [throttling-limits] x-ms-throttle-limit-percentage appears above 0.8 of the limit.
    #[test]
    fn limit_percentage_appears_above_80_percent() {
        let mut state = ThrottleState::default();
        let now = Instant::now();
        let first = state.charge(&CUSTOM, "t", 1, "app", read(8), now).unwrap();
        assert_eq!(first.limit_percentage, None);
        let second = state.charge(&CUSTOM, "t", 1, "app", read(1), now).unwrap();
        assert!(second.limit_percentage.is_some_and(|p| p > 0.8));
    }
}
