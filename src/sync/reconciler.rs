//! The reconciler: under the tenant's run lease, observe → plan → apply for a [`Scope`], as
//! `Result<Applied, RunError>` (kube-rs's `reconcile → Result<Action, Error>`). It decides nothing about reporting:
//! the run report is built from its result afterwards ([`super::SyncService`]).
//!
//! A full sync applies the whole plan. An incremental run first asks delta query what changed
//! ([`incremental::read_changes`]); when nothing did it stops there, otherwise it observes and plans exactly as the
//! full sync does and applies the part of the plan about the affected users.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::apply;
use super::error::RunError;
use super::incremental::{self, Changes, Scope};
use super::lease::{LEASE_DURATION, RunLease};
use super::ledger::{self, Ledger, LedgerAnchor, LedgerState};
use super::observe;
use super::plan::{self, Conflict, HeldBackRemovals, PairOutcome, Plan, PlanSettings, Skip, UserChange};
use super::report::Trigger;
use super::tenants::Tenants;
use crate::config::Settings;
use crate::domain::TenantId;
use crate::storage::{BlobStore, StorageError, Stores, read_json};

/// An incremental run waits this long for a held lease (another notification, or the timer) before failing its
/// invocation so the queue retries it; a full sync that finds the lease held is skipped at once instead.
const INCREMENTAL_LEASE_WAIT: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub trigger: Trigger,
    /// Plan and report, write nothing (also forced by the `DRY_RUN` setting).
    pub dry_run: bool,
    /// Apply removals even above the safety threshold (also `ALLOW_MASS_REMOVAL`).
    pub allow_mass_removal: bool,
    /// Start a new ownership ledger although the anchor says one existed (`--accept-new-ledger`, after a ledger
    /// that cannot be restored): the run is a first sync again, and says what that costs.
    pub accept_new_ledger: bool,
    pub invocation_id: Option<String>,
    /// When writing stops and the rest is left to a continuation, counted from the start of the run
    /// (`SYNC_SOFT_DEADLINE_MINUTES` for the Functions triggers; none for the CLI).
    pub soft_deadline: Option<Duration>,
    /// A full sync that must not be skipped (a continuation): wait for a held lease like an incremental run, and
    /// fail so the queue retries when it stays held.
    pub wait_for_lease: bool,
    /// The caller can queue follow-up work (a Functions trigger with the `followUps` output): the run hands on the
    /// groups folded into it while it held the lease ([`Trail::follow_ups`]). The CLI leaves them for the next run.
    pub queues_follow_ups: bool,
}

impl Default for RunRequest {
    fn default() -> Self {
        Self {
            trigger: Trigger::Cli,
            dry_run: false,
            allow_mass_removal: false,
            accept_new_ledger: false,
            invocation_id: None,
            soft_deadline: None,
            wait_for_lease: false,
            queues_follow_ups: false,
        }
    }
}

/// What a successful run did.
#[derive(Debug)]
pub enum Applied {
    /// An incremental run whose delta rounds found no membership change: nothing else was read.
    NothingChanged,
    /// A dry run: the plan, not applied.
    Planned { plan: PlanSummary, changes: Vec<UserChange> },
    /// The plan was applied; some users may have failed (they are in the changes).
    Written { plan: PlanSummary, applied: apply::Applied },
}

impl Applied {
    /// Whether every planned change went in (a run with failed users completes, but not successfully).
    pub fn all_written(&self) -> bool {
        match self {
            Self::Written { applied, .. } => applied.all_written(),
            Self::NothingChanged | Self::Planned { .. } => true,
        }
    }
}

/// What the plan found, besides its changes.
#[derive(Debug, Default)]
pub struct PlanSummary {
    pub pairs: Vec<PairOutcome>,
    pub skipped: Vec<Skip>,
    pub conflicts: Vec<Conflict>,
    pub removals_disabled: Option<String>,
    pub removals_held_back: Option<HeldBackRemovals>,
    /// Matched users whose values were already right.
    pub unchanged: usize,
}

