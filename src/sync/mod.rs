//! The sync core: observe → plan (pure) → apply (effects) → report, for every pair, under one lease per Tenant B.
//!
//! Both triggers run the same code path ([`SyncService::run`] for the timer and the CLI,
//! [`SyncService::run_incremental`] for change notifications); only the [`Scope`] differs: a full sync applies the
//! whole plan, an incremental run asks delta query what changed and applies the part of the same plan that concerns
//! the affected users. Nothing trusts a notification's payload: observation is always a fresh read.

pub mod apply;
pub mod incremental;
pub mod issued;
pub mod ledger;
pub mod matching;
pub mod observe;
pub mod plan;
pub mod report;
pub mod subscriptions;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::OnceCell;
use tracing::Instrument;

pub use incremental::{ChangedGroup, Scope, ScopeReport};
pub use ledger::{Ledger, LedgerState};
pub use plan::{Observed, Plan, PlanSettings, merge, plan};
pub use report::{ChangeStatus, RunOutcome, RunReport, Trigger};

use crate::config::Settings;
use crate::domain::{Side, TenantId, UserId};
use crate::graph::{GraphClient, GraphError, GraphMetrics, GraphOptions, TenantCredential, build_credential};
use crate::storage::{
    AzureBlobStore, BlobStore, Lease, RetryPolicy, StorageConnection, StorageError, UploadOutcome, WriteBody,
    read_json, update_json, upload_run_log,
};
use incremental::{Changes, DeltaCursor, SourceKey};

/// How long the run lease lasts between renewals (Azure allows 15–60 s): a crashed holder blocks the next run at
/// most this long, so the shortest is chosen; renewing three times per period survives one slow renewal.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const LEASE_RENEW_EVERY: Duration = Duration::from_secs(5);
/// An incremental run waits this long for a held lease (another notification, or the timer) before failing its
/// invocation so the queue retries it; a full sync that finds the lease held is skipped at once instead.
const INCREMENTAL_LEASE_WAIT: Duration = Duration::from_secs(10);
const LEASE_POLL: Duration = Duration::from_millis(250);
/// Attempts of an ETag-guarded read-modify-write of a delta cursor.
const CURSOR_ATTEMPTS: u32 = 8;

/// Log uploads retry briefly, then the log goes to stdout: an outage must not hold the invocation for long.
const LOG_UPLOAD_RETRY: RetryPolicy =
    RetryPolicy { max_attempts: 3, initial_backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(4) };

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub trigger: Trigger,
    /// Plan and report, write nothing (also forced by the `DRY_RUN` setting).
    pub dry_run: bool,
    /// Apply removals even above the safety threshold (also `ALLOW_MASS_REMOVAL`).
    pub allow_mass_removal: bool,
    pub invocation_id: Option<String>,
}

