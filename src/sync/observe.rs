//! Observing: read everything the planner needs, and nothing more.
//!
//! Per group one paged member read (`$top=999`, only the selected properties) plus the client's one `$count`; then
//! only the ledger users that are in no Tenant B group any more. A run where nothing changed therefore costs the
//! member pages and a constant, however many users there are. Any failed membership read fails the run: planning on
//! a partial member list would look like users leaving, and remove their values.
//!
//! Pairs with a certificate source also read the certificates Intune issued in Tenant A (each source once per run,
//! concurrently with the member pages; [`super::issued`]); a failed read fails the run for the same reason.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::future::try_join_all;

use super::issued::{self, IssuedCertificates, IssuedError};
use super::ledger::LedgerState;
use super::plan::{Observed, ObservedPair};
use crate::config::SyncSettings;
use crate::domain::{Attribute, CertificateSource, GroupId, Side, UserId};
use crate::graph::{
    CREATED_DATE_TIME, DirectoryUser, GraphClient, GraphError, GroupMembers, MembershipScope, TARGET_SELECT,
};

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("reading the members of {side} group {group} failed, so nothing was written: {source}")]
    Members {
        side: Side,
        group: GroupId,
        #[source]
        source: GraphError,
    },
    #[error(transparent)]
    Certificates(#[from] IssuedError),
    #[error("re-reading {count} Tenant B users that left every group failed, so nothing was written: {source}")]
    Departed {
        count: usize,
        #[source]
        source: GraphError,
    },
}

/// The properties to read on each side: on Tenant A the match key and every template attribute, on Tenant B the
/// match key and what a write depends on ([`TARGET_SELECT`]). `authorizationInfo` is only returned when selected [group-list-members].
pub fn selects(settings: &SyncSettings) -> (Vec<String>, Vec<String>) {
    let mut source: Vec<String> = vec!["id".into(), "userPrincipalName".into()];
    let extra = |attribute: &Attribute, list: &mut Vec<String>| {
        let property = attribute.graph_property().to_owned();
        if !list.contains(&property) {
            list.push(property);
        }
    };
    extra(settings.match_key.attribute(), &mut source);
    for template in &settings.templates {
        for attribute in template.attributes() {
            extra(attribute, &mut source);
        }
    }
    // Connector certificates name their user by UPN only: the creation time tells a reused UPN's new holder apart.
    if settings.certificate_sources().contains(&CertificateSource::IntuneConnector) {
        source.push(CREATED_DATE_TIME.to_owned());
    }
    let mut target: Vec<String> = TARGET_SELECT.iter().map(|s| s.to_string()).collect();
    extra(settings.match_key.attribute(), &mut target);
    (source, target)
}

async fn read_groups(
    client: &GraphClient,
    side: Side,
    groups: &BTreeSet<&GroupId>,
    scope: MembershipScope,
    select: &[String],
) -> Result<HashMap<GroupId, GroupMembers>, ObserveError> {
    let select: Vec<&str> = select.iter().map(String::as_str).collect();
    let reads = groups.iter().map(|group| {
        let select = &select;
        async move {
            client
                .group_members(group, scope, select)
                .await
                .map(|members| ((*group).clone(), members))
                .map_err(|source| ObserveError::Members { side, group: (*group).clone(), source })
        }
    });
    Ok(try_join_all(reads).await?.into_iter().collect())
}

/// Users of several groups, each once, in id order. A group no later read needs (`readers` counts the reads still to
/// come) is moved out of `members` rather than copied: at 100,000 users the copy was about a fifth of a steady-state
/// run's peak memory (BENCHMARKS.md).
fn union(
    groups: &[GroupId],
    members: &mut HashMap<GroupId, GroupMembers>,
    readers: &mut HashMap<GroupId, usize>,
) -> (Vec<DirectoryUser>, u64) {
    let mut users: Vec<DirectoryUser> = Vec::new();
    let mut non_users = 0;
    for group in groups {
        let last = readers.get_mut(group).is_none_or(|left| {
            *left = left.saturating_sub(1);
            *left == 0
        });
        let taken = if last { members.remove(group) } else { members.get(group).cloned() };
        if let Some(m) = taken {
            non_users += m.non_user_members;
            users.extend(m.users);
        }
    }
    // Stable: of two entries for one user (a member of two of the groups), the first group's stays.
    users.sort_by(|a, b| a.id.cmp(&b.id));
    users.dedup_by(|later, earlier| later.id == earlier.id);
    (users, non_users)
}

