//! The notification path's scope: which groups changed, what delta query says changed in them, and which Tenant B
//! users that concerns.
//!
//! A change notification only says "group X changed" (whether `members@delta` rides along is undocumented
//! [change-notifications-delivery-webhooks]), so it is never trusted as the change: the run asks `/groups/delta` from
//! the group's stored deltaLink ([`DeltaCursor`], one ETag-guarded blob per tenant and group), then observes and
//! plans exactly as the full sync does, and applies only the part of the plan about the affected users
//! ([`super::Plan::restricted_to`]). A duplicated or replayed notification finds no change and costs one request.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::plan::{Observed, Plan};
use crate::domain::{GroupId, MatchKey, Side, TenantId, UserId};

pub const DELTA_SCHEMA_VERSION: u32 = 1;

/// One group a notification named, on its tenant's side.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangedGroup {
    pub side: Side,
    pub group: GroupId,
}

/// What a run covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every user of every pair (the timer, the CLI).
    Full,
    /// The users that changes in these groups concern (a change notification).
    Groups(BTreeSet<ChangedGroup>),
}

/// The scope as the run report records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ScopeReport {
    Full,
    #[serde(rename_all = "camelCase")]
    Incremental {
        groups: Vec<ChangedGroup>,
        /// Why the run reconciled whole pairs instead (first notification for a group, expired delta token…).
        full_resync: Option<String>,
        /// Tenant B users the applied part of the plan was restricted to (when not a full resync).
        affected_users: usize,
    },
}

/// A group's delta position, stored at [`cursor_blob`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaCursor {
    pub schema_version: u32,
    pub group: GroupId,
    /// The whole `@odata.deltaLink` URL [group-delta].
    pub delta_link: String,
    /// When it was stored (RFC 3339): Graph keeps directory delta tokens 7 days [delta-query-overview].
    pub stored: String,
}

/// `delta/<tenant>/<group>.json` in the state container.
pub fn cursor_blob(tenant: &TenantId, group: &GroupId) -> String {
    format!("delta/{tenant}/{group}.json")
}

/// What the delta rounds of one run found.
#[derive(Debug, Default)]
pub struct Changes {
    /// Tenant A users added to or removed from a changed group.
    pub source_users: BTreeSet<UserId>,
    /// Tenant B users added to or removed from a changed group.
    pub target_users: BTreeSet<UserId>,
    /// Set when whole pairs must be reconciled, with the reason.
    pub full_resync: Option<String>,
    /// New cursors to store once the run has applied everything: (blob, cursor).
    pub cursors: Vec<(String, DeltaCursor)>,
}

impl Changes {
    /// Nothing to reconcile: every round came back empty.
    pub fn is_empty(&self) -> bool {
        self.source_users.is_empty() && self.target_users.is_empty() && self.full_resync.is_none()
    }

    pub fn resync(&mut self, reason: String) {
        if self.full_resync.is_none() {
            self.full_resync = Some(reason);
        }
    }
}

/// The match key of a Tenant A user a delta round named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKey {
    /// Its current key (a user lacking the attribute matches nobody and contributes nothing).
    Known(Option<String>),
    /// Graph no longer knows the user (deleted): whoever it matched cannot be found by key.
    Unknown,
}

/// The Tenant B users a run's changes concern: those added to or removed from a Tenant B group, those whose key
/// equals the key of a Tenant A user added or removed, and — when a removed Tenant A user's key cannot be read any
/// more — every user the plan would take values from (the ledger knows what is ours; the key does not matter).
pub fn affected_targets(
    observed: &Observed,
    match_key: &MatchKey,
    changed_targets: &BTreeSet<UserId>,
    source_keys: &[SourceKey],
    plan: &Plan,
) -> BTreeSet<UserId> {
    let mut affected = changed_targets.clone();
    let keys: BTreeSet<&String> =
        source_keys.iter().filter_map(|k| if let SourceKey::Known(Some(key)) = k { Some(key) } else { None }).collect();
    if !keys.is_empty() {
        let targets = observed.pairs.iter().flat_map(|p| &p.target_users).chain(&observed.departed_targets);
        for user in targets {
            if match_key.key_of(user).is_some_and(|key| keys.contains(&key)) {
                affected.insert(user.id.clone());
            }
        }
    }
    if source_keys.contains(&SourceKey::Unknown) {
        affected.extend(plan.changes.iter().filter(|c| !c.remove.is_empty()).map(|c| c.user.id.clone()));
    }
    affected
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RemovalThreshold;
    use crate::domain::Template;
    use crate::sync::plan::{ObservedPair, PlanSettings, plan};
    use crate::sync::testing::user;
    use crate::sync::{Ledger, LedgerState};

    fn observed(sources: Vec<crate::graph::DirectoryUser>, targets: Vec<crate::graph::DirectoryUser>) -> Observed {
        Observed {
            pairs: vec![ObservedPair {
                name: "p".into(),
                source_users: sources,
                target_users: targets,
                ..Default::default()
            }],
            departed_targets: vec![],
            deleted_targets: vec![],
            ledger: LedgerState::Loaded(Ledger::new()),
            issued: Default::default(),
            observed_at: time::OffsetDateTime::now_utc(),
        }
    }

    fn planned(observed: &Observed) -> Plan {
        plan(
            observed,
            &PlanSettings {
                match_key: MatchKey::parse("upn-local-part").unwrap(),
                templates: vec![Template::parse("subject-cn").unwrap()],
                removal_threshold: RemovalThreshold { max_users: 500, max_percent: 20.0 },
                allow_mass_removal: false,
                serial_order: Default::default(),
            },
        )
    }

    #[test]
    fn a_tenant_a_change_affects_the_tenant_b_users_with_the_same_key() {
        let alice_b = user("Alice@b.example").build();
        let bob_b = user("bob@b.example").build();
        let observed = observed(vec![], vec![alice_b.clone(), bob_b.clone()]);
        let key = MatchKey::parse("upn-local-part").unwrap();
        let affected = affected_targets(
            &observed,
            &key,
            &BTreeSet::new(),
            &[SourceKey::Known(Some("alice".into())), SourceKey::Known(None)],
            &planned(&observed),
        );
        assert_eq!(affected, BTreeSet::from([alice_b.id]));
    }

    #[test]
    fn a_deleted_tenant_a_user_affects_every_user_losing_values() {
        let alice_b = user("alice@b.example").values(["X509:<S>CN=alice"]).build();
        let bob_b = user("bob@b.example").build();
        let carl_b = user("carl@b.example").build();
        let mut observed = observed(vec![], vec![alice_b.clone(), bob_b, carl_b.clone()]);
        let mut ledger = Ledger::new();
        ledger.set(alice_b.id.clone(), vec!["X509:<S>CN=alice".into()]);
        observed.ledger = LedgerState::Loaded(ledger);
        let key = MatchKey::parse("upn-local-part").unwrap();
        let plan = planned(&observed);
        let changed = BTreeSet::from([carl_b.id.clone()]);
        let affected = affected_targets(&observed, &key, &changed, &[SourceKey::Unknown], &plan);
        assert_eq!(affected, BTreeSet::from([alice_b.id, carl_b.id]));
    }
}