impl PlanSummary {
    /// Splits a plan into its summary and its changes (apply needs the whole plan; the report needs both halves).
    fn of(plan: &Plan) -> Self {
        Self {
            pairs: plan.pairs.clone(),
            skipped: plan.skipped.clone(),
            conflicts: plan.conflicts.clone(),
            removals_disabled: plan.removals_disabled.clone(),
            removals_held_back: plan.removals_held_back.clone(),
            unchanged: plan.unchanged,
        }
    }
}

/// What waits at [`ledger::folded_blob`] for the run holding the lease: the groups of notifications that met it, and
/// whether a full sync (the timer's, or a continuation) met it. That run hands them on when it ends
/// (`Trail::follow_ups`), so a change made during a long first sync is neither lost nor retried into the poison
/// queue, and a storm of notifications cannot starve the timer's full sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Folded {
    #[serde(default)]
    pub groups: BTreeSet<incremental::ChangedGroup>,
    #[serde(default)]
    pub full_sync: bool,
}

impl Folded {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && !self.full_sync
    }
}

/// What a run gathered on the way, whatever its result: notes for the administrator, and for an incremental run
/// what its delta rounds decided.
#[derive(Debug, Default)]
pub struct Trail {
    pub notes: Vec<String>,
    /// Why the run reconciled whole pairs instead of the changed users (first notification, expired token…).
    pub full_resync: Option<String>,
    /// Tenant B users the applied part of the plan was restricted to.
    pub affected_users: Option<usize>,
    /// Groups whose notifications were folded into this run while it held the lease: to queue as one incremental
    /// run (only when [`RunRequest::queues_follow_ups`]).
    pub follow_ups: Vec<incremental::ChangedGroup>,
    /// A full sync met this run's lease and was handed to it: to queue as a continuation (only when
    /// [`RunRequest::queues_follow_ups`]; not when this run was itself a full sync that completed).
    pub full_sync_follows: bool,
}

/// A run's result with its trail.
#[derive(Debug)]
pub struct Reconciled {
    pub result: Result<Applied, RunError>,
    pub trail: Trail,
}

/// How to run: the settings, both tenants' clients.
pub struct Reconciler {
    settings: Arc<Settings>,
    tenants: Tenants,
}

impl Reconciler {
    pub fn new(settings: Arc<Settings>, tenants: Tenants) -> Self {
        Self { settings, tenants }
    }

    pub fn tenants(&self) -> &Tenants {
        &self.tenants
    }

