//! The sync core: observe → plan (pure) → apply (effects) → report, for every pair, under one lease per Tenant B.
//!
//! Both triggers run the same code path ([`SyncService::run`] for the timer and the CLI,
//! [`SyncService::run_incremental`] for change notifications); only the [`Scope`] differs: a full sync applies the
//! whole plan, an incremental run asks delta query what changed and applies the part of the same plan that concerns
//! the affected users. Nothing trusts a notification's payload: observation is always a fresh read.

pub mod apply;
pub mod error;
pub mod incremental;
pub mod issued;
pub mod lease;
pub mod ledger;
pub mod matching;
pub mod observe;
pub mod plan;
pub mod reconciler;
pub mod report;
pub mod subscriptions;
pub mod tenants;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tracing::Instrument;

pub use error::RunError;
pub use incremental::{ChangedGroup, Scope, ScopeReport};
pub use ledger::{Ledger, LedgerState};
pub use plan::{Observed, Plan, PlanSettings, merge, plan};
pub use reconciler::{Applied, PlanSummary, Reconciled, Reconciler, RunRequest};
pub use report::{ChangeStatus, RunOutcome, RunReport, Trigger};
pub use subscriptions::{LifecycleOutcome, SubscriptionEntry, SubscriptionKeeper, SubscriptionsOutcome};
pub use tenants::{SetupError, Tenants};

use crate::config::Settings;
use crate::domain::Side;
use crate::storage::{
    LazyStores, RetryPolicy, StorageError, Stores, UploadOutcome, WriteBody, print_run_log, upload_run_log,
};

/// Log uploads retry briefly, then the log goes to stdout: an outage must not hold the invocation for long.
/// Why no subscription is created, renewed, reauthorized or recreated while `DRY_RUN` is set.
const DRY_RUN_SUBSCRIPTIONS: &str = "DRY_RUN is set: the Graph subscriptions are not created, renewed, reauthorized or recreated (set DRY_RUN=false \
     to have them kept)";

const LOG_UPLOAD_RETRY: RetryPolicy =
    RetryPolicy { max_attempts: 3, initial_backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(4) };

/// What the triggers call: a run of the [`Reconciler`], reported and logged; subscription upkeep after the timer's.
pub struct SyncService {
    settings: Arc<Settings>,
    reconciler: Reconciler,
    subscriptions: SubscriptionKeeper,
    stores: LazyStores,
    /// Incremental runs that found no membership change since the last run log was written: they write no log of
    /// their own, and the next log says how many there were.
    quiet_runs: std::sync::atomic::AtomicU64,
}

