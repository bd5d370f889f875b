//! The quotas of the identity and access service limits. [throttling-limits]
//!
//! Per app + tenant: resource units per 10 s (3,500 / 5,000 / 8,000 for tenants of < 50, 50–500, > 500 users) and
//! 3,000 writes per 150 s; per tenant across apps: 18,000 writes per 5 min. A rejected request costs nothing.
//!
//! How a quota refills is not documented (`../shared/docs/graph.md`, "UNCERTAIN"): continuously, as a sliding window
//! or as a fixed window. Each is a [`Refill`]; a client has to do well under all three.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::options::{Refill, Throttling};

/// One quota: `capacity` units per `window`, refilled the way [`Refill`] says.
#[derive(Debug, Clone)]
struct Quota {
    capacity: f64,
    window: Duration,
    refill: QuotaState,
}

#[derive(Debug, Clone)]
enum QuotaState {
    /// A token bucket refilled at `capacity / window` per second.
    Continuous { tokens: f64, last: Instant },
    /// What was accepted during the last `window`, oldest first, and its sum.
    SlidingWindow { accepted: VecDeque<(Instant, f64)>, used: f64 },
    /// Windows of `window` starting at `origin` (+ k × window); what the current one has used.
    FixedWindow { origin: Instant, index: u64, used: f64 },
}

impl Quota {
    fn new(capacity: f64, window: Duration, refill: &Refill, now: Instant) -> Self {
        let refill = match refill {
            Refill::Continuous => QuotaState::Continuous { tokens: capacity, last: now },
            Refill::SlidingWindow => QuotaState::SlidingWindow { accepted: VecDeque::new(), used: 0.0 },
            Refill::FixedWindow { phase_secs } => {
                let phase = Duration::from_secs(*phase_secs).min(window);
                // The current window began `phase` before this quota's first request.
                QuotaState::FixedWindow { origin: now.checked_sub(phase).unwrap_or(now), index: 0, used: 0.0 }
            }
        };
        Self { capacity, window, refill }
    }

    /// Brings the state to `now`, and follows a change of capacity (a tenant that grew past 50 or 500 users).
    fn advance(&mut self, capacity: f64, now: Instant) {
        if let QuotaState::Continuous { tokens, .. } = &mut self.refill
            && (capacity - self.capacity).abs() > f64::EPSILON
        {
            *tokens += capacity - self.capacity;
        }
        self.capacity = capacity;
        let window = self.window;
        match &mut self.refill {
            QuotaState::Continuous { tokens, last } => {
                let elapsed = now.saturating_duration_since(*last).as_secs_f64();
                *tokens = (*tokens + elapsed * capacity / window.as_secs_f64()).min(capacity);
                *last = now;
            }
            QuotaState::SlidingWindow { accepted, used } => {
                while let Some(&(at, cost)) = accepted.front() {
                    if now.saturating_duration_since(at) < window {
                        break;
                    }
                    accepted.pop_front();
                    *used -= cost;
                }
                if accepted.is_empty() {
                    *used = 0.0;
                }
            }
            QuotaState::FixedWindow { origin, index, used } => {
                let current = (now.saturating_duration_since(*origin).as_secs_f64() / window.as_secs_f64()) as u64;
                if current != *index {
                    *index = current;
                    *used = 0.0;
                }
            }
        }
    }

    fn room(&self) -> f64 {
        match &self.refill {
            QuotaState::Continuous { tokens, .. } => *tokens,
            QuotaState::SlidingWindow { used, .. } | QuotaState::FixedWindow { used, .. } => self.capacity - used,
        }
    }

    fn take(&mut self, cost: f64, now: Instant) {
        match &mut self.refill {
            QuotaState::Continuous { tokens, .. } => *tokens -= cost,
            QuotaState::SlidingWindow { accepted, used } => {
                accepted.push_back((now, cost));
                *used += cost;
            }
            QuotaState::FixedWindow { used, .. } => *used += cost,
        }
    }

    /// How long until `cost` fits, as `Retry-After` would say it.
    fn wait_for(&self, cost: f64, now: Instant) -> Duration {
        let missing = cost - self.room();
        if missing <= 0.0 {
            return Duration::ZERO;
        }
        match &self.refill {
            QuotaState::Continuous { .. } => {
                Duration::from_secs_f64(missing * self.window.as_secs_f64() / self.capacity)
            }
            QuotaState::SlidingWindow { accepted, .. } => {
                // Until enough of the oldest accepted requests leave the window.
                let mut freed = 0.0;
                for &(at, spent) in accepted {
                    freed += spent;
                    if freed >= missing {
                        return (at + self.window).saturating_duration_since(now);
                    }
                }
                self.window
            }
            QuotaState::FixedWindow { origin, index, .. } => {
                let next = *origin + self.window * u32::try_from(*index + 1).unwrap_or(u32::MAX);
                next.saturating_duration_since(now)
            }
        }
    }