    /// One run of `scope`: takes the tenant's lease (unless `dry_run`), reconciles, releases the lease.
    pub async fn reconcile(&self, stores: &Stores, scope: &Scope, dry_run: bool, request: &RunRequest) -> Reconciled {
        let mut trail = Trail::default();
        let tenant = &self.settings.tenant_b.tenant_id;
        let deadline = request.soft_deadline.map(|after| tokio::time::Instant::now() + after);

        // An incremental run asks delta query first, before the lease: a notification that finds no change (a
        // duplicate, a replay, a change already reconciled) takes no lease, reads nothing else and writes nothing.
        let mut read_before_lease = None;
        if let Scope::Groups(groups) = scope {
            let sync = &self.settings.sync;
            let state = stores.state.as_ref();
            let changes =
                match incremental::read_changes(&self.tenants, state, groups, sync.transitive_membership).await {
                    Ok(changes) => changes,
                    Err(error) => return Reconciled { result: Err(error), trail },
                };
            if changes.is_empty() {
                trail.notes.push("no membership change since the last notification: nothing else was read".to_owned());
                if !dry_run {
                    trail.notes.extend(incremental::refresh_quiet_cursors(state, &changes).await);
                }
                return Reconciled { result: Ok(Applied::NothingChanged), trail };
            }
            read_before_lease = Some((groups, changes));
        }

        // One writer per Tenant B: the timer and the notification path never write concurrently.
        let lease = if dry_run {
            None
        } else {
            // The CLI's full sync is skipped at once; the timer's is handed to the holder at once (it runs when that
            // run ends); incremental runs and continuations wait a little first.
            let skippable = *scope == Scope::Full && !request.wait_for_lease && !request.queues_follow_ups;
            let waits = *scope != Scope::Full || request.wait_for_lease;
            let wait = if waits { INCREMENTAL_LEASE_WAIT } else { Duration::ZERO };
            match RunLease::take(&stores.state, &ledger::lease_blob(tenant), wait).await {
                Ok(Some(lease)) => Some(lease),
                Ok(None) if skippable => return Reconciled { result: Err(RunError::LeaseHeld), trail },
                // The work this run was for would be lost if it were skipped (a change, a due full sync): hand it
                // to the run holding the lease, or fail so the queue retries.
                Ok(None) => match self.fold_into_holder(stores, scope).await {
                    Ok(Some(lease)) => Some(lease),
                    Ok(None) => return Reconciled { result: Err(RunError::Folded), trail },
                    Err(_) => return Reconciled { result: Err(RunError::LeaseBusy { waited: wait }), trail },
                },
                Err(error) => return Reconciled { result: Err(RunError::Lease(error)), trail },
            }
        };

        let permit: &dyn apply::WritePermit = match &lease {
            Some(lease) => lease,
            None => &NoWrites,
        };
        let bounds = WriteBounds { permit, deadline };
        let result = self.observe_plan_apply(stores, read_before_lease, dry_run, request, &bounds, &mut trail).await;

        if let Some(lease) = &lease
            && request.queues_follow_ups
            && !lease.is_lost()
            && !continued(&result)
        {
            match self.take_folded(stores).await {
                Ok(folded) => {
                    trail.follow_ups = folded.groups.into_iter().collect();
                    // A full sync that just ran is the one that was due.
                    trail.full_sync_follows = folded.full_sync && !(*scope == Scope::Full && result.is_ok());
                }
                Err(error) => trail.notes.push(format!(
                    "the notifications folded into this run could not be read ({error}); the next run hands them on"
                )),
            }
        }
        if let Some(lease) = lease {
            if lease.is_lost() {
                trail.notes.push("the run lease was lost during the run; another run may have started".to_owned());
            }
            if let Err(error) = lease.release().await {
                trail.notes.push(format!(
                    "the run lease could not be released ({error}); it expires by itself within {} s",
                    LEASE_DURATION.as_secs()
                ));
            }
        }
        Reconciled { result, trail }
    }

