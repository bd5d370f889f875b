//! Pacing writes to Graph's budget before Graph has to say no.
//!
//! Graph allows an app 3,000 writes per 150 s in a tenant, and resource units per 10 s [throttling-limits]; it does
//! not say how a spent budget comes back (`../shared/docs/graph.md`, UNCERTAIN: continuously, as a sliding window or
//! as a fixed window). Retries count against the limits, and an app that keeps sending while throttled stays
//! throttled for longer [throttling]. So one [`Pacer`] per client (one app in one tenant), shared by every `$batch`
//! of every run in the process, decides when a chunk may go:
//!
//! - **What we sent.** Never more than the documented budget within one window of our own answers: the strictest
//!   reading (a sliding window) holds, so every model accepts it. This alone is the floor of the sliding window, and
//!   of a fixed window that starts with our first write. Once a probe has proven a continuous refill, the refill
//!   paces instead (our window would let a second burst through one window after the first).
//! - **What Graph says.** `x-ms-throttle-limit-percentage` comes with answers once more than 80 % of a limit is used
//!   [throttling-limits]: it gives the room left. Its absence, once Graph has been seen to send it, means at least
//!   20 % is left, which is how a fixed window's reset is found. Graph reporting more used than we sent (a smaller
//!   budget than documented, another run, another client of the app) shrinks the budget our own count keeps to.
//! - **Probes.** When our own count is spent and Graph said nothing that widens it, one write (not twenty) goes out,
//!   a documented refill's second (1/20 s) after the budget ran out. Accepted while Graph still reports the budget
//!   above 80 %: the budget flows back continuously, and full chunks follow at the documented rate. Throttled: a
//!   window; its `Retry-After` says when the budget is back, and nothing is sent before then.
//! - **A 429 stops every chunk** until its `Retry-After`, not just its own items.
//!
//! The figures in BENCHMARKS.md (first sync at 10,000 users under each refill model) are what this was built to.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A documented budget: `units` per `window`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub units: u32,
    pub window: Duration,
}

impl Budget {
    /// 3,000 writes per 2 min 30 s per app and tenant [throttling-limits].
    pub const GRAPH_WRITES: Budget = Budget { units: 3_000, window: Duration::from_secs(150) };
    /// Resource units per 10 s per app and tenant: 8,000 in tenants of more than 500 users, 5,000 and 3,500 in
    /// smaller ones [throttling-limits]. The paced chunks re-read (1 RU) and write (1 RU) each user at most once a
    /// run, so a tenant of 500 users cannot spend more than 1,000 RU on them: the largest budget is the one that
    /// can bind.
    pub const GRAPH_RESOURCE_UNITS: Budget = Budget { units: 8_000, window: Duration::from_secs(10) };

    fn per_second(self) -> f64 {
        f64::from(self.units) / self.window.as_secs_f64()
    }

    /// `writes/seconds` as in `3000/150`: the form of the `GRAPH_WRITE_BUDGET` setting.
    pub fn parse(text: &str) -> Result<Budget, String> {
        let invalid = || format!("must be <writes>/<seconds>, like 3000/150 (Graph's documented budget), not {text:?}");
        let (units, seconds) = text.trim().split_once('/').ok_or_else(invalid)?;
        let units: u32 = units.trim().parse().map_err(|_| invalid())?;
        let seconds: u64 = seconds.trim().trim_end_matches('s').parse().map_err(|_| invalid())?;
        if units == 0 || seconds == 0 {
            return Err(invalid());
        }
        Ok(Budget { units, window: Duration::from_secs(seconds) })
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.units, self.window.as_secs())
    }
}

/// How much of one chunk may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Grant {
    pub items: usize,
    pub writes: usize,
    /// One write sent to learn whether the budget is back.
    pub probe: bool,
}

/// What the answers to a granted chunk said.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Answered {
    /// Writes Graph accepted (any final answer but 429/503/504).
    pub accepted_writes: usize,
    /// The longest `Retry-After` of the chunk's 429s, if any was throttled.
    pub throttled: Option<Duration>,
    /// The highest `x-ms-throttle-limit-percentage` among the accepted answers.
    pub limit_percentage: Option<Reported>,
}

