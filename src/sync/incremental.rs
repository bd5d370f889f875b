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
use time::OffsetDateTime;

use super::error::RunError;
use super::observe;
use super::plan::{Observed, Plan};
use super::tenants::Tenants;
use crate::config::SyncSettings;
use crate::domain::{GroupId, TenantId, UserId};
use crate::domain::{MatchKey, Side};
use crate::graph::GraphClient;
use crate::storage::{BlobStore, ETag, StorageError, read_json, update_json};

pub const DELTA_SCHEMA_VERSION: u32 = 1;
/// Attempts of an ETag-guarded read-modify-write of a delta cursor.
const CURSOR_ATTEMPTS: u32 = 8;

/// One group a notification named, on its tenant's side.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
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
    /// New cursors to store once the run has applied everything.
    pub cursors: Vec<CursorMove>,
}

/// One group's delta position: as it was read (with its ETag), and the one Graph gave for next time.
#[derive(Debug, Clone)]
pub struct CursorMove {
    pub blob: String,
    /// The cursor blob's ETag when this round read it (`None`: there was none, or it was unreadable).
    pub read: Option<ETag>,
    /// When the position read was stored (RFC 3339), if there was one.
    pub read_stored: Option<String>,
    pub next: DeltaCursor,
}

/// A delta position that found no change is stored again only when it is this old: its token stays good for 7 days
/// [delta-query-overview], and a storm of notifications that change nothing then writes nothing.
pub const QUIET_CURSOR_REFRESH: time::Duration = time::Duration::hours(1);

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

/// One delta round per changed group, from its stored cursor. A first round, an expired token, or (with nested
/// membership) a nested group joining or leaving asks for whole pairs to be reconciled.
pub async fn read_changes(
    tenants: &Tenants,
    state: &dyn BlobStore,
    groups: &BTreeSet<ChangedGroup>,
    transitive_membership: bool,
) -> Result<Changes, RunError> {
    let mut changes = Changes::default();
    for changed in groups {
        let client = tenants.side(changed.side);
        let blob = cursor_blob(client.tenant(), &changed.group);
        let (cursor, read) = match read_json::<DeltaCursor>(state, &blob).await {
            Ok(Some((cursor, etag))) => (Some(cursor), Some(etag)),
            Ok(None) => (None, None),
            // A cursor that cannot be parsed is replaced by a fresh one after a full reconcile of the pair.
            Err(StorageError::Corrupt { reason, .. }) => {
                tracing::warn!(blob, %reason, "unreadable delta cursor: starting over");
                (None, None)
            }
            Err(source) => return Err(RunError::CursorUnreadable { group: changed.group.clone(), source }),
        };
        let round = match client.group_delta(&changed.group, cursor.as_ref().map(|c| c.delta_link.as_str())).await {
            Err(error) if error.is_delta_token_expired() => {
                tracing::warn!(group = %changed.group, %error, "delta token expired: reconciling the pair in full");
                changes.resync(format!(
                    "the delta token of {:?} group {} expired ({error}); a fresh one was taken",
                    changed.side, changed.group
                ));
                client.group_delta(&changed.group, None).await
            }
            other => other,
        };
        let round =
            round.map_err(|source| RunError::Delta { side: changed.side, group: changed.group.clone(), source })?;
        if round.initial {
            changes.resync(format!(
                "first notification for {:?} group {}: no earlier delta position to compare with",
                changed.side, changed.group
            ));
        } else if round.non_user_changes > 0 && transitive_membership {
            changes.resync(format!(
                "a nested group joined or left {:?} group {}: its users are not listed by delta query",
                changed.side, changed.group
            ));
        }
        let users = match changed.side {
            Side::TenantA => &mut changes.source_users,
            Side::TenantB => &mut changes.target_users,
        };
        if !round.initial {
            users.extend(round.added.iter().cloned());
            users.extend(round.removed.iter().cloned());
        }
        let stored =
            OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        changes.cursors.push(CursorMove {
            blob,
            read,
            read_stored: cursor.map(|c| c.stored),
            next: DeltaCursor {
                schema_version: DELTA_SCHEMA_VERSION,
                group: changed.group.clone(),
                delta_link: round.delta_link,
                stored,
            },
        });
    }
    Ok(changes)
}

