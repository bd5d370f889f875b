//! The sync core: observe → plan (pure) → apply (effects) → report, for every pair, under one lease per Tenant B.
//!
//! Both triggers (the timer's full sync, and notifications later) call [`SyncService::run`]; the core never knows
//! which one ran it, which is what keeps it idempotent.

pub mod apply;
pub mod ledger;
pub mod matching;
pub mod observe;
pub mod plan;
pub mod report;
pub mod template;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::OnceCell;
use tracing::Instrument;

pub use ledger::{Ledger, LedgerState};
pub use matching::MatchKey;
pub use plan::{Observed, Plan, PlanSettings, merge, plan};
pub use report::{ChangeStatus, RunOutcome, RunReport, Trigger};
pub use template::{PRESETS, Template};

use crate::config::Settings;
use crate::graph::{GraphClient, GraphError, GraphMetrics, GraphOptions, TenantCredential, build_credential};
use crate::storage::{
    AzureBlobStore, BlobStore, RetryPolicy, StorageConnection, StorageError, UploadOutcome, read_json, upload_run_log,
};

/// How long the run lease lasts between renewals (Azure allows 15–60 s): a crashed holder blocks the next run at
/// most this long, so the shortest is chosen; renewing three times per period survives one slow renewal.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const LEASE_RENEW_EVERY: Duration = Duration::from_secs(5);

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
    #[error("cannot set up the Microsoft Graph client for Tenant {side}: {source}")]
    Graph {
        side: char,
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
        .map_err(|source| SyncSetupError::Graph { side: 'A', source })?;
        let target = GraphClient::connect(
            settings.tenant_b.tenant_id.clone(),
            &settings.tenant_b.credential,
            &settings.cloud,
            options,
        )
        .map_err(|source| SyncSetupError::Graph { side: 'B', source })?;
        Ok(Self { settings, source, target, stores: OnceCell::new() })
    }

    /// Uses these stores instead of connecting to the configured storage (the demo's local folder, tests).
    pub fn with_stores(self, stores: Stores) -> Self {
        Self { stores: OnceCell::new_with(Some(stores)), ..self }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    async fn stores(&self) -> Result<&Stores, StorageError> {
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
        let before = (self.source.metrics(), self.target.metrics());
        let span = tracing::info_span!("sync_run", run_id = %run_id, dry_run);
        let stores = self.stores().instrument(span.clone()).await;
        match &stores {
            Ok(stores) => self.run_with_stores(stores, &request, dry_run, &mut report).instrument(span.clone()).await,
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
        match &stores {
            Ok(stores) => {
                // The report says where its log is: fill that in optimistically, then correct it on failure.
                let (log_blob, _) = crate::storage::run_log_names(started, &run_id);
                report.log_location = Some(format!("{}/{log_blob}", self.settings.storage.log_container));
                let text = report.to_text();
                let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
                if let UploadOutcome::FellBackToStdout { error } =
                    upload_run_log(stores.logs.as_ref(), started, &run_id, &text, &json, LOG_UPLOAD_RETRY).await
                {
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

    async fn run_with_stores(&self, stores: &Stores, request: &RunRequest, dry_run: bool, report: &mut RunReport) {
        let tenant = &self.settings.tenant_b.tenant_id;
        let ledger_blob = ledger::ledger_blob(tenant);

        // One writer per Tenant B: the timer and the notification path never write concurrently.
        let lease = if dry_run {
            None
        } else {
            match stores.state.acquire_lease(&ledger::lease_blob(tenant), LEASE_DURATION).await {
                Ok(Some(lease)) => Some(lease),
                Ok(None) => {
                    report.outcome = RunOutcome::Skipped {
                        reason: "another run is writing to this tenant (its lease is held); this run did nothing"
                            .to_owned(),
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

        self.observe_plan_apply(stores, request, dry_run, &ledger_blob, report).await;

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
        dry_run: bool,
        ledger_blob: &str,
        report: &mut RunReport,
    ) {
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
        let observed = match observe::observe(&self.settings.sync, &self.source, &self.target, ledger).await {
            Ok(observed) => observed,
            Err(error) => {
                report.outcome = RunOutcome::Failed { reason: error.to_string() };
                return;
            }
        };
        let sync = &self.settings.sync;
        let plan = plan::plan(
            &observed,
            &PlanSettings {
                match_key: sync.match_key.clone(),
                templates: sync.templates.clone(),
                removal_threshold: sync.removal_threshold,
                allow_mass_removal: request.allow_mass_removal || sync.allow_mass_removal,
            },
        );
        report.pairs = plan.pairs.clone();
        report.skipped = plan.skipped.clone();
        report.conflicts = plan.conflicts.clone();
        report.removals_disabled = plan.removals_disabled.clone();
        report.removals_held_back = plan.removals_held_back.clone();
        report.totals.unchanged = plan.unchanged;

        if dry_run {
            report.changes = plan
                .changes
                .iter()
                .map(|c| report::ChangeResult { change: c.clone(), status: ChangeStatus::Planned, error: None })
                .collect();
            report.outcome = RunOutcome::Skipped { reason: "dry run: the plan above was not applied".to_owned() };
            return;
        }
        let applied = apply::apply(&plan, &self.target, stores.state.as_ref(), ledger_blob).await;
        report.changes = applied.changes;
        report.conflicts.extend(applied.conflicts);
        report.skipped.extend(applied.skipped);
        report.notes.extend(applied.notes);
        report.outcome = if report.changes.iter().any(|c| c.status == ChangeStatus::Failed) {
            RunOutcome::CompletedWithFailures
        } else {
            RunOutcome::Succeeded
        };
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