/// An `x-ms-throttle-limit-percentage` as sent, and the most it may mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Reported {
    pub sent: f64,
    /// At the top of the precision it was given in: `0.99` is anything up to 0.995 ([`limit_percentage_upper`]).
    pub upper: f64,
}

impl Reported {
    pub(super) fn parse(text: &str) -> Option<Self> {
        let sent = text.trim().parse::<f64>().ok().filter(|value| value.is_finite())?;
        Some(Self { sent, upper: limit_percentage_upper(text)? })
    }

    pub(super) fn max(self, other: Self) -> Self {
        if other.sent > self.sent { other } else { self }
    }
}

/// `x-ms-throttle-limit-percentage` read as the most it may mean: `0.99` is anything up to 0.995. Two decimals of a
/// 3,000-write budget hide 30 writes, enough for a whole chunk to be refused.
pub(super) fn limit_percentage_upper(text: &str) -> Option<f64> {
    let text = text.trim();
    let value = text.parse::<f64>().ok().filter(|value| value.is_finite())?;
    let decimals = text.split_once('.').map_or(0, |(_, fraction)| fraction.len());
    Some(value + 0.5 * 10f64.powi(-i32::try_from(decimals).unwrap_or(i32::MAX)))
}

/// What the pacer did, for the run's throttling summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PacingFigures {
    /// Single writes sent to learn whether the budget had come back.
    pub probes: u64,
    /// Times every chunk stopped for a `Retry-After`.
    pub stops: u64,
    /// Whether Graph was seen to refill the write budget continuously (`None`: not found out yet).
    pub continuous_refill: Option<bool>,
}

/// Units counted over a sliding window, oldest first.
#[derive(Debug)]
struct Window {
    budget: Budget,
    entries: VecDeque<(Instant, u32)>,
    sum: u32,
}

impl Window {
    fn new(budget: Budget) -> Self {
        Self { budget, entries: VecDeque::new(), sum: 0 }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, units)) = self.entries.front() {
            if now.saturating_duration_since(at) < self.budget.window {
                break;
            }
            self.entries.pop_front();
            self.sum -= units;
        }
    }

    fn push(&mut self, now: Instant, units: u32) {
        if units > 0 {
            self.entries.push_back((now, units));
            self.sum += units;
        }
    }

    /// When `units` more fit under `limit`, `in_flight` counted as spent.
    fn fits_at(&self, units: u32, in_flight: u32, limit: u32, now: Instant) -> Instant {
        let mut used = self.sum + in_flight;
        if used + units <= limit {
            return now;
        }
        for &(at, spent) in &self.entries {
            used -= spent;
            if used + units <= limit {
                return at + self.budget.window;
            }
        }
        // More in flight than the budget: when some of it is answered.
        now + Duration::from_millis(50)
    }
}

#[derive(Debug)]
struct State {
    writes: Window,
    resource_units: Window,
    writes_in_flight: u32,
    resource_units_in_flight: u32,
    /// The write budget Graph was found to give: the documented one until Graph reports more of it used than we
    /// could have spent (another client of the app, another run, or a smaller budget), then what its report implies.
    capacity: f64,
    /// Room for writes Graph vouched for, as of `room_at`, beyond what our own count allows.
    room: f64,
    room_at: Instant,
    /// Graph refills the write budget continuously: learned from a probe.
    continuous: Option<bool>,
    /// The share of the documented refill rate that Graph was found to give (1 until a chunk sent on the
    /// continuous refill is throttled; halved then, regained a sixteenth per chunk taken): a budget below the
    /// documented one costs a few throttled chunks, not one per second.
    rate_scale: f64,
    /// Graph has sent `x-ms-throttle-limit-percentage`, so its absence means something.
    percentage_seen: bool,
    /// When Graph last reported the budget above 80 % used.
    near_limit_at: Option<Instant>,
    /// Our own count ran out at this time (the first probe waits a documented refill's second after it).
    spent_at: Option<Instant>,
    probe_in_flight: bool,
    /// The last stop ended (a `Retry-After`) and no probe has gone since.
    after_stop: bool,
    /// The probe in flight went at the end of a stop.
    probe_after_stop: bool,
    /// The probe in flight went while none of our writes was about to leave a window.
    probe_proves_refill: bool,
    stopped_until: Option<Instant>,
    figures: PacingFigures,
}