impl Default for RunRequest {
    fn default() -> Self {
        Self { trigger: Trigger::Cli, dry_run: false, allow_mass_removal: false, invocation_id: None }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncSetupError {
    #[error("cannot set up the Microsoft Graph client for {side}: {source}")]
    Graph {
        side: Side,
        #[source]
        source: GraphError,
    },
}

/// The state and log stores, connected on first use (a cold start should not wait for storage before answering the
/// host's readiness probe).
#[derive(Debug, Clone)]
pub struct Stores {
    pub state: Arc<dyn BlobStore>,
    pub logs: Arc<dyn BlobStore>,
}

pub struct SyncService {
    settings: Arc<Settings>,
    source: GraphClient,
    target: GraphClient,
    stores: OnceCell<Stores>,
}

impl SyncService {
    /// Builds the Graph clients from the settings; storage is connected at the first run.
    pub fn new(settings: Arc<Settings>) -> Result<Self, SyncSetupError> {
        let options = GraphOptions { extra_ca_pem: settings.extra_ca_pem.clone(), ..GraphOptions::default() };
        let source = GraphClient::connect(
            settings.tenant_a.tenant_id.clone(),
            &settings.tenant_a.credential,
            &settings.cloud,
            options.clone(),
        )
        .map_err(|source| SyncSetupError::Graph { side: Side::TenantA, source })?;
        let target = GraphClient::connect(
            settings.tenant_b.tenant_id.clone(),
            &settings.tenant_b.credential,
            &settings.cloud,
            options,
        )
        .map_err(|source| SyncSetupError::Graph { side: Side::TenantB, source })?;
        Ok(Self { settings, source, target, stores: OnceCell::new() })
    }

    /// Uses these stores instead of connecting to the configured storage (the demo's local folder, tests).
    pub fn with_stores(self, stores: Stores) -> Self {
        Self { stores: OnceCell::new_with(Some(stores)), ..self }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The Graph client and tenant of one side.
    pub(crate) fn side(&self, side: Side) -> (&GraphClient, &TenantId) {
        match side {
            Side::TenantA => (&self.source, &self.settings.tenant_a.tenant_id),
            Side::TenantB => (&self.target, &self.settings.tenant_b.tenant_id),
        }
    }

    pub(crate) async fn stores(&self) -> Result<&Stores, StorageError> {
        self.stores
            .get_or_try_init(|| async {
                let storage = &self.settings.storage;
                let credential = match &storage.connection {
                    StorageConnection::ConnectionString(_) => None,
                    StorageConnection::Identity { .. } => Some(
                        build_credential(
                            &self.settings.tenant_a.tenant_id,
                            &TenantCredential::ManagedIdentity { client_id: storage.client_id.clone() },
                            &self.settings.cloud,
                            None,
                        )
                        .map_err(|e| {
                            StorageError::InvalidConnection(format!(
                                "cannot build the managed identity credential for storage: {e}"
                            ))
                        })?,
                    ),
                };
                let state =
                    AzureBlobStore::connect(&storage.connection, credential.clone(), &storage.state_container).await?;
                let logs = AzureBlobStore::connect(&storage.connection, credential, &storage.log_container).await?;
                Ok(Stores { state: Arc::new(state), logs: Arc::new(logs) })
            })
            .await
    }

    /// Runs a full sync of every pair and returns its report (also uploaded as the run's log).
    pub async fn run(&self, request: RunRequest) -> RunReport {
        self.run_scoped(request, Scope::Full, false).await
    }

    /// [`Self::run`], then (the timer's job) create or renew the Graph subscriptions when `WEBHOOK_NOTIFICATION_URL`
    /// is set. Subscription problems become notes of the report (and its log); they never fail the sync.
    pub async fn run_and_maintain_subscriptions(&self, request: RunRequest) -> RunReport {
        self.run_scoped(request, Scope::Full, true).await
    }

    /// Reconciles what changed in `groups` (from change notifications): one delta query per group, and when
    /// something changed, the pairs' members and the part of the plan about the affected users. Same ledger, lease,
    /// limits, safety threshold, report and log as [`Self::run`]. A held lease fails the run (after a short wait)
    /// so the queue message is retried.
    pub async fn run_incremental(&self, groups: BTreeSet<ChangedGroup>, request: RunRequest) -> RunReport {
        self.run_scoped(request, Scope::Groups(groups), false).await
    }

    async fn run_scoped(&self, request: RunRequest, scope: Scope, maintain_subscriptions: bool) -> RunReport {
        let started = OffsetDateTime::now_utc();
        let clock = Instant::now();
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let dry_run = request.dry_run || self.settings.sync.dry_run;
        let mut report = RunReport::new(
            run_id.clone(),
            request.trigger.clone(),
            dry_run,
            started.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            self.settings.tenant_a.tenant_id.to_string(),
            self.settings.tenant_b.tenant_id.to_string(),
        );
        report.invocation_id = request.invocation_id.clone();
        if let Scope::Groups(groups) = &scope {
            report.scope = ScopeReport::Incremental {
                groups: groups.iter().cloned().collect(),
                full_resync: None,
                affected_users: 0,
            };
        }
        let before = (self.source.metrics(), self.target.metrics());
        let span = tracing::info_span!("sync_run", run_id = %run_id, dry_run, incremental = scope != Scope::Full);
        let stores = self.stores().instrument(span.clone()).await;
        match &stores {
            Ok(stores) => {
                self.run_with_stores(stores, &request, &scope, dry_run, &mut report).instrument(span.clone()).await;
                if maintain_subscriptions && self.settings.webhook.notification_url.is_some() {
                    if dry_run {
                        report.notes.push(
                            "dry run: the Graph subscriptions were not created or renewed (`certsync subscriptions` does it)"
                                .to_owned(),
                        );
                    } else {
                        let outcome = self.ensure_subscriptions_in(stores).instrument(span.clone()).await;
                        report.notes.extend(outcome.report_notes());
                    }
                }
            }
            Err(error) => {
                report.outcome = RunOutcome::Failed {
                    reason: format!("the state storage cannot be reached, so nothing was read or written: {error}"),
                };
            }
        }
        report.graph.tenant_a = metrics_since(&before.0, &self.source.metrics());
        report.graph.tenant_b = metrics_since(&before.1, &self.target.metrics());
        report.duration_ms = clock.elapsed().as_millis() as u64;
        let unchanged = report.totals.unchanged;
        report.finish_totals(unchanged);

        let _guard = span.enter();
        // The plan and the fresh reads of apply are gone; the log bodies below are the run's last large allocations.
        crate::memory::release_freed_memory();
        match &stores {
            Ok(stores) => {
                // The report says where its log is: fill that in optimistically, then correct it on failure.
                let (log_blob, _) = crate::storage::run_log_names(started, &run_id);
                report.log_location = Some(format!("{}/{log_blob}", self.settings.storage.log_container));
                // The bodies are written out by the store as it uploads them, from a report shared with the
                // writer; it is ours alone again once the upload has returned.
                let shared = Arc::new(report);
                let text: WriteBody = {
                    let report = shared.clone();
                    Arc::new(move |out| report.write_text(out))
                };
                // Compact: the text log is the one for people; at 100,000 changes indentation was 12 of 32 MB.
                let json: WriteBody = {
                    let report = shared.clone();
                    Arc::new(move |out| serde_json::to_writer(out, &*report).map_err(std::io::Error::from))
                };
                let outcome =
                    upload_run_log(stores.logs.as_ref(), started, &run_id, text, json, LOG_UPLOAD_RETRY).await;
                report = Arc::try_unwrap(shared).unwrap_or_else(|shared| RunReport::clone(&shared));
                if let UploadOutcome::FellBackToStdout { error } = outcome {
                    report.log_location = Some("stdout".to_owned());
                    report.log_upload_error = Some(crate::error_chain(&error));
                }
            }
            Err(_) => {
                report.log_location = Some("stdout".to_owned());
                for line in report.to_text().lines() {
                    println!("{} {run_id}: {line}", crate::storage::RUN_LOG_STDOUT_PREFIX);
                }
            }
        }
        tracing::info!(
            outcome = report.outcome.label(),
            changed = report.totals.users_changed,
            failed = report.totals.failed,
            duration_ms = report.duration_ms,
            "sync run finished"
        );
        report
    }

    /// Takes the tenant's run lease; an incremental run waits a little for it. `Ok(None)`: held by someone else.
    async fn take_lease(&self, stores: &Stores, scope: &Scope) -> Result<Option<Lease>, StorageError> {
        let blob = ledger::lease_blob(&self.settings.tenant_b.tenant_id);
        let deadline = Instant::now() + if *scope == Scope::Full { Duration::ZERO } else { INCREMENTAL_LEASE_WAIT };
        loop {
            match stores.state.acquire_lease(&blob, LEASE_DURATION).await? {
                Some(lease) => return Ok(Some(lease)),
                None if Instant::now() + LEASE_POLL < deadline => tokio::time::sleep(LEASE_POLL).await,
                None => return Ok(None),
            }
        }
    }

    async fn run_with_stores(
        &self,
        stores: &Stores,
        request: &RunRequest,
        scope: &Scope,
        dry_run: bool,
        report: &mut RunReport,
    ) {
        let tenant = &self.settings.tenant_b.tenant_id;
        let ledger_blob = ledger::ledger_blob(tenant);

        // One writer per Tenant B: the timer and the notification path never write concurrently.
        let lease = if dry_run {
            None
        } else {
            match self.take_lease(stores, scope).await {
                Ok(Some(lease)) => Some(lease),
                Ok(None) if *scope == Scope::Full => {
                    report.outcome = RunOutcome::Skipped {
                        reason: "another run is writing to this tenant (its lease is held); this run did nothing"
                            .to_owned(),
                    };
                    return;
                }
                Ok(None) => {
                    // The change this run was for would be lost if it were skipped: fail, so the queue retries.
                    report.outcome = RunOutcome::Failed {
                        reason: format!(
                            "another run held this tenant's lease for more than {} s; nothing was done and the \
                             notification will be retried",
                            INCREMENTAL_LEASE_WAIT.as_secs()
                        ),
                    };
                    return;
                }
                Err(error) => {
                    report.outcome = RunOutcome::Failed {
                        reason: format!("the run lease could not be taken, so nothing was written: {error}"),
                    };
                    return;
                }
            }
        };
        let lease_lost = Arc::new(AtomicBool::new(false));
        let renewal = lease.clone().map(|lease| {
            let store = stores.state.clone();
            let lost = lease_lost.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE_RENEW_EVERY).await;
                    if let Err(error) = store.renew_lease(&lease).await {
                        tracing::warn!(%error, "could not renew the run lease");
                        if matches!(error, StorageError::LeaseLost { .. }) {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            })
        });

        self.observe_plan_apply(stores, request, scope, dry_run, &ledger_blob, report).await;

        if let Some(renewal) = renewal {
            renewal.abort();
        }
        if lease_lost.load(Ordering::SeqCst) {
            report.notes.push("the run lease was lost during the run; another run may have started".to_owned());
        }
        if let Some(lease) = lease
            && let Err(error) = stores.state.release_lease(lease).await
        {
            report.notes.push(format!(
                "the run lease could not be released ({error}); it expires by itself within {} s",
                LEASE_DURATION.as_secs()
            ));
        }
    }

    async fn observe_plan_apply(
        &self,
        stores: &Stores,
        request: &RunRequest,
        scope: &Scope,
        dry_run: bool,
        ledger_blob: &str,
        report: &mut RunReport,
    ) {
        // An incremental run first asks delta query what changed; nothing changed → nothing more to read.
        let changes = match scope {
            Scope::Full => None,
            Scope::Groups(groups) => match self.read_changes(stores, groups).await {
                Ok(changes) => Some(changes),
                Err(reason) => {
                    report.outcome = RunOutcome::Failed { reason };
                    return;
                }
            },
        };
        if let Some(changes) = &changes {
            if let ScopeReport::Incremental { full_resync, .. } = &mut report.scope {
                full_resync.clone_from(&changes.full_resync);
            }
            if changes.is_empty() {
                report.notes.push("no membership change since the last notification: nothing else was read".to_owned());
                if !dry_run {
                    self.store_cursors(stores, changes, report).await;
                }
                report.outcome = RunOutcome::Succeeded;
                return;
            }
        }
        let ledger = match read_json::<Ledger>(stores.state.as_ref(), ledger_blob).await {
            Ok(Some((ledger, _))) => LedgerState::Loaded(ledger),
            Ok(None) => LedgerState::Missing,
            Err(StorageError::Corrupt { reason, .. }) => LedgerState::Unreadable(reason),
            Err(error) => {
                report.outcome = RunOutcome::Failed {
                    reason: format!("the ownership ledger could not be read, so nothing was written: {error}"),
                };
                return;
            }
        };
        if let LedgerState::Unreadable(reason) = &ledger {
            tracing::error!(blob = ledger_blob, %reason, "the ownership ledger is unreadable: this run writes nothing");
        }
        let restrict_to = changes.as_ref().filter(|c| c.full_resync.is_none());
        let departed = match restrict_to {
            None => observe::Departed::AllUnseen,
            Some(changes) => observe::Departed::Among(&changes.target_users),
        };
        let observed =
            match observe::observe_scoped(&self.settings.sync, &self.source, &self.target, ledger, departed).await {
                Ok(observed) => observed,
                Err(error) => {
                    report.outcome = RunOutcome::Failed { reason: error.to_string() };
                    return;
                }
            };
        report.notes.extend(observed.issued.values().flat_map(|issued| issued.notes.iter().cloned()));
        let sync = &self.settings.sync;
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
                let source_keys = match self.source_keys(&observed, &changes.source_users).await {
                    Ok(keys) => keys,
                    Err(reason) => {
                        report.outcome = RunOutcome::Failed { reason };
                        return;
                    }
                };
                let affected = incremental::affected_targets(
                    &observed,
                    &sync.match_key,
                    &changes.target_users,
                    &source_keys,
                    &plan,
                );
                if let ScopeReport::Incremental { affected_users, .. } = &mut report.scope {
                    *affected_users = affected.len();
                }
                plan.restricted_to(&affected)
            }
        };
        // Apply works from the plan alone: both tenants' members (tens of MB at 100,000 users) can go now.
        drop(observed);
        crate::memory::release_freed_memory();
        report.pairs = plan.pairs.clone();
        report.skipped = plan.skipped.clone();
        report.conflicts = plan.conflicts.clone();
        report.removals_disabled = plan.removals_disabled.clone();
        report.removals_held_back = plan.removals_held_back.clone();
        report.totals.unchanged = plan.unchanged;

        if dry_run {
            report.changes = plan
                .changes
                .into_iter()
                .map(|change| report::ChangeResult { change, status: ChangeStatus::Planned, error: None })
                .collect();
            report.outcome = RunOutcome::Skipped { reason: "dry run: the plan above was not applied".to_owned() };
            return;
        }
        let applied = apply::apply(plan, &self.target, stores.state.as_ref(), ledger_blob).await;
        report.changes = applied.changes;
        report.conflicts.extend(applied.conflicts);
        report.skipped.extend(applied.skipped);
        report.notes.extend(applied.notes);
        report.outcome = if report.changes.iter().any(|c| c.status == ChangeStatus::Failed) {
            RunOutcome::CompletedWithFailures
        } else {
            RunOutcome::Succeeded
        };
        // The delta position moves on only when everything was applied: after a failure the next notification
        // sees the same changes again (the timer's full sync is the net under both).
        if let Some(changes) = &changes {
            if report.outcome == RunOutcome::Succeeded {
                self.store_cursors(stores, changes, report).await;
            } else {
                report.notes.push(
                    "the delta position was kept: the next notification for these groups reconsiders the same changes"
                        .to_owned(),
                );
            }
        }
    }