    fn used_fraction(&self) -> f64 {
        (self.capacity - self.room()) / self.capacity
    }
}

#[derive(Debug, Clone)]
struct PairQuotas {
    resource_units: Quota,
    writes: Quota,
}

/// Throttling state of one tenant.
#[derive(Debug, Default)]
pub(crate) struct ThrottleState {
    pairs: HashMap<String, PairQuotas>,
    tenant_writes: Option<Quota>,
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

const RU_WINDOW: Duration = Duration::from_secs(10);
const PAIR_WRITE_WINDOW: Duration = Duration::from_secs(150);
const TENANT_WRITE_WINDOW: Duration = Duration::from_secs(300);
const PAIR_WRITES: f64 = 3_000.0;
/// The tenant's writes across apps per 5 min, as a multiple of one app's per 150 s (18,000 : 3,000).
const TENANT_WRITES_PER_PAIR_WRITES: f64 = 6.0;

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
    /// Charges a request to the quotas of (`app_id`, this tenant), or says why it is throttled.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn charge(
        &mut self,
        throttling: &Throttling,
        refill: &Refill,
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
        let tenant_capacity = write_capacity * TENANT_WRITES_PER_PAIR_WRITES;
        let pair = self.pairs.entry(app_id.to_owned()).or_insert_with(|| PairQuotas {
            resource_units: Quota::new(ru_capacity, RU_WINDOW, refill, now),
            writes: Quota::new(write_capacity, PAIR_WRITE_WINDOW, refill, now),
        });
        pair.resource_units.advance(ru_capacity, now);
        pair.writes.advance(write_capacity, now);
        let tenant_writes =
            self.tenant_writes.get_or_insert_with(|| Quota::new(tenant_capacity, TENANT_WRITE_WINDOW, refill, now));
        tenant_writes.advance(tenant_capacity, now);

        let ru = f64::from(cost.resource_units);
        let writes = f64::from(cost.writes);
        // Graph sends whole seconds [throttling]; rounding up never invites a retry that is rejected again.
        let retry = |wait: Duration| (wait.as_secs_f64().ceil() as u64).max(1);
        if pair.resource_units.room() < ru {
            return Err(Throttled {
                retry_after_secs: retry(pair.resource_units.wait_for(ru, now)),
                scope: format!("Tenant_Application/ReadWrite/{app_id}/{tenant_id}"),
                information: "ResourceUnitLimitExceeded",
            });
        }
        if writes > 0.0 && pair.writes.room() < writes {
            return Err(Throttled {
                retry_after_secs: retry(pair.writes.wait_for(writes, now)),
                scope: format!("Tenant_Application/Write/{app_id}/{tenant_id}"),
                information: "WriteLimitExceeded",
            });
        }
        if writes > 0.0 && tenant_writes.room() < writes {
            return Err(Throttled {
                retry_after_secs: retry(tenant_writes.wait_for(writes, now)),
                scope: format!("Tenant/Write/{app_id}/{tenant_id}"),
                information: "WriteLimitExceeded",
            });
        }
        pair.resource_units.take(ru, now);
        if writes > 0.0 {
            pair.writes.take(writes, now);
            tenant_writes.take(writes, now);
        }
        let used =
            pair.resource_units.used_fraction().max(pair.writes.used_fraction()).max(tenant_writes.used_fraction());
        Ok(Accepted { limit_percentage: (used > 0.8).then_some(used) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            state.charge(&CUSTOM, &Refill::Continuous, "t", 1, "app", read(3), now).expect("within budget");
        }
        let throttled = state.charge(&CUSTOM, &Refill::Continuous, "t", 1, "app", read(3), now).unwrap_err();
        assert_eq!(throttled.information, "ResourceUnitLimitExceeded");
        assert_eq!(throttled.retry_after_secs, 2, "2 RU missing at 1 RU/s");
        assert_eq!(throttled.scope, "Tenant_Application/ReadWrite/app/t");
        // Refilled after the advertised wait.
        state
            .charge(&CUSTOM, &Refill::Continuous, "t", 1, "app", read(3), now + Duration::from_secs(2))
            .expect("refilled");
    }