/// The write and resource-unit budget of one app in one tenant. See the module documentation.
#[derive(Debug)]
pub(super) struct Pacer {
    write_budget: Budget,
    state: Mutex<State>,
}

enum Decision {
    Go(Grant),
    WaitUntil(Instant),
}

/// How far from leaving a window our oldest write must be for an accepted probe to prove a continuous refill.
const REFILL_EVIDENCE_MARGIN: Duration = Duration::from_secs(10);

/// The longest a waiting chunk sleeps before it looks again (answers in between may have widened the room).
const RECHECK: Duration = Duration::from_millis(100);

impl Pacer {
    pub(super) fn new(write_budget: Budget, resource_unit_budget: Budget) -> Self {
        let now = Instant::now();
        Self {
            write_budget,
            state: Mutex::new(State {
                writes: Window::new(write_budget),
                resource_units: Window::new(resource_unit_budget),
                writes_in_flight: 0,
                resource_units_in_flight: 0,
                capacity: f64::from(write_budget.units),
                room: 0.0,
                room_at: now,
                continuous: None,
                rate_scale: 1.0,
                percentage_seen: false,
                near_limit_at: None,
                spent_at: None,
                probe_in_flight: false,
                after_stop: false,
                probe_after_stop: false,
                probe_proves_refill: false,
                stopped_until: None,
                figures: PacingFigures::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn figures(&self) -> PacingFigures {
        self.lock().figures
    }

    /// Waits until some of a chunk of `items` (`writes` of them writes; every item costs at least one resource
    /// unit) may go, and says how much. Cancel-safe: nothing is counted until it returns.
    pub(super) async fn acquire(&self, items: usize, writes: usize) -> Grant {
        loop {
            let decision = self.decide(items, writes, Instant::now());
            match decision {
                Decision::Go(grant) => return grant,
                Decision::WaitUntil(at) => {
                    tokio::time::sleep_until(at.min(Instant::now() + RECHECK)).await;
                }
            }
        }
    }

    fn decide(&self, items: usize, writes: usize, now: Instant) -> Decision {
        let mut state = self.lock();
        if let Some(until) = state.stopped_until {
            if until > now {
                return Decision::WaitUntil(until);
            }
            state.stopped_until = None;
        }
        state.writes.expire(now);
        state.resource_units.expire(now);
        let units = u32::try_from(items).unwrap_or(u32::MAX);
        let ru_limit = state.resource_units.budget.units;
        let ru_fits = state.resource_units.fits_at(units, state.resource_units_in_flight, ru_limit, now);
        if ru_fits > now {
            return Decision::WaitUntil(ru_fits);
        }
        if writes == 0 {
            state.resource_units_in_flight += units;
            return Decision::Go(Grant { items, writes: 0, probe: false });
        }
        let wanted = u32::try_from(writes).unwrap_or(u32::MAX);
        let capacity = state.capacity;
        let rate = capacity / self.write_budget.window.as_secs_f64() * state.rate_scale;
        let own_fits = state.writes.fits_at(wanted, state.writes_in_flight, capacity as u32, now);
        let vouched = if state.continuous == Some(true) {
            (state.room + now.saturating_duration_since(state.room_at).as_secs_f64() * rate).min(capacity)
        } else {
            state.room
        };
        // Our own count allows what the strictest reading allows, except while a probe has proven a continuous
        // refill: then what left our window of 150 s was refilled long ago and spent since, and letting it through
        // again is a second burst of 429s one window after the first. The proof only counts when none of our writes
        // was about to leave a window (`probe_proves_refill`), so a sliding window is not misread as a refill; the
        // first 429 in continuous mode goes back to our own count.
        let own_allows = state.continuous != Some(true) && own_fits <= now;
        if own_allows || vouched >= f64::from(wanted) {
            state.room = (vouched - f64::from(wanted)).max(0.0);
            state.room_at = now;
            state.writes_in_flight += wanted;
            state.resource_units_in_flight += units;
            return Decision::Go(Grant { items, writes, probe: false });
        }
        // Our own count is spent and Graph vouched for too little.
        let spent_at = *state.spent_at.get_or_insert(now);
        let mut wait = own_fits;
        if state.continuous == Some(true) {
            let missing = f64::from(wanted) - vouched;
            wait = wait.min(now + Duration::from_secs_f64(missing / rate));
        } else if !state.probe_in_flight {
            let probe_at = spent_at + Duration::from_secs_f64(1.0 / rate);
            if probe_at <= now {
                state.probe_in_flight = true;
                state.probe_after_stop = std::mem::take(&mut state.after_stop);
                // Evidence of a refill only if none of our writes is about to leave a window: under a sliding window
                // the budget our oldest writes held comes back just before our own count sees it.
                let window = self.write_budget.window;
                state.probe_proves_refill = state
                    .writes
                    .entries
                    .front()
                    .is_none_or(|(at, _)| now.saturating_duration_since(*at) + REFILL_EVIDENCE_MARGIN < window);
                state.figures.probes += 1;
                state.writes_in_flight += 1;
                state.resource_units_in_flight += 1;
                return Decision::Go(Grant { items: 1, writes: 1, probe: true });
            }
            wait = wait.min(probe_at);
        }
        Decision::WaitUntil(wait)
    }

    /// Takes in what Graph answered to a granted chunk.
    pub(super) fn answered(&self, grant: Grant, answered: Answered) {
        let now = Instant::now();
        let mut state = self.lock();
        let writes = u32::try_from(grant.writes).unwrap_or(u32::MAX);
        let items = u32::try_from(grant.items).unwrap_or(u32::MAX);
        state.writes_in_flight = state.writes_in_flight.saturating_sub(writes);
        state.resource_units_in_flight = state.resource_units_in_flight.saturating_sub(items);
        // Graph counts what it accepted; its window of them ends at least one window after our answer.
        state.writes.push(now, u32::try_from(answered.accepted_writes).unwrap_or(u32::MAX));
        state.resource_units.push(now, items);
        // A probe sent when a stop ended proves nothing about how the budget comes back.
        let probe_after_stop = grant.probe && (state.probe_after_stop || !state.probe_proves_refill);
        if grant.probe {
            state.probe_in_flight = false;
            state.probe_after_stop = false;
        }
        let in_flight = f64::from(state.writes_in_flight);
        if let Some(retry_after) = answered.throttled {
            let until = now + retry_after;
            if state.stopped_until.is_none_or(|current| current < until) {
                state.figures.stops += 1;
                state.stopped_until = Some(until);
            }
            state.room = 0.0;
            state.room_at = until;
            // Refused while Graph reported the budget nearly spent: it is at most what we got accepted within a
            // window. A 429 without such a report (an outage, another limit) says nothing about the write budget.
            let window = self.write_budget.window;
            if state.near_limit_at.is_some_and(|at| now.saturating_duration_since(at) < window) {
                state.capacity = state.capacity.min(f64::from(state.writes.sum.max(1)));
            }
            if grant.probe {
                // The budget was spent and did not flow back: a window.
                state.continuous = Some(false);
            } else if state.continuous == Some(true) {
                // Throttled while we counted on the refill: it gives less than documented, or it was no refill. Slow
                // down, and go back to our own count until a probe proves the refill again.
                state.rate_scale = (state.rate_scale / 2.0).max(1.0 / 64.0);
                state.continuous = Some(false);
            }
            // Graph says when the budget is back: a probe may go then, not a refill's second later. That probe proves
            // nothing about the refill (a window reset and a refill both let it through).
            state.spent_at = until.checked_sub(Duration::from_secs_f64(1.0 / self.write_budget.per_second()));
            state.after_stop = true;
        } else if answered.accepted_writes > 0 {
            if state.continuous == Some(true) {
                state.rate_scale = (state.rate_scale + 1.0 / 16.0).min(1.0);
            }
            match answered.limit_percentage {
                Some(Reported { sent: used, upper }) => {
                    state.percentage_seen = true;
                    state.near_limit_at = Some(now);
                    // Graph reports more used than we can have sent: what it gives us is smaller than documented,
                    // or someone else spends it. Either way, our own count keeps to what its report implies.
                    let ours = f64::from(state.writes.sum + state.writes_in_flight);
                    if used >= 0.8 {
                        state.capacity = (ours / used).clamp(1.0, f64::from(self.write_budget.units));
                    }
                    let capacity = state.capacity;
                    state.room = (capacity * (1.0 - upper) - in_flight).max(0.0);
                    state.room_at = now;
                    if grant.probe && !probe_after_stop {
                        // Taken although our own count was spent, with the budget still above 80 % and no window
                        // said to end: it flows back.
                        state.continuous = Some(true);
                    }
                }
                None if state.percentage_seen => {
                    // Less than 80 % of every limit used: a window started again, or the budget flowed back.
                    state.room = state.room.max(state.capacity * 0.2 - in_flight);
                    state.room_at = now;
                }
                None if grant.probe && !probe_after_stop => state.continuous = Some(true),
                None => {}
            }
            if state.room >= 1.0 {
                state.spent_at = None;
            }
        }
        state.figures.continuous_refill = state.continuous;
    }

    /// A whole request was throttled (outside `$batch`): nothing goes out before its `Retry-After`.
    pub(super) fn stop_for(&self, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut state = self.lock();
        if state.stopped_until.is_none_or(|current| current < until) {
            state.figures.stops += 1;
            state.stopped_until = Some(until);
        }
    }

    /// A granted chunk that got no answer at all (a failed `$batch`): nothing was learned.
    pub(super) fn unanswered(&self, grant: Grant) {
        self.answered(grant, Answered::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(units: u32, secs: u64) -> Pacer {
        Pacer::new(Budget { units, window: Duration::from_secs(secs) }, Budget::GRAPH_RESOURCE_UNITS)
    }

    fn go(pacer: &Pacer, items: usize, now: Instant) -> Option<Grant> {
        match pacer.decide(items, items, now) {
            Decision::Go(grant) => Some(grant),
            Decision::WaitUntil(_) => None,
        }
    }

    /// The whole budget of 100 in five chunks, answered as Graph reports its use (only above 80 %).
    fn spend_all(pacer: &Pacer, now: Instant) {
        for chunk in 1..=5 {
            let grant = go(pacer, 20, now).expect("within the budget");
            let used = f64::from(chunk * 20) / 100.0;
            pacer.answered(grant, accepted(grant, (used > 0.8).then_some(used)));
        }
    }

    /// The whole budget spent, and the probe a refill's second later throttled with `retry_after`.
    async fn throttle_the_first_probe(pacer: &Pacer, retry_after: Duration) {
        let start = Instant::now();
        spend_all(pacer, start);
        assert_eq!(go(pacer, 20, start), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        let probe = go(pacer, 20, Instant::now()).expect("a probe a refill's second after the budget ran out");
        assert!(probe.probe);
        pacer.answered(probe, Answered { throttled: Some(retry_after), ..Answered::default() });
    }

    fn accepted(grant: Grant, limit_percentage: Option<f64>) -> Answered {
        let limit_percentage = limit_percentage.map(|sent| Reported { sent, upper: sent });
        Answered { accepted_writes: grant.writes, throttled: None, limit_percentage }
    }

    #[test]
    fn the_limit_percentage_is_read_at_the_top_of_its_precision() {
        assert_eq!(limit_percentage_upper("0.99"), Some(0.995));
        assert_eq!(limit_percentage_upper(" 1 "), Some(1.5));
        assert!(limit_percentage_upper("0.8125").is_some_and(|p| (p - 0.81255).abs() < 1e-12));
        assert_eq!(limit_percentage_upper("high"), None);
    }

    #[test]
    fn the_budget_parses_as_writes_per_seconds() {
        assert_eq!(Budget::parse("3000/150"), Ok(Budget::GRAPH_WRITES));
        assert_eq!(Budget::parse(" 300/15s "), Ok(Budget { units: 300, window: Duration::from_secs(15) }));
        for bad in ["3000", "0/150", "3000/0", "x/150", "3000/1.5"] {
            assert!(Budget::parse(bad).is_err(), "{bad}");
        }
    }

    // The strictest reading holds whatever Graph says: never more than the budget within a window of our answers.
    #[tokio::test(start_paused = true)]
    async fn our_own_count_never_goes_past_the_budget() {
        let pacer = pacer(100, 150);
        let now = Instant::now();
        for _ in 0..5 {
            let grant = go(&pacer, 20, now).expect("within the budget");
            pacer.answered(grant, accepted(grant, None));
        }
        assert_eq!(go(&pacer, 20, now), None, "100 written: the next chunk waits");
    }

    // A probe accepted while Graph reports the budget nearly used: it flows back, and full chunks follow at the
    // documented rate, not at the window's end.
    #[tokio::test(start_paused = true)]
    async fn a_probe_taken_near_the_limit_means_a_continuous_refill() {
        let pacer = pacer(100, 100);
        let start = Instant::now();
        spend_all(&pacer, start);
        assert_eq!(go(&pacer, 20, start), None);
        let probe = go(&pacer, 20, start + Duration::from_secs(1)).expect("a probe after a refill's second");
        assert_eq!((probe.items, probe.probe), (1, true));
        pacer.answered(probe, accepted(probe, Some(0.99)));
        assert_eq!(pacer.figures().continuous_refill, Some(true));
        // 1 write per second: 20 more after 20 s, not after the 100 s window.
        assert_eq!(go(&pacer, 20, start + Duration::from_secs(10)), None);
        tokio::time::advance(Duration::from_secs(21)).await;
        assert_eq!(go(&pacer, 20, Instant::now()).map(|g| (g.items, g.probe)), Some((20, false)));
    }

    // A probe throttled: a window. Nothing goes out until its Retry-After, then our own count allows the budget again.
    #[tokio::test(start_paused = true)]
    async fn a_throttled_probe_stops_everything_until_the_retry_after() {
        let pacer = pacer(100, 100);
        throttle_the_first_probe(&pacer, Duration::from_secs(99)).await;
        assert_eq!(pacer.figures().continuous_refill, Some(false));
        assert_eq!(go(&pacer, 20, Instant::now()), None);
        tokio::time::advance(Duration::from_secs(98)).await;
        assert_eq!(go(&pacer, 20, Instant::now()), None, "still within the Retry-After");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(go(&pacer, 20, Instant::now()).map(|g| g.items), Some(20));
    }

    // A fixed window restarts before our own count would allow more: Graph's silence (under 80 % used), once it has
    // been heard reporting, vouches for the room.
    #[tokio::test(start_paused = true)]
    async fn graph_reporting_under_80_percent_after_a_reset_opens_the_room() {
        let pacer = pacer(100, 100);
        throttle_the_first_probe(&pacer, Duration::from_secs(30)).await;
        tokio::time::advance(Duration::from_secs(30)).await;
        // The window reset at 31 s; our own count (100 in the last 100 s) says no, so a probe goes.
        let probe = go(&pacer, 20, Instant::now()).unwrap();
        assert!(probe.probe);
        pacer.answered(probe, accepted(probe, None));
        let grant = go(&pacer, 20, Instant::now()).expect("Graph vouched for 20 % of the budget");
        assert_eq!((grant.items, grant.probe), (20, false));
        assert_ne!(pacer.figures().continuous_refill, Some(true));
    }

    // Another run used most of the budget (or it is smaller than documented): the first answers say so, and our count
    // follows Graph, not the documentation.
    #[tokio::test(start_paused = true)]
    async fn graph_reporting_more_used_than_we_sent_narrows_our_count() {
        let pacer = pacer(100, 100);
        let now = Instant::now();
        let grant = go(&pacer, 20, now).unwrap();
        pacer.answered(grant, accepted(grant, Some(0.9)));
        // 20 of ours are 90 %: the budget behaves as about 22, 2 of them left.
        assert_eq!(go(&pacer, 5, now), None);
        assert_eq!(go(&pacer, 1, now).map(|g| g.items), Some(1));
    }

    // Graph throttling for another reason (injected faults, an outage, the resource-unit limit) while nowhere near the
    // write budget: the pacer stops for the Retry-After and keeps the documented budget.
    #[tokio::test(start_paused = true)]
    async fn a_429_far_from_the_write_budget_keeps_the_budget() {
        let pacer = pacer(100, 100);
        let grant = go(&pacer, 20, Instant::now()).unwrap();
        pacer.answered(
            grant,
            Answered { accepted_writes: 10, throttled: Some(Duration::from_secs(1)), ..Answered::default() },
        );
        assert_eq!(go(&pacer, 20, Instant::now()), None, "stopped for the Retry-After");
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..4 {
            let grant = go(&pacer, 20, Instant::now()).expect("the documented budget is still there");
            pacer.answered(grant, accepted(grant, None));
        }
    }

    // A sliding window lets the probe at the end of its Retry-After through with the budget still nearly full (its
    // oldest writes are just leaving): that is no refill, and the next burst keeps to our own count.
    #[tokio::test(start_paused = true)]
    async fn a_probe_at_the_end_of_a_stop_proves_no_continuous_refill() {
        let pacer = pacer(100, 100);
        throttle_the_first_probe(&pacer, Duration::from_secs(98)).await;
        tokio::time::advance(Duration::from_secs(98)).await;
        let probe = go(&pacer, 20, Instant::now()).expect("a probe when the stop ends");
        assert!(probe.probe);
        pacer.answered(probe, accepted(probe, Some(0.99)));
        assert_eq!(pacer.figures().continuous_refill, Some(false));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(go(&pacer, 20, Instant::now()).map(|g| g.items), Some(20), "our own window has emptied");
    }
}

#[cfg(test)]
mod simulation {
    //! The pacer against simulated Graph budgets, in paused time: 10,000 writes in chunks of 20, each answered at once.

    use super::*;
    use std::collections::VecDeque;
    use std::sync::Arc;

    enum Model {
        Continuous { tokens: f64, last: Instant },
        Sliding(VecDeque<Instant>),
        Fixed { origin: Instant, index: u64, used: f64 },
    }

    struct Server {
        model: Model,
        capacity: f64,
        window: Duration,
    }

    impl Server {
        /// Accepts or refuses one write now: `Ok(percentage text)` or `Err(retry-after)`.
        fn write(&mut self, now: Instant) -> Result<Option<String>, Duration> {
            let (capacity, window) = (self.capacity, self.window);
            // Whole seconds, at least one, as Graph sends them [throttling].
            let retry_after = |secs: f64| Duration::from_secs(secs.ceil().max(1.0) as u64);
            let used = match &mut self.model {
                Model::Continuous { tokens, last } => {
                    *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * capacity / window.as_secs_f64())
                        .min(capacity);
                    *last = now;
                    if *tokens < 1.0 {
                        return Err(retry_after((1.0 - *tokens) * window.as_secs_f64() / capacity));
                    }
                    *tokens -= 1.0;
                    (capacity - *tokens) / capacity
                }
                Model::Sliding(accepted) => {
                    while accepted.front().is_some_and(|at| now.duration_since(*at) >= window) {
                        accepted.pop_front();
                    }
                    if accepted.len() as f64 >= capacity {
                        return Err(retry_after((accepted[0] + window).duration_since(now).as_secs_f64()));
                    }
                    accepted.push_back(now);
                    accepted.len() as f64 / capacity
                }
                Model::Fixed { origin, index, used } => {
                    let current = (now.duration_since(*origin).as_secs_f64() / window.as_secs_f64()) as u64;
                    if current != *index {
                        *index = current;
                        *used = 0.0;
                    }
                    if *used >= capacity {
                        let next = *origin + window * (u32::try_from(*index).unwrap() + 1);
                        return Err(retry_after(next.duration_since(now).as_secs_f64()));
                    }
                    *used += 1.0;
                    *used / capacity
                }
            };
            Ok((used > 0.8).then(|| format!("{used:.2}")))
        }
    }

    /// What is left to write, what was written, and the 429s.
    #[derive(Default)]
    struct Tally {
        untaken: usize,
        written: usize,
        throttled: usize,
    }

    /// Virtual seconds and 429s for 10,000 writes, 8 chunks in flight as `apply` sends them, each answered 20 ms
    /// after it goes; refused items go back to be taken again.
    async fn first_sync(model: Model) -> (f64, usize) {
        const USERS: usize = 10_000;
        let pacer = Arc::new(Pacer::new(Budget::GRAPH_WRITES, Budget::GRAPH_RESOURCE_UNITS));
        let server = Arc::new(Mutex::new(Server { model, capacity: 3_000.0, window: Duration::from_secs(150) }));
        let tally = Arc::new(Mutex::new(Tally { untaken: USERS, ..Tally::default() }));
        let start = Instant::now();
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (pacer, server, tally) = (pacer.clone(), server.clone(), tally.clone());
                tokio::spawn(async move {
                    loop {
                        let wanted = {
                            let mut tally = tally.lock().unwrap();
                            if tally.written == USERS {
                                return;
                            }
                            let wanted = tally.untaken.min(20);
                            tally.untaken -= wanted;
                            wanted
                        };
                        if wanted == 0 {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                        let grant = pacer.acquire(wanted, wanted).await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let mut answered = Answered::default();
                        for _ in 0..grant.writes {
                            match server.lock().unwrap().write(Instant::now()) {
                                Ok(percentage) => {
                                    answered.accepted_writes += 1;
                                    if let Some(reported) = percentage.as_deref().and_then(Reported::parse) {
                                        let highest = answered.limit_percentage.map_or(reported, |r| r.max(reported));
                                        answered.limit_percentage = Some(highest);
                                    }
                                }
                                Err(retry_after) => {
                                    let longest = answered.throttled.map_or(retry_after, |r| r.max(retry_after));
                                    answered.throttled = Some(longest);
                                }
                            }
                        }
                        {
                            let mut tally = tally.lock().unwrap();
                            tally.written += answered.accepted_writes;
                            tally.throttled += grant.writes - answered.accepted_writes;
                            tally.untaken += wanted - answered.accepted_writes;
                        }
                        pacer.answered(grant, answered);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.expect("a worker ends");
        }
        let throttled = tally.lock().unwrap().throttled;
        (Instant::now().duration_since(start).as_secs_f64(), throttled)
    }

    #[tokio::test(start_paused = true)]
    async fn ten_thousand_writes_meet_each_models_floor() {
        let now = Instant::now();
        let cases = [
            ("continuous", Model::Continuous { tokens: 3_000.0, last: now }, 350.0),
            ("sliding", Model::Sliding(VecDeque::new()), 450.0),
        ];
        let fixed = || Model::Fixed { origin: Instant::now() - Duration::from_secs(100), index: 0, used: 0.0 };
        let cases = cases.into_iter().chain([("fixed", fixed(), 350.0)]);
        for (name, mut model, floor) in cases {
            if let Model::Fixed { origin, .. } = &mut model {
                *origin = Instant::now() - Duration::from_secs(100);
            }
            if let Model::Continuous { last, .. } = &mut model {
                *last = Instant::now();
            }
            let (secs, throttled) = first_sync(model).await;
            eprintln!("{name}: {secs:.1} s against a floor of {floor} s, {throttled} × 429");
            assert!(secs <= floor * 1.03, "{name}: {secs:.1} s against a floor of {floor} s");
            assert!(throttled < 100, "{name}: {throttled} × 429");
        }
    }
}
