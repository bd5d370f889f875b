//! The run report: what a run saw, decided, did and failed to do. Serialized as the JSON audit record
//! (schema in docs/run-report.md, `schemaVersion` 1) and rendered as the human log next to it.

use std::io;

use serde::Serialize;

use super::matching::UserRef;
use super::plan::{Conflict, HeldBackRemovals, PairOutcome, Skip, UserChange};
use crate::graph::{GraphError, GraphMetrics};

pub const REPORT_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Trigger {
    Timer {
        past_due: bool,
    },
    Cli,
    Demo,
    Notification,
    /// The `sequence`-th continuation of a full sync that reached its soft deadline (queued by the run before it).
    Continuation {
        sequence: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum RunOutcome {
    /// Every planned change was applied (or there was nothing to do).
    Succeeded,
    /// The run finished; some users failed and are listed.
    CompletedWithFailures,
    /// Nothing was written, on purpose (dry run, or another run holds the lease).
    Skipped { reason: String },
    /// The run could not do its job (membership unreadable, state storage down…): nothing unsafe was written.
    Failed { reason: String },
    /// The soft deadline came first: what was started is written and settled, `remaining` users are left to the
    /// continuation (which plans them again from a fresh read).
    Continued { remaining: usize },
}

impl RunOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::CompletedWithFailures => "completed with failures",
            Self::Skipped { .. } => "skipped",
            Self::Failed { .. } => "failed",
            Self::Continued { .. } => "continued",
        }
    }
}

/// A Graph error as an administrator (and Microsoft support) needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
    pub request_id: Option<String>,
}

