//! Run-time options of the emulator: latency, throttling budgets and fault injection.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the emulator starts. `Default` is the faithful setting: documented throttling budgets, no latency, no faults.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// Added to every Graph request (once per HTTP request; a `$batch` pays it once).
    pub latency: Duration,
    /// Throttling budgets per app + tenant.
    pub throttling: Throttling,
    /// How those budgets refill (undocumented; every model a client must handle).
    pub refill: Refill,
    /// Random faults; can be changed while running with [`crate::Emulator::set_faults`].
    pub faults: Faults,
    /// Graph requires an HTTPS `notificationUrl`; the emulator accepts `http://` too when this is true.
    pub allow_http_notification_urls: bool,
    /// Delay between a change and the delivery of its change notification.
    pub delivery_delay: Duration,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            throttling: Throttling::Graph,
            refill: Refill::Continuous,
            faults: Faults::default(),
            allow_http_notification_urls: true,
            delivery_delay: Duration::ZERO,
        }
    }
}

/// Throttling budgets. [throttling-limits] "Identity and access service limits".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Throttling {
    /// No throttling at all (benchmarks of the emulator itself).
    Off,
    /// The documented budgets: 3,500 / 5,000 / 8,000 resource units per 10 s by tenant size (< 50, 50–500, > 500
    /// users) and 3,000 writes per 150 s per app + tenant; 18,000 writes per 5 min per tenant.
    Graph,
    /// Small budgets for tests: resource units per 10 s and writes per 150 s, per app + tenant.
    Custom { resource_units_per_10s: u32, writes_per_150s: u32 },
}

/// How a quota comes back once spent. [throttling-limits] gives "3,000 writes per 2 min 30 s" and no more:
/// `../shared/docs/graph.md` marks the refill UNCERTAIN, so the emulator offers each reading of that sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Refill {
    /// A token bucket: the budget flows back evenly (3,000 per 150 s is 20 writes per second).
    #[default]
    Continuous,
    /// At most the budget within any window: a write counts until it is one window old.
    SlidingWindow,
    /// Windows back to back: the whole budget comes back at each window's start. `phase_secs`: how far into its
    /// current window the quota is at its first request (0: the window starts then).
    FixedWindow { phase_secs: u64 },
}

impl std::str::FromStr for Refill {
    type Err = String;

    /// `continuous`, `sliding-window`, `fixed-window` or `fixed-window:<phase seconds>`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "continuous" => Ok(Self::Continuous),
            "sliding-window" => Ok(Self::SlidingWindow),
            "fixed-window" => Ok(Self::FixedWindow { phase_secs: 0 }),
            other => other
                .strip_prefix("fixed-window:")
                .and_then(|phase| phase.parse().ok())
                .map(|phase_secs| Self::FixedWindow { phase_secs })
                .ok_or_else(|| {
                    format!(
                        "unknown refill model {other:?}: use continuous, sliding-window, fixed-window or \
                         fixed-window:<phase seconds>"
                    )
                }),
        }
    }
}

/// A kind of injected Graph fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultKind {
    /// `429 TooManyRequests` with `Retry-After`. [throttling]
    Throttle429,
    /// `500 InternalServerError`.
    Internal500,
    /// `503 serviceNotAvailable` with `Retry-After`. [throttling]
    Unavailable503,
    /// The request hangs for 120 s, then `504 GatewayTimeout`.
    Timeout,
}

/// Random faults, drawn from a generator seeded with `seed` (reproducible for a given request order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Share (0..1) of Graph requests (each batch item counts) answered with a fault drawn from `kinds`.
    pub error_rate: f64,
    /// Fault kinds to draw from; empty means all four.
    pub kinds: Vec<FaultKind>,
    /// Share (0..1) of token requests (token endpoint and managed identity endpoint) that fail transiently.
    pub token_error_rate: f64,
    /// Share (0..1) of change notifications never delivered.
    pub notification_drop_rate: f64,
    /// Share (0..1) of change notifications delivered twice.
    pub notification_duplicate_rate: f64,
    /// Seed of the fault generator.
    pub seed: u64,
    /// The `Retry-After` (seconds) of injected 429 and 503 answers; `None` draws 1 to 3 s. Graph sends whole seconds
    /// [throttling]; tests set 1 to keep suites short.
    pub retry_after_secs: Option<u64>,
    /// How many faults (Graph errors, token errors, dropped or duplicated notifications) may be injected in all;
    /// `None` is no limit. Past it the emulator is healthy again: "fails for a while, then recovers", or exactly N
    /// hung requests with [`FaultKind::Timeout`], without the test racing the requests to switch faults off.
    pub max_faults: Option<u64>,
    /// `200 OK` answers whose content is not what the documentation promises (not drawn, not counted in
    /// `max_faults`: each applies to every answer it fits while set).
    pub odd: OddAnswers,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            kinds: Vec::new(),
            token_error_rate: 0.0,
            notification_drop_rate: 0.0,
            notification_duplicate_rate: 0.0,
            seed: 0,
            retry_after_secs: None,
            max_faults: None,
            odd: OddAnswers::default(),
        }
    }
}

/// Answers that are `200 OK` with content Graph's documentation does not allow: what a review found reading as
/// "empty" or "gone" (issue 18), so a client must refuse them rather than write from them.
///
/// - A member listing with `$count=true` carries the collection's size in `@odata.count` and every member once over
///   its pages [group-list-members] [paging]; a short page leaves out a member the count still counts.
/// - A user member is a user with the properties `$select` asked for [group-list-members]; only the
///   "limited information" of an object the app may not read has just `@odata.type` and `id` [permissions-overview].
/// - `@odata.nextLink` is "a URL" [paging], never a number.
/// - `authorizationInfo` is a complex property that is always there when selected, and its `certificateUserIds` a
///   collection of strings [user resource type, authorizationInfo resource type].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OddAnswers {
    /// Each member page leaves out its last user while `@odata.count` still counts it.
    pub short_member_pages: bool,
    /// User members are listed with only `@odata.type` and `id`, whatever `$select` asked for.
    pub members_without_fields: bool,
    /// Every member page carries `"@odata.nextLink": 1` in place of its link (or of none, on the last page).
    pub malformed_next_link: bool,
    /// These users' `authorizationInfo`, by user id, is shown in the odd way given, in member listings and user reads.
    pub authorization_info: std::collections::BTreeMap<String, OddAuthorizationInfo>,
}

impl OddAnswers {
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }
}

/// How a user's `authorizationInfo` is shown when it is not as documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OddAuthorizationInfo {
    /// The property is left out although `$select` asked for it.
    Absent,
    /// `"authorizationInfo": null`.
    Null,
    /// `"authorizationInfo": {"certificateUserIds": "…"}`: one string, not a collection.
    NotAList,
}

/// Which answer an expired or unknown delta token gets. [delta-query-overview] documents all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum DeltaExpiry {
    /// `410 Gone` with a `Location` header pointing at a fresh full sync.
    #[default]
    Gone410,
    /// `400` with code `syncStateNotFound`.
    SyncStateNotFound,
    /// `400` with code `resyncRequired`.
    ResyncRequired,
}