    /// `read_before_lease`: for an incremental run, its groups and what delta query said of them before the lease
    /// (`None` for a full sync).
    async fn observe_plan_apply(
        &self,
        stores: &Stores,
        read_before_lease: Option<(&BTreeSet<incremental::ChangedGroup>, Changes)>,
        dry_run: bool,
        request: &RunRequest,
        bounds: &WriteBounds<'_>,
        trail: &mut Trail,
    ) -> Result<Applied, RunError> {
        let sync = &self.settings.sync;
        let state = stores.state.as_ref();
        let ledger_blob = ledger::ledger_blob(&self.settings.tenant_b.tenant_id);

        // What delta query said before the lease holds unless a run moved a position on meanwhile (it reconciled
        // those changes, and more may have come): then ask again, under the lease.
        let changes: Option<Changes> = match read_before_lease {
            None => None,
            Some((_, changes)) if incremental::cursors_unmoved(state, &changes).await => Some(changes),
            Some((groups, _)) => {
                Some(incremental::read_changes(&self.tenants, state, groups, sync.transitive_membership).await?)
            }
        };
        if let Some(changes) = &changes {
            trail.full_resync.clone_from(&changes.full_resync);
            if changes.is_empty() {
                trail
                    .notes
                    .push("no membership change left once the lease was taken: nothing else was read".to_owned());
                if !dry_run {
                    trail.notes.extend(incremental::store_cursors(state, changes).await);
                }
                return Ok(Applied::NothingChanged);
            }
        }

        let ledger = match read_json::<Ledger>(state, &ledger_blob).await {
            Ok(Some((ledger, _))) => LedgerState::Loaded(ledger),
            Ok(None) => LedgerState::Missing,
            Err(StorageError::Corrupt { reason, .. }) => LedgerState::Unreadable(reason),
            Err(error) => return Err(RunError::Ledger(error)),
        };
        if let LedgerState::Unreadable(reason) = &ledger {
            tracing::error!(blob = ledger_blob, %reason, "the ownership ledger is unreadable: this run writes nothing");
        }
        let tenant = &self.settings.tenant_b.tenant_id;
        let anchor = self.check_anchor(state, &ledger, tenant, request.accept_new_ledger, trail).await?;
        let restrict_to = changes.as_ref().filter(|c| c.full_resync.is_none());
        let departed = match restrict_to {
            None => observe::Departed::AllUnseen,
            Some(changes) => observe::Departed::Among(&changes.target_users),
        };
        let (source, target) = (&self.tenants.source, &self.tenants.target);
        let observed = observe::observe_scoped(sync, source, target, ledger, departed).await?;
        trail.notes.extend(observed.issued.values().flat_map(|issued| issued.notes.iter().cloned()));
        let plan = plan::plan(
            &observed,
            &PlanSettings {
                match_key: sync.match_key.clone(),
                templates: sync.templates.clone(),
                removal_threshold: sync.removal_threshold,
                allow_mass_removal: request.allow_mass_removal || sync.allow_mass_removal,
                serial_order: sync.certificates.serial_order,
            },
        );
        let plan = match restrict_to {
            None => plan,
            Some(changes) => {
                let source_keys = incremental::source_keys(source, sync, &observed, &changes.source_users).await?;
                let affected = incremental::affected_targets(
                    &observed,
                    &sync.match_key,
                    &changes.target_users,
                    &source_keys,
                    &plan,
                );
                trail.affected_users = Some(affected.len());
                plan.restricted_to(&affected)
            }
        };
        // Apply works from the plan alone: both tenants' members (tens of MB at 100,000 users) can go now.
        drop(observed);
        crate::memory::release_freed_memory();
        let summary = PlanSummary::of(&plan);

        if dry_run {
            return Ok(Applied::Planned { plan: summary, changes: plan.changes });
        }
        let WriteBounds { permit, deadline } = *bounds;
        let mut written = apply::apply(plan, target, state, &ledger_blob, permit, &sync.match_key, deadline).await;
        trail.notes.append(&mut written.notes);
        if anchor == Anchor::Due {
            trail.notes.extend(write_anchor(state, tenant, &ledger_blob).await);
        }
        let applied = Applied::Written { plan: summary, applied: written };
        // The delta position moves on only when everything was applied: after a failure the next notification
        // sees the same changes again (the timer's full sync is the net under both).
        if let Some(changes) = &changes {
            if applied.all_written() {
                trail.notes.extend(incremental::store_cursors(state, changes).await);
            } else {
                trail.notes.push(
                    "the delta position was kept: the next notification for these groups reconsiders the same changes"
                        .to_owned(),
                );
            }
        }
        Ok(applied)
    }
}

/// What bounds a run's writes: its lease (none for a dry run) and its soft deadline.
#[derive(Clone, Copy)]
struct WriteBounds<'a> {
    permit: &'a dyn apply::WritePermit,
    deadline: Option<tokio::time::Instant>,
}

/// Whether the run stopped at its soft deadline (its continuation hands on what was folded into it).
fn continued(result: &Result<Applied, RunError>) -> bool {
    matches!(result, Ok(Applied::Written { applied, .. }) if applied.continued)
}

impl Reconciler {
    /// Records the work of `scope` (its groups, or a due full sync) for the run holding the lease, then tries the
    /// lease once more: a holder that ended between the two may have handed on the record before this one was added.
    /// `Ok(Some)`: the lease is ours after all, run now. `Err`: the record could not be written (the queue retries).
    async fn fold_into_holder(&self, stores: &Stores, scope: &Scope) -> Result<Option<RunLease>, StorageError> {
        let tenant = &self.settings.tenant_b.tenant_id;
        let blob = ledger::folded_blob(tenant);
        crate::storage::update_json::<Folded, _>(stores.state.as_ref(), &blob, 8, |held| {
            let mut held = held.unwrap_or_default();
            match scope {
                Scope::Full => held.full_sync = true,
                Scope::Groups(groups) => held.groups.extend(groups.iter().cloned()),
            }
            held
        })
        .await?;
        match scope {
            Scope::Full => tracing::info!("the lease is held by another run: the full sync was handed to it"),
            Scope::Groups(groups) => {
                tracing::info!(
                    groups = groups.len(),
                    "the lease is held by another run: the changed groups were handed to it"
                );
            }
        }
        RunLease::take(&stores.state, &ledger::lease_blob(tenant), Duration::ZERO).await
    }

