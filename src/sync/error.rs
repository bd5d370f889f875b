//! Why a run did not do its job: one variant per place a run can stop, each with the message the administrator
//! reads in the run report. Every one of them means the same thing for the tenant: nothing unsafe was written.

use std::time::Duration;

use super::observe::ObserveError;
use super::report::RunOutcome;
use crate::domain::GroupId;
use crate::domain::Side;
use crate::graph::GraphError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the state storage cannot be reached, so nothing was read or written: {0}")]
    StorageUnreachable(#[source] StorageError),
    /// A full sync from the CLI that finds the lease held does nothing (the timer's is handed on: [`Self::Folded`]).
    #[error("another run is writing to this tenant (its lease is held); this run did nothing")]
    LeaseHeld,
    /// An incremental run waited for the lease in vain: failing makes the queue retry the notification.
    #[error(
        "another run held this tenant's lease for more than {} s; nothing was done and the notification will be \
         retried",
        waited.as_secs()
    )]
    LeaseBusy { waited: Duration },
    /// A run met another's lease and handed its work to it (changed groups, or a due full sync): that run queues it
    /// when it ends.
    #[error(
        "another run holds this tenant's lease; this run's work (changed groups, or a due full sync) was handed to it \
         and is done as soon as it ends"
    )]
    Folded,
    #[error("the run lease could not be taken, so nothing was written: {0}")]
    Lease(#[source] StorageError),
    #[error("the delta position of group {group} could not be read: {source}")]
    CursorUnreadable {
        group: GroupId,
        #[source]
        source: StorageError,
    },
    #[error("reading what changed in {side:?} group {group} failed, so nothing was written: {source}")]
    Delta {
        side: Side,
        group: GroupId,
        #[source]
        source: GraphError,
    },
    #[error("the ownership ledger could not be read, so nothing was written: {0}")]
    Ledger(#[source] StorageError),
    /// The ledger is gone although one was written: starting afresh would orphan every value written before.
    #[error(
        "the ownership ledger {blob} is missing, but {anchor} says one existed since {anchored}: nothing was written. \
         Restore the ledger blob (soft delete or an earlier version in the state container; docs/operations.md), or, \
         only if it cannot be restored, run `certsync sync --accept-new-ledger` once"
    )]
    LedgerLost { blob: String, anchor: String, anchored: String },
    #[error("the ownership ledger's anchor could not be read, so nothing was written: {0}")]
    Anchor(#[source] StorageError),
    #[error(transparent)]
    Observe(#[from] ObserveError),
    #[error("re-reading {count} Tenant A users that left a group failed, so nothing was written: {source}")]
    SourceKeys {
        count: usize,
        #[source]
        source: GraphError,
    },
}

impl RunError {
    /// The run's outcome: a held lease on a full sync is a skip (nothing was due from this run in particular),
    /// everything else a failure.
    pub fn outcome(&self) -> RunOutcome {
        match self {
            Self::LeaseHeld | Self::Folded => RunOutcome::Skipped { reason: self.to_string() },
            _ => RunOutcome::Failed { reason: self.to_string() },
        }
    }
}