impl From<&GraphError> for ErrorDetail {
    fn from(error: &GraphError) -> Self {
        let code = match error {
            GraphError::Api { code, .. } => Some(code.clone()),
            GraphError::Throttled { .. } => Some("TooManyRequests".to_owned()),
            _ => None,
        };
        Self {
            status: error.status(),
            code,
            message: error.to_string(),
            request_id: error.request_id().map(str::to_owned),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeStatus {
    /// Written to Graph.
    Applied,
    /// Planned only (dry run, or writes were not possible).
    Planned,
    /// The fresh read before writing showed the user already right.
    AlreadyApplied,
    Failed,
    /// Not started before the run's soft deadline: left to the continuation, which plans it again.
    Deferred,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeResult {
    #[serde(flatten)]
    pub change: UserChange,
    pub status: ChangeStatus,
    /// Boxed: one result per change, and most have no error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Box<ErrorDetail>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub matched: usize,
    pub only_in_a: usize,
    pub only_in_b: usize,
    pub ambiguous: usize,
    pub skipped: usize,
    pub users_changed: usize,
    pub values_added: usize,
    pub values_removed: usize,
    pub unchanged: usize,
    pub conflicts: usize,
    pub failed: usize,
    pub non_user_members: u64,
}

/// One line of totals, shared by the invocation's `Logs` and the text log.
impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "matched {}, {} users changed (+{} / -{} values), {} unchanged, {} only in Tenant A, {} only in Tenant B, \
             {} ambiguous, {} skipped, {} conflicts, {} failed",
            self.matched,
            self.users_changed,
            self.values_added,
            self.values_removed,
            self.unchanged,
            self.only_in_a,
            self.only_in_b,
            self.ambiguous,
            self.skipped,
            self.conflicts,
            self.failed
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphUsage {
    pub tenant_a: GraphMetrics,
    pub tenant_b: GraphMetrics,
}

#[must_use]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub schema_version: u32,
    pub run_id: String,
    pub invocation_id: Option<String>,
    pub trigger: Trigger,
    /// What the run covered: every pair, or the users a change notification concerns.
    pub scope: super::incremental::ScopeReport,
    pub dry_run: bool,
    pub started: String,
    pub duration_ms: u64,
    pub tenant_a: String,
    pub tenant_b: String,
    pub outcome: RunOutcome,
    pub totals: Totals,
    pub pairs: Vec<PairOutcome>,
    pub changes: Vec<ChangeResult>,
    pub skipped: Vec<Skip>,
    pub conflicts: Vec<Conflict>,
    pub removals_disabled: Option<String>,
    pub removals_held_back: Option<HeldBackRemovals>,
    pub graph: GraphUsage,
    /// Where the log went: the blob names, or "stdout" when the upload failed.
    pub log_location: Option<String>,
    pub log_upload_error: Option<String>,
    /// Anything else an administrator should read (ledger state, lease, notes on partial reads).
    pub notes: Vec<String>,
    /// Groups whose notifications met this run's lease and were handed to it: queued as one incremental run when
    /// it ended (empty for most runs).
    pub follow_ups: Vec<super::incremental::ChangedGroup>,
    /// A full sync (the timer's, a continuation) met this run's lease and was handed to it: queued as a continuation
    /// when it ended.
    pub full_sync_follows: bool,
    /// Incremental runs of this process that found no membership change since the run log before this one: they
    /// write no log of their own.
    pub quiet_runs_before: u64,
}

impl RunReport {
    pub fn new(
        run_id: String,
        trigger: Trigger,
        dry_run: bool,
        started: String,
        tenant_a: String,
        tenant_b: String,
    ) -> Self {
        Self {
            schema_version: REPORT_SCHEMA_VERSION,
            run_id,
            invocation_id: None,
            trigger,
            scope: super::incremental::ScopeReport::Full,
            dry_run,
            started,
            duration_ms: 0,
            tenant_a,
            tenant_b,
            outcome: RunOutcome::Succeeded,
            totals: Totals::default(),
            pairs: Vec::new(),
            changes: Vec::new(),
            skipped: Vec::new(),
            conflicts: Vec::new(),
            removals_disabled: None,
            removals_held_back: None,
            graph: GraphUsage::default(),
            log_location: None,
            log_upload_error: None,
            notes: Vec::new(),
            follow_ups: Vec::new(),
            full_sync_follows: false,
            quiet_runs_before: 0,
        }
    }

    /// Recomputes the totals from the lists (call once the run is complete).
    pub fn finish_totals(&mut self, unchanged: usize) {
        let applied = |c: &&ChangeResult| matches!(c.status, ChangeStatus::Applied | ChangeStatus::Planned);
        self.totals = Totals {
            matched: self.pairs.iter().map(|p| p.matched).sum(),
            only_in_a: self.pairs.iter().map(|p| p.only_in_a.len()).sum(),
            only_in_b: self.pairs.iter().map(|p| p.only_in_b.len()).sum(),
            ambiguous: self.pairs.iter().map(|p| p.ambiguous.len()).sum(),
            skipped: self.skipped.len() + self.pairs.iter().map(|p| p.without_key.len()).sum::<usize>(),
            users_changed: self.changes.iter().filter(applied).count(),
            values_added: self.changes.iter().filter(applied).map(|c| c.change.add.len()).sum(),
            values_removed: self.changes.iter().filter(applied).map(|c| c.change.remove.len()).sum(),
            unchanged: unchanged + self.changes.iter().filter(|c| c.status == ChangeStatus::AlreadyApplied).count(),
            conflicts: self.conflicts.len(),
            failed: self.changes.iter().filter(|c| c.status == ChangeStatus::Failed).count(),
            non_user_members: self.pairs.iter().map(|p| p.non_user_members_a + p.non_user_members_b).sum(),
        };
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// The invocation's `ReturnValue`: what a host-side caller needs to find the run and its log.
    pub fn return_value(&self) -> serde_json::Value {
        serde_json::json!({
            "runId": self.run_id,
            "outcome": self.outcome.label(),
            "counts": self.totals,
            "logBlob": self.log_location,
        })
    }

    /// A few lines for the Functions invocation log.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "Run {} {}{}: {}.",
            self.run_id,
            self.outcome.label(),
            if self.dry_run { " (dry run)" } else { "" },
            self.totals
        )];
        if let RunOutcome::Failed { reason } | RunOutcome::Skipped { reason } = &self.outcome {
            lines.push(reason.clone());
        }
        if let RunOutcome::Continued { remaining } = &self.outcome {
            lines.push(format!(
                "The soft deadline came first: {remaining} users are left, and a continuation picks them up."
            ));
        }
        if let Some(held) = &self.removals_held_back {
            lines.push(held.reason.clone());
        }
        if let Some(line) = self.throttling_line() {
            lines.push(line);
        }
        // Notes carry what an operator must see without opening the log (ledger, lease, subscription problems).
        lines.extend(self.notes.iter().map(|note| format!("Note: {note}")));
        if let Some(location) = &self.log_location {
            lines.push(format!("Log: {location}"));
        }
        lines
    }

    /// One line of Graph throttling figures for the run (none when nothing was written or throttled): it replaces a
    /// warning per throttled answer, which came to 36,000 lines on a 10,000-user first sync.
    pub fn throttling_line(&self) -> Option<String> {
        let b = &self.graph.tenant_b;
        let a = &self.graph.tenant_a;
        let throttled = a.throttled_responses + b.throttled_responses;
        if b.writes == 0 && throttled == 0 {
            return None;
        }
        let percentage = [a.max_throttle_limit_percentage, b.max_throttle_limit_percentage]
            .into_iter()
            .flatten()
            .fold(None, |max: Option<f64>, p| Some(max.map_or(p, |m| m.max(p))));
        Some(format!(
            "Graph throttling: {} writes sent to Tenant B, {} answers throttled (429/503/504: Tenant A {}, Tenant B {}), \
             {:.1} s waited for the write budget, {:.1} s after throttled answers, highest budget use reported {}.",
            b.writes,
            throttled,
            a.throttled_responses,
            b.throttled_responses,
            (a.paced_wait_ms + b.paced_wait_ms) as f64 / 1000.0,
            (a.throttle_wait_ms + b.throttle_wait_ms) as f64 / 1000.0,
            percentage.map_or_else(|| "none (under 80 %)".to_owned(), |p| format!("{:.0} %", p * 100.0)),
        ))
    }

    /// The human-readable log, in the spirit of the runbook's `Cert_Auth.log`, with every change and failure.
    pub fn to_text(&self) -> String {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail, and everything written is UTF-8.
        let _ = self.write_text(&mut out);
        String::from_utf8(out).unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
    }

    /// [`Self::to_text`], written out as it is made (the run log is uploaded this way: 13 MB at 100,000 users).
    pub fn write_text(&self, out: &mut dyn io::Write) -> io::Result<()> {
        let user = |u: &UserRef| format!("{} ({})", u.user_principal_name, u.id);
        writeln!(out, "certsync run {} — {}", self.run_id, self.started)?;
        writeln!(
            out,
            "Trigger: {:?}{}",
            self.trigger,
            if self.dry_run { " — DRY RUN: nothing was written" } else { "" }
        )?;
        if let super::incremental::ScopeReport::Incremental { groups, full_resync, affected_users } = &self.scope {
            let groups: Vec<String> = groups.iter().map(|g| format!("{:?} group {}", g.side, g.group)).collect();
            writeln!(out, "Scope: change notification for {}", groups.join(", "))?;
            match full_resync {
                Some(reason) => {
                    writeln!(out, "  whole pairs reconciled: {reason}")?;
                }
                None => {
                    writeln!(out, "  restricted to {affected_users} affected Tenant B user(s)")?;
                }
            }
        }
        writeln!(out, "Tenant A: {}   Tenant B: {}", self.tenant_a, self.tenant_b)?;
        writeln!(out, "Outcome: {}", self.outcome.label())?;
        if let RunOutcome::Failed { reason } | RunOutcome::Skipped { reason } = &self.outcome {
            writeln!(out, "  {reason}")?;
        }
        for pair in &self.pairs {
            writeln!(out, "\n== {}: {} matched ==", pair.name, pair.matched)?;
            for u in &pair.only_in_a {
                writeln!(out, "Only in Tenant A: {}", user(u))?;
            }
            for u in &pair.only_in_b {
                writeln!(out, "Only in Tenant B: {}", user(u))?;
            }
            for a in &pair.ambiguous {
                let users: Vec<String> = a.users.iter().map(user).collect();
                writeln!(out, "Ambiguous key {:?} in {:?}: {} — not written", a.key, a.side, users.join(", "))?;
            }
            for s in &pair.without_key {
                writeln!(out, "No match key ({:?}): {} {}", s.side, user(&s.user), s.reason)?;
            }
            if pair.non_user_members_a + pair.non_user_members_b > 0 {
                writeln!(
                    out,
                    "Non-user members skipped: {} in Tenant A, {} in Tenant B",
                    pair.non_user_members_a, pair.non_user_members_b
                )?;
            }
        }
        writeln!(out, "\n== Changes ==")?;
        for c in &self.changes {
            writeln!(
                out,
                "{:?}: {} add {:?} remove {:?} → {:?}",
                c.status,
                user(&c.change.user),
                c.change.add,
                c.change.remove,
                c.change.after()
            )?;
            if let Some(e) = &c.error {
                writeln!(out, "    error: {}", e.message)?;
            }
        }
        for s in &self.skipped {
            writeln!(out, "Skipped: {} {}", user(&s.user), s.reason)?;
        }
        for c in &self.conflicts {
            writeln!(
                out,
                "Conflict: {} needs {:?}, already held by {} ({})",
                user(&c.user),
                c.value,
                c.holder_user_principal_name.as_deref().unwrap_or("another user"),
                c.holder_id
            )?;
        }
        if let Some(reason) = &self.removals_disabled {
            writeln!(out, "Removals disabled: {reason}")?;
        }
        if let Some(held) = &self.removals_held_back {
            writeln!(out, "Removals held back: {}", held.reason)?;
        }
        for note in &self.notes {
            writeln!(out, "Note: {note}")?;
        }
        if self.quiet_runs_before > 0 {
            writeln!(
                out,
                "Note: {} notification run(s) before this one found no membership change and wrote nothing (no log of \
                 their own).",
                self.quiet_runs_before
            )?;
        }
        writeln!(out, "\nTotals: {}", self.totals)?;
        let g = &self.graph;
        writeln!(
            out,
            "Graph: Tenant A {} reads; Tenant B {} reads, {} writes in {} batches; {} retries; throttle wait {} ms. Duration {} ms.",
            g.tenant_a.reads,
            g.tenant_b.reads,
            g.tenant_b.writes,
            g.tenant_b.batches,
            g.tenant_a.retries + g.tenant_b.retries,
            g.tenant_a.throttle_wait_ms + g.tenant_b.throttle_wait_ms,
            self.duration_ms
        )?;
        Ok(())
    }
}