    // [throttling-limits] writes have their own budget per app + tenant.
    #[test]
    fn writes_are_limited_separately() {
        let mut state = ThrottleState::default();
        let now = Instant::now();
        let write = Cost { resource_units: 1, writes: 1 };
        state.charge(&CUSTOM, &Refill::Continuous, "t", 1, "app", write, now).unwrap();
        state.charge(&CUSTOM, &Refill::Continuous, "t", 1, "app", write, now).unwrap();
        let throttled = state.charge(&CUSTOM, &Refill::Continuous, "t", 1, "app", write, now).unwrap_err();
        assert_eq!(throttled.information, "WriteLimitExceeded");
        // Another app of the same tenant has its own budget.
        state.charge(&CUSTOM, &Refill::Continuous, "t", 1, "other", write, now).unwrap();
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
        let first = state.charge(&CUSTOM, &Refill::Continuous, "t", 1, "app", read(8), now).unwrap();
        assert_eq!(first.limit_percentage, None);
        let second = state.charge(&CUSTOM, &Refill::Continuous, "t", 1, "app", read(1), now).unwrap();
        assert!(second.limit_percentage.is_some_and(|p| p > 0.8));
    }

    fn write() -> Cost {
        Cost { resource_units: 1, writes: 1 }
    }

    // How a quota refills is undocumented (graph.md "UNCERTAIN"): each model gives back the spent budget its own way,
    // and its Retry-After says when the next write fits.
    #[test]
    fn each_refill_model_gives_the_budget_back_its_own_way() {
        let budget = Throttling::Custom { resource_units_per_10s: 1_000, writes_per_150s: 150 };
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let spend = |state: &mut ThrottleState, refill: &Refill, secs: u64, count: usize| {
            for _ in 0..count {
                state.charge(&budget, refill, "t", 1, "app", write(), at(secs)).expect("within budget");
            }
        };

        // Continuous: 1 write per second comes back.
        let mut state = ThrottleState::default();
        spend(&mut state, &Refill::Continuous, 0, 150);
        let throttled = state.charge(&budget, &Refill::Continuous, "t", 1, "app", write(), at(0)).unwrap_err();
        assert_eq!(throttled.retry_after_secs, 1);
        spend(&mut state, &Refill::Continuous, 10, 10);
        assert!(state.charge(&budget, &Refill::Continuous, "t", 1, "app", write(), at(10)).is_err());

        // Sliding window: nothing comes back until the first writes are 150 s old, then all of them.
        let mut state = ThrottleState::default();
        spend(&mut state, &Refill::SlidingWindow, 0, 100);
        spend(&mut state, &Refill::SlidingWindow, 60, 50);
        let throttled = state.charge(&budget, &Refill::SlidingWindow, "t", 1, "app", write(), at(100)).unwrap_err();
        assert_eq!(throttled.retry_after_secs, 50, "the writes of t=0 leave the window at t=150");
        spend(&mut state, &Refill::SlidingWindow, 150, 100);
        assert!(state.charge(&budget, &Refill::SlidingWindow, "t", 1, "app", write(), at(150)).is_err());

        // Fixed window, 100 s into its first window: everything comes back at t=50, and the Retry-After says so.
        let fixed = Refill::FixedWindow { phase_secs: 100 };
        let mut state = ThrottleState::default();
        spend(&mut state, &fixed, 0, 150);
        let throttled = state.charge(&budget, &fixed, "t", 1, "app", write(), at(1)).unwrap_err();
        assert_eq!(throttled.retry_after_secs, 49);
        spend(&mut state, &fixed, 50, 150);
        let throttled = state.charge(&budget, &fixed, "t", 1, "app", write(), at(50)).unwrap_err();
        assert_eq!(throttled.retry_after_secs, 150);
    }

    // The budget header reports the tightest quota's use above 0.8 under every model, so a client can follow it.
    #[test]
    fn the_limit_percentage_follows_each_model() {
        let budget = Throttling::Custom { resource_units_per_10s: 1_000, writes_per_150s: 100 };
        let now = Instant::now();
        for refill in [Refill::Continuous, Refill::SlidingWindow, Refill::FixedWindow { phase_secs: 0 }] {
            let mut state = ThrottleState::default();
            for _ in 0..80 {
                let accepted = state.charge(&budget, &refill, "t", 1, "app", write(), now).unwrap();
                assert_eq!(accepted.limit_percentage, None, "{refill:?}");
            }
            let accepted = state.charge(&budget, &refill, "t", 1, "app", write(), now).unwrap();
            assert_eq!(accepted.limit_percentage, Some(0.81), "{refill:?}");
        }
    }
}