    /// One delta round per changed group, from its stored cursor. A first round, an expired token, or (with nested
    /// membership) a nested group joining or leaving asks for whole pairs to be reconciled.
    async fn read_changes(&self, stores: &Stores, groups: &BTreeSet<ChangedGroup>) -> Result<Changes, String> {
        let mut changes = Changes::default();
        for changed in groups {
            let (client, tenant) = self.side(changed.side);
            let blob = incremental::cursor_blob(tenant, &changed.group);
            let cursor = match read_json::<DeltaCursor>(stores.state.as_ref(), &blob).await {
                Ok(found) => found.map(|(cursor, _)| cursor),
                // A cursor that cannot be parsed is replaced by a fresh one after a full reconcile of the pair.
                Err(StorageError::Corrupt { reason, .. }) => {
                    tracing::warn!(blob, %reason, "unreadable delta cursor: starting over");
                    None
                }
                Err(error) => {
                    return Err(format!("the delta position of group {} could not be read: {error}", changed.group));
                }
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
            let round = round.map_err(|error| {
                format!(
                    "reading what changed in {:?} group {} failed, so nothing was written: {error}",
                    changed.side, changed.group
                )
            })?;
            if round.initial {
                changes.resync(format!(
                    "first notification for {:?} group {}: no earlier delta position to compare with",
                    changed.side, changed.group
                ));
            } else if round.non_user_changes > 0 && self.settings.sync.transitive_membership {
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
            changes.cursors.push((
                blob,
                DeltaCursor {
                    schema_version: incremental::DELTA_SCHEMA_VERSION,
                    group: changed.group.clone(),
                    delta_link: round.delta_link,
                    stored,
                },
            ));
        }
        Ok(changes)
    }

    /// Stores each group's new delta position (ETag-guarded; a failure only costs a repeat of the same changes).
    async fn store_cursors(&self, stores: &Stores, changes: &Changes, report: &mut RunReport) {
        for (blob, cursor) in &changes.cursors {
            let written =
                match update_json::<DeltaCursor, _>(stores.state.as_ref(), blob, CURSOR_ATTEMPTS, |_| cursor.clone())
                    .await
                {
                    // An unreadable cursor holds nothing worth keeping (unlike the ledger): replace it, under the lease.
                    Err(StorageError::Corrupt { .. }) => stores
                        .state
                        .put(blob, serde_json::to_vec(cursor).unwrap_or_default(), "application/json")
                        .await
                        .map(|()| cursor.clone()),
                    other => other,
                };
            if let Err(error) = written {
                report.notes.push(format!(
                    "the delta position of group {} could not be stored ({error}); the next notification repeats this work",
                    cursor.group
                ));
            }
        }
    }

    /// The current match keys of the Tenant A users a delta round named: from the observed members, else re-read
    /// (users removed from the group); a user Graph no longer knows has an unknown key.
    async fn source_keys(&self, observed: &plan::Observed, users: &BTreeSet<UserId>) -> Result<Vec<SourceKey>, String> {
        let key = &self.settings.sync.match_key;
        let mut keys = Vec::with_capacity(users.len());
        let mut missing = Vec::new();
        for id in users {
            match observed.pairs.iter().flat_map(|p| &p.source_users).find(|u| &u.id == id) {
                Some(user) => keys.push(SourceKey::Known(key.key_of(user))),
                None => missing.push(id.clone()),
            }
        }
        if !missing.is_empty() {
            let (select, _) = observe::selects(&self.settings.sync);
            let select: Vec<&str> = select.iter().map(String::as_str).collect();
            let found = self.source.get_users(&missing, &select).await.map_err(|error| {
                format!(
                    "re-reading {} Tenant A users that left a group failed, so nothing was written: {error}",
                    missing.len()
                )
            })?;
            keys.extend(found.into_iter().map(|(_, user)| match user {
                Some(user) => SourceKey::Known(key.key_of(&user)),
                None => SourceKey::Unknown,
            }));
        }
        Ok(keys)
    }
}

/// The counters of one run: the clients live as long as the process and count across runs.
fn metrics_since(before: &GraphMetrics, after: &GraphMetrics) -> GraphMetrics {
    GraphMetrics {
        reads: after.reads - before.reads,
        writes: after.writes - before.writes,
        batches: after.batches - before.batches,
        batch_items: after.batch_items - before.batch_items,
        retries: after.retries - before.retries,
        throttled_responses: after.throttled_responses - before.throttled_responses,
        transport_errors: after.transport_errors - before.transport_errors,
        throttle_wait_ms: after.throttle_wait_ms - before.throttle_wait_ms,
        tokens_acquired: after.tokens_acquired - before.tokens_acquired,
        max_throttle_limit_percentage: after.max_throttle_limit_percentage,
        last_resource_unit: after.last_resource_unit,
    }
}