/// Stores each group's new delta position (ETag-guarded; a failure only costs a repeat of the same changes).
/// Returns a note per position that could not be stored.
pub async fn store_cursors(state: &dyn BlobStore, changes: &Changes) -> Vec<String> {
    let mut notes = Vec::new();
    for CursorMove { blob, next: cursor, .. } in &changes.cursors {
        let written = match update_json::<DeltaCursor, _>(state, blob, CURSOR_ATTEMPTS, |_| cursor.clone()).await {
            // An unreadable cursor holds nothing worth keeping (unlike the ledger): replace it, under the lease.
            Err(StorageError::Corrupt { .. }) => state
                .put(blob, serde_json::to_vec(cursor).unwrap_or_default(), "application/json")
                .await
                .map(|()| cursor.clone()),
            other => other,
        };
        if let Err(error) = written {
            notes.push(format!(
                "the delta position of group {} could not be stored ({error}); the next notification repeats this work",
                cursor.group
            ));
        }
    }
    notes
}

/// Whether every cursor these changes were read from is still the one stored (nobody moved a position on since).
pub async fn cursors_unmoved(state: &dyn BlobStore, changes: &Changes) -> bool {
    for cursor in &changes.cursors {
        let now = match state.get(&cursor.blob).await {
            Ok(found) => found.map(|blob| blob.etag),
            Err(_) => return false,
        };
        if now != cursor.read {
            return false;
        }
    }
    true
}

/// After a round that found no change, without the lease: stores each position again only when the stored one is
/// older than [`QUIET_CURSOR_REFRESH`], and only if nobody moved it since it was read (ETag-guarded; a position
/// moved on meanwhile is newer and stays). Returns a note per position that could not be stored.
pub async fn refresh_quiet_cursors(state: &dyn BlobStore, changes: &Changes) -> Vec<String> {
    let now = OffsetDateTime::now_utc();
    let mut notes = Vec::new();
    for cursor in &changes.cursors {
        let stored = cursor
            .read_stored
            .as_deref()
            .and_then(|text| OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok());
        if cursor.read.is_some() && stored.is_some_and(|stored| now - stored < QUIET_CURSOR_REFRESH) {
            continue;
        }
        let body = serde_json::to_vec(&cursor.next).unwrap_or_default();
        match state.put_if(&cursor.blob, body, "application/json", cursor.read.as_ref()).await {
            Ok(_) | Err(StorageError::ConditionNotMet { .. }) => {}
            Err(error) => notes.push(format!(
                "the delta position of group {} could not be stored ({error}); the next notification repeats this \
                 delta query",
                cursor.next.group
            )),
        }
    }
    notes
}

/// The current match keys of the Tenant A users a delta round named: from the observed members, else re-read
/// (users removed from the group); a user Graph no longer knows has an unknown key.
pub async fn source_keys(
    source: &GraphClient,
    settings: &SyncSettings,
    observed: &Observed,
    users: &BTreeSet<UserId>,
) -> Result<Vec<SourceKey>, RunError> {
    let key = &settings.match_key;
    let mut keys = Vec::with_capacity(users.len());
    let mut missing = Vec::new();
    for id in users {
        match observed.pairs.iter().flat_map(|p| &p.source_users).find(|u| &u.id == id) {
            Some(user) => keys.push(SourceKey::Known(key.key_of(user))),
            None => missing.push(id.clone()),
        }
    }
    if !missing.is_empty() {
        let (select, _) = observe::selects(settings);
        let select: Vec<&str> = select.iter().map(String::as_str).collect();
        let found = source
            .get_users(&missing, &select)
            .await
            .map_err(|source| RunError::SourceKeys { count: missing.len(), source })?;
        keys.extend(found.into_iter().map(|(_, user)| match user {
            Some(user) => SourceKey::Known(key.key_of(&user)),
            None => SourceKey::Unknown,
        }));
    }
    Ok(keys)
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