/// How many times each group is read by [`union`] over all pairs.
fn readers(groups: impl Iterator<Item = GroupId>) -> HashMap<GroupId, usize> {
    let mut readers = HashMap::new();
    for group in groups {
        *readers.entry(group).or_insert(0) += 1;
    }
    readers
}

/// Which ledger users in no observed Tenant B group are re-read (to remove their values, or drop them when deleted).
#[derive(Debug, Clone, Copy)]
pub enum Departed<'a> {
    /// Every one of them (a full sync).
    AllUnseen,
    /// Only these (an incremental run: the users a delta query said left a Tenant B group).
    Among(&'a BTreeSet<UserId>),
}

/// Observes every pair for a full sync.
pub async fn observe(
    settings: &SyncSettings,
    source: &GraphClient,
    target: &GraphClient,
    ledger: LedgerState,
) -> Result<Observed, ObserveError> {
    observe_scoped(settings, source, target, ledger, Departed::AllUnseen).await
}

/// Observes every pair's members, and the departed ledger users `departed` names.
pub async fn observe_scoped(
    settings: &SyncSettings,
    source: &GraphClient,
    target: &GraphClient,
    ledger: LedgerState,
    departed: Departed<'_>,
) -> Result<Observed, ObserveError> {
    let scope = if settings.transitive_membership { MembershipScope::Transitive } else { MembershipScope::Direct };
    let (source_select, target_select) = selects(settings);
    let source_groups: BTreeSet<&GroupId> = settings.pairs.iter().flat_map(|p| &p.source_groups).collect();
    let target_groups: BTreeSet<&GroupId> = settings.pairs.iter().flat_map(|p| &p.target_groups).collect();
    let (mut source_members, mut target_members, issued) = futures::try_join!(
        read_groups(source, Side::TenantA, &source_groups, scope, &source_select),
        read_groups(target, Side::TenantB, &target_groups, scope, &target_select),
        read_certificates(settings, source),
    )?;

    let mut pairs = Vec::with_capacity(settings.pairs.len());
    let mut seen_targets: BTreeSet<UserId> = BTreeSet::new();
    let mut source_readers = readers(settings.pairs.iter().flat_map(|p| p.source_groups.iter().cloned()));
    let mut target_readers = readers(settings.pairs.iter().flat_map(|p| p.target_groups.iter().cloned()));
    for pair in &settings.pairs {
        let (source_users, source_non_user_members) =
            union(&pair.source_groups, &mut source_members, &mut source_readers);
        let (target_users, target_non_user_members) =
            union(&pair.target_groups, &mut target_members, &mut target_readers);
        seen_targets.extend(target_users.iter().map(|u| u.id.clone()));
        pairs.push(ObservedPair {
            name: pair.name.clone(),
            source_users,
            target_users,
            source_non_user_members,
            target_non_user_members,
            certificate_source: pair.certificate_source,
        });
    }

    let departed_ids: Vec<UserId> = ledger
        .ledger()
        .map(|l| {
            l.users
                .keys()
                .filter(|id| !seen_targets.contains(*id))
                .filter(|id| match departed {
                    Departed::AllUnseen => true,
                    Departed::Among(wanted) => wanted.contains(*id),
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut departed_targets = Vec::new();
    let mut deleted_targets = Vec::new();
    if !departed_ids.is_empty() {
        let select: Vec<&str> = target_select.iter().map(String::as_str).collect();
        let found = target
            .get_users(&departed_ids, &select)
            .await
            .map_err(|source| ObserveError::Departed { count: departed_ids.len(), source })?;
        for (id, user) in found {
            match user {
                Some(user) => departed_targets.push(user),
                None => deleted_targets.push(id),
            }
        }
    }
    let observed_at = source.graph_now();
    Ok(Observed { pairs, departed_targets, deleted_targets, ledger, issued, observed_at })
}

async fn read_certificates(
    settings: &SyncSettings,
    client: &GraphClient,
) -> Result<BTreeMap<CertificateSource, IssuedCertificates>, ObserveError> {
    let issuers = &settings.certificates.connector_issuers;
    let reads = settings
        .certificate_sources()
        .into_iter()
        .map(|kind| async move { issued::read(client, kind, issuers).await.map(|certificates| (kind, certificates)) });
    Ok(try_join_all(reads).await?.into_iter().collect())
}