impl SyncService {
    /// From wired parts ([`crate::app::sync_service`] builds them from the settings).
    pub fn new(settings: Arc<Settings>, tenants: Tenants, stores: LazyStores) -> Self {
        Self {
            reconciler: Reconciler::new(settings.clone(), tenants.clone()),
            subscriptions: SubscriptionKeeper::new(settings.clone(), tenants),
            settings,
            stores,
            quiet_runs: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    async fn stores(&self) -> Result<&Stores, StorageError> {
        self.stores.get().await
    }

    /// Creates, adopts, renews or recreates the subscription of every configured group in both tenants, and deletes
    /// those of groups no longer configured (`certsync subscriptions`). Needs `WEBHOOK_NOTIFICATION_URL`.
    pub async fn ensure_subscriptions(&self) -> SubscriptionsOutcome {
        // DRY_RUN writes nothing, subscriptions included: a notification would only plan, too.
        if self.settings.sync.dry_run {
            return SubscriptionsOutcome {
                problems: vec![DRY_RUN_SUBSCRIPTIONS.to_owned()],
                ..SubscriptionsOutcome::default()
            };
        }
        match self.stores().await {
            Ok(stores) => self.subscriptions.ensure(stores).await,
            Err(error) => SubscriptionsOutcome {
                problems: vec![format!("the state storage cannot be reached: {error}")],
                ..SubscriptionsOutcome::default()
            },
        }
    }

    /// The recorded subscription with this id, on either side; `None` when it is not one of ours.
    pub async fn find_subscription(
        &self,
        subscription_id: &str,
    ) -> Result<Option<(Side, SubscriptionEntry)>, StorageError> {
        self.subscriptions.find(self.stores().await?, subscription_id).await
    }

    /// Acts on a lifecycle notification for one of our subscriptions. `Err`: try again later (the queue retries).
    pub async fn handle_lifecycle_event(
        &self,
        side: Side,
        entry: &SubscriptionEntry,
        event: &str,
    ) -> Result<LifecycleOutcome, String> {
        if self.settings.sync.dry_run {
            return Ok(LifecycleOutcome::NotWritten(DRY_RUN_SUBSCRIPTIONS.to_owned()));
        }
        let stores = self.stores().await.map_err(|e| format!("the state storage cannot be reached: {e}"))?;
        self.subscriptions.handle_lifecycle_event(stores, side, entry, event).await
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
        let tenants = self.reconciler.tenants();
        let before = tenants.metrics();
        let span = tracing::info_span!("sync_run", run_id = %run_id, dry_run, incremental = scope != Scope::Full);
        // A notification whose delta query found no change (and nothing to say besides): counted, not logged to blobs.
        let mut quiet = false;
        let stores = self.stores().instrument(span.clone()).await.map_err(RunError::StorageUnreachable);
        match &stores {
            Ok(stores) => {
                let reconciled =
                    self.reconciler.reconcile(stores, &scope, dry_run, &request).instrument(span.clone()).await;
                quiet = matches!(reconciled.result, Ok(Applied::NothingChanged)) && reconciled.trail.notes.len() <= 1;
                record(&mut report, reconciled);
            }
            Err(error) => report.outcome = error.outcome(),
        }
        if let Ok(stores) = &stores
            && maintain_subscriptions
            && self.settings.webhook.notification_url.is_some()
        {
            if dry_run {
                report.notes.push(format!("dry run: {DRY_RUN_SUBSCRIPTIONS}"));
            } else {
                let outcome = self.subscriptions.ensure(stores).instrument(span.clone()).await;
                report.notes.extend(outcome.report_notes());
            }
        }
        let after = tenants.metrics();
        report.graph.tenant_a = after.0 - before.0;
        report.graph.tenant_b = after.1 - before.1;
        report.duration_ms = clock.elapsed().as_millis() as u64;
        let unchanged = report.totals.unchanged;
        report.finish_totals(unchanged);

        let _guard = span.enter();
        // The plan and the fresh reads of apply are gone; the log bodies below are the run's last large allocations.
        crate::memory::release_freed_memory();
        let report = match &stores {
            Ok(_) if quiet => {
                let total = self.quiet_runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                tracing::info!(
                    quiet_runs = total,
                    duration_ms = report.duration_ms,
                    "no membership change since the last notification: nothing was written"
                );
                return report;
            }
            Ok(stores) => {
                let mut report = report;
                report.quiet_runs_before = self.quiet_runs.swap(0, std::sync::atomic::Ordering::Relaxed);
                self.upload_log(stores, started, report).await
            }
            Err(error) => {
                let mut report = report;
                let (log_blob, _) = crate::storage::run_log_names(started, &run_id);
                report.log_location = Some("stdout".to_owned());
                let text: WriteBody = {
                    let report = Arc::new(report.clone());
                    Arc::new(move |out| report.write_text(out))
                };
                let reason = crate::error_chain(error);
                let _ = print_run_log(&mut std::io::stdout(), &run_id, &log_blob, &reason, &text);
                report
            }
        };
        tracing::info!(
            outcome = report.outcome.label(),
            changed = report.totals.users_changed,
            failed = report.totals.failed,
            duration_ms = report.duration_ms,
            "sync run finished"
        );
        if let Some(line) = report.throttling_line() {
            tracing::info!(
                writes = report.graph.tenant_b.writes,
                throttled = report.graph.tenant_a.throttled_responses + report.graph.tenant_b.throttled_responses,
                paced_wait_ms = report.graph.tenant_a.paced_wait_ms + report.graph.tenant_b.paced_wait_ms,
                "{line}"
            );
        }
        report
    }

    /// Uploads the run's text log and JSON report; if storage stays unavailable the text goes to stdout.
    async fn upload_log(&self, stores: &Stores, started: OffsetDateTime, mut report: RunReport) -> RunReport {
        let run_id = report.run_id.clone();
        // The report says where its log is: fill that in optimistically, then correct it on failure.
        let (log_blob, _) = crate::storage::run_log_names(started, &run_id);
        report.log_location = Some(format!("{}/{log_blob}", self.settings.storage.log_container));
        // The bodies are written out by the store as it uploads them, from a report shared with the writer; it is
        // ours alone again once the upload has returned.
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
        let outcome = upload_run_log(stores.logs.as_ref(), started, &run_id, text, json, LOG_UPLOAD_RETRY).await;
        let mut report = Arc::try_unwrap(shared).unwrap_or_else(|shared| RunReport::clone(&shared));
        if let UploadOutcome::FellBackToStdout { error } = outcome {
            report.log_location = Some("stdout".to_owned());
            report.log_upload_error = Some(crate::error_chain(&error));
        }
        report
    }
}

/// Writes a reconciler's result into the run report.
fn record(report: &mut RunReport, Reconciled { result, trail }: Reconciled) {
    if let ScopeReport::Incremental { full_resync, affected_users, .. } = &mut report.scope {
        *full_resync = trail.full_resync;
        *affected_users = trail.affected_users.unwrap_or_default();
    }
    let summarize = |report: &mut RunReport, plan: PlanSummary| {
        report.pairs = plan.pairs;
        report.skipped = plan.skipped;
        report.conflicts = plan.conflicts;
        report.removals_disabled = plan.removals_disabled;
        report.removals_held_back = plan.removals_held_back;
        report.totals.unchanged = plan.unchanged;
    };
    report.outcome = match result {
        Err(error) => error.outcome(),
        Ok(Applied::NothingChanged) => RunOutcome::Succeeded,
        Ok(Applied::Planned { plan, changes }) => {
            summarize(report, plan);
            report.changes = changes
                .into_iter()
                .map(|change| report::ChangeResult { change, status: ChangeStatus::Planned, error: None })
                .collect();
            RunOutcome::Skipped { reason: "dry run: the plan above was not applied".to_owned() }
        }
        Ok(Applied::Written { plan, applied }) => {
            let all_written = applied.all_written();
            let remaining = applied.deferred();
            summarize(report, plan);
            report.changes = applied.changes;
            report.conflicts.extend(applied.conflicts);
            report.skipped.extend(applied.skipped);
            match applied.aborted {
                Some(reason) => RunOutcome::Failed { reason: format!("{reason}; the run stopped writing") },
                None if applied.continued => RunOutcome::Continued { remaining },
                None if all_written => RunOutcome::Succeeded,
                None => RunOutcome::CompletedWithFailures,
            }
        }
    };
    report.notes.extend(trail.notes);
    report.follow_ups = trail.follow_ups;
    report.full_sync_follows = trail.full_sync_follows;
}
