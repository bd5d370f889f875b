//! The guard against an accidental mass removal: a value type of the settings (`REMOVAL_THRESHOLD_*`) that the
//! planner applies.

/// Guard against an accidental mass removal, like Entra Connect's accidental-delete prevention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemovalThreshold {
    /// More users losing values than this in one run holds removals back.
    pub max_users: usize,
    /// More than this share (0–100) of the users holding our values losing them holds removals back, from
    /// `MIN_USERS_FOR_SHARE` users losing values on: one user leaving is never a mass removal, two of four are.
    pub max_percent: f64,
}

impl RemovalThreshold {
    /// From 10 before issue 18: half of a group of eight could lose their values without a hold.
    pub const MIN_USERS_FOR_SHARE: usize = 2;
}
