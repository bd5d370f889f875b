//! Injected faults, drawn from a seeded generator so a run can be replayed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::options::{FaultKind, Faults, OddAnswers};

const ALL_KINDS: [FaultKind; 4] =
    [FaultKind::Throttle429, FaultKind::Internal500, FaultKind::Unavailable503, FaultKind::Timeout];

/// A transient token-endpoint failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenFault {
    /// `500 server_error` (AADSTS50000).
    ServerError,
    /// `503 temporarily_unavailable` (AADSTS90033).
    TemporarilyUnavailable,
}

/// How many faults of each kind were injected since the faults were last set: a test proves its fault phase really
/// hit something (a hung request is logged only when it ends, so the request log cannot tell).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InjectedFaults {
    pub throttle_429: u64,
    pub internal_500: u64,
    pub unavailable_503: u64,
    pub timeout: u64,
    pub token: u64,
    pub notifications_dropped: u64,
    pub notifications_duplicated: u64,
    /// `200 OK` answers served with odd content ([`crate::OddAnswers`]); not part of [`Self::total`], which the
    /// `max_faults` budget counts.
    pub odd_answers: u64,
}

impl InjectedFaults {
    pub fn total(&self) -> u64 {
        self.throttle_429
            + self.internal_500
            + self.unavailable_503
            + self.timeout
            + self.token
            + self.notifications_dropped
            + self.notifications_duplicated
    }
}

#[derive(Debug)]
pub(crate) struct FaultState {
    faults: Faults,
    rng: StdRng,
    injected: InjectedFaults,
}

impl FaultState {
    pub(crate) fn new(faults: Faults) -> Self {
        let rng = StdRng::seed_from_u64(faults.seed);
        Self { faults, rng, injected: InjectedFaults::default() }
    }

    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    pub(crate) fn injected(&self) -> &InjectedFaults {
        &self.injected
    }

    /// The odd answers in force, if any.
    pub(crate) fn odd_answers(&self) -> Option<OddAnswers> {
        (!self.faults.odd.is_none()).then(|| self.faults.odd.clone())
    }

    /// Counts `n` odd answers served.
    pub(crate) fn served_odd(&mut self, n: usize) {
        self.injected.odd_answers += n as u64;
    }

    fn hit(&mut self, rate: f64) -> bool {
        let spent = self.faults.max_faults.is_some_and(|budget| self.injected.total() >= budget);
        rate > 0.0 && !spent && self.rng.random::<f64>() < rate
    }

    /// A fault for this Graph request, if one is drawn, with the `Retry-After` seconds it carries.
    pub(crate) fn graph_fault(&mut self) -> Option<(FaultKind, u64)> {
        if !self.hit(self.faults.error_rate) {
            return None;
        }
        let kinds: &[FaultKind] = if self.faults.kinds.is_empty() { &ALL_KINDS } else { &self.faults.kinds };
        let kind = kinds[self.rng.random_range(0..kinds.len())];
        let drawn = self.rng.random_range(1..=3);
        let retry_after = self.faults.retry_after_secs.unwrap_or(drawn);
        let counter = match kind {
            FaultKind::Throttle429 => &mut self.injected.throttle_429,
            FaultKind::Internal500 => &mut self.injected.internal_500,
            FaultKind::Unavailable503 => &mut self.injected.unavailable_503,
            FaultKind::Timeout => &mut self.injected.timeout,
        };
        *counter += 1;
        Some((kind, retry_after))
    }

    pub(crate) fn token_fault(&mut self) -> Option<TokenFault> {
        if !self.hit(self.faults.token_error_rate) {
            return None;
        }
        self.injected.token += 1;
        Some(if self.rng.random::<bool>() { TokenFault::ServerError } else { TokenFault::TemporarilyUnavailable })
    }

    pub(crate) fn drop_notification(&mut self) -> bool {
        let rate = self.faults.notification_drop_rate;
        let hit = self.hit(rate);
        self.injected.notifications_dropped += u64::from(hit);
        hit
    }

    pub(crate) fn duplicate_notification(&mut self) -> bool {
        let rate = self.faults.notification_duplicate_rate;
        let hit = self.hit(rate);
        self.injected.notifications_duplicated += u64::from(hit);
        hit
    }

    /// A random permutation of `0..n` that is never the identity when `n > 1`: Graph does not keep the order of
    /// batch responses. [json-batching]
    pub(crate) fn batch_order(&mut self, n: usize) -> Vec<usize> {
        use rand::seq::SliceRandom;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.rng);
        if n > 1 && order.iter().enumerate().all(|(i, &x)| i == x) {
            order.reverse();
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let faults = Faults { error_rate: 0.5, seed: 7, ..Faults::default() };
        let mut a = FaultState::new(faults.clone());
        let mut b = FaultState::new(faults);
        let draws_a: Vec<_> = (0..50).map(|_| a.graph_fault()).collect();
        let draws_b: Vec<_> = (0..50).map(|_| b.graph_fault()).collect();
        assert_eq!(draws_a, draws_b);
        assert!(draws_a.iter().any(Option::is_some) && draws_a.iter().any(Option::is_none));
    }

    #[test]
    fn no_rate_no_fault() {
        let mut state = FaultState::new(Faults::default());
        assert!((0..100).all(|_| state.graph_fault().is_none() && state.token_fault().is_none()));
    }

    #[test]
    fn the_fault_budget_stops_injection_and_counts_every_kind() {
        let faults = Faults { error_rate: 1.0, token_error_rate: 1.0, max_faults: Some(3), ..Faults::default() };
        let mut state = FaultState::new(faults);
        assert!(state.graph_fault().is_some() && state.token_fault().is_some() && state.graph_fault().is_some());
        assert!((0..50).all(|_| state.graph_fault().is_none() && state.token_fault().is_none()));
        assert_eq!(state.injected().total(), 3);
        assert_eq!(state.injected().token, 1);
    }

    #[test]
    fn a_configured_retry_after_replaces_the_drawn_one() {
        let faults = Faults { error_rate: 1.0, retry_after_secs: Some(1), seed: 3, ..Faults::default() };
        let mut state = FaultState::new(faults);
        assert!((0..50).all(|_| state.graph_fault().is_some_and(|(_, retry_after)| retry_after == 1)));
    }

    #[test]
    fn batch_order_is_a_permutation_but_not_the_request_order() {
        let mut state = FaultState::new(Faults::default());
        for n in 2..6 {
            let mut order = state.batch_order(n);
            assert_ne!(order, (0..n).collect::<Vec<_>>());
            order.sort_unstable();
            assert_eq!(order, (0..n).collect::<Vec<_>>());
        }
    }
}