    /// Takes what was folded into this run (and leaves nothing behind).
    async fn take_folded(&self, stores: &Stores) -> Result<Folded, StorageError> {
        let blob = ledger::folded_blob(&self.settings.tenant_b.tenant_id);
        // Read first: nearly every run has nothing folded into it, and then writes nothing.
        let held = read_json::<Folded>(stores.state.as_ref(), &blob).await?;
        if held.is_none_or(|(folded, _)| folded.is_empty()) {
            return Ok(Folded::default());
        }
        let mut taken = Folded::default();
        crate::storage::update_json::<Folded, _>(stores.state.as_ref(), &blob, 8, |held| {
            taken = held.unwrap_or_default();
            Folded::default()
        })
        .await?;
        Ok(taken)
    }
}

/// Whether the ledger's anchor must be written once apply has run.
#[derive(Debug, PartialEq, Eq)]
enum Anchor {
    Present,
    Due,
}

impl Reconciler {
    /// A missing ledger is a first run only when no anchor says a ledger existed ([`LedgerAnchor`]). An existing
    /// ledger without an anchor (written before anchors existed, or a run that stopped between the two) gets one.
    async fn check_anchor(
        &self,
        state: &dyn BlobStore,
        ledger: &LedgerState,
        tenant: &TenantId,
        accept_new_ledger: bool,
        trail: &mut Trail,
    ) -> Result<Anchor, RunError> {
        let blob = ledger::anchor_blob(tenant);
        let anchored = match read_json::<LedgerAnchor>(state, &blob).await {
            Ok(found) => found.map(|(anchor, _)| anchor.anchored),
            // An anchor that cannot be parsed still says a ledger existed.
            Err(StorageError::Corrupt { .. }) => Some("an unknown time (the anchor is unreadable)".to_owned()),
            Err(error) => return Err(RunError::Anchor(error)),
        };
        match (ledger, anchored) {
            (LedgerState::Missing, Some(anchored)) if !accept_new_ledger => {
                Err(RunError::LedgerLost { blob: ledger::ledger_blob(tenant), anchor: blob, anchored })
            }
            (LedgerState::Missing, Some(anchored)) => {
                trail.notes.push(format!(
                    "--accept-new-ledger: the ledger that existed since {anchored} is replaced by a new one. Values \
                     written before are now treated as administrators' and are never removed by this tool: review \
                     the users of the Tenant B groups that left since, and remove their values by hand"
                ));
                Ok(Anchor::Due)
            }
            (_, Some(_)) => Ok(Anchor::Present),
            (_, None) => Ok(Anchor::Due),
        }
    }
}

/// Writes the anchor once the ledger exists (a first run that added nothing writes no ledger, and so no anchor).
/// Returns a note when it could not be written: the next run tries again.
async fn write_anchor(state: &dyn BlobStore, tenant: &TenantId, ledger_blob: &str) -> Option<String> {
    // Listed, not read: the ledger is megabytes at 100,000 users.
    match state.list(ledger_blob).await {
        Ok(names) if names.iter().any(|name| name == ledger_blob) => {}
        Ok(_) => return None,
        Err(error) => return Some(format!("the ledger's anchor was not written ({error}); the next run writes it")),
    }
    let anchored =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let anchor = LedgerAnchor { schema_version: ledger::LEDGER_SCHEMA_VERSION, anchored };
    let body = serde_json::to_vec(&anchor).unwrap_or_default();
    match state.put(&ledger::anchor_blob(tenant), body, "application/json").await {
        Ok(()) => None,
        Err(error) => Some(format!("the ledger's anchor was not written ({error}); the next run writes it")),
    }
}

/// A dry run holds no lease and writes nothing: apply is never reached with it.
struct NoWrites;

#[async_trait::async_trait]
impl apply::WritePermit for NoWrites {
    async fn confirm(&self) -> Result<(), String> {
        Err("a dry run writes nothing".to_owned())
    }
}
